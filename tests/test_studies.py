"""studies/teacher_refine.py on the smoke profile: the profile variant is notebook 01's own refinement
stage (the same cached artifact), a chained variant continues from it, the JSON has every pair."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdpkd import recipes
from cdpkd.losses import UnsupervisedLoss
from cdpkd.recipes import UnsupervisedRecipe, ensure_teacher, refinement_recipe, teacher_base_recipe
from cdpkd.sim import read_metas
from cdpkd.sim.study import notebook_datasets

ROOT = Path(__file__).resolve().parents[1]


def load_study(filename: str):
    """A script of studies/ imported as a module (they are scripts, not a package), with studies/ on
    ``sys.path`` for their shared helpers, as when run as ``python studies/<name>.py``."""
    if str(ROOT / "studies") not in sys.path:
        sys.path.insert(0, str(ROOT / "studies"))
    spec = importlib.util.spec_from_file_location(f"study_{Path(filename).stem}", ROOT / "studies" / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study():
    return load_study("teacher_refine.py")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):  # shared: the datasets and base teacher are built once
    return tmp_path_factory.mktemp("study_data")


@pytest.fixture(scope="module")
def smoke_teacher(study, data_root):
    """Notebook 01's smoke parameters and its teacher stages (base first), built once under ``data_root``."""
    p = study.resolved_parameters("smoke", study.NOTEBOOK)
    paths = notebook_datasets(data_root, p, workers=1)
    stages = ensure_teacher(data_root, teacher_base_recipe(p), paths["train"], refine=p["teacher_refine"],
                            profile="smoke")
    return p, stages


def test_refine_study_matches_notebook_01_and_chains(study, smoke_teacher, data_root, tmp_path):
    out = tmp_path / "study.json"
    result = study.main([
        "--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
        "--variant", "profile={}",
        "--variant", 'longer={"steps": 4, "lr": 1e-4, "after": "profile", "loss": {"final_weight": 2.0}}',
        "--variant", 'wider={"steps": 2, "lr": 1e-4, "after": "profile", "crop": [128, 48]}',
        "--release", "--ncc",
    ])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    first, second, wider = result["variants"]
    # each variant is scored on tiles of its own training crop
    assert first["tile"] == second["tile"] == result["evaluation"]["tile"] == list(result["base_recipe"]["crop"])
    assert wider["tile"] == [128, 48] and wider["init_from"] == f"teacher/{first['artifact']}"
    # the same stages notebook 01 trains (its recipe, its cache key)
    p, stages = smoke_teacher
    assert first["artifact"] == stages[-1].name and result["base_artifact"] == stages[0].name
    assert second["init_from"] == f"teacher/{first['artifact']}" and second["after"] == "profile"
    for row in (first, second):
        assert len(row["per_pair_strain_rmse"]) == p["n_test"]
        assert "final" in row["train_similarity_last_step"]
        assert row["mean"]["strain_rmse"] == pytest.approx(sum(row["per_pair_strain_rmse"]) / p["n_test"])
        released = row["release"]
        assert len(released["per_pair_strain_rmse"]) == p["n_test"]
        assert released["mean"]["strain_rmse"] == pytest.approx(sum(released["per_pair_strain_rmse"]) / p["n_test"])
    assert result["evaluation"]["release"] and not result["evaluation"]["guided"]
    assert set(result["ncc"]) == {"compression", "release"} and result["ncc"]["release"]["strain_rmse"] > 0
    assert {"git_sha", "date", "device", "numerics", "versions"} <= set(result)


def test_refine_study_rejects_bad_variants(study, data_root, tmp_path):
    with pytest.raises(SystemExit):
        study.main(["--profile", "smoke", "--data-dir", str(data_root), "--variant", "no-json"])
    with pytest.raises(SystemExit, match="not an earlier variant"):
        study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json"),
                    "--variant", 'a={"steps": 2, "after": "b"}'])
    with pytest.raises(SystemExit, match="no recipe fields"):
        study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json"),
                    "--variant", "empty={}"])
    with pytest.raises(SystemExit, match="not parameters of 01_teacher"):
        study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json"),
                    "--set", '{"teacher_stepz": 3}', "--variant", "profile={}"])


def test_refine_study_set_changes_the_base_teacher(study, data_root, tmp_path):
    result = study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "set.json"),
                         "--set", "teacher_steps=3", "--variant", 'short={"steps": 2}'])
    assert result["parameters_changed"] == {"teacher_steps": 3} and result["base_recipe"]["steps"] == 3
    p = study.resolved_parameters("smoke", study.NOTEBOOK)
    default_base = teacher_base_recipe(p)
    assert result["base_recipe"] == {**default_base.to_dict(), "steps": 3}
    (row,) = result["variants"]
    assert row["init_from"] == f"teacher/{result['base_artifact']}"


