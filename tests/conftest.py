"""Shared pytest setup: quiet progress bars, small simulation configs."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

# nbval's kernels and papermill inherit this: no progress bars in test logs
os.environ.setdefault("CDPKD_PROGRESS", "0")


def pytest_configure(config: pytest.Config) -> None:
    """Torch on one intra-op thread for the whole session, set before collection so that a test runs
    the same whether alone or in the full suite: the tests' tensors are tiny, and OpenMP thread
    hand-offs on a busy 2-core runner cost more (~20 ms per op) than the maths. A test that needs
    another count sets it and restores it (tests/test_training_fingerprint.py pins one thread itself,
    as the recorded digests were made)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def small_config():
    """A tiny but physical simulation config (256 x 32 grid, 3 inclusions max)."""
    from cdpkd.sim import ImagingConfig, SimulationConfig

    return SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))


@pytest.fixture
def load_benchmark():
    """``load_benchmark(name)``: the script ``benchmarks/<name>.py`` imported as a module (the
    benchmarks are scripts, not a package)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def cpp_compiler() -> str:
    """The C++ compiler TorchInductor uses on the CPU (``torch.compile``); skips the test without one."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    pytest.skip("torch.compile on the CPU needs a C++ compiler (g++ / clang++), none found")
