"""NCC window block matching, coarse to fine, with sub-sample peak interpolation.

Algorithm (all torch, so it runs on the frames' device; the cost volumes come
from ``cdpkd.ops.correlation``, Triton on GPU; see ``ncc_volume``):

1. **Coarse level(s)**, coarsest first. Displacements in real data reach
   ~60 samples (3 % strain over 2000 samples), far beyond a search radius one
   can afford at full resolution, and the RF correlation has side lobes every
   carrier period (8 samples at 40/5 MHz) that trap a wide full-resolution
   search. So the first level matches the *envelope* (no carrier, hence no
   side lobes), box-averaged and decimated axially (default by 4; lines are
   kept), with a larger window (``coarse_window``) and a search radius that
   covers ``search``. Its estimate is median filtered (outliers would
   otherwise become wrong search centres the next level cannot leave).
2. **Next levels**: the estimate is upsampled (bilinear, onto the pooled-cell
   centres), the level's post frame is warped by it and only a small residual
   (``refine`` radius) is searched. A residual r found on the warped frame
   ``post(q + d0(q))`` composes exactly as ``d(p) = r(p) + d0(p + r(p))``
   (``cdpkd.ops.warp`` of d0 by r). Warping by d0(q) also undoes most of the
   stretch inside each window, which reduces strain decorrelation.
3. **Full resolution**: RF, the user's ``window``, ``fine_iterations`` passes.
   The RF is warped with a cubic B-spline (``interp.spline_warp``): linear
   interpolation of an 8-samples-per-period carrier shifts its phase by up to
   ~0.01 sample, a strain-periodic bias. Before the second and later passes
   the estimate is smoothed (``guide_smoothing``: a box mean weighted by the
   squared peak NCC, frame-edge rows not replicated), as the predictor of
   multi-pass PIV: the raw estimate's window-to-window jitter, mostly lateral,
   would decorrelate the warped frame. The residual of the last pass is raw,
   so the output keeps the window's resolution; the passes mostly remove the
   bias that lateral sub-line misalignment causes in the axial peak.
4. **Sub-sample**: the integer NCC peak is refined axially and laterally,
   separately, by a 3-point ``parabolic`` or ``cosine`` fit (``subsample``);
   a peak on the edge of the search box stays integer.

``prior`` seeds the tracker with another estimate (e.g. a network's): the coarse levels are
skipped and the full-resolution passes start from the prior's box mean (``guide_smoothing``), so
the result is block matching's answer around that estimate, without its sub-window jitter.

``step`` evaluates the full-resolution NCC only on a grid of window centres
every (sy, sx) pixels; the estimate is interpolated linearly to the full grid.
Pixels whose windows are flat (no speckle) keep a zero residual.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..ops import warp
from ._common import (
    ArrayLike,
    TrackerResult,
    check_window_fits,
    displacement_out,
    frames_to_tensor,
    pair_of_ints,
)
from .interp import spline_warp
from .ncc_volume import iter_strips, ncc_volume
from .pyramid import (
    centre_grid,
    decimate,
    envelope,
    from_level,
    interp_axis,
    median_filter,
    to_level,
    weighted_box_mean,
)
from .subsample import METHODS, peak_features

_OP = "ncc_block_matching"
#: Default memory bound: floats per cost volume per strip (x ~6 live volumes, 4 bytes each).
DEFAULT_MAX_VOLUME_ELEMENTS = 2**24


def _parse_subsample(subsample: Any) -> tuple[str, str]:
    pair = (subsample, subsample) if isinstance(subsample, str) else tuple(subsample)
    if len(pair) != 2 or any(m not in METHODS for m in pair):
        raise ValueError(
            f"{_OP}: subsample must be one of {METHODS} or an (axial, lateral) pair, got {subsample!r}"
        )
    return pair[0], pair[1]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit RMS per frame: NCC does not care, and it keeps box sums well scaled."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    return x / x.square().mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-30)


def _match(
    f1: torch.Tensor,
    f2: torch.Tensor,
    window: tuple[int, int],
    radius: tuple[int, int],
    step: tuple[int, int],
    methods: tuple[str, str],
    max_elements: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer NCC peak + sub-sample offsets at every pixel of one level.

    Returns (displacement N x 2 x H x W in this level's pixels, peak NCC N x 1 x H x W).
    """
    n, _, h, w = f1.shape
    ra, rl = radius
    nd_l = 2 * rl + 1
    rows, cols = centre_grid(h, step[0], f1.device), centre_grid(w, step[1], f1.device)
    disp = f1.new_zeros(n, 2, rows.numel(), cols.numel())
    peak = f1.new_zeros(n, 1, rows.numel(), cols.numel())
    halo = window[0] // 2 + ra
    per_row = n * (2 * ra + 1) * nd_l * w
    rows_per_strip = max(1, max_elements // per_row - 2 * halo)
    host_rows = rows.tolist()  # strip bookkeeping on the host: no device sync per row
    for out_sl, start, stop in iter_strips(host_rows, h, halo, rows_per_strip):
        local_rows = rows[out_sl] - start
        crop1 = f1[..., start:stop, :].contiguous()
        crop2 = f2[..., start:stop, :].contiguous()
        vol = ncc_volume(crop1, crop2, window, radius, local_rows, cols)
        # a flat window (no NCC defined at any offset) keeps a zero residual
        found = peak_features(vol, radius, methods, flat="centre")
        disp[:, :, out_sl] = found[:, :2]
        peak[:, :, out_sl] = found[:, 2:]
    disp = interp_axis(interp_axis(disp, rows, h, -2), cols, w, -1)
    peak = interp_axis(interp_axis(peak, rows, h, -2), cols, w, -1)
    return disp, peak


def _level_factors(levels: Any, decimation: int) -> tuple[int, ...]:
    """Axial decimation per level, coarsest first, ending with 1 (full resolution)."""
    if isinstance(levels, (tuple, list)):
        factors = tuple(levels)
        ok = (
            len(factors) >= 1
            and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in factors)
            and factors[-1] == 1
            and all(a > b for a, b in zip(factors, factors[1:]))
        )
        if not ok:
            raise ValueError(
                f"{_OP}: levels as a sequence must be strictly decreasing integer decimation factors "
                f"ending with 1, e.g. (16, 4, 1); got {levels!r}"
            )
        return factors
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"{_OP}: levels must be an integer >= 1 or a sequence of factors, got {levels!r}")
    return tuple(decimation**k for k in reversed(range(levels)))


