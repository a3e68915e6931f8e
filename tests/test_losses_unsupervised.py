"""Unsupervised loss terms on known inputs: similarity, smoothness, incompressibility, Poisson bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cdpkd.losses.unsupervised import (
    box_ncc,
    envelope,
    in_frame_mask,
    incompressibility,
    poisson_bound,
    ratio_bounds,
    similarity_ncc,
    smoothness,
)
from cdpkd.losses.unsupervised._common import penalty
from cdpkd.metrics import local_ncc
from cdpkd.sim import ImagingConfig, Scatterers, simulate_rf
from cdpkd.sim.rf_convolution import scatterer_margins_m


def _noise(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rf_pair(shift_samples: float, n_samples: int = 192, n_lines: int = 24, seed: int = 0):
    """Noiseless simulated RF (5 MHz at 40 MHz: 8 samples per period); post = pre moved down by the shift."""
    cfg = ImagingConfig(n_samples=n_samples, n_lines=n_lines, snr_db=None)
    rng = np.random.default_rng(seed)
    mz, mx = scatterer_margins_m(cfg)
    n = int((cfg.depth_m + 2 * mz) * (cfg.width_m + 2 * mx) / cfg.resolution_cell_m2 * 10)
    sc = Scatterers(
        rng.uniform(-mz, cfg.depth_m + mz, n),
        rng.uniform(-mx, cfg.width_m + mx, n),
        rng.choice([-1.0, 1.0], n),
    )
    pre = simulate_rf(sc, cfg)
    post = simulate_rf(sc.displaced(np.full(n, shift_samples * cfg.dz_m), np.zeros(n)), cfg)
    as_t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    return as_t(pre), as_t(post)


def grid(n, h, w, dtype=torch.float64):
    y = torch.arange(h, dtype=dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    x = torch.arange(w, dtype=dtype).view(1, 1, 1, w).expand(n, 1, h, w)
    return y, x


def field(ax, lat):
    return torch.cat([ax, lat], dim=1)


# --- similarity ---------------------------------------------------------------


def test_identical_frames_zero_displacement_give_ncc_one():
    pre = _noise(2, 1, 64, 32, seed=1)
    zero = torch.zeros(2, 2, 64, 32)
    loss = similarity_ncc(pre, pre.clone(), zero, (15, 5))
    assert loss.shape == () and 0.0 <= float(loss) < 1e-3  # eps floor: 1 - var / (var + 1e-4)
    assert float(similarity_ncc(pre, pre, zero, (15, 5), eps=1e-9)) < 1e-6
    # scale-free, and ~1 for unrelated frames
    assert float(similarity_ncc(pre, 5.0 * pre + 2.0, zero, (15, 5))) < 1e-3
    assert abs(float(similarity_ncc(pre, _noise(2, 1, 64, 32, seed=2), zero, (15, 5))) - 1.0) < 0.05
    per_sample = similarity_ncc(pre, pre, zero, (15, 5), reduction="none")
    assert per_sample.shape == (2,)


def test_box_ncc_matches_metrics_local_ncc_in_the_interior():
    a = _noise(1, 1, 48, 24, seed=3, dtype=torch.float64)
    b = 0.6 * a + _noise(1, 1, 48, 24, seed=4, dtype=torch.float64)
    ours = box_ncc(a, b, (9, 3), eps=1e-8)
    ref = local_ncc(a, b, (9, 3), eps=1e-8)
    assert torch.allclose(ours, ref, atol=1e-10)  # edges too: both crop the window to the frame


def test_known_shift_is_found_by_the_similarity():
    pre, post = rf_pair(3.0)
    n, _, h, w = pre.shape

    def at(shift):
        d = torch.zeros(n, 2, h, w)
        d[:, 0] = shift
        return similarity_ncc(pre, post, d)

    right, wrong = float(at(3.0)), float(at(0.0))
    assert right < 1e-3  # noiseless, exact shift: only the eps floor and the excluded bottom rows
    assert wrong > 0.3 and wrong > 100 * right
    # the gradient points toward the true shift from either side
    for start, sign in ((2.5, -1.0), (3.5, 1.0)):
        d = torch.zeros(n, 2, h, w)
        d[:, 0] = start
        d.requires_grad_(True)
        similarity_ncc(pre, post, d).backward()
        assert sign * float(d.grad[:, 0].sum()) > 0


def test_spline_warp_matches_rf_at_a_half_sample_shift_better_than_bilinear():
    """Linear interpolation of an 8-samples-per-period carrier damps it and shifts its phase between
    samples: at the exact half-sample shift the bilinear similarity stays well above 0, the cubic
    B-spline's is near it, and both still find the shift (the gradient points toward it)."""
    pre, post = rf_pair(2.5)
    n, _, h, w = pre.shape
    d = torch.zeros(n, 2, h, w)
    d[:, 0] = 2.5
    bilinear = float(similarity_ncc(pre, post, d, eps=1e-9))
    spline = float(similarity_ncc(pre, post, d, eps=1e-9, interpolation="spline"))
    assert spline < 0.1 * bilinear and spline < 1e-4
    assert float(similarity_ncc(pre, post, torch.zeros_like(d), interpolation="spline")) > 0.3
    for start, sign in ((2.0, -1.0), (3.0, 1.0)):
        s = torch.zeros(n, 2, h, w)
        s[:, 0] = start
        s.requires_grad_(True)
        similarity_ncc(pre, post, s, interpolation="spline").backward()
        assert sign * float(s.grad[:, 0].sum()) > 0
    # at whole-sample shifts both interpolations sample the frame itself
    d[:, 0] = 3.0
    pre3, post3 = rf_pair(3.0)
    assert float(similarity_ncc(pre3, post3, d, interpolation="spline")) == pytest.approx(
        float(similarity_ncc(pre3, post3, d)), abs=1e-6)
    with pytest.raises(ValueError, match="interpolation"):
        similarity_ncc(pre, post, d, interpolation="cubic")


