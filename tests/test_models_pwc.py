"""PWCNet: shapes (incl. padding), units across levels, features, inputs, determinism, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cdpkd.models.pwc as pwc_module
from cdpkd.models import PWCConfig, PWCNet, build_model
from cdpkd.signal import envelope as scipy_envelope

# Small configs covering: finest estimator at full resolution (FULL), finest at
# stride 2 with upsampled output (smoke registry entry), plain non-dense stacks.
FULL = PWCConfig(
    pyramid_channels=(4, 6, 8),
    pyramid_convs=1,
    full_res_levels=1,
    estimator_levels=(2, 1, 0),
    estimator_widths=(6, 4),
    search_radii=((2, 1), (2, 1), (1, 1)),
    context_widths=(6, 4),
    context_dilations=(1, 2),
)
PLAIN_STACK = FULL.replace(dense=False, upfeat_channels=0, context=False, full_res_levels=2)
WINDOWED = FULL.replace(cost_windows=((1, 1), (3, 3), (5, 1)))



def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize(
    "config",
    [FULL, PLAIN_STACK, WINDOWED, "umen_teacher_smoke", "dpnet_smoke"],
    ids=["full", "plain_stack", "windowed_cost", "smoke", "dpnet_smoke"],
)
@pytest.mark.parametrize("size", [(32, 16), (37, 21), (5, 3)])
def test_output_shapes(config, size):
    model = build_model(config, seed=0)
    cfg = model.config
    pre, post = _pair((2, 1, *size))
    out = model(pre, post, return_features=True)
    h, w = size
    assert out["displacement"].shape == (2, 2, h, w)
    assert out["strides"] == list(cfg.strides)
    assert out["pyramid_levels"] == list(cfg.estimator_levels)
    assert len(out["levels"]) == len(cfg.estimator_levels)
    feats = out["features"]
    for i, (s, lv) in enumerate(zip(out["strides"], cfg.estimator_levels)):
        hl, wl = -(-h // s), -(-w // s)
        (ra, rl), widths = cfg.search_radii[i], cfg.estimator_widths[i]
        assert out["levels"][i].shape == (2, 2, hl, wl)
        assert feats["pre"][i].shape == (2, cfg.pyramid_channels[lv][-1], hl, wl)
        assert feats["estimator"][i].shape == (2, widths[-1], hl, wl)
        assert feats["cost"][i].shape == (2, (2 * ra + 1) * (2 * rl + 1), hl, wl)
    assert torch.isfinite(out["displacement"]).all()


def test_teacher_runs_on_a_small_odd_crop():
    model = build_model("umen_teacher", seed=0)
    pre, post = _pair((1, 1, 33, 20))
    with torch.no_grad():
        out = model(pre, post)
    assert out["displacement"].shape == (1, 2, 33, 20)
    assert [t.shape[-2:] for t in out["levels"]] == [(3, 2), (5, 3), (9, 5), (17, 10), (33, 20)]


def _constant_bias_model(config: PWCConfig, bias: tuple[float, float]) -> PWCNet:
    """All displacement heads silent except a constant bias at the coarsest level."""
    model = build_model(config, seed=0)
    with torch.no_grad():
        heads = [e.predict for e in model.estimators] + ([model.context.predict] if model.context else [])
        for head in heads:
            head.weight.zero_()
            head.bias.zero_()
        model.estimators[0].predict.bias.copy_(torch.tensor(bias))
    return model


@pytest.mark.parametrize(
    "config", [FULL, "umen_teacher_smoke", PLAIN_STACK], ids=["full", "smoke", "plain_stack"]
)
def test_coarse_displacement_is_carried_in_full_resolution_units(config, monkeypatch):
    """A bias b (level pixels) at the coarsest level s0 is b * s0 samples everywhere, at every level,
    and each finer level warps by b * s0 / s in its own pixels."""
    bias = (0.75, -0.25)
    model = _constant_bias_model(config, bias)
    s0 = model.config.strides[0]
    expected = torch.tensor(bias).view(1, 2, 1, 1) * s0

    seen = []
    real_warp = pwc_module.warp
    monkeypatch.setattr(pwc_module, "warp", lambda x, d: seen.append(d.detach().clone()) or real_warp(x, d))
    pre, post = _pair((1, 1, 29, 18))
    with torch.no_grad():
        out = model(pre, post)
    for level in out["levels"]:
        torch.testing.assert_close(level, expected.expand_as(level))
    torch.testing.assert_close(out["displacement"], expected.expand(1, 2, 29, 18))
    assert len(seen) == len(out["strides"]) - 1
    for d, s in zip(seen, out["strides"][1:]):
        torch.testing.assert_close(d, (expected / s).expand_as(d))


def test_bad_inputs_are_rejected():
    model = build_model("umen_teacher_smoke", seed=0)
    good = torch.randn(1, 1, 16, 8)
    cases = [
        ((good, torch.randn(1, 1, 16, 9)), "shape mismatch"),
        ((good[0], good[0]), "4-D"),
        ((good, good.numpy()), "torch.Tensor"),
        ((good.to(torch.int32), good.to(torch.int32)), "floating point"),
        ((torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8)), "input channel"),
        ((torch.empty(0, 1, 16, 8), torch.empty(0, 1, 16, 8)), "empty"),
    ]
    nan = good.clone()
    nan[0, 0, 3, 3] = float("nan")
    inf = good.clone()
    inf[0, 0, 0, 0] = float("inf")
    cases += [((good, nan), "post contain"), ((inf, good), "pre contain"), ((nan, inf), "pre and post")]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            model(*args)


def test_input_scale_does_not_matter():
    model = build_model("umen_teacher_smoke", seed=1)
    pre, post = _pair((1, 1, 24, 12))
    with torch.no_grad():
        a = model(pre, post)["displacement"]
        b = model(1e4 * pre, 1e4 * post)["displacement"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("h", [16, 17])
def test_envelope_matches_scipy(h):
    x = torch.randn(2, 1, h, 5, dtype=torch.float64)
    from cdpkd.models.inputs import envelope

    np.testing.assert_allclose(envelope(x).numpy(), scipy_envelope(x.numpy()), rtol=1e-10, atol=1e-12)


def test_envelope_input_mode():
    cfg = build_model("umen_teacher_smoke").config.replace(input_mode="rf+envelope")
    model = build_model(cfg, seed=0)
    assert model.pyramid.levels[0][0].in_channels == 2
    pre, post = _pair((1, 1, 20, 8))
    assert model(pre, post)["displacement"].shape == (1, 2, 20, 8)


def test_seeded_build_and_forward_are_deterministic():
    state = torch.random.get_rng_state()
    a, b = build_model("umen_teacher_smoke", seed=3), build_model("umen_teacher_smoke", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = build_model("umen_teacher_smoke", seed=4)
    assert not torch.equal(a.estimators[0].convs[0].weight, c.estimators[0].convs[0].weight)
    pre, post = _pair((1, 1, 32, 16))
    assert torch.equal(a(pre, post)["displacement"], b(pre, post)["displacement"])


def _speckle(h: int, w: int, seed: int) -> torch.Tensor:
    """RF-like lines: white scatterers convolved with a Gabor pulse along depth."""
    g = torch.Generator().manual_seed(seed)
    scat = torch.randn(1, 1, h, w, generator=g, dtype=torch.float64)
    t = torch.arange(-6, 7, dtype=torch.float64)
    pulse = (torch.exp(-0.5 * (t / 2.0) ** 2) * torch.cos(2 * torch.pi * t / 4.0)).view(1, 1, -1, 1)
    return torch.nn.functional.conv2d(scat, pulse, padding=(6, 0)).float()


def test_tiny_model_learns_a_known_shift():
    torch.manual_seed(0)
    model = build_model("umen_teacher_smoke", seed=0)
    rf = _speckle(72, 24, seed=0)
    pre, post = rf[..., 4:68, :], rf[..., 2:66, :]  # post(y) = pre(y - 2): displacement +2 samples
    target = torch.zeros(1, 2, 64, 24)
    target[:, 0] = 2.0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out = model(pre, post)
        loss = sum(
            (lv - torch.nn.functional.interpolate(target, lv.shape[-2:])).abs().mean() for lv in out["levels"]
        )
        loss = loss + (out["displacement"] - target).abs().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize("correlation", ["plain", "gocor"])
def test_displacements_stay_float32_under_autocast(correlation):
    cfg = build_model("umen_teacher_smoke").config.replace(correlation=correlation, gocor_steps=1)
    model = build_model(cfg, seed=0)
    pre, post = _pair((1, 1, 24, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(pre, post, return_features=True)
    assert out["features"]["estimator"][0].dtype == torch.bfloat16  # the bulk does run in bf16
    assert out["displacement"].dtype == torch.float32
    assert all(lv.dtype == torch.float32 for lv in out["levels"])
    out["displacement"].square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_cost_volumes_carry_a_matching_signal_at_init():
    """Default PyTorch conv init shrinks features ~0.6x per layer: the deep pyramid's cost volumes
    would be ~1e-4 and a trained network collapses to a constant. He init keeps them O(1)."""
    model = build_model("umen_teacher_cpu", seed=0)
    rf = _speckle(160, 64, seed=1)
    pre, post = rf[..., 16:144, :], rf[..., 13:141, :]
    spread = []
    for cv in model.cost_volumes:
        cv.register_forward_hook(lambda mod, inp, out: spread.append(out.std(dim=1).mean().item()))
    with torch.no_grad():
        model(pre, post)
    assert len(spread) == len(model.cost_volumes)
    assert min(spread) > 2e-3, spread  # about 1e-4 with the default init


@pytest.mark.parametrize("correlation", ["plain", "gocor"])
def test_windowed_cost_is_the_box_mean_of_the_pixel_cost(correlation):
    """WindowedCost: each displacement channel averaged over the window, borders over the pixels inside."""
    from cdpkd.models.cost import WindowedCost, make_cost_volume

    f1, f2 = _pair((1, 3, 9, 7))
    inner = make_cost_volume(correlation, 2, 1, 2)
    windowed = make_cost_volume(correlation, 2, 1, 2, (5, 3))
    assert isinstance(windowed, WindowedCost) and not isinstance(inner, WindowedCost)
    windowed.inner.load_state_dict(inner.state_dict())
    with torch.no_grad():
        pixel, out = inner(f1, f2), windowed(f1, f2)
    ref = torch.zeros_like(pixel)
    for y in range(9):
        for x in range(7):
            ref[..., y, x] = pixel[..., max(0, y - 2) : y + 3, max(0, x - 1) : x + 2].mean(dim=(-2, -1))
    torch.testing.assert_close(out, ref)


def test_windowed_cost_averaging_is_counted_in_flops():
    """avg_pool2d has a registered formula: kh * kw FLOPs per output of each windowed volume."""
    from cdpkd.complexity import count_flops

    plain, windowed = PWCNet(FULL), PWCNet(WINDOWED)
    h, w = 32, 16
    extra = 0
    for level, (ra, rl), (kh, kw) in zip(FULL.estimator_levels, FULL.search_radii, WINDOWED.cost_windows):
        if (kh, kw) != (1, 1):
            s = FULL.level_stride(level)
            extra += (2 * ra + 1) * (2 * rl + 1) * (h // s) * (w // s) * kh * kw
    assert extra > 0
    assert count_flops(windowed, h, w) - count_flops(plain, h, w) == extra
