"""The training-throughput benchmark: every teacher stage of a profile, timed from the loop's own log."""

from __future__ import annotations

import json

import pytest

from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import teacher_stage_recipes


def test_teacher_stage_recipes_follow_the_refinement_chain():
    params = resolved_parameters("cpu", NOTEBOOK_DIR / "01_teacher.ipynb")
    stages = teacher_stage_recipes(params)
    assert len(stages) == 1 + len(params["teacher_refine"])
    assert stages[0].init_from is None and all(s.init_from for s in stages[1:])
    last = params["teacher_refine"][-1]
    assert stages[-1].steps == last["steps"]
    head = [s for s in stages if s.trainable == ["refine."]]
    assert head and all(s.model_config().refine_widths for s in stages[stages.index(head[0]):])
    assert not stages[0].model_config().refine_widths  # the base has no head: it is added later


@pytest.mark.slow
def test_training_benchmark_times_every_stage(tmp_path, load_benchmark):
    module = load_benchmark("training")
    assert module.main(["--profile", "smoke", "--steps", "8", "--pairs", "4", "--device", "cpu",
                        "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("training_smoke_cpu-*.json")
    result = json.loads(path.read_text())
    stages = teacher_stage_recipes(resolved_parameters("smoke", NOTEBOOK_DIR / "01_teacher.ipynb"))
    assert [s["profile_steps"] for s in result["stages"]] == [s.steps for s in stages]
    for row in result["stages"]:
        assert len(row["s_per_step_records"]) >= 2 and row["median_s_per_step"] > 0
        assert row["projected_s"] == pytest.approx(row["median_s_per_step"] * row["profile_steps"])
    assert result["projected_teacher_training_s"] == pytest.approx(sum(r["projected_s"] for r in result["stages"]))
    assert result["simulation"]["seconds_per_pair"] > 0 and result["git_sha"] and result["device"]


def test_training_benchmark_refuses_too_few_steps_or_pairs(capsys, load_benchmark):
    module = load_benchmark("training")
    with pytest.raises(SystemExit):
        module.main(["--steps", "2"])
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--pairs", "2"])
    assert "--pairs" in capsys.readouterr().err
