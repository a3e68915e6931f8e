"""Bilinear backward warping as Triton kernels with a deterministic backward.

Forward and grad w.r.t. the displacement are per-pixel gathers. The grad
w.r.t. the image is a scatter in general (each output pixel spreads its
gradient over its 4 taps); CUDA ``grid_sample`` does that with atomics, which
are not reproducible. Here it is a gather instead: each source pixel s looks
for the output pixels q whose taps cover it. With e(q) = pos(q) - q the
effective displacement (border: after clamping; zeros: unclamped, since a
clamped sample has no tap inside the image), q covers s only if
|q + e(q) - s| < 1, hence |q - (s - e(s))| < 1 + |e(q) - e(s)|. The host
computes dev = max |e(q) - e(t)| over every output pixel q and each of its
in-image taps t (a few torch ops and one sync), so a window of
floor(2 (dev + margin)) + 3 rows/columns around s - e(s) provably holds every
contributor. dev is about |grad e| * |e|: a uniform shift of any size gives
3 x 3, 1 % strain with 20 px displacement dev = 0.2 (still 3 x 3). Rough
fields, or border padding with samples far outside the image, give larger
windows: slower, still exact and deterministic.

Small planes with many channels (deep pyramid levels) split the channel loop
over a third grid axis; the disp gradient (a reduction over channels) then
goes through float32 partials added by ``torch.sum`` in a fixed order.

Positions are computed in float32 with identical formulas on host and
device; ``margin`` absorbs the rounding of the window centre (images up to
~10^4 pixels per axis). Axes of size 1 ignore the displacement (index 0),
matching ``grid_sample(align_corners=True)``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._triton_common import channel_splits, next_pow2, on_device, split_channels

_MARGIN = 0.01  # pixels; see module docstring
_BLOCK_P = 128  # pixels per program for the per-pixel kernels


@triton.jit
def _position(idx, d, size, BORDER: tl.constexpr):
    """Sample position (pixels) of index ``idx`` displaced by ``d``; and d pos / d d."""
    raw = idx.to(tl.float32) + d
    top = size * 1.0 - 1.0
    if BORDER:
        pos = tl.minimum(tl.maximum(raw, 0.0), top)
        # grid_sample treats the border itself as clamped: zero gradient there.
        slope = ((raw > 0.0) & (raw < top)).to(tl.float32)
    else:
        # Beyond [-2, size + 1] all four taps are outside anyway; clamping keeps the int cast safe.
        pos = tl.minimum(tl.maximum(raw, -2.0), top + 2.0)
        slope = tl.full(raw.shape, 1.0, tl.float32)
    return pos, slope


@triton.jit
def _offset(idx, d, size, BORDER: tl.constexpr):
    """Effective displacement e = pos - idx used to centre the grad-x window.

    Zeros padding uses the unclamped position: a pixel whose sample is clamped
    there has all taps outside the image and contributes nothing.
    """
    raw = idx.to(tl.float32) + d
    if BORDER:
        raw = tl.minimum(tl.maximum(raw, 0.0), size * 1.0 - 1.0)
    return raw - idx.to(tl.float32)


@triton.jit
def _bilinear_taps(d_base, p, pm, H, W, scale_y, scale_x, BORDER: tl.constexpr):
    """Bilinear taps of output pixels ``p`` sampled at p + displacement (loaded from ``d_base``).

    Returns the flat index of the top-left tap, the four 1-D weights, the four
    in-image masks and the position slopes (d pos / d displacement).
    """
    hw = H * W
    dy = tl.load(d_base + p, mask=pm, other=0.0).to(tl.float32) * scale_y
    dx = tl.load(d_base + hw + p, mask=pm, other=0.0).to(tl.float32) * scale_x
    py, slope_y = _position(p // W, dy, H, BORDER)
    px, slope_x = _position(p % W, dx, W, BORDER)
    y0f = tl.floor(py)
    x0f = tl.floor(px)
    wy1 = py - y0f
    wx1 = px - x0f
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    my0 = (y0 >= 0) & (y0 < H)
    my1 = (y0 + 1 >= 0) & (y0 + 1 < H)
    mx0 = (x0 >= 0) & (x0 < W)
    mx1 = (x0 + 1 >= 0) & (x0 + 1 < W)
    return y0 * W + x0, 1.0 - wy1, wy1, 1.0 - wx1, wx1, my0, my1, mx0, mx1, slope_y, slope_x


@triton.jit
def _warp_fwd_kernel(
    x_ptr,
    d_ptr,
    out_ptr,
    C,
    H,
    W,
    scale_y,
    scale_x,
    C_SPLIT,
    BORDER: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    hw = H * W
    n = tl.program_id(1).to(tl.int64)
    c0 = tl.program_id(2) * C_SPLIT  # this program's channels: [c0, c0 + C_SPLIT) within C
    c1 = tl.minimum(c0 + C_SPLIT, C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < hw
    o00, wy0, wy1, wx0, wx1, my0, my1, mx0, mx1, _sy, _sx = _bilinear_taps(
        d_ptr + n * 2 * hw, p, pm, H, W, scale_y, scale_x, BORDER
    )
    x_base = x_ptr + (n * C + c0) * hw
    o_ptrs = out_ptr + (n * C + c0) * hw + p
    for _c in range(c0, c1):
        v00 = tl.load(x_base + o00, mask=pm & my0 & mx0, other=0.0).to(tl.float32)
        v01 = tl.load(x_base + o00 + 1, mask=pm & my0 & mx1, other=0.0).to(tl.float32)
        v10 = tl.load(x_base + o00 + W, mask=pm & my1 & mx0, other=0.0).to(tl.float32)
        v11 = tl.load(x_base + o00 + W + 1, mask=pm & my1 & mx1, other=0.0).to(tl.float32)
        val = wy0 * (wx0 * v00 + wx1 * v01) + wy1 * (wx0 * v10 + wx1 * v11)
        tl.store(o_ptrs, val.to(out_ptr.dtype.element_ty), mask=pm)
        x_base += hw
        o_ptrs += hw


@triton.jit
def _warp_bwd_disp_kernel(
    x_ptr,
    d_ptr,
    g_ptr,
    gd_ptr,
    C,
    H,
    W,
    scale_y,
    scale_x,
    C_SPLIT,
    BORDER: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    hw = H * W
    n = tl.program_id(1).to(tl.int64)
    c0 = tl.program_id(2) * C_SPLIT  # this program's channels: [c0, c0 + C_SPLIT) within C
    c1 = tl.minimum(c0 + C_SPLIT, C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < hw
    o00, wy0, wy1, wx0, wx1, my0, my1, mx0, mx1, slope_y, slope_x = _bilinear_taps(
        d_ptr + n * 2 * hw, p, pm, H, W, scale_y, scale_x, BORDER
    )
    x_base = x_ptr + (n * C + c0) * hw
    g_ptrs = g_ptr + (n * C + c0) * hw + p
    acc_y = tl.zeros((BLOCK_P,), dtype=tl.float32)
    acc_x = tl.zeros((BLOCK_P,), dtype=tl.float32)
    for _c in range(c0, c1):
        g = tl.load(g_ptrs, mask=pm, other=0.0).to(tl.float32)
        v00 = tl.load(x_base + o00, mask=pm & my0 & mx0, other=0.0).to(tl.float32)
        v01 = tl.load(x_base + o00 + 1, mask=pm & my0 & mx1, other=0.0).to(tl.float32)
        v10 = tl.load(x_base + o00 + W, mask=pm & my1 & mx0, other=0.0).to(tl.float32)
        v11 = tl.load(x_base + o00 + W + 1, mask=pm & my1 & mx1, other=0.0).to(tl.float32)
        acc_y += g * (wx0 * (v10 - v00) + wx1 * (v11 - v01))
        acc_x += g * (wy0 * (v01 - v00) + wy1 * (v11 - v10))
        x_base += hw
        g_ptrs += hw
    # With channel splits, gd_ptr is a splits x N x 2 x H x W float32 partial buffer.
    gd_base = gd_ptr + (tl.program_id(2) * tl.num_programs(1) + n) * 2 * hw + p
    tl.store(gd_base, (acc_y * slope_y * scale_y).to(gd_ptr.dtype.element_ty), mask=pm)
    tl.store(gd_base + hw, (acc_x * slope_x * scale_x).to(gd_ptr.dtype.element_ty), mask=pm)


@triton.jit
def _warp_bwd_x_kernel(
    d_ptr,
    g_ptr,
    gx_ptr,
    C,
    H,
    W,
    scale_y,
    scale_x,
    ry,
    rx,
    WY,
    WX,
    NWIN,
    C_SPLIT,
    BORDER: tl.constexpr,
    WCHUNK: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    hw = H * W
    n = tl.program_id(1).to(tl.int64)
    c0 = tl.program_id(2) * C_SPLIT  # this program's channels: [c0, c0 + C_SPLIT) within C
    c1 = tl.minimum(c0 + C_SPLIT, C)
    s = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # source pixels owned by this program
    sm = s < hw
    sy = s // W
    sx = s % W
    d_base = d_ptr + n * 2 * hw
    ds_y = tl.load(d_base + s, mask=sm, other=0.0).to(tl.float32) * scale_y
    ds_x = tl.load(d_base + hw + s, mask=sm, other=0.0).to(tl.float32) * scale_x
    # First candidate row/column: s - e(s) - 1 - r, rounded up (see module docstring).
    # Windows only matter inside the image, so a base clamped into
    # [min(0, H - WY), max(0, H - WY)] covers the same in-image candidates; this
    # also keeps absurd displacements (and WY = H, the whole image) in int range.
    oy = tl.ceil(-_offset(sy, ds_y, H, BORDER) - 1.0 - ry)
    ox = tl.ceil(-_offset(sx, ds_x, W, BORDER) - 1.0 - rx)
    base_y = sy + tl.minimum(tl.maximum(oy, -1.0e9), 1.0e9).to(tl.int32)
    base_x = sx + tl.minimum(tl.maximum(ox, -1.0e9), 1.0e9).to(tl.int32)
    base_y = tl.minimum(tl.maximum(base_y, tl.minimum(H - WY, 0)), tl.maximum(H - WY, 0))
    base_x = tl.minimum(tl.maximum(base_x, tl.minimum(W - WX, 0)), tl.maximum(W - WX, 0))
    g_base = g_ptr + (n * C + c0) * hw
    o_base = gx_ptr + (n * C + c0) * hw + s
    for j0 in range(0, NWIN, WCHUNK):
        j = j0 + tl.arange(0, WCHUNK)
        yc = base_y[None, :] + (j // WX)[:, None]
        xc = base_x[None, :] + (j % WX)[:, None]
        cm = (j < NWIN)[:, None] & sm[None, :] & (yc >= 0) & (yc < H) & (xc >= 0) & (xc < W)
        oc = yc * W + xc
        dcy = tl.load(d_base + oc, mask=cm, other=0.0).to(tl.float32) * scale_y
        dcx = tl.load(d_base + hw + oc, mask=cm, other=0.0).to(tl.float32) * scale_x
        pcy, _c = _position(yc, dcy, H, BORDER)
        pcx, _d = _position(xc, dcx, W, BORDER)
        y0f = tl.floor(pcy)
        x0f = tl.floor(pcx)
        fy = pcy - y0f
        fx = pcx - x0f
        y0 = y0f.to(tl.int32)
        x0 = x0f.to(tl.int32)
        # Weight of the tap that lands on s (same products as the forward's weights).
        wy = tl.where(y0 == sy[None, :], 1.0 - fy, tl.where(y0 + 1 == sy[None, :], fy, 0.0))
        wx = tl.where(x0 == sx[None, :], 1.0 - fx, tl.where(x0 + 1 == sx[None, :], fx, 0.0))
        w = tl.where(cm, wy * wx, 0.0)
        lm = w != 0.0
        g_ptrs = g_base + oc
        o_ptrs = o_base
        for _ch in range(c0, c1):
            g = tl.load(g_ptrs, mask=lm, other=0.0).to(tl.float32)
            part = tl.sum(g * w, axis=0)
            if j0 > 0:  # later chunks add to what this program stored: fixed order, no atomics
                part += tl.load(o_ptrs, mask=sm, other=0.0).to(tl.float32)
            tl.store(o_ptrs, part.to(gx_ptr.dtype.element_ty), mask=sm)
            g_ptrs += hw
            o_ptrs += hw


def _prepare(t: torch.Tensor) -> torch.Tensor:
    # float64 has no kernel variant; it is computed in float32 (use the reference for gradcheck).
    t = t.contiguous()
    return t.float() if t.dtype == torch.float64 else t


def _scales(h: int, w: int) -> tuple[float, float]:
    # Axes of size 1 ignore the displacement (grid_sample align_corners=True convention).
    return (0.0 if h == 1 else 1.0), (0.0 if w == 1 else 1.0)


def _positions_torch(idx: torch.Tensor, d: torch.Tensor, size: int, border: bool) -> torch.Tensor:
    """Host mirror of ``_offset``'s position (same float32 operations)."""
    raw = idx + d
    return raw.clamp(0.0, size - 1.0) if border else raw