def test_out_of_frame_samples_are_excluded():
    d = torch.zeros(1, 2, 10, 6)
    d[:, 0] = 3.0
    m = in_frame_mask(d)
    assert m.shape == (1, 1, 10, 6)
    assert m[0, 0, :7].all() and not m[0, 0, 7:].any()
    d[:, 0], d[:, 1] = 0.0, -1.5
    m = in_frame_mask(d)
    assert not m[0, 0, :, :2].any() and m[0, 0, :, 2:].all()
    # frames equal except where the sampling position leaves the frame: still a perfect match
    pre = _noise(1, 1, 40, 16, seed=5)
    post = torch.zeros_like(pre)
    post[:, :, 3:] = pre[:, :, :-3]  # post = pre moved down 3 samples; its top rows are junk
    post[:, :, :3] = 100.0
    dd = torch.zeros(1, 2, 40, 16)
    dd[:, 0] = 3.0
    assert float(similarity_ncc(pre, post, dd, (9, 3), eps=1e-9)) < 1e-5
    # a user mask restricts the mean further (and must have a sane shape)
    mask = torch.zeros(40, 16, dtype=torch.bool)
    mask[5:30] = True
    assert float(similarity_ncc(pre, post, dd, (9, 3), mask=mask, eps=1e-9)) < 1e-5
    with pytest.raises(ValueError, match="mask must be"):
        similarity_ncc(pre, post, dd, (9, 3), mask=torch.ones(3, 40, 16))


def test_a_crop_sent_wholly_out_of_the_frame_gives_loss_one_not_nan():
    # A diverging network can move every pixel of one crop outside the post frame: that
    # crop has no pixel to compare (loss 1, no gradient through it) and must not turn the
    # batch's loss into NaN (it did: a zero variance floored at float tiny overflowed).
    # (RF in raw units: |x - mean| above 4 overflowed; unit-variance noise alone did not)
    pre, post = 100 * _noise(2, 1, 40, 16, seed=6), 100 * _noise(2, 1, 40, 16, seed=7)
    d = torch.zeros(2, 2, 40, 16)
    d[1, 0] = 500.0
    d.requires_grad_(True)
    per_crop = similarity_ncc(pre, post, d, (9, 3), reduction="none")
    assert torch.isfinite(per_crop).all() and per_crop[1].item() == 1.0
    per_crop.sum().backward()
    assert torch.isfinite(d.grad).all() and float(d.grad[1].abs().sum()) == 0.0


