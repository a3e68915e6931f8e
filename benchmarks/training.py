"""Training throughput of a profile's teacher stages on this machine, and the wall time it projects.

    python benchmarks/training.py [--profile paper] [--steps 60] [--pairs 32] [--device auto|cpu|cuda]
                                  [--out benchmarks/results]

Simulates ``--pairs`` training pairs with the profile's simulation settings and ``workers``
(timed: wall seconds per pair, process start included), then trains every teacher stage of
the profile (the base recipe, then each ``teacher_refine`` stage continuing from the previous
one, as notebook 01 does: same model, crop, batch size, optimizer, AMP, trainable parameters)
for ``--steps`` steps each, and reads the seconds per step the training loop logs. A stage's
speed is the median over its records after the first (the first holds the warm-up: kernel
selection, Triton compilation). Projections: the profile's steps x that median per stage and in
total (validation and checkpoints not included), and ``n_train`` x seconds per pair for the
training set: an upper bound, since the workers' start is spread over only ``--pairs`` pairs. A few steps train nothing: this measures speed, not quality. Writes
``training_<profile>_<device>.json`` with the provenance (device, library versions, git SHA, date).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cdpkd.atomic import write_json
from cdpkd.ops import describe_backends
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import ensure_teacher, refine_stages, teacher_stage_recipes
from cdpkd.runtime import device_description, file_slug, provenance
from cdpkd.sim.dataset import ensure_dataset
from cdpkd.sim.study import notebook_simulation_config

VAL_PAIRS = 2  # held out of the small training set: the end-of-stage validation needs some


def step_seconds(metrics_csv: Path) -> list[float]:
    """The ``time_per_step_s`` of every record in a run's ``metrics.csv``, in order."""
    with open(metrics_csv, newline="") as handle:
        return [float(row["time_per_step_s"]) for row in csv.DictReader(handle) if row.get("time_per_step_s")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--steps", type=int, default=60, help="steps trained per stage (>= 2 x the log interval)")
    parser.add_argument("--pairs", type=int, default=32, help="simulated training pairs")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.steps < 4:
        parser.error("--steps must be >= 4 (the first record is warm-up)")
    if args.pairs <= VAL_PAIRS:
        parser.error(f"--pairs must be > {VAL_PAIRS} (that many are held out for validation)")
    device = None if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")

    params = resolved_parameters(args.profile, NOTEBOOK_DIR / "01_teacher.ipynb")
    stages = teacher_stage_recipes(params)
    config = notebook_simulation_config(params)
    # the same stages, each --steps long and validated once at its end (not timed)
    short = dict(steps=args.steps, val_every=None)
    base = dataclasses.replace(stages[0], **short, val_pairs=VAL_PAIRS,
                               warmup_steps=min(stages[0].warmup_steps, args.steps // 4))
    refine = [{**stage, **short, "warmup_steps": min(recipe.warmup_steps, args.steps // 4)}
              for stage, recipe in zip(refine_stages(params.get("teacher_refine")), stages[1:])]

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train_path = ensure_dataset(tmp, config, args.pairs, int(params["seed"]), workers=params["workers"],
                                    name="sim_train")
        simulation_s = time.perf_counter() - start
        folders = ensure_teacher(tmp, base, train_path, refine=refine, profile=args.profile, device=device)
        measured = [step_seconds(folder / "metrics.csv") for folder in folders]

    rows = []
    for recipe, seconds in zip(stages, measured):
        if len(seconds) < 2:
            raise RuntimeError(f"only {len(seconds)} metrics record(s) in {args.steps} steps: raise --steps")
        median = statistics.median(seconds[1:])
        rows.append({
            "model": recipe.model, "model_overrides": recipe.model_overrides, "trainable": recipe.trainable,
            "crop": list(recipe.crop), "batch_size": recipe.batch_size, "profile_steps": recipe.steps,
            "median_s_per_step": median, "s_per_step_records": seconds,
            "projected_s": median * recipe.steps,
        })
        print(f"{recipe.model} {recipe.model_overrides} trainable={recipe.trainable}: "
              f"{median * 1e3:.1f} ms/step -> {recipe.steps} steps ~ {median * recipe.steps / 60:.1f} min")
    per_pair = simulation_s / args.pairs
    result = {
        **provenance(),
        "benchmark": "training",
        "profile": args.profile,
        "steps_per_stage": args.steps,
        "ops_backends": describe_backends(),
        "simulation": {
            "pairs": args.pairs, "workers": params["workers"], "shape": [params["n_samples"], params["n_lines"]],
            "seconds": simulation_s, "seconds_per_pair": per_pair,
            "n_train": params["n_train"], "projected_train_set_s": per_pair * params["n_train"],
        },
        "stages": rows,
        "projected_teacher_training_s": sum(r["projected_s"] for r in rows),
    }
    print(f"simulation {per_pair:.2f} s/pair -> n_train={params['n_train']} ~ {per_pair * params['n_train'] / 60:.1f} min; "
          f"teacher training ~ {result['projected_teacher_training_s'] / 60:.1f} min")
    used = device_description(device)
    result["trained_on"] = used
    slug = file_slug(used)
    path = args.out / f"training_{args.profile}_{slug}.json"
    write_json(path, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
