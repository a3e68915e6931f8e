"""Local correlation (cost volume) in plain PyTorch: the CPU/export reference.

out[n, k, y, x] = mean_c f1[n, c, y, x] * f2[n, c, y + dy, x + dx], with
k = (dy + ra) * (2 rl + 1) + (dx + rl), dy in [-ra, ra] (axial, rows),
dx in [-rl, rl] (lateral, columns), and f2 taken as zero outside the image.

Memory stays O(input + output): one loop step per displacement over a
zero-padded copy of f2, reduced over C immediately, so no
N x C x D x H x W intermediate is ever built. Half-precision inputs are
computed in float32 (the kernels accumulate in float32 too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def num_displacements(radius_axial: int, radius_lateral: int) -> int:
    """D = (2 ra + 1)(2 rl + 1), the number of output channels."""
    return (2 * radius_axial + 1) * (2 * radius_lateral + 1)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _padded(f2: torch.Tensor, ra: int, rl: int) -> torch.Tensor:
    return F.pad(f2.to(compute_dtype(f2.dtype)), (rl, rl, ra, ra))


def correlation_reference(
    f1: torch.Tensor, f2: torch.Tensor, radius_axial: int, radius_lateral: int
) -> torch.Tensor:
    """Differentiable, export-friendly correlation built from plain torch ops.

    Shapes: f1, f2 N x C x H x W -> N x D x H x W in f1's dtype. Autograd goes
    through the torch ops (used when tracing/exporting, e.g. to ONNX).
    """
    ra, rl = radius_axial, radius_lateral
    _, _, h, w = f1.shape
    a = f1.to(compute_dtype(f1.dtype))
    b = _padded(f2, ra, rl)
    maps = [
        (a * b[:, :, dy : dy + h, dx : dx + w]).mean(dim=1)
        for dy in range(2 * ra + 1)
        for dx in range(2 * rl + 1)
    ]
    return torch.stack(maps, dim=1).to(f1.dtype)


def correlation_reference_forward(
    f1: torch.Tensor, f2: torch.Tensor, radius_axial: int, radius_lateral: int
) -> torch.Tensor:
    """Forward of the reference without autograd, writing into one preallocated output."""
    ra, rl = radius_axial, radius_lateral
    n, c, h, w = f1.shape
    with torch.no_grad():
        a = f1.to(compute_dtype(f1.dtype))
        b = _padded(f2, ra, rl)
        out = a.new_empty(n, num_displacements(ra, rl), h, w)
        prod = torch.empty_like(a)  # reused product buffer: the only C-sized temporary
        plane = a.new_empty(n, h, w)  # contiguous reduction target (faster than a strided out=)
        k = 0
        for dy in range(2 * ra + 1):
            for dx in range(2 * rl + 1):
                torch.mul(a, b[:, :, dy : dy + h, dx : dx + w], out=prod)
                torch.sum(prod, dim=1, out=plane)
                out[:, k] = plane
                k += 1
        out.div_(c)
    return out.to(f1.dtype)


def correlation_reference_backward(
    grad: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor, radius_axial: int, radius_lateral: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the correlation w.r.t. f1 and f2 for an output gradient N x D x H x W.

    grad_f1(y, x) = sum_k g_k(y, x) f2(y + dy, x + dx) / C and
    grad_f2(y + dy, x + dx) += g_k(y, x) f1(y, x) / C, accumulated in a padded
    buffer one displacement at a time (CPU ops here are deterministic).
    """
    ra, rl = radius_axial, radius_lateral
    _, c, h, w = f1.shape
    with torch.no_grad():
        a = f1.to(compute_dtype(f1.dtype))
        b = _padded(f2, ra, rl)
        g = grad.to(a.dtype) / c
        grad_a = torch.zeros_like(a)
        grad_b = torch.zeros_like(b)
        k = 0
        for dy in range(2 * ra + 1):
            for dx in range(2 * rl + 1):
                gk = g[:, k : k + 1]
                grad_a.addcmul_(gk, b[:, :, dy : dy + h, dx : dx + w])
                grad_b[:, :, dy : dy + h, dx : dx + w].addcmul_(gk, a)
                k += 1
        grad_f2 = grad_b[:, :, ra : ra + h, rl : rl + w]
    return grad_a.to(f1.dtype), grad_f2.to(f2.dtype).contiguous()
