"""The simulated datasets of the study, built from notebook parameters.

Every notebook that needs simulated data declares the same parameters
(grid, pulse, sizes, seed) and calls :func:`study_datasets`; the artifact
cache makes the first caller build them and every later caller reuse them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .dataset import ensure_dataset
from .imaging import ImagingConfig
from .pair import SimulationConfig
from .pulse_variation import PulseRanges

# Base-seed offsets keep train, test and SIMUS sets disjoint for the same study seed.
TEST_SEED_OFFSET = 1_000_000
SIMUS_SEED_OFFSET = 2_000_000


def simulation_config(
    *,
    n_samples: int,
    n_lines: int,
    fs_mhz: float = 40.0,
    fc_mhz: float = 5.0,
    pitch_mm: float = 0.2,
    snr_db: float | None = 30.0,
    strain_min: float = 0.005,
    strain_max: float = 0.03,
    simulator: str = "convolution",
    pulse_ranges: Mapping[str, Any] | None = None,
) -> SimulationConfig:
    """A :class:`SimulationConfig` from notebook-style parameters (MHz, mm, fractions).

    ``pulse_ranges``: per-pair draws as JSON-style ranges in the config's own units, e.g.
    ``{"fc_hz": [3.5e6, 6.5e6], "snr_db": [15, 40]}`` (:class:`~cdpkd.sim.pulse_variation.PulseRanges`);
    None (the default) keeps every pair at the pulse above and the sets' cache keys unchanged.
    """
    imaging = ImagingConfig(
        n_samples=int(n_samples),
        n_lines=int(n_lines),
        fs_hz=float(fs_mhz) * 1e6,
        fc_hz=float(fc_mhz) * 1e6,
        pitch_m=float(pitch_mm) * 1e-3,
        snr_db=None if snr_db is None else float(snr_db),
    )
    return SimulationConfig(imaging=imaging, strain_range=(float(strain_min), float(strain_max)), simulator=simulator,
                            pulse_ranges=PulseRanges.from_dict(pulse_ranges))


def ensure_test_set(
    data_dir: str | os.PathLike, config: SimulationConfig, n_test: int, seed: int, *, workers: int | None = None
) -> Path:
    """Path of the simulated test set of study seed ``seed`` (its pairs seeded apart from the training
    set's by :data:`TEST_SEED_OFFSET`), built if missing. With another ``config`` (e.g. a scaled strain
    range) the same seeds give the same phantoms under that config."""
    return ensure_dataset(data_dir, config, n_test, seed + TEST_SEED_OFFSET, workers=workers, name="sim_test")


def study_datasets(
    data_dir: str | os.PathLike,
    *,
    seed: int,
    n_train: int,
    n_test: int,
    config: SimulationConfig,
    simus_pairs: int = 0,
    simus_config: SimulationConfig | None = None,
    workers: int | None = None,
) -> dict[str, Path]:
    """Paths of the train, test (and optional SIMUS) HDF5 datasets, built if missing.

    Returns:
        ``{"train": path, "test": path}`` plus ``"simus"`` when ``simus_pairs > 0``.
    """
    paths = {
        "train": ensure_dataset(data_dir, config, n_train, seed, workers=workers, name="sim_train"),
        "test": ensure_test_set(data_dir, config, n_test, seed, workers=workers),
    }
    if simus_pairs > 0:
        if simus_config is None or simus_config.simulator != "simus":
            raise ValueError("simus_pairs > 0 needs a simus_config with simulator='simus'")
        paths["simus"] = ensure_dataset(
            data_dir, simus_config, simus_pairs, seed + SIMUS_SEED_OFFSET, workers=workers, name="sim_simus"
        )
    return paths


def notebook_simulation_config(params: Mapping[str, Any]) -> SimulationConfig:
    """The training/test :func:`simulation_config` of the notebooks' parameters (e.g.
    :func:`cdpkd.pipeline.resolved_parameters`); ``pulse_ranges`` is optional (no notebook declares it)."""
    return simulation_config(
        n_samples=params["n_samples"], n_lines=params["n_lines"], fs_mhz=params["fs_mhz"], fc_mhz=params["fc_mhz"],
        pitch_mm=params["pitch_mm"], snr_db=params["snr_db"], strain_min=params["strain_min"],
        strain_max=params["strain_max"], pulse_ranges=params.get("pulse_ranges"),
    )


def notebook_datasets(data_dir: str | os.PathLike, params: Mapping[str, Any], *, workers: int | None = None) -> dict[str, Path]:
    """:func:`study_datasets` (train and test) from the notebooks' parameters (e.g.
    :func:`cdpkd.pipeline.resolved_parameters`), so scripts reuse the notebooks' cached datasets.
    ``workers`` defaults to the parameters' own."""
    return study_datasets(data_dir, seed=params["seed"], n_train=params["n_train"], n_test=params["n_test"],
                          config=notebook_simulation_config(params),
                          workers=params["workers"] if workers is None else workers)
