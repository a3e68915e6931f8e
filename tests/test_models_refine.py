"""The optional full-resolution NCC refinement head (PWCConfig.refine_widths, cdpkd.models.refine)."""

import pytest
import torch

from cdpkd.classic.ncc_volume import ncc_volume
from cdpkd.compress.channels import ChannelMap
from cdpkd.compress.surgery import hard_prune
from cdpkd.models import build_model, count_parameters, get_config
from cdpkd.ops import warp

HEAD = (8, 8, 4)


def _pair(seed: int = 0, shift: int = 2):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(2, 1, 64, 32, generator=g)
    return pre, torch.roll(pre, shift, dims=-2)


def test_config_fields_default_off_and_keep_old_keys():
    base = get_config("umen_teacher_cpu")
    assert base.refine_widths == () and "refine_widths" not in base.to_dict()
    assert "refine_radius" not in base.to_dict() and "refine_window" not in base.to_dict()
    head = base.replace(refine_widths=[32, 32, 16], refine_window=[21, 5])
    assert head.to_dict()["refine_widths"] == [32, 32, 16] and head.to_dict()["refine_window"] == [21, 5]
    assert type(head).from_dict(head.to_dict()) == head
    assert base.replace(refine_widths=(32, 16)).scaled(0.5).refine_widths == (16, 8)
    for bad in ({"refine_widths": (0, 4)}, {"refine_radius": (3,)}, {"refine_radius": (-1, 1)},
                {"refine_window": (14, 3)}, {"refine_window": (15, 0)}):
        with pytest.raises(ValueError, match="refine_"):
            base.replace(**bad)


def test_head_adds_its_parameters_and_starts_near_the_network_without_it():
    plain_cfg = get_config("umen_teacher_smoke")
    plain, headed = build_model(plain_cfg, seed=0), build_model(plain_cfg.replace(refine_widths=HEAD), seed=0)
    d = 7 * 3  # default radius (3, 1)
    c0 = plain_cfg.pyramid_channels[0][-1]
    widths_in = [d + c0 + 2 + sum(HEAD[:j]) for j in range(len(HEAD))]
    expected = sum(i * w * 9 + w for i, w in zip(widths_in, HEAD)) + (widths_in[-1] + HEAD[-1]) * 2 * 9 + 2
    assert count_parameters(headed) - count_parameters(plain) == expected
    headed.load_state_dict({**headed.state_dict(), **plain.state_dict()})  # same network under the head
    pre, post = _pair()
    with torch.no_grad():
        a, b = plain(pre, post)["displacement"], headed(pre, post)["displacement"]
    assert b.shape == a.shape == (2, 2, 64, 32)
    assert not torch.equal(a, b), "the head changes the output"
    assert (b - a).abs().max() < 0.5, "a fresh head's residual is small (small_init_)"


def test_head_sees_the_rf_ncc_volume_around_the_estimate_and_trains_the_network_before_it():
    model = build_model(get_config("umen_teacher_smoke").replace(refine_widths=HEAD), seed=1)
    pre, post = _pair(shift=3)
    disp = torch.zeros(2, 2, 64, 32)
    disp[:, 0] = 3.0  # the exact shift: the NCC peak moves to the centre offset
    cost = model.refine.cost(pre, post, disp)
    assert torch.equal(cost, ncc_volume(pre, warp(post, disp), model.refine.window, model.refine.radius))
    centre = cost.shape[1] // 2
    inner = cost[:, :, 16:-16, 4:-4]
    assert torch.all(inner.argmax(dim=1) == centre) and torch.allclose(inner[:, centre], torch.ones(()))
    out = model(pre, post)["displacement"]
    out.square().mean().backward()
    assert model.refine.predict.weight.grad.abs().sum() > 0
    assert model.estimators[0].predict.weight.grad.abs().sum() > 0, "gradients reach the network before the head"


def test_pruning_maps_and_removes_head_channels():
    model = build_model(get_config("umen_teacher_smoke").replace(refine_widths=HEAD), seed=2).eval()
    cmap = ChannelMap.from_model(model)
    assert {"refine.convs.0", "refine.convs.1", "refine.convs.2"} <= set(cmap.prunable)
    level0 = f"pyramid.levels.0.{len(model.config.pyramid_channels[0]) - 1}"
    assert any(name.startswith("refine.") for name, _ in cmap.consumers(level0)), "the head reads level 0"
    masks = {"refine.convs.1": torch.tensor([1.0, 0, 1, 0, 1, 1, 0, 1]),
             level0: torch.tensor([1.0] * (model.config.pyramid_channels[0][-1] - 1) + [0.0])}
    pruned, config = hard_prune(model, masks, channel_map=cmap)
    assert config.refine_widths == (8, 5, 4)
    pre, post = _pair(seed=3)
    with torch.no_grad():
        masked_state = {k: v.clone() for k, v in model.state_dict().items()}
        masked = build_model(model.config, seed=0).eval()
        masked.load_state_dict(masked_state)
        for name, mask in masks.items():  # zero the removed channels' outputs in the unpruned network
            conv = dict(masked.named_modules())[name]
            conv.weight.mul_(mask.view(-1, 1, 1, 1))
            conv.bias.mul_(mask)
        expected = masked(pre, post)["displacement"]
        got = pruned(pre, post)["displacement"]
    assert torch.allclose(got, expected, atol=1e-4)