def test_envelope_matches_scipy_hilbert():
    from cdpkd.signal import envelope as np_envelope

    pre, _ = rf_pair(0.0, n_samples=101)  # odd length too
    ours = envelope(pre.double())[0, 0].numpy()
    assert np.allclose(ours, np_envelope(pre[0, 0].numpy()), atol=1e-9 * np.abs(ours).max())


# --- smoothness ---------------------------------------------------------------


@pytest.mark.parametrize("eps_strain", [-0.015625, 0.0078125])  # dyadic: exact in float
def test_uniform_strain_second_order_zero_first_order_known(eps_strain):
    y, x = grid(2, 40, 12)
    d = field(eps_strain * y + 0.5, torch.zeros_like(x))
    assert float(smoothness(d, order=2, penalty_kind="l2")) == 0.0
    assert float(smoothness(d, order=2)) == pytest.approx(0.0, abs=1e-12)  # Charbonnier(0) = 0
    e = abs(eps_strain)
    assert float(smoothness(d, order=1, penalty_kind="l1")) == pytest.approx(e, rel=1e-12)
    assert float(smoothness(d, order=1, penalty_kind="l2")) == pytest.approx(e * e, rel=1e-12)
    c = 1e-3
    assert float(smoothness(d, order=1, eps=c)) == pytest.approx(math.sqrt(e * e + c * c) - c, rel=1e-12)
    # weights: [component][direction]; only the axial component's axial derivative is nonzero
    w = ((3.0, 5.0), (7.0, 11.0))
    assert float(smoothness(d, 1, w, penalty_kind="l1")) == pytest.approx(3.0 * e, rel=1e-12)
    assert float(smoothness(d, (2, 1), w, penalty_kind="l1")) == 0.0  # per-component orders
    # a lateral strain field: lateral component, lateral direction
    dl = field(torch.zeros_like(y), eps_strain * x)
    assert float(smoothness(dl, 1, w, penalty_kind="l1")) == pytest.approx(11.0 * e, rel=1e-12)


def test_smoothness_spacing_gives_full_resolution_units():
    # a level of stride 2 holding eps * (2 i) (full-resolution units at full-res position 2 i)
    eps = 0.01
    y, x = grid(1, 20, 8)
    level = field(eps * 2.0 * y, torch.zeros_like(x))
    assert float(smoothness(level, 1, penalty_kind="l1", spacing=2)) == pytest.approx(eps, rel=1e-12)
    curved = field(0.001 * (2.0 * y) ** 2, torch.zeros_like(x))  # second derivative 0.002 per sample^2
    assert float(smoothness(curved, 2, penalty_kind="l1", spacing=2)) == pytest.approx(0.002, rel=1e-9)


def test_smoothness_lag_keeps_units_and_damps_pixel_jitter():
    y, x = grid(1, 64, 16)
    curved = field(0.001 * y**2, 0.002 * x**2)  # second derivatives 0.002 (axial) and 0.004 (lateral)
    for lag in (1, 3, (4, 2)):  # a quadratic's second difference is exact at any lag, in the same units
        assert float(smoothness(curved, 2, ((1.0, 0.0), (0.0, 0.0)), penalty_kind="l1", lag=lag)) == pytest.approx(0.002)
        assert float(smoothness(curved, 2, ((0.0, 0.0), (0.0, 1.0)), penalty_kind="l1", lag=lag)) == pytest.approx(0.004)
    linear = field(0.01 * y, -0.01 * x)  # a uniform strain is free at any lag
    assert float(smoothness(linear, 2, lag=(5, 3))) == 0.0
    torch.manual_seed(0)
    jitter = torch.randn(1, 2, 256, 64, dtype=torch.float64) * 0.05  # white displacement noise
    adjacent = float(smoothness(jitter, 2, penalty_kind="l2"))
    lagged = float(smoothness(jitter, 2, penalty_kind="l2", lag=4))
    assert lagged == pytest.approx(adjacent / 4**4, rel=0.1)  # variance of a lag-L second difference / L^4
    too_short = field(0.001 * y[:, :, :8] ** 2, torch.zeros_like(x[:, :, :8]))  # 8 rows: no lag-4 second difference
    assert float(smoothness(too_short, 2, ((1.0, 0.0), (0.0, 0.0)), lag=(4, 1))) == 0.0
    with pytest.raises(ValueError, match="lag"):
        smoothness(curved, lag=0)


