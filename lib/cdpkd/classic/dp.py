"""Integer displacement seed: dynamic programming on one A-line, propagated to the others.

**Seed line** (DPAM-style, Rivaz et al. 2008). Labels are integer displacement
pairs (a, l), a in [axial_min, axial_max] samples, l in [-lateral_range,
lateral_range] lines. Along the line (sample i = 0 .. H-1) the path minimises

    sum_i D_i(a_i, l_i) + w_a |a_i - a_{i-1}| + w_l |l_i - l_{i-1}|,   |a_i - a_{i-1}|, |l_i - l_{i-1}| <= 1,

with the data term D = sum of squared differences between the pre line and
the post frame shifted by (a, l), over a short axial window (``dp_window``
samples, about one carrier period) of unit-RMS RF. A window instead of one
sample makes the term robust to noise at no cost to resolution (the path can
still change every sample). Samples whose shifted position leaves the frame
cost 0.5 (a quarter of uncorrelated unit-RMS signals): where tissue really
leaves the field of view the path then keeps its label instead of wandering
onto chance matches of a wrong label (frequent over a one-period window), while
inside the frame a true match (cost ~0) still wins. The step
limit of one sample per sample caps |strain| at 100 %.

**Propagation** (our choice; DP on every line is too slow in Python). Each
round has three passes:

1. *Axial, line by line* outwards from the seed line: line j searches axial
   offsets k in [-search_axial, search_axial] around its neighbour's labels
   a'(q), comparing the pre line with the post frame sampled along the guide,
   ``post(q + a'(q) + k, j + l(q))``, by zero-mean NCC over ``ncc_window``
   samples (sampling along the guide compensates the strain inside the
   window); the pick is median filtered along depth before it guides the next
   line.
2. *Lateral, all pixels at once*: offsets in [-lateral_reach, lateral_reach]
   around the current lateral labels, scored by NCC over 2-D windows
   (``window_2d``), median filtered.
3. *Axial touch-up*, all pixels at once, +-2 samples, 2-D windows.

The first round starts from the seed line's lateral labels on every line;
the second redoes pass 1 on the corrected columns (on wide frames lateral
displacement reaches several lines at the edges, where pass 1 on the seed's
columns compares the wrong A-lines). Why lateral is not propagated line by
line like axial: one line determines it only weakly (the beam spans ~5
lines), and a line-to-line search locks onto one post-frame column (an offset
of +-1 keeps the column the neighbour matched, and a neighbouring pre line
still correlates ~0.95 with it), drifting by a line per line.

Everything is vectorised over labels (seed), samples (pass 1) or pixels
(passes 2, 3); the Python loops are over H samples (seed line) and W lines.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import median_filter, uniform_filter

#: Per-sample data cost where the shifted sample leaves the frame: a quarter of the cost of
#: uncorrelated unit-RMS signals (2). Such a sample carries no information; pricing it as a full
#: mismatch pushed the path, where tissue leaves the field of view, onto chance matches of wrong
#: labels (20-sample shift tests), while 0.5 changed nothing on the simulated pairs.
_OUTSIDE_COST = 0.5


def _box1d(x: np.ndarray, win: int) -> np.ndarray:
    """Centred sum over ``win`` (odd) samples along the last axis, zeros outside."""
    h = win // 2
    pad = np.zeros(x.shape[:-1] + (h + 1,))
    c = np.cumsum(np.concatenate([pad, x, pad[..., :h]], axis=-1), axis=-1)
    return c[..., win:] - c[..., :-win]


def dp_seed_line(
    pre: np.ndarray,
    post: np.ndarray,
    line: int,
    axial_range: tuple[int, int],
    lateral_range: int,
    *,
    weight_axial: float = 2.0,
    weight_lateral: float = 2.0,
    dp_window: int = 9,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer (axial, lateral) displacement of one A-line by dynamic programming.

    Args:
        pre, post: unit-RMS RF frames, H x W (float64).
        line: index of the seed A-line.
        axial_range: (min, max) axial displacement in samples (integers).
        lateral_range: lateral labels -lateral_range .. lateral_range (lines).
        weight_axial, weight_lateral: cost of a one-sample / one-line change of
            the displacement between consecutive samples (in units of the data
            term: squared unit-RMS RF summed over ``dp_window`` samples).
        dp_window: odd axial window of the data term, samples.

    Returns:
        (axial, lateral) integer displacements, each of length H.
    """
    h, w = pre.shape
    amin, amax = axial_range
    n_a, n_l = amax - amin + 1, 2 * lateral_range + 1
    a1 = pre[:, line]
    big = 2.0 * dp_window  # SSD of two uncorrelated unit-RMS windows
    cost = np.full((h, n_a, n_l), big)
    # Samples whose shifted position leaves the frame carry the uncorrelated cost per sample.
    pad_lo, pad_hi = max(0, -amin), max(0, amax)
    for m, dl in enumerate(range(-lateral_range, lateral_range + 1)):
        j = line + dl
        if not 0 <= j < w:
            continue  # lateral label outside the frame: stays at the uncorrelated cost
        col = np.pad(post[:, j], (pad_lo, pad_hi))
        valid_col = np.pad(np.ones(h), (pad_lo, pad_hi))
        shifted = sliding_window_view(col, h)[amin + pad_lo : amax + pad_lo + 1]  # (n_a, H): post[i + a]
        valid = sliding_window_view(valid_col, h)[amin + pad_lo : amax + pad_lo + 1]
        sq = np.where(valid > 0, (a1[None, :] - shifted) ** 2, _OUTSIDE_COST)
        cost[:, :, m] = _box1d(sq, dp_window).T

    # Forward pass; the separable min over (da, dl) in {-1, 0, 1}^2 is done axially, then laterally.
    back_a = np.zeros((h, n_a, n_l), dtype=np.int8)
    back_l = np.zeros((h, n_a, n_l), dtype=np.int8)
    acc = cost[0].copy()
    inf = np.inf
    for i in range(1, h):
        up = np.concatenate([np.full((1, n_l), inf), acc[:-1]], axis=0) + weight_axial  # from a - 1
        down = np.concatenate([acc[1:], np.full((1, n_l), inf)], axis=0) + weight_axial  # from a + 1
        stack = np.stack([up, acc, down])
        choice_a = stack.argmin(axis=0)
        m1 = np.take_along_axis(stack, choice_a[None], axis=0)[0]
        left = np.concatenate([np.full((n_a, 1), inf), m1[:, :-1]], axis=1) + weight_lateral  # from l - 1
        right = np.concatenate([m1[:, 1:], np.full((n_a, 1), inf)], axis=1) + weight_lateral  # from l + 1
        stack = np.stack([left, m1, right])
        choice_l = stack.argmin(axis=0)
        acc = np.take_along_axis(stack, choice_l[None], axis=0)[0] + cost[i]
        back_a[i] = choice_a - 1  # predecessor's axial label offset (-1: a - 1)
        back_l[i] = choice_l - 1
    # Backtrack.
    ia, il = np.unravel_index(int(np.argmin(acc)), acc.shape)
    path_a = np.empty(h, dtype=np.int64)
    path_l = np.empty(h, dtype=np.int64)
    for i in range(h - 1, -1, -1):
        path_a[i], path_l[i] = ia, il
        if i == 0:
            break
        il_prev = il + int(back_l[i, ia, il])
        ia = ia + int(back_a[i, ia, il_prev])
        il = il_prev
    return path_a + amin, path_l - lateral_range


