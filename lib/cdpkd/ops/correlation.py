"""Public local correlation: validation, backend dispatch, custom op, autograd, FLOPs.

``correlation(f1, f2, radius_axial, radius_lateral, backend="auto")`` returns
the N x (2ra+1)(2rl+1) x H x W cost volume (see ``correlation_reference`` for
the definition). In eager mode it runs as the custom op
``torch.ops.cdpkd.correlation`` (its backward is ``cdpkd::correlation_backward``)
so that ``torch.utils.flop_counter.FlopCounterMode`` sees one op and counts it
with the formulas registered below, and so that ``torch.compile`` treats the
kernels as opaque. While tracing or exporting (``torch.export``, ONNX,
``torch.jit.trace``) it falls back to the plain-torch reference so the graph
contains only standard ops.
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter

from . import dispatch
from ._checks import check_correlation_inputs, common_dtype
from .correlation_reference import (
    correlation_reference,
    correlation_reference_backward,
    correlation_reference_forward,
    num_displacements,
)


def _forward_impl(f1: torch.Tensor, f2: torch.Tensor, ra: int, rl: int, backend: str) -> torch.Tensor:
    if backend == "triton":
        from .correlation_triton import correlation_triton_forward

        return correlation_triton_forward(f1, f2, ra, rl)
    return correlation_reference_forward(f1, f2, ra, rl)


@torch.library.custom_op("cdpkd::correlation", mutates_args=())
def _correlation_op(
    f1: torch.Tensor, f2: torch.Tensor, radius_axial: int, radius_lateral: int, backend: str
) -> torch.Tensor:
    return _forward_impl(f1, f2, radius_axial, radius_lateral, backend)


@_correlation_op.register_fake
def _(f1, f2, radius_axial, radius_lateral, backend):
    n, _, h, w = f1.shape
    return f1.new_empty(n, num_displacements(radius_axial, radius_lateral), h, w)


@torch.library.custom_op("cdpkd::correlation_backward", mutates_args=())
def _correlation_backward_op(
    grad: torch.Tensor,
    f1: torch.Tensor,
    f2: torch.Tensor,
    radius_axial: int,
    radius_lateral: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from .correlation_triton import correlation_triton_backward

        return correlation_triton_backward(grad, f1, f2, radius_axial, radius_lateral)
    return correlation_reference_backward(grad, f1, f2, radius_axial, radius_lateral)


@_correlation_backward_op.register_fake
def _(grad, f1, f2, radius_axial, radius_lateral, backend):
    return torch.empty_like(f1), torch.empty_like(f2)


def _setup_context(ctx, inputs, output) -> None:
    f1, f2, ra, rl, backend = inputs
    ctx.save_for_backward(f1, f2)
    ctx.args = (ra, rl, backend)


def _backward(ctx, grad: torch.Tensor):
    f1, f2 = ctx.saved_tensors
    ra, rl, backend = ctx.args
    g1, g2 = _correlation_backward_op(grad.contiguous(), f1, f2, ra, rl, backend)
    return g1, g2, None, None, None


_correlation_op.register_autograd(_backward, setup_context=_setup_context)


def correlation_flops(f1_shape: tuple[int, ...] | torch.Size, radius_axial: int, radius_lateral: int) -> int:
    """Forward FLOPs of the correlation: 2 N C D H W (one multiply and one add per product)."""
    n, c, h, w = (int(s) for s in f1_shape)
    return 2 * n * c * num_displacements(radius_axial, radius_lateral) * h * w


def _register_flop_formulas() -> None:
    """Teach FlopCounterMode the correlation ops (idempotent; a second registration would raise)."""
    fwd, bwd = torch.ops.cdpkd.correlation, torch.ops.cdpkd.correlation_backward
    if fwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(fwd)
        def _fwd_flops(f1_shape, f2_shape, radius_axial, radius_lateral, backend, *args, **kwargs) -> int:
            return correlation_flops(f1_shape, radius_axial, radius_lateral)

    if bwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(bwd)
        def _bwd_flops(
            grad_shape, f1_shape, f2_shape, radius_axial, radius_lateral, backend, *args, **kwargs
        ) -> int:
            # Two gradients, each the same multiply-add count as the forward.
            return 2 * correlation_flops(f1_shape, radius_axial, radius_lateral)


_register_flop_formulas()


def correlation(
    f1: torch.Tensor,
    f2: torch.Tensor,
    radius_axial: int,
    radius_lateral: int,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Local correlation cost volume normalized by the channel count.

    Args:
        f1, f2: features N x C x H x W (H axial, W lateral), same shape and
            device, floating point (fp16/bf16 are accumulated in fp32; mixed
            dtypes are promoted).
        radius_axial, radius_lateral: search radii ra, rl in pixels (>= 0).
        backend: "auto" (Triton on CUDA when importable, else reference),
            "reference" or "triton" (CPU tensors only under TRITON_INTERPRET=1).

    Returns:
        N x (2ra+1)(2rl+1) x H x W; channel k = (dy + ra)(2rl + 1) + (dx + rl)
        holds mean_c f1(y, x) f2(y + dy, x + dx), zero where (y + dy, x + dx)
        leaves the image. ``cdpkd.ops.last_backend("correlation")`` tells
        which backend ran.
    """
    ra, rl = check_correlation_inputs(f1, f2, radius_axial, radius_lateral)
    if f1.dtype != f2.dtype:
        dtype = common_dtype(f1, f2)
        f1, f2 = f1.to(dtype), f2.to(dtype)
    if dispatch.exporting():
        dispatch.record("correlation", "reference")
        return correlation_reference(f1, f2, ra, rl)
    chosen = dispatch.resolve_backend("correlation", backend, f1.device)
    dispatch.record("correlation", chosen)
    return _correlation_op(f1, f2, ra, rl, chosen)