def search_window(disp: torch.Tensor, padding: str) -> tuple[float, float, int, int]:
    """Half-widths (ry, rx) in pixels and sizes (wy, wx) of the grad-x gather window.

    dev = max |e(q) - e(t)| over output pixels q and their in-image taps t, per
    axis; r = dev + margin; window = min(floor(2 r) + 3, image size). Raises
    ValueError for a NaN displacement, or an infinite one that padding does not clamp
    (the window would be unbounded).
    """
    d = disp.detach().float()
    n, _, h, w = d.shape
    scale_y, scale_x = _scales(h, w)
    border = padding == "border"
    rows = torch.arange(h, device=d.device, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=d.device, dtype=torch.float32).view(1, 1, w)
    py = _positions_torch(rows, d[:, 0] * scale_y, h, border)
    px = _positions_torch(cols, d[:, 1] * scale_x, w, border)
    e = torch.stack((py - rows, px - cols), dim=1).reshape(n, 2, -1)  # n x 2 x hw
    # Taps of far-outside samples are outside anyway; the clamp only keeps the int cast finite.
    y0 = torch.floor(py.clamp(-2.0, h + 1.0)).long()
    x0 = torch.floor(px.clamp(-2.0, w + 1.0)).long()
    # The four taps of every pixel at once (tap-major, n x 4 x h x w): a few dozen small ops
    # instead of a loop, since on a GPU each op is a launch and this runs in every backward.
    tap = torch.arange(4, device=d.device).view(1, 4, 1, 1)
    ty, tx = y0.unsqueeze(1) + tap // 2, x0.unsqueeze(1) + tap % 2
    inside = ((ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)).reshape(n, 1, -1)
    t = (ty.clamp(0, h - 1) * w + tx.clamp(0, w - 1)).reshape(n, 1, -1).expand(n, 2, -1)
    diff = torch.where(inside, (e.repeat(1, 1, 4) - e.gather(2, t)).abs(), 0.0)  # pixel of k: k % hw
    # a NaN (or, unclamped, an Inf) whose taps all fall outside would leave dev finite: ask directly
    nonfinite = (~torch.isfinite(e)).any().view(1).float()
    dev_y, dev_x, bad = torch.cat((diff.amax(dim=(0, 2)), nonfinite)).tolist()  # the one host sync
    if bad or not (math.isfinite(dev_y) and math.isfinite(dev_x)):
        raise ValueError("warp: disp contains NaN or Inf; cannot bound the backward search window")
    ry, rx = dev_y + _MARGIN, dev_x + _MARGIN
    # A window never needs to exceed the image (the kernel clamps its base into it).
    return ry, rx, min(int(math.floor(2 * ry)) + 3, h), min(int(math.floor(2 * rx)) + 3, w)


