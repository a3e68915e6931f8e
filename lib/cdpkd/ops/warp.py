"""Public backward warp in pixel units: validation, backend dispatch, Triton custom op.

The Triton path is the custom op ``torch.ops.cdpkd.warp_triton`` with its
backward ``cdpkd::warp_triton_backward`` (registered here; the kernels are
imported on first use), so ``torch.compile`` treats it as opaque, including
the host sync that sizes the backward's gather window. The reference path is
plain ``grid_sample`` (differentiable, export-friendly).
"""

from __future__ import annotations

import torch

from . import dispatch
from ._checks import check_warp_inputs
from .warp_reference import warp_reference


@torch.library.custom_op("cdpkd::warp_triton", mutates_args=())
def _warp_triton_op(x: torch.Tensor, disp: torch.Tensor, padding: str) -> torch.Tensor:
    from .warp_triton import warp_triton_forward

    return warp_triton_forward(x, disp, padding)


@_warp_triton_op.register_fake
def _(x, disp, padding):
    return torch.empty_like(x)


@torch.library.custom_op("cdpkd::warp_triton_backward", mutates_args=())
def _warp_triton_backward_op(
    grad: torch.Tensor, x: torch.Tensor, disp: torch.Tensor, padding: str, need_x: bool, need_disp: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    from .warp_triton import warp_triton_backward_disp, warp_triton_backward_x

    # An unneeded gradient is returned as an empty tensor (custom ops cannot return None).
    grad_x = warp_triton_backward_x(grad, disp, padding, x.dtype) if need_x else x.new_empty(0)
    grad_disp = warp_triton_backward_disp(grad, x, disp, padding) if need_disp else disp.new_empty(0)
    return grad_x, grad_disp


@_warp_triton_backward_op.register_fake
def _(grad, x, disp, padding, need_x, need_disp):
    return (torch.empty_like(x) if need_x else x.new_empty(0)), (
        torch.empty_like(disp) if need_disp else disp.new_empty(0)
    )


def _setup_context(ctx, inputs, output) -> None:
    x, disp, padding = inputs
    ctx.save_for_backward(x, disp)
    ctx.padding = padding


def _backward(ctx, grad: torch.Tensor):
    x, disp = ctx.saved_tensors
    need_x, need_disp = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_x, grad_disp = _warp_triton_backward_op(grad.contiguous(), x, disp, ctx.padding, need_x, need_disp)
    return (grad_x if need_x else None), (grad_disp if need_disp else None), None


_warp_triton_op.register_autograd(_backward, setup_context=_setup_context)


def warp(
    x: torch.Tensor, disp: torch.Tensor, padding: str = "zeros", *, backend: str = "auto"
) -> torch.Tensor:
    """Backward-warp ``x`` by a pixel displacement, bilinear.

    out[n, c, y, x] = x[n, c, y + disp[n, 0, y, x], x + disp[n, 1, y, x]].

    Args:
        x: image or features N x C x H x W (H axial, W lateral), floating point.
        disp: N x 2 x H x W in pixels; channel 0 axial (rows), 1 lateral (columns).
        padding: "zeros" (taps outside the image count as 0) or "border"
            (positions clamped into the image).
        backend: "auto" (Triton on CUDA when importable, else the
            ``grid_sample`` reference), "reference" or "triton" (CPU tensors
            only under TRITON_INTERPRET=1).

    Returns:
        N x C x H x W in x's dtype. Along an axis of size 1 the displacement
        is ignored. ``cdpkd.ops.last_backend("warp")`` tells which backend ran.
        The Triton backward is deterministic (gathers, no atomics); CUDA
        ``grid_sample``'s is not.
    """
    check_warp_inputs(x, disp, padding)
    chosen = dispatch.resolve_backend("warp", backend, x.device)
    if dispatch.exporting():
        chosen = "reference"  # keep exported graphs to standard ops
    dispatch.record("warp", chosen)
    if chosen == "triton":
        return _warp_triton_op(x, disp, padding)
    return warp_reference(x, disp, padding)
