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
