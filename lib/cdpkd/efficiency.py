"""Efficiency of every method on one full RF pair: parameters, FLOPs, peak memory, latency.

Networks and classical trackers are measured on the same frame pair, one call
= one whole frame (networks on the tiles they run on in the notebooks when
``tile`` is given). Per method:

- ``params``: learned parameters (0 for the trackers);
- ``gflops``: FLOPs of one call counted in PyTorch ops (``FlopCounterMode``,
  the correlation op included); NaN where the method does its work outside
  PyTorch (GLUE: NumPy / SciPy), which the counter cannot see;
- ``peak_mem_cpu_mb``: rise of the process' resident memory during one cold
  call (Linux ``VmHWM`` reset through ``/proc/self/clear_refs`` after
  ``malloc_trim``; NaN where unavailable): everything the call touched,
  tensors, NumPy/SciPy arrays and allocator overhead;
- ``latency_cpu_ms``: median wall time over ``repeats`` calls with
  ``threads`` intra-op threads, methods measured round-robin so that every
  ratio is taken under the same machine load;
- with ``cpu_bf16``: ``latency_cpu_bf16_ms``, the networks under CPU bf16 autocast
  (fast on CPUs with AVX512-BF16 or AMX), timed in the same round-robin as the fp32
  calls; NaN for the trackers;
- with ``cpu_compiled``: ``latency_cpu_compiled_ms`` (and, with ``cpu_bf16``,
  ``latency_cpu_bf16_compiled_ms``), the networks through ``torch.compile``, compiled in the
  untimed warm-up round and timed in the same round-robin as the eager calls; NaN for the trackers;
- on a GPU (when present): ``latency_gpu_fp32_ms`` / ``latency_gpu_bf16_ms``
  (bf16 autocast; grids stay fp32 inside the models) and
  ``peak_mem_gpu_fp32_mb`` / ``peak_mem_gpu_bf16_mb`` (``max_memory_allocated``
  above what was allocated before the call); NaN for CPU-only methods.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .complexity import round_robin_ms
from .estimators import GUIDE_PASS, network_estimator

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Tracker:
    """A classical tracker for :func:`measure_efficiency`.

    Attributes:
        fn: ``(pre, post) -> 2 x H x W displacement``; gets NumPy frames on the
            CPU and CUDA tensors on the GPU (only if ``gpu``).
        gpu: whether ``fn`` runs on CUDA tensors (NCC block matching does; GLUE does not).
        flops_counted: whether its work is PyTorch ops that ``FlopCounterMode`` sees.
    """

    fn: Callable[[Any, Any], Any]
    gpu: bool = False
    flops_counted: bool = True


# ----------------------------------------------------------------------------- memory
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def _trim_heap() -> None:
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so the rise is this call's own


def peak_rss_rise_mb(fn: Callable[[], Any]) -> float:
    """Rise of the resident set (MB) from before ``fn()`` to its peak during the call; NaN off Linux."""
    if not (_CLEAR_REFS.exists() and _STATUS.exists()):
        fn()
        return float("nan")
    _trim_heap()
    try:
        _CLEAR_REFS.write_text("5")  # resets VmHWM (the peak) to the current resident size
    except OSError:
        fn()
        return float("nan")
    before = _status_kb("VmRSS")
    fn()
    return max(0, _status_kb("VmHWM") - before) / 1024.0


# ----------------------------------------------------------------------------- one method on one device
def _callables(
    networks: Mapping[str, nn.Module],
    trackers: Mapping[str, Tracker],
    device: torch.device,
    precision: str,
    estimator_options: Mapping[str, Any],
) -> dict[str, Callable[[Any, Any], Any]]:
    """``{name: (pre, post) -> displacement}`` of every method that runs on ``device`` in ``precision``;
    the networks through :func:`cdpkd.estimators.network_estimator` with ``estimator_options``."""
    out: dict[str, Callable[[Any, Any], Any]] = {}
    for name, model in networks.items():
        estimate = network_estimator(model, device, **estimator_options)
        if precision == "bf16":
            out[name] = bf16_autocast(estimate, device)
        else:
            out[name] = estimate
    if precision == "fp32":  # the trackers are fp32 algorithms: no bf16 row for them
        for name, tracker in trackers.items():
            if device.type == "cpu" or tracker.gpu:
                out[name] = tracker.fn
    return out


# CPU latency column of each (precision, compiled) variant
CPU_LATENCY_COLUMNS = {
    ("fp32", False): "latency_cpu_ms",
    ("bf16", False): "latency_cpu_bf16_ms",
    ("fp32", True): "latency_cpu_compiled_ms",
    ("bf16", True): "latency_cpu_bf16_compiled_ms",
}


def _cpu_columns(bf16: bool, compiled: bool) -> dict[tuple[str, bool], str]:
    """The CPU latency variants to time, with their columns (fp32 eager always)."""
    return {(precision, comp): column for (precision, comp), column in CPU_LATENCY_COLUMNS.items()
            if (bf16 or precision == "fp32") and (compiled or not comp)}


def bf16_autocast(fn: Callable[[Any, Any], Any], device: torch.device | str) -> Callable[[Any, Any], Any]:
    """``fn(pre, post)`` run under bf16 autocast on ``device``'s type (convolutions and matrix
    products in bf16; network estimators still return fp32 displacements)."""
    device = torch.device(device)

    def run(pre: Any, post: Any) -> Any:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn(pre, post)

    return run


def _inputs(
    pre: np.ndarray, post: np.ndarray, device: torch.device, name: str, trackers: Mapping[str, Tracker]
):
    if device.type == "cuda" and name in trackers:
        return torch.as_tensor(pre, device=device), torch.as_tensor(post, device=device)
    return pre, post


def _bound(fn: Callable[[Any, Any], Any], device: torch.device, args: tuple[Any, Any]) -> Callable[[], None]:
    """``fn(*args)`` followed by a device synchronisation: a call whose wall time is its work."""

    def run() -> None:
        fn(*args)
        torch.cuda.synchronize(device)

    return run


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _gpu_peak_mb(call: Callable[[], None], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _count_flops(
    rows: dict[str, dict[str, float]],
    calls: Mapping[str, Callable[[], Any]],
    networks: Mapping[str, nn.Module],
    trackers: Mapping[str, Tracker],
) -> None:
    """``rows[name]["gflops"]`` of one call of each method (NaN where its work is outside PyTorch)."""
    for name, call in calls.items():
        counted = name in networks or trackers[name].flops_counted
        with FlopCounterMode(display=False) as counter:
            call()
        rows[name]["gflops"] = counter.get_total_flops() / 1e9 if counted else float("nan")


# ----------------------------------------------------------------------------- the table
def measure_efficiency(
    pre: np.ndarray,
    post: np.ndarray,
    networks: Mapping[str, nn.Module],
    trackers: Mapping[str, Tracker] | None = None,
    *,
    tile: tuple[int, int] | None = None,
    overlap: float = 0.5,
    guided: bool = False,
    guide_pass: str = GUIDE_PASS,
    repeats: int = 5,
    threads: int | None = 2,
    gpu: bool | None = None,
    cpu_timing: bool = True,
    cpu_bf16: bool = False,
    tiles_per_batch: int = 16,
    cpu_compiled: bool = False,
) -> pd.DataFrame:
    """Parameters, FLOPs, peak memory and latency of one call of every method on the pair (``pre``, ``post``).

    Args:
        pre, post: H x W RF frames (the efficiency table uses a 2048 x 256 pair).
        networks: ``{name: displacement network}`` (run via :func:`cdpkd.estimators.network_estimator`,
            on ``tile``-sized tiles when given, ``guided`` or not (``guide_pass``), ``tiles_per_batch`` tiles per
            forward). They are left on the CPU.
        trackers: ``{name: Tracker}``.
        repeats: timed calls per method and device (after one warm-up round).
        threads: intra-op threads on the CPU (None: leave torch's setting).
        gpu: measure on CUDA too (None: when available).
        cpu_timing: measure CPU latency and peak memory; False leaves them NaN (e.g. on a
            lent GPU machine, whose CPU is not the one the CPU columns are meant for).
            FLOPs are counted on the CPU, or, with ``cpu_timing=False`` and a GPU, on the GPU
            (the same count, without a slow CPU pass; CPU-only trackers then get NaN).
        cpu_bf16: also time the networks under CPU bf16 autocast (``latency_cpu_bf16_ms``);
            needs ``cpu_timing``.
        cpu_compiled: also time the networks through ``torch.compile`` (``latency_cpu_compiled_ms``;
            needs ``cpu_timing`` and, on the CPU, a C++ compiler). FLOPs and peak memory are the eager
            calls' (the counter does not see into compiled code).

    Returns:
        One row per method (index ``method``), columns as in the module docstring.
    """
    trackers = dict(trackers or {})
    if set(networks) & set(trackers):
        raise ValueError(f"method names used twice: {sorted(set(networks) & set(trackers))}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    pre = np.ascontiguousarray(pre, dtype=np.float32)
    post = np.ascontiguousarray(post, dtype=np.float32)
    if pre.ndim != 2 or pre.shape != post.shape:
        raise ValueError(f"need two H x W frames of one shape, got {pre.shape} and {post.shape}")
    for flag, on in (("cpu_bf16", cpu_bf16), ("cpu_compiled", cpu_compiled)):
        if on and not cpu_timing:
            raise ValueError(f"{flag} times the CPU: it needs cpu_timing=True")
    use_gpu = torch.cuda.is_available() if gpu is None else bool(gpu)
    if use_gpu and not torch.cuda.is_available():
        raise ValueError("gpu=True but CUDA is not available")
    nan = float("nan")
    rows: dict[str, dict[str, float]] = {
        name: {"params": float(sum(p.numel() for p in m.parameters()))} for name, m in networks.items()
    }
    rows.update({name: {"params": 0.0} for name in trackers})

    # FLOPs are the same on either device (the correlation op carries one formula for both
    # backends); without CPU timing on a GPU run, they are counted on the GPU: no slow CPU pass
    count_on_gpu = use_gpu and not cpu_timing
    options = dict(tile=tile, overlap=overlap, guided=guided, guide_pass=guide_pass, tiles_per_batch=tiles_per_batch)
    for name in rows:
        rows[name]["peak_mem_cpu_mb"] = rows[name]["latency_cpu_ms"] = nan
        for column in _cpu_columns(cpu_bf16, cpu_compiled).values():
            rows[name][column] = nan
    if cpu_timing or not count_on_gpu:
        with _threads(threads):
            calls = _callables(networks, trackers, torch.device("cpu"), "fp32", options)
            if not count_on_gpu:
                _count_flops(rows, {name: partial(fn, pre, post) for name, fn in calls.items()}, networks, trackers)
            if cpu_timing:
                for name, fn in calls.items():
                    rows[name]["peak_mem_cpu_mb"] = peak_rss_rise_mb(lambda fn=fn: fn(pre, post))
                # every variant in one round-robin: their ratios are taken under one machine load
                columns = _cpu_columns(cpu_bf16, cpu_compiled)
                timed_calls = {}
                for variant in columns:
                    precision, compiled = variant
                    variant_calls = calls if variant == ("fp32", False) else _callables(
                        networks, {}, torch.device("cpu"), precision, {**options, "compile_model": compiled})
                    timed_calls.update({(name, variant): fn for name, fn in variant_calls.items()})
                timed = round_robin_ms({key: (lambda fn=fn: fn(pre, post)) for key, fn in timed_calls.items()}, repeats)
                for (name, variant), ms in timed.items():
                    rows[name][columns[variant]] = ms

    for precision in PRECISIONS:
        for name in rows:
            rows[name].setdefault(f"latency_gpu_{precision}_ms", nan)
            rows[name].setdefault(f"peak_mem_gpu_{precision}_mb", nan)
        if not use_gpu:
            continue
        cuda = torch.device("cuda")
        calls = _callables(networks, trackers, cuda, precision, options)
        inputs = {name: _inputs(pre, post, cuda, name, trackers) for name in calls}
        if count_on_gpu and precision == "fp32":
            _count_flops(rows, {name: partial(fn, *inputs[name]) for name, fn in calls.items()}, networks, trackers)
            for name in rows:  # CPU-only methods (GLUE) were not run: their FLOPs are not counted either
                rows[name].setdefault("gflops", nan)
        bound = {name: _bound(fn, cuda, inputs[name]) for name, fn in calls.items()}
        for name, call in bound.items():
            call()  # warm-up (kernel selection, Triton compilation) outside the peak measurement
            rows[name][f"peak_mem_gpu_{precision}_mb"] = _gpu_peak_mb(call, cuda)
        for name, ms in round_robin_ms(bound, repeats).items():
            rows[name][f"latency_gpu_{precision}_ms"] = ms
    for model in networks.values():
        model.to("cpu")
    table = pd.DataFrame(rows).T
    table.index.name = "method"
    return table


__all__ = ["PRECISIONS", "Tracker", "bf16_autocast", "measure_efficiency", "peak_rss_rise_mb"]
