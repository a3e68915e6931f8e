"""Shared pytest setup: quiet progress bars, small simulation configs."""

from __future__ import annotations

import os

import pytest

# nbval's kernels and papermill inherit this: no progress bars in test logs
os.environ.setdefault("CDPKD_PROGRESS", "0")


@pytest.fixture
def small_config():
    """A tiny but physical simulation config (256 x 32 grid, 3 inclusions max)."""
    from cdpkd.sim import ImagingConfig, SimulationConfig

    return SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
