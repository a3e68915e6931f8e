"""Model cost (FLOPs, latency) and the network -> estimator adapter."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from cdpkd.complexity import count_flops, latency_ms, network_costs
from cdpkd.estimators import mirror_averaged, network_estimator
from cdpkd.models import build_model, count_parameters, get_config


class TwoConv(nn.Module):
    """A 'network' with a known cost: one 3x3 conv (1 -> 2 channels, no bias) on each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)

    def forward(self, pre, post):
        return {"displacement": self.conv(pre) + self.conv(post)}


def test_flops_match_the_hand_count():
    h, w = 20, 12
    # per frame: 2 output channels x 9 taps x H x W multiply-adds = 2 FLOPs each
    assert count_flops(TwoConv(), h, w) == 2 * (2 * 2 * 9 * h * w)


def test_latency_is_a_positive_median_and_rejects_zero_repeats():
    model = TwoConv().train()
    assert latency_ms(model, 16, 8, repeats=3) > 0
    assert model.training, "measuring must not leave the model in eval mode"
    with pytest.raises(ValueError, match="repeats"):
        latency_ms(model, 16, 8, repeats=0)


class Recorder(nn.Module):
    """Returns a constant displacement and remembers what it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen = None

    def forward(self, pre, post):
        self.seen = (pre.clone(), post.clone(), torch.is_grad_enabled(), self.training)
        out = torch.zeros(pre.shape[0], 2, *pre.shape[-2:])
        out[:, 0] = 1.5
        return {"displacement": out + self.weight}


def test_network_estimator_normalises_like_training_and_returns_numpy():
    model = Recorder()
    rng = np.random.default_rng(0)
    pre = (50 * rng.standard_normal((32, 8))).astype(np.float32)
    post = np.roll(pre, 1, axis=0)
    estimate = network_estimator(model, "cpu")(pre, post)
    assert isinstance(estimate, np.ndarray) and estimate.shape == (2, 32, 8)
    assert np.allclose(estimate[0], 1.5) and np.allclose(estimate[1], 0)
    seen_pre, seen_post, grad_enabled, training = model.seen
    assert seen_pre.shape == (1, 1, 32, 8)
    assert seen_pre.std(correction=0).item() == pytest.approx(1.0, rel=1e-4)  # scaled by the pre frame's std ...
    assert torch.allclose(seen_post * float(pre.std()), torch.from_numpy(post)[None, None], atol=1e-3)  # ... both
    assert not grad_enabled and not training
    with pytest.raises(ValueError, match="H x W"):
        network_estimator(model, "cpu")(pre[None], post[None])


def test_a_flat_pre_frame_is_not_scaled_to_infinity():
    # a blank (all-zero) pre crop has std 0: the post crop must reach the network finite
    model = Recorder()
    pre = np.zeros((32, 8), dtype=np.float32)
    post = (50 * np.random.default_rng(1).standard_normal((32, 8))).astype(np.float32)
    network_estimator(model, "cpu")(pre, post)
    seen_pre, seen_post, _, _ = model.seen
    assert torch.isfinite(seen_post).all() and torch.equal(seen_post[0, 0], torch.from_numpy(post))
    assert torch.equal(seen_pre, torch.zeros_like(seen_pre))


def test_flops_of_a_two_channel_network():
    config = get_config("umen_teacher_smoke")
    two = build_model(dataclasses.replace(config, in_channels=2), seed=0)
    one = build_model(config, seed=0)
    assert count_flops(two, 32, 16) > count_flops(one, 32, 16)  # the first conv reads twice the channels


def test_tiled_estimation_blends_tiles_into_the_whole_frame():
    class Position(nn.Module):
        """Predicts a field that depends only on the frame content (a per-pixel function), so tiling is exact."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, pre, post):
            return {"displacement": torch.cat((pre * 0 + 1.5, pre * 0 - 0.5), dim=1) * self.w}

    rng = np.random.default_rng(1)
    pre = rng.standard_normal((70, 20)).astype(np.float32)
    post = np.roll(pre, 2, axis=0)
    whole = network_estimator(Position(), "cpu")(pre, post)
    tiled = network_estimator(Position(), "cpu", tile=(32, 8), overlap=0.5, tiles_per_batch=3)(pre, post)
    assert tiled.shape == (2, 70, 20)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    with pytest.raises(ValueError, match="overlap"):
        network_estimator(Position(), "cpu", tile=(32, 8), overlap=1.0)