def test_refine_study_base_train_set_and_guide_options(study, smoke_teacher, data_root, tmp_path):
    """--base changes the base recipe (stages inherit it), --train-set simulates another training set
    (the test set stays notebook 01's), --guide reaches the guided tiles, --probe-frame scores the test
    and release pairs in the probe's coordinates too; bad values fail before training."""
    p, stages = smoke_teacher
    result = study.main([
        "--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "v3.json"),
        "--base", '{"axial_offset": 4, "release_fraction": 0.5}', "--train-set", '{"strain_min": 0.001, "pulse_ranges": {"fc_hz": [4e6, 6e6]}}',
        "--guided", "--guide", '{"guide_quantile": 0.5, "guide_margin": 0}', "--variant", 'short={"steps": 2}',
        "--release", "--probe-frame",
    ])
    assert result["base_recipe"]["axial_offset"] == 4 and result["base_recipe"]["release_fraction"] == 0.5
    assert result["base_artifact"] != stages[0].name
    assert result["training_set"] != notebook_datasets(data_root, p)["train"].parent.name
    trained_on = read_metas(data_root / "sim_train" / result["training_set"] / "pairs.h5")
    assert all(4e6 <= m["fc_hz"] <= 6e6 for m in trained_on) and min(m["applied_strain"] for m in trained_on) >= 0.001
    assert result["evaluation"]["guide"] == {"guide_quantile": 0.5, "guide_margin": 0}
    (row,) = result["variants"]
    stage_recipe = json.loads((data_root / "teacher" / row["artifact"] / "artifact.json").read_text())["params"]
    assert stage_recipe["recipe"]["axial_offset"] == 4  # inherited by the refinement stage
    assert len(row["per_pair_strain_rmse"]) == p["n_test"]
    for label in ("release", "probe_frame", "probe_frame_release"):  # scored on every extra set
        assert len(row[label]["per_pair_strain_rmse"]) == p["n_test"] and row[label]["mean"]["strain_rmse"] > 0
    assert result["evaluation"]["probe_frame"]
    for option, value in [("--base", '{"init_from": "x"}'), ("--train-set", '{"n_train": 3}'),
                          ("--guide", '{"guided": true}'), ("--guide", '{"guide_quantile": 0.5}'),  # no --guided
                          ("--train-set", '{"pulse_ranges": {"fc_hz": [4e6, 30e6]}}')]:  # above Nyquist
        with pytest.raises(SystemExit):
            study.main(["--profile", "smoke", "--data-dir", str(data_root), option, value, "--score-base"])
    with pytest.raises(SystemExit, match="release_fraction"):  # refused by the recipe, before anything trains
        study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json"),
                    "--base", '{"release_fraction": 2}', "--score-base"])


def test_refine_study_scores_the_base_alone(study, smoke_teacher, data_root, tmp_path):
    """--score-base without variants: the base teacher itself, scored like a variant; a model
    override (a windowed cost volume) makes it another artifact."""
    result = study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "base.json"),
                         "--score-base"])
    p, stages = smoke_teacher
    (row,) = result["variants"]
    assert row["name"] == "base" and row["artifact"] == stages[0].name == result["base_artifact"]
    assert row["init_from"] is None and len(row["per_pair_strain_rmse"]) == p["n_test"]
    windowed = study.main([
        "--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "windowed.json"), "--score-base",
        "--set", json.dumps({"teacher_model_overrides": {**p["teacher_model_overrides"], "cost_windows": [3, 3]}}),
    ])
    assert windowed["base_artifact"] != stages[0].name
    assert windowed["base_recipe"]["model_overrides"]["cost_windows"] == [3, 3]
    with pytest.raises(SystemExit):
        study.main(["--profile", "smoke", "--data-dir", str(data_root)])  # nothing to do
    with pytest.raises(SystemExit, match="named 'base'"):
        study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json"),
                    "--score-base", "--variant", 'base={"steps": 2}'])


def test_refinement_recipe_rejects_unknown_fields_and_init_from():
    base = UnsupervisedRecipe(model="umen_teacher_smoke", crop=(64, 16), steps=4, loss={"level_decay": 1.0})
    stage = refinement_recipe(base, {"steps": 2, "loss": {"smooth_weight": 0.5}}, "teacher/abc")
    assert stage.loss == {"level_decay": 1.0, "smooth_weight": 0.5} and stage.val_tile and stage.steps == 2
    assert stage.init_from == "teacher/abc"
    with pytest.raises(ValueError, match="not fields"):
        refinement_recipe(base, {"stepz": 2}, "teacher/abc")
    with pytest.raises(ValueError, match="init_from is set by the stage"):
        refinement_recipe(base, {"init_from": "teacher/x"}, "teacher/abc")


@pytest.fixture(scope="module")
def guided_study():
    return load_study("guided_tiles.py")


def test_guided_tiles_study_scores_both_modes_per_pair(guided_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    teacher = stages[-1]
    out = tmp_path / "guided.json"
    name = f"teacher/{teacher.name}"
    result = guided_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
                                "--artifact", name])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["networks"]
    assert row["artifact"] == name and set(row["modes"]) == {"plain", "guided"}
    for mode in row["modes"].values():
        assert len(mode["per_pair_strain_rmse"]) == p["n_test"]
        assert mode["mean"]["strain_rmse"] == pytest.approx(sum(mode["per_pair_strain_rmse"]) / p["n_test"])
    with pytest.raises(SystemExit, match="no trained model"):
        guided_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--artifact", "teacher/missing"])


def test_guided_tiles_study_scores_each_overlap_and_the_whole_frame(guided_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    name = f"teacher/{stages[-1].name}"
    common = ["--profile", "smoke", "--data-dir", str(data_root), "--artifact", name]
    ours = p["tile_overlap"]
    assert ours != 0
    result = guided_study.main([*common, "--out", str(tmp_path / "o.json"), "--overlap", str(ours), "--overlap", "0",
                                "--whole-frame"])
    assert result["evaluation"]["overlap"] == [ours, 0.0]
    modes = result["networks"][0]["modes"]
    assert set(modes) == {f"plain@{ours:g}", f"guided@{ours:g}", "plain@0", "guided@0", "whole"}
    # The notebook's overlap named explicitly scores what the default run scores (same estimator, same pairs).
    default = guided_study.main([*common, "--out", str(tmp_path / "d.json")])["networks"][0]["modes"]
    assert modes[f"guided@{ours:g}"]["per_pair_strain_rmse"] == default["guided"]["per_pair_strain_rmse"]
    assert modes["guided@0"]["per_pair_strain_rmse"] != default["guided"]["per_pair_strain_rmse"]
    assert all(m["mean"]["time_per_frame_ms"] > 0 for m in modes.values())
    with pytest.raises(SystemExit):
        guided_study.main([*common, "--overlap", "1.0"])


def test_guided_tiles_study_scores_bf16_beside_fp32(guided_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    result = guided_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "b.json"),
                                "--artifact", f"teacher/{stages[-1].name}", "--bf16"])
    modes = result["networks"][0]["modes"]
    assert set(modes) == {"plain", "guided", "plain+bf16", "guided+bf16"}
    for mode in ("plain", "guided"):
        fp32, bf16 = modes[mode]["per_pair_strain_rmse"], modes[f"{mode}+bf16"]["per_pair_strain_rmse"]
        assert len(bf16) == p["n_test"] and all(np.isfinite(bf16))
        assert bf16 != fp32, "bf16 autocast changed nothing: it did not run"