def test_smoothness_at_lag_one_is_torch_diff_to_the_last_bit():
    """The default lag must not change training numerics: cached artifacts are keyed on the
    recipe, so values and gradients at lag 1 equal the torch.diff form's bit for bit."""
    torch.manual_seed(0)
    disp = torch.randn(2, 2, 96, 24, requires_grad=True)
    got = smoothness(disp, (2, 1), eps=1e-3)
    want = torch.zeros(2)  # the pre-lag formula, term by term in the same order
    for c, k in enumerate((2, 1)):
        comp = disp[:, c]  # one select per component: the gradient's summation order depends on it
        for axis in (-2, -1):
            diff = torch.diff(comp, n=k, dim=axis) / (1.0**k)
            want = want + 1.0 * penalty(diff, "charbonnier", 1e-3).mean(dim=(-2, -1))
    want = want.mean()
    assert torch.equal(got, want)
    (grad_got,) = torch.autograd.grad(got, disp)
    (grad_want,) = torch.autograd.grad(want, disp)
    assert torch.equal(grad_got, grad_want)


# --- incompressibility and Poisson --------------------------------------------


@pytest.mark.parametrize("eps_strain", [-0.03, 0.01])
def test_incompressibility_known_values(eps_strain):
    y, x = grid(2, 48, 16)
    incompressible = field(eps_strain * y, -eps_strain * x)
    assert float(incompressibility(incompressible)) == pytest.approx(0.0, abs=1e-14)
    axial_only = field(eps_strain * y, torch.zeros_like(x))
    assert float(incompressibility(axial_only)) == pytest.approx(abs(eps_strain), rel=1e-10)
    assert float(incompressibility(axial_only, (15, 5), penalty_kind="l2")) == pytest.approx(
        eps_strain**2, rel=1e-9
    )
    # pyramid level: stride-4 grid, values in full-res units
    level = field(eps_strain * 4.0 * y, torch.zeros_like(x))
    assert float(incompressibility(level, spacing=4)) == pytest.approx(abs(eps_strain), rel=1e-10)


def test_poisson_bound_zero_inside_positive_outside():
    y, x = grid(1, 48, 16)
    eps = -0.02

    def at(ratio, **kw):
        return float(poisson_bound(field(eps * y, -ratio * eps * x), **kw))

    lo, hi = ratio_bounds(0.3, 0.5, "plane_strain")
    assert (lo, hi) == pytest.approx((0.3 / 0.7, 1.0))
    for r in (0.45, 0.7, 0.98, 1.0):  # plane strain: nu = 0.495 gives r = 0.98
        assert at(r) == pytest.approx(0.0, abs=1e-12)
    assert at(1.3) == pytest.approx(0.3, rel=1e-9)
    assert at(0.2) == pytest.approx(lo - 0.2, rel=1e-9)
    # "apparent" (uniaxial) model bounds the ratio itself
    assert at(0.4, model="apparent") == pytest.approx(0.0, abs=1e-12)
    assert at(0.98, model="apparent") == pytest.approx(0.48, rel=1e-9)
    assert at(0.1, model="apparent", nu_min=0.3) == pytest.approx(0.2, rel=1e-9)
    # axial strain below the gate: the ratio is not meaningful, no penalty
    tiny = field(1e-4 * y, 5e-4 * x)
    assert float(poisson_bound(tiny)) == 0.0


# --- gradients, precision, bad input ------------------------------------------


def _random_disp(n=2, h=48, w=16, seed=7):
    y, x = grid(n, h, w, torch.float32)
    smooth = field(-0.01 * y + 0.002 * torch.sin(y / 5.0), 0.008 * x + 0.05 * torch.cos(x))
    return smooth + 0.05 * _noise(n, 2, h, w, seed=seed)


