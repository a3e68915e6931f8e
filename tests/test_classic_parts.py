"""Building blocks of the classical trackers: sub-sample estimators, NCC volume, box sums, spline warp."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cdpkd.classic import box_sum, cosine_offset, ncc_volume, parabolic_offset, peak_offset, spline_warp
from cdpkd.classic.pyramid import edge_box_mean

OMEGA = math.pi / 4  # carrier phase per sample at 40 MHz sampling of 5 MHz
DELTAS = torch.linspace(-0.5, 0.5, 101, dtype=torch.float64)


def _samples(corr):
    return (
        corr(torch.tensor(-1.0, dtype=torch.float64)),
        corr(torch.tensor(0.0, dtype=torch.float64)),
        corr(torch.tensor(1.0, dtype=torch.float64)),
    )


def test_parabolic_exact_on_parabola():
    offsets = parabolic_offset(*_samples(lambda k: 2.0 - 0.3 * (k - DELTAS) ** 2))
    torch.testing.assert_close(offsets, DELTAS)


def test_cosine_exact_on_cosine():
    offsets = cosine_offset(*_samples(lambda k: 0.9 * torch.cos(OMEGA * (k - DELTAS))))
    torch.testing.assert_close(offsets, DELTAS)


@pytest.mark.parametrize(
    ("method", "max_error"),
    [("cosine", 0.003), ("parabolic", 0.02)],
)
def test_unbiased_on_rf_like_correlation(method, max_error):
    """A symmetric RF autocorrelation (carrier under a Gaussian envelope).

    No bias at zero shift, antisymmetric in the shift (so no net bias over
    shifts), and the pointwise error stays small.
    """

    def corr(k):
        u = k - DELTAS
        return torch.cos(OMEGA * u) * torch.exp(-(u**2) / (2 * 7.0**2))

    offsets = peak_offset(*_samples(corr), method=method)
    assert abs(float(offsets[50])) < 1e-12  # delta = 0
    torch.testing.assert_close(offsets, -offsets.flip(0), atol=1e-12, rtol=0)
    assert abs(float((offsets - DELTAS).mean())) < 1e-12
    assert float((offsets - DELTAS).abs().max()) < max_error


def test_estimators_degenerate_inputs():
    flat = torch.ones(3, dtype=torch.float64)
    assert float(parabolic_offset(flat[0], flat[1], flat[2])) == 0.0  # no curvature: no information
    neg = torch.tensor([-0.2, -0.1, -0.3], dtype=torch.float64)
    assert abs(float(cosine_offset(neg[0], neg[1], neg[2]))) <= 1.0  # falls back to the parabola
    assert float(peak_offset(flat[0], flat[1], flat[2], method="none")) == 0.0
    with pytest.raises(ValueError, match="subsample method"):
        peak_offset(flat[0], flat[1], flat[2], method="sinc")


@pytest.mark.parametrize("window", [(1, 1), (3, 1), (7, 3), (41, 9)])
def test_box_sum_matches_brute_force(window):
    x = torch.randn(2, 3, 30, 11, dtype=torch.float64)
    hy, hx = window[0] // 2, window[1] // 2
    padded = F.pad(x, (hx, hx, hy, hy))
    ref = sum(padded[..., dy : dy + 30, dx : dx + 11] for dy in range(window[0]) for dx in range(window[1]))
    torch.testing.assert_close(box_sum(x, window), ref)


@pytest.mark.parametrize("window", [(3, 1), (7, 3), (41, 9)])
def test_box_sum_with_replicated_edges_matches_brute_force(window):
    """Per-axis repetition of the edges equals 2-D edge replication, also for windows beyond the frame."""
    x = torch.randn(2, 3, 30, 5, dtype=torch.float64)
    hy, hx = window[0] // 2, window[1] // 2
    padded = F.pad(x, (hx, hx, hy, hy), mode="replicate")
    ref = sum(padded[..., dy : dy + 30, dx : dx + 5] for dy in range(window[0]) for dx in range(window[1]))
    torch.testing.assert_close(box_sum(x, window, edges="replicate"), ref)
    with pytest.raises(ValueError, match="edges must be one of"):
        box_sum(x, window, edges="reflect")


@pytest.mark.parametrize("size", [(1, 1), (3, 1), (7, 3), (61, 9)])
def test_edge_box_mean_matches_average_pooling_of_the_edge_padded_field(size):
    """The reference: avg_pool2d over the edge-replicated frame (what the box sums replace)."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, 70, 12, dtype=torch.float64, requires_grad=True)
    ka, kl = size
    ref = F.avg_pool2d(F.pad(x, (kl // 2, kl // 2, ka // 2, ka // 2), mode="replicate"), size, stride=1)
    out = edge_box_mean(x, size)
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(ref)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), x)
    torch.testing.assert_close(grad, grad_ref)


def test_ncc_volume_matches_brute_force():
    torch.manual_seed(0)
    f1 = torch.randn(1, 1, 25, 9, dtype=torch.float64)
    f2 = torch.randn(1, 1, 25, 9, dtype=torch.float64)
    (wa, wl), (ra, rl) = (7, 3), (3, 1)
    vol = ncc_volume(f1, f2, (wa, wl), (ra, rl))
    assert vol.shape == (1, (2 * ra + 1) * (2 * rl + 1), 25, 9)
    p1 = F.pad(f1, (wl // 2,) * 2 + (wa // 2,) * 2)[0, 0]
    p2 = F.pad(f2, (wl // 2 + rl,) * 2 + (wa // 2 + ra,) * 2)[0, 0]
    for y in range(25):
        for x in range(9):
            a = p1[y : y + wa, x : x + wl].flatten()
            for dy in range(-ra, ra + 1):
                for dx in range(-rl, rl + 1):
                    k = (dy + ra) * (2 * rl + 1) + dx + rl
                    if not (0 <= y + dy < 25 and 0 <= x + dx < 9):
                        assert vol[0, k, y, x] == -1.0  # centre left the frame: never a match
                        continue
                    b = p2[y + dy + ra : y + dy + ra + wa, x + dx + rl : x + dx + rl + wl].flatten()
                    a0, b0 = a - a.mean(), b - b.mean()
                    ref = (a0 * b0).sum() / torch.sqrt((a0 * a0).sum() * (b0 * b0).sum())
                    assert abs(float(vol[0, k, y, x] - ref)) < 1e-10


def test_ncc_volume_peak_at_known_integer_shift():
    torch.manual_seed(1)
    big = torch.randn(1, 1, 80, 30)
    f1, f2 = big[..., 5:65, 5:25], big[..., 7:67, 4:24]  # f1(y, x) = f2(y - 2, x + 1)
    vol = ncc_volume(f1, f2, (9, 3), (3, 2))
    k = vol[0, :, 10:50, 4:16].argmax(dim=0)
    assert torch.all(k == (-2 + 3) * 5 + (1 + 2))  # dy = -2, dx = +1
    assert float(vol[0, (-2 + 3) * 5 + 3, 10:50, 4:16].min()) > 0.999


def test_spline_warp_identity_and_subsample_shift():
    torch.manual_seed(2)
    x = torch.randn(1, 1, 40, 12, dtype=torch.float64)
    same, _, _ = spline_warp(x, torch.zeros(1, 2, 40, 12, dtype=torch.float64))
    torch.testing.assert_close(same, x)
    n = torch.arange(300, dtype=torch.float64)
    rf = torch.cos(OMEGA * n + 0.3).view(1, 1, -1, 1).repeat(1, 1, 1, 6)
    for mu in (0.1, 0.25, 0.5, 0.8):
        disp = torch.zeros(1, 2, 300, 6, dtype=torch.float64)
        disp[:, 0] = mu
        val, dy, dx = spline_warp(rf, disp, gradients=True)
        pos = n[20:280] + mu
        assert float((val[0, 0, 20:280, 2] - torch.cos(OMEGA * pos + 0.3)).abs().max()) < 2e-3
        assert float((dy[0, 0, 20:280, 2] + OMEGA * torch.sin(OMEGA * pos + 0.3)).abs().max()) < 5e-3
        assert float(dx.abs().max()) < 1e-9  # laterally constant frame
    outside = torch.zeros(1, 2, 40, 12, dtype=torch.float64)
    outside[:, 0] = 100.0
    assert float(spline_warp(x, outside)[0].abs().max()) == 0.0  # zeros padding
