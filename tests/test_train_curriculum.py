"""cdpkd.train.curriculum: difficulty scores, pacing, the easy-to-hard batch plan, schedules."""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from cdpkd.train import BatchPlan, FitConfig, fit
from cdpkd.train.curriculum import (
    PACINGS,
    SCHEDULE_KINDS,
    CurriculumBatches,
    Schedule,
    combine_difficulties,
    decorrelation_difficulty,
    difficulty_components,
    difficulty_scores,
    distillation_weight_schedule,
    pacing,
    pacing_curve,
    pruning_ratio_schedule,
    rank_normalize,
    strain_difficulty,
    teacher_confidence_difficulty,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 simulated pairs of 128 x 16 (a fraction of a second to simulate)."""
    from cdpkd.sim import ImagingConfig, SimulationConfig, write_dataset

    config = SimulationConfig(imaging=ImagingConfig(n_samples=128, n_lines=16))
    path = tmp_path_factory.mktemp("curriculum") / "pairs.h5"
    write_dataset(path, config, 4, base_seed=5, workers=1)
    with h5py.File(path) as f:
        strain = f["applied_strain"][:]
    assert len(set(np.round(strain, 6))) == 4  # distinct strains, so the ranking is meaningful
    return path


def true_displacements(path):
    with h5py.File(path) as f:
        return f["displacement"][:]


# --- difficulty ----------------------------------------------------------------------------


def test_strain_difficulty_ranks_larger_strain_harder(dataset):
    with h5py.File(dataset) as f:
        strain = f["applied_strain"][:]
    raw = strain_difficulty(dataset)
    assert np.allclose(raw, strain)
    scores = difficulty_scores(dataset, kinds=("strain",))
    assert np.array_equal(np.argsort(scores), np.argsort(strain))
    assert scores[np.argmax(strain)] == 1.0 and scores[np.argmin(strain)] == 0.0
    # a subset, in the caller's order (matches RFPairDataset(indices=...))
    assert np.allclose(strain_difficulty(dataset, indices=[3, 1]), strain[[3, 1]])
    # on simulated pairs the most compressed pair is also the most decorrelated, and hardest overall
    assert np.argmax(decorrelation_difficulty(dataset)) == np.argmax(strain)
    assert np.argmax(difficulty_scores(dataset)) == np.argmax(strain)


def test_decorrelation_difficulty_grows_with_noise(dataset, tmp_path):
    path = tmp_path / "noisy.h5"
    shutil.copy(dataset, path)
    rng = np.random.default_rng(0)
    with h5py.File(path, "r+") as f:
        for i, level in enumerate([0.0, 0.3, 1.0, 3.0]):
            pre = f["pre"][i]
            f["post"][i] = pre + level * pre.std() * rng.standard_normal(pre.shape).astype(np.float32)
    d = decorrelation_difficulty(path)
    assert d[0] == pytest.approx(0.0, abs=1e-9)  # identical frames
    assert np.all(np.diff(d) > 0)
    assert np.all((d >= 0) & (d <= 2))
    cropped = decorrelation_difficulty(path, crop=(64, 8))
    assert np.all(np.diff(cropped) > 0)
    # decorrelation alone, or weighted to dominate, ranks the noisier pairs harder
    combined = difficulty_scores(path, kinds=("strain", "decorrelation"), weights={"decorrelation": 1.0})
    assert np.array_equal(np.argsort(combined), [0, 1, 2, 3])


def test_teacher_confidence_true_displacement_beats_zeros(dataset):
    disp = true_displacements(dataset)
    calls = iter(range(4))

    def oracle(pre, post):
        assert pre.shape == post.shape == (128, 16) and pre.dtype == np.float32
        return disp[next(calls)]

    def zeros(pre, post):
        return np.zeros((2, *pre.shape), np.float32)

    good = teacher_confidence_difficulty(dataset, oracle)
    bad = teacher_confidence_difficulty(dataset, zeros)
    assert np.all(good < bad)
    assert np.all(good < 0.2)
    # zero displacement = no motion compensation = plain decorrelation
    assert np.allclose(bad, decorrelation_difficulty(dataset), atol=1e-6)


def test_teacher_confidence_on_a_crop_and_torch_output(dataset):
    disp = true_displacements(dataset)
    rows, cols = slice(32, 96), slice(4, 12)  # the centred 64 x 8 crop
    calls = iter(range(4))

    def oracle(pre, post):
        assert pre.shape == (64, 8)
        return torch.from_numpy(disp[next(calls)][:, rows, cols])

    good = teacher_confidence_difficulty(dataset, oracle, crop=(64, 8))
    bad = teacher_confidence_difficulty(dataset, lambda a, b: torch.zeros(2, *a.shape), crop=(64, 8))
    assert np.all(good < bad)


def test_teacher_kind_in_the_combination(dataset):
    disp = true_displacements(dataset)
    calls = iter(range(4))
    comps = difficulty_components(dataset, estimator=lambda a, b: disp[next(calls)])
    assert set(comps) == {"strain", "decorrelation", "teacher"}
    with pytest.raises(ValueError, match="needs an estimator"):
        difficulty_scores(dataset, kinds=("teacher",))
    with pytest.raises(ValueError, match="'teacher' is not in kinds"):
        difficulty_scores(dataset, kinds=("strain",), estimator=lambda a, b: disp[0])


def test_bad_estimator_output_is_named(dataset):
    with pytest.raises(ValueError, match=r"pair 0: estimator returned displacement of shape \(128, 16\)"):
        teacher_confidence_difficulty(dataset, lambda a, b: np.zeros(a.shape))
    with pytest.raises(ValueError, match="NaN"):
        teacher_confidence_difficulty(dataset, lambda a, b: np.full((2, *a.shape), np.nan))


def test_bad_difficulty_settings(dataset):
    with pytest.raises(ValueError, match="kinds"):
        difficulty_scores(dataset, kinds=("loudness",))
    with pytest.raises(ValueError, match="weights"):
        difficulty_scores(dataset, kinds=("strain",), weights=[-1.0])
    with pytest.raises(ValueError, match="weights"):
        difficulty_scores(dataset, kinds=("strain", "decorrelation"), weights=[1.0])
    with pytest.raises(ValueError, match="crop"):
        decorrelation_difficulty(dataset, crop=(256, 8))
    with pytest.raises(ValueError, match="indices"):
        strain_difficulty(dataset, indices=[0, 4])


def test_rank_normalize_and_combine():
    assert np.allclose(rank_normalize([10.0, -3.0, 7.0]), [1.0, 0.0, 0.5])
    assert np.allclose(rank_normalize([2.0, 2.0, 2.0]), 0.5)
    assert np.allclose(rank_normalize([1.0, 1.0, 5.0]), [0.25, 0.25, 1.0])  # ties share their mean rank
    assert np.allclose(rank_normalize([4.0]), 0.5)
    combined = combine_difficulties({"a": [1.0, 2.0, 3.0], "b": [30.0, 20.0, 10.0]}, weights=[3.0, 1.0])
    assert np.allclose(combined, [0.25, 0.5, 0.75])
    with pytest.raises(ValueError, match="NaN"):
        rank_normalize([1.0, np.nan])
    with pytest.raises(ValueError, match="different lengths"):
        combine_difficulties({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]})


# --- pacing --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PACINGS)
@pytest.mark.parametrize("start_fraction", [0.01, 0.2, 1.0])
def test_pacing_is_monotone_with_the_right_end_points(name, start_fraction):
    total, end_frac = 200, 0.6
    curve = pacing_curve(name, total, start_fraction, end_frac)
    assert curve[0] == start_fraction
    assert np.all(np.diff(curve) >= 0)
    assert np.all((curve >= start_fraction) & (curve <= 1.0))
    assert np.all(curve[120:] == 1.0)  # from end_step_fraction * total_steps on
    if start_fraction < 1:
        assert curve[119] < 1.0
    assert pacing(name, 10_000, total, start_fraction, end_frac) == 1.0  # past the run


def test_pacing_shapes():
    # root rises fastest, geometric slowest; linear is the straight line
    args = (100, 0.1, 1.0)
    mid = {name: pacing(name, 50, *args) for name in PACINGS}
    assert mid["linear"] == pytest.approx(0.1 + 0.9 * 0.5)
    assert mid["root"] == pytest.approx(math.sqrt(0.01 + 0.99 * 0.5))
    assert mid["geometric"] == pytest.approx(0.1 * 10**0.5)
    assert mid["geometric"] < mid["linear"] < mid["root"]
    assert pacing("linear", 0, 10, 0.3, 0.0) == 1.0  # end_step_fraction 0: no curriculum


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        (dict(name="cubic"), "pacing"),
        (dict(start_fraction=0.0), "start_fraction"),
        (dict(start_fraction=1.5), "start_fraction"),
        (dict(end_step_fraction=1.2), "end_step_fraction"),
        (dict(total_steps=0), "total_steps"),
        (dict(step=-1), "step"),
    ],
)
def test_bad_pacing_settings(kwargs, setting):
    args = dict(name="root", step=0, total_steps=10, start_fraction=0.2, end_step_fraction=0.5) | kwargs
    with pytest.raises(ValueError, match=setting):
        pacing(**args)


# --- CurriculumBatches ----------------------------------------------------------------------


def make_plan(n=20, batch_size=3, seed=0, total_steps=40, **kw):
    scores = np.random.default_rng(123).permutation(n).astype(float)  # item with score k is k-th easiest
    kw = dict(pacing="linear", start_fraction=0.25, end_step_fraction=0.5) | kw
    return CurriculumBatches(scores, batch_size, seed, total_steps, **kw), scores


def test_plan_is_a_batch_plan_with_easiest_pairs_first():
    plan, scores = make_plan()
    assert isinstance(plan, BatchPlan)
    assert plan.steps_per_epoch == 20 // 3
    first = plan.available(0)
    assert len(first) == 5  # ceil(0.25 * 20)
    assert sorted(scores[first]) == [0, 1, 2, 3, 4]
    assert np.array_equal(scores[plan.order], np.arange(20))
    sizes = [plan.pool_size(s) for s in range(40)]
    assert sizes == sorted(sizes)
    assert sorted(plan.available(20)) == list(range(20))  # all pairs from 0.5 * 40 on
    assert sorted(plan.available(39)) == list(range(20))


def test_plan_draws_only_available_items_with_the_batch_size():
    plan, _ = make_plan()
    for step in range(40):
        batch = plan.indices(step)
        assert len(batch) == 3 and len(set(batch)) == 3
        assert set(batch) <= set(plan.available(step).tolist())


def test_plan_is_deterministic_by_seed_and_independent_of_query_order():
    a, _ = make_plan(seed=7)
    b, _ = make_plan(seed=7)
    c, _ = make_plan(seed=8)
    steps = list(range(40))
    forward = [a.indices(s) for s in steps]
    backward = {s: b.indices(s) for s in reversed(steps)}  # as after a resume, from any step
    assert forward == [backward[s] for s in steps]
    assert forward != [c.indices(s) for s in steps]


def test_plan_covers_everything_at_the_end():
    plan, _ = make_plan(n=20, batch_size=3, total_steps=40)
    full_from = next(s for s in range(40) if plan.pool_size(s) == 20)
    per_pass = math.ceil(20 / 3)
    seen = {i for s in range(full_from, full_from + per_pass) for i in plan.indices(s)}
    assert seen == set(range(20))  # one pass over the full pool uses every item


def test_every_pass_uses_the_whole_pool():
    plan, _ = make_plan(n=10, batch_size=4, total_steps=30, start_fraction=1.0)
    for first in (0, 3, 6):  # three passes of ceil(10 / 4) = 3 steps
        seen = [i for s in range(first, first + 3) for i in plan.indices(s)]
        assert set(seen) == set(range(10))


def test_pool_is_never_smaller_than_a_global_batch():
    plan, _ = make_plan(n=20, batch_size=4, start_fraction=0.01, pacing="geometric")
    assert plan.pool_size(0) == 4
    plan2, _ = make_plan(n=20, batch_size=4, start_fraction=0.01, world_size=2, rank=1)
    assert plan2.pool_size(0) == 8
    assert len(plan2.indices(0)) == 4


def test_ranks_split_the_single_process_batch():
    one, _ = make_plan(batch_size=4, seed=3)
    ranks = [make_plan(batch_size=2, seed=3, rank=r, world_size=2)[0] for r in range(2)]
    for step in range(40):
        parts = [r.indices(step) for r in ranks]
        assert not set(parts[0]) & set(parts[1])
        assert parts[0] + parts[1] == one.indices(step)


def test_plan_logs_the_fraction_as_a_hook():
    plan, _ = make_plan()
    logs: dict = {}
    plan.on_step_end(0, None, logs)
    assert logs == {"curriculum_fraction": 0.25, "curriculum_pool": 5}


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=30), "batch_size"),
        (dict(seed=-1), "seed"),
        (dict(rank=2, world_size=2), "rank"),
        (dict(total_steps=0), "total_steps"),
        (dict(pacing="exp"), "pacing"),
        (dict(start_fraction=0), "start_fraction"),
    ],
)
def test_bad_plan_settings(kwargs, setting):
    with pytest.raises(ValueError, match=setting):
        make_plan(**kwargs)
    with pytest.raises(ValueError, match="scores"):
        CurriculumBatches([0.0, np.inf, 1.0], 1, 0, 10)


class Indexed(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"x": torch.full((1, 4, 4), float(i)), "index": torch.tensor(i)}


def test_fit_uses_the_plan_and_logs_the_schedules(tmp_path):
    plan, _ = make_plan(n=12, batch_size=2, total_steps=6, end_step_fraction=0.5)
    kd = distillation_weight_schedule(1.0, 0.0, 0, 6, kind="cosine")
    seen: dict[int, list[int]] = {}

    def loss_fn(model, batch, step):
        seen[step] = batch["index"].tolist()
        loss = kd.value(step) * (model(batch["x"]) ** 2).mean()
        return {"total": loss}

    torch.manual_seed(0)
    config = FitConfig(steps=6, batch_size=2, log_every=1, amp="off", seed=0)
    history = fit(nn.Conv2d(1, 1, 1), Indexed(12), loss_fn, config, tmp_path, plan=plan, hooks=[plan, kd])
    assert seen == {s: plan.indices(s) for s in range(6)}
    last = history[-1]
    assert last["curriculum_fraction"] == 1.0
    assert last["kd_weight"] == pytest.approx(kd.value(5))


# --- schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in SCHEDULE_KINDS if k != "constant"])
def test_schedules_hit_their_end_points(kind):
    s = Schedule(kind, 0.1, 0.6, start_step=10, end_step=50)
    assert s.value(0) == s.value(10) == 0.1
    assert s.value(50) == s.value(10_000) == 0.6
    values = s.values(60)
    assert np.all(np.diff(values) >= 0)  # rising ramps stay monotone
    down = Schedule(kind, 1.0, 0.2, start_step=0, end_step=20)
    assert down.value(0) == 1.0 and down.value(20) == 0.2 and np.all(np.diff(down.values(30)) <= 0)


def test_constant_and_kind_shapes():
    assert Schedule.from_dict({"kind": "constant", "start_value": 0.7}).value(123) == 0.7
    lin = Schedule("linear", 0.0, 1.0, start_step=0, end_step=10)
    cos = Schedule("cosine", 0.0, 1.0, start_step=0, end_step=10)
    assert lin.value(5) == pytest.approx(0.5)
    assert cos.value(5) == pytest.approx(0.5)
    assert cos.value(2) == pytest.approx(0.5 * (1 - math.cos(math.pi * 0.2)))


def test_cubic_ramp_matches_zhu_and_gupta():
    r0, rf, t0, n, dt = 0.05, 0.55, 100, 10, 20
    s = pruning_ratio_schedule(rf, t0, t0 + n * dt, initial_ratio=r0, every=dt)
    assert s.name == "pruning_ratio" and s.kind == "cubic"
    for t in range(0, t0 + n * dt + 50):
        tq = min(max(t, t0), t0 + n * dt)
        tq = t0 + (tq - t0) // dt * dt  # updated every dt steps, held in between
        expected = rf + (r0 - rf) * (1 - (tq - t0) / (n * dt)) ** 3
        assert s.value(t) == pytest.approx(expected, abs=1e-12), t
    assert s(t0 + 5 * dt) == pytest.approx(rf + (r0 - rf) * 0.5**3)


def test_schedule_json_round_trip():
    for s in (
        pruning_ratio_schedule(0.5, 10, 90, kind="cosine", every=5),
        distillation_weight_schedule(2.0),
        distillation_weight_schedule(1.0, 0.1, 0, 100),
        Schedule("linear", -1.0, 3.0, 0, 5, name="beta"),
    ):
        assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    logs: dict = {}
    distillation_weight_schedule(2.0).on_step_end(3, None, logs)
    assert logs == {"kd_weight": 2.0}


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: pruning_ratio_schedule(0.5, -1, 10), "start_step"),
        (lambda: pruning_ratio_schedule(0.5, 0, -3), "end_step"),
        (lambda: pruning_ratio_schedule(0.5, 20, 10), "end_step"),
        (lambda: pruning_ratio_schedule(1.0, 0, 10), "end_value"),
        (lambda: pruning_ratio_schedule(-0.1, 0, 10), "end_value"),
        (lambda: pruning_ratio_schedule(0.5, 0, 10, initial_ratio=1.2), "start_value"),
        (lambda: pruning_ratio_schedule(0.5, 0, 10, every=0), "every"),
        (lambda: pruning_ratio_schedule(0.5, 0, 10, kind="exponential"), "kind"),
        (lambda: distillation_weight_schedule(-1.0), "start_value"),
        (lambda: distillation_weight_schedule(1.0, math.nan, 0, 10), "end_value"),
        (lambda: Schedule("linear", 0.0, None, 0, 10), "end_value"),
        (lambda: Schedule("constant", 0.0, 1.0), "end_value"),
        (lambda: Schedule.from_dict({"kind": "linear", "ramp": 3}), "ramp"),
        (lambda: Schedule("linear", 0.0, 1.0, 0, 10).value(-2), "step"),
    ],
)
def test_bad_schedule_settings_name_the_setting(make, setting):
    with pytest.raises(ValueError, match=setting):
        make()
