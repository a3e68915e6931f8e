"""Plot helpers with physical axes (mm) for RF-grid images. Arrays are (H, W), H axial."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def extent_mm(shape: tuple[int, int], dz_m: float, pitch_m: float) -> list[float]:
    """``imshow`` extent (left, right, bottom, top) in mm for an (H, W) RF-grid image."""
    h, w = shape
    return [0.0, w * pitch_m * 1e3, h * dz_m * 1e3, 0.0]


def show(ax: Any, image: np.ndarray, dz_m: float, pitch_m: float, title: str = "", colorbar: str | None = None, **kw: Any) -> Any:
    """``imshow`` an RF-grid image with depth/lateral axes in mm; optional labelled colour bar."""
    kw.setdefault("aspect", "equal")
    kw.setdefault("interpolation", "nearest")
    im = ax.imshow(image, extent=extent_mm(image.shape, dz_m, pitch_m), **kw)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("lateral (mm)", fontsize=8)
    ax.set_ylabel("depth (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    if colorbar is not None:
        bar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label(colorbar, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return im


def symmetric_limits(image: np.ndarray, percentile: float = 99.0) -> dict[str, float]:
    """``vmin``/``vmax`` symmetric around 0 at the given percentile of |image|."""
    v = float(np.percentile(np.abs(image), percentile)) or 1.0
    return {"vmin": -v, "vmax": v}


def strain_grid(
    pairs: list[Any],
    estimates: dict[str, list[np.ndarray]],
    strain_window: int,
    dz_m: float,
    pitch_m: float,
    *,
    rmse: dict[str, list[float]] | None = None,
    bmode: Any = None,
    labels: list[str] | None = None,
) -> Any:
    """Figure: per pair (rows) B-mode, ground-truth and each method's compressive strain -eps_axial (%).

    Args:
        pairs: simulated pairs (:func:`cdpkd.sim.read_pair`), one row each.
        estimates: ``{method: [2 x H x W displacement per pair]}`` (samples / lines), aligned with ``pairs``.
        strain_window: LS strain window (samples), the same for every method.
        dz_m, pitch_m: axial sample spacing and line pitch (m) for the mm axes.
        rmse: optional ``{method: [strain RMSE per pair]}`` shown in the titles.
        bmode: ``frame -> dB image`` (e.g. :func:`cdpkd.signal.bmode_db`); None: no B-mode column.
        labels: row labels (e.g. "test 3"), prefixed to the first column's title.

    All strain panels of a row share the ground truth's 1-99 % colour range.
    """
    from .metrics import axial_strain

    methods = list(estimates)
    columns = (["B-mode"] if bmode is not None else []) + ["ground truth"] + methods
    h, w = pairs[0].pre.shape
    row_height = 2.4 * h * dz_m / (w * pitch_m) + 0.8
    fig, axes = plt.subplots(len(pairs), len(columns), figsize=(2.6 * len(columns), row_height * len(pairs)),
                             constrained_layout=True, squeeze=False)
    geom = dict(dz_m=dz_m, pitch_m=pitch_m)
    for row, pair in enumerate(pairs):
        prefix = f"{labels[row]}: " if labels else ""
        truth = -100 * axial_strain(pair.displacement[None], strain_window)[0, 0]
        limits = dict(vmin=float(np.percentile(truth, 1)), vmax=float(np.percentile(truth, 99)))
        col = 0
        if bmode is not None:
            show(axes[row, 0], bmode(pair.pre), title=f"{prefix}B-mode (dB)", cmap="gray", **geom)
            col, prefix = 1, ""
        show(axes[row, col], truth, title=f"{prefix}ground truth", cmap="gray", **limits, **geom)
        for k, name in enumerate(methods, start=col + 1):
            strain = -100 * axial_strain(estimates[name][row][None], strain_window)[0, 0]
            title = name if rmse is None else f"{name} (RMSE {100 * rmse[name][row]:.3f} %)"
            show(axes[row, k], strain, title=title, cmap="gray", **limits,
                 colorbar="%" if k == len(columns) - 1 else None, **geom)
    return fig
