"""Baselines (USENet-style, DPU-Net-style, depthwise-separable PWC): shapes, units, gradients,
save/load, learning under the unsupervised loss, registry entries, config validation."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cdpkd.losses import UnsupervisedLoss
from cdpkd.models import (
    BASELINE_CONFIGS,
    MODEL_CONFIGS,
    DPUNet,
    DPUNetConfig,
    DSPWCConfig,
    DSPWCNet,
    PWCNet,
    USENet,
    USENetConfig,
    build_model,
    count_parameters,
    get_config,
    load_model,
    model_spec,
    save_model,
)
from cdpkd.models.baselines import SeparableConv2d
from cdpkd.models.io import spec_path
from cdpkd.ops import warp

# Exact counts, also in the registry docstring table (lib/cdpkd/models/registry.py).
EXACT_PARAMETERS = {
    "usenet_cpu": 1_065_610,
    "usenet_smoke": 4_966,
    "dpunet_cpu": 1_099_122,
    "dpunet_smoke": 7_606,
    "dspwc_cpu": 1_074_792,
    "dspwc_smoke": 4_397,
}
DPNET_CPU_PARAMETERS = 1_082_800  # the students' size the *_cpu baselines are matched to

SMOKE = ["usenet_smoke", "dpunet_smoke", "dspwc_smoke"]
# Single-scale U-Nets too (one head, "levels" = [final]).
SINGLE = {
    "usenet_single": USENetConfig(encoder_widths=(4, 8, 8), decoder_widths=(4, 8), multiscale=False),
    "dpunet_single": DPUNetConfig(
        encoder_widths=(4, 6), decoder_widths=(4,), fusion="sum", blocks_per_level=2, multiscale=False
    ),
}



def _model(key: str, seed: int = 0) -> torch.nn.Module:
    return build_model(SINGLE.get(key, key), seed=seed)


def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def _speckle(h: int, w: int, seed: int) -> torch.Tensor:
    """RF-like lines: white scatterers convolved with a Gabor pulse (period 4 samples) along depth."""
    g = torch.Generator().manual_seed(seed)
    scat = torch.randn(1, 1, h, w, generator=g, dtype=torch.float64)
    t = torch.arange(-6, 7, dtype=torch.float64)
    pulse = (torch.exp(-0.5 * (t / 2.0) ** 2) * torch.cos(2 * torch.pi * t / 4.0)).view(1, 1, -1, 1)
    return torch.nn.functional.conv2d(scat, pulse, padding=(6, 0)).float()


# ---------------------------------------------------------------- outputs


@pytest.mark.parametrize("key", SMOKE + sorted(SINGLE))
@pytest.mark.parametrize("size", [(96, 40), (37, 21), (5, 3)])
def test_output_shapes_for_any_size(key, size):
    """No divisibility requirement: inputs are padded to the total stride, outputs cropped back."""
    model = _model(key)
    h, w = size
    pre, post = _pair((2, 1, h, w))
    out = model(pre, post, return_features=True)
    assert out["displacement"].shape == (2, 2, h, w)
    assert out["displacement"].dtype == torch.float32
    assert torch.isfinite(out["displacement"]).all()
    assert len(out["levels"]) == len(out["strides"]) >= 1
    assert out["strides"] == sorted(out["strides"], reverse=True)  # coarse to fine
    for level, s in zip(out["levels"], out["strides"]):
        assert level.shape == (2, 2, -(-h // s), -(-w // s))
    if out["strides"][-1] == 1:  # U-Nets; dspwc_smoke's finest estimator is at stride 2
        assert torch.equal(out["levels"][-1], out["displacement"])
    assert "features" in out


@pytest.mark.parametrize("key", ["usenet_smoke", "dpunet_smoke"])
def test_unet_features_and_strides(key):
    model = _model(key)
    cfg = model.config
    out = model(*_pair((1, 1, 37, 21)), return_features=True)
    assert out["strides"] == [4, 2, 1] == list(cfg.strides)
    enc, dec = out["features"]["encoder"], out["features"]["decoder"]
    assert [f.shape[1] for f in enc] == list(cfg.encoder_widths)
    assert [f.shape[1] for f in dec] == [cfg.encoder_widths[-1], *reversed(cfg.decoder_widths)]
    assert [f.shape[-2:] for f in enc] == [(37, 21), (19, 11), (10, 6)]
    assert [f.shape[-2:] for f in dec] == [(10, 6), (19, 11), (37, 21)]


@pytest.mark.parametrize("key", ["usenet_smoke", "dpunet_smoke"])
def test_coarse_head_is_carried_in_full_resolution_units(key):
    """A constant 1-pixel output of the stride-4 head is 4 samples at every finer level."""
    model = _model(key)
    with torch.no_grad():
        for head in model.heads:
            head.weight.zero_()
            head.bias.zero_()
        model.heads[0].bias.copy_(torch.tensor([1.0, -0.5]))
    out = model(*_pair((1, 1, 30, 14)))
    for level in out["levels"]:
        torch.testing.assert_close(level[:, 0], torch.full_like(level[:, 0], 4.0))
        torch.testing.assert_close(level[:, 1], torch.full_like(level[:, 1], -2.0))


def test_dspwc_forward_is_the_pwc_forward():
    """Same dict as PWCNet; the separable convs sit where documented."""
    model = _model("dspwc_smoke")
    out = model(*_pair((1, 1, 24, 12)), return_features=True)
    assert set(out) == {"displacement", "levels", "strides", "pyramid_levels", "features"}
    assert out["strides"] == list(model.config.pwc.strides)
    net = model.net
    assert isinstance(net, PWCNet)
    assert type(net.pyramid.levels[0][0]) is torch.nn.Conv2d  # first conv stays dense
    swapped = [net.pyramid.levels[1][0], *(c for e in net.estimators for c in e.convs), *net.context.convs]
    assert all(isinstance(c, SeparableConv2d) for c in swapped)
    assert all(type(e.predict) is torch.nn.Conv2d for e in net.estimators)  # heads stay dense
    plain = build_model(DSPWCConfig(pwc=model.config.pwc, separable=()))
    assert count_parameters(plain) == count_parameters(PWCNet(model.config.pwc)) == 9_954
    assert count_parameters(model) < count_parameters(plain)


def test_separable_conv_parameters_and_shape():
    conv = SeparableConv2d(6, 10, stride=2, dilation=1)
    assert count_parameters(conv) == 9 * 6 + 6 * 10 + 10
    assert conv(torch.randn(1, 6, 9, 7)).shape == (1, 10, 5, 4)
    with pytest.raises(ValueError, match="dense 3x3"):
        SeparableConv2d.from_conv(torch.nn.Conv2d(4, 4, 1), slope=0.1)


def test_displacement_stays_float32_under_autocast():
    model = _model("dpunet_smoke")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*_pair((1, 1, 24, 12)), return_features=True)
    assert out["features"]["decoder"][-1].dtype == torch.bfloat16  # the bulk does run in bf16
    assert out["displacement"].dtype == torch.float32


def test_bad_inputs_are_rejected():
    model = _model("usenet_smoke")
    pre, post = _pair((1, 1, 16, 8))
    with pytest.raises(ValueError, match="input channel"):
        model(torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8))
    with pytest.raises(ValueError, match="shape mismatch"):
        model(pre, post[..., :7])
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(pre, post.clone().fill_(float("nan")))


# ---------------------------------------------------------------- training plumbing


@pytest.mark.parametrize("key", SMOKE + sorted(SINGLE))
def test_gradients_reach_every_parameter(key):
    model = _model(key)
    pre, post = _pair((1, 1, 24, 12))
    out = model(pre, post)
    g = torch.Generator().manual_seed(1)  # a random projection: no symmetric cancellation
    loss = sum((d * torch.randn(d.shape, generator=g)).sum() for d in [out["displacement"], *out["levels"]])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("key", SMOKE + sorted(SINGLE))
def test_save_load_round_trip_gives_identical_outputs(tmp_path, key):
    model = _model(key, seed=5)
    with torch.no_grad():  # make the weights differ from a fresh init
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(tmp_path / "model.pt", model)
    spec = json.loads(spec_path(path).read_text())
    assert spec == model_spec(model) and spec["architecture"] == model.architecture
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    pre, post = _pair((1, 1, 37, 21))
    with torch.no_grad():
        a, b = model(pre, post), loaded(pre, post)
    assert torch.equal(a["displacement"], b["displacement"])
    assert all(torch.equal(x, y) for x, y in zip(a["levels"], b["levels"]))


@pytest.mark.parametrize("key", SMOKE)
def test_seeded_build_is_deterministic(key):
    a, b = build_model(key, seed=3).state_dict(), build_model(key, seed=3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key", SMOKE)
def test_tiny_model_reduces_the_unsupervised_loss(key):
    """30 Adam steps on one pair related by a smooth axial shift (0.6 .. 1.2 samples, inside the
    RF capture range) lower the multi-scale unsupervised loss and recover the shift."""
    h, w = 64, 32
    post = _speckle(h, w, seed=0)
    truth = torch.zeros(1, 2, h, w)
    truth[:, 0] = 0.6 + 0.01 * torch.arange(h, dtype=torch.float32).view(h, 1)
    pre = warp(post, truth)  # Lagrangian on the pre grid: warp(post, truth) = pre
    model = _model(key)
    loss_fn = UnsupervisedLoss()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    totals = []
    for _ in range(30):
        opt.zero_grad()
        terms = loss_fn(pre, post, model(pre, post))
        terms["total"].backward()
        opt.step()
        totals.append(terms["total"].item())
    with torch.no_grad():
        err = (model(pre, post)["displacement"] - truth)[:, 0, 8:-8, 4:-4].abs().mean().item()
    assert totals[-1] < 0.4 * totals[0], totals
    assert err < 0.4, err  # samples (zero displacement would be ~0.9 off)


# ---------------------------------------------------------------- registry


def test_baseline_names_are_registered_apart_from_the_pwc_family():
    assert set(BASELINE_CONFIGS) == set(EXACT_PARAMETERS)
    assert not set(BASELINE_CONFIGS) & set(MODEL_CONFIGS)


@pytest.mark.parametrize("name", sorted(EXACT_PARAMETERS))
def test_registry_names_build_with_exact_parameter_counts(name):
    model = build_model(name)
    assert model.config == get_config(name)
    assert count_parameters(model) == EXACT_PARAMETERS[name]
    assert count_parameters(model, trainable_only=True) == EXACT_PARAMETERS[name]
    if name.endswith("_cpu"):  # comparable to the 40 %-of-teacher student
        assert abs(EXACT_PARAMETERS[name] / DPNET_CPU_PARAMETERS - 1) < 0.02
    else:
        assert EXACT_PARAMETERS[name] < 10_000


@pytest.mark.parametrize(
    "name, cls, override",
    [
        ("usenet_smoke", USENet, {"in_channels": 2}),
        ("dpunet_smoke", DPUNet, {"dilations": (1, 3)}),
        ("dspwc_smoke", DSPWCNet, {"separable": ("estimators",)}),
    ],
)
def test_build_model_accepts_baseline_configs_and_specs(name, cls, override):
    cfg = get_config(name)
    model = build_model(cfg, seed=0)
    assert type(model) is cls
    assert build_model(model_spec(model)).config == cfg
    assert type(cfg).from_json(cfg.to_json()) == cfg
    changed = dataclasses.replace(cfg, **override)  # how the recipes apply model_overrides
    assert type(build_model(changed)) is cls and build_model(changed).config == changed


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (USENetConfig, {"encoder_widths": (8,), "decoder_widths": ()}, "encoder_widths"),
        (USENetConfig, {"encoder_widths": (4, 8, 8), "decoder_widths": (4,)}, "decoder_widths needs len"),
        (USENetConfig, {"encoder_widths": (4, 0), "decoder_widths": (4,)}, "encoder_widths"),
        (USENetConfig, {"encoder_widths": "48", "decoder_widths": (4,)}, "sequence of integers"),
        (USENetConfig, {"convs_per_block": 0}, "convs_per_block"),
        (USENetConfig, {"in_channels": True}, "in_channels"),
        (USENetConfig, {"leaky_slope": 1.5}, "leaky_slope"),
        (USENetConfig, {"multiscale": "yes"}, "multiscale"),
        (DPUNetConfig, {"dilations": ()}, "dilations"),
        (DPUNetConfig, {"dilations": (1, 0)}, "dilations"),
        (DPUNetConfig, {"fusion": "max"}, "fusion"),
        (DPUNetConfig, {"blocks_per_level": 0}, "blocks_per_level"),
        (DSPWCConfig, {"separable": ("pyramid", "decoder")}, "separable"),
        (DSPWCConfig, {"separable": ("pyramid", "pyramid")}, "separable"),
        (DSPWCConfig, {"separable": "pyramid"}, "separable"),
        (DSPWCConfig, {"pwc": 3}, "pwc must be"),
    ],
)
def test_bad_config_values_raise_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_config_dicts_round_trip_and_reject_unknown_keys():
    for cfg in (get_config(n) for n in EXACT_PARAMETERS):
        assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        USENetConfig.from_dict({"encoder_width": (4, 8)})
    with pytest.raises(ValueError, match="'context' but pwc.context is False"):
        DSPWCConfig(pwc=get_config("umen_teacher_smoke").replace(context=False))
    assert DSPWCConfig(separable=("context", "pyramid")).separable == ("pyramid", "context")
    with pytest.raises(TypeError, match="needs a USENetConfig"):
        USENet(DPUNetConfig())
