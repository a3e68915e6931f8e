"""Model cost: parameters, FLOPs per frame and latency per frame (median of repeats).

FLOPs follow PyTorch's ``FlopCounterMode`` convention (one multiply-add = 2
FLOPs); the correlation op registers its own formula (``cdpkd.ops``) so the
cost volume is counted too. Latency is wall time of one forward on a
1 x 1 x H x W pair: ``time.perf_counter`` on CPU, CUDA events on GPU, after
warm-up, median over repeats.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _pair(model: nn.Module, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random 1 x C x H x W pair on the model's device (C = the config's input channels, else 1)."""
    device = next(model.parameters()).device
    channels = int(getattr(getattr(model, "config", None), "in_channels", 1))
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(1, channels, height, width, generator=g)
    return pre.to(device), torch.roll(pre, 1, dims=-2).to(device)


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass on a ``height`` x ``width`` RF pair (batch 1)."""
    pre, post = _pair(model, height, width)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(pre, post)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


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
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        estimator(pre, post)
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    return float(statistics.median(times))
