"""Region-of-interest masks for the strain metrics.

All coordinates are in pixels of the RF grid: rows = axial samples, columns =
lateral A-lines. Samples and lines have different physical sizes (an axial
sample is often ~20x finer than the line pitch), so a round inclusion of
radius R mm is an ellipse of radii ``(R / axial_mm_per_sample, R /
lateral_mm_per_line)`` pixels: the disk/ring helpers take a radius per axis.

Constructors return torch bool tensors of shape (H, W) (pass ``device`` to
place them); :func:`erode` keeps its input's type (torch or numpy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Radius = float | Sequence[float]


def _shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return h, w


def _span(span: Sequence[int], size: int, name: str) -> tuple[int, int]:
    try:
        start, stop = (int(s) for s in span)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (start, stop) pair, got {span!r}") from None
    if not 0 <= start < stop <= size:
        raise ValueError(f"{name} must satisfy 0 <= start < stop <= {size}, got {span!r}")
    return start, stop


def _radii(radius: Radius, name: str) -> tuple[float, float]:
    if isinstance(radius, (int, float, np.integer, np.floating)):
        ry = rx = float(radius)
    else:
        try:
            ry, rx = (float(r) for r in radius)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a number or (axial, lateral) in pixels, got {radius!r}"
            ) from None
    if not (ry > 0 and rx > 0 and np.isfinite(ry) and np.isfinite(rx)):
        raise ValueError(f"{name} must be positive and finite, got {radius!r}")
    return ry, rx


def _ellipse_level(
    shape: tuple[int, int], center: Sequence[float], radii: tuple[float, float], device: Any
) -> torch.Tensor:
    """((row - cy) / ry)^2 + ((col - cx) / rx)^2 per pixel (<= 1 means inside)."""
    try:
        cy, cx = (float(c) for c in center)
    except (TypeError, ValueError):
        raise ValueError(f"center must be (row, col) in pixels, got {center!r}") from None
    rows = torch.arange(shape[0], dtype=torch.float64, device=device).view(-1, 1)
    cols = torch.arange(shape[1], dtype=torch.float64, device=device).view(1, -1)
    return ((rows - cy) / radii[0]) ** 2 + ((cols - cx) / radii[1]) ** 2


def _nonempty(mask: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(mask.any()):
        raise ValueError(f"{what} selects no pixel of the frame")
    return mask


def rect_mask(
    shape: Sequence[int],
    rows: Sequence[int],
    cols: Sequence[int],
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rectangle ``rows = (start, stop)`` x ``cols = (start, stop)`` (half-open, pixels).

    Returns an (H, W) bool tensor; spans must lie inside the frame and be non-empty.
    """
    h, w = _shape(shape)
    r0, r1 = _span(rows, h, "rows")
    c0, c1 = _span(cols, w, "cols")
    mask = torch.zeros((h, w), dtype=torch.bool, device=device)
    mask[r0:r1, c0:c1] = True
    return mask


def disk_mask(
    shape: Sequence[int],
    center: Sequence[float],
    radius: Radius,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Filled ellipse: pixels with ``((r - cy)/ry)^2 + ((c - cx)/rx)^2 <= 1``.

    Args:
        shape: (H, W).
        center: (row, col) in pixels (may be fractional or outside the frame).
        radius: one radius in pixels, or (axial in samples, lateral in lines).

    Returns an (H, W) bool tensor; raises if no pixel of the frame is inside.
    """
    hw = _shape(shape)
    level = _ellipse_level(hw, center, _radii(radius, "radius"), device)
    return _nonempty(level <= 1.0, "disk_mask")


def ring_mask(
    shape: Sequence[int],
    center: Sequence[float],
    inner_radius: Radius,
    outer_radius: Radius,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Background annulus: inside the ``outer_radius`` ellipse, strictly outside the inner one.

    Use an inner radius a little beyond the target's so that the blurred
    target edge (about one LS window) does not leak into the background.
    Radii as in :func:`disk_mask`; each axis of the outer radius must exceed
    the inner one.
    """
    hw = _shape(shape)
    inner = _radii(inner_radius, "inner_radius")
    outer = _radii(outer_radius, "outer_radius")
    if not (outer[0] > inner[0] and outer[1] > inner[1]):
        raise ValueError(
            f"outer_radius {outer_radius!r} must exceed inner_radius {inner_radius!r} on both axes"
        )
    inside_outer = _ellipse_level(hw, center, outer, device) <= 1.0
    outside_inner = _ellipse_level(hw, center, inner, device) > 1.0
    return _nonempty(inside_outer & outside_inner, "ring_mask")


def erode(mask: Any, iterations: int = 1) -> Any:
    """Binary erosion by a 3 x 3 square (8-connected), ``iterations`` times.

    Pixels outside the frame count as outside the mask, so a mask touching
    the frame edge shrinks from it too (as ``scipy.ndimage.binary_erosion``
    with its default ``border_value=0``). Works on any ``(..., H, W)`` bool
    (or 0/1) tensor or numpy array and returns the same type, as bool.
    Use it to keep metric regions away from boundaries blurred by the LS window.
    """
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 0
    ):
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    as_numpy = not isinstance(mask, torch.Tensor)
    m = torch.from_numpy(np.ascontiguousarray(np.asarray(mask))) if as_numpy else mask
    if m.dim() < 2:
        raise ValueError(f"mask must be (..., H, W), got shape {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must be boolean (or hold only 0 and 1)")
        m = m != 0
    shape = m.shape
    x = m.reshape(-1, 1, *shape[-2:]).to(torch.float32)
    for _ in range(int(iterations)):
        # min-filter = -max_pool(-x); zero padding makes the outside "not in mask".
        x = -F.max_pool2d(-F.pad(x, (1, 1, 1, 1), value=0.0), 3, stride=1)
    out = x.reshape(shape) > 0.5
    return out.cpu().numpy() if as_numpy else out
