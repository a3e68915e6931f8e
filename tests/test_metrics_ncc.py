"""Global, local and motion-compensated NCC."""

import numpy as np
import pytest
import torch

from cdpkd.metrics import local_ncc, ncc, warp_ncc


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_global_ncc_known_answers():
    a, b = _noise(2, 1, 96, 64, seed=1), _noise(2, 1, 96, 64, seed=2)
    assert torch.allclose(ncc(a, a), torch.ones(2, 1, dtype=torch.float64))
    assert torch.allclose(ncc(a, -a), -torch.ones(2, 1, dtype=torch.float64))
    assert torch.allclose(ncc(a, 3.0 * a + 7.0), torch.ones(2, 1, dtype=torch.float64))
    assert ncc(a, b).abs().max() < 0.05  # independent: ~N(0, 1/sqrt(6144))
    assert float(ncc(a[0, 0], torch.zeros(96, 64))) == 0.0  # flat frame: defined as 0
    out = ncc(a.numpy(), a.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (2, 1)


def test_global_ncc_with_mask_matches_numpy():
    a, b = _noise(30, 20, seed=3), _noise(30, 20, seed=4)
    b = 0.5 * a + b
    mask = np.zeros((30, 20), dtype=bool)
    mask[5:25, 4:12] = True
    expected = np.corrcoef(a.numpy()[mask], b.numpy()[mask])[0, 1]
    assert float(ncc(a, b, mask)) == pytest.approx(expected, rel=1e-12)


def test_local_ncc_known_answers():
    a, b = _noise(1, 1, 64, 32, seed=5), _noise(1, 1, 64, 32, seed=6)
    for win in (5, (9, 3)):
        same = local_ncc(a, 2.0 * a - 1.0, win)
        assert same.shape == a.shape
        assert torch.allclose(same, torch.ones_like(same), atol=1e-4)
        assert torch.allclose(local_ncc(a, -a, win), -torch.ones_like(same), atol=1e-4)
    # 1 x 3 windows (2 pixels at the corners) can be nearly flat: shrink the floor.
    same = local_ncc(a, a, (1, 3), eps=1e-12)
    assert torch.allclose(same, torch.ones_like(same), atol=1e-6)
    indep = local_ncc(a, b, (15, 7))
    assert abs(float(indep.mean())) < 0.05
    assert local_ncc(a.float(), b.float(), 5).dtype == torch.float32


def test_local_ncc_matches_brute_force_inside_and_at_edges():
    a, b = _noise(12, 9, seed=7), _noise(12, 9, seed=8) + 0.3 * _noise(12, 9, seed=7)
    wy, wx = 5, 3
    out = local_ncc(a, b, (wy, wx), eps=1e-12).numpy()
    an, bn = a.numpy(), b.numpy()
    for r, c in [(6, 4), (0, 0), (11, 8), (1, 4)]:
        rs = slice(max(r - wy // 2, 0), r + wy // 2 + 1)
        cs = slice(max(c - wx // 2, 0), c + wx // 2 + 1)
        expected = np.corrcoef(an[rs, cs].ravel(), bn[rs, cs].ravel())[0, 1]
        assert out[r, c] == pytest.approx(expected, abs=1e-8)


def test_local_ncc_mask_restricts_windows():
    a, b = _noise(20, 10, seed=13), _noise(20, 10, seed=14)
    b_mixed = b.clone()
    b_mixed[:10] = a[:10]  # identical in the top half only
    mask = torch.zeros(20, 10, dtype=torch.bool)
    mask[:10] = True
    out = local_ncc(a, b_mixed, (5, 3), mask)
    assert torch.allclose(out[:10], torch.ones(10, 10, dtype=torch.float64), atol=1e-5)
    unmasked = local_ncc(a, b_mixed, (5, 3))
    assert unmasked[8:10].max() < 0.99  # windows straddle the unrelated bottom half
    # Pixels outside the mask never enter a window, whatever they hold (even NaN).
    b_nan = b_mixed.clone()
    b_nan[15, 5] = float("nan")
    assert torch.equal(local_ncc(a, b_nan, (5, 3), mask)[:10], out[:10])


def test_local_ncc_flat_and_gradient():
    flat = torch.zeros(16, 16)
    assert torch.all(local_ncc(flat, _noise(16, 16).float(), 5) == 0)
    a = _noise(1, 1, 16, 12, seed=9).requires_grad_(True)
    b = _noise(1, 1, 16, 12, seed=10)
    local_ncc(a, b, (5, 3)).mean().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_ncc_bad_input():
    a = _noise(16, 16)
    with pytest.raises(ValueError, match="shape mismatch"):
        ncc(a, a[:-1])
    with pytest.raises(ValueError, match="shape mismatch"):
        local_ncc(a, a[:, :-1], 3)
    nan = a.clone()
    nan[2, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ncc(nan, a)
    with pytest.raises(ValueError, match="non-finite"):
        local_ncc(a, nan, 3)
    with pytest.raises(ValueError, match="odd"):
        local_ncc(a, a, 4)
    with pytest.raises(ValueError, match="odd"):
        local_ncc(a, a, (3, 2))
    with pytest.raises(ValueError, match="at least 2 pixels"):
        local_ncc(a, a, 1)
    with pytest.raises(ValueError, match="larger than the frames"):
        local_ncc(a, a, (17, 3))
    with pytest.raises(ValueError, match="empty"):
        ncc(a, a, torch.zeros(16, 16, dtype=torch.bool))


def _shift_pair(shift=3, h=48, w=16):
    """pre = speckle-like noise; post = pre moved down by ``shift`` samples (plus new rows)."""
    tall = _noise(1, 1, h + shift, w, seed=11)
    pre = tall[:, :, shift:]
    post = tall[:, :, :h]  # post(y) = pre(y - shift)
    disp = torch.zeros(1, 2, h, w, dtype=torch.float64)
    disp[:, 0] = shift  # comp(y) = post(y + shift) = pre(y)
    return pre, post, disp


def _integer_warp(x, disp, padding="zeros"):
    """Stand-in for cdpkd.ops.warp, exact for integer displacement (border clamping)."""
    n, _, h, w = x.shape
    ys = (torch.arange(h).view(1, h, 1) + disp[:, 0].round().long()).clamp(0, h - 1)
    xs = (torch.arange(w).view(1, 1, w) + disp[:, 1].round().long()).clamp(0, w - 1)
    idx = (ys * w + xs).view(n, 1, h * w).expand(n, x.shape[1], h * w)
    return x.reshape(n, x.shape[1], h * w).gather(2, idx).view_as(x)


def test_warp_ncc_logic_with_stand_in_warp(monkeypatch):
    import cdpkd.ops

    monkeypatch.setattr(cdpkd.ops, "warp", _integer_warp, raising=False)
    pre, post, disp = _shift_pair()
    assert float(warp_ncc(pre, post, disp)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(warp_ncc(pre, post, disp, window=(7, 3))[0]) == pytest.approx(1.0, abs=1e-4)
    assert abs(float(warp_ncc(pre, post, torch.zeros_like(disp))[0])) < 0.2
    # Without excluding the rows sampled outside the frame, the match is imperfect.
    assert float(warp_ncc(pre, post, disp, exclude_outside=False)[0]) < 0.99
    out = warp_ncc(pre.numpy(), post.numpy(), disp.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (1,)
    far = torch.zeros_like(disp)
    far[:, 1] = 100.0
    with pytest.raises(ValueError, match="outside the post frame"):
        warp_ncc(pre, post, far)
    with pytest.raises(ValueError, match="N x 2 x H x W"):
        warp_ncc(pre, post, disp[:, :1])
    with pytest.raises(ValueError, match="shape mismatch"):
        warp_ncc(pre, post[..., :-1], disp)
    with pytest.raises(ValueError, match="non-finite"):
        warp_ncc(pre, post, disp * float("nan"))


def test_warp_ncc_region_scores_only_its_pixels(monkeypatch):
    import cdpkd.ops

    monkeypatch.setattr(cdpkd.ops, "warp", _integer_warp, raising=False)
    pre, post, disp = _shift_pair()
    lost = disp.clone()
    lost[:, 0, 24:] = 0.0  # the match is lost below row 24
    top = torch.zeros(48, 16, dtype=torch.bool)
    top[:24] = True
    assert float(warp_ncc(pre, post, lost, region=top)[0]) == pytest.approx(1.0, abs=1e-12)
    assert abs(float(warp_ncc(pre, post, lost, region=~top)[0])) < 0.3
    whole = float(warp_ncc(pre, post, lost)[0])
    assert abs(whole) + 0.3 < 1.0  # the frame's NCC mixes both halves
    # Local NCC: windows straddling row 24 mix both halves, so only rows well above it score ~1.
    upper = torch.zeros(48, 16, dtype=torch.bool)
    upper[:16] = True
    assert float(warp_ncc(pre, post, lost, window=(7, 3), region=upper)[0]) == pytest.approx(1.0, abs=1e-4)
    # One region per sample (N x H x W), numpy in, numpy out.
    both = torch.stack([top, ~top])
    out = warp_ncc(pre.expand(2, -1, -1, -1).numpy(), post.expand(2, -1, -1, -1).numpy(),
                   lost.expand(2, -1, -1, -1).numpy(), region=both.numpy())
    assert out.shape == (2,) and out[0] == pytest.approx(1.0, abs=1e-12) and abs(out[1]) < 0.3
    # The rows whose sampling position leaves the frame stay excluded inside the region.
    bottom_rows = torch.zeros(48, 16, dtype=torch.bool)
    bottom_rows[45:] = True  # rows 45-47 sample rows 48-50: all outside
    with pytest.raises(ValueError, match="region holds no pixel"):
        warp_ncc(pre, post, disp, region=bottom_rows)
    with pytest.raises(ValueError, match="region has shape"):
        warp_ncc(pre, post, disp, region=top[:, :8])
    with pytest.raises(ValueError, match="region must be boolean"):
        warp_ncc(pre, post, disp, region=top.double() * 2)


def test_warp_ncc_with_real_warp():
    try:
        from cdpkd.ops import warp  # noqa: F401
    except ImportError:
        pytest.skip("cdpkd.ops.warp is not available yet")
    pre, post, disp = _shift_pair()
    assert float(warp_ncc(pre, post, disp)[0]) == pytest.approx(1.0, abs=1e-5)
    # Half-sample shift of a smooth field: bilinear compensation is near perfect.
    y = torch.arange(64, dtype=torch.float64).view(64, 1)
    x = torch.arange(16, dtype=torch.float64).view(1, 16)

    def field(yy):
        return torch.sin(0.3 * yy + 0.7 * x) + 0.5 * torch.cos(0.2 * yy - 0.4 * x)

    pre_s = field(y).expand(1, 1, 64, 16)
    post_s = field(y - 0.5).expand(1, 1, 64, 16)  # tissue moved down by half a sample
    half = torch.zeros(1, 2, 64, 16, dtype=torch.float64)
    half[:, 0] = 0.5
    compensated = float(warp_ncc(pre_s, post_s, half)[0])
    assert compensated > 0.999
    assert compensated > float(warp_ncc(pre_s, post_s, 0 * half)[0])
    assert float(warp_ncc(pre_s, post_s, half, window=(9, 3))[0]) > 0.99
