"""FLOP / parameter budgets: exact cost model, per-layer allocation, one-shot prune_to_budget."""

from __future__ import annotations

import pytest
import torch

from cdpkd.complexity import count_flops
from cdpkd.compress import (
    ChannelMap,
    allocate_by_importance,
    budget_keep_counts,
    filter_norm_scores,
    hard_prune,
    joint_keep_counts,
    measure_cost_model,
    prune_to_budget,
    select_counts,
)
from cdpkd.compress.budget import _proportional_keep
from cdpkd.models import build_model, count_parameters

H, W = 32, 24


@pytest.fixture(scope="module")
def smoke():
    return build_model("umen_teacher_smoke", seed=0)


@pytest.fixture(scope="module")
def flops_model(smoke):
    return measure_cost_model(smoke, "flops", height=H, width=W)


def test_cost_model_totals_match_counters(smoke, flops_model):
    assert flops_model.total() == count_flops(smoke, H, W)
    assert flops_model.constant == 0  # every counted FLOP is in a conv or a cost volume
    params = measure_cost_model(smoke, "params")
    assert params.total() == count_parameters(smoke)
    # one channel less in the full-resolution estimator conv: its row, its columns downstream
    widths = {"estimators.1.convs.0": 5}
    d = flops_model.marginal()["estimators.1.convs.0"]
    assert flops_model.total(widths) == flops_model.total() - d


def test_marginal_cost_is_highest_at_full_resolution(flops_model):
    d = flops_model.marginal()
    assert max(d, key=d.get) in {"estimators.1.convs.0", "estimators.1.convs.1", "context.convs.0"}
    assert d["estimators.1.convs.0"] > 3 * d["estimators.0.convs.0"]  # stride 2 vs stride 4


@pytest.mark.parametrize("fraction", [0.9, 0.6, 0.4])
def test_budget_keep_counts_reach_the_flop_target(smoke, flops_model, fraction):
    keep = budget_keep_counts(flops_model, fraction)
    assert flops_model.total(keep) <= fraction * flops_model.total()
    full = ChannelMap.from_model(smoke).widths()
    kept = {n: keep[n] / full[n] for n in full}
    # the cheap coarse levels are pruned no harder than the full-resolution estimator and context
    assert kept["estimators.0.convs.0"] >= kept["estimators.1.convs.0"]
    assert kept["pyramid.levels.2.0"] >= kept["context.convs.0"]


def test_budget_keep_counts_options(flops_model):
    uniform = budget_keep_counts(flops_model, 0.6, exponent=0.0)
    assert flops_model.total(uniform) <= 0.6 * flops_model.total()
    floor = budget_keep_counts(flops_model, 0.5, min_channels=3)
    assert min(floor.values()) >= 3
    rounded = budget_keep_counts(flops_model, 0.7, multiple_of=2)
    full = flops_model.channel_map.widths()
    assert all(k % 2 == 0 or k == full[n] for n, k in rounded.items())
    assert budget_keep_counts(flops_model, 1.0) == full


def test_allocate_by_importance_reaches_the_target(smoke, flops_model):
    scores = filter_norm_scores(smoke)
    masks = allocate_by_importance(flops_model, scores, 0.5, min_channels=2)
    widths = {n: int(m.sum()) for n, m in masks.items()}
    assert flops_model.total(widths) <= 0.5 * flops_model.total()
    assert min(widths.values()) >= 2


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"flops_fraction": 0.6, "criterion": "l1"}, "flops"),
        ({"flops_fraction": 0.5, "criterion": "l2", "allocation": "importance", "min_channels": 2}, "flops"),
        ({"params_fraction": 0.5, "criterion": "l1"}, "params"),
    ],
)
def test_prune_to_budget_measured_cost_below_target(smoke, kwargs, kind):
    result = prune_to_budget(smoke, height=H, width=W, **{"min_channels": 1, **kwargs})
    target = kwargs.get("flops_fraction", kwargs.get("params_fraction"))
    if kind == "flops":
        before, after = count_flops(smoke, H, W), count_flops(result.model, H, W)
    else:
        before, after = count_parameters(smoke), count_parameters(result.model)
    assert after <= target * before
    assert (result.cost_before, result.cost_after) == (before, after)
    assert result.fraction == pytest.approx(after / before)
    assert result.fraction > target - 0.15  # the budget is used, not wasted
    assert result.model.config == result.config
    assert ChannelMap(result.config).widths() == {n: int(m.sum()) for n, m in result.masks.items()}


