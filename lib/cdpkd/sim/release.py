"""Release pairs: a compression pair played backwards (post -> pre), with its ground truth.

The simulator compresses; freehand scanning also releases. Swapping the frames of a
simulated pair gives a release pair whose displacement is the inverse field: with
``post(z + d(z)) = pre(z)`` (the warp convention of :mod:`cdpkd.ops`), the release
field ``r`` satisfies ``pre(y + r(y)) = post(y)``, i.e. ``r(y) = -d(y + r(y))``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from ..artifacts import cached
from .dataset import FILENAME, open_dataset, read_config, read_pair, write_pairs
from .pair import SimulatedPair

RELEASE_VERSION = 2  # part of the cache key of release sets: bump when release_pair changes
# label of release-pair pixels without ground truth: their tissue was outside the compression
# pair's pre frame (near the compressed surface), so the inverse displacement there is an
# extrapolation; metrics leave them out (cdpkd.evaluation)
UNKNOWN_LABEL = 254


def invert_displacement(disp: np.ndarray, *, iterations: int = 50, tol: float = 1e-5) -> np.ndarray:
    """The inverse of a displacement field, by fixed-point iteration ``r <- -d(y + r)``.

    Args:
        disp: (2, H, W) float, axial samples / lateral lines (channel 0 / 1).
        iterations, tol: at most this many iterations; stop when no value moves by more
            than ``tol`` (pixels). Converges for fields with gradients below 1 (strains
            below 100 %); near the frame edges, where ``y + r`` leaves the frame, ``d`` is
            extended by its edge values (the inverse there is an extrapolation).

    Returns:
        (2, H, W) float32.
    """
    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim != 3 or disp.shape[0] != 2:
        raise ValueError(f"disp must be 2 x H x W, got shape {disp.shape}")
    if not np.isfinite(disp).all():
        raise ValueError("disp has non-finite values")
    rows, cols = np.meshgrid(np.arange(disp.shape[1]), np.arange(disp.shape[2]), indexing="ij")
    inverse = -disp
    for _ in range(iterations):
        coords = np.stack((rows + inverse[0], cols + inverse[1]))
        updated = -np.stack([map_coordinates(c, coords, order=1, mode="nearest") for c in disp])
        step = np.abs(updated - inverse).max()
        inverse = updated
        if step < tol:
            break
    return inverse.astype(np.float32)


def moved_to_release(field: np.ndarray, inverse: np.ndarray, order: int = 1) -> np.ndarray:
    """A map in the compression pair's pre-frame coordinates (H, W) moved to the release pair's
    pre frame (the old post): ``m_new(y) = m(y + r(y))`` with ``inverse`` = r, (2, H, W);
    ``order`` 0 (nearest, for labels) or 1 (bilinear)."""
    coords = _source_coords(inverse)
    return map_coordinates(field, coords, order=order, mode="nearest").astype(field.dtype)


def _source_coords(inverse: np.ndarray) -> np.ndarray:
    """(2, H, W) positions y + r(y) in the compression pair's pre frame."""
    h, w = inverse.shape[-2:]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack((rows + inverse[0], cols + inverse[1]))


def released_labels(labels: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """``labels`` moved to the release pair's pre frame (nearest), :data:`UNKNOWN_LABEL` where
    y + r(y) falls outside the compression pair's frame (no ground truth there)."""
    moved = moved_to_release(labels, inverse, order=0)
    coords = _source_coords(inverse)
    outside = ((coords[0] < 0) | (coords[0] > labels.shape[0] - 1)
               | (coords[1] < 0) | (coords[1] > labels.shape[1] - 1))
    moved[outside] = UNKNOWN_LABEL
    return moved


def release_pair(pair: SimulatedPair) -> SimulatedPair:
    """``pair`` played backwards: frames swapped, the inverse displacement, and the maps that live
    in the pre frame's coordinates moved to the new pre frame (:func:`moved_to_release`; labels
    nearest, :data:`UNKNOWN_LABEL` where the truth is unknown; stiffness and echogenicity
    bilinear)."""
    inverse = invert_displacement(pair.displacement)
    return dataclasses.replace(
        pair,
        pre=pair.post,
        post=pair.pre,
        displacement=inverse,
        stiffness=moved_to_release(pair.stiffness, inverse),
        echogenicity=moved_to_release(pair.echogenicity, inverse),
        labels=released_labels(pair.labels, inverse),
        meta={**pair.meta, "release": True},
    )


def ensure_release_set(root: str | os.PathLike, source: str | os.PathLike) -> Path:
    """Path of the release set of the simulated dataset ``source`` (every pair through
    :func:`release_pair`, same order, seeds and config), built under the artifact root ``root``
    (kind ``sim_release``, keyed by the source's artifact folder) only if missing."""
    source = Path(source)
    with open_dataset(source) as f:
        seeds = [int(s) for s in f["seed"][:]]
        base_seed = int(f.attrs["base_seed"])
    params = {"source": f"{source.parent.parent.name}/{source.parent.name}/{source.name}", "version": RELEASE_VERSION}

    def build(folder: Path) -> None:
        pairs = (release_pair(read_pair(source, i)) for i in range(len(seeds)))
        write_pairs(folder / FILENAME, pairs, read_config(source), seeds, base_seed, desc=f"releasing {source.parent.name}")

    return cached(root, "sim_release", params, build) / FILENAME
