"""DynamicPruning: cubic ramp, joint FLOP/param budget reached, soft masks, Taylor, checkpoints, fit."""

from __future__ import annotations

import pytest
import torch

from cdpkd.complexity import count_flops
from cdpkd.compress import (
    DynamicPruning,
    filter_norm_scores,
    joint_keep_counts,
    measure_cost_model,
    select_counts,
)
from cdpkd.models import PWCConfig, build_model, count_parameters
from cdpkd.train import FitConfig, fit
from cdpkd.train.hooks import check_plain

H, W = 64, 32
CONFIG = PWCConfig(
    pyramid_channels=(8, 12, 16),
    pyramid_convs=1,
    full_res_levels=1,
    estimator_levels=(2, 1),
    estimator_widths=(8, 6),
    search_radii=(2, 1),
    context_widths=(8,),
    context_dilations=(2,),
)



def _model(seed=0, dtype=torch.float32):
    return build_model(CONFIG, seed=seed).to(dtype)


def _pruner(model, **kw):
    opts = dict(
        flops_fraction=0.5, params_fraction=0.5, end_step=10, every=5, height=H, width=W, min_channels=2
    )
    opts.update(kw)
    return DynamicPruning(model, **opts)


def _pair(n=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, 1, H, W, generator=g, dtype=dtype)
    return pre, torch.roll(pre, 1, dims=-2) + 0.1 * torch.randn(pre.shape, generator=g, dtype=dtype)


def _loss(out):
    return sum((lv**2).mean() for lv in out["levels"]) + (out["displacement"] ** 2).mean()