def test_prune_to_budget_taylor(smoke):
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(2, 1, 16, 12, generator=g)
    batches = [(pre, torch.roll(pre, 1, dims=-2))]

    def loss_fn(pre, post, out):
        return sum((lv**2).mean() for lv in out["levels"])

    result = prune_to_budget(
        smoke, flops_fraction=0.7, criterion="taylor", batches=batches, loss_fn=loss_fn, height=H, width=W
    )
    assert result.cost_after <= 0.7 * result.cost_before


def test_budget_bad_input(smoke, flops_model):
    for bad in (0.0, -0.5, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="fraction"):
            budget_keep_counts(flops_model, bad)
        with pytest.raises(ValueError, match="fraction"):
            prune_to_budget(smoke, flops_fraction=bad, height=H, width=W)
    with pytest.raises(ValueError, match="out of reach"):
        budget_keep_counts(flops_model, 0.01, min_channels=4)
    with pytest.raises(ValueError, match="exactly one"):
        prune_to_budget(smoke, flops_fraction=0.5, params_fraction=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        prune_to_budget(smoke)
    with pytest.raises(ValueError, match="criterion"):
        prune_to_budget(smoke, flops_fraction=0.5, criterion="magnitude")
    with pytest.raises(ValueError, match="allocation"):
        prune_to_budget(smoke, flops_fraction=0.5, allocation="random")
    with pytest.raises(ValueError, match="needs batches"):
        prune_to_budget(smoke, flops_fraction=0.5, criterion="taylor", height=H, width=W)
    with pytest.raises(ValueError, match="cost kind"):
        measure_cost_model(smoke, "latency")
    with pytest.raises(ValueError, match="multiple_of"):
        budget_keep_counts(flops_model, 0.5, multiple_of=0)
    with pytest.raises(ValueError, match="exponent"):
        budget_keep_counts(flops_model, 0.5, exponent=-1.0)
    with pytest.raises(ValueError, match="height"):
        measure_cost_model(smoke, "flops", height=0)


# --- joint FLOP and parameter budget ------------------------------------------------------


@pytest.fixture(scope="module")
def params_model(smoke):
    return measure_cost_model(smoke, "params")


def _fractions(flops_model, params_model, keep):
    return flops_model.total(keep) / flops_model.total(), params_model.total(keep) / params_model.total()


def _is_maximal(flops_model, params_model, keep, ff, pf):
    """No layer can grow by one channel without breaking one of the targets (the slack was given back)."""
    full = flops_model.channel_map.widths()
    for name in full:
        if keep[name] < full[name]:
            grown = {**keep, name: keep[name] + 1}
            f, p = _fractions(flops_model, params_model, grown)
            if f <= ff and p <= pf:
                return False
    return True


@pytest.mark.parametrize(("ff", "pf"), [(0.6, 0.6), (0.5, 0.7), (0.8, 0.4), (0.35, 0.35)])
def test_joint_keep_counts_meet_both_targets(flops_model, params_model, ff, pf):
    keep = joint_keep_counts(flops_model, params_model, flops_fraction=ff, params_fraction=pf)
    f, p = _fractions(flops_model, params_model, keep)
    assert f <= ff and p <= pf
    assert _is_maximal(flops_model, params_model, keep, ff, pf)
    assert max(f / ff, p / pf) > 0.85  # at least one target is (nearly) used up


def test_joint_keep_counts_one_binding_other_slack(flops_model, params_model):
    # loose parameter target: the FLOP-only allocation already meets it, and is the answer
    flops_only = budget_keep_counts(flops_model, 0.5)
    assert _fractions(flops_model, params_model, flops_only)[1] <= 0.95
    keep = joint_keep_counts(flops_model, params_model, flops_fraction=0.5, params_fraction=0.95)
    assert keep == flops_only
    f, p = _fractions(flops_model, params_model, keep)
    assert f > 0.45 and p < 0.9  # FLOPs binding, parameters slack
    # tight parameter target: it binds and the FLOPs end well below their loose target
    keep = joint_keep_counts(flops_model, params_model, flops_fraction=0.95, params_fraction=0.5)
    f, p = _fractions(flops_model, params_model, keep)
    assert 0.45 < p <= 0.5 and f < 0.9
    assert _is_maximal(flops_model, params_model, keep, 0.95, 0.5)
    assert keep == budget_keep_counts(params_model, 0.5)  # here: the parameter-weighted allocation


def test_joint_keep_counts_single_target_equals_budget_keep_counts(flops_model, params_model):
    opts = {"min_channels": 2, "exponent": 0.5, "multiple_of": 2}
    assert joint_keep_counts(
        flops_model, params_model, flops_fraction=0.55, params_fraction=None, **opts
    ) == budget_keep_counts(flops_model, 0.55, **opts)
    assert joint_keep_counts(
        flops_model, params_model, flops_fraction=None, params_fraction=0.55, **opts
    ) == budget_keep_counts(params_model, 0.55, **opts)
    full = flops_model.channel_map.widths()
    assert joint_keep_counts(flops_model, params_model, flops_fraction=1.0, params_fraction=1.0) == full


def test_joint_keep_counts_options(flops_model, params_model):
    keep = joint_keep_counts(
        flops_model, params_model, flops_fraction=0.6, params_fraction=0.6, min_channels=3, multiple_of=2
    )
    full = flops_model.channel_map.widths()
    assert all(k >= min(3, full[n]) for n, k in keep.items())
    assert all(k % 2 == 0 or k in (full[n], min(3, full[n])) for n, k in keep.items())
    f, p = _fractions(flops_model, params_model, keep)
    assert f <= 0.6 and p <= 0.6


def test_joint_keep_counts_hard_pruned_model_meets_both(smoke, flops_model, params_model):
    keep = joint_keep_counts(flops_model, params_model, flops_fraction=0.55, params_fraction=0.45)
    masks = select_counts(filter_norm_scores(smoke), keep)
    pruned, _ = hard_prune(smoke, masks)
    flops_after = measure_cost_model(pruned, "flops", height=H, width=W).total()
    params_after = measure_cost_model(pruned, "params").total()
    assert flops_after == count_flops(pruned, H, W) and params_after == count_parameters(pruned)
    assert flops_after <= 0.55 * count_flops(smoke, H, W)
    assert params_after <= 0.45 * count_parameters(smoke)
    assert (flops_after, params_after) == (flops_model.total(keep), params_model.total(keep))


def test_joint_keep_counts_bad_input(smoke, flops_model, params_model):
    with pytest.raises(ValueError, match="neither"):
        joint_keep_counts(flops_model, params_model, flops_fraction=None, params_fraction=None)
    with pytest.raises(ValueError, match="out of reach"):
        joint_keep_counts(flops_model, params_model, flops_fraction=0.9, params_fraction=0.05, min_channels=4)
    with pytest.raises(ValueError, match="out of reach"):
        joint_keep_counts(flops_model, params_model, flops_fraction=0.01, params_fraction=0.9, min_channels=4)
    for bad in (0.0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="flops_fraction"):
            joint_keep_counts(flops_model, params_model, flops_fraction=bad, params_fraction=0.5)
        with pytest.raises(ValueError, match="params_fraction"):
            joint_keep_counts(flops_model, params_model, flops_fraction=0.5, params_fraction=bad)
    with pytest.raises(ValueError, match="'params' CostModel"):
        joint_keep_counts(flops_model, flops_model, flops_fraction=0.5, params_fraction=0.5)
    other = measure_cost_model(build_model("dpnet_smoke", seed=0), "params")
    with pytest.raises(ValueError, match="different networks"):
        joint_keep_counts(flops_model, other, flops_fraction=0.5, params_fraction=0.5)
    with pytest.raises(ValueError, match="multiple_of"):
        joint_keep_counts(flops_model, params_model, flops_fraction=0.5, params_fraction=0.5, multiple_of=0)


def test_joint_keep_counts_blend_keeps_flops_from_collapsing():
    # teacher topology: its parameters sit in the coarse levels that FLOP weights spare, so tightening
    # the FLOP-weighted allocation to a 36 % parameter target would leave ~3 % of the FLOPs
    model = build_model("umen_teacher_cpu", seed=0)
    flops = measure_cost_model(model, "flops", height=64, width=32)
    params = measure_cost_model(model, "params")
    keep = joint_keep_counts(flops, params, flops_fraction=0.36, params_fraction=0.36, min_channels=2)
    f, p = _fractions(flops, params, keep)
    assert 0.33 < f <= 0.36 and 0.33 < p <= 0.36  # both budgets used
    full = flops.channel_map.widths()
    floors = {n: min(2, c) for n, c in full.items()}
    flop_weighted, _ = _proportional_keep(
        flops.marginal(), [(flops, 0.36), (params, 0.36)], full, floors, 1.0, 1
    )
    f0, p0 = _fractions(flops, params, flop_weighted)
    assert p0 <= 0.36 and f0 < 0.1
