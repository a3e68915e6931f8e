"""No-reference evaluation of displacement estimators on real RF data (notebook 05).

Real data has no ground-truth displacement, so quality is judged by
no-reference measures of the estimate itself (DESIGN.md section 5, "Real data"):

- ``snre``: elastographic SNR ``|mean| / std`` of the axial strain in a region
  assumed homogeneous (:func:`cdpkd.metrics.snre`);
- ``cnr_db``: ``10 log10(2 (m_b - m_t)^2 / (s_b^2 + s_t^2))`` of the axial strain
  between a target (inclusion) and a background region (:func:`cdpkd.metrics.cnr_db`);
- ``warp_ncc``: global NCC between the pre frame and the post frame
  motion-compensated by the estimate (:func:`cdpkd.metrics.warp_ncc`);
- ``strain_consistency``: Pearson correlation (NCC) between the axial strain
  images of two consecutive pairs of a sequence, (i, i+1) and (i+1, i+2).
  Quasi-static free-hand compression changes slowly, so a good estimator
  gives similar strain patterns for both (the overall strain level may differ,
  which the NCC ignores). The two images lie on the grids of frames i and i+1,
  which differ by the small inter-frame motion: this is an approximation.

Regions of interest are rectangles ``(row0, row1, col0, col1)`` in RF samples
(rows, depth) and A-lines (columns), half-open like Python slices. Arrays are
H x W with H axial (samples) and W lateral (lines); displacements are
2 x H x W (axial samples, lateral lines), as everywhere in ``cdpkd``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .metrics import axial_strain, cnr_db, snre, warp_ncc

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]
ROI = tuple[int, int, int, int]
NO_REFERENCE_METRICS = ("snre", "cnr_db", "warp_ncc", "time_per_frame_ms")


def as_roi(roi: Sequence[int]) -> ROI:
    """Validate a rectangle ``(row0, row1, col0, col1)`` (integers, ``row0 < row1``, ``col0 < col1``)."""
    try:
        r0, r1, c0, c1 = (int(v) for v in roi)
    except (TypeError, ValueError):
        raise ValueError(f"ROI must be (row0, row1, col0, col1), got {roi!r}") from None
    if not (r0 < r1 and c0 < c1):
        raise ValueError(f"ROI must satisfy row0 < row1 and col0 < col1, got {roi!r}")
    return r0, r1, c0, c1


def roi_mask(shape: Sequence[int], roi: Sequence[int]) -> np.ndarray:
    """Bool (H, W) mask of the rectangle ``roi`` (samples, lines; half-open).

    Raises:
        ValueError: the rectangle is malformed or does not lie entirely inside the frame.
    """
    h, w = (int(s) for s in shape)
    r0, r1, c0, c1 = as_roi(roi)
    if not (0 <= r0 and r1 <= h and 0 <= c0 and c1 <= w):
        raise ValueError(f"ROI {roi!r} (rows, cols) lies outside the {h} x {w} frame")
    mask = np.zeros((h, w), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def roi_in_crop(roi: Sequence[int], crop: Sequence[int] | None) -> ROI:
    """Express a full-frame ``roi`` in the coordinates of ``crop`` (both ``(row0, row1, col0, col1)``).

    The ROI is clipped to the crop, so full-frame ROIs can be reused on a small
    crop. ``crop=None`` means the whole frame (the ROI is returned unchanged).

    Raises:
        ValueError: the ROI and the crop do not overlap.
    """
    r0, r1, c0, c1 = as_roi(roi)
    if crop is None:
        return r0, r1, c0, c1
    k0, k1, l0, l1 = as_roi(crop)
    out = (max(r0, k0) - k0, min(r1, k1) - k0, max(c0, l0) - l0, min(c1, l1) - l0)
    if not (out[0] < out[1] and out[2] < out[3]):
        raise ValueError(f"ROI {tuple(roi)!r} does not overlap the crop {tuple(crop)!r}")
    return out


def crop_frames(frames: np.ndarray, crop: Sequence[int] | None) -> np.ndarray:
    """``frames[..., row0:row1, col0:col1]`` as a C-contiguous copy (``crop=None``: the whole frame).

    Raises:
        ValueError: the crop does not lie inside the frame.
    """
    frames = np.asarray(frames)
    if crop is None:
        return np.ascontiguousarray(frames)
    r0, r1, c0, c1 = as_roi(crop)
    roi_mask(frames.shape[-2:], (r0, r1, c0, c1))  # validates
    return np.ascontiguousarray(frames[..., r0:r1, c0:c1])


def inner_mask(shape: Sequence[int], border: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask excluding ``border = (samples, lines)`` at every edge.

    Raises:
        ValueError: the border leaves no pixel.
    """
    h, w = (int(s) for s in shape)
    by, bx = (int(b) for b in border)
    if by < 0 or bx < 0 or 2 * by >= h or 2 * bx >= w:
        raise ValueError(f"border {border!r} leaves no pixel of the {h} x {w} frame")
    mask = np.zeros((h, w), dtype=bool)
    mask[by : h - by, bx : w - bx] = True
    return mask


