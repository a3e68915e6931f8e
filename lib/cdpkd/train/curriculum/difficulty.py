"""Difficulty of each training pair (higher = harder) and their rank-normalised combination.

Three cues, each a float array over the pairs of a simulated HDF5 dataset
(:mod:`cdpkd.sim.dataset`), in the order of ``indices`` (default: every pair),
so ``scores[i]`` belongs to item ``i`` of ``RFPairDataset(path, indices=indices)``:

``"strain"`` -- :func:`strain_difficulty`
    The applied compression magnitude. Larger strain means larger displacement
    gradients: wider search, more speckle decorrelation, stronger lateral motion
    from incompressibility. Free to compute (stored with the file).
``"decorrelation"`` -- :func:`decorrelation_difficulty`
    ``1 - NCC(pre, post)`` over the whole frame (or a centred crop), without
    motion compensation: how much the speckle changed between the frames, from
    strain, slip, noise and out-of-plane-like effects together. In [0, 2].
``"teacher"`` -- :func:`teacher_confidence_difficulty`
    ``1 - NCC(pre, post warped by the teacher's displacement)``: how badly a
    trained estimator (the teacher, or a classical tracker) explains the pair.
    Needs an ``estimator(pre, post) -> 2 x H x W`` callable. In [0, 2].

The cues have different units and spreads, so :func:`difficulty_scores`
first maps each to [0, 1] by its rank among the pairs (:func:`rank_normalize`;
robust to outliers and to monotone rescaling) and then takes a weighted mean.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...progress import progress


def _open_dataset(path: Path):
    """:func:`cdpkd.sim.open_dataset`, imported on first use (the simulation package is heavy to import)."""
    from ...sim.dataset import open_dataset as _open

    return _open(path)


#: Difficulty cues known to :func:`difficulty_scores`.
KINDS = ("strain", "decorrelation", "teacher")

#: ``estimator(pre, post) -> displacement``: H x W frames in, 2 x H x W (axial samples, lateral lines) out.
Estimator = Callable[[np.ndarray, np.ndarray], Any]


def _pair_indices(path: Path, n: int, indices: Sequence[int] | None) -> list[int]:
    if indices is None:
        return list(range(n))
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < n]
    if bad or not out:
        raise ValueError(f"{path}: indices must be a non-empty subset of 0..{n - 1}, got bad {bad[:5]}")
    return out


def _crop_slices(path: Path, shape: tuple[int, int], crop: tuple[int, int] | None) -> tuple[slice, slice]:
    """Centred crop (height, width) -- the same window as ``RFPairDataset(crop, random_crop=False)``."""
    h, w = shape
    if crop is None:
        return slice(0, h), slice(0, w)
    ch, cw = (int(c) for c in crop)
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f"{path}: crop {tuple(crop)} does not fit frames of {h} x {w}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


def strain_difficulty(path: str | os.PathLike, indices: Sequence[int] | None = None) -> np.ndarray:
    """Applied compression magnitude of each pair (fraction, e.g. 0.01 = 1 %); larger = harder."""
    path = Path(path)
    with _open_dataset(path) as f:
        if "applied_strain" not in f:
            raise ValueError(
                f"{path}: dataset has no 'applied_strain' field, cannot score difficulty by strain"
            )
        strain = np.abs(np.asarray(f["applied_strain"][:], dtype=np.float64))
        idx = _pair_indices(path, f["pre"].shape[0], indices)
    out = strain[idx]
    if not np.isfinite(out).all():
        raise ValueError(f"{path}: applied_strain holds NaN/Inf")
    return out


def decorrelation_difficulty(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    crop: tuple[int, int] | None = None,
) -> np.ndarray:
    """``1 - NCC(pre, post)`` of each pair, without motion compensation; larger = harder.

    Global zero-mean NCC (:func:`cdpkd.metrics.ncc`) over the whole frame or
    the centred ``crop = (height, width)``. Identical frames give 0,
    independent ones about 1. Frames are read one pair at a time.
    """
    from ...metrics import ncc  # imports torch: only when used

    path = Path(path)
    scores = []
    for i, pre, post in _cropped_pairs(path, indices, crop, "decorrelation difficulty"):
        try:
            scores.append(1.0 - float(ncc(pre, post)))
        except ValueError as err:
            raise ValueError(f"{path}: pair {i}: {err}") from err
    return np.asarray(scores, dtype=np.float64)


def _cropped_pairs(path: Path, indices: Sequence[int] | None, crop: tuple[int, int] | None, desc: str):
    """Yield ``(index, pre, post)`` float32 frames (or centred crops) of the chosen pairs, one pair at a time."""
    with _open_dataset(path) as f:
        n, h, w = f["pre"].shape
        idx = _pair_indices(path, n, indices)
        rows, cols = _crop_slices(path, (h, w), crop)
        for i in progress(idx, total=len(idx), desc=desc):
            pre = np.asarray(f["pre"][i, rows, cols], dtype=np.float32)
            yield i, pre, np.asarray(f["post"][i, rows, cols], dtype=np.float32)


def _as_displacement(disp: Any, shape: tuple[int, int], path: Path, i: int) -> np.ndarray:
    if hasattr(disp, "detach"):  # a torch tensor, possibly on the GPU
        disp = disp.detach().float().cpu().numpy()
    d = np.asarray(disp, dtype=np.float64)
    if d.ndim == 4 and d.shape[0] == 1:  # tolerate a batch of one
        d = d[0]
    if d.shape != (2, *shape):
        raise ValueError(
            f"{path}: pair {i}: estimator returned displacement of shape {d.shape}, expected {(2, *shape)} "
            "(axial, lateral) x H x W for the frames it was given"
        )
    if not np.isfinite(d).all():
        raise ValueError(f"{path}: pair {i}: estimator returned NaN/Inf displacement")
    return d


def teacher_confidence_difficulty(
    path: str | os.PathLike,
    estimator: Estimator,
    indices: Sequence[int] | None = None,
    crop: tuple[int, int] | None = None,
    *,
    window: int | tuple[int, int] | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """``1 - warp NCC`` of each pair under a teacher's displacement; larger = harder (teacher less sure).

    For each pair, ``disp = estimator(pre, post)`` on the full frames or the
    centred ``crop``; the post frame is warped back by ``disp`` and compared
    with the pre frame (:func:`cdpkd.metrics.warp_ncc`, pixels sampled from
    outside the post frame excluded). A displacement that explains the pair
    well gives ~0; an estimator that fails gives about the decorrelation score.

    Args:
        estimator: ``(pre, post) -> displacement``; float32 H x W NumPy frames in,
            2 x H x W (axial samples, lateral lines) NumPy array or torch tensor out.
            Wrap a network as e.g. ``lambda a, b: net(t(a), t(b))[0]`` under ``torch.no_grad()``.
        crop: centred (height, width) crop, e.g. a size the network accepts.
        window: ``None`` for the global NCC, or an odd (samples, lines) window for
            the mean local NCC.
        normalize: divide both frames by the pre frame's standard deviation before
            calling the estimator, as :class:`~cdpkd.sim.RFPairDataset` does for
            network inputs (NCC itself is scale-free).
    """
    from ...metrics import warp_ncc  # imports torch: only when used

    if not callable(estimator):
        raise TypeError(
            f"estimator must be a callable (pre, post) -> 2 x H x W displacement, got {estimator!r}"
        )
    path = Path(path)
    scores = []
    for i, pre, post in _cropped_pairs(path, indices, crop, "teacher confidence difficulty"):
        if normalize:
            scale = float(pre.std()) or 1.0
            pre, post = pre / scale, post / scale
        disp = _as_displacement(estimator(pre, post), pre.shape, path, i)
        try:
            score = warp_ncc(
                pre[None, None].astype(np.float64), post[None, None].astype(np.float64), disp[None], window
            )
        except ValueError as err:
            raise ValueError(f"{path}: pair {i}: {err}") from err
        scores.append(1.0 - float(score[0]))
    return np.asarray(scores, dtype=np.float64)


def rank_normalize(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Map values to [0, 1] by rank: smallest -> 0, largest -> 1, ties share their mean rank.

    A single value, or all-equal values, map to 0.5 (no pair is harder than another).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"values hold {int((~np.isfinite(x)).sum())} NaN/Inf entries")
    if x.size == 1:
        return np.full(1, 0.5)
    # average ranks (1-based) of tied values: each run of equal sorted values shares the mean of its positions
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    run_rank = 0.5 * (starts + 1 + ends)  # mean of positions starts+1 .. ends
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return (ranks - 1.0) / (x.size - 1)


def _weights(kinds: tuple[str, ...], weights: Sequence[float] | Mapping[str, float] | None) -> np.ndarray:
    if weights is None:
        w = np.ones(len(kinds))
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(kinds))
        if unknown:
            raise ValueError(f"weights name kinds {unknown} that are not in kinds {kinds}")
        w = np.array([float(weights.get(k, 0.0)) for k in kinds])
    else:
        w = np.asarray([float(v) for v in weights])
        if w.shape != (len(kinds),):
            raise ValueError(f"weights must have one entry per kind {kinds}, got {len(w)}")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {dict(zip(kinds, w.tolist()))}")
    return w


def _resolve_kinds(kinds: Sequence[str] | None, estimator: Estimator | None) -> tuple[str, ...]:
    if kinds is None:
        kinds = (
            ("strain", "decorrelation", "teacher") if estimator is not None else ("strain", "decorrelation")
        )
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct names from {KINDS}, got {kinds}")
    if "teacher" in kinds and estimator is None:
        raise ValueError("kind 'teacher' needs an estimator(pre, post) -> 2 x H x W displacement")
    if estimator is not None and "teacher" not in kinds:
        raise ValueError(f"an estimator was given but 'teacher' is not in kinds {kinds}")
    return kinds


def difficulty_components(
    path: str | os.PathLike,
    kinds: Sequence[str] | None = None,
    estimator: Estimator | None = None,
    *,
    indices: Sequence[int] | None = None,
    crop: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """The raw cue of each kind (see the module docstring), before rank normalisation.

    ``kinds=None`` means ``("strain", "decorrelation")``, plus ``"teacher"`` when
    an ``estimator`` is given.
    """
    kinds = _resolve_kinds(kinds, estimator)
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        if kind == "strain":
            out[kind] = strain_difficulty(path, indices)
        elif kind == "decorrelation":
            out[kind] = decorrelation_difficulty(path, indices, crop)
        else:
            assert estimator is not None
            out[kind] = teacher_confidence_difficulty(path, estimator, indices, crop)
    return out


def combine_difficulties(
    components: Mapping[str, Sequence[float] | np.ndarray],
    weights: Sequence[float] | Mapping[str, float] | None = None,
) -> np.ndarray:
    """Weighted mean of the rank-normalised cues; in [0, 1], higher = harder.

    Args:
        components: cue name -> raw scores (all the same length).
        weights: one per cue (sequence in ``components``' order, or a mapping by
            name; missing names weigh 0); default equal weights.
    """
    kinds = tuple(components)
    if not kinds:
        raise ValueError("no difficulty components to combine")
    w = _weights(kinds, weights)
    ranks = [rank_normalize(components[k]) for k in kinds]
    lengths = {k: len(r) for k, r in zip(kinds, ranks)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"difficulty components have different lengths {lengths}")
    combined = np.tensordot(w / w.sum(), np.stack(ranks), axes=1)
    return np.clip(combined, 0.0, 1.0)


def difficulty_scores(
    path: str | os.PathLike,
    kinds: Sequence[str] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    estimator: Estimator | None = None,
    *,
    indices: Sequence[int] | None = None,
    crop: tuple[int, int] | None = None,
) -> np.ndarray:
    """Difficulty of each pair in [0, 1] (higher = harder): weighted mean of rank-normalised cues.

    Args:
        path: simulated HDF5 dataset.
        kinds: cues from :data:`KINDS`; default ``("strain", "decorrelation")``,
            plus ``"teacher"`` when ``estimator`` is given.
        weights: one weight per kind (sequence) or a mapping kind -> weight; default equal.
        estimator: ``(pre, post) -> 2 x H x W`` displacement for the ``"teacher"`` cue.
        indices: score only these pairs, in this order (default: all).
        crop: centred (height, width) crop for the frame-based cues.

    Returns:
        float64 array of ``len(indices)`` (or the number of pairs). Feed it to
        :class:`~cdpkd.train.curriculum.CurriculumBatches`.
    """
    kinds = _resolve_kinds(kinds, estimator)
    _weights(kinds, weights)  # fail on bad weights before the expensive part
    components = difficulty_components(path, kinds, estimator, indices=indices, crop=crop)
    return combine_difficulties(components, weights)


__all__ = [
    "KINDS",
    "Estimator",
    "combine_difficulties",
    "decorrelation_difficulty",
    "difficulty_components",
    "difficulty_scores",
    "rank_normalize",
    "strain_difficulty",
    "teacher_confidence_difficulty",
]
