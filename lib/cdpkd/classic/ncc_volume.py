"""Windowed normalised cross-correlation (NCC) cost volumes from the correlation op.

For every pixel p and every integer displacement d = (dy, dx) in the search
box, the zero-mean NCC between the pre frame over the window W(p) and the
post frame over the same window shifted by d:

    NCC(p, d) = sum_q (f1(q) - m1)(f2(q + d) - m2) / sqrt(sum (f1 - m1)^2 sum (f2(. + d) - m2)^2),

both frames taken as 0 outside the image (so every window has wa x wl
terms). Built from ``cdpkd.ops.correlation`` (Triton on GPU):

- ``correlation(f1, f2)`` -> f1(q) f2(q + d), box-filtered: the cross term;
- ``correlation(1, box(f2))``, ``correlation(1, box(f2^2))`` -> the post
  window's sum and energy at p + d (box sums of the post frame, shifted).
  The op returns 0 where p + d leaves the frame, which makes that window
  flat: such candidates (tissue leaving the field of view) get NCC -1 and
  never win.

So a volume is three correlations, one box filter of a volume and elementwise
arithmetic. Memory: the volume is N x D x H x W floats (D = (2ra+1)(2rl+1));
callers that only need the peak process the frame in axial strips
(:func:`iter_strips`), which gives exactly the same numbers as one pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..ops import correlation

#: A window whose variance is below this fraction of its pixel count (frames are normalised
#: to unit RMS) counts as flat: no NCC is defined there and it is reported as -1.
_FLAT = 1e-6


#: What a box sum sees beyond the frame: zeros, or the edge sample repeated.
BOX_EDGES = ("zeros", "replicate")


def _pad_axis(x: torch.Tensor, h: int, dim: int, edges: str) -> torch.Tensor:
    """``x`` extended by ``h`` samples at both ends of ``dim``: zeros, or the edge samples repeated."""
    if edges == "zeros":
        return F.pad(x, [0, 0] * (x.dim() - 1 - (dim % x.dim())) + [h, h])
    shape = list(x.shape)
    shape[dim] = h
    first, last = x.narrow(dim, 0, 1).expand(shape), x.narrow(dim, x.shape[dim] - 1, 1).expand(shape)
    return torch.cat((first, x, last), dim)


def _box_axis(x: torch.Tensor, win: int, dim: int, edges: str) -> torch.Tensor:
    """Sum over ``win`` (odd) consecutive samples centred on each one along ``dim`` (``edges`` outside).

    Binary doubling: sums over 1, 2, 4, ... samples are built by one shifted add
    each and the window is assembled from its binary digits, so the cost is
    ~2 log2(win) memory-bound adds, exact (no cumulative-sum cancellation) and
    several times faster than ``cumsum`` on CPU.
    """
    if win == 1:
        return x
    n = x.shape[dim]
    t = _pad_axis(x, win // 2, dim, edges)  # t(i) = sum of k samples starting at padded index i; k = 1 here
    out: torch.Tensor | None = None
    offset, k = 0, 1
    while True:
        if win & k:
            term = t.narrow(dim, offset, n)
            out = term.clone() if out is None else out.add_(term)
            offset += k
        if 2 * k > win:
            return out
        length = t.shape[dim] - k
        t = t.narrow(dim, 0, length) + t.narrow(dim, k, length)
        k *= 2


def box_sum(x: torch.Tensor, window: tuple[int, int], edges: str = "zeros") -> torch.Tensor:
    """Sum over an odd (axial x lateral) window centred on each pixel of ``... x H x W``.

    ``edges``: what the window sees outside the frame, zeros (default) or the edge values
    repeated (:data:`BOX_EDGES`; repeating per axis is exactly 2-D edge replication).
    """
    if edges not in BOX_EDGES:
        raise ValueError(f"box_sum: edges must be one of {BOX_EDGES}, got {edges!r}")
    return _box_axis(_box_axis(x, window[0], -2, edges), window[1], -1, edges)


def ncc_volume(
    f1: torch.Tensor,
    f2: torch.Tensor,
    window: tuple[int, int],
    radius: tuple[int, int],
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """NCC cost volume N x D x H' x W' of frames f1, f2 (N x 1 x H x W).

    Args:
        window: odd (axial samples, lateral lines) window.
        radius: search radii (ra, rl); channel k = (dy + ra)(2 rl + 1) + (dx + rl)
            as in ``cdpkd.ops.correlation``.
        rows, cols: optional index tensors selecting the output pixels (a
            coarser grid of window centres); default all pixels.

    Returns:
        NCC in [-1, 1]; -1 where either window is flat or the shifted window's
        centre leaves the frame, so such displacements never win an argmax.
    """
    ra, rl = radius
    count = float(window[0] * window[1])
    ones = torch.ones_like(f1)

    def select(t: torch.Tensor) -> torch.Tensor:
        if rows is not None:
            t = t.index_select(-2, rows)
        if cols is not None:
            t = t.index_select(-1, cols)
        return t

    s1 = box_sum(f1, window)
    var1 = select(box_sum(f1 * f1, window) - s1 * s1 / count)
    s1 = select(s1)
    s2 = select(correlation(ones, box_sum(f2, window).contiguous(), ra, rl))
    var2 = select(correlation(ones, box_sum(f2 * f2, window).contiguous(), ra, rl))
    var2.sub_(s2 * s2 / count)
    cov = select(box_sum(correlation(f1, f2, ra, rl), window))
    cov.sub_(s2.mul_(s1 / count))
    del s2
    floor = _FLAT * count
    flat = (var1 <= floor) | (var2 <= floor)
    den = (var1.clamp_min(floor) * var2.clamp_min_(floor)).sqrt_()
    ncc = cov.div_(den).clamp_(-1.0, 1.0)
    return ncc.masked_fill_(flat, -1.0)


def iter_strips(
    centre_rows: list[int], height: int, halo: int, rows_per_strip: int
) -> Iterator[tuple[slice, int, int]]:
    """Split output rows (sorted, on the host) into strips for memory-bounded processing.

    Yields ``(slice into centre_rows, crop start, crop stop)``: the crop
    [start, stop) holds every input row the strip's outputs depend on
    (``halo`` = half window + search radius on each side), so a strip's NCC
    equals the full-frame NCC exactly.
    """
    n = len(centre_rows)
    rows_per_strip = max(1, rows_per_strip)
    i = 0
    while i < n:
        j = i
        while j < n and centre_rows[j] - centre_rows[i] < rows_per_strip:
            j += 1
        start = max(0, centre_rows[i] - halo)
        stop = min(height, centre_rows[j - 1] + halo + 1)
        yield slice(i, j), start, stop
        i = j
