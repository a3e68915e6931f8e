"""Simulated datasets in HDF5: generation (parallel over seeds), reading, validation.

File layout (``format = "cdpkd.sim_dataset"``, version 1), N pairs of H x W:

==================  ===============  ==============================================
dataset             shape, dtype     content
==================  ===============  ==============================================
``pre``, ``post``   (N, H, W) f4     RF frames before / after compression
``displacement``    (N, 2, H, W) f4  ground truth; axial samples, lateral lines
``stiffness``       (N, H, W) f4     relative Young's modulus
``echogenicity``    (N, H, W) f4     relative scatterer strength
``labels``          (N, H, W) u1     0 background, k inclusion k, 255 edge band (254: no truth, release sets)
``seed``            (N,) u4          seed of each pair
``applied_strain``  (N,) f8          compression magnitude (fraction)
``lateral_slip_m``  (N,) f8          lateral slip (m)
==================  ===============  ==============================================

Root attributes: ``fs_hz``, ``fc_hz``, ``c_m_s``, ``pitch_m``, ``dz_m``,
``simulator``, ``base_seed``, ``config_json`` (the full
:class:`~cdpkd.sim.pair.SimulationConfig`) and ``pairs_json`` (per-pair
metadata: contact model, inclusions). Pair ``i`` of a dataset with base seed
``B`` uses seed :func:`pair_seed` ``(B, i)``, independent of N and of the
number of workers, so files are byte-identical for the same parameters.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from ..artifacts import cached
from ..atomic import atomic_path
from ..progress import progress
from .pair import SimulatedPair, SimulationConfig, simulate_pair

FORMAT = "cdpkd.sim_dataset"
FORMAT_VERSION = 1
# Bump when the simulator's output changes for the same parameters: cached datasets are keyed by it.
SIMULATOR_VERSION = 1
FILENAME = "pairs.h5"
_FRAME_FIELDS = ("pre", "post", "stiffness", "echogenicity")


def pair_seed(base_seed: int, index: int) -> int:
    """Seed of pair ``index`` in a dataset with ``base_seed`` (32-bit, via SeedSequence)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1, np.uint32)[0])


def _iter_pairs(config: SimulationConfig, seeds: list[int], workers: int) -> Iterator[SimulatedPair]:
    if workers <= 1 or len(seeds) <= 1:
        for seed in seeds:
            yield simulate_pair(config, seed)
        return
    # spawn, not fork: a Jupyter kernel or torch may hold threads that fork would copy mid-state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(simulate_pair, [config] * len(seeds), seeds)


def write_dataset(
    path: str | os.PathLike,
    config: SimulationConfig,
    n_pairs: int,
    base_seed: int,
    *,
    workers: int | None = None,
    desc: str | None = None,
) -> Path:
    """Simulate ``n_pairs`` pairs and write them atomically to ``path`` (HDF5).

    Args:
        workers: processes to simulate in parallel (default: all cores, at most ``n_pairs``).
        desc: label of the progress bar.
    """
    if not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    if not isinstance(base_seed, (int, np.integer)) or base_seed < 0:
        raise ValueError(f"base_seed must be a non-negative integer, got {base_seed!r}")
    workers = min(n_pairs, os.cpu_count() or 1) if workers is None else int(workers)
    seeds = [pair_seed(base_seed, i) for i in range(n_pairs)]
    pairs = _iter_pairs(config, seeds, workers)
    return write_pairs(path, pairs, config, seeds, base_seed, desc=desc or f"simulating {Path(path).name}")


