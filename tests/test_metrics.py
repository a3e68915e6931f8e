"""cdpkd.metrics as a whole: public API and an end-to-end inclusion phantom."""

import math

import numpy as np
import pytest
import torch

import cdpkd.metrics as metrics
from cdpkd.metrics import (
    axial_strain,
    cnr_db,
    disk_mask,
    disp_rmse,
    erode,
    ring_mask,
    snre,
    strain_rmse,
)

PUBLIC = {
    "DispRMSE",
    "axial_strain",
    "cnr_db",
    "cnr_linear",
    "contrast_ratio",
    "disk_mask",
    "disp_rmse",
    "epe",
    "erode",
    "lateral_strain",
    "local_ncc",
    "ls_slope_kernel",
    "ls_strain",
    "ncc",
    "rect_mask",
    "ring_mask",
    "snre",
    "strain_rmse",
    "warp_ncc",
}


def test_public_api():
    assert set(metrics.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(metrics, name).__doc__, name


def _inclusion_phantom(noise_std, seed=0):
    """Axial displacement of a layered medium: background strain -1 %, a stiff band -0.25 %.

    Strain is piecewise constant in depth (a band from row 80 to 120), so the
    displacement is its cumulative sum -- an exact ground truth.
    """
    h, w = 200, 64
    eps = torch.full((h,), -0.01, dtype=torch.float64)
    eps[80:120] = -0.0025
    u = torch.cumsum(eps, 0).view(h, 1).expand(h, w)
    gt = torch.stack([u, torch.zeros(h, w, dtype=torch.float64)]).unsqueeze(0)
    g = torch.Generator().manual_seed(seed)
    est = gt + noise_std * torch.randn(gt.shape, generator=g, dtype=torch.float64)
    return gt, est


def test_end_to_end_inclusion():
    gt, est = _inclusion_phantom(noise_std=0.01)
    window = 11
    s_gt = axial_strain(gt, window)
    s_est = axial_strain(est, window)
    target = disk_mask((200, 64), center=(100, 32), radius=(14, 20))
    background = ring_mask((200, 64), (100, 32), inner_radius=(35, 40), outer_radius=(70, 80))
    # Ground truth: constant strain inside each region (away from the LS-blurred edges).
    assert float(snre(s_gt, erode(target, 2))[0, 0]) > 1e6
    assert float(s_gt[0, 0][target].mean()) == pytest.approx(-0.0025, abs=1e-12)
    # Noisy estimate: SNRe near its theoretical value |eps| / (sigma * sqrt(12 / (W (W^2 - 1)))).
    sd_slope = 0.01 * math.sqrt(12 / (window * (window**2 - 1)))
    snr = float(snre(s_est, background)[0, 0])
    assert snr == pytest.approx(0.01 / sd_slope, rel=0.15)
    assert float(cnr_db(s_est, target, background)[0, 0]) > 10
    rmse = disp_rmse(est, gt)
    assert float(rmse.axial[0]) == pytest.approx(0.01, rel=0.05)
    assert float(strain_rmse(est, gt, window)[0]) == pytest.approx(sd_slope, rel=0.05)
    # numpy gives the same numbers.
    np.testing.assert_allclose(
        snre(s_est.numpy(), background.numpy()), snre(s_est, background).numpy()
    )
