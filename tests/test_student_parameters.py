"""The students' and baselines' recipes from notebook parameters (notebooks 02-05)."""

import dataclasses
import json
from pathlib import Path

import pytest

from cdpkd.ablation import AblationSetting
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import (
    CDP_KDNET_PARAMETERS,
    DPNET_PARAMETERS,
    CDPKDRecipe,
    DPNetRecipe,
    UnsupervisedRecipe,
    ablation_bases,
    baseline_recipe,
    cdp_kdnet_recipe,
    cdp_method_settings,
    component_bases,
    component_setting,
    dpnet_recipe,
    final_teacher_loss,
    network_crop,
    network_tile,
    student_loss,
    teacher_base_recipe,
)

STUDENT_NOTEBOOKS = ["02_dpnet", "03_cdp_kdnet", "04_ablations", "05_invivo_evaluation"]


def _key(recipe) -> str:
    return json.dumps(recipe.cache_dict(), sort_keys=True)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_recipes_are_the_ones_the_notebooks_spelled_out(profile):
    """Same recipes (hence the same cached artifacts) as the blocks notebooks 02-05 built by hand."""
    p = resolved_parameters(profile, NOTEBOOK_DIR / "05_invivo_evaluation.ipynb")
    loss = final_teacher_loss(teacher_base_recipe(p), p["teacher_refine"])
    budget = dict(params_fraction=p["params_fraction"], flops_fraction=p["flops_fraction"],
                  min_channels=p["min_channels"], multiple_of=p["student_width_multiple"])
    crop = (p["teacher_crop_samples"], p["teacher_crop_lines"])
    shared = dict(crop=crop, batch_size=p["student_batch_size"], loss=loss, val_pairs=p["val_pairs"],
                  val_every=p["student_val_every"], strain_window=p["strain_window"], seed=p["seed"],
                  release_fraction=p["student_release_fraction"], axial_offset=p["student_axial_offset"])
    dpnet = DPNetRecipe(budget=budget, **shared, steps=p["dpnet_steps"], lr=p["dpnet_lr"], init=p["dpnet_init"])
    cdp = CDPKDRecipe(
        budget=budget, **shared, steps=p["cdp_steps"], lr=p["cdp_lr"], criterion=p["cdp_criterion"],
        prune_start=p["prune_start"], prune_end=p["prune_end"], prune_every=p["prune_every"],
        distiller=p["distiller"], distiller_options=p["distiller_options"], kd_weight=p["kd_weight"],
        kd_final_weight=p["kd_final_weight"], curriculum=p["curriculum"], pacing=p["pacing"],
        start_fraction=p["start_fraction"], end_step_fraction=p["end_step_fraction"], difficulty=p["difficulty"],
        finetune_steps=p["finetune_steps"], finetune_lr=p["finetune_lr"],
    )
    baseline = UnsupervisedRecipe(model=p["teacher_model"], **shared, steps=p["baseline_steps"],
                                  lr=p["baseline_lr"], warmup_steps=p["baseline_warmup_steps"])
    assert student_loss(p) == loss
    for built, expected in [(dpnet_recipe(p), dpnet), (cdp_kdnet_recipe(p), cdp), (baseline_recipe(p), baseline)]:
        assert built == expected and _key(built) == _key(expected)


def test_every_student_notebook_builds_the_same_students():
    for profile in ("smoke", "cpu", "paper"):
        resolved = {nb: resolved_parameters(profile, NOTEBOOK_DIR / f"{nb}.ipynb") for nb in STUDENT_NOTEBOOKS}
        dpnet = {nb: _key(dpnet_recipe(p)) for nb, p in resolved.items()}
        assert len(set(dpnet.values())) == 1, (profile, dpnet)
        cdp = {nb: _key(cdp_kdnet_recipe(p)) for nb, p in resolved.items() if set(CDP_KDNET_PARAMETERS) <= set(p)}
        assert set(cdp) >= {"03_cdp_kdnet", "04_ablations", "05_invivo_evaluation"} and len(set(cdp.values())) == 1


def test_recipes_follow_their_parameters():
    p = resolved_parameters("smoke", NOTEBOOK_DIR / "05_invivo_evaluation.ipynb")
    changed = {**p, "dpnet_steps": p["dpnet_steps"] + 7, "cdp_criterion": "l2", "student_axial_offset": 3,
               "teacher_refine": {"steps": 1, "loss": {"smooth_weight": 9.0}}}
    assert dpnet_recipe(changed).steps == p["dpnet_steps"] + 7
    assert cdp_kdnet_recipe(changed).criterion == "l2"
    assert baseline_recipe(changed).axial_offset == 3 and dpnet_recipe(changed).axial_offset == 3
    assert cdp_kdnet_recipe(changed).loss["smooth_weight"] == 9.0
    # one changed field, one changed key: the ablations rely on dataclasses.replace
    shorter = dataclasses.replace(cdp_kdnet_recipe(p), steps=1)
    assert _key(shorter) != _key(cdp_kdnet_recipe(p))


