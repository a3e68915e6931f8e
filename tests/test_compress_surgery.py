"""Hard pruning: the smaller dense network equals the masked one; it saves and reloads as a plain PWC model."""

from __future__ import annotations

import json
import random

import pytest
import torch

from cdpkd.complexity import count_flops
from cdpkd.compress import (
    ChannelMap,
    ChannelMasks,
    hard_prune,
    kept_channels,
    measure_cost_model,
    pruned_config,
)
from cdpkd.models import PWCConfig, build_model, count_parameters, load_model, save_model


def random_config(seed: int) -> PWCConfig:
    """A small random PWC-family config exercising every switch of the architecture."""
    rng = random.Random(seed)
    levels = rng.randint(2, 4)
    convs = rng.randint(1, 2)
    pyramid = tuple(tuple(rng.randint(2, 6) for _ in range(convs)) for _ in range(levels))
    est_levels = tuple(sorted(rng.sample(range(levels), rng.randint(1, levels)), reverse=True))
    ctx = rng.randint(1, 2)
    return PWCConfig(
        in_channels=rng.randint(1, 2),
        input_mode=rng.choice(["rf", "rf+envelope"]),
        pyramid_channels=pyramid,
        full_res_levels=rng.randint(1, levels),
        estimator_levels=est_levels,
        estimator_widths=tuple(
            tuple(rng.randint(2, 6) for _ in range(rng.randint(1, 3))) for _ in est_levels
        ),
        dense=rng.random() < 0.6,
        upfeat_channels=rng.randint(0, 2),
        search_radii=tuple((rng.randint(0, 2), rng.randint(0, 1)) for _ in est_levels),
        correlation=rng.choice(["plain", "gocor"]),
        gocor_steps=rng.randint(1, 2),
        context=rng.random() < 0.7,
        context_widths=tuple(rng.randint(2, 6) for _ in range(ctx)),
        context_dilations=tuple(rng.randint(1, 3) for _ in range(ctx)),
        leaky_slope=rng.choice([0.1, 0.2]),
    )


