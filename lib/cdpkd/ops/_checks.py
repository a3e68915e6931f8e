"""Input validation shared by the ops: clear ``ValueError``s instead of deep torch errors."""

from __future__ import annotations

import numbers

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
PADDINGS = ("zeros", "border")


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"
    return f"{type(t).__name__}"


def check_image(t: object, op: str, name: str) -> torch.Tensor:
    """Check that ``t`` is a non-empty floating N x C x H x W tensor."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {_describe(t)}")
    if t.dim() != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N x C x H x W), got {t.dim()}-D shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{op}: {name} must be floating point (float16/bfloat16/float32/float64), got {t.dtype}"
        )
    if t.numel() == 0:
        raise ValueError(f"{op}: {name} must not be empty, got shape {tuple(t.shape)}")
    return t


def check_radius(r: object, op: str, name: str) -> int:
    """Check that ``r`` is a non-negative integer (bool refused) and return it as int."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise ValueError(f"{op}: {name} must be a non-negative integer, got {r!r}")
    if r < 0:
        raise ValueError(f"{op}: {name} must be non-negative, got {r}")
    return int(r)


def common_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    """The dtype both tensors are computed in (promotion, e.g. fp16 + fp32 -> fp32)."""
    return torch.promote_types(a.dtype, b.dtype)


def check_correlation_inputs(
    f1: object, f2: object, radius_axial: object, radius_lateral: object
) -> tuple[int, int]:
    """Validate correlation inputs; return the radii as ints."""
    op = "correlation"
    check_image(f1, op, "f1")
    check_image(f2, op, "f2")
    if f1.shape != f2.shape:
        raise ValueError(
            f"{op}: f1 and f2 must have the same shape, got {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    if f1.device != f2.device:
        raise ValueError(f"{op}: f1 and f2 must be on the same device, got {f1.device} and {f2.device}")
    ra = check_radius(radius_axial, op, "radius_axial")
    rl = check_radius(radius_lateral, op, "radius_lateral")
    return ra, rl


def check_warp_inputs(x: object, disp: object, padding: object) -> None:
    """Validate warp inputs: x N x C x H x W, disp N x 2 x H x W (axial, lateral), padding name."""
    op = "warp"
    check_image(x, op, "x")
    check_image(disp, op, "disp")
    if disp.shape[1] != 2:
        raise ValueError(
            f"{op}: disp must have 2 channels (0 = axial, 1 = lateral), got {disp.shape[1]} "
            f"(shape {tuple(disp.shape)})"
        )
    n, _, h, w = x.shape
    if (disp.shape[0], disp.shape[2], disp.shape[3]) != (n, h, w):
        raise ValueError(
            f"{op}: disp must be N x 2 x H x W matching x (N={n}, H={h}, W={w}), "
            f"got shape {tuple(disp.shape)}"
        )
    if x.device != disp.device:
        raise ValueError(f"{op}: x and disp must be on the same device, got {x.device} and {disp.device}")
    if padding not in PADDINGS:
        raise ValueError(f"{op}: padding must be one of {PADDINGS}, got {padding!r}")