def test_progress_follows_the_cubic_schedule():
    dp = _pruner(_model(), start_step=2, end_step=12, every=3)
    updates, last = [], None
    for step in range(15):
        dp.on_step_start(step, dp.model, None)
        if dp.last_update != last:
            updates.append(step)
            last = dp.last_update
        logs = {}
        dp.on_step_end(step, dp.model, logs)
        if step < 2:
            expected = 0.0
        elif step >= 12:
            expected = 1.0
        else:
            p = (2 + (step - 2) // 3 * 3 - 2) / 10
            expected = 1.0 - (1.0 - p) ** 3  # Zhu & Gupta, held for `every` steps
        assert logs["prune_progress"] == pytest.approx(expected)
        f_flops, f_params = dp.targets_at(expected)
        assert logs["prune_flops_fraction"] <= f_flops + 1e-12
        assert logs["prune_params_fraction"] <= f_params + 1e-12
        assert logs["prune_masked_channels"] >= 0
    assert updates == [2, 5, 8, 11, 12]
    assert dp.fractions() == {"flops": logs["prune_flops_fraction"], "params": logs["prune_params_fraction"]}
    assert dp.keep_counts() == {n: int(m.sum()) for n, m in dp.masks.as_dict().items()}


@pytest.mark.parametrize(("ff", "pf"), [(0.5, None), (None, 0.5), (0.6, 0.4), (0.4, 0.9)])
def test_final_measured_fractions_meet_the_budget(ff, pf):
    model = _model()
    dp = _pruner(model, flops_fraction=ff, params_fraction=pf)
    dp.on_fit_start(0, model, None)
    for step in range(12):
        dp.on_step_start(step, model, None)
    assert dp.progress == 1.0
    pruned, config = dp.finalize()
    assert pruned.config == config
    flops = measure_cost_model(pruned, "flops", height=H, width=W).total()
    params = measure_cost_model(pruned, "params").total()
    assert flops == count_flops(pruned, H, W) and params == count_parameters(pruned)  # real counts
    flops_fraction = flops / count_flops(model, H, W)
    params_fraction = params / count_parameters(model)
    assert dp.fractions() == pytest.approx({"flops": flops_fraction, "params": params_fraction}, rel=1e-12)
    if ff is not None:
        assert flops_fraction <= ff
    if pf is not None:
        assert params_fraction <= pf
    assert min(flops_fraction / (ff or 1.0), params_fraction / (pf or 1.0)) < 1.0


def test_masked_channel_comes_back_at_the_next_update():
    model = _model()
    dp = _pruner(model, criterion="l1", end_step=20, every=5)
    dp.on_step_start(0, model, None)
    dp.on_step_start(5, model, None)
    masks = dp.masks.as_dict()
    name = next(n for n, m in masks.items() if 0 < int(m.sum()) < m.numel())
    channel = int(torch.nonzero(masks[name] == 0)[0])
    conv = dict(model.named_modules())[name]
    with torch.no_grad():  # make the masked filter the largest of its layer
        conv.weight[channel] *= 1e3 / float(conv.weight[channel].abs().sum())
    dp.on_step_start(10, model, None)
    assert dp.masks.as_dict()[name][channel] == 1.0
    assert dp.keep_counts()[name] < masks[name].numel()  # still pruned, other channels went instead


def test_taylor_criterion_uses_accumulated_scores():
    model = _model()
    dp = _pruner(model, criterion="taylor", end_step=20, every=5)
    # first update with nothing accumulated: falls back to the l1 filter norms
    masks = dp.update(5)
    keep = dp.keep_counts()
    assert all(torch.equal(masks[n], m) for n, m in select_counts(filter_norm_scores(model), keep).items())
    for seed in range(2):
        model.zero_grad()
        _loss(model(*_pair(seed=seed))).backward()
    scores = dp.masks.taylor_scores()
    assert all(bool((s >= 0).all()) and bool(torch.isfinite(s).all()) for s in scores.values())
    dp.on_step_start(10, model, None)
    f_flops, f_params = dp.targets_at(dp.progress)
    keep = joint_keep_counts(
        dp.flops_model, dp.params_model, flops_fraction=f_flops, params_fraction=f_params, min_channels=2
    )
    expected = select_counts(scores, keep)
    assert all(torch.equal(dp.masks.as_dict()[n].float(), m) for n, m in expected.items())
    with pytest.raises(ValueError, match="no Taylor scores"):
        dp.masks.taylor_scores()  # reset after the update


def test_state_dict_round_trip(tmp_path):
    model = _model()
    dp = _pruner(model)
    dp.on_fit_start(0, model, None)
    dp.on_step_start(5, model, None)
    state = dp.state_dict()
    check_plain(state, "DynamicPruning state")
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)

    other = _model(seed=1)  # different weights: l1 would pick other channels
    dp2 = _pruner(other)
    dp2.load_state_dict(loaded)
    dp2.on_fit_start(6, other, None)  # resumed run: keeps the loaded masks
    for name, m in dp.masks.as_dict().items():
        assert torch.equal(dp2.masks.as_dict()[name], m)
    assert (dp2.progress, dp2.last_update) == (dp.progress, 5)
    assert dp2.fractions() == dp.fractions()
    dp2.on_step_start(6, other, None)  # not an update step
    assert dp2.keep_counts() == dp.keep_counts()
    dp2.on_step_start(10, other, None)
    assert dp2.progress == 1.0
    with pytest.warns(UserWarning, match="different settings"):
        _pruner(_model(), end_step=30).load_state_dict(loaded)


def test_fit_start_without_state_applies_the_masks_due():
    model = _model()
    dp = _pruner(model, end_step=20, every=5)
    dp.on_fit_start(7, model, None)  # resumed without a saved hook state: masks of the update at step 5
    assert dp.progress == pytest.approx(dp.schedule(5)) and dp.progress > 0
    assert dp.last_update == 7
    dp.on_step_start(7, model, None)
    assert dp.last_update == 7


