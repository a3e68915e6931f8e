"""Model cost: parameters, FLOPs per frame and latency per frame (median of repeats).

FLOPs follow PyTorch's ``FlopCounterMode`` convention (one multiply-add = 2
FLOPs); the correlation op registers its own formula (``cdpkd.ops``) so the
cost volume is counted too, and this module registers one for ``avg_pool2d``
(``kh * kw`` per output), which ``FlopCounterMode`` does not count: a windowed
cost volume (``PWCConfig.cost_windows``) averages with it, and so does NCC block
matching's envelope decimation (0.2 % of NCC's count on a 2048 x 256 frame;
counts made before git ae65c04 leave it out). Latency is wall time of one forward on a
1 x 1 x H x W pair: ``time.perf_counter`` on CPU, CUDA events on GPU, after
warm-up, median over repeats.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils import flop_counter as _flop_counter
from torch.utils.flop_counter import FlopCounterMode

from .estimators import GUIDE_PASS, network_estimator

Key = TypeVar("Key", bound=Hashable)


def _register_avg_pool_flops() -> None:
    """Count ``avg_pool2d`` as ``kh * kw`` FLOPs per output (``kh * kw - 1`` adds, one scale); idempotent."""
    op = torch.ops.aten.avg_pool2d
    if op not in _flop_counter.flop_registry:

        @_flop_counter.register_flop_formula(op)
        def _avg_pool_flops(x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
            kh, kw = (kernel_size[0], kernel_size[0]) if len(kernel_size) == 1 else kernel_size
            return math.prod(out_shape) * kh * kw


_register_avg_pool_flops()


def _pair(model: nn.Module, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random 1 x C x H x W pair on the model's device (C = the config's input channels, else 1)."""
    device = next(model.parameters()).device
    channels = int(getattr(getattr(model, "config", None), "in_channels", 1))
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(1, channels, height, width, generator=g)
    return pre.to(device), torch.roll(pre, 1, dims=-2).to(device)


def flop_counter(model: nn.Module, height: int, width: int) -> FlopCounterMode:
    """The ``FlopCounterMode`` of one eval-mode forward on a ``height`` x ``width`` RF pair (batch 1):
    total and per-module counts (``get_total_flops`` / ``get_flop_counts``)."""
    pre, post = _pair(model, height, width)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(pre, post)
    finally:
        model.train(was_training)
    return counter


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass on a ``height`` x ``width`` RF pair (batch 1)."""
    return int(flop_counter(model, height, width).get_total_flops())


def latency_ms(model: nn.Module, height: int, width: int, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in milliseconds of one forward pass on a ``height`` x ``width`` pair.

    Runs on the model's device; on CUDA the time is measured with CUDA events.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = next(model.parameters()).device
    pre, post = _pair(model, height, width)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                if device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    model(pre, post)
                    end.record()
                    torch.cuda.synchronize(device)
                    elapsed = start.elapsed_time(end)
                else:
                    t0 = time.perf_counter()
                    model(pre, post)
                    elapsed = 1e3 * (time.perf_counter() - t0)
                if i >= warmup:
                    times.append(elapsed)
    finally:
        model.train(was_training)
    return float(statistics.median(times))


def estimator_flops(estimator, pre, post) -> int:
    """FLOPs of one call of a ``(pre, post) -> displacement`` estimator (e.g. tiled inference)."""
    with FlopCounterMode(display=False) as counter:
        estimator(pre, post)
    return int(counter.get_total_flops())


def estimator_latency_ms(estimator, pre, post, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in milliseconds of one estimator call on one frame pair (host clock;
    estimators return host arrays, so GPU work is complete when the call returns)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return round_robin_ms({"call": lambda: estimator(pre, post)}, repeats, warmup)["call"]


def round_robin_ms(calls: dict[Key, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[Key, float]:
    """Median wall time (ms) of each call over ``repeats`` rounds after ``warmup`` rounds; each round
    calls every entry once in turn, so ratios between entries are taken under the same machine load."""
    times: dict[Key, list[float]] = {name: [] for name in calls}
    for i in range(warmup + repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: float(statistics.median(t)) for name, t in times.items()}


def network_costs(
    models: dict[str, nn.Module],
    pre: np.ndarray,
    post: np.ndarray,
    *,
    tile: tuple[int, int] | None = None,
    overlap: float = 0.5,
    guided: bool = False,
    guide_pass: str = GUIDE_PASS,
    repeats: int = 5,
    gpu: bool | None = None,
) -> dict[str, dict[str, float]]:
    """Parameters, FLOPs and latency of estimating one whole frame pair with each network.

    Each network runs as :func:`cdpkd.estimators.network_estimator` (on ``tile``-sized
    tiles if given, ``guided`` or not, with ``guide_pass``). Latencies are medians over ``repeats`` calls after one warm-up,
    measured round-robin (one call of each network in turn) so that the ratios between
    networks are taken under the same machine load. ``latency_gpu_ms`` is NaN unless a
    GPU is available (``gpu=None``: use one if present).

    Args:
        models: ``{method name: network}``; moved to the CPU (and back to nothing else).
        pre, post: H x W RF frames.

    Returns:
        ``{name: {"params", "flops", "latency_cpu_ms", "latency_gpu_ms"}}``.
    """
    from .models import count_parameters

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    use_gpu = torch.cuda.is_available() if gpu is None else bool(gpu)
    out = {name: {"params": float(count_parameters(m))} for name, m in models.items()}
    devices = ["cpu", "cuda"] if use_gpu else ["cpu"]
    for device in devices:
        estimators = {n: network_estimator(m, device, tile=tile, overlap=overlap, guided=guided,
                                         guide_pass=guide_pass)
                      for n, m in models.items()}
        if device == "cpu":
            for name, est in estimators.items():
                out[name]["flops"] = float(estimator_flops(est, pre, post))
        calls = {name: (lambda est=est: est(pre, post)) for name, est in estimators.items()}
        for name, ms in round_robin_ms(calls, repeats).items():
            out[name][f"latency_{'cpu' if device == 'cpu' else 'gpu'}_ms"] = ms
    for name in models:
        out[name].setdefault("latency_gpu_ms", float("nan"))
        models[name].to("cpu")
    return out
