"""The optional full-resolution NCC refinement head (PWCConfig.refine_widths, cdpkd.models.refine)."""

import pytest
import torch

from cdpkd.classic.interp import spline_warp
from cdpkd.classic.ncc_volume import ncc_volume
from cdpkd.classic.subsample import peak_features
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
    assert base.refine_peak is False and "refine_peak" not in base.to_dict()
    assert base.refine_interp == "bilinear" and "refine_interp" not in base.to_dict()
    assert base.refine_passes == 1 and "refine_passes" not in base.to_dict()
    assert base.replace(refine_widths=[8], refine_passes=2).to_dict()["refine_passes"] == 2
    assert base.refine_guide_smoothing == (1, 1) and "refine_guide_smoothing" not in base.to_dict()
    assert base.replace(refine_widths=[8], refine_guide_smoothing=[61, 9]).to_dict()["refine_guide_smoothing"] == [61, 9]
    assert base.replace(refine_widths=[8], refine_interp="spline").to_dict()["refine_interp"] == "spline"
    assert base.replace(refine_widths=[8], refine_peak=True).to_dict()["refine_peak"] is True
    head = base.replace(refine_widths=[32, 32, 16], refine_window=[21, 5])
    assert head.to_dict()["refine_widths"] == [32, 32, 16] and head.to_dict()["refine_window"] == [21, 5]
    assert type(head).from_dict(head.to_dict()) == head
    assert base.replace(refine_widths=(32, 16)).scaled(0.5).refine_widths == (16, 8)
    for bad in ({"refine_widths": (0, 4)}, {"refine_radius": (3,)}, {"refine_radius": (-1, 1)},
                {"refine_window": (14, 3)}, {"refine_window": (15, 0)}, {"refine_peak": 1},
                {"refine_interp": "cubic"}, {"refine_passes": 0}, {"refine_passes": 2.0},
                {"refine_guide_smoothing": (60, 9)}, {"refine_guide_smoothing": (61,)},
                {"refine_guide_smoothing": (0, 1)}):
        with pytest.raises(ValueError, match="refine_"):
            base.replace(**bad)


@pytest.mark.parametrize("peak", [False, True])
def test_head_adds_its_parameters_and_starts_near_the_network_without_it(peak):
    plain_cfg = get_config("umen_teacher_smoke")
    plain = build_model(plain_cfg, seed=0)
    headed = build_model(plain_cfg.replace(refine_widths=HEAD, refine_peak=peak), seed=0)
    d = 7 * 3  # default radius (3, 1)
    c0 = plain_cfg.pyramid_channels[0][-1]
    widths_in = [d + c0 + 2 + (3 if peak else 0) + sum(HEAD[:j]) for j in range(len(HEAD))]
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


def test_head_passes_run_the_same_head_on_the_estimate_the_pass_before_left():
    """``refine_passes=2``: the head runs twice with the same weights, the second time on the first pass's
    result, and the output is that result plus the second residual."""
    config = get_config("umen_teacher_smoke").replace(refine_widths=HEAD)
    once, twice = build_model(config, seed=1), build_model(config.replace(refine_passes=2), seed=1)
    twice.load_state_dict(once.state_dict())  # the option adds no parameters
    seen = []
    twice.refine.register_forward_hook(lambda module, args, residual: seen.append((args[2], residual)))
    pre, post = _pair(shift=3)
    with torch.no_grad():
        first, second = once(pre, post)["displacement"], twice(pre, post)["displacement"]
    (disp1, res1), (disp2, res2) = seen
    assert torch.equal(disp1 + res1, first), "the first pass is the one-pass network"
    assert torch.equal(disp2, first) and torch.equal(second, first + res2)
    assert not torch.equal(second, first)


def test_guide_smoothing_warps_by_the_estimates_box_mean_and_adds_the_residual_to_it():
    """``refine_guide_smoothing``: the head sees the estimate's edge-replicated box mean instead of the
    estimate, and the output is that mean plus the head's residual (no parameters added)."""
    config = get_config("umen_teacher_smoke").replace(refine_widths=HEAD)
    plain, smoothed = build_model(config, seed=1), build_model(config.replace(refine_guide_smoothing=(9, 3)), seed=1)
    smoothed.load_state_dict(plain.state_dict())
    seen = []
    for model in (plain, smoothed):
        model.refine.register_forward_hook(lambda module, args, residual: seen.append((args[2], residual)))
    pre, post = _pair(shift=3)
    with torch.no_grad():
        out_plain, out_smoothed = plain(pre, post)["displacement"], smoothed(pre, post)["displacement"]
    (estimate, res_plain), (guide, res_smoothed) = seen
    assert torch.equal(out_plain, estimate + res_plain)
    padded = torch.nn.functional.pad(estimate, (1, 1, 4, 4), mode="replicate")
    by_hand = torch.stack([padded[..., i : i + 64, j : j + 32] for i in range(9) for j in range(3)]).mean(dim=0)
    assert torch.allclose(guide, by_hand, atol=1e-5), "the guide is the 9 x 3 box mean, edges replicated"
    assert not torch.allclose(guide, estimate)
    assert torch.equal(out_smoothed, guide + res_smoothed)


