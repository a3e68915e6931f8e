"""Time the simulation of one training pair, and of one RF frame alone.

    python benchmarks/simulation.py [--repeats 7] [--samples 2000] [--lines 128] [--out benchmarks/results]

Writes ``simulation_cpu-<cores>core.json`` with the medians, all individual timings,
the thread settings, device and library versions, git SHA and date. The
target (DESIGN.md section 7) is one 2000 x 128 pair (FEM + two RF frames) in
under 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from cdpkd.atomic import write_json
from cdpkd.runtime import cpu_description, provenance
from cdpkd.sim import ImagingConfig, SimulationConfig, random_scatterers, simulate_pair, simulate_rf
from cdpkd.sim.fem import Compression, solve_compression
from cdpkd.sim.phantom import random_phantom


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: imports, allocator, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    imaging = ImagingConfig(n_samples=args.samples, n_lines=args.lines)
    config = SimulationConfig(imaging=imaging)
    rng = np.random.default_rng(0)
    phantom = random_phantom(rng, imaging.depth_m, imaging.width_m)
    scatterers = random_scatterers(rng, phantom, imaging)
    seeds = iter(range(10_000))

    results = {
        "pair_seconds": timed(lambda: simulate_pair(config, next(seeds)), args.repeats),
        "rf_frame_seconds": timed(lambda: simulate_rf(scatterers, imaging), args.repeats),
        "fem_seconds": timed(lambda: solve_compression(phantom, Compression(0.01)), args.repeats),
    }
    summary = {k.replace("_seconds", "_median_s"): statistics.median(v) for k, v in results.items()}
    payload = {
        "benchmark": "simulation",
        "shape": [args.samples, args.lines],
        "scatterers_per_frame": len(scatterers),
        "repeats": args.repeats,
        "cpu": cpu_description(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "target_pair_s": 2.0,
        **summary,
        "timings": results,
        **provenance(),
    }
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    path = write_json(args.out / f"simulation_cpu-{cores}core.json", payload)
    for name, value in summary.items():
        print(f"{name:>20}: {value:.3f} s")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
