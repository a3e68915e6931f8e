"""Students of a teacher: the distillation objective, one-shot pruning to a joint budget, DP-Net and
CDP-KDNet recipes end to end on tiny data (budget reached, reloadable without pruning code)."""

import copy
import json

import pytest
import torch

from cdpkd.complexity import count_flops
from cdpkd.losses import UnsupervisedLoss, UnsupervisedLossConfig
from cdpkd.losses.distill import OutputDistillation
from cdpkd.models import build_model, count_parameters, load_model
from cdpkd.recipes import (
    CDPKDRecipe,
    DPNetRecipe,
    StudentBudget,
    UnsupervisedRecipe,
    ensure_cdp_kdnet,
    ensure_dpnet,
    ensure_unsupervised_model,
    one_shot_prune,
    read_student_report,
)
from cdpkd.sim.dataset import write_dataset
from cdpkd.train.curriculum import Schedule
from cdpkd.train.distillation import DistillationObjective

CROP = (128, 32)


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    from cdpkd.sim import ImagingConfig, SimulationConfig

    config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
    root = tmp_path_factory.mktemp("students")
    return write_dataset(root / "sim_train" / "key" / "pairs.h5", config, 4, base_seed=11, workers=1)


@pytest.fixture(scope="module")
def teacher_dir(train_set, tmp_path_factory):
    recipe = UnsupervisedRecipe(
        model="umen_teacher_smoke", crop=CROP, steps=4, batch_size=2, warmup_steps=1, val_pairs=1, seed=0
    )
    return ensure_unsupervised_model(tmp_path_factory.mktemp("art"), "teacher", recipe, train_set)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pre": torch.randn(2, 1, 64, 32, generator=g), "post": torch.randn(2, 1, 64, 32, generator=g)}


# ----------------------------------------------------------------------------- objective
def test_objective_is_zero_kd_for_a_copy_and_trains_the_student_only():
    teacher = build_model("umen_teacher_smoke", seed=1)
    student = copy.deepcopy(teacher)
    objective = DistillationObjective(teacher, OutputDistillation(), None)
    terms = objective(student, _batch(), 0)
    assert terms["kd_total"].item() == pytest.approx(0.0, abs=1e-12)
    assert all(not p.requires_grad for p in teacher.parameters()), "the teacher is frozen"
    assert not any(k.startswith("_teacher") for k in objective.state_dict()), (
        "the teacher is not checkpointed"
    )

    student = build_model("umen_teacher_smoke", seed=2)
    before = [p.detach().clone() for p in teacher.parameters()]
    terms = objective(student, _batch(), 0)
    assert terms["kd_total"].item() > 0
    terms["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


def test_objective_adds_weighted_terms_and_follows_the_schedule():
    teacher, student = build_model("umen_teacher_smoke", seed=1), build_model("umen_teacher_smoke", seed=2)
    unsup = UnsupervisedLoss(UnsupervisedLossConfig())
    schedule = Schedule(
        kind="linear",
        start_value=1.0,
        end_value=0.0,
        start_step=0,
        end_step=10,
        name="kd_weight",
        domain="weight",
    )
    objective = DistillationObjective(teacher, OutputDistillation(), unsup, kd_weight=schedule)
    batch = _batch(3)
    at0, at5 = objective(student, batch, 0), objective(student, batch, 5)
    assert at0["kd_weight"].item() == 1.0 and at5["kd_weight"].item() == 0.5
    for terms, w in ((at0, 1.0), (at5, 0.5)):
        expected = terms["unsup_total"] + w * terms["kd_total"]
        assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_objective_bad_input():
    teacher = build_model("umen_teacher_smoke", seed=1)
    with pytest.raises(ValueError, match="distiller"):
        DistillationObjective(teacher, None, None)
    with pytest.raises(ValueError, match="kd_weight"):
        DistillationObjective(teacher, OutputDistillation(), None, kd_weight=-1.0)


# ----------------------------------------------------------------------------- one-shot pruning
@pytest.mark.parametrize(
    "budget", [StudentBudget(0.4, 0.5, 2), StudentBudget(None, 0.3, 1), StudentBudget(0.5, None, 2)]
)
def test_one_shot_prune_meets_the_joint_budget(budget):
    teacher = build_model("umen_teacher_smoke", seed=0)
    student, report = one_shot_prune(teacher, budget, CROP)
    p = count_parameters(student) / count_parameters(teacher)
    f = count_flops(student, *CROP) / count_flops(teacher, *CROP)
    assert report["params_fraction"] == pytest.approx(p) and report["flops_fraction"] == pytest.approx(f)
    if budget.params_fraction is not None:
        assert p <= budget.params_fraction
    if budget.flops_fraction is not None:
        assert f <= budget.flops_fraction
    assert all(c["student"] <= c["teacher"] for c in report["channels"].values())


def test_width_multiple_enters_the_cache_key_only_when_set():
    plain = DPNetRecipe(budget=BUDGET, steps=5)
    assert set(plain.cache_dict()["budget"]) == {"params_fraction", "flops_fraction", "min_channels"}
    assert plain.to_dict()["budget"]["multiple_of"] == 1  # still recorded in full
    rounded = DPNetRecipe(budget={**plain.to_dict()["budget"], "multiple_of": 8}, steps=5)
    assert rounded.cache_dict()["budget"]["multiple_of"] == 8
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="multiple_of"):
            StudentBudget(0.4, 0.5, 2, bad)


