"""Least-squares strain: known answers, Savitzky-Golay equivalence, gradients, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import savgol_filter

from cdpkd.metrics import axial_strain, lateral_strain, ls_slope_kernel, ls_strain


def _linear_disp(h, w, eps_axial, eps_lateral, offset=(0.7, -1.3)):
    y = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    x = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    return torch.stack([offset[0] + eps_axial * y, offset[1] + eps_lateral * x]).unsqueeze(0)


@pytest.mark.parametrize("window", [3, 7, 11, 63, 64 + 1])
def test_uniform_axial_strain_is_exact_everywhere_including_edges(window):
    h = max(64, window)
    eps = -0.0123
    disp = _linear_disp(h, 5, eps, 0.004)
    s = axial_strain(disp, window)
    assert s.shape == (1, 1, h, 5) and s.dtype == torch.float64
    assert torch.allclose(s, torch.full_like(s, eps), rtol=0, atol=1e-10)


def test_uniform_lateral_strain_is_exact_everywhere():
    disp = _linear_disp(20, 33, -0.01, 0.0045)
    s = lateral_strain(disp, 9)
    assert s.shape == (1, 1, 20, 33)
    assert torch.allclose(s, torch.full_like(s, 0.0045), rtol=0, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    slope=st.floats(-0.05, 0.05),
    intercept=st.floats(-50, 50),
    half=st.integers(1, 15),
    extra=st.integers(0, 40),
)
def test_linear_field_property(slope, intercept, half, extra):
    window = 2 * half + 1
    n = window + extra
    field = intercept + slope * torch.arange(n, dtype=torch.float64)
    out = ls_strain(field, window, axis=-1)
    assert torch.allclose(out, torch.full_like(out, slope), rtol=0, atol=1e-10)


def test_quadratic_field_gives_exact_derivative_in_the_interior():
    # A symmetric LS line fit has the exact central slope of a parabola.
    y = torch.arange(50, dtype=torch.float64)
    out = ls_strain((0.001 * y**2).view(50, 1), 7)
    assert torch.allclose(out[3:-3, 0], 0.002 * y[3:-3], rtol=0, atol=1e-12)


def test_kernel_is_the_ls_slope():
    k = ls_slope_kernel(9)
    i = torch.arange(9, dtype=torch.float64) - 4
    assert torch.allclose(k, i / (i**2).sum())
    assert abs(float(k.sum())) < 1e-15 and abs(float((k * i).sum()) - 1) < 1e-14


@pytest.mark.parametrize("window", [3, 9, 21])
def test_equals_savgol_first_derivative(window):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 7)).cumsum(axis=0)
    m = window // 2
    out = ls_strain(x, window)  # numpy in -> numpy out
    assert isinstance(out, np.ndarray) and out.shape == x.shape
    interior = savgol_filter(x, window, 1, deriv=1, axis=0, mode="constant")
    np.testing.assert_allclose(out[m:-m], interior[m:-m], rtol=0, atol=1e-12)
    # Edge handling is exactly savgol's polynomial-fit ("interp") edges.
    full = savgol_filter(x, window, 1, deriv=1, axis=0, mode="interp")
    np.testing.assert_allclose(out, full, rtol=0, atol=1e-12)
    lat = ls_strain(x.T.copy(), window, axis=-1)
    np.testing.assert_allclose(lat, full.T, rtol=0, atol=1e-12)


def test_any_leading_shape_and_axis():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((2, 3, 25, 4)))
    ref = ls_strain(x, 5, axis=-2)
    assert torch.allclose(ls_strain(x, 5, axis=2), ref)
    alt = ls_strain(x.transpose(-1, -2), 5, axis=-1).transpose(-1, -2)
    assert torch.allclose(alt, ref)


def test_float32_stays_float32():
    x = torch.randn(1, 1, 16, 8)
    assert ls_strain(x, 5).dtype == torch.float32


def test_gradient_flows():
    x = torch.randn(1, 1, 12, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ls_strain(t, 5), (x,))
    disp = torch.randn(2, 2, 16, 6, requires_grad=True)
    (axial_strain(disp, 5) ** 2).sum().backward()
    assert disp.grad is not None and torch.isfinite(disp.grad).all()
    assert disp.grad[:, 0].abs().sum() > 0 and disp.grad[:, 1].abs().sum() == 0


@pytest.mark.parametrize(
    "window, match",
    [
        (4, "odd integer"),
        (1, "odd integer"),
        (3.0, "odd integer"),
        (True, "odd integer"),
        (17, "larger than the input"),
    ],
)
def test_bad_window(window, match):
    with pytest.raises(ValueError, match=match):
        ls_strain(torch.zeros(16, 4), window)


def test_bad_input():
    x = torch.zeros(16, 4)
    x[3, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ls_strain(x, 3)
    assert torch.isnan(ls_strain(x, 3, check_finite_input=False)).any()
    with pytest.raises(ValueError, match="out of range"):
        ls_strain(torch.zeros(16), 3, axis=-2)
    with pytest.raises(ValueError, match="N x 2 x H x W"):
        axial_strain(torch.zeros(1, 3, 16, 4), 3)
    with pytest.raises(ValueError, match="N x 2 x H x W"):
        lateral_strain(torch.zeros(2, 16, 4), 3)
    with pytest.raises(TypeError):
        ls_strain("abc", 3)


def test_leading_axis_matches_savgol():
    x = np.random.default_rng(2).standard_normal((30, 3, 4))
    ref = savgol_filter(x, 7, 1, deriv=1, axis=0, mode="interp")
    np.testing.assert_allclose(ls_strain(x, 7, axis=0), ref, rtol=0, atol=1e-12)