class CompressionOnlyMatcher(nn.Module):
    """A stand-in for a network trained on compression only: the integer axial lag in
    [0, h / 4] that best matches its h x w input crops (never negative, range set by its view)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, pre, post):
        h = pre.shape[-2]
        scores = torch.stack([(pre[..., : h - lag, :] * post[..., lag:, :]).mean(dim=(1, 2, 3))
                              for lag in range(h // 4 + 1)], dim=1)
        lag = scores.argmax(dim=1).float().view(-1, 1, 1, 1) * self.w
        return {"displacement": torch.cat((lag.expand_as(pre), torch.zeros_like(pre)), dim=1)}


def test_guided_tiles_follow_a_displacement_larger_than_a_tile_can_see():
    rng = np.random.default_rng(4)
    shift = 20  # post(z + 20) = pre(z): beyond the 8-sample reach of a 32-sample tile
    frame = rng.standard_normal((320 + shift, 12)).astype(np.float32)
    pre, post = frame[shift:], frame[:-shift]
    whole = network_estimator(CompressionOnlyMatcher(), "cpu")(pre, post)
    assert np.all(whole[0] == shift), "the whole frame sees the shift (reach 80 samples)"
    plain = network_estimator(CompressionOnlyMatcher(), "cpu", tile=(32, 12))(pre, post)
    guided = network_estimator(CompressionOnlyMatcher(), "cpu", tile=(32, 12), guided=True)(pre, post)
    inner = slice(0, 240)  # below it the shifted crops are clipped to the frame
    assert np.all(plain[0, inner] <= 8), "a plain tile cannot reach the shift"
    np.testing.assert_allclose(guided[0, inner], shift, atol=1e-5)
    np.testing.assert_allclose(guided[1], 0, atol=1e-6)
    assert guided.shape == plain.shape == (2, 320, 12)


class NarrowMatcher(CompressionOnlyMatcher):
    """:class:`CompressionOnlyMatcher` trained on crops ``lines`` wide: on wider input it reports a
    lag 30 samples too large (the cpu teacher fails on inputs wider than its crop, not deeper)."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.lines = lines

    def forward(self, pre, post):
        out = super().forward(pre, post)["displacement"]
        if pre.shape[-1] > self.lines:
            out = out + torch.tensor([30.0, 0.0]).view(1, 2, 1, 1)
        return {"displacement": out}


def test_guide_from_strips_of_the_tile_width_when_the_whole_frame_is_too_wide():
    rng = np.random.default_rng(5)
    shift = 20
    for width in (24, 30):  # 30: the last strip overlaps the one before (starts 0, 12, 18)
        frame = rng.standard_normal((320 + shift, width)).astype(np.float32)
        pre, post = frame[shift:], frame[:-shift]
        inner = slice(0, 240)
        whole = network_estimator(NarrowMatcher(12), "cpu", tile=(32, 12), guided=True, guide_pass="whole")(pre, post)
        strips = network_estimator(NarrowMatcher(12), "cpu", tile=(32, 12), guided=True)(pre, post)  # the default
        assert np.abs(whole[0, inner] - shift).max() > 5, "a too-wide guide pass misplaces the tiles"
        np.testing.assert_allclose(strips[0, inner], shift, atol=1e-5)
        np.testing.assert_allclose(strips[1], 0, atol=1e-6)
    # a network that handles the whole frame gets the same estimate from either guide
    same = [network_estimator(CompressionOnlyMatcher(), "cpu", tile=(32, 12), guided=True, guide_pass=g)(pre, post)
            for g in ("whole", "strips")]
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)
    with pytest.raises(ValueError, match="guide_pass"):
        network_estimator(CompressionOnlyMatcher(), "cpu", tile=(32, 12), guided=True, guide_pass="rows")


def test_guided_tile_shift_is_below_the_coarse_minimum_and_inside_the_frame():
    from cdpkd.estimators import _tile_shift

    coarse = torch.zeros(2, 32, 8)
    coarse[0] = torch.linspace(10.2, 14.0, 32)[:, None]
    assert _tile_shift(coarse, 100, 0, 32, 8, 320, 8) == (9, 0)  # floor(~10.3 - 1)
    assert _tile_shift(coarse, 285, 0, 32, 8, 320, 8) == (3, 0)  # clipped: the crop ends at row 320
    assert _tile_shift(-coarse, 5, 0, 32, 8, 320, 8) == (-5, 0)  # clipped: the crop starts at row 0
    # median-centred (quantile 0.5, no margin): floor of the median of 10.2..14.0 (~12.1)
    assert _tile_shift(coarse, 100, 0, 32, 8, 320, 8, quantile=0.5, margin=0.0) == (12, 0)
    with pytest.raises(ValueError, match="guide_quantile"):
        network_estimator(CompressionOnlyMatcher(), "cpu", tile=(32, 8), guided=True, guide_quantile=1.5)


def test_tile_starts_cover_the_axis():
    from cdpkd.estimators import tile_starts

    for size, tile in ((70, 32), (64, 32), (10, 32), (1536, 256)):
        starts = tile_starts(size, tile, 0.5)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + tile] = True
        assert covered.all() and starts[0] == 0 and starts[-1] + min(tile, size) == size


def test_estimator_flops_and_latency():
    from cdpkd.complexity import estimator_flops, estimator_latency_ms

    model = TwoConv()
    est = network_estimator(model, "cpu", tile=(16, 8))
    pre = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)
    # 3 tiles of 16 x 8 (starts 0, 8, 16), each two 3x3 convs to 2 channels
    assert estimator_flops(est, pre, pre) == 3 * 2 * (2 * 2 * 9 * 16 * 8)
    assert estimator_latency_ms(est, pre, pre, repeats=2) > 0