def test_missing_parameters_are_named():
    p = resolved_parameters("smoke", NOTEBOOK_DIR / "02_dpnet.ipynb")
    assert set(DPNET_PARAMETERS) <= set(p)
    del p["dpnet_lr"], p["dpnet_init"]
    with pytest.raises(KeyError, match=r"dpnet_recipe: parameters \['dpnet_init', 'dpnet_lr'\]"):
        dpnet_recipe(p)
    # one error names every missing parameter, shared or the student's own
    q = resolved_parameters("smoke", NOTEBOOK_DIR / "03_cdp_kdnet.ipynb")
    del q["student_axial_offset"], q["cdp_lr"]
    with pytest.raises(KeyError, match=r"cdp_kdnet_recipe: parameters \['cdp_lr', 'student_axial_offset'\]"):
        cdp_kdnet_recipe(q)


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_ablation_bases_are_the_ones_notebook_04_spelled_out(profile):
    """Notebook 04 derives its short, unvalidated ablation bases with dataclasses.replace."""
    p = resolved_parameters(profile, NOTEBOOK_DIR / "04_ablations.ipynb")
    shared = dict(budget=dict(params_fraction=p["params_fraction"], flops_fraction=p["flops_fraction"],
                              min_channels=p["min_channels"], multiple_of=p["student_width_multiple"]),
                  crop=(p["teacher_crop_samples"], p["teacher_crop_lines"]), batch_size=p["ablation_batch_size"],
                  loss=student_loss(p), val_pairs=0, val_every=None, strain_window=p["strain_window"],
                  seed=p["seed"], release_fraction=p["student_release_fraction"],
                  axial_offset=p["student_axial_offset"])
    cdp = CDPKDRecipe(**shared, **cdp_method_settings(p), steps=p["ablation_steps"], lr=p["cdp_lr"],
                      finetune_steps=p["ablation_finetune_steps"])
    dpnet = DPNetRecipe(**shared, steps=p["ablation_steps"] + p["ablation_finetune_steps"], lr=p["dpnet_lr"],
                        init=p["dpnet_init"])
    bases = ablation_bases(p)
    assert set(bases) == {"cdp_kdnet", "dpnet", "baseline"}
    assert bases["cdp_kdnet"] == cdp and _key(bases["cdp_kdnet"]) == _key(cdp)
    assert bases["dpnet"] == dpnet and _key(bases["dpnet"]) == _key(dpnet)
    assert bases["baseline"] == baseline_recipe(p)  # the baselines keep notebook 02-05's recipe


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_component_bases_are_notebook_04s_with_their_fallbacks(profile):
    """The components question's own length, each unset (None) parameter taken from the ablation_* one."""
    p = resolved_parameters(profile, NOTEBOOK_DIR / "04_ablations.ipynb")
    setting = component_setting(p)
    for name in ("seeds", "steps", "finetune_steps", "batch_size"):
        own = p[f"component_{name}"]
        assert setting[name] == (p[f"ablation_{name}"] if own is None else own)
    expected = dataclasses.replace(cdp_kdnet_recipe(p), steps=setting["steps"], finetune_steps=setting["finetune_steps"],
                                   batch_size=setting["batch_size"], val_pairs=0, val_every=None)
    assert component_bases(p) == {"cdp_kdnet": expected}
    if profile == "cpu":  # the profile's longer components run: 250 + 50 updates of batch 4, three seeds
        assert setting == {"seeds": [0, 1, 2], "steps": 250, "finetune_steps": 50, "batch_size": 4}
    # unset: every field falls back to the short setting, whose bases then share ours
    unset = {**p, **{f"component_{name}": None for name in setting}}
    assert component_setting(unset) == {name: p[f"ablation_{name}"] for name in setting}
    assert component_bases(unset)["cdp_kdnet"] == ablation_bases(unset)["cdp_kdnet"]
    del unset["component_seeds"]
    with pytest.raises(KeyError, match=r"component_setting: parameters \['component_seeds'\]"):
        component_setting(unset)