@pytest.mark.parametrize(
    "term",
    [
        lambda d, pre, post: similarity_ncc(pre, post, d, (9, 3)),
        lambda d, pre, post: smoothness(d, 1),
        lambda d, pre, post: smoothness(d, 2),
        lambda d, pre, post: smoothness(d, 2, penalty_kind="l2"),
        lambda d, pre, post: incompressibility(d),
        lambda d, pre, post: poisson_bound(d, nu_min=0.9, nu_max=0.95),
    ],
    ids=["similarity", "smooth1", "smooth2", "smooth2_l2", "incompressibility", "poisson"],
)
def test_gradients_flow_to_the_displacement(term):
    pre, post = _noise(2, 1, 48, 16, seed=8), _noise(2, 1, 48, 16, seed=9)
    post = 0.8 * pre + 0.2 * post
    d = _random_disp().requires_grad_(True)
    loss = term(d, pre, post)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


def test_gradcheck_float64():
    pre = _noise(1, 1, 12, 6, seed=10, dtype=torch.float64)
    post = 0.7 * pre + 0.3 * _noise(1, 1, 12, 6, seed=11, dtype=torch.float64)
    d = (0.2 * _noise(1, 2, 12, 6, seed=12, dtype=torch.float64)).requires_grad_(True)
    check = lambda f: torch.autograd.gradcheck(f, (d,), fast_mode=True)  # noqa: E731
    assert check(lambda t: similarity_ncc(pre, post, t, (5, 3)))
    assert check(lambda t: smoothness(t, 2, eps=0.05))
    assert check(lambda t: incompressibility(t, (5, 3), penalty_kind="l2"))


def test_half_precision_and_autocast_compute_in_float32():
    pre, post = _noise(1, 1, 48, 16, seed=13), _noise(1, 1, 48, 16, seed=14)
    post = 0.9 * pre + 0.1 * post
    d = _random_disp(n=1)
    ref = [similarity_ncc(pre, post, d, (9, 3)), smoothness(d), incompressibility(d), poisson_bound(d)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = [
            similarity_ncc(pre.bfloat16(), post.bfloat16(), d, (9, 3)),
            smoothness(d),
            incompressibility(d),
            poisson_bound(d),
        ]
    for h in half:
        assert h.dtype == torch.float32
    for r, h in zip(ref[1:], half[1:]):
        assert torch.equal(r, h)  # autocast must not touch the strain conv
    assert abs(float(ref[0] - half[0])) < 0.02  # only the bf16 input rounding differs


def test_bad_input_raises_clear_errors():
    pre = _noise(1, 1, 32, 16)
    d = torch.zeros(1, 2, 32, 16)
    with pytest.raises(ValueError, match="same shape"):
        similarity_ncc(pre, _noise(1, 1, 32, 15), d)
    with pytest.raises(ValueError, match="2 channels"):
        similarity_ncc(pre, pre, torch.zeros(1, 3, 32, 16))
    with pytest.raises(ValueError, match="matching the frames"):
        similarity_ncc(pre, pre, torch.zeros(1, 2, 30, 16))
    with pytest.raises(ValueError, match="larger than the frames"):
        similarity_ncc(pre, pre, d, (33, 3))
    with pytest.raises(ValueError, match="odd"):
        similarity_ncc(pre, pre, d, (8, 3))
    with pytest.raises(ValueError, match="N x C x H x W"):
        similarity_ncc(pre[0], pre, d)
    with pytest.raises(ValueError, match="2 channels"):
        smoothness(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="order"):
        smoothness(d, order=3)
    with pytest.raises(ValueError, match="weights_axial_lateral"):
        smoothness(d, weights_axial_lateral=(1.0, -1.0))
    with pytest.raises(ValueError, match="penalty_kind"):
        smoothness(d, penalty_kind="huber")
    with pytest.raises(ValueError, match="2 channels"):
        incompressibility(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="at least 3 pixels"):
        incompressibility(torch.zeros(1, 2, 8, 2))
    with pytest.raises(ValueError, match="nu_min"):
        poisson_bound(d, nu_min=0.6, nu_max=0.5)
    with pytest.raises(ValueError, match="model"):
        poisson_bound(d, model="plane_stress")
    with pytest.raises(ValueError, match="torch.Tensor"):
        smoothness(np.zeros((1, 2, 8, 8)))