def test_network_costs_measures_each_network_in_turn():
    big, small = build_model("umen_teacher_smoke", seed=0), build_model("dpnet_smoke", seed=0)
    rng = np.random.default_rng(0)
    pre = rng.standard_normal((64, 32)).astype(np.float32)
    post = np.roll(pre, 1, axis=0)
    costs = network_costs({"big": big, "small": small}, pre, post, repeats=2, gpu=False)
    assert set(costs) == {"big", "small"}
    assert costs["big"]["params"] == count_parameters(big) and costs["small"]["params"] == count_parameters(small)
    assert costs["big"]["flops"] == count_flops(big, 64, 32) > costs["small"]["flops"] > 0
    assert all(c["latency_cpu_ms"] > 0 and math.isnan(c["latency_gpu_ms"]) for c in costs.values())
    tiled = network_costs({"big": big}, pre, post, tile=(32, 32), overlap=0.5, repeats=1, gpu=False)
    assert tiled["big"]["flops"] > costs["big"]["flops"], "overlapping tiles cost more than one forward"
    guided = network_costs({"big": big}, pre, post, tile=(32, 32), overlap=0.5, guided=True, repeats=1, gpu=False)
    assert guided["big"]["flops"] == tiled["big"]["flops"] + costs["big"]["flops"], "guided: one whole-frame pass more"
    # on a 48-line frame the strips of a 32-line tile overlap (two forwards of 64 x 32), the whole pass is one 64 x 48
    wide_pre, wide_post = np.concatenate([pre, pre[:, :16]], axis=1), np.concatenate([post, post[:, :16]], axis=1)
    plain = network_costs({"big": big}, wide_pre, wide_post, tile=(32, 32), repeats=1, gpu=False)["big"]["flops"]
    by_pass = {g: network_costs({"big": big}, wide_pre, wide_post, tile=(32, 32), guided=True, guide_pass=g,
                                repeats=1, gpu=False)["big"]["flops"] for g in ("whole", "strips")}
    assert by_pass["whole"] == plain + count_flops(big, 64, 48)
    assert by_pass["strips"] == plain + 2 * count_flops(big, 64, 32)
    with pytest.raises(ValueError, match="repeats"):
        network_costs({"big": big}, pre, post, repeats=0)


def test_tiles_per_batch_changes_the_batching_not_the_estimate():
    rng = np.random.default_rng(1)
    pre = rng.standard_normal((192, 48)).astype(np.float32)
    post = np.roll(pre, 2, axis=0)
    model = build_model("umen_teacher_smoke", seed=0)
    outputs = [network_estimator(model, "cpu", tile=(64, 32), guided=True, tiles_per_batch=n)(pre, post)
               for n in (1, 3, 64)]
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], rtol=1e-5, atol=1e-5)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="tiles_per_batch"):
            network_estimator(model, "cpu", tile=(64, 32), tiles_per_batch=bad)


def test_compiled_estimator_matches_eager(cpp_compiler):
    """torch.compile changes the speed, not the estimate (to float rounding), and really compiles."""
    from torch._dynamo.utils import counters

    rng = np.random.default_rng(2)
    pre = rng.standard_normal((128, 32)).astype(np.float32)
    post = np.roll(pre, 2, axis=0)
    model = build_model(dataclasses.replace(get_config("umen_teacher_smoke"), refine_widths=(4,)), seed=0)
    eager = network_estimator(model, "cpu")(pre, post)
    graphs = counters["stats"]["unique_graphs"]
    compiled = network_estimator(model, "cpu", compile_model=True)(pre, post)
    assert counters["stats"]["unique_graphs"] > graphs, "nothing was compiled"
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-4)
    assert np.abs(eager).max() > 1e-3  # a non-trivial output was compared


def test_mirror_averaged_reverses_the_lines_and_the_lateral_sign():
    """The mirrored call sees both frames with their lines reversed; its estimate comes back reversed with
    the lateral component negated, and the two are averaged (NumPy and torch frames alike)."""
    calls = []

    def record(pre, post):  # "axial" = the pre frame, "lateral" = the post frame, as given
        calls.append(pre)
        return np.stack([pre, post]) if isinstance(pre, np.ndarray) else torch.stack([pre, post])

    g = np.random.default_rng(0)
    pre, post = g.standard_normal((6, 5)).astype(np.float32), g.standard_normal((6, 5)).astype(np.float32)
    out = mirror_averaged(record)(pre, post)
    assert np.array_equal(calls[1], pre[:, ::-1]), "the second call sees the mirrored frames"
    assert np.array_equal(out[0], pre) and np.array_equal(out[1], np.zeros_like(post)), "(pre, post) and (pre, -post)"
    torch_out = mirror_averaged(record)(torch.from_numpy(pre), torch.from_numpy(post))
    assert isinstance(torch_out, torch.Tensor) and torch.equal(torch_out, torch.from_numpy(out))