def _line_axial_search(
    pre_line: np.ndarray,
    post: np.ndarray,
    line: int,
    guide_a: np.ndarray,
    lateral: np.ndarray,
    search_axial: int,
    ncc_window: int,
) -> np.ndarray:
    """Best integer axial displacement per sample of ``line`` within +-search_axial of the guide.

    The post frame is sampled along the guide, ``post(q + guide_a(q) + k, line + lateral(q))``,
    and compared with the pre line by zero-mean NCC over ``ncc_window`` samples; all
    offsets at once (K x H arrays). Ties keep the guide.
    """
    h, w = post.shape
    ks = np.array(sorted(range(-search_axial, search_axial + 1), key=abs))
    n1 = _box1d(np.ones(h), ncc_window)
    x = pre_line - _box1d(pre_line, ncc_window) / n1  # locally centred pre line
    sxx = _box1d(x * x, ncc_window)
    rows = np.arange(h)[None, :] + guide_a[None, :] + ks[:, None]  # (K, H)
    cols = np.broadcast_to(np.clip(line + lateral, 0, w - 1), rows.shape)
    ok = (rows >= 0) & (rows < h)
    y = np.where(ok, post[np.clip(rows, 0, h - 1), cols], 0.0)
    sy = _box1d(y, ncc_window)
    syy = _box1d(y * y, ncc_window) - sy * sy / n1
    sxy = _box1d(x * y, ncc_window)
    ncc = np.where(ok, sxy / np.sqrt(np.maximum(sxx * syy, 1e-12)), -1.0)  # sample left the frame: no match
    return guide_a + ks[np.argmax(ncc, axis=0)]


