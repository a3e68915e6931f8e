"""Shared pieces of the classical trackers: input checks, array conversion, the result type.

Layout (DESIGN.md section 3): a frame is H x W (H axial RF samples, W
A-lines) or, for batches, N x 1 x H x W; a displacement is 2 x H x W (or
N x 2 x H x W), channel 0 axial in samples, channel 1 lateral in lines,
Lagrangian on the pre grid: ``post(y + d_ax, x + d_lat) ~ pre(y, x)``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class TrackerResult:
    """What a tracker returns with ``return_result=True``.

    Attributes:
        displacement: 2 x H x W (or N x 2 x H x W), samples / lines, same array
            type as the input frames.
        quality: peak NCC per pixel, H x W (or N x 1 x H x W), or ``None`` when
            the tracker has no such measure.
        seconds: wall-clock time of the call.
        info: tracker-specific diagnostics (levels, iterations, residuals).
    """

    displacement: ArrayLike
    quality: ArrayLike | None
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def frames_to_tensor(pre: Any, post: Any, op: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Validate a pre/post pair and return float32 N x 1 x H x W tensors plus the input kind.

    The kind (``"numpy2d"``, ``"torch2d"``, ``"numpy4d"``, ``"torch4d"``) tells
    :func:`displacement_out` how to hand the result back. float64 input stays
    float64 (a user asking for it gets it); everything else is float32.
    """
    tensors = []
    kinds = []
    for name, frame in (("pre", pre), ("post", post)):
        if isinstance(frame, torch.Tensor):
            t, kind = frame.detach(), "torch"
        elif isinstance(frame, np.ndarray):
            if frame.dtype == object or not (
                np.issubdtype(frame.dtype, np.floating) or np.issubdtype(frame.dtype, np.integer)
            ):
                raise ValueError(f"{op}: {name} must be a real numeric array, got dtype {frame.dtype}")
            t, kind = (
                torch.from_numpy(np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("="))),
                "numpy",
            )
        else:
            raise ValueError(
                f"{op}: {name} must be a numpy array or torch tensor, got {type(frame).__name__}"
            )
        if t.is_complex():
            raise ValueError(f"{op}: {name} must be real-valued (RF), got complex dtype {t.dtype}")
        if t.dim() == 2:
            kind += "2d"
            t = t[None, None]
        elif t.dim() == 4 and t.shape[1] == 1:
            kind += "4d"
        else:
            raise ValueError(
                f"{op}: {name} must be H x W or N x 1 x H x W (H axial samples, W lines), "
                f"got shape {tuple(t.shape)}"
            )
        tensors.append(t)
        kinds.append(kind)
    a, b = tensors
    if kinds[0] != kinds[1]:
        raise ValueError(
            f"{op}: pre and post must be the same array type and layout, got {kinds[0]} and {kinds[1]}"
        )
    if a.shape != b.shape:
        raise ValueError(f"{op}: pre/post shape mismatch: pre {tuple(a.shape)} vs post {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"{op}: pre and post must be on the same device, got {a.device} and {b.device}")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    for name, t in (("pre", a), ("post", b)):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            raise ValueError(f"{op}: {name} contains {int(bad.sum())} non-finite value(s) (NaN/Inf)")
        flat = t.flatten(1).amax(dim=1) == t.flatten(1).amin(dim=1)
        if bool(flat.any()):
            idx = int(torch.nonzero(flat)[0])
            where = f" (batch index {idx})" if t.shape[0] > 1 else ""
            raise ValueError(f"{op}: {name}{where} is constant: no echo signal to track")
    return a.contiguous(), b.contiguous(), kinds[0]


def displacement_out(disp: torch.Tensor, kind: str) -> ArrayLike:
    """N x C x H x W tensor -> the caller's layout (C x H x W for 2-D input; numpy for numpy)."""
    out = disp[0] if kind.endswith("2d") else disp
    return out.detach().cpu().numpy() if kind.startswith("numpy") else out


def pair_of_ints(value: Any, name: str, op: str, *, minimum: int, odd: bool = False) -> tuple[int, int]:
    """Accept ``v`` or ``(axial, lateral)``; check integers ``>= minimum`` (and odd if asked)."""
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{op}: {name} must be an int or an (axial, lateral) pair, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum or (odd and v % 2 == 0):
            what = f"{'odd ' if odd else ''}integers >= {minimum}"
            raise ValueError(f"{op}: {name} must be {what} (axial, lateral), got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def check_window_fits(window: tuple[int, int], shape: tuple[int, int], op: str, name: str = "window") -> None:
    """A matching window larger than the frame has no full support anywhere: refuse it."""
    (wa, wl), (h, w) = window, shape
    if wa > h or wl > w:
        raise ValueError(
            f"{op}: {name} {window} (samples x lines) is larger than the frame {h} x {w}; "
            f"use a smaller window or a larger frame"
        )