def test_guided_tiles_study_scores_head_passes_and_the_mirrored_pair(guided_study, smoke_teacher, data_root,
                                                                     tmp_path):
    p, stages = smoke_teacher  # the last stage has the NCC head, the base stage has none
    common = ["--profile", "smoke", "--data-dir", str(data_root)]
    result = guided_study.main([*common, "--artifact", f"teacher/{stages[-1].name}", "--out", str(tmp_path / "m.json"),
                                "--head-passes", "2", "--mirror"])
    modes = result["networks"][0]["modes"]
    once = ("plain", "guided")
    assert set(modes) == {f"{m}{extra}" for m in once for extra in ("", "+passes2", "+mirror", "+passes2+mirror")}
    for mode in once:
        as_trained = modes[mode]["per_pair_strain_rmse"]
        for variant in (f"{mode}+passes2", f"{mode}+mirror"):
            scores = modes[variant]["per_pair_strain_rmse"]
            assert len(scores) == p["n_test"] and all(np.isfinite(scores))
            assert scores != as_trained, f"{variant} scored the network as trained: it did not run"
    with pytest.raises(SystemExit, match="no NCC refinement head"):
        guided_study.main([*common, "--artifact", f"teacher/{stages[0].name}", "--out", str(tmp_path / "h.json"),
                           "--head-passes", "2"])
    with pytest.raises(SystemExit):
        guided_study.main([*common, "--artifact", f"teacher/{stages[-1].name}", "--head-passes", "1"])


def test_guided_tiles_study_scores_the_strip_guide(guided_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    result = guided_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "s.json"),
                                "--artifact", f"teacher/{stages[-1].name}", "--strips"])
    modes = result["networks"][0]["modes"]
    assert set(modes) == {"plain", "guided", "guided-strips"}
    strips = modes["guided-strips"]["per_pair_strain_rmse"]
    assert len(strips) == p["n_test"] and all(np.isfinite(strips))


