"""Channel map and soft masks: wiring matches the model, a masked channel contributes nothing, Taylor scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cdpkd.compress import ChannelMap, ChannelMasks, check_masks
from cdpkd.models import build_model, get_config


def _pair(n=1, h=24, w=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, 1, h, w, generator=g, dtype=dtype)
    return pre, torch.roll(pre, 1, dims=-2) + 0.1 * torch.randn(n, 1, h, w, generator=g, dtype=dtype)


def _model(name="umen_teacher_smoke", seed=0):
    return build_model(name, seed=seed).double()


def _loss(out):
    return sum((lv**2).mean() for lv in out["levels"]) + (out["displacement"] ** 2).mean()


@pytest.mark.parametrize("name", ["umen_teacher", "umen_teacher_smoke", "dpnet_smoke", "umen_teacher_gocor"])
def test_channel_map_matches_registry_models(name):
    cmap = ChannelMap(get_config(name))
    model = build_model(name, seed=0)
    cmap.validate(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(cmap.nodes) == convs  # every conv, in forward (module) order
    assert not any(n.endswith(("predict", "upfeat")) for n in cmap.prunable)
    # only the last pyramid conv of each estimator level feeds a correlation
    cfg = model.config
    feeding = {n for n, node in cmap.nodes.items() if node.correlations}
    assert feeding == {
        f"pyramid.levels.{lv}.{len(cfg.pyramid_channels[lv]) - 1}" for lv in cfg.estimator_levels
    }


def test_channel_map_teacher_dense_consumers():
    cmap = ChannelMap(get_config("umen_teacher"))
    # the first conv of the finest estimator is read by every later conv, both heads... and the context network
    readers = {c for c, _ in cmap.consumers("estimators.4.convs.0")}
    assert readers == {f"estimators.4.convs.{j}" for j in range(1, 5)} | {
        "estimators.4.predict",
        "context.convs.0",
    }
    # level-1 pyramid features: next pyramid conv and the finest estimator (dense: all its convs and heads)
    readers = {c for c, _ in cmap.consumers("pyramid.levels.1.2")}
    assert "pyramid.levels.2.0" in readers and "context.convs.0" in readers
    assert cmap.nodes["context.convs.0"].in_channels == 45 + 32 + 2 + 2 + 448 + 2
    no_corr = ChannelMap(get_config("umen_teacher"), prune_correlation_inputs=False)
    assert "pyramid.levels.1.2" not in no_corr.prunable and "pyramid.levels.1.1" in no_corr.prunable
    assert len(no_corr.prunable) == len(cmap.prunable) - 5


def test_channel_map_rejects_mismatched_model():
    model = build_model("umen_teacher_smoke", seed=0)
    with pytest.raises(ValueError, match="does not match"):
        ChannelMap(get_config("dpnet_smoke")).validate(model)
    with pytest.raises(ValueError, match="PWC-family"):
        ChannelMap.from_model(nn.Conv2d(1, 1, 3))


def test_all_ones_masks_and_removal_leave_the_model_unchanged():
    model = _model()
    pre, post = _pair()
    ref = model(pre, post)["displacement"]
    masks = ChannelMasks(model)
    assert torch.equal(model(pre, post)["displacement"], ref)
    masks.set({"estimators.1.convs.0": torch.tensor([0.0, 1, 1, 1, 1, 1])})
    assert not torch.equal(model(pre, post)["displacement"], ref)
    masks.remove()
    assert torch.equal(model(pre, post)["displacement"], ref)
    assert set(model.state_dict()) == set(build_model("umen_teacher_smoke").state_dict())  # no buffers added


@pytest.mark.parametrize("layer", ChannelMap(get_config("umen_teacher_smoke")).prunable)
def test_masked_channel_contributes_nothing(layer):
    model = _model()
    pre, post = _pair(n=2)
    width = model.get_submodule(layer).out_channels
    mask = torch.ones(width)
    mask[1] = 0.0
    with ChannelMasks(model) as masks:
        masks.set({layer: mask})
        with torch.no_grad():
            ref = model(pre, post, return_features=True)
            conv = model.get_submodule(layer)
            conv.weight[1].normal_(0.0, 10.0)
            conv.bias[1] = 5.0
            out = model(pre, post, return_features=True)
            assert torch.equal(out["displacement"], ref["displacement"])
            for a, b in zip(out["levels"], ref["levels"]):
                assert torch.equal(a, b)
            conv.weight[0].normal_(0.0, 10.0)  # sanity: a kept channel does matter
            assert not torch.equal(model(pre, post)["displacement"], ref["displacement"])


def test_masked_channels_stay_trainable_and_get_no_loss_gradient():
    model = _model()
    pre, post = _pair()
    layer = "estimators.1.convs.0"
    with ChannelMasks(model) as masks:
        masks.set({layer: torch.tensor([1.0, 0, 1, 1, 0, 1])})
        _loss(model(pre, post)).backward()
    conv = model.get_submodule(layer)
    assert conv.weight.requires_grad
    assert torch.all(conv.weight.grad[[1, 4]] == 0) and torch.all(conv.bias.grad[[1, 4]] == 0)
    assert conv.weight.grad[[0, 2]].abs().sum() > 0


def test_mask_validation_errors():
    model = _model()
    masks = ChannelMasks(model)
    with pytest.raises(ValueError, match="not prunable"):
        masks.set({"estimators.0.predict": torch.ones(2)})
    with pytest.raises(ValueError, match="not prunable"):
        masks.set({"nope": torch.ones(2)})
    with pytest.raises(ValueError, match="6 channels"):
        masks.set({"estimators.1.convs.0": torch.ones(5)})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        masks.set({"estimators.1.convs.0": torch.full((6,), 2.0)})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        masks.set({"estimators.1.convs.0": torch.tensor([float("nan")] * 6)})
    with pytest.raises(ValueError, match="keep at least one"):
        masks.set({"estimators.1.convs.0": torch.zeros(6)})
    with pytest.raises(ValueError, match="mapping"):
        check_masks(masks.channel_map, [1, 2])
    with pytest.raises(ValueError, match="track_taylor"):
        masks.taylor_scores()
    with pytest.raises(ValueError, match="criterion"):
        masks.prune(0.5, "random")
    for bad in (-0.1, 1.0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="ratio"):
            masks.prune(bad)


def _loss_with_mask(model, layer, mask, pre, post):
    with ChannelMasks(model) as masks:
        masks.set({layer: mask})
        with torch.no_grad():
            return float(_loss(model(pre, post)))


@pytest.mark.parametrize("layer", ["pyramid.levels.1.0", "estimators.1.convs.0", "context.convs.0"])
def test_taylor_score_is_the_first_order_loss_change(layer):
    """Batch of one pair: score = |dL/dm_c| (pyramid: both frames of the pair together)."""
    model = _model()
    pre, post = _pair()
    base = torch.ones(model.get_submodule(layer).out_channels, dtype=torch.float64)
    base[0] = 0.0  # channel 0 masked
    masks = ChannelMasks(model, track_taylor=True)
    masks.set({layer: base})
    _loss(model(pre, post)).backward()
    scores = masks.taylor_scores()[layer]
    masks.remove()
    eps = 1e-6
    l_base = _loss_with_mask(model, layer, base, pre, post)
    for channel, value in ((2, 1.0 - eps), (0, eps)):  # a kept channel; the masked one (gain of restoring it)
        m = base.clone()
        m[channel] = value
        slope = (_loss_with_mask(model, layer, m, pre, post) - l_base) / (value - base[channel].item())
        assert scores[channel].item() == pytest.approx(abs(slope), rel=1e-4, abs=1e-12)


def test_prune_updates_masks_and_state_round_trip():
    model = _model()
    pre, post = _pair()
    masks = ChannelMasks(model, track_taylor=True)
    new = masks.prune(0.3, "l1", min_channels=2)
    assert set(new) == set(masks.channel_map.prunable)
    assert 0.25 <= masks.pruned_fraction() <= 0.3
    assert all(v >= 2 for v in masks.keep_counts().values())
    _loss(model(pre, post)).backward()
    state = masks.state_dict()
    masks.prune(0.5, "taylor", scope="per_layer")
    assert masks.pruned_fraction() > 0.3
    other = ChannelMasks(build_model("umen_teacher_smoke", seed=0).double(), track_taylor=True)
    other.load_state_dict(state)
    assert other.keep_counts() == {n: int((m != 0).sum()) for n, m in state["masks"].items()}
    for n, s in other.taylor_scores().items():
        torch.testing.assert_close(s, state["taylor"][n] / state["taylor_count"][n])
