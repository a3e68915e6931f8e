"""Local correlation as Triton kernels (forward and a deterministic backward).

Layout: inputs N x C x H x W contiguous; each program owns BLOCK_P consecutive
pixels of the flattened H*W plane of one image (so small deep-level planes
waste no lanes) and keeps all D = (2ra+1)(2rl+1) displacements of those
pixels in registers as a [DP, BLOCK_P] float32 tile (DP = D rounded up to a
power of two). The channel loop streams f1 once; the shifted f2 reads are
gathers that hit L1/L2, so DRAM sees f1, f2 and the output about once.

Deep pyramid levels have small planes and many channels (e.g. 196 x 16 x 8
per image), which would leave most SMs idle; there the channel range is
split over a third grid axis. Forward splits write float32 partial volumes
that ``torch.sum`` then adds in a fixed order (deterministic); backward splits
write disjoint channels, so they need no reduction at all.

Backward: both input gradients are gathers, so every output element is
written by exactly one program and summed in a fixed order (no atomics,
bit-reproducible):
  grad_f1(y, x, c) = sum_k g_k(y, x) f2(y + dy, x + dx, c) / C
  grad_f2(y, x, c) = sum_k g_k(y - dy, x - dx) f1(y - dy, x - dx, c) / C
Both are computed by one kernel from the same two [DP, BLOCK_P] tiles of g.

Inputs may be float16/bfloat16/float32/float64; products are accumulated in
float32 (float64 for float64 inputs would need another kernel variant, so
float64 is computed in float32 here: use the reference for gradcheck).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_common import channel_splits, next_pow2, on_device, split_channels
from .correlation_reference import num_displacements


@triton.jit
def _corr_fwd_kernel(
    f1_ptr,
    f2_ptr,
    out_ptr,
    C,
    H,
    W,
    inv_c,
    C_SPLIT,
    RA: tl.constexpr,
    RL: tl.constexpr,
    DP: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    hw = H * W
    n = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < hw
    y = p // W
    x = p % W
    k = tl.arange(0, DP)
    nd = (2 * RA + 1) * (2 * RL + 1)
    kmask = k < nd
    dy = k // (2 * RL + 1) - RA
    dx = k % (2 * RL + 1) - RL
    y2 = y[None, :] + dy[:, None]
    x2 = x[None, :] + dx[:, None]
    m2 = kmask[:, None] & pmask[None, :] & (y2 >= 0) & (y2 < H) & (x2 >= 0) & (x2 < W)
    off2 = y2 * W + x2
    c0 = split * C_SPLIT
    c1 = tl.minimum(c0 + C_SPLIT, C)
    base = (n * C + c0) * hw
    a_ptrs = f1_ptr + base + p
    b_ptrs = f2_ptr + base + off2
    acc = tl.zeros((DP, BLOCK_P), dtype=tl.float32)
    for _c in range(c0, c1):
        a = tl.load(a_ptrs, mask=pmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptrs, mask=m2, other=0.0).to(tl.float32)
        acc += a[None, :] * b
        a_ptrs += hw
        b_ptrs += hw
    # With channel splits, out_ptr is a splits x N x D x H x W float32 partial buffer.
    o_ptrs = out_ptr + (split * tl.num_programs(1) + n) * nd * hw + k[:, None] * hw + p[None, :]
    tl.store(o_ptrs, (acc * inv_c).to(out_ptr.dtype.element_ty), mask=kmask[:, None] & pmask[None, :])


@triton.jit
def _corr_bwd_kernel(
    f1_ptr,
    f2_ptr,
    g_ptr,
    g1_ptr,
    g2_ptr,
    C,
    H,
    W,
    inv_c,
    C_SPLIT,
    RA: tl.constexpr,
    RL: tl.constexpr,
    DP: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    hw = H * W
    n = tl.program_id(1).to(tl.int64)
    c0 = tl.program_id(2) * C_SPLIT  # this program's channels: [c0, c0 + C_SPLIT) within C
    c1 = tl.minimum(c0 + C_SPLIT, C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < hw
    y = p // W
    x = p % W
    k = tl.arange(0, DP)
    nd = (2 * RA + 1) * (2 * RL + 1)
    kmask = k < nd
    dy = k // (2 * RL + 1) - RA
    dx = k % (2 * RL + 1) - RL
    # f2 partners of this pixel (for grad_f1) ...
    yf = y[None, :] + dy[:, None]
    xf = x[None, :] + dx[:, None]
    mf = kmask[:, None] & pmask[None, :] & (yf >= 0) & (yf < H) & (xf >= 0) & (xf < W)
    off_f = yf * W + xf
    # ... and the f1 pixels whose displacement k lands on this pixel (for grad_f2).
    yb = y[None, :] - dy[:, None]
    xb = x[None, :] - dx[:, None]
    mb = kmask[:, None] & pmask[None, :] & (yb >= 0) & (yb < H) & (xb >= 0) & (xb < W)
    off_b = yb * W + xb
    g_base = g_ptr + n * nd * hw + k[:, None] * hw
    g_here = tl.load(g_base + p[None, :], mask=mf, other=0.0).to(tl.float32) * inv_c
    g_back = tl.load(g_base + off_b, mask=mb, other=0.0).to(tl.float32) * inv_c
    base = (n * C + c0) * hw
    b_ptrs = f2_ptr + base + off_f
    a_ptrs = f1_ptr + base + off_b
    o1_ptrs = g1_ptr + base + p
    o2_ptrs = g2_ptr + base + p
    for _c in range(c0, c1):
        b = tl.load(b_ptrs, mask=mf, other=0.0).to(tl.float32)
        a = tl.load(a_ptrs, mask=mb, other=0.0).to(tl.float32)
        tl.store(o1_ptrs, tl.sum(g_here * b, axis=0).to(g1_ptr.dtype.element_ty), mask=pmask)
        tl.store(o2_ptrs, tl.sum(g_back * a, axis=0).to(g2_ptr.dtype.element_ty), mask=pmask)
        b_ptrs += hw
        a_ptrs += hw
        o1_ptrs += hw
        o2_ptrs += hw


def launch_config(radius_axial: int, radius_lateral: int, backward: bool = False) -> dict[str, int]:
    """Block sizes: a [DP, BLOCK_P] float32 tile of about 4096 elements (2048 per tile backward,
    which holds two) over 4 warps keeps register use moderate without spills (checked for sm_90)."""
    dp = next_pow2(num_displacements(radius_axial, radius_lateral))
    tile = 2048 if backward else 4096
    block_p = max(16, min(256, tile // dp))
    return {"DP": dp, "BLOCK_P": block_p, "num_warps": 4}


def _prepare(t: torch.Tensor) -> torch.Tensor:
    # float64 has no kernel variant (see module docstring); compute it in float32.
    t = t.contiguous()
    return t.float() if t.dtype == torch.float64 else t


def correlation_triton_forward(
    f1: torch.Tensor,
    f2: torch.Tensor,
    radius_axial: int,
    radius_lateral: int,
    splits: int | None = None,
) -> torch.Tensor:
    """Forward with the Triton kernel: f1, f2 N x C x H x W -> N x D x H x W in f1's dtype.

    ``splits`` (channel ranges; default from the device's SM count) is exposed for tests.
    """
    a, b = _prepare(f1), _prepare(f2)
    n, c, h, w = a.shape
    d = num_displacements(radius_axial, radius_lateral)
    cfg = launch_config(radius_axial, radius_lateral)
    blocks = triton.cdiv(h * w, cfg["BLOCK_P"])
    per, splits = split_channels(c, splits or channel_splits(blocks * n, c, a.device))
    if splits == 1:
        out = torch.empty(n, d, h, w, dtype=a.dtype, device=a.device)
    else:
        out = torch.empty(splits, n, d, h, w, dtype=torch.float32, device=a.device)
    with on_device(a.device):
        _corr_fwd_kernel[(blocks, n, splits)](
            a, b, out, c, h, w, 1.0 / c, per, RA=radius_axial, RL=radius_lateral, **cfg
        )
    if splits > 1:
        out = out.sum(dim=0)  # fixed-order reduction over the partial volumes: deterministic
    return out.to(f1.dtype)


def correlation_triton_backward(
    grad: torch.Tensor,
    f1: torch.Tensor,
    f2: torch.Tensor,
    radius_axial: int,
    radius_lateral: int,
    splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic backward with the Triton kernel; returns (grad_f1, grad_f2)."""
    a, b = _prepare(f1), _prepare(f2)
    g = _prepare(grad)
    n, c, h, w = a.shape
    g1 = torch.empty_like(a)
    g2 = torch.empty_like(b)
    cfg = launch_config(radius_axial, radius_lateral, backward=True)
    blocks = triton.cdiv(h * w, cfg["BLOCK_P"])
    per, splits = split_channels(c, splits or channel_splits(blocks * n, c, a.device))
    with on_device(a.device):
        _corr_bwd_kernel[(blocks, n, splits)](
            a, b, g, g1, g2, c, h, w, 1.0 / c, per, RA=radius_axial, RL=radius_lateral, **cfg
        )
    return g1.to(f1.dtype), g2.to(f2.dtype)
