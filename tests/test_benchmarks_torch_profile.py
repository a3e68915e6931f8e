"""The profiling benchmark's pieces: op tables of one estimate and of one update of the real loop."""

from __future__ import annotations

import numpy as np
import torch

from cdpkd.models import build_model
from cdpkd.recipes import UnsupervisedRecipe
from cdpkd.recipes.unsupervised import train_unsupervised
from cdpkd.sim.dataset import ensure_dataset


def test_inference_profile_lists_the_convolutions(load_benchmark):
    module = load_benchmark("torch_profile")
    rng = np.random.default_rng(0)
    pre = rng.standard_normal((128, 32)).astype(np.float32)
    post = np.roll(pre, 1, axis=0)
    run = module.profile_inference(build_model("umen_teacher_smoke", seed=0), torch.device("cpu"), pre, post,
                                   (64, 32), False, rows=50)
    assert run["wall_ms"] > 0 and run["device_kernels"] is None and run["sorted_by"] == "self CPU time"
    ops = {row["op"]: row for row in run["top"]}
    assert any("conv" in op for op in ops), sorted(ops)
    times = [row["self_cpu_ms"] for row in run["top"]]
    assert times == sorted(times, reverse=True)
    assert 0 < sum(times) <= run["self_cpu_ms_total"] + 1e-6


def test_step_profiler_profiles_exactly_the_chosen_update(load_benchmark, tmp_path, small_config):
    module = load_benchmark("torch_profile")
    train_path = ensure_dataset(tmp_path, small_config, 2, 0, workers=1, name="sim_train")
    recipe = UnsupervisedRecipe(model="umen_teacher_smoke", crop=(64, 32), steps=3, batch_size=2, lr=1e-3,
                                warmup_steps=1, val_pairs=0)
    hook = module.StepProfiler(1, on_cuda=False)
    train_unsupervised(recipe, train_path, tmp_path / "run", profile="smoke", device="cpu", hooks=[hook])
    assert hook.prof is not None and hook.wall_s > 0
    table = module.summarize(hook.prof, rows=100, wall_s=hook.wall_s, on_cuda=False)
    ops = {row["op"] for row in table["top"]}
    assert any("convolution_backward" in op for op in ops), "a training update runs the backward"


def test_step_profiler_ignores_other_updates(load_benchmark):
    module = load_benchmark("torch_profile")
    hook = module.StepProfiler(5, on_cuda=False)
    for step in range(5):
        hook.on_step_start(step, None, None)
        hook.on_step_end(step, None, {})
    assert hook.prof is None
