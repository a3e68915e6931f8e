"""The teacher's recipe from notebook parameters, and its refinement stages as a chain."""

import json

import pytest
import torch

from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import (
    TEACHER_PARAMETERS,
    UnsupervisedRecipe,
    ensure_teacher,
    final_teacher_loss,
    load_trained,
    refine_stages,
    refinement_recipe,
    teacher_base_recipe,
)
from cdpkd.sim import ImagingConfig, SimulationConfig
from cdpkd.sim.dataset import write_dataset


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
    root = tmp_path_factory.mktemp("teacher_recipe")
    return write_dataset(root / "sim_train" / "key" / "pairs.h5", config, 3, base_seed=5, workers=1)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_base_recipe_is_the_one_the_notebooks_spelled_out(profile):
    p = resolved_parameters(profile, NOTEBOOK_DIR / "01_teacher.ipynb")
    expected = UnsupervisedRecipe(  # what notebooks 01-05 built by hand before the helper
        model=p["teacher_model"], model_overrides=p["teacher_model_overrides"],
        crop=(p["teacher_crop_samples"], p["teacher_crop_lines"]), steps=p["teacher_steps"],
        batch_size=p["teacher_batch_size"], lr=p["teacher_lr"], warmup_steps=p["teacher_warmup_steps"],
        val_pairs=p["val_pairs"], val_every=p["teacher_val_every"], loss=p["teacher_loss_overrides"],
        strain_window=p["strain_window"], seed=p["seed"],
    )
    recipe = teacher_base_recipe(p)
    assert recipe == expected and recipe.cache_dict() == expected.cache_dict()


def test_every_teacher_notebook_has_the_same_teacher_parameters():
    notebooks = ["01_teacher", "02_dpnet", "03_cdp_kdnet", "04_ablations", "05_invivo_evaluation"]
    for profile in ("smoke", "cpu"):
        resolved = [resolved_parameters(profile, NOTEBOOK_DIR / f"{nb}.ipynb") for nb in notebooks]
        recipes = {nb: teacher_base_recipe(p) for nb, p in zip(notebooks, resolved)}
        assert len({json.dumps(r.cache_dict(), sort_keys=True) for r in recipes.values()}) == 1, profile
        assert len({json.dumps(p["teacher_refine"], sort_keys=True) for p in resolved}) == 1, profile


def test_base_recipe_names_missing_parameters():
    p = resolved_parameters("smoke", NOTEBOOK_DIR / "01_teacher.ipynb")
    assert set(TEACHER_PARAMETERS) <= set(p)
    del p["teacher_lr"], p["seed"]
    with pytest.raises(KeyError, match=r"\['seed', 'teacher_lr'\]"):
        teacher_base_recipe(p)


def test_refine_stages_and_the_final_loss():
    assert refine_stages(None) == [] and refine_stages({}) == [] and refine_stages([]) == []
    one = {"steps": 2, "loss": {"smooth_weight": 0.5}}
    assert refine_stages(one) == [one]
    chain = [one, {"steps": 3, "loss": {"final_weight": 2.0, "smooth_weight": 1.0}}, {"lr": 1e-4}]
    assert refine_stages(chain) == chain
    with pytest.raises(ValueError, match="stage 1"):
        refine_stages([one, {}])
    with pytest.raises(ValueError, match="stage 0"):
        refine_stages(["steps"])
    base = UnsupervisedRecipe(model="umen_teacher_smoke", loss={"level_decay": 1.0, "smooth_weight": 0.1})
    assert final_teacher_loss(base, None) == {"level_decay": 1.0, "smooth_weight": 0.1}
    assert final_teacher_loss(base, chain) == {"level_decay": 1.0, "smooth_weight": 1.0, "final_weight": 2.0}


def test_a_stage_updates_the_model_overrides_like_the_loss():
    # a stage names only what it changes: the base's overrides stay unless a stage sets them again
    base = UnsupervisedRecipe(model="umen_teacher_smoke", model_overrides={"input_mode": "rf+envelope"},
                              loss={"smooth_weight": 0.1})
    headed = refinement_recipe(base, {"model_overrides": {"refine_widths": [4]}, "loss": {"final_weight": 2.0}},
                               "teacher/abc")
    assert headed.model_overrides == {"input_mode": "rf+envelope", "refine_widths": [4]}
    assert headed.loss == {"smooth_weight": 0.1, "final_weight": 2.0}
    assert headed.model_config().input_mode == "rf+envelope" and headed.model_config().refine_widths == (4,)
    back = refinement_recipe(headed, {"model_overrides": {"input_mode": "rf"}}, "teacher/def")
    assert back.model_overrides == {"input_mode": "rf", "refine_widths": [4]}
    assert base.model_overrides == {"input_mode": "rf+envelope"}, "the earlier recipe is untouched"


def test_refinement_chain_continues_stage_by_stage(train_set, tmp_path):
    base = UnsupervisedRecipe(model="umen_teacher_smoke", crop=(128, 32), steps=3, batch_size=2, warmup_steps=1,
                              val_pairs=1, val_every=3, seed=2, loss={"level_decay": 1.0})
    first = {"steps": 2, "lr": 1e-12, "warmup_steps": 0, "loss": {"final_weight": 2.0}}
    chain = [first, {"steps": 3}]
    stages = ensure_teacher(tmp_path, base, train_set, refine=chain)
    assert len(stages) == 3 and len(set(stages)) == 3
    # a one-stage refine with the same first stage is the same artifact (the chain's prefix is cached)
    assert ensure_teacher(tmp_path, base, train_set, refine=first) == stages[:2]
    recipes = [json.loads((d / "artifact.json").read_text())["params"]["recipe"] for d in stages]
    assert recipes[1]["init_from"] == f"teacher/{stages[0].name}"
    assert recipes[2]["init_from"] == f"teacher/{stages[1].name}"
    # the second stage changes the first stage's recipe, not the base's: lr, warmup and loss carry over
    assert recipes[2]["steps"] == 3 and recipes[2]["lr"] == 1e-12 and recipes[2]["warmup_steps"] == 0
    assert recipes[2]["loss"] == {"level_decay": 1.0, "final_weight": 2.0}
    # lr 1e-12: each stage starts from (and barely moves) the one before
    for before, after in zip(stages[:-1], stages[1:]):
        a, b = load_trained(before).state_dict(), load_trained(after).state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), f"{after.name} did not start from {before.name}"
