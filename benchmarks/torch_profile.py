"""Where the time goes: torch.profiler tables of one full-frame estimate and one training step.

    python benchmarks/torch_profile.py [--profile cpu] [--device auto|cpu|cuda] [--samples 2048]
                                       [--lines 256] [--rows 30] [--out benchmarks/results]

Inference: the profile's teacher and its budget-pruned student, random weights, built as
``benchmarks/efficiency.py`` builds them (:func:`cdpkd.recipes.architectures.profile_networks`), each estimating one simulated ``--samples`` x
``--lines`` pair on guided tiles of the training crop (as the notebooks run them): one warm-up
call, then one profiled call. Training: the profile's last teacher stage (model, crop, batch,
AMP, trainable parameters) in the real training loop (``cdpkd.train.fit`` through
``train_unsupervised``) on a few simulated pairs; update 3 is profiled (updates 0-2 warm up).

Per run the file holds the wall time, the number of device kernels launched and, for the top
``--rows`` ops by self device time (CUDA) or self CPU time (CPU), their call count and self
times: the answer to "launch-bound or compute-bound, and in which op". Writes
``torch_profile_<profile>_<device>.json`` with the provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from cdpkd.atomic import write_json
from cdpkd.estimators import network_estimator
from cdpkd.ops import describe_backends
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import teacher_stage_recipes
from cdpkd.recipes.architectures import STUDENT_LABEL, profile_networks
from cdpkd.recipes.unsupervised import train_unsupervised
from cdpkd.runtime import device_description, file_slug, provenance
from cdpkd.sim import simulate_pair
from cdpkd.sim.dataset import ensure_dataset
from cdpkd.sim.study import notebook_simulation_config, simulation_config

PROFILED_STEP = 3  # updates 0-2 warm up (allocator, kernel selection, Triton compilation)


def _self_device_us(event: Any) -> float:
    # the attribute's name changed across torch releases (cuda -> device)
    return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))


def summarize(prof: profile, rows: int, wall_s: float, on_cuda: bool) -> dict[str, Any]:
    """Wall time, device kernel count and the top ``rows`` ops of a finished profiler run."""
    averages = prof.key_averages()
    kernels = sum(e.count for e in prof.events() if e.device_type.name == "CUDA") if on_cuda else None
    key = _self_device_us if on_cuda else (lambda e: float(e.self_cpu_time_total))
    top = sorted(averages, key=key, reverse=True)[:rows]
    return {
        "wall_ms": wall_s * 1e3,
        "device_kernels": kernels,
        "self_device_ms_total": sum(_self_device_us(e) for e in averages) / 1e3 if on_cuda else None,
        "self_cpu_ms_total": sum(float(e.self_cpu_time_total) for e in averages) / 1e3,
        "sorted_by": "self device time" if on_cuda else "self CPU time",
        "top": [{"op": e.key, "count": int(e.count), "self_cpu_ms": float(e.self_cpu_time_total) / 1e3,
                 "self_device_ms": _self_device_us(e) / 1e3 if on_cuda else None} for e in top],
    }


def _activities(on_cuda: bool) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_cuda else [ProfilerActivity.CPU]


def profile_inference(model: torch.nn.Module, device: torch.device, pre, post, tile, guided: bool,
                      rows: int) -> dict[str, Any]:
    """One profiled full-frame estimate (after one warm-up call)."""
    estimate = network_estimator(model, device, tile=tile, guided=guided)
    estimate(pre, post)
    on_cuda = device.type == "cuda"
    with profile(activities=_activities(on_cuda)) as prof:
        start = time.perf_counter()
        estimate(pre, post)  # returns NumPy: the device work is finished when it returns
        wall = time.perf_counter() - start
    return summarize(prof, rows, wall, on_cuda)


class StepProfiler:
    """A ``fit`` hook that runs torch.profiler around update ``step`` (0-based)."""

    def __init__(self, step: int, on_cuda: bool) -> None:
        self.step, self.on_cuda = step, on_cuda
        self.prof: profile | None = None
        self.wall_s = float("nan")

    def on_step_start(self, step: int, model, optimizer) -> None:
        if step == self.step:
            self.prof = profile(activities=_activities(self.on_cuda))
            self.prof.__enter__()
            self._start = time.perf_counter()

    def on_step_end(self, step: int, model, logs) -> None:
        if step == self.step and self.prof is not None:
            if self.on_cuda:
                torch.cuda.synchronize()
            self.wall_s = time.perf_counter() - self._start
            self.prof.__exit__(None, None, None)


def profile_training(params: dict[str, Any], profile_name: str, device: torch.device, rows: int) -> dict[str, Any]:
    """Update ``PROFILED_STEP`` of the profile's last teacher stage, from random weights."""
    recipe = teacher_stage_recipes(params)[-1]
    recipe = dataclasses.replace(recipe, steps=PROFILED_STEP + 1, val_every=None, val_pairs=0, keep_best=False,
                                 warmup_steps=1, init_from=None)
    config = notebook_simulation_config(params)
    hook = StepProfiler(PROFILED_STEP, device.type == "cuda")
    with tempfile.TemporaryDirectory() as tmp:
        pairs = recipe.batch_size
        train_path = ensure_dataset(tmp, config, pairs, int(params["seed"]), workers=min(pairs, params["workers"]),
                                    name="sim_train")
        train_unsupervised(recipe, train_path, Path(tmp) / "run", profile=profile_name, device=device, hooks=[hook])
    if hook.prof is None:
        raise RuntimeError(f"update {PROFILED_STEP} was never reached")
    out = summarize(hook.prof, rows, hook.wall_s, device.type == "cuda")
    out.update(model=recipe.model, model_overrides=recipe.model_overrides, trainable=recipe.trainable,
               crop=list(recipe.crop), batch_size=recipe.batch_size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--lines", type=int, default=256)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)

    networks, crop, settings = profile_networks(args.profile)
    guided = bool(resolved_parameters(args.profile, NOTEBOOK_DIR / "04_ablations.ipynb")["guided_tiles"])
    pair = simulate_pair(simulation_config(n_samples=args.samples, n_lines=args.lines), seed=0)
    runs = {}
    for label in ("teacher", STUDENT_LABEL):
        runs[f"inference: {label}"] = profile_inference(networks[label], device, pair.pre, pair.post, crop, guided,
                                                        args.rows)
        networks[label].to("cpu")
        print(f"{label}: {runs[f'inference: {label}']['wall_ms']:.1f} ms, "
              f"{runs[f'inference: {label}']['device_kernels']} device kernels")
    params = resolved_parameters(args.profile, NOTEBOOK_DIR / "01_teacher.ipynb")
    runs["training step: teacher, last stage"] = profile_training(params, args.profile, device, args.rows)
    print(f"training step: {runs['training step: teacher, last stage']['wall_ms']:.1f} ms")

    used = device_description(device.type)
    slug = file_slug(used)
    path = args.out / f"torch_profile_{args.profile}_{slug}.json"
    write_json(path, {
        **provenance(), "benchmark": "torch_profile", "profile": args.profile, "profiled_on": used,
        "shape": [args.samples, args.lines], "tile": list(crop), "guided_tiles": guided,
        "teacher_model_overrides": settings["teacher_model_overrides"], "ops_backends": describe_backends(),
        "runs": runs,
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