def test_budget_and_recipe_bad_settings():
    with pytest.raises(ValueError, match="params_fraction"):
        StudentBudget(None, None)
    with pytest.raises(ValueError, match="flops_fraction"):
        StudentBudget(0.4, 1.5)
    with pytest.raises(ValueError, match="init"):
        DPNetRecipe(init="imagenet")
    with pytest.raises(ValueError, match="distiller"):
        CDPKDRecipe(distiller="no_such_method")
    with pytest.raises(ValueError, match="prune_start"):
        CDPKDRecipe(prune_start=0.8, prune_end=0.2)


# ----------------------------------------------------------------------------- end to end
BUDGET = StudentBudget(0.4, 0.5, 2)


def _tiny_cdp(**changes):
    """A CDP-KDNet recipe of a few steps on the tiny teacher, at ``BUDGET``, with ``changes``."""
    settings = dict(
        budget=BUDGET,
        crop=CROP,
        steps=4,
        batch_size=2,
        warmup_steps=1,
        val_pairs=0,
        seed=0,
        prune_end=0.5,
        prune_every=1,
        finetune_steps=1,
        curriculum=False,
    )
    return CDPKDRecipe(**{**settings, **changes})


def _assert_reloads_at_budget(path, budget):
    report = read_student_report(path)
    assert report["params_fraction"] <= budget.params_fraction
    assert report["flops_fraction"] <= budget.flops_fraction
    spec = json.loads((path / "model.pt.json").read_text())
    assert spec, "the pruned channel configuration is saved as JSON next to the weights"
    model = load_model(path / "model.pt")  # no pruning code involved
    assert count_parameters(model) == report["student_params"]
    pre = torch.randn(1, 1, *CROP)
    assert model(pre, pre)["displacement"].shape == (1, 2, *CROP)
    return report


def test_dpnet_recipe_trains_at_budget_and_is_cached(train_set, teacher_dir, tmp_path):
    recipe = DPNetRecipe(budget=BUDGET, crop=CROP, steps=3, batch_size=2, warmup_steps=1, val_pairs=1, seed=0)
    path = ensure_dpnet(tmp_path, recipe, teacher_dir, train_set)
    _assert_reloads_at_budget(path, BUDGET)
    assert (path / "metrics.csv").is_file()
    stamp = (path / "model.pt").stat().st_mtime_ns
    assert ensure_dpnet(tmp_path, recipe, teacher_dir, train_set) == path
    assert (path / "model.pt").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("criterion, distiller", [("taylor", "output"), ("l1", "feature")])
