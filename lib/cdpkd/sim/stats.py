"""Summary statistics of simulated datasets (the table of notebook 00)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from ..signal import envelope_snr
from .dataset import open_dataset


def dataset_summary(path: str | os.PathLike, name: str, max_pairs_for_speckle: int = 4) -> dict[str, object]:
    """One row describing a dataset: sizes, loading, inclusions, motion ranges, speckle.

    Displacement ranges are in samples (axial) and lines (lateral); the
    envelope SNR is measured in background regions of up to
    ``max_pairs_for_speckle`` pre frames (1.91 for fully developed speckle).
    """
    with open_dataset(path) as f:
        n, h, w = f["pre"].shape
        metas = json.loads(f.attrs["pairs_json"])
        strain = f["applied_strain"][:]
        disp = f["displacement"]
        ax_range = [float(disp[i, 0].max() - disp[i, 0].min()) for i in range(n)]
        lat_range = [float(disp[i, 1].max() - disp[i, 1].min()) for i in range(n)]
        snrs = []
        for i in range(min(n, max_pairs_for_speckle)):
            mask = f["labels"][i] == 0
            if mask.sum() > 100:
                snrs.append(envelope_snr(f["pre"][i], mask))
        simulator = str(f.attrs["simulator"])
    ratios = [inc["stiffness_ratio"] for m in metas for inc in m["inclusions"]]
    return {
        "dataset": name,
        "simulator": simulator,
        "pairs": n,
        "frame (samples x lines)": f"{h} x {w}",
        "applied strain %": f"{100 * strain.min():.2f}-{100 * strain.max():.2f}",
        "inclusions / pair": f"{np.mean([m['n_inclusions'] for m in metas]):.2f}",
        "soft / hard inclusions": f"{sum(r < 1 for r in ratios)} / {sum(r > 1 for r in ratios)}",
        "bonded contact": f"{sum(m['contact'] == 'bonded' for m in metas)} / {n}",
        "axial disp. range (samples)": f"{np.min(ax_range):.1f}-{np.max(ax_range):.1f}",
        "lateral disp. range (lines)": f"{np.min(lat_range):.2f}-{np.max(lat_range):.2f}",
        "envelope SNR (bg)": round(float(np.mean(snrs)), 2) if snrs else float("nan"),
    }


def summary_table(datasets: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """:func:`dataset_summary` of several datasets as a DataFrame indexed by name."""
    return pd.DataFrame([dataset_summary(p, name) for name, p in datasets.items()]).set_index("dataset")