def test_guided_tiles_study_takes_another_tile(guided_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    common = ["--profile", "smoke", "--data-dir", str(data_root), "--artifact", f"teacher/{stages[-1].name}"]
    default = guided_study.main([*common, "--out", str(tmp_path / "d.json")])
    crop = (p["teacher_crop_samples"], p["teacher_crop_lines"])
    assert default["evaluation"]["tile"] == list(crop)
    other = guided_study.main([*common, "--out", str(tmp_path / "t.json"), "--tile", str(crop[0]), str(2 * crop[1])])
    assert other["evaluation"]["tile"] == [crop[0], 2 * crop[1]]
    changed = other["networks"][0]["modes"]["plain"]["per_pair_strain_rmse"]
    assert changed != default["networks"][0]["modes"]["plain"]["per_pair_strain_rmse"]


def test_a_studys_default_tile_is_the_notebooks(guided_study):
    """Without ``--tile`` a study tiles as the notebooks do under the profile (``tile_samples`` included)."""
    import _study  # on sys.path since load_study

    p = guided_study.resolved_parameters("cpu", guided_study.NOTEBOOK)
    no_tile = argparse.Namespace(tile=None)
    assert _study.study_tile(no_tile, p) == (256, 64)
    assert _study.study_tile(no_tile, {**p, "tile_samples": 512}) == (512, 64)
    assert _study.study_tile(no_tile, {**p, "tiled_inference": False}) == (256, 64)  # the tiles it would have
    assert _study.study_tile(argparse.Namespace(tile=[300, 20]), p) == (300, 20)


@pytest.fixture(scope="module")
def width_study():
    return load_study("input_width.py")


def test_input_width_crop_sizes_and_band_errors(width_study):
    # default widths: the crop's, 1.5x, 2x, capped at the frame; then the crop itself and a full-depth strip
    assert width_study.crop_sizes((256, 64), (1536, 128), None, 512) == [
        (512, 64), (512, 96), (512, 128), (256, 64), (1536, 64)]
    assert width_study.crop_sizes((128, 32), (384, 48), [32, 80], 512) == [(384, 32), (384, 48), (128, 32)]
    truth = np.zeros((2, 100, 20), np.float32)
    truth[0] = np.linspace(0, 3, 100)[:, None]
    seen = []

    def off_by_half(pre, post):  # the truth of the crop it is given, +0.5 samples axially
        seen.append(pre.shape)
        top, left = divmod(int(pre[0, 0]), frame.shape[1])  # the frame's values are their flat indices
        out = truth[:, top : top + pre.shape[0], left : left + pre.shape[1]].copy()
        out[0] += 0.5
        return out

    frame = np.arange(2000, dtype=np.float32).reshape(100, 20)
    errors = width_study.band_errors(off_by_half, frame, frame, truth, (50, 10), slice(6, 14), border=5)
    assert errors == pytest.approx([0.5, 0.5]) and seen == [(50, 10), (50, 10)]
    with pytest.raises(ValueError, match="does not cover"):
        width_study.band_errors(off_by_half, frame, frame, truth, (50, 4), slice(6, 14), border=5)
    # per line: a field off by the line's index on full-width bands of 50 rows, 5 excluded at each end
    by_line = width_study.line_errors(lambda pre, post: np.zeros((2, 50, 20)) + np.arange(20.0),
                                      frame, frame, np.zeros_like(truth), 50, border=5)
    np.testing.assert_allclose(by_line[0], 80 * np.arange(20.0) ** 2)  # 2 bands of 40 rows
    np.testing.assert_allclose(by_line[1], 80)


class UniformLevels(torch.nn.Module):
    """Stand-in PWC output for a uniform truth of 1.5 samples: a coarse level (half resolution) off by 2 samples,
    a fine one exact, an output off by 0.5; records the standard deviation of the pre input it was given."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.stds: list[float] = []

    def forward(self, pre, post):
        self.stds.append(float(pre.std(correction=0)))
        n, _, h, w = pre.shape
        exact = torch.zeros(n, 2, h, w)
        exact[:, 0] = 1.5
        coarse = F.avg_pool2d(exact, 2) + torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
        return {"levels": [coarse, exact], "displacement": exact + torch.tensor([0.5, 0.0]).view(1, 2, 1, 1)}


def test_input_width_level_errors_score_every_level_on_the_crop(width_study):
    truth = np.zeros((2, 100, 20), np.float32)
    truth[0] = 1.5  # uniform: the bilinear upsampling of the coarse level is exact
    frame = 3.0 * np.random.default_rng(0).standard_normal((100, 20)).astype(np.float32)
    model = UniformLevels()
    errors = width_study.level_errors(model, frame, frame, truth, (50, 10), slice(6, 14), border=5)
    assert errors == [pytest.approx([2.0, 0.0, 0.5])] * 2  # two bands; coarse to fine, then the output
    assert model.stds == pytest.approx([1.0, 1.0])  # scaled by each pre crop's std, as the estimator does
    with pytest.raises(ValueError, match="does not cover"):
        width_study.level_errors(model, frame, frame, truth, (50, 4), slice(6, 14), border=5)

def test_input_width_study_scores_every_crop_on_every_pair(width_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    name = f"teacher/{stages[-1].name}"
    out = tmp_path / "w.json"
    result = width_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
                               "--artifact", name, "--rows", "192"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    crops = result["networks"][0]["crops"]
    assert list(crops) == ["192x32", "192x48", "128x32", "384x32"]
    for key, entry in crops.items():
        h = int(key.split("x")[0])
        assert len(entry["per_pair_per_band"]) == p["n_test"]
        assert all(len(bands) == p["n_samples"] // h for bands in entry["per_pair_per_band"])
        assert np.isfinite(entry["mean_axial_rmse"]) and entry["mean_axial_rmse"] >= 0
        levels = entry["level_median_axial_rmse"]  # every estimator level, then the output
        assert len(levels) == len(result["networks"][0]["level_strides"]) + 1 and all(np.isfinite(levels))
    line_profile = result["networks"][0]["line_profile"]
    assert line_profile["rows"] == 192
    for mode in ("whole_width", "strips"):
        assert len(line_profile[mode]) == p["n_lines"] and all(np.isfinite(line_profile[mode]))
    with pytest.raises(SystemExit):
        width_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--artifact", name, "--width", "0"])


def test_input_width_level_errors_end_with_the_estimators_band_errors(width_study, smoke_teacher, data_root):
    # the study takes each crop's output error from the per-level forward instead of running the network twice
    from cdpkd.estimators import network_estimator
    from cdpkd.recipes import load_trained
    from cdpkd.sim import read_pair

    p, stages = smoke_teacher
    model = load_trained(stages[-1], "cpu")
    pair = read_pair(notebook_datasets(data_root, p, workers=1)["test"], 0)
    args = (pair.pre, pair.post, pair.displacement, (192, 48), slice(12, 36), p["border_samples"])
    by_level = width_study.level_errors(model, *args)
    assert [levels[-1] for levels in by_level] == width_study.band_errors(network_estimator(model, "cpu"), *args)


@pytest.fixture(scope="module")
def diagnostics_study():
    return load_study("teacher_diagnostics.py")


def test_diagnostics_helpers_on_known_fields(diagnostics_study):
    def constant(pre, post):  # a fixed (axial 2, lateral 1) field whatever the input
        return np.stack([np.full(pre.shape, 2.0, np.float32), np.ones(pre.shape, np.float32)])

    frame = np.zeros((16, 8), np.float32)
    averaged = diagnostics_study.mirrored(constant)(frame, frame)
    np.testing.assert_allclose(averaged[0], 2.0)  # axial unchanged by a lateral mirror
    np.testing.assert_allclose(averaged[1], 0.0)  # lateral: +1 and the mirrored run's -1
    depth_only = np.tile(np.sin(np.arange(300.0))[:, None], (1, 40))
    structure = diagnostics_study.error_structure(depth_only, (10, 2))
    assert structure["depth_profile_share"] == pytest.approx(1.0)
    bands = diagnostics_study.depth_bands(np.full((300, 4), 0.5), np.ones((300, 4), bool))
    assert [b["rows"] for b in bands] == [[0, 128], [128, 256], [256, 300]]
    assert all(b["strain_rmse"] == pytest.approx(0.5) for b in bands)
    truth = np.stack([np.tile(np.linspace(0.0, 4.0, 300, endpoint=False)[:, None], (1, 4)), np.zeros((300, 4))])
    locked = truth.copy()
    locked[0] = np.round(truth[0])  # an estimator that snaps to whole samples
    curve = diagnostics_study.locking_curve(locked, truth, np.ones((300, 4), bool))
    assert curve[0] < 0 < curve[-1] and curve[3] < 0 < curve[4]  # too low below a half, too high above
    assert curve[0] == pytest.approx(-1 / 16, abs=0.01)  # mean of -frac over [0, 1/8)
    assert diagnostics_study.locking_curve(truth, truth, np.ones((300, 4), bool)) == [0.0] * 8
    whole = np.zeros((2, 300, 4))  # every true displacement a whole number: the other eighths are empty
    assert diagnostics_study.locking_curve(whole, whole, np.ones((300, 4), bool)) == [0.0] + [None] * 7


def test_diagnostics_study_records_every_part(diagnostics_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    teacher = stages[-1]
    out = tmp_path / "diagnostics.json"
    result = diagnostics_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
                                     "--artifact", f"teacher/{teacher.name}", "--pairs", "0"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["pairs"]
    assert set(row["modes"]) == {"plain", "guided", "guided_median_centred", "guided_mirror_average", "ncc"}
    assert set(row["depth_bands"]) == {"plain", "guided"} and set(row["structure"]) == {"guided", "ncc"}
    assert set(row["smoothed"]) == set(row["smoothed_ncc"]) == {"1x9", "21x9", "41x9", "61x9"}
    assert set(row["locking"]) == {"guided", "ncc"} and all(len(c) == 8 for c in row["locking"].values())
    assert row["release"]["true_mean_axial_strain"] > 0  # released tissue expands
    with pytest.raises(SystemExit, match="no trained model"):
        diagnostics_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--artifact", "teacher/missing"])


@pytest.fixture(scope="module")
def offsets_study():
    return load_study("real_data_offsets.py")


def test_real_data_offsets_agreement_by_depth_on_known_fields(offsets_study):
    rng = np.random.default_rng(1)
    frame = rng.standard_normal((300, 20)).astype(np.float32)
    post = np.roll(frame, 3, axis=0)  # tissue 3 samples deeper in the post frame
    right = np.zeros((2, 300, 20), np.float32)
    right[0] = 3.0
    wrong = right.copy()
    wrong[0, 100:] = -3.0  # lost below row 100
    bands = offsets_study.agreement_by_depth(frame, post, wrong, right, band=100)
    assert [b["rows"] for b in bands] == [[0, 100], [100, 200], [200, 300]]
    assert bands[0]["warp_ncc"] == pytest.approx(1.0) and bands[0]["share_off"] == 0.0
    assert all(abs(b["warp_ncc"]) < 0.2 and b["share_off"] == 1.0 for b in bands[1:])
    same = offsets_study.agreement_by_depth(frame, post, right, right, band=100)
    assert all(b["share_off"] == 0.0 and b["warp_ncc"] == pytest.approx(1.0) for b in same)
    assert all("mean_axial_strain" not in b for b in same)
    # With a strain window: the mean axial strain of each band, inside the border.
    strained = np.zeros((2, 300, 20), np.float32)
    rows = np.arange(300, dtype=np.float32)
    strained[0] = np.where(rows < 100, -0.01 * rows, -1.0 - 0.002 * (rows - 100))[:, None]  # -1 %, then -0.2 %
    bands = offsets_study.agreement_by_depth(frame, frame, strained, right, band=100, strain_window=11, border=(8, 2))
    assert bands[0]["mean_axial_strain"] == pytest.approx(-0.01, abs=2e-4)
    assert bands[2]["mean_axial_strain"] == pytest.approx(-0.002, abs=1e-5)


def test_real_data_offsets_describe_on_known_fields(offsets_study):
    rng = np.random.default_rng(0)
    frame = rng.standard_normal((200, 40)).astype(np.float32)
    disp = np.zeros((2, 200, 40), np.float32)
    disp[0] = -0.01 * np.arange(200, dtype=np.float32)[:, None]  # probe-fixed compression: 0 at the top, negative below
    rois = {"inclusion": np.zeros((200, 40), bool), "background": np.zeros((200, 40), bool)}
    rois["inclusion"][80:120, 5:15] = True
    rois["background"][80:120, 25:35] = True
    row = offsets_study.describe(frame, frame, disp, 31, (32, 4), rois)
    assert row["mean_axial_strain"] == pytest.approx(-0.01, abs=1e-6)
    assert row["axial_p99"] <= -0.3 and row["axial_p01"] == pytest.approx(-1.66, abs=0.01)
    assert row["axial_p50"] == pytest.approx(-1.0, abs=0.01)
    assert row["snre"] > 1e3  # a uniform strain: no variation in the background
    assert set(row) == {"warp_ncc", "axial_p01", "axial_p50", "axial_p99", "mean_axial_strain", "snre", "cnr_db"}


def test_real_data_offsets_refuses_missing_inputs(offsets_study, tmp_path):
    with pytest.raises(SystemExit, match="no trained model"):
        offsets_study.main(["--profile", "smoke", "--data-dir", str(tmp_path), "--artifact", "teacher/missing"])
    (tmp_path / "teacher" / "x").mkdir(parents=True)
    (tmp_path / "teacher" / "x" / "model.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="real data missing"):
        offsets_study.main(["--profile", "smoke", "--data-dir", str(tmp_path), "--artifact", "teacher/x",
                            "--real-data-dir", str(tmp_path / "nowhere"), "--tile", "256", "128", "--whole-frame"])
    with pytest.raises(SystemExit):  # argparse: tiles are two sizes >= 1
        offsets_study.main(["--profile", "smoke", "--data-dir", str(tmp_path), "--artifact", "teacher/x",
                            "--tile", "256", "0"])


def test_study_helpers_default_output_and_missing_models(tmp_path):
    helpers = load_study("_study.py")
    parser = helpers.study_parser("First line.\nMore.", "some_study")
    helpers.add_artifact_argument(parser, repeatable=True)
    args = parser.parse_args(["--profile", "smoke", "--artifact", "teacher/a", "--artifact", "dpnet/b"])
    assert parser.description == "First line."
    assert helpers.output_path(args) == ROOT / "studies" / "results" / "some_study_smoke.json"
    assert helpers.output_path(parser.parse_args(["--artifact", "x", "--out", str(tmp_path / "o.json")])) == (
        tmp_path / "o.json"
    )
    (tmp_path / "teacher" / "a").mkdir(parents=True)
    (tmp_path / "teacher" / "a" / "model.pt").write_bytes(b"")
    assert helpers.trained_folders(tmp_path, ["teacher/a"]) == {"teacher/a": tmp_path / "teacher" / "a"}
    with pytest.raises(SystemExit, match=r"no trained model in \['dpnet/b'\]"):
        helpers.trained_folders(tmp_path, args.artifact)
    assert helpers.json_object('{"a": [1, 2]}', "--x") == {"a": [1, 2]}
    for bad, message in (("{a: 1}", "--x: invalid JSON"), ("[1]", "--x: the JSON must be an object")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            helpers.json_object(bad, "--x")


@pytest.fixture(scope="module")
def objective_study():
    return load_study("teacher_objective.py")


def test_objective_polish_finds_a_known_shift(objective_study):
    """Descent on the field alone recovers a known sub-sample axial shift of a smooth random pattern,
    and the objective of identical frames at zero displacement is ~0."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:16].astype(np.float64)
    waves = [(rng.uniform(0.2, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(0, 2 * np.pi)) for _ in range(6)]

    def pattern(shift: float) -> np.ndarray:
        return sum(np.cos(ky * (y - shift) + kx * x + phase) for ky, kx, phase in waves).astype(np.float32)

    loss = UnsupervisedLoss(ncc_window=(15, 5), smooth_weight=0.05, incompressibility_weight=0.0)
    pre, post = objective_study.frames(pattern(0.0), pattern(0.6))  # tissue 0.6 samples deeper in post
    zero = np.zeros((2, 96, 16), np.float32)
    same = objective_study.objective_terms(loss, pre, pre, zero)
    assert same["total"] == pytest.approx(0.0, abs=1e-3) and same["smooth"] == pytest.approx(0.0, abs=1e-6)
    before = objective_study.objective_terms(loss, pre, post, zero)
    polished = objective_study.polish(loss, pre, post, zero, steps=200)
    after = objective_study.objective_terms(loss, pre, post, polished)
    assert after["total"] < 0.1 * before["total"]
    assert np.median(polished[0, 16:-16, 2:-2]) == pytest.approx(0.6, abs=0.03)
    assert np.abs(np.median(polished[1, 16:-16, 2:-2])) < 0.03


def test_objective_mixed_fields_take_each_component_from_its_source(objective_study):
    fields = {name: np.stack((np.full((4, 3), 10.0 * k), np.full((4, 3), 10.0 * k + 1)))
              for k, name in enumerate(("truth", "teacher", "ncc"), start=1)}
    mixed = objective_study.mixed_fields(fields)
    assert set(mixed) == {"ncc_axial_teacher_lateral", "teacher_axial_truth_lateral", "ncc_axial_truth_lateral"}
    np.testing.assert_array_equal(mixed["ncc_axial_teacher_lateral"][0], fields["ncc"][0])
    np.testing.assert_array_equal(mixed["ncc_axial_teacher_lateral"][1], fields["teacher"][1])
    np.testing.assert_array_equal(mixed["ncc_axial_truth_lateral"][1], fields["truth"][1])
    assert set(objective_study.mixed_fields({k: fields[k] for k in ("teacher", "ncc")})) == {"ncc_axial_teacher_lateral"}
    assert objective_study.mixed_fields({"truth": fields["truth"]}) == {}


def test_objective_study_scores_truth_teacher_and_ncc(objective_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    out = tmp_path / "objective.json"
    result = objective_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
                                   "--pairs", "0", "--polish-steps", "3", "--mixed"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["teacher_artifact"] == f"teacher/{stages[-1].name}"  # notebook 01's teacher, not a new one
    (row,) = result["pairs"]
    assert set(row["objective"]) == set(row["errors"]) == set(row["polished"]) == {
        "truth", "teacher", "ncc", "ncc_axial_teacher_lateral", "teacher_axial_truth_lateral", "ncc_axial_truth_lateral"}
    assert row["errors"]["ncc_axial_truth_lateral"]["disp_rmse_lateral"] == 0.0
    assert row["errors"]["ncc_axial_truth_lateral"]["strain_rmse"] == row["errors"]["ncc"]["strain_rmse"]  # axial only
    assert row["errors"]["truth"]["strain_rmse"] == 0.0 and row["errors"]["truth"]["disp_rmse_axial"] == 0.0
    for name, polished in row["polished"].items():  # a line search never climbs
        assert polished["objective"]["total"] <= row["objective"][name]["total"], name
    with pytest.raises(SystemExit):
        objective_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--polish-steps", "-1"])


def test_objective_study_audits_other_loss_settings_from_the_truth(objective_study, smoke_teacher, data_root,
                                                                     tmp_path, capsys):
    """--loss changes the objective (a heavier smoothness weight raises it at the truth), --starts truth
    scores and descends from the truth only; a bad --loss stops with the loss's own message."""
    common = ["--profile", "smoke", "--data-dir", str(data_root), "--pairs", "0", "--starts", "truth"]
    plain = objective_study.main([*common, "--polish-steps", "0", "--out", str(tmp_path / "a.json")])
    heavy = objective_study.main([*common, "--polish-steps", "2", "--out", str(tmp_path / "b.json"),
                                  "--loss", '{"smooth_weight": 50.0}'])
    assert heavy["settings"]["loss_changes"] == {"smooth_weight": 50.0}
    assert heavy["settings"]["loss"]["smooth_weight"] == 50.0 and heavy["settings"]["starts"] == ["truth"]
    assert heavy["teacher_artifact"] is None  # no teacher needed, none loaded
    (a,), (b,) = plain["pairs"], heavy["pairs"]
    assert set(a["objective"]) == set(b["objective"]) == set(b["polished"]) == {"truth"} and a["polished"] == {}
    assert a["objective"]["truth"]["smooth"] == pytest.approx(b["objective"]["truth"]["smooth"])
    assert b["objective"]["truth"]["total"] > a["objective"]["truth"]["total"]
    for bad in ('{"smooth_wieght": 1}', '[1, 2]', 'not json', '{"smooth_weight": -1}'):
        with pytest.raises(SystemExit):
            objective_study.main([*common, "--loss", bad, "--out", str(tmp_path / "c.json")])
    assert "smooth_wieght" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_objective_study_adds_a_second_smoothness_term(objective_study, smoke_teacher, data_root, tmp_path):
    """--extra-smoothness adds its term to the objective's total and smoothness (smoothness in the
    objective's own units, the other terms unchanged) and is recorded; a spec without exactly weight and lag, or a bad lag, stops the study."""
    common = ["--profile", "smoke", "--data-dir", str(data_root), "--pairs", "0", "--starts", "truth",
              "--polish-steps", "0"]
    plain = objective_study.main([*common, "--out", str(tmp_path / "a.json")])
    extra = objective_study.main([*common, "--out", str(tmp_path / "b.json"),
                                  "--extra-smoothness", '{"weight": 50.0, "lag": [4, 2]}'])
    assert extra["settings"]["extra_smoothness"] == {"weight": 50.0, "lag": [4, 2]}
    assert plain["settings"]["extra_smoothness"] is None
    a, b = plain["pairs"][0]["objective"]["truth"], extra["pairs"][0]["objective"]["truth"]
    added = b["total"] - a["total"]
    own_weight = extra["settings"]["loss"]["smooth_weight"]  # smooth stays in the objective's units
    assert added > 0 and (b["smooth"] - a["smooth"]) * own_weight == pytest.approx(added, rel=1e-4)
    assert b["similarity"] == a["similarity"] and b["incompressibility"] == a["incompressibility"]
    for bad in ('{"weight": 1}', '{"weight": 1, "lag": [2, 2], "x": 0}', '{"weight": 1, "lag": [0, 2]}'):
        with pytest.raises(SystemExit):
            objective_study.main([*common, "--extra-smoothness", bad, "--out", str(tmp_path / "c.json")])
    assert not (tmp_path / "c.json").exists()


def test_refine_study_checks_every_variant_before_training(study):
    """A bad later variant stops the study before the first variant trains (hours on the cpu profile)."""
    profile_refine = [{"steps": 400}]
    plan = study.variant_plan([("profile", {}), ("more", {"steps": 2, "after": "profile"})], profile_refine)
    assert plan == [("profile", profile_refine, None), ("more", {"steps": 2}, "profile")]
    with pytest.raises(SystemExit, match="not an earlier variant"):
        study.variant_plan([("a", {"steps": 2}), ("b", {"steps": 2, "after": "c"})], profile_refine)
    with pytest.raises(SystemExit, match="no recipe fields"):
        study.variant_plan([("a", {"steps": 2}), ("empty", {})], profile_refine)


@pytest.fixture(scope="module")
def component_loss_study():
    return load_study("component_loss.py")


def test_component_loss_study_trains_the_changed_loss_and_the_control(component_loss_study, smoke_teacher, data_root,
                                                                      tmp_path):
    out = tmp_path / "components.json"
    result = component_loss_study.main([
        "--profile", "smoke", "--data-dir", str(data_root), "--out", str(out), "--seeds", "0",
        "--loss", '{"final_weight": 0.25, "level_decay": 1.0}', "--control",
        "--variant", "CDP-KDNet (ours)", "--variant", "no distillation",
    ])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["teacher"] == smoke_teacher[1][-1].name
    p = component_loss_study.resolved_parameters("smoke", component_loss_study.NOTEBOOK)
    assert result["base_recipe"] == recipes.component_bases(p)["cdp_kdnet"].to_dict()  # notebook 04's base
    changed, control = result["runs"]["changed"], result["runs"]["profile"]
    assert [r["variant"] for r in changed] == [r["variant"] for r in control] == ["CDP-KDNet (ours)", "no distillation"]
    assert result["losses"]["changed"]["final_weight"] == 0.25 and result["losses"]["changed"]["level_decay"] == 1.0
    assert result["losses"]["profile"] != result["losses"]["changed"]
    # another loss is another recipe: no run is shared between the two settings
    assert not {r["artifact"] for r in changed} & {r["artifact"] for r in control}
    for label in ("changed", "profile"):
        for row in result["runs"][label]:
            assert np.isfinite(row["strain_rmse"]) and row["strain_rmse"] > 0
        assert set(result["summary"][label]) == {"CDP-KDNet (ours)", "no distillation"}


def test_component_loss_study_rejects_unknown_loss_fields_and_variants(component_loss_study, data_root, tmp_path):
    common = ["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json")]
    with pytest.raises(SystemExit, match="unknown key.*smooth_wieght"):
        component_loss_study.main([*common, "--loss", '{"smooth_wieght": 1}'])
    with pytest.raises(SystemExit, match="smooth_weight must be"):
        component_loss_study.main([*common, "--loss", '{"smooth_weight": -1}'])
    with pytest.raises(SystemExit, match="not components variants"):
        component_loss_study.main([*common, "--loss", '{"final_weight": 1}', "--variant", "no pruning"])
    assert not (tmp_path / "x.json").exists()


# studies/notebook_variant.py: a notebook runs with a changed parameter into its own work folder;
# changes no notebook declares, or that would move its inputs and outputs, are refused before anything runs.
@pytest.fixture(scope="module")
def variant_study():
    return load_study("notebook_variant.py")


def test_variant_study_runs_the_notebook_with_the_change_into_the_work_dir(variant_study, data_root, tmp_path):
    work, out = tmp_path / "work", tmp_path / "variant.json"
    result = variant_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
                                 "--name", "no_timing", "--notebook", "00", "--set", "timing_repeats=0",
                                 "--work-dir", str(work)])
    assert json.loads(out.read_text()) == result
    assert result["changes"] == {"timing_repeats": 0} and result["profile"] == "smoke"
    own = result["notebooks"]["00_data_simulation"]["result"]
    assert own["notebook"] == "00_data_simulation" and own["profile"] == "smoke"
    assert (work / "smoke" / "00_data_simulation.json").is_file()
    # papermill's injected cell carries the change, after the profile's own values
    executed = json.loads((work / "00_data_simulation.ipynb").read_text())
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "timing_repeats = 0" in "".join(injected["source"])


