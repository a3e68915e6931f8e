"""Input handling shared by the metrics: numpy/torch conversion and validation.

Why one place: every metric keeps the same contract -- torch in, torch out
(same device and dtype, autograd kept); numpy in, numpy out -- and raises the
same clear ``ValueError`` for bad input instead of a deep torch stack trace
or a silently wrong number (DESIGN.md section 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def to_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Return ``(floating tensor, came_from_numpy)`` for a tensor or array-like ``x``.

    Integer/bool input becomes float64 (numpy) or the default dtype (torch);
    half precision is promoted to float32 because the statistics below lose
    too many digits in 16 bits.
    """
    if isinstance(x, torch.Tensor):
        t, from_numpy = x, False
    elif isinstance(x, (np.ndarray, np.generic, list, tuple, float, int)):
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError(f"{name} must be a numeric array, got an object array")
        if not arr.dtype.isnative:  # torch.from_numpy refuses big-endian data
            arr = arr.astype(arr.dtype.newbyteorder("="))
        t, from_numpy = torch.from_numpy(np.ascontiguousarray(arr)), True
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64 if from_numpy else torch.get_default_dtype())
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t, from_numpy


def for_statistics(t: torch.Tensor) -> torch.Tensor:
    """Promote to float64 for reductions (except on MPS, which has no float64).

    Why: means/variances over 10^5 float32 pixels lose digits, and a constant
    region should give exactly zero spread, not rounding noise.
    """
    return t if t.device.type == "mps" else t.to(torch.float64)


def to_output(t: torch.Tensor, as_numpy: bool) -> ArrayLike:
    """Hand a result back in the caller's array type."""
    return t.detach().cpu().numpy() if as_numpy else t


def require_ndim(t: torch.Tensor, ndim: int, name: str, layout: str) -> None:
    if t.dim() < ndim:
        raise ValueError(
            f"{name} must have at least {ndim} dimensions ({layout}), got shape {tuple(t.shape)}"
        )


def check_finite(t: torch.Tensor, name: str, mask: torch.Tensor | None = None) -> None:
    """Raise if ``t`` holds NaN/Inf (only where ``mask`` is True, when given)."""
    bad = ~torch.isfinite(t)
    if mask is not None:
        bad = bad & mask
    if bool(bad.any()):
        where = " inside the mask" if mask is not None else ""
        raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/Inf){where}")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"shape mismatch: {name_a} has shape {tuple(a.shape)} but {name_b} has shape "
            f"{tuple(b.shape)}"
        )


def check_odd_window(window: Any, name: str = "window", minimum: int = 3) -> int:
    """Validate an odd integer window length and return it as ``int``."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"{name} must be an odd integer >= {minimum}, got {window!r}")
    w = int(window)
    if w < minimum or w % 2 == 0:
        raise ValueError(f"{name} must be an odd integer >= {minimum}, got {w}")
    return w


def as_mask(mask: Any, shape: torch.Size, name: str, device: torch.device) -> torch.Tensor:
    """Convert ``mask`` to a bool tensor expanded to ``shape`` (a view, no copy).

    Accepts bool masks or numeric masks holding only 0 and 1. The mask must
    broadcast to ``shape`` without changing it, so a shared (H, W) mask or a
    per-sample mask with the data's leading shape both work, and a
    mis-shaped one is an error instead of a silent outer-product broadcast.
    """
    if isinstance(mask, torch.Tensor):
        m = mask
    else:
        m = torch.from_numpy(np.ascontiguousarray(np.asarray(mask)))
    if m.dtype != torch.bool:
        if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"{name} must be boolean (or hold only 0 and 1)")
        m = m != 0
    try:
        ok = torch.broadcast_shapes(m.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok or m.dim() < 2:
        raise ValueError(
            f"{name} has shape {tuple(m.shape)}, which does not broadcast to the data shape "
            f"{tuple(shape)}: pass one (H, W) mask shared by all samples, or one per sample "
            f"with the data's leading dimensions (e.g. N x 1 x H x W)"
        )
    return m.to(device).expand(shape)


def check_nonempty(mask: torch.Tensor, name: str, min_count: int = 1) -> torch.Tensor:
    """Raise if any sample's mask selects fewer than ``min_count`` pixels; return the counts.

    Counts are taken over the last two (H, W) axes.
    """
    counts = mask.sum(dim=(-2, -1))
    too_few = counts < min_count
    if bool(too_few.any()):
        idx = tuple(int(i) for i in torch.nonzero(too_few)[0].tolist())
        what = (
            "is empty (selects no pixel)"
            if min_count == 1
            else (f"selects {int(counts[idx])} pixel(s), fewer than the {min_count} needed")
        )
        at = f" for sample index {idx}" if idx else ""
        raise ValueError(f"{name} {what}{at}")
    return counts
