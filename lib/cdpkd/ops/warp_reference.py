"""Backward warping in pixel units with ``grid_sample``: the reference, and the one grid helper.

Convention: ``disp`` is N x 2 x H x W in pixels, channel 0 axial (rows, H),
channel 1 lateral (columns, W). ``warp(x, disp)(y, x) = x(y + disp0, x + disp1)``,
bilinear.

``grid_sample`` wants normalized coordinates. With ``align_corners=True`` the
pixel centres 0 .. size-1 map exactly onto -1 .. 1, so position p becomes
2 p / (size - 1) - 1 and no fake stretch by size/(size-1) creeps in (the
known trap with ``align_corners=False`` mixed with this formula). An axis of
size 1 has no extent to normalize by: its grid coordinate is -1, which
``grid_sample`` maps to index 0 whatever the displacement (displacement along
that axis is ignored; the Triton kernels do the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (never half: the grid stays fp32 under AMP)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _axis_to_normalized(pos: torch.Tensor, size: int) -> torch.Tensor:
    if size == 1:
        return torch.full_like(pos, -1.0)
    return pos * (2.0 / (size - 1)) - 1.0


def pixel_disp_to_grid(disp: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert a pixel displacement N x 2 x H x W to a ``grid_sample`` grid N x H x W x 2.

    The grid is for ``align_corners=True``; its last axis is (lateral, axial) =
    (x, y) as ``grid_sample`` expects. ``dtype`` defaults to float32 (float64
    for float64 input) so half-precision displacements under AMP do not lose
    sub-pixel precision on large images.
    """
    if disp.dim() != 4 or disp.shape[1] != 2:
        raise ValueError(f"pixel_disp_to_grid: disp must be N x 2 x H x W, got shape {tuple(disp.shape)}")
    dtype = dtype or grid_dtype(disp)
    _, _, h, w = disp.shape
    d = disp.to(dtype)
    rows = torch.arange(h, dtype=dtype, device=disp.device).view(1, h, 1)
    cols = torch.arange(w, dtype=dtype, device=disp.device).view(1, 1, w)
    gy = _axis_to_normalized(rows + d[:, 0], h)
    gx = _axis_to_normalized(cols + d[:, 1], w)
    return torch.stack((gx, gy), dim=-1)


def warp_reference(x: torch.Tensor, disp: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Bilinear backward warp via ``grid_sample``: x N x C x H x W, disp N x 2 x H x W (pixels).

    Half-precision ``x`` is sampled in float32 and returned in its own dtype.
    Differentiable w.r.t. both inputs (``grid_sample``'s backward; on CUDA it
    uses atomics, hence the Triton path).
    """
    dtype = grid_dtype(x, disp)
    grid = pixel_disp_to_grid(disp, dtype)
    out = F.grid_sample(x.to(dtype), grid, mode="bilinear", padding_mode=padding, align_corners=True)
    return out.to(x.dtype)