def test_finalize_equals_masked_model():
    model = _model(seed=2, dtype=torch.float64)
    with torch.no_grad():  # heads start near zero: make them O(1) so any mismatch shows
        for name, m in model.named_modules():
            if name.endswith("predict"):
                m.weight.normal_(0.0, 0.3)
    dp = _pruner(model)
    dp.on_fit_start(0, model, None)
    dp.on_step_start(5, model, None)
    with pytest.raises(ValueError, match="progress"):
        dp.finalize()
    partial, _ = dp.finalize(force=True)
    assert count_parameters(partial) < count_parameters(model)
    dp.on_step_start(10, model, None)
    pre, post = _pair(dtype=torch.float64)
    with torch.no_grad():
        ref = model(pre, post)
        pruned, config = dp.finalize()
        out = pruned(pre, post)
    assert dp.masks.attached  # finalize leaves the masked model as it was
    for a, b in zip(ref["levels"], out["levels"]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(out["displacement"], ref["displacement"], rtol=1e-9, atol=1e-11)
    dp.remove()
    assert not dp.masks.attached
    with torch.no_grad():
        dense = model(pre, post)["displacement"]
    assert not torch.allclose(dense, ref["displacement"])


class PairFrames(torch.utils.data.Dataset):
    def __init__(self, n=4):
        self.pre, self.post = _pair(n=n, seed=3)

    def __len__(self):
        return len(self.pre)

    def __getitem__(self, i):
        return {"pre": self.pre[i], "post": self.post[i]}


def _fit_loss(model, batch, step):
    out = model(batch["pre"], batch["post"])
    return {"total": _loss(out)}


def test_fit_run_logs_and_reaches_the_budget(tmp_path):
    model = _model()
    dp = _pruner(model, criterion="taylor", end_step=4, every=2)
    config = FitConfig(steps=6, batch_size=2, lr=1e-3, warmup_steps=1, log_every=2, amp="off", seed=0)
    history = fit(model, PairFrames(), _fit_loss, config, tmp_path / "run", hooks=[dp], device="cpu")
    keys = ("prune_progress", "prune_flops_fraction", "prune_params_fraction", "prune_masked_channels")
    assert all(k in history.records[-1] for k in keys)
    progress = [r["prune_progress"] for r in history.records]
    assert progress == sorted(progress) and progress[-1] == 1.0
    last = history.records[-1]
    assert last["prune_flops_fraction"] <= 0.5 and last["prune_params_fraction"] <= 0.5
    assert last["prune_masked_channels"] > 0
    assert not dp.masks.track_taylor  # no more updates after end_step: Taylor bookkeeping off
    pruned, _ = dp.finalize()
    assert count_parameters(pruned) <= 0.5 * count_parameters(model)
    assert count_flops(pruned, H, W) <= 0.5 * count_flops(model, H, W)

    # the same run split in two (stop, then resume from the checkpoint): the hook state (masks,
    # Taylor sums, last update) comes back with it and the run ends with the same masks
    model2 = _model()
    dp2 = _pruner(model2, criterion="taylor", end_step=4, every=2)
    fit(model2, PairFrames(), _fit_loss, config, tmp_path / "split", hooks=[dp2], device="cpu", stop_after=3)
    assert 0 < dp2.progress < 1
    model3 = _model()
    dp3 = _pruner(model3, criterion="taylor", end_step=4, every=2)
    fit(model3, PairFrames(), _fit_loss, config, tmp_path / "split", hooks=[dp3], device="cpu")
    assert dp3.progress == 1.0
    for name, m in dp.masks.as_dict().items():
        assert torch.equal(dp3.masks.as_dict()[name], m)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"flops_fraction": None, "params_fraction": None}, "neither"),
        ({"flops_fraction": 0.0}, "flops_fraction"),
        ({"params_fraction": 1.5}, "params_fraction"),
        ({"flops_fraction": float("nan")}, "flops_fraction"),
        ({"start_step": 8, "end_step": 4}, "end_step"),
        ({"start_step": -1}, "start_step"),
        ({"criterion": "magnitude"}, "criterion"),
        ({"kind": "constant"}, "ramp kind"),
        ({"every": 0}, "every"),
        ({"flops_fraction": 0.01, "min_channels": 4}, "out of reach"),
        ({"min_channels": 0}, "min_channels"),
    ],
)
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        _pruner(_model(), **kw)


def test_hook_rejects_another_model():
    dp = _pruner(_model())
    with pytest.raises(ValueError, match="different model"):
        dp.on_fit_start(0, _model(), None)