def _seed(prior: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    """``prior`` (2 x H x W or N x 2 x H x W) as an N x 2 x H x W tensor on ``like``'s device and dtype,
    checked against the frames ``like`` (N x 1 x H x W)."""
    seed = torch.as_tensor(prior).to(device=like.device, dtype=like.dtype)
    given = tuple(seed.shape)
    seed = seed[None] if seed.ndim == 3 else seed
    n, _, h, w = like.shape
    if tuple(seed.shape) != (n, 2, h, w):
        raise ValueError(f"{_OP}: prior must be 2 x H x W (or N x 2 x H x W) matching the frames ({n}, 2, {h}, {w}), "
                         f"got {given}")
    if not torch.isfinite(seed).all():
        raise ValueError(f"{_OP}: prior contains NaN or Inf")
    return seed


def _compose(prior: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
    """d(p) = r(p) + d0(p + r(p)): the residual found on the frame warped by d0, composed exactly."""
    if prior is None:
        return residual
    return residual + warp(prior.contiguous(), residual.contiguous(), padding="border")


def _level_window(window_full: tuple[int, int], factor: int, height: int) -> tuple[int, int]:
    """A full-resolution window (samples, lines) expressed on a level decimated by ``factor``."""
    wa = max(3, int(round(window_full[0] / factor)) | 1)
    while wa > height:
        wa -= 2
    return max(1, wa), window_full[1]


def ncc_block_matching(
    pre: ArrayLike,
    post: ArrayLike,
    *,
    window: int | tuple[int, int] = (41, 9),
    search: int | tuple[int, int] | None = None,
    step: int | tuple[int, int] = 1,
    subsample: str | tuple[str, str] = "cosine",
    levels: int | tuple[int, ...] = 2,
    decimation: int = 4,
    coarse_window: int | tuple[int, int] | None = None,
    refine: int | tuple[int, int] = (3, 1),
    fine_iterations: int = 3,
    coarse_median: int | tuple[int, int] = (5, 3),
    guide_smoothing: int | tuple[int, int] = (61, 9),
    max_volume_elements: int = DEFAULT_MAX_VOLUME_ELEMENTS,
    prior: ArrayLike | None = None,
    return_result: bool = False,
) -> ArrayLike | TrackerResult:
    """Displacement between two RF frames by windowed NCC block matching, coarse to fine.

    Args:
        pre, post: RF frames, H x W (numpy or torch) or N x 1 x H x W; H axial
            samples, W lines. Torch input stays on its device.
        window: full-resolution matching window (axial samples, lateral lines), odd.
        search: largest |displacement| to look for (samples, lines). Default:
            4 % of the depth + 8 samples axially, 2 lines laterally (each
            full-resolution pass can add ``refine`` more). With ``levels=1``
            it is the radius of a plain full-resolution search; otherwise the
            coarsest level covers it.
        step: evaluate the full-resolution NCC every (sy, sx) pixels and
            interpolate (1 = every pixel).
        subsample: "parabolic", "cosine" or "none", or an (axial, lateral)
            pair. Cosine is exact for a cosine-shaped (RF) peak, the parabola
            for a parabolic one; after the warping passes the residual peak is
            near lag 0, where both are nearly unbiased.
        levels: number of pyramid levels (1 = full resolution only; level k
            decimates by ``decimation ** k``), or the axial decimation factors
            themselves, coarsest first and ending with 1, e.g. ``(8, 2, 1)``.
        decimation: axial decimation between levels when ``levels`` is an int.
        coarse_window: window of the coarse levels in full-resolution units
            (samples, lines); default (3 x window axial, window lateral + 2).
        refine: residual search radius (level pixels) on every level after the
            coarsest; keep it below half a carrier period axially (4 samples at
            8 samples per period) so RF side lobes cannot win.
        fine_iterations: passes at full resolution.
        coarse_median: median filter (level pixels, odd) applied to each coarse
            level's estimate before it seeds the next level.
        guide_smoothing: odd (samples, lines) window of the weighted box mean
            applied to the estimate before each further full-resolution pass.
        max_volume_elements: memory bound, floats per cost volume; larger
            frames are processed in axial strips (identical result).
        prior: optional starting estimate, 2 x H x W (N x 2 x H x W for 4-D input), samples /
            lines, same convention as the output: the coarse levels (``levels``, ``search``,
            ``coarse_*``) are skipped, and the first full-resolution pass warps by the prior's
            ``guide_smoothing`` box mean, as later passes warp by the tracker's own.
        return_result: return a :class:`TrackerResult` (displacement, peak-NCC
            quality map, time, per-level info) instead of the displacement.

    Returns:
        Displacement 2 x H x W (N x 2 x H x W for 4-D input), channel 0 axial
        in samples, 1 lateral in lines, Lagrangian on the pre grid; same array
        type (and device) as the input.

    Raises:
        ValueError: shape mismatch, NaN/Inf, bad parameters, a window larger
            than the frame.
    """
    with torch.no_grad():
        return _ncc_block_matching(**locals())


def _ncc_block_matching(
    pre: ArrayLike,
    post: ArrayLike,
    window: Any,
    search: Any,
    step: Any,
    subsample: Any,
    levels: Any,
    decimation: int,
    coarse_window: Any,
    refine: Any,
    fine_iterations: int,
    coarse_median: Any,
    guide_smoothing: Any,
    max_volume_elements: int,
    prior: ArrayLike | None,
    return_result: bool,
) -> ArrayLike | TrackerResult:
    t0 = time.perf_counter()
    f1, f2, kind = frames_to_tensor(pre, post, _OP)
    n, _, h, w = f1.shape
    window = pair_of_ints(window, "window", _OP, minimum=1, odd=True)
    check_window_fits(window, (h, w), _OP)
    if search is None:
        search = (int(math.ceil(0.04 * h)) + 8, 2)
    search = pair_of_ints(search, "search", _OP, minimum=0)
    step = pair_of_ints(step, "step", _OP, minimum=1)
    refine = pair_of_ints(refine, "refine", _OP, minimum=0)
    methods = _parse_subsample(subsample)
    for name, value, lo in (
        ("decimation", decimation, 2),
        ("fine_iterations", fine_iterations, 1),
        ("max_volume_elements", max_volume_elements, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{_OP}: {name} must be an integer >= {lo}, got {value!r}")
    factors = _level_factors(levels, decimation)
    seed = None if prior is None else _seed(prior, f1)
    if seed is not None:
        factors = (1,)  # a seed replaces the coarse levels
    if coarse_window is None:
        coarse_window = (3 * window[0], window[1] + 2)
    coarse_window = pair_of_ints(coarse_window, "coarse_window", _OP, minimum=1)
    coarse_median = pair_of_ints(coarse_median, "coarse_median", _OP, minimum=1, odd=True)
    guide_smoothing = pair_of_ints(guide_smoothing, "guide_smoothing", _OP, minimum=1, odd=True)
    coarse_window = (coarse_window[0], min(coarse_window[1] | 1, w - (1 - w % 2)))
    if h // factors[0] < 8:
        raise ValueError(
            f"{_OP}: pyramid factors {factors} leave {h // factors[0]} samples at the coarsest level "
            f"(need >= 8); use fewer levels"
        )

    f1, f2 = _normalise(f1), _normalise(f2)
    env1 = env2 = None
    if len(factors) > 1:
        env1, env2 = _normalise(envelope(f1)), _normalise(envelope(f2))
    prior = seed  # full-resolution estimate, samples / lines (None: the coarse levels find one)
    quality = None if seed is None else torch.ones_like(seed[:, :1])  # a seed is smoothed uniformly
    info: dict[str, Any] = {"levels": []}
    for factor in factors:
        tl = time.perf_counter()
        if factor > 1:
            a, b = _normalise(decimate(env1, factor)), _normalise(decimate(env2, factor))
            lwin = _level_window(coarse_window, factor, a.shape[-2])
            lstep, iters = (1, 1), 1
        else:
            a, b, lwin, lstep, iters = f1, f2, window, step, fine_iterations
        if prior is None:
            radius = (int(math.ceil(search[0] / factor)) + (1 if factor > 1 else 0), search[1])
        else:
            radius = refine
        radius = (min(radius[0], a.shape[-2] - 1), min(radius[1], w - 1))
        level_prior = None if prior is None else to_level(prior, factor)
        for it in range(iters):
            if it > 0 or seed is not None:  # a seed is smoothed before its first pass too
                # Warp by a smoothed estimate (as PIV's multi-pass predictors): the raw one carries
                # window-to-window jitter, mostly lateral, that decorrelates the warped frame and
                # feeds back into the next pass. The residual is then measured relative to this
                # guide, so the final estimate keeps the window's resolution.
                level_prior = weighted_box_mean(
                    level_prior, quality.clamp_min(0.0) ** 2 + 1e-6, guide_smoothing
                )
            if level_prior is None:
                b_w = b
            elif factor > 1:
                b_w = warp(
                    b, level_prior.contiguous(), padding="zeros"
                )  # envelope: smooth, bilinear is enough
            else:
                b_w = spline_warp(b, level_prior, padding="zeros")[0]
            residual, quality = _match(a, b_w, lwin, radius, lstep, methods, max_volume_elements)
            level_prior = _compose(level_prior, residual)
        if factor > 1:
            # Outliers (speckle decorrelation, peak hopping) would be passed on as a wrong search
            # centre that the small residual search below cannot leave: remove them here.
            level_prior = median_filter(level_prior, coarse_median)
        prior = from_level(level_prior, factor, h)
        info["levels"].append(
            {
                "factor": factor,
                "window": lwin,
                "radius": radius,
                "passes": iters,
                "seconds": time.perf_counter() - tl,
            }
        )
    disp = displacement_out(prior, kind)
    if not return_result:
        return disp
    q = quality[0, 0] if kind.endswith("2d") else quality
    q = q.detach().cpu().numpy() if kind.startswith("numpy") else q
    return TrackerResult(displacement=disp, quality=q, seconds=time.perf_counter() - t0, info=info)
