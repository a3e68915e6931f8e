"""Displacement RMSE, endpoint error and strain RMSE: known values, masks, bad input."""

import math

import numpy as np
import pytest
import torch

from cdpkd.metrics import DispRMSE, disp_rmse, epe, ls_strain, strain_rmse


def _field(n=2, h=24, w=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, h, w, generator=g, dtype=torch.float64)


def test_disp_rmse_constant_offsets_per_sample():
    gt = _field()
    est = gt.clone()
    est[0, 0] += 0.5
    est[0, 1] -= 2.0
    est[1, 0] -= 0.25
    out = disp_rmse(est, gt)
    assert isinstance(out, DispRMSE)
    assert torch.allclose(out.axial, torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert torch.allclose(out.lateral, torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_disp_rmse_mask_and_known_mixture():
    gt = torch.zeros(1, 2, 4, 4)
    est = gt.clone()
    est[0, 0, :2] = 3.0  # half of the pixels off by 3 samples: RMSE = 3 / sqrt(2)
    assert float(disp_rmse(est, gt).axial[0]) == pytest.approx(3 / math.sqrt(2))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[2:] = True
    assert float(disp_rmse(est, gt, mask).axial[0]) == 0.0
    per = mask.view(1, 1, 4, 4)
    assert float(disp_rmse(est.numpy(), gt.numpy(), per.numpy()).axial[0]) == 0.0


def test_epe_known_values():
    gt = torch.zeros(1, 2, 5, 5)
    est = gt.clone()
    est[:, 0] = 3.0
    est[:, 1] = 4.0
    assert float(epe(est, gt)[0]) == pytest.approx(5.0)
    assert float(epe(est, gt, spacing=(0.1, 0.2))[0]) == pytest.approx(math.sqrt(0.73))
    est[0, :, 0, 0] = 0.0  # one exact pixel out of 25
    assert float(epe(est, gt)[0]) == pytest.approx(5.0 * 24 / 25)
    out = epe(est.numpy(), gt.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (1,)


def test_strain_rmse_uniform_strain_error_is_exact():
    h, w = 40, 8
    y = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    gt = torch.stack([-0.01 * y, 0.005 * y]).unsqueeze(0)
    est = gt.clone()
    est[0, 0] += 0.002 * y + 0.3  # strain error 0.002 everywhere (offset is not strain)
    assert float(strain_rmse(est, gt, 7)[0]) == pytest.approx(0.002, abs=1e-12)
    assert float(strain_rmse(est, gt, 7, exclude_border=False)[0]) == pytest.approx(
        0.002, abs=1e-12
    )
    assert float(strain_rmse(est, gt, 7, component="lateral")[0]) == pytest.approx(0.0, abs=1e-12)


def test_strain_rmse_border_exclusion_and_mask_match_manual():
    gt, est = _field(seed=1), _field(seed=2)
    window, m = 5, 2
    se = ls_strain(est[:, 0], window).numpy()
    sg = ls_strain(gt[:, 0], window).numpy()
    err2 = (se - sg) ** 2
    np.testing.assert_allclose(
        strain_rmse(est, gt, window).numpy(), np.sqrt(err2[:, m:-m].mean(axis=(-2, -1)))
    )
    np.testing.assert_allclose(
        strain_rmse(est, gt, window, exclude_border=False).numpy(),
        np.sqrt(err2.mean(axis=(-2, -1))),
    )
    mask = np.zeros((24, 10), dtype=bool)
    mask[:8, 3:] = True  # partly inside the excluded border
    expected = np.sqrt(err2[:, m:8, 3:].mean(axis=(-2, -1)))
    np.testing.assert_allclose(strain_rmse(est, gt, window, mask).numpy(), expected)
    sl = (
        ls_strain(est[:, 1], window, axis=-1).numpy() - ls_strain(gt[:, 1], window, axis=-1).numpy()
    )
    np.testing.assert_allclose(
        strain_rmse(est, gt, window, component="lateral").numpy(),
        np.sqrt((sl[..., m:-m] ** 2).mean(axis=(-2, -1))),
    )


def test_errors_bad_input():
    gt = _field()
    with pytest.raises(ValueError, match="shape mismatch"):
        disp_rmse(gt, gt[:, :, :-1])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, H, W\)"):
        epe(gt[:, :1], gt[:, :1])
    bad = gt.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="estimate contains 1 non-finite"):
        disp_rmse(bad, gt)
    with pytest.raises(ValueError, match="ground_truth contains"):
        epe(gt, bad)
    with pytest.raises(ValueError, match="empty"):
        disp_rmse(gt, gt, torch.zeros(24, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        disp_rmse(gt, gt, torch.ones(2, 24, 10, dtype=torch.bool))  # use N x 1 x H x W
    with pytest.raises(ValueError, match="odd integer"):
        strain_rmse(gt, gt, 4)
    with pytest.raises(ValueError, match="larger than the input"):
        strain_rmse(gt, gt, 25)
    with pytest.raises(ValueError, match="component"):
        strain_rmse(gt, gt, 5, component="shear")
    border_only = torch.zeros(24, 10, dtype=torch.bool)
    border_only[:2] = True
    with pytest.raises(ValueError, match="border"):
        strain_rmse(gt, gt, 5, border_only)
    with pytest.raises(ValueError, match="spacing"):
        epe(gt, gt, spacing=(0.1, -1.0))