def strain_consistency(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation (NCC) of two strain images inside ``mask``, in [-1, 1].

    Identical images (or images differing by a positive scale and offset)
    give 1. Returns NaN when either image is constant inside the mask.

    Raises:
        ValueError: shape mismatch, empty mask, or NaN/Inf inside the mask.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"strain images differ in shape: {a.shape} vs {b.shape}")
    m = np.ones(a.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), a.shape)
    if not m.any():
        raise ValueError("strain_consistency: empty mask")
    x, y = a[m], b[m]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("strain_consistency: NaN or Inf inside the mask")
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return float(np.dot(x, y) / denom) if denom > 0 else math.nan


def relative_difference(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``||a - b|| / (0.5 (||a|| + ||b||))`` inside ``mask``: 0 for identical images (scale-sensitive)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"strain images differ in shape: {a.shape} vs {b.shape}")
    m = np.ones(a.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), a.shape)
    if not m.any():
        raise ValueError("relative_difference: empty mask")
    scale = 0.5 * (np.linalg.norm(a[m]) + np.linalg.norm(b[m]))
    return float(np.linalg.norm(a[m] - b[m]) / scale) if scale > 0 else math.nan


def no_reference_metrics(
    estimate: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    *,
    strain_window: int,
    homogeneous: np.ndarray | None = None,
    target: np.ndarray | None = None,
    background: np.ndarray | None = None,
) -> dict[str, float]:
    """No-reference quality of one displacement estimate (2 x H x W) on one RF pair.

    Args:
        estimate: displacement, channel 0 axial (samples), 1 lateral (lines).
        pre, post: the H x W RF frames it was estimated from.
        strain_window: LS axial strain window (samples).
        homogeneous: bool (H, W) region for SNRe; ``None``: SNRe is NaN.
        target, background: bool (H, W) regions for CNR; ``None``: CNR is NaN.

    Returns:
        ``{"snre", "cnr_db", "warp_ncc", "mean_strain"}`` (``mean_strain``: mean axial
        strain in the homogeneous region, else in the whole frame; negative = compression).
    """
    estimate = np.asarray(estimate, dtype=np.float32)
    if estimate.ndim != 3 or estimate.shape[0] != 2 or estimate.shape[1:] != np.shape(pre):
        raise ValueError(f"estimate must be 2 x H x W matching the frames {np.shape(pre)}, got {estimate.shape}")
    if not np.isfinite(estimate).all():
        raise ValueError("estimate contains NaN or Inf")
    strain = axial_strain(estimate[None], strain_window)[0, 0]
    has_cnr = target is not None and background is not None
    return {
        "snre": float(snre(strain, homogeneous)) if homogeneous is not None else math.nan,
        "cnr_db": float(cnr_db(strain, target, background)) if has_cnr else math.nan,
        "warp_ncc": float(warp_ncc(np.asarray(pre, np.float32)[None, None], np.asarray(post, np.float32)[None, None],
                                   estimate[None])[0]),
        "mean_strain": float(strain[homogeneous].mean()) if homogeneous is not None else float(strain.mean()),
    }


@dataclass
class RealPair:
    """One pre/post pair of real RF frames.

    Attributes:
        name: label, e.g. ``"rf0299_07 0-1"``.
        sequence: sequence (file) it comes from.
        i, j: frame indices of pre and post in that sequence.
        pre, post: float32 H x W RF frames.
    """

    name: str
    sequence: str
    i: int
    j: int
    pre: np.ndarray
    post: np.ndarray


