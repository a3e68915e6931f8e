"""Plot helpers with physical axes (mm) for RF-grid images. Arrays are (H, W), H axial."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np


def extent_mm(shape: tuple[int, int], dz_m: float, pitch_m: float) -> list[float]:
    """``imshow`` extent (left, right, bottom, top) in mm for an (H, W) RF-grid image."""
    h, w = shape
    return [0.0, w * pitch_m * 1e3, h * dz_m * 1e3, 0.0]


def show(
    ax: Any,
    image: np.ndarray,
    dz_m: float,
    pitch_m: float,
    title: str = "",
    colorbar: str | None = None,
    **kw: Any,
) -> Any:
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
    fig, axes = plt.subplots(
        len(pairs),
        len(columns),
        figsize=(2.6 * len(columns), row_height * len(pairs)),
        constrained_layout=True,
        squeeze=False,
    )
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
            show(
                axes[row, k],
                strain,
                title=title,
                cmap="gray",
                **limits,
                colorbar="%" if k == len(columns) - 1 else None,
                **geom,
            )
    return fig


def draw_roi(
    ax: Any, roi: Any, dz_m: float, pitch_m: float, origin: tuple[int, int] = (0, 0), **kw: Any
) -> None:
    """Outline ``roi = [row0, row1, col0, col1]`` (samples, lines; relative to ``origin``) on an image
    drawn with :func:`show` (mm axes). ``kw`` go to the rectangle (e.g. ``ec="r"``, ``ls="--"``)."""
    from matplotlib import patches

    r0, r1, c0, c1 = roi
    x, y = (c0 - origin[1]) * pitch_m * 1e3, (r0 - origin[0]) * dz_m * 1e3
    w, h = (c1 - c0) * pitch_m * 1e3, (r1 - r0) * dz_m * 1e3
    ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, lw=1.2, **kw))


def axial_lateral_figure(
    pre: np.ndarray,
    strains: dict[str, tuple[np.ndarray, np.ndarray]],
    dz_m: float,
    pitch_m: float,
    *,
    title: str,
    inner: np.ndarray,
    reference: str | None = None,
    rois: Any = (),
    bmode: Any = None,
) -> Any:
    """B-mode, then per method compressive axial strain (row 1, %) and lateral strain (row 2, %).

    Args:
        pre: H x W RF frame (B-mode panel, through ``bmode``, e.g. :func:`cdpkd.signal.bmode_db`).
        strains: ``{method: (axial, lateral)}`` H x W strain images (dimensionless).
        inner: H x W bool mask of the pixels that set the colour ranges (e.g. without the border).
        reference: the method whose strain sets both rows' ranges (2-98 % axial, symmetric 98 %
            lateral); None or absent: all methods pooled.
        rois: ``[(roi, colour), ...]`` outlined on the B-mode (see :func:`draw_roi`).
    """
    ref = [strains[reference]] if reference in strains else list(strains.values())
    axial = np.concatenate([-100 * a[inner] for a, _ in ref])
    ax_lim = dict(vmin=float(np.percentile(axial, 2)), vmax=float(np.percentile(axial, 98)))
    lat_lim = symmetric_limits(np.concatenate([100 * lat[inner] for _, lat in ref]), 98)
    n = len(strains) + 1
    h, w = pre.shape
    height = 2.3 * h * dz_m / (w * pitch_m) + 0.9
    fig, axes = plt.subplots(
        2, n, figsize=(2.3 * n, 2 * min(height, 6)), constrained_layout=True, squeeze=False
    )
    geom = dict(dz_m=dz_m, pitch_m=pitch_m)
    if bmode is not None:
        show(axes[0, 0], bmode(pre), title=f"{title}\nB-mode (dB)", cmap="gray", **geom)
    for roi, colour in rois:
        draw_roi(axes[0, 0], roi, ec=colour, **geom)
    axes[1, 0].axis("off")
    for k, (name, (a, lat)) in enumerate(strains.items(), start=1):
        last = k == n - 1
        show(
            axes[0, k],
            -100 * a,
            title=f"{name}: axial",
            cmap="gray",
            colorbar="-axial strain (%)" if last else None,
            **ax_lim,
            **geom,
        )
        show(
            axes[1, k],
            100 * lat,
            title=f"{name}: lateral",
            cmap="RdBu_r",
            colorbar="lateral strain (%)" if last else None,
            **lat_lim,
            **geom,
        )
    return fig


METRIC_LABELS = {
    "strain_rmse": "strain RMSE (lower is better)",
    "snre": "SNRe (higher is better)",
    "cnr_db": "CNR, dB (higher is better)",
    "warp_ncc": "warp NCC (higher is better)",
    "disp_rmse_axial": "axial disp. RMSE, samples",
    "disp_rmse_lateral": "lateral disp. RMSE, lines",
}


def ablation_bars(
    summary: Any, metrics: tuple[str, ...], title: str = "", highlight: str | None = None
) -> Any:
    """One bar panel per metric: mean over seeds with ±std error bars, one bar per variant (row of ``summary``,
    the frame of :func:`cdpkd.ablation.summarize`); ``highlight`` names the reference row (drawn darker)."""
    names = list(summary.index)
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(3.2 * len(metrics) + 1, 0.45 * len(names) + 1.6),
        constrained_layout=True,
        squeeze=False,
    )
    y = np.arange(len(names))
    colours = ["C3" if n == highlight else "C0" for n in names]
    for ax, m in zip(axes[0], metrics):
        err = summary[f"{m}_std"].to_numpy(dtype=float) if f"{m}_std" in summary else None
        err = None if err is None or np.isnan(err).all() else np.nan_to_num(err)
        ax.barh(y, summary[m].to_numpy(dtype=float), xerr=err, color=colours, alpha=0.85, capsize=3)
        ax.set_yticks(y, names if ax is axes[0][0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(METRIC_LABELS.get(m, m), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def quality_vs_cost(
    results: Any,
    x: str,
    metrics: tuple[str, ...],
    groups: dict[str, Any],
    reference: dict | None = None,
    xlabel: str | None = None,
) -> Any:
    """Quality against cost, one panel per metric, one line per group of variants.

    Args:
        results: per-variant means (rows of :func:`cdpkd.ablation.summarize`).
        x: cost column (e.g. "gflops").
        groups: label -> row names of ``results`` in that group (a line through their points).
        reference: optional ``{"label": str, x: value, metric: value, ...}`` drawn as a star (the teacher).
        xlabel: axis label of ``x`` (default: the column name).
    """
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.4 * len(metrics), 3.6), constrained_layout=True, squeeze=False
    )
    for ax, m in zip(axes[0], metrics):
        for i, (label, rows) in enumerate(groups.items()):
            part = results.loc[list(rows)].sort_values(x)
            err = part[f"{m}_std"].to_numpy(dtype=float) if f"{m}_std" in part else None
            err = None if err is None or np.isnan(err).all() else np.nan_to_num(err)
            ax.errorbar(part[x], part[m], yerr=err, marker="o", ms=5, capsize=3, color=f"C{i}", label=label)
        if reference is not None:
            ax.plot(
                [reference[x]], [reference[m]], marker="*", ms=12, color="k", ls="", label=reference["label"]
            )
        ax.set(xlabel=xlabel or x, title=METRIC_LABELS.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return fig


def per_pair_scatter(table: Any, methods: list[str], metric: str = "strain_rmse") -> Any:
    """``metric`` of every test pair against its applied strain, one marker colour per method (log y).

    ``table``: the frame of :func:`cdpkd.evaluation.per_pair_table`; pairs are labelled by index so
    the outliers can be found in the table.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    strain = table["applied_strain_pct"].to_numpy(dtype=float)
    for i, name in enumerate(methods):
        ax.plot(strain, table[name].to_numpy(dtype=float), "o", color=f"C{i}", ms=5, alpha=0.8, label=name)
    top = table[methods].max(axis=1).to_numpy(dtype=float)
    for pair, x, y in zip(table.index, strain, top):
        ax.annotate(str(pair), (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6)
    ax.set(xlabel="applied strain (%)", yscale="log", title=METRIC_LABELS.get(metric, metric) + ", per test pair")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
