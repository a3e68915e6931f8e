"""Probe-frame pairs: a simulated pair seen from a probe that moved with the compression.

The simulator holds the bottom of the phantom still and compresses it from the top, so its
frames are in the coordinates of the bottom: tissue near the compressed surface moves deeper
by a *positive* axial displacement of up to strain x depth (8-46 samples on the cpu profile's
frames). A hand-held probe is the compressor: it moves down with the surface, and its frames
are in its own coordinates, where tissue at the surface stays put and deeper tissue comes
toward the probe (negative displacements, the same strain). Real RF data is probe-frame data.

A probe-frame pair re-reads the post frame ``s`` rows deeper, ``s`` the compressed surface's
axial displacement rounded to a whole sample (the mean of the first row's ground truth):
``post'(y) = post(y + s)``, so ``post'(y + d(y) - s) = pre(y)``: the displacement is
``d - s``. Both frames are cut to the rows every pair of a set still covers (``s`` rows fewer
at the bottom for the largest ``s``), so a set keeps one frame size.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ..artifacts import cached
from .dataset import FILENAME, open_dataset, read_config, read_pair, write_pairs
from .pair import SimulatedPair

PROBE_FRAME_VERSION = 1  # part of the cache key of probe-frame sets: bump when probe_frame_pair changes


def surface_shift(displacement: np.ndarray) -> int:
    """The compressed surface's axial displacement in whole samples: the mean of the first row
    of ``displacement`` (2 x H x W, axial samples in channel 0), rounded."""
    displacement = np.asarray(displacement)
    if displacement.ndim != 3 or displacement.shape[0] != 2:
        raise ValueError(f"displacement must be 2 x H x W, got shape {displacement.shape}")
    top = float(displacement[0, 0].mean())
    if not np.isfinite(top):
        raise ValueError("displacement has non-finite values in its first row")
    return int(round(top))


def probe_frame_pair(pair: SimulatedPair, shift: int, rows: tuple[int, int]) -> SimulatedPair:
    """``pair`` in the probe's coordinates (module docstring): pre-frame rows ``rows`` =
    (first, end) of the pre frame and its maps, post-frame rows shifted by ``shift`` samples,
    axial displacement minus ``shift``. Raises ValueError when the shifted rows leave the post
    frame."""
    first, end = rows
    height = pair.pre.shape[0]
    if not (0 <= first < end <= height and 0 <= first + shift and end + shift <= height):
        raise ValueError(f"rows {rows} shifted by {shift} do not fit a frame of {height} rows")
    displacement = pair.displacement[:, first:end].copy()
    displacement[0] -= shift
    return dataclasses.replace(
        pair,
        pre=pair.pre[first:end].copy(),
        post=pair.post[first + shift : end + shift].copy(),
        displacement=displacement,
        stiffness=pair.stiffness[first:end].copy(),
        echogenicity=pair.echogenicity[first:end].copy(),
        labels=pair.labels[first:end].copy(),
        meta={**pair.meta, "probe_shift": int(shift), "rows": [int(first), int(end)]},
    )


def common_rows(shifts: list[int], height: int) -> tuple[int, int]:
    """Pre-frame rows (first, end) that every shift keeps inside a ``height``-row post frame."""
    first, end = max(0, -min(shifts)), height - max(0, max(shifts))
    if end - first < 1:
        raise ValueError(f"shifts {min(shifts)}..{max(shifts)} leave no rows of a {height}-row frame")
    return first, end


def ensure_probe_frame_set(root: str | os.PathLike, source: str | os.PathLike) -> Path:
    """Path of the probe-frame set of the simulated dataset ``source`` (every pair through
    :func:`probe_frame_pair` with its own :func:`surface_shift`, all cut to the
    :func:`common_rows`), built under the artifact root ``root`` (kind ``sim_probe_frame``, keyed
    by the source's artifact folder) only if missing."""
    source = Path(source)
    with open_dataset(source) as f:
        seeds = [int(s) for s in f["seed"][:]]
        base_seed = int(f.attrs["base_seed"])
        shifts = [surface_shift(f["displacement"][i, :, :1]) for i in range(len(seeds))]
        height = int(f["pre"].shape[1])
    params = {"source": f"{source.parent.parent.name}/{source.parent.name}/{source.name}",
              "version": PROBE_FRAME_VERSION}
    rows = common_rows(shifts, height)

    def build(folder: Path) -> None:
        config = read_config(source)
        imaging = dataclasses.replace(config.imaging, n_samples=rows[1] - rows[0])
        pairs = (probe_frame_pair(read_pair(source, i), shifts[i], rows) for i in range(len(seeds)))
        write_pairs(folder / FILENAME, pairs, dataclasses.replace(config, imaging=imaging), seeds, base_seed,
                    desc=f"probe frame of {source.parent.name}")

    return cached(root, "sim_probe_frame", params, build) / FILENAME
