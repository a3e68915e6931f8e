"""Helpers shared by the unsupervised loss terms: validation, fp32 regions, penalties, windows.

Every term checks its input with these (a clear ``ValueError`` naming the
argument instead of a deep torch error) and computes in float32 (float64 stays
float64, for gradcheck) with autocast disabled: under AMP ``conv2d`` (used by
the LS strain) would otherwise run in half precision, and the NCC statistics
``E[x^2] - E[x]^2`` cancel catastrophically in 16 bits.

None of the helpers synchronises with the device (no ``.item()``/``bool()``
on GPU tensors), so the terms are cheap inside a training loop; NaN/Inf is
the training loop's NaN guard's business, not checked here.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Literal

import torch

Penalty = Literal["l1", "l2", "charbonnier"]
PENALTIES: tuple[str, ...] = ("l1", "l2", "charbonnier")
Reduction = Literal["mean", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "none")


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}"
    return type(t).__name__


def check_frames(x: object, fn: str, name: str) -> torch.Tensor:
    """``x`` must be a non-empty floating N x C x H x W tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {_describe(x)}")
    if x.dim() != 4:
        raise ValueError(f"{fn}: {name} must be N x C x H x W, got {x.dim()}-D shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{fn}: {name} must be floating point, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {tuple(x.shape)}")
    return x


def check_disp(disp: object, fn: str, name: str = "disp") -> torch.Tensor:
    """``disp`` must be a floating N x 2 x H x W tensor (channel 0 axial, 1 lateral)."""
    d = check_frames(disp, fn, name)
    if d.shape[1] != 2:
        raise ValueError(
            f"{fn}: {name} must have 2 channels (0 = axial in samples, 1 = lateral in lines), "
            f"got {d.shape[1]} (shape {tuple(d.shape)})"
        )
    return d


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (never half)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` for the enclosed computation."""
    try:
        ctx = torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to disable
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def pair_of_ints(
    value: object, fn: str, name: str, *, odd: bool = False, minimum: int = 1
) -> tuple[int, int]:
    """An int (both axes) or an (axial, lateral) pair of ints >= ``minimum`` (odd if asked)."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    try:
        a, b = (value, value) if is_int else value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: {name} must be an int or an (axial, lateral) pair, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum or (odd and v % 2 == 0):
            what = "odd integers" if odd else "integers"
            raise ValueError(f"{fn}: {name} must hold {what} >= {minimum}, got {value!r}")
    return int(a), int(b)


def pair_of_floats(value: object, fn: str, name: str, *, positive: bool = True) -> tuple[float, float]:
    """A number (both axes) or an (axial, lateral) pair of finite numbers (> 0 if ``positive``)."""
    is_num = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        a, b = (value, value) if is_num else value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(
            f"{fn}: {name} must be a number or an (axial, lateral) pair, got {value!r}"
        ) from None
    for v in (a, b):
        if (
            isinstance(v, bool)
            or not isinstance(v, numbers.Real)
            or not math.isfinite(v)
            or (positive and v <= 0)
        ):
            raise ValueError(
                f"{fn}: {name} must hold finite {'positive ' if positive else ''}numbers, got {value!r}"
            )
    return float(a), float(b)


def check_choice(value: object, choices: Sequence[str], fn: str, name: str) -> str:
    if value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {tuple(choices)}, got {value!r}")
    return str(value)


def check_positive(value: object, fn: str, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{fn}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def penalty(x: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Elementwise penalty rho(x), with rho(0) = 0 exactly.

    ``l1``: |x|; ``l2``: x^2; ``charbonnier``: sqrt(x^2 + eps^2) - eps, quadratic
    (x^2 / 2 eps) below ``eps`` and L1-like above it -- robust to the strain
    jumps at inclusion boundaries while still smooth at 0. ``eps`` is in the
    units of ``x``.
    """
    if kind == "l1":
        return x.abs()
    if kind == "l2":
        return x * x
    return torch.sqrt(x * x + eps * eps) - eps


def reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    """``mean`` over the batch (a 0-d tensor) or ``none`` (one value per sample, shape N)."""
    return per_sample.mean() if reduction == "mean" else per_sample


def odd_window_for(size: int, window: int, minimum: int = 3) -> int:
    """``window`` clipped to the largest odd value <= ``size``; 0 if even ``minimum`` does not fit."""
    w = min(window, size if size % 2 == 1 else size - 1)
    return w if w >= minimum else 0


def scaled_window(window: int, stride: int, minimum: int = 3) -> int:
    """A full-resolution window length expressed at a level of the given stride (odd, >= minimum)."""
    w = int(math.ceil(window / stride))
    w = max(w, minimum)
    return w if w % 2 == 1 else w + 1