def _grid_and_split(
    n: int, c: int, h: int, w: int, block_p: int, device: torch.device, splits: int | None
) -> tuple[tuple[int, int, int], int]:
    blocks = triton.cdiv(h * w, block_p)
    per, splits = split_channels(c, splits or channel_splits(blocks * n, c, device))
    return (blocks, n, splits), per


def warp_triton_forward(
    x: torch.Tensor, disp: torch.Tensor, padding: str, splits: int | None = None
) -> torch.Tensor:
    """x N x C x H x W sampled at (y + disp0, x + disp1) -> N x C x H x W in x's dtype.

    ``splits`` (channel ranges per launch; default from the SM count) is exposed for tests.
    """
    a, d = _prepare(x), _prepare(disp)
    n, c, h, w = a.shape
    out = torch.empty_like(a)
    grid, per = _grid_and_split(n, c, h, w, _BLOCK_P, a.device, splits)
    with on_device(a.device):
        _warp_fwd_kernel[grid](
            a, d, out, c, h, w, *_scales(h, w), per, BORDER=padding == "border", BLOCK_P=_BLOCK_P
        )
    return out.to(x.dtype)


def warp_triton_backward_disp(
    grad: torch.Tensor, x: torch.Tensor, disp: torch.Tensor, padding: str, splits: int | None = None
) -> torch.Tensor:
    """Gradient w.r.t. disp (N x 2 x H x W, disp's dtype): a per-pixel reduction over channels.

    With channel splits, each split writes a float32 partial that ``torch.sum``
    adds in a fixed order (deterministic).
    """
    a, d, g = _prepare(x), _prepare(disp), _prepare(grad)
    n, c, h, w = a.shape
    grid, per = _grid_and_split(n, c, h, w, _BLOCK_P, a.device, splits)
    if grid[2] == 1:
        gd = torch.empty_like(d)
    else:
        gd = torch.empty(grid[2], n, 2, h, w, dtype=torch.float32, device=a.device)
    with on_device(a.device):
        _warp_bwd_disp_kernel[grid](
            a, d, g, gd, c, h, w, *_scales(h, w), per, BORDER=padding == "border", BLOCK_P=_BLOCK_P
        )
    if grid[2] > 1:
        gd = gd.sum(dim=0)
    return gd.to(disp.dtype)


def warp_triton_backward_x(
    grad: torch.Tensor, disp: torch.Tensor, padding: str, dtype: torch.dtype, splits: int | None = None
) -> torch.Tensor:
    """Gradient w.r.t. x (N x C x H x W in ``dtype``) as a deterministic gather."""
    d, g = _prepare(disp), _prepare(grad)
    n, c, h, w = g.shape
    ry, rx, wy, wx = search_window(d, padding)
    nwin = wy * wx
    wchunk = min(64, max(16, next_pow2(nwin)))
    block_p = max(16, 2048 // wchunk)
    out_dtype = torch.float32 if dtype == torch.float64 else dtype
    gx = torch.empty(n, c, h, w, dtype=out_dtype, device=g.device)
    grid, per = _grid_and_split(n, c, h, w, block_p, g.device, splits)
    with on_device(g.device):
        _warp_bwd_x_kernel[grid](
            d,
            g,
            gx,
            c,
            h,
            w,
            *_scales(h, w),
            ry,
            rx,
            wy,
            wx,
            nwin,
            per,
            BORDER=padding == "border",
            WCHUNK=wchunk,
            BLOCK_P=block_p,
        )
    return gx.to(dtype)