def _integer_ncc(
    pre: np.ndarray, post: np.ndarray, rows: np.ndarray, cols: np.ndarray, window: tuple[int, int]
) -> np.ndarray:
    """Zero-mean NCC over 2-D windows between pre and post sampled at integer (rows, cols) (H x W each).

    Positions outside the frame count as 0 and, at the window centre, give -1.
    """
    h, w = pre.shape
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    y = np.where(ok, post[np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)], 0.0)
    n = float(window[0] * window[1])

    def box(z: np.ndarray) -> np.ndarray:
        return uniform_filter(z, size=window, mode="constant") * n

    sx, sy = box(pre), box(y)
    cov = box(pre * y) - sx * sy / n
    den = np.sqrt(np.maximum((box(pre * pre) - sx * sx / n) * (box(y * y) - sy * sy / n), 1e-12))
    return np.where(ok, cov / den, -1.0)


def _best_offsets(
    pre: np.ndarray,
    post: np.ndarray,
    disp_a: np.ndarray,
    disp_l: np.ndarray,
    offsets: list[tuple[int, int]],
    window: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the (da, dl) in ``offsets`` (first = (0, 0): ties keep the field) maximising 2-D NCC."""
    h, w = pre.shape
    rows0 = np.arange(h)[:, None] + disp_a
    cols0 = np.arange(w)[None, :] + disp_l
    best = np.full((h, w), -np.inf)
    best_a = np.zeros((h, w), dtype=np.int64)
    best_l = np.zeros((h, w), dtype=np.int64)
    for da, dl in offsets:
        ncc = _integer_ncc(pre, post, rows0 + da, cols0 + dl, window)
        better = ncc > best
        best = np.where(better, ncc, best)
        best_a = np.where(better, da, best_a)
        best_l = np.where(better, dl, best_l)
    return best_a, best_l


def _median_int(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    return np.round(median_filter(x.astype(float), size=size, mode="nearest")).astype(np.int64)


def propagate_seed(
    pre: np.ndarray,
    post: np.ndarray,
    seed_line: int,
    seed_a: np.ndarray,
    seed_l: np.ndarray,
    *,
    search_axial: int = 3,
    lateral_reach: int | None = None,
    ncc_window: int = 31,
    window_2d: tuple[int, int] = (41, 9),
    median: int = 31,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer displacement of every line from the seed line's (see module doc).

    Args:
        pre, post: unit-RMS RF frames H x W.
        seed_line, seed_a, seed_l: the seed A-line and its integer displacements (length H).
        search_axial: axial offsets searched around the neighbour line (pass 1) and,
            at most 2, around the field (pass 3).
        lateral_reach: lateral offsets searched around the seed line's labels (pass 2);
            default 1 + 1.5 % of the width on each side (Poisson expansion at 3 %
            strain reaches ~0.75 % of the width at the edges, slip adds a line).
        ncc_window: axial window (samples) of the line-by-line search.
        window_2d: (samples, lines) window of the 2-D NCC of passes 2 and 3.
        median: axial median filter (samples) applied after each step.
        rounds: repetitions of passes 2 and 3.

    Returns:
        (axial, lateral) integer fields, each H x W.
    """
    h, w = pre.shape
    if lateral_reach is None:
        lateral_reach = 1 + int(np.ceil(0.015 * w))
    lat_offsets = sorted(((0, m) for m in range(-lateral_reach, lateral_reach + 1)), key=lambda o: abs(o[1]))
    ax_offsets = sorted(((d, 0) for d in range(-2, 3)), key=lambda o: abs(o[0]))
    disp_a = np.zeros((h, w), dtype=np.int64)
    disp_l = np.repeat(seed_l[:, None], w, axis=1)
    for _ in range(rounds):
        # Pass 1: axial, line by line outwards from the seed line, on the current columns.
        disp_a[:, seed_line] = seed_a
        for direction in (1, -1):
            j = seed_line + direction
            while 0 <= j < w:
                guide = disp_a[:, j - direction]
                a = _line_axial_search(pre[:, j], post, j, guide, disp_l[:, j], search_axial, ncc_window)
                disp_a[:, j] = _median_int(a, median)  # isolated wrong picks must not guide the next line
                j += direction
        # Pass 2: lateral, all pixels at once, 2-D windows: no line-to-line drift possible.
        _, dl = _best_offsets(pre, post, disp_a, disp_l, lat_offsets, window_2d)
        disp_l = _median_int(disp_l + dl, (median, window_2d[1]))
        # Pass 3: axial touch-up with the corrected columns.
        da, _ = _best_offsets(pre, post, disp_a, disp_l, ax_offsets, (ncc_window, 3))
        disp_a = _median_int(disp_a + da, (median, 3))
    return disp_a, disp_l
