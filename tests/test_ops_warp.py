"""Reference warp and the pixel-to-grid helper: known answers, gradients, AMP, bad input."""

from __future__ import annotations

import pytest
import torch

import cdpkd.ops as ops


def test_grid_of_zero_displacement_is_identity():
    grid = ops.pixel_disp_to_grid(torch.zeros(2, 2, 5, 9))
    assert grid.shape == (2, 5, 9, 2)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.linspace(-1, 1, 9))  # x (lateral) first
    torch.testing.assert_close(grid[0, :, 0, 1], torch.linspace(-1, 1, 5))  # then y (axial)


def test_grid_known_shift_and_strain():
    h, w = 11, 6
    disp = torch.zeros(1, 2, h, w)
    disp[:, 0] = 0.01 * torch.arange(h, dtype=torch.float32).view(h, 1)  # 1 % axial strain
    disp[:, 1] = 0.5  # half a column
    grid = ops.pixel_disp_to_grid(disp)
    rows = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    # Unnormalize as grid_sample does with align_corners=True: ((g + 1) / 2) * (size - 1).
    torch.testing.assert_close((grid[0, ..., 1] + 1) / 2 * (h - 1), 1.01 * rows)
    torch.testing.assert_close((grid[0, ..., 0] + 1) / 2 * (w - 1), cols + 0.5)


def test_grid_size_one_axes_are_finite():
    grid = ops.pixel_disp_to_grid(torch.full((1, 2, 1, 1), 3.0))
    assert torch.isfinite(grid).all()
    assert torch.equal(grid, torch.full((1, 1, 1, 2), -1.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_grid_is_float32_for_half_inputs(dtype):
    assert ops.pixel_disp_to_grid(torch.zeros(1, 2, 3, 4, dtype=dtype)).dtype == torch.float32
    assert ops.pixel_disp_to_grid(torch.zeros(1, 2, 3, 4, dtype=torch.float64)).dtype == torch.float64


def test_grid_stays_float32_under_autocast():
    x = torch.randn(1, 3, 16, 8)
    disp = torch.full((1, 2, 16, 8), 0.25)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grid = ops.pixel_disp_to_grid(disp.bfloat16())
        out = ops.warp(x.bfloat16(), disp.bfloat16())
    assert grid.dtype == torch.float32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ops.warp(x, disp), atol=5e-2, rtol=2e-2)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_integer_shift(padding):
    x = torch.randn(2, 3, 10, 7)
    disp = torch.zeros(2, 2, 10, 7)
    disp[:, 0] = 2.0  # sample two rows further down
    disp[:, 1] = -1.0  # and one column to the left
    out = ops.warp(x, disp, padding)
    torch.testing.assert_close(out[:, :, :8, 1:], x[:, :, 2:, :6], atol=1e-5, rtol=0)
    if padding == "zeros":
        assert out[:, :, 8:].abs().max() < 1e-6
        assert out[:, :, :, 0].abs().max() < 1e-6
    else:
        torch.testing.assert_close(out[:, :, 8:, 1:], x[:, :, 9:10, :6].expand(2, 3, 2, 6), atol=1e-5, rtol=0)
        torch.testing.assert_close(out[:, :, :8, 0], x[:, :, 2:, 0], atol=1e-5, rtol=0)


def test_subpixel_shift():
    x = torch.randn(1, 2, 6, 9)
    disp = torch.zeros(1, 2, 6, 9)
    disp[:, 1] = 0.25
    out = ops.warp(x, disp)
    torch.testing.assert_close(out[..., :-1], 0.75 * x[..., :-1] + 0.25 * x[..., 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., -1], 0.75 * x[..., -1], atol=1e-5, rtol=0)  # zeros beyond


def test_uniform_axial_strain_on_ramp():
    # I(y, x) = y + 0.5 x; disp_axial = 0.01 y  =>  warped(y, x) = 1.01 y + 0.5 x (bilinear is exact).
    h, w = 128, 16
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    image = (rows + 0.5 * cols).expand(h, w).reshape(1, 1, h, w)
    disp = torch.zeros(1, 2, h, w)
    disp[:, 0] = 0.01 * rows
    out = ops.warp(image, disp)
    inside = int((h - 1) / 1.01) + 1  # rows whose sample stays inside the image
    expected = (1.01 * rows + 0.5 * cols)[:inside]
    assert (out[0, 0, :inside] - expected).abs().max() < 1e-4


def test_size_one_axes_ignore_displacement():
    x = torch.randn(1, 2, 1, 5)
    disp = torch.zeros(1, 2, 1, 5)
    disp[:, 0] = 0.7  # axial axis has size 1: ignored
    torch.testing.assert_close(ops.warp(x, disp), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_gradcheck_reference(padding):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    # Keep positions away from integers, where bilinear sampling has a kink.
    disp = (0.3 + 0.4 * torch.rand(2, 2, 5, 6, dtype=torch.float64, generator=g)) * torch.tensor(
        [1.0, -1.0], dtype=torch.float64
    ).view(1, 2, 1, 1)
    disp.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, d: ops.warp(a, d, padding, backend="reference"), (x, disp))


def test_half_input_keeps_dtype():
    x = torch.randn(1, 2, 8, 8)
    disp = torch.randn(1, 2, 8, 8)
    out = ops.warp(x.half(), disp.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ops.warp(x, disp.half().float()), atol=5e-3, rtol=5e-3)


def test_auto_backend_on_cpu_is_reference():
    ops.warp(torch.randn(1, 1, 3, 3), torch.zeros(1, 2, 3, 3))
    assert ops.last_backend("warp") == "reference"


@pytest.mark.parametrize(
    "x,disp,padding,match",
    [
        (torch.randn(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), "zeros", "2 channels"),
        (torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4), "zeros", "2 channels"),
        (torch.randn(1, 2, 4, 4), torch.zeros(1, 2, 4, 5), "zeros", "matching x"),
        (torch.randn(2, 2, 4, 4), torch.zeros(1, 2, 4, 4), "zeros", "matching x"),
        (torch.randn(2, 4, 4), torch.zeros(1, 2, 4, 4), "zeros", "x must be 4-D"),
        (torch.randn(1, 2, 4, 4), torch.zeros(2, 4, 4), "zeros", "disp must be 4-D"),
        (torch.ones(1, 2, 4, 4, dtype=torch.int32), torch.zeros(1, 2, 4, 4), "zeros", "floating point"),
        (torch.randn(1, 2, 4, 4), torch.zeros(1, 2, 4, 4, dtype=torch.int64), "zeros", "floating point"),
        (torch.randn(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), "reflection", "padding must be one of"),
        ("image", torch.zeros(1, 2, 4, 4), "zeros", "x must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_value_error(x, disp, padding, match):
    with pytest.raises(ValueError, match=match):
        ops.warp(x, disp, padding)


def test_grid_helper_rejects_wrong_shape():
    with pytest.raises(ValueError, match="N x 2 x H x W"):
        ops.pixel_disp_to_grid(torch.zeros(1, 3, 4, 4))