def test_spline_head_warps_the_rf_by_the_cubic_b_spline():
    """``refine_interp="spline"``: the head's NCC volume is that of the post frame warped by the
    cubic B-spline (as NCC block matching warps RF); at a whole-sample estimate it equals the
    bilinear head's (both sample the frame itself), between samples it differs."""
    config = get_config("umen_teacher_smoke").replace(refine_widths=HEAD)
    bilinear = build_model(config, seed=1)
    spline = build_model(config.replace(refine_interp="spline"), seed=1)
    assert "spline warp" in repr(spline.refine)
    pre, post = _pair(shift=3)
    disp = torch.zeros(2, 2, 64, 32)
    disp[:, 0] = 2.5
    cost = spline.refine.cost(pre, post, disp)
    expected = ncc_volume(pre, spline_warp(post, disp)[0], spline.refine.window, spline.refine.radius)
    assert torch.equal(cost, expected)
    assert not torch.allclose(cost, bilinear.refine.cost(pre, post, disp), atol=1e-3)
    disp[:, 0] = 3.0
    inner = (slice(None), slice(None), slice(16, -16), slice(4, -4))
    assert torch.allclose(spline.refine.cost(pre, post, disp)[inner], bilinear.refine.cost(pre, post, disp)[inner],
                          atol=1e-5)
    spline.load_state_dict(bilinear.state_dict())  # same parameters: the option adds none


@pytest.mark.parametrize("peak", [False, True])
def test_pruning_maps_and_removes_head_channels(peak):
    model = build_model(get_config("umen_teacher_smoke").replace(refine_widths=HEAD, refine_peak=peak), seed=2).eval()
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


def _rf_pair(shift: float, n: int = 256, lines: int = 16, seed: int = 4):
    """Band-limited RF lines (8 samples per carrier period, as 5 MHz at 40 MHz) and the same lines
    moved down by ``shift`` samples, exactly (a phase ramp in the Fourier domain)."""
    g = torch.Generator().manual_seed(seed)
    freq = torch.fft.rfftfreq(n, dtype=torch.float64)
    band = torch.exp(-0.5 * ((freq - 0.125) / 0.04) ** 2)
    spectrum = torch.fft.rfft(torch.randn(lines, n, generator=g, dtype=torch.float64), dim=-1) * band
    pre = torch.fft.irfft(spectrum, n=n, dim=-1)
    post = torch.fft.irfft(spectrum * torch.exp(-2j * torch.pi * freq * shift), n=n, dim=-1)
    as_frame = lambda x: x.T.contiguous().float()[None, None]  # noqa: E731  N x 1 x samples x lines
    return as_frame(pre), as_frame(post)


@pytest.mark.parametrize("shift", [-1.7, 0.4, 2.3])
def test_peak_features_locate_a_known_subsample_shift(shift):
    pre, post = _rf_pair(shift)
    cost = ncc_volume(pre, post, (15, 3), (3, 1))
    features = peak_features(cost, (3, 1))[0, :, 32:-32, 2:-2]  # away from the frame's edges
    assert features.shape[0] == 3
    axial, lateral, peak = features
    assert (axial - shift).abs().median() < 0.02 and (axial - shift).abs().max() < 0.1
    # no lateral motion: the integer peak is at 0 lines (independent lines leave only a noisy parabola)
    assert lateral.abs().max() < 0.5 and lateral.abs().median() < 0.1
    assert peak.min() > 0.9


def test_peak_features_at_the_edge_of_the_search_box_keep_the_integer_offset():
    pre, post = _rf_pair(3.6)  # beyond the axial radius 3: the peak sits on the box edge
    features = peak_features(ncc_volume(pre, post, (15, 3), (3, 1)), (3, 1))[0, :, 32:-32, 2:-2]
    assert torch.equal(features[0], torch.full_like(features[0], 3.0))
    flat = peak_features(-torch.ones(1, 21, 8, 8), (3, 1))  # no NCC defined anywhere in the box
    assert torch.equal(flat, torch.tensor([-3.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8))
    centred = peak_features(-torch.ones(1, 21, 8, 8), (3, 1), flat="centre")  # block matching's choice
    assert torch.equal(centred, torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="radius"):
        peak_features(torch.zeros(1, 21, 8, 8), (2, 1))
    with pytest.raises(ValueError, match="flat"):
        peak_features(torch.zeros(1, 21, 8, 8), (3, 1), flat="middle")


def test_peak_features_use_the_estimators_asked_for():
    """On RF the parabola is biased toward the integer lag where the cosine fit is not; "none" keeps the
    integer peak (the estimators themselves: tests/test_classic_parts.py)."""
    shift = 0.4
    cost = ncc_volume(*_rf_pair(shift), (15, 3), (3, 1))
    axial = {m: peak_features(cost, (3, 1), methods=(m, "parabolic"))[0, 0, 32:-32, 2:-2]
             for m in ("cosine", "parabolic", "none")}
    assert torch.equal(axial["none"], axial["none"].round()) and (axial["none"] == 0).float().mean() > 0.9
    bias = {m: (a - shift).median().item() for m, a in axial.items()}
    assert abs(bias["cosine"]) < 0.003 < abs(bias["parabolic"]), bias  # ~0.001 against ~0.01 sample
    assert bias["parabolic"] < 0, "the parabola pulls toward the integer lag 0"
    with pytest.raises(ValueError, match="subsample method"):
        peak_features(cost, (3, 1), methods=("cubic", "parabolic"))