def write_pairs(
    path: str | os.PathLike,
    pairs: Iterable[SimulatedPair],
    config: SimulationConfig,
    seeds: list[int],
    base_seed: int,
    *,
    desc: str,
) -> Path:
    """Write ``pairs`` (one per seed in ``seeds``, made with ``config``) atomically to ``path`` (HDF5)."""
    n_pairs = len(seeds)
    img = config.imaging
    shape = (n_pairs, img.n_samples, img.n_lines)
    metas = []
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w", track_order=False) as f:
        chunk = (1, img.n_samples, img.n_lines)
        opts = {"track_times": False}
        for name in _FRAME_FIELDS:
            f.create_dataset(name, shape, dtype="f4", chunks=chunk, **opts)
        f.create_dataset("displacement", (n_pairs, 2, *shape[1:]), dtype="f4", chunks=(1, 2, *shape[1:]), **opts)
        f.create_dataset("labels", shape, dtype="u1", chunks=chunk, compression="gzip", **opts)
        for i, pair in enumerate(progress(pairs, total=n_pairs, desc=desc)):
            for name in (*_FRAME_FIELDS, "displacement", "labels"):
                f[name][i] = getattr(pair, name)
            metas.append(pair.meta)
        if len(metas) != n_pairs:
            raise ValueError(f"{path}: got {len(metas)} pairs for {n_pairs} seeds")
        f.create_dataset("seed", data=np.array(seeds, dtype="u4"), **opts)
        f.create_dataset("applied_strain", data=np.array([m["applied_strain"] for m in metas]), **opts)
        f.create_dataset("lateral_slip_m", data=np.array([m["lateral_slip_m"] for m in metas]), **opts)
        f.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "simulator_version": SIMULATOR_VERSION,
                "simulator": config.simulator,
                "fs_hz": img.fs_hz,
                "fc_hz": img.fc_hz,
                "c_m_s": img.c_m_s,
                "pitch_m": img.pitch_m,
                "dz_m": img.dz_m,
                "base_seed": int(base_seed),
                "config_json": json.dumps(config.to_dict(), sort_keys=True),
                "pairs_json": json.dumps(metas, sort_keys=True),
            }
        )
    return Path(path)


def ensure_dataset(
    root: str | os.PathLike,
    config: SimulationConfig,
    n_pairs: int,
    base_seed: int,
    *,
    workers: int | None = None,
    name: str = "sim_dataset",
) -> Path:
    """Path of the HDF5 dataset made from these parameters, simulating it only if missing.

    The cache key covers the full config, ``n_pairs``, ``base_seed`` and
    ``SIMULATOR_VERSION`` (not ``workers``, which does not change the bytes).
    """
    params = {
        "config": config.to_dict(),
        "n_pairs": int(n_pairs),
        "base_seed": int(base_seed),
        "simulator_version": SIMULATOR_VERSION,
    }

    def build(folder: Path) -> None:
        write_dataset(folder / FILENAME, config, n_pairs, base_seed, workers=workers, desc=name)

    return cached(root, name, params, build) / FILENAME


def open_dataset(path: str | os.PathLike) -> h5py.File:
    """Open a simulated dataset read-only after checking its format; raises ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err
    problems = []
    if f.attrs.get("format") != FORMAT:
        problems.append(f"format attribute is {f.attrs.get('format')!r}, expected {FORMAT!r}")
    elif int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
        problems.append(f"format_version {f.attrs.get('format_version')} is not {FORMAT_VERSION}")
    else:
        missing = [k for k in (*_FRAME_FIELDS, "displacement", "labels", "seed") if k not in f]
        if missing:
            problems.append(f"missing datasets {missing}")
        else:
            n, h, w = f["pre"].shape
            if f["post"].shape != (n, h, w) or f["displacement"].shape != (n, 2, h, w):
                problems.append(
                    f"inconsistent shapes pre {f['pre'].shape}, post {f['post'].shape}, "
                    f"displacement {f['displacement'].shape}"
                )
    if problems:
        f.close()
        raise ValueError(f"{path}: not a valid cdpkd simulated dataset: " + "; ".join(problems))
    return f


def read_config(path: str | os.PathLike) -> SimulationConfig:
    """The simulation config a dataset was made with."""
    with open_dataset(path) as f:
        return SimulationConfig.from_dict(json.loads(f.attrs["config_json"]))


def read_metas(path: str | os.PathLike) -> list[dict]:
    """Every pair's metadata (applied strain, inclusions, seeds, ...), in pair order, without the frames."""
    with open_dataset(path) as f:
        return json.loads(f.attrs["pairs_json"])


def read_pair(path: str | os.PathLike, index: int) -> SimulatedPair:
    """Load pair ``index`` of a dataset (whole frames)."""
    with open_dataset(path) as f:
        n = f["pre"].shape[0]
        if not 0 <= index < n:
            raise IndexError(f"{path}: pair index {index} out of range for {n} pairs")
        metas = json.loads(f.attrs["pairs_json"])
        fields = {name: f[name][index] for name in (*_FRAME_FIELDS, "displacement", "labels")}
    return SimulatedPair(meta=metas[index], **fields)