@dataclass
class RealDataRun:
    """Result of :func:`run_on_pairs`.

    Attributes:
        per_pair: one row per (method, pair): ``snre``, ``cnr_db``, ``warp_ncc``,
            ``mean_strain``, ``time_per_frame_ms``.
        consistency: one row per (method, sequence, consecutive pairs): ``strain_consistency``
            (NCC) and ``strain_relative_difference``.
        estimates: ``{method: {pair name: 2 x H x W displacement}}``.
    """

    per_pair: pd.DataFrame
    consistency: pd.DataFrame
    estimates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per method: means of the per-pair metrics (time: median) and of the consistency."""
        cols = ["snre", "cnr_db", "warp_ncc", "mean_strain"]
        table = self.per_pair.groupby("method", sort=False)[cols].mean()
        table["time_per_frame_ms"] = self.per_pair.groupby("method", sort=False)["time_per_frame_ms"].median()
        if len(self.consistency):
            cons = self.consistency.groupby("method", sort=False)[["strain_consistency", "strain_relative_difference"]]
            table = table.join(cons.mean())
        else:
            table["strain_consistency"] = math.nan
            table["strain_relative_difference"] = math.nan
        return table


def consecutive(pairs: Sequence[RealPair]) -> list[tuple[RealPair, RealPair]]:
    """Pairs of pairs ``((i, j), (j, k))`` from the same sequence, in the order given."""
    return [(p, q) for p in pairs for q in pairs if p.sequence == q.sequence and p.j == q.i and p is not q]


def run_on_pairs(
    estimators: dict[str, Estimator],
    pairs: Sequence[RealPair],
    *,
    strain_window: int,
    regions: Callable[[RealPair], dict[str, np.ndarray | None]] | None = None,
    border: tuple[int, int] = (32, 4),
    warmup: bool = True,
) -> RealDataRun:
    """Run every estimator on every pair, score it without reference, and time it.

    Args:
        estimators: ``{method: (pre, post) -> 2 x H x W displacement}``.
        pairs: the RF pairs (all estimators see the same frames).
        strain_window: LS axial strain window (samples).
        regions: ``pair -> {"homogeneous", "target", "background"}`` bool masks (any may be
            missing or ``None``); default: the whole frame inside ``border`` is the
            homogeneous region and no CNR.
        border: margin (samples, lines) excluded from the default region and from the
            strain-consistency comparison (trackers and LS strain are unreliable there).
        warmup: run each estimator once on the first pair before timing (first-call costs
            such as thread pools and allocations are not counted).

    Returns:
        :class:`RealDataRun`; times are wall-clock milliseconds per pair.
    """
    if not pairs:
        raise ValueError("run_on_pairs: no pairs")
    rows, estimates = [], {name: {} for name in estimators}
    for name, fn in estimators.items():
        if warmup:
            fn(pairs[0].pre, pairs[0].post)
        for pair in pairs:
            start = time.perf_counter()
            est = np.asarray(fn(pair.pre, pair.post), dtype=np.float32)
            elapsed_ms = 1e3 * (time.perf_counter() - start)
            if est.shape != (2, *pair.pre.shape):
                raise ValueError(f"{name} returned shape {est.shape} for frames {pair.pre.shape}")
            masks = dict(regions(pair)) if regions is not None else {}
            masks.setdefault("homogeneous", inner_mask(pair.pre.shape, border))
            metrics = no_reference_metrics(est, pair.pre, pair.post, strain_window=strain_window,
                                           homogeneous=masks.get("homogeneous"), target=masks.get("target"),
                                           background=masks.get("background"))
            rows.append({"method": name, "pair": pair.name, "sequence": pair.sequence, **metrics,
                         "time_per_frame_ms": elapsed_ms})
            estimates[name][pair.name] = est
    cons_rows = []
    for name in estimators:
        for p, q in consecutive(pairs):
            sp = axial_strain(estimates[name][p.name][None], strain_window)[0, 0]
            sq = axial_strain(estimates[name][q.name][None], strain_window)[0, 0]
            inner = inner_mask(sp.shape, border)
            cons_rows.append({"method": name, "sequence": p.sequence, "pairs": f"{p.name} / {q.name}",
                              "strain_consistency": strain_consistency(sp, sq, inner),
                              "strain_relative_difference": relative_difference(sp, sq, inner)})
    consistency = pd.DataFrame(cons_rows, columns=["method", "sequence", "pairs", "strain_consistency",
                                                   "strain_relative_difference"])
    return RealDataRun(per_pair=pd.DataFrame(rows), consistency=consistency, estimates=estimates)