@pytest.mark.parametrize("argv, message", [
    (["--notebook", "00", "--set", "no_such_parameter=1"], "has no parameter ['no_such_parameter']"),
    (["--notebook", "00", "--set", "results_dir=\"/tmp\""], "the study sets profile, data_dir, results_dir itself"),
    (["--notebook", "00", "--set", "timing_repeats"], "expected NAME=VALUE"),
    (["--notebook", "99", "--set", "timing_repeats=0"], "no such notebook"),
    (["--notebook", "00", "--set", '{"timing_repeats": 0, "data_dir": "/tmp"}'], "the study sets profile"),
])
def test_variant_study_refuses_bad_changes_before_running(variant_study, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        variant_study.main(["--profile", "smoke", "--name", "bad", "--out", str(tmp_path / "x.json"),
                            "--work-dir", str(tmp_path / "work"), *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "work").exists()


def test_parse_setting_reads_json_keeps_plain_strings_and_takes_objects(variant_study):
    parse = variant_study.parse_setting  # studies/_study.py's, shared by every study with --set
    assert parse("student_width_multiple=16") == {"student_width_multiple": 16}
    assert parse('teacher_loss_overrides={"final_weight": 2.0}') == {"teacher_loss_overrides": {"final_weight": 2.0}}
    assert parse("distiller=feature") == {"distiller": "feature"}
    assert parse('{"teacher_steps": 3, "teacher_lr": 1e-4}') == {"teacher_steps": 3, "teacher_lr": 1e-4}
    for bad in ("timing_repeats", "=3", "not a name=3", "{not json"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_merge_settings_refuses_a_parameter_set_twice(variant_study):
    assert variant_study.merge_settings([{"a": 1}, {"b": {"c": 2}}]) == {"a": 1, "b": {"c": 2}}
    with pytest.raises(SystemExit, match=r"\['a'\] set more than once"):
        variant_study.merge_settings([{"a": 1}, {"a": 2, "b": 3}])


@pytest.fixture(scope="module")
def strain_scale_study():
    return load_study("strain_scale.py")


def test_strain_scale_study_scores_the_same_pairs_at_a_scaled_strain(strain_scale_study, smoke_teacher, data_root,
                                                                     tmp_path):
    p, stages = smoke_teacher
    name = f"teacher/{stages[-1].name}"
    out = tmp_path / "scale.json"
    result = strain_scale_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(out),
                                      "--artifact", name, "--scale", "0.25"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    unscaled, scaled = result["scales"]
    assert (unscaled["scale"], scaled["scale"]) == (1.0, 0.25)
    # scale 1 is the notebooks' own test set (a cache hit), the scaled set another artifact
    assert unscaled["dataset"] == notebook_datasets(data_root, p, workers=1)["test"].parent.name
    assert scaled["dataset"] != unscaled["dataset"]
    # the same phantoms at a quarter of the strain
    assert scaled["inclusions"] == unscaled["inclusions"]
    assert scaled["applied_strain_pct"] == pytest.approx([0.25 * s for s in unscaled["applied_strain_pct"]])
    for row in result["scales"]:
        assert set(row["methods"]) == {"ncc", name}
        for method in row["methods"].values():
            assert len(method["per_pair_strain_rmse"]) == len(method["per_pair_snre"]) == p["n_test"]
            assert method["mean"]["strain_rmse"] == pytest.approx(sum(method["per_pair_strain_rmse"]) / p["n_test"])
    # NCC's error depends on the strain: the two scales give different numbers
    assert scaled["methods"]["ncc"]["per_pair_strain_rmse"] != unscaled["methods"]["ncc"]["per_pair_strain_rmse"]
    with pytest.raises(SystemExit):
        strain_scale_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--artifact", name,
                                 "--scale", "0"])


def test_strain_scale_study_refuses_a_set_that_is_not_the_scaled_pairs(strain_scale_study, smoke_teacher, data_root,
                                                                       tmp_path, monkeypatch):
    """If the scaled set's pairs were not the unscaled ones at the scaled strain (e.g. a simulator that
    draws the strain from another stream), the study stops instead of comparing different phantoms."""
    p, stages = smoke_teacher
    real = strain_scale_study.scaled_test_set
    monkeypatch.setattr(strain_scale_study, "scaled_test_set",
                        lambda data_dir, params, scale: real(data_dir, {**params, "seed": params["seed"] + 1}, scale)
                        if scale != 1.0 else real(data_dir, params, scale))
    with pytest.raises(RuntimeError, match="not the unscaled ones"):
        strain_scale_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "x.json"),
                                 "--artifact", f"teacher/{stages[-1].name}", "--scale", "0.5"])


def test_guided_tiles_study_scores_ncc_seeded_by_each_mode(guided_study, smoke_teacher, data_root, tmp_path):
    p, stages = smoke_teacher
    result = guided_study.main(["--profile", "smoke", "--data-dir", str(data_root), "--out", str(tmp_path / "s.json"),
                                "--artifact", f"teacher/{stages[-1].name}", "--ncc-seeded"])
    (row,) = result["networks"]
    assert set(row["modes"]) == {"plain", "guided", "plain+ncc", "guided+ncc", "ncc"}
    for mode in row["modes"].values():
        assert len(mode["per_pair_strain_rmse"]) == p["n_test"]
    # seeded by the guided estimate, block matching lands closer to the truth than the network did
    assert row["modes"]["guided+ncc"]["mean"]["disp_rmse_axial"] < row["modes"]["guided"]["mean"]["disp_rmse_axial"]
