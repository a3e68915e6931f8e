"""Run context: seeding, git revision, device and library versions.

Every result file and checkpoint records where it came from; these helpers
collect that provenance in one place.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a fresh NumPy Generator."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)  # noqa: NPY002 - seeds third-party code that uses the legacy global RNG
    try:
        import torch

        torch.manual_seed(int(seed))
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return np.random.default_rng(int(seed))


# the project's own committed outputs (notebook results and figures, study and benchmark results)
OUTPUT_PATHS = ("results", "figures", "studies/results", "benchmarks/results")


@lru_cache(maxsize=1)
def git_sha(short: bool = False) -> str:
    """The current commit of the repository (with ``-dirty`` if it has local changes).

    Changes under :data:`OUTPUT_PATHS` do not count: they are what the pipeline, the studies
    and the benchmarks write (a full run rewrites results of earlier notebooks before the
    later ones start; one benchmark run rewrites a file the next one does not read), not code.
    The environment variable ``CDPKD_GIT_SHA``, when set, is returned as is: it names the
    commit of a copied tree whose sender vouches for it (e.g. the tree sent to a lent GPU
    machine, whose ``.git``, if it comes along, may be an older one than its files). Outside
    a git checkout and without it: ``"unknown"`` (e.g. an installed wheel).
    """
    vouched = os.environ.get("CDPKD_GIT_SHA", "").strip()
    if vouched:
        return vouched
    try:
        args = ["git", "-C", str(REPO_ROOT), "rev-parse"] + (["--short"] if short else []) + ["HEAD"]
        sha = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
             *(f":(exclude){path}" for path in OUTPUT_PATHS)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_description() -> str:
    """CPU model name and the number of cores this process may use."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({cores} cores)"


def device_description(device: str | None = None) -> str:
    """The accelerator name if CUDA is available, else the CPU description; ``device`` ("cpu"
    or "cuda") names the one a run used instead (e.g. a CPU run on a GPU machine)."""
    if device != "cpu":
        try:
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        except ImportError:  # pragma: no cover
            pass
    return "cpu: " + cpu_description()


def file_slug(text: str, limit: int = 60) -> str:
    """``text`` as a file-name part: lower case, runs of other characters as one '-' (e.g. a
    device description in a result file's name)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit]


def numerics() -> dict[str, object]:
    """Settings that change float results of the same code on the same data.

    CPU training is bitwise repeatable only for one thread count and one
    instruction set: reductions split differently across threads, and oneDNN
    picks kernels by ISA (AVX2 vs AVX512); over thousands of steps the
    rounding differences grow into a different trained network.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover
        return {}
    return {"torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape numerical results."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "triton", "scipy", "skfem", "h5py", "pymust"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    return versions


def utc_now() -> str:
    """ISO 8601 UTC timestamp, seconds resolution."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def run_stamp() -> dict[str, object]:
    """Which code ran where and when: git SHA, date, device and :func:`numerics` (cheap: no library scan)."""
    return {"git_sha": git_sha(), "date": utc_now(), "device": device_description(), "numerics": numerics()}


def provenance() -> dict[str, object]:
    """The standard provenance block for result files: :func:`run_stamp` plus library versions."""
    return {**run_stamp(), "versions": library_versions()}