def test_cdp_kdnet_recipe_reaches_the_budget(train_set, teacher_dir, tmp_path, criterion, distiller):
    """A seeded run prunes dynamically under the curriculum with distillation and ends at the budget."""
    recipe = _tiny_cdp(
        steps=6,
        val_pairs=1,
        criterion=criterion,
        distiller=distiller,
        finetune_steps=2,
        curriculum=True,
        start_fraction=0.5,
        end_step_fraction=0.5,
    )
    path = ensure_cdp_kdnet(tmp_path, recipe, teacher_dir, train_set)
    report = _assert_reloads_at_budget(path, BUDGET)
    assert len(report["difficulty"]) == 3  # 4 pairs, 1 held out for validation
    log = (path / "prune_metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    for key in (
        "prune_progress",
        "prune_params_fraction",
        "prune_flops_fraction",
        "curriculum_fraction",
        "loss_kd_total",
        "loss_unsup_total",
    ):
        assert key in header, key
    last = dict(zip(header, log[-1].split(",")))
    assert float(last["prune_progress"]) == 1.0
    assert float(last["prune_params_fraction"]) <= BUDGET.params_fraction
    assert (path / "finetune_metrics.csv").is_file()


def test_cdp_kdnet_ablations_static_pruning_without_distillation(train_set, teacher_dir, tmp_path):
    """The ablation's "static pruning" (masks fixed after the first step) and "no distillation" (no kd
    terms computed at all) still end at the budget."""
    recipe = _tiny_cdp(val_pairs=1, prune_end=0.0, kd_weight=0.0, kd_final_weight=None)
    assert recipe.prune_steps == (0, 1) and not recipe.distills
    path = ensure_cdp_kdnet(tmp_path, recipe, teacher_dir, train_set)
    _assert_reloads_at_budget(path, BUDGET)
    log = (path / "prune_metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    assert "loss_kd_total" not in header and "loss_unsup_total" in header
    rows = [dict(zip(header, line.split(","))) for line in log[1:]]
    # logged steps count from 1: the first update left everything, the second set the final masks for good
    assert [float(r["prune_progress"]) for r in rows] == [0.0] + [1.0] * (len(rows) - 1)


def test_curriculum_scores_are_computed_once_per_teacher_and_data(train_set, teacher_dir, monkeypatch):
    from cdpkd.recipes import students

    calls = []
    real = students.difficulty_scores

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(students, "difficulty_scores", counting)
    monkeypatch.setattr(students, "_SCORES", {})
    recipe = CDPKDRecipe(crop=CROP, steps=2)
    teacher = load_model(teacher_dir / "model.pt")
    a = students.curriculum_scores(recipe, teacher, train_set, [0, 1], None)
    a[:] = -1  # callers get copies
    b = students.curriculum_scores(recipe, load_model(teacher_dir / "model.pt"), train_set, [0, 1], None)
    assert len(calls) == 1 and (b >= 0).all()
    with torch.no_grad():
        next(teacher.parameters()).add_(1.0)  # other teacher weights: scored again
    students.curriculum_scores(recipe, teacher, train_set, [0, 1], None)
    students.curriculum_scores(recipe, teacher, train_set, [0, 2], None)  # other pairs: again
    assert len(calls) == 3


@pytest.mark.parametrize(
    "label", ["output-only", "KD-MRI (attention + imitation)", "teacher-level (breast US KD)", "MAVKD"]
)
def test_every_ablation_distiller_trains_through_pruning_and_finetuning(
    train_set, teacher_dir, tmp_path, label
):
    """Notebook 04's distillation rows (the smoke profile runs only two of them) train end to end."""
    from cdpkd.ablation import DISTILLATION_METHODS

    name, options = DISTILLATION_METHODS[label]
    recipe = _tiny_cdp(steps=3, distiller=name, distiller_options=options)
    path = ensure_cdp_kdnet(tmp_path, recipe, teacher_dir, train_set)
    _assert_reloads_at_budget(path, BUDGET)
    header = (path / "finetune_metrics.csv").read_text().splitlines()[0].split(",")
    assert "loss_kd_total" in header