def random_masks(
    cmap: ChannelMap, seed: int, keep: float = 0.6, soft: bool = False
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, n in cmap.widths().items():
        m = (torch.rand(n, generator=g) < keep).to(torch.float64)
        m[torch.randint(n, (1,), generator=g)] = 1.0  # at least one channel
        if soft:
            m = m * torch.empty(n, dtype=torch.float64).uniform_(0.3, 1.0, generator=g)
        masks[name] = m
    return masks


def _pair(config: PWCConfig, n=2, h=19, w=13, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, config.in_channels, h, w, generator=g, dtype=dtype)
    post = torch.roll(pre, 1, dims=-2) + 0.1 * torch.randn(pre.shape, generator=g, dtype=dtype)
    return pre, post


def _randomize_heads(model, seed=0):
    """Heads start near zero (small init); make them O(1) so every level's output shows any mismatch."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith("predict"):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype) * 0.3)


def _check_equal(model, masks, pre, post, rtol=1e-9, atol=1e-11):
    with torch.no_grad():
        with ChannelMasks(model) as cm:
            cm.set(masks)
            ref = model(pre, post, return_features=True)
        new_model, new_config = hard_prune(model, masks)
        out = new_model(pre, post, return_features=True)
    for a, b in zip(ref["levels"], out["levels"]):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    torch.testing.assert_close(out["displacement"], ref["displacement"], rtol=rtol, atol=atol)
    for a, b in zip(ref["features"]["cost"], out["features"]["cost"]):  # the cost volume itself is preserved
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    return new_model, new_config


@pytest.mark.parametrize("name", ["umen_teacher_smoke", "dpnet_smoke"])
@pytest.mark.parametrize("soft", [False, True])
def test_hard_prune_equals_masked_model(name, soft):
    model = build_model(name, seed=1).double()
    _randomize_heads(model)
    cmap = ChannelMap.from_model(model)
    masks = random_masks(cmap, seed=3, soft=soft)
    new_model, new_config = _check_equal(model, masks, *_pair(model.config))
    assert new_model.config == new_config
    counts = {n: int((m != 0).sum()) for n, m in masks.items()}
    assert ChannelMap(new_config).widths() == counts
    assert new_config == pruned_config(cmap, masks)
    assert count_parameters(new_model) < count_parameters(model)
    assert next(new_model.parameters()).dtype == torch.float64


@pytest.mark.parametrize("seed", range(8))
def test_hard_prune_random_configs(seed):
    config = random_config(seed)
    model = build_model(config, seed=seed).double()
    _randomize_heads(model, seed)
    cmap = ChannelMap.from_model(model)
    masks = random_masks(cmap, seed=seed, keep=0.5)
    _check_equal(model, masks, *_pair(config, seed=seed))


def test_gocor_correlation_inputs_pruned_only_on_request():
    config = random_config(0)
    assert config.correlation == "gocor"
    model = build_model(config, seed=0).double()
    default = ChannelMap.from_model(model)
    assert not any(default.nodes[n].correlations for n in default.prunable)
    forced = ChannelMap.from_model(model, prune_correlation_inputs=True)
    masks = random_masks(forced, seed=0, keep=0.5)
    assert any(forced.nodes[n].correlations and int(m.sum()) < m.numel() for n, m in masks.items())
    pre, post = _pair(config)
    with torch.no_grad(), ChannelMasks(model, channel_map=forced) as cm:
        cm.set(masks)
        ref = model(pre, post)["displacement"]
        new_model, _ = hard_prune(model, cm)
        out = new_model(pre, post)["displacement"]
    # rescaled GOCor: equal up to its 1e-8 line-search guard (not to float rounding)
    torch.testing.assert_close(out, ref, rtol=0.0, atol=1e-3 * float(ref.abs().max()))


@pytest.mark.parametrize("seed", range(4))
def test_cost_model_is_exact_on_random_configs(seed):
    config = random_config(100 + seed).replace(in_channels=1)  # count_flops feeds one-channel frames
    model = build_model(config, seed=seed)
    cmap = ChannelMap.from_model(model)
    masks = random_masks(cmap, seed=seed, keep=0.5)
    widths = {n: int((m != 0).sum()) for n, m in masks.items()}
    new_model, _ = hard_prune(model, masks)
    flops = measure_cost_model(model, "flops", height=20, width=12)
    assert flops.total() == count_flops(model, 20, 12)
    assert flops.total(widths) == count_flops(new_model, 20, 12)
    params = measure_cost_model(model, "params")
    assert params.total() == count_parameters(model)
    assert params.total(widths) == count_parameters(new_model)


def test_hard_prune_teacher_tiny_input():
    model = build_model("umen_teacher", seed=0)
    cmap = ChannelMap.from_model(model)
    masks = random_masks(cmap, seed=0, keep=0.5)
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(1, 1, 32, 32, generator=g)
    post = torch.roll(pre, 1, dims=-2)
    with torch.no_grad():
        with ChannelMasks(model) as cm:
            cm.set(masks)
            ref = model(pre, post)
        new_model, new_config = hard_prune(model, masks)
        out = new_model(pre, post)
    for a, b in zip(ref["levels"], out["levels"]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
    assert new_config.estimator_widths != model.config.estimator_widths
    assert count_parameters(new_model) < 0.4 * count_parameters(model)


def test_hard_prune_without_pruning_correlation_inputs():
    model = build_model("umen_teacher_smoke", seed=2).double()
    cmap = ChannelMap.from_model(model, prune_correlation_inputs=False)
    masks = random_masks(cmap, seed=1)
    assert not any(cmap.nodes[n].correlations for n in masks)
    with torch.no_grad(), ChannelMasks(model, channel_map=cmap) as cm:
        cm.set(masks)
        ref = model(*_pair(model.config))["displacement"]
        new_model, new_config = hard_prune(model, cm)  # the masks' own channel map is used
    assert new_config.pyramid_channels[1:] == model.config.pyramid_channels[1:]
    torch.testing.assert_close(new_model(*_pair(model.config))["displacement"], ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="not prunable"):
        hard_prune(model, {"pyramid.levels.1.0": torch.ones(8)}, channel_map=cmap)


def test_pruned_model_save_load_round_trip(tmp_path):
    model = build_model("umen_teacher_smoke", seed=0)
    model.train(False)
    masks = random_masks(ChannelMap.from_model(model), seed=5)
    new_model, new_config = hard_prune(model, masks)
    path = save_model(tmp_path / "pruned.pt", new_model)
    spec = json.loads((tmp_path / "pruned.pt.json").read_text())
    assert spec == {
        "architecture": "pwc",
        "config": new_config.to_dict(),
    }  # channel config JSON, no pruning state
    payload = torch.load(path, weights_only=True)  # no pickle needed
    assert set(payload["state_dict"]) == set(new_model.state_dict())
    loaded = load_model(path)
    assert loaded.config == new_config
    pre, post = _pair(new_config, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(loaded(pre, post)["displacement"], new_model(pre, post)["displacement"])


def test_hard_prune_keeps_mode_and_input_model_untouched():
    model = build_model("umen_teacher_smoke", seed=0)
    model.eval()
    model.check_finite = False
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = random_masks(ChannelMap.from_model(model), seed=2, soft=True)
    new_model, _ = hard_prune(model, masks)
    assert not new_model.training and new_model.check_finite is False
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    kept = kept_channels(ChannelMap.from_model(model), masks)
    assert all(len(kept[n]) == int((m != 0).sum()) for n, m in masks.items())
    assert len(kept["estimators.0.predict"]) == 2


def test_hard_prune_bad_masks():
    model = build_model("umen_teacher_smoke", seed=0)
    with pytest.raises(ValueError, match="keep at least one"):
        hard_prune(model, {"context.convs.0": torch.zeros(6)})
    with pytest.raises(ValueError, match="not prunable"):
        hard_prune(model, {"context.predict": torch.ones(2)})
    with pytest.raises(ValueError, match="6 channels"):
        hard_prune(model, {"context.convs.0": torch.ones(3)})
