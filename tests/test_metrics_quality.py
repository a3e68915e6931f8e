"""SNRe, CNR and contrast ratio: exact small examples, batching, masks, bad input."""

import math

import numpy as np
import pytest
import torch

from cdpkd.metrics import cnr_db, cnr_linear, contrast_ratio, snre


def test_snre_exact_small_array():
    s = torch.tensor([[1.1, 0.9], [0.9, 1.1]], dtype=torch.float64)
    assert float(snre(s)) == pytest.approx(10.0, rel=1e-12)  # mean 1, population std 0.1
    # ddof=1: std = sqrt(4 * 0.01 / 3)
    assert float(snre(s, ddof=1)) == pytest.approx(1 / math.sqrt(0.04 / 3), rel=1e-12)
    # Sign of the strain does not matter (compression is negative).
    assert float(snre(-s)) == pytest.approx(10.0, rel=1e-12)


def test_snre_constant_plus_known_noise():
    # Checkerboard +-d around c: mean c, population std d exactly.
    c, d = -0.012, 0.0015
    i, j = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    s = c + d * np.where((i + j) % 2 == 0, 1.0, -1.0)
    out = snre(s)
    assert isinstance(out, np.ndarray) and out.shape == ()
    assert float(out) == pytest.approx(abs(c) / d, rel=1e-10)


def test_snre_gaussian_noise_statistics():
    rng = np.random.default_rng(7)
    s = -0.01 + 0.001 * rng.standard_normal((300, 300))
    assert float(snre(s)) == pytest.approx(10.0, rel=0.02)


def test_snre_masks_batched_shared_and_per_sample():
    rng = np.random.default_rng(3)
    s = torch.from_numpy(rng.normal(-0.01, 0.002, size=(3, 1, 20, 10)))
    shared = torch.zeros(20, 10, dtype=torch.bool)
    shared[5:15, 2:8] = True
    out = snre(s, shared)
    assert out.shape == (3, 1)
    ref = [abs(x[5:15, 2:8].mean()) / x[5:15, 2:8].std() for x in s[:, 0].numpy()]
    np.testing.assert_allclose(out[:, 0].numpy(), ref, rtol=1e-12)
    per = torch.zeros(3, 1, 20, 10, dtype=torch.bool)
    per[0, 0, :5] = True
    per[1, 0, 5:] = True
    per[2] = shared
    out = snre(s, per.numpy().astype(np.uint8))  # 0/1 masks accepted
    ref = [abs(s[k, 0][per[k, 0]].mean()) / s[k, 0][per[k, 0]].std(correction=0) for k in range(3)]
    np.testing.assert_allclose(out[:, 0].numpy(), torch.stack(ref).numpy(), rtol=1e-12)


def test_snre_ignores_nan_outside_mask_but_not_inside():
    s = torch.full((8, 8), -0.01, dtype=torch.float64)
    s[::2] += 0.001
    s[0, 0] = float("nan")
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:6, 2:6] = True
    assert torch.isfinite(snre(s, mask))
    with pytest.raises(ValueError, match="non-finite.*inside the mask"):
        snre(s)


def test_snre_zero_spread_is_inf():
    assert math.isinf(float(snre(torch.full((4, 4), -0.01))))


def test_snre_bad_input():
    s = torch.zeros(2, 1, 8, 8) + 1.0
    with pytest.raises(ValueError, match="empty"):
        snre(s, torch.zeros(8, 8, dtype=torch.bool))
    per = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    per[1] = False
    with pytest.raises(ValueError, match=r"empty.*\(1, 0\)"):
        snre(s, per)
    with pytest.raises(ValueError, match="does not broadcast"):
        snre(s, torch.ones(8, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        snre(torch.ones(3, 1, 8, 8), torch.ones(3, 8, 8, dtype=torch.bool))  # N x H x W mask
    with pytest.raises(ValueError, match="boolean"):
        snre(s, torch.full((8, 8), 2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        snre(torch.ones(5))
    with pytest.raises(ValueError, match="fewer than the 2 needed"):
        one = torch.zeros(8, 8, dtype=torch.bool)
        one[0, 0] = True
        snre(s, one, ddof=1)


def _two_region_example():
    # Target pixels 1, 2, 3 (mean 2, population var 2/3); background 5, 5, 7, 7 (mean 6, var 1).
    s = torch.zeros(3, 4, dtype=torch.float64)
    t = torch.zeros(3, 4, dtype=torch.bool)
    b = torch.zeros(3, 4, dtype=torch.bool)
    s[0, :3] = torch.tensor([1.0, 2.0, 3.0])
    t[0, :3] = True
    s[2, :] = torch.tensor([5.0, 5.0, 7.0, 7.0])
    b[2, :] = True
    s[1, :] = float("nan")  # outside both regions: ignored
    return s, t, b


def test_cnr_hand_computed():
    s, t, b = _two_region_example()
    expected = 2 * (6 - 2) ** 2 / (1 + 2 / 3)  # = 19.2
    assert float(cnr_linear(s, t, b)) == pytest.approx(19.2, rel=1e-12)
    assert float(cnr_db(s, t, b)) == pytest.approx(10 * math.log10(expected), rel=1e-12)
    assert float(cnr_db(s, b, t)) == pytest.approx(float(cnr_db(s, t, b)), rel=1e-12)
    # ddof=1: target var 1, background var 4/3.
    assert float(cnr_linear(s, t, b, ddof=1)) == pytest.approx(32 / (1 + 4 / 3), rel=1e-12)
    assert float(contrast_ratio(s, t, b)) == pytest.approx(3.0, rel=1e-12)


def test_cnr_batched_numpy():
    s, t, b = _two_region_example()
    batch = np.stack([s.numpy(), 2 * s.numpy()])[:, None]  # scaling leaves CNR unchanged
    out = cnr_db(batch, t.numpy(), b.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (2, 1)
    np.testing.assert_allclose(out[:, 0], 10 * math.log10(19.2), rtol=1e-12)


def test_cnr_bad_input():
    s, t, b = _two_region_example()
    with pytest.raises(ValueError, match="overlap"):
        cnr_db(s, t, t | b)
    with pytest.raises(ValueError, match="target_mask is empty"):
        cnr_db(s, torch.zeros_like(t), b)
    with pytest.raises(ValueError, match="background_mask has shape"):
        cnr_linear(s, t, b[:2])
    with pytest.raises(ValueError, match="required"):
        cnr_db(s, None, b)
    s2 = s.clone()
    s2[0, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        cnr_db(s2, t, b)
