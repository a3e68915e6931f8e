"""Evaluate displacement estimators on a simulated test set against ground truth.

An *estimator* is any callable ``(pre, post) -> displacement`` taking two
H x W RF frames (NumPy float32) and returning a 2 x H x W displacement
(axial samples, lateral lines), so networks and classical trackers are
compared on exactly the same footing. Metric names follow DESIGN.md
section 4: ``disp_rmse_axial``, ``disp_rmse_lateral`` (samples / lines),
``strain_rmse`` (dimensionless), ``snre`` (axial strain, background ROI),
``cnr_db`` (inclusion vs background), ``warp_ncc`` and ``time_per_frame_ms``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.ndimage import binary_dilation

from .metrics import axial_strain, cnr_db, disp_rmse, snre, strain_rmse, warp_ncc
from .realdata import inner_mask
from .sim import read_metas, read_pair
from .sim.dataset import open_dataset
from .sim.release import UNKNOWN_LABEL

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]
METRICS = ("disp_rmse_axial", "disp_rmse_lateral", "strain_rmse", "snre", "cnr_db", "warp_ncc", "time_per_frame_ms")


@dataclass
class Evaluation:
    """Per-pair metrics, their means per method, and the estimates kept for figures.

    Attributes:
        per_pair: one row per (method, pair) with the metric columns.
        summary: metric means per method (CNR over pairs with an inclusion).
        estimates: ``{method: {pair index: 2 x H x W displacement}}`` for the kept pairs.
    """

    per_pair: pd.DataFrame
    summary: pd.DataFrame
    estimates: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)


def scored_mask(labels: np.ndarray, border: tuple[int, int], strain_window: int) -> np.ndarray:
    """H x W bool: the pixels every metric is computed on.

    Pixels within ``border`` (samples, lines) of the frame edge are excluded: trackers
    and networks are unreliable where the search window leaves the frame, and so is the
    LS strain. So are release-pair pixels without ground truth
    (:data:`cdpkd.sim.release.UNKNOWN_LABEL`) and those within half a strain window of
    them (the true strain there mixes in the extrapolation).
    """
    unknown = binary_dilation(labels == UNKNOWN_LABEL, np.ones((2 * (strain_window // 2) + 1, 1), bool))
    return inner_mask(labels.shape, border) & ~unknown


def pair_metrics(
    estimate: np.ndarray,
    truth: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    labels: np.ndarray,
    *,
    strain_window: int,
    border: tuple[int, int],
) -> dict[str, float]:
    """Quality metrics of one estimate (2 x H x W) against ground truth and the RF pair,
    on the pixels of :func:`scored_mask`."""
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate shape {estimate.shape} differs from ground truth {truth.shape}")
    if not np.isfinite(estimate).all():
        raise ValueError("estimate contains NaN or Inf")
    inner = scored_mask(labels, border, strain_window)
    rmse = disp_rmse(estimate[None], truth[None], inner)
    strain = axial_strain(estimate[None], strain_window)[0, 0]
    background = inner & (labels == 0)
    inclusion = inner & (labels > 0) & (labels < UNKNOWN_LABEL)
    has_roi = background.sum() > 50 and inclusion.sum() > 50
    return {
        "disp_rmse_axial": float(rmse.axial[0]),
        "disp_rmse_lateral": float(rmse.lateral[0]),
        "strain_rmse": float(strain_rmse(estimate[None], truth[None], strain_window, inner)[0]),
        "snre": float(snre(strain, background)) if background.sum() > 50 else math.nan,
        "cnr_db": float(cnr_db(strain, inclusion, background)) if has_roi else math.nan,
        "warp_ncc": float(warp_ncc(pre[None, None], post[None, None], estimate[None])[0]),
    }


def evaluate_estimators(
    estimators: dict[str, Estimator],
    dataset: str | os.PathLike,
    *,
    strain_window: int = 31,
    border: tuple[int, int] = (32, 4),
    max_pairs: int | None = None,
    keep: tuple[int, ...] = (),
) -> Evaluation:
    """Run every estimator on every pair of ``dataset`` and score it.

    Args:
        estimators: ``{method name: estimator}``.
        dataset: HDF5 test set from :mod:`cdpkd.sim`.
        strain_window: LS strain window in samples.
        border: excluded margin (samples, lines).
        max_pairs: evaluate only the first pairs.
        keep: pair indices whose estimates are returned for figures.
    """
    with open_dataset(dataset) as f:
        n_pairs = f["pre"].shape[0]
    n_pairs = min(n_pairs, max_pairs or n_pairs)
    rows = []
    estimates: dict[str, dict[int, np.ndarray]] = {name: {} for name in estimators}
    for index in range(n_pairs):
        pair = read_pair(dataset, index)
        for name, estimate_fn in estimators.items():
            start = time.perf_counter()
            estimate = np.asarray(estimate_fn(pair.pre, pair.post), dtype=np.float32)
            elapsed = time.perf_counter() - start
            if estimate.shape != pair.displacement.shape:
                raise ValueError(f"{name} returned shape {estimate.shape}, expected {pair.displacement.shape}")
            metrics = pair_metrics(
                estimate, pair.displacement, pair.pre, pair.post, pair.labels, strain_window=strain_window, border=border
            )
            rows.append({"method": name, "pair": index, **metrics, "time_per_frame_ms": 1e3 * elapsed})
            if index in keep:
                estimates[name][index] = estimate
    per_pair = pd.DataFrame(rows)
    summary = per_pair.groupby("method", sort=False)[list(METRICS)].mean()
    return Evaluation(per_pair=per_pair, summary=summary, estimates=estimates)


def per_pair_table(evaluation: Evaluation, dataset: str | os.PathLike, metric: str = "strain_rmse") -> pd.DataFrame:
    """One row per test pair: its applied strain (%), number of inclusions and ``metric`` of every method.

    The mean in :attr:`Evaluation.summary` can be dominated by a few pairs; this
    table shows which (index ``pair``; one column per method, in evaluation order).
    """
    if metric not in evaluation.per_pair:
        raise ValueError(f"per_pair_table: unknown metric {metric!r}; have {list(evaluation.per_pair.columns)}")
    methods = list(dict.fromkeys(evaluation.per_pair["method"]))
    table = evaluation.per_pair.pivot(index="pair", columns="method", values=metric)[methods]
    table.columns.name = None
    all_metas = read_metas(dataset)
    metas = [all_metas[int(i)] for i in table.index]
    table.insert(0, "applied_strain_pct", [100.0 * float(m["applied_strain"]) for m in metas])
    table.insert(1, "inclusions", [int(m["n_inclusions"]) for m in metas])
    return table