def test_ablation_setting_from_notebook_parameters(tmp_path):
    p = resolved_parameters("cpu", NOTEBOOK_DIR / "04_ablations.ipynb")
    paths = {"train": tmp_path / "train.h5", "test": tmp_path / "test.h5"}
    setting = AblationSetting.from_parameters(p, tmp_path, tmp_path / "teacher", paths, profile="cpu")
    crop = (p["teacher_crop_samples"], p["teacher_crop_lines"])
    assert setting == AblationSetting(tmp_path, tmp_path / "teacher", paths["train"], paths["test"], crop,
                                      profile="cpu", tile=crop, overlap=p["tile_overlap"], guided=p["guided_tiles"],
                                      guide_pass=p["guide_pass"], strain_window=p["strain_window"],
                                      border=(p["border_samples"], p["border_lines"]),
                                      test_pairs=p["ablation_test_pairs"])
    assert AblationSetting.from_parameters({**p, "tiled_inference": False}, tmp_path, tmp_path, paths).tile is None
    assert p["guide_pass"] == "strips"  # the notebooks guide from strips (studies/README.md, input width)
    assert AblationSetting.from_parameters({**p, "guide_pass": "whole"}, tmp_path, tmp_path, paths).guide_pass == "whole"
    with pytest.raises(KeyError, match=r"parameters \['guided_tiles'\] are missing"):
        AblationSetting.from_parameters({k: v for k, v in p.items() if k != "guided_tiles"}, tmp_path, tmp_path,
                                        paths)


def test_the_networks_crop_is_the_teachers_last_stages():
    """Students, baselines and the notebooks' tiles follow a refinement stage that changes the crop."""
    p = resolved_parameters("cpu", NOTEBOOK_DIR / "04_ablations.ipynb")
    assert network_crop(p) == (p["teacher_crop_samples"], p["teacher_crop_lines"]) == (256, 64)
    wide_stage = {"steps": 400, "lr": 1e-4, "crop": [256, 128], "batch_size": 2}
    wide = {**p, "teacher_refine": [*p["teacher_refine"], wide_stage]}
    assert network_crop(wide) == (256, 128)
    assert teacher_base_recipe(wide) == teacher_base_recipe(p)  # the base teacher (and its cache) is unchanged
    for recipe in (dpnet_recipe(wide), cdp_kdnet_recipe(wide), baseline_recipe(wide), *ablation_bases(wide).values()):
        assert recipe.crop == (256, 128)
    paths = {"train": Path("train.h5"), "test": Path("test.h5")}
    setting = AblationSetting.from_parameters(wide, Path("."), Path("teacher"), paths)
    assert setting.crop == setting.tile == (256, 128)
    # a later stage back on the base crop wins: the last stage decides
    back = {**wide, "teacher_refine": [*wide["teacher_refine"], {"steps": 1, "crop": [256, 64]}]}
    assert network_crop(back) == (256, 64)
    with pytest.raises(KeyError, match=r"network_crop: parameters \['teacher_refine'\] are missing"):
        network_crop({k: v for k, v in p.items() if k != "teacher_refine"})


def test_the_notebooks_tile_is_tile_samples_deep_and_the_crop_wide():
    """``tile_samples`` deepens the tiles of every network (notebooks 01-05 and notebook 04's setting)
    without changing the crop the networks train on."""
    p = resolved_parameters("cpu", NOTEBOOK_DIR / "04_ablations.ipynb")
    assert p["tile_samples"] is None and network_tile(p) == network_crop(p) == (256, 64)
    deep = {**p, "tile_samples": 512}
    assert network_tile(deep) == (512, 64) and network_crop(deep) == (256, 64)
    assert dpnet_recipe(deep) == dpnet_recipe(p)  # training (and the cached students) unchanged
    assert network_tile({**deep, "tiled_inference": False}) is None
    wide_stage = {"steps": 400, "lr": 1e-4, "crop": [256, 128], "batch_size": 2}
    assert network_tile({**deep, "teacher_refine": [*p["teacher_refine"], wide_stage]}) == (512, 128)
    paths = {"train": Path("train.h5"), "test": Path("test.h5")}
    setting = AblationSetting.from_parameters(deep, Path("."), Path("teacher"), paths)
    assert setting.crop == (256, 64) and setting.tile == (512, 64)
    for bad in (0, -256, 512.0, "512", True):
        with pytest.raises(ValueError, match="tile_samples must be None"):
            network_tile({**p, "tile_samples": bad})
    with pytest.raises(KeyError, match=r"network_tile: parameters \['tile_samples'\] are missing"):
        network_tile({k: v for k, v in p.items() if k != "tile_samples"})


@pytest.mark.parametrize("notebook", ["01_teacher", *STUDENT_NOTEBOOKS])
def test_every_evaluating_notebook_has_the_tile_depth_parameter(notebook):
    """One ``--set tile_samples=...`` (studies/notebook_variant.py) reaches every notebook's tiles."""
    assert resolved_parameters("cpu", NOTEBOOK_DIR / f"{notebook}.ipynb")["tile_samples"] is None
