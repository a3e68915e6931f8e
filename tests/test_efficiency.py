"""Efficiency table: parameters, FLOPs, peak memory and latency of networks and trackers."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import torch

from cdpkd.complexity import estimator_flops
from cdpkd.efficiency import Tracker, measure_efficiency, peak_rss_rise_mb
from cdpkd.estimators import network_estimator
from cdpkd.models import build_model, count_parameters
from cdpkd.models.registry import MODEL_CONFIGS


def _pair(h=128, w=32):
    rng = np.random.default_rng(0)
    pre = rng.standard_normal((h, w)).astype(np.float32)
    return pre, np.roll(pre, 1, axis=0)


def _numpy_tracker(pre, post):
    return np.zeros((2, *np.shape(pre)), dtype=np.float32)


def test_peak_rss_rise_sees_a_large_allocation():
    if not sys.platform.startswith("linux"):
        pytest.skip("peak resident memory is measured through Linux /proc only")

    def allocate():
        a = np.ones(200 * 2**20 // 8)  # 200 MB, written, so resident
        return float(a[-1])

    rise = peak_rss_rise_mb(allocate)
    assert 150 < rise < 400
    assert peak_rss_rise_mb(lambda: None) < 20


def test_measure_efficiency_rows_and_columns():
    pre, post = _pair()
    model = build_model("usenet_smoke")
    trackers = {"zeros": Tracker(_numpy_tracker, flops_counted=False)}
    table = measure_efficiency(pre, post, {"usenet": model}, trackers, tile=(64, 32), repeats=2, gpu=False)
    assert list(table.index) == ["usenet", "zeros"]
    assert table.loc["usenet", "params"] == count_parameters(model)
    assert table.loc["zeros", "params"] == 0
    expected = estimator_flops(network_estimator(model, "cpu", tile=(64, 32)), pre, post) / 1e9
    assert table.loc["usenet", "gflops"] == pytest.approx(expected)
    assert math.isnan(table.loc["zeros", "gflops"])  # work outside PyTorch is not counted, not reported as 0
    assert (table["latency_cpu_ms"] > 0).all()
    for column in (
        "latency_gpu_fp32_ms",
        "latency_gpu_bf16_ms",
        "peak_mem_gpu_fp32_mb",
        "peak_mem_gpu_bf16_mb",
    ):
        assert table[column].isna().all()
    assert next(model.parameters()).device.type == "cpu"
    guided = measure_efficiency(pre, post, {"usenet": model}, {}, tile=(64, 32), guided=True, repeats=1, gpu=False)
    expected = estimator_flops(network_estimator(model, "cpu", tile=(64, 32), guided=True), pre, post) / 1e9
    assert guided.loc["usenet", "gflops"] == pytest.approx(expected)
    assert guided.loc["usenet", "gflops"] > table.loc["usenet", "gflops"], "guided: one whole-frame pass more"
    # the guide pass reaches the estimator: strips of a 32-line tile overlap on a 48-line frame, more area than it
    narrow_pre, narrow_post = _pair(w=48)
    by_pass = {g: measure_efficiency(narrow_pre, narrow_post, {"usenet": model}, {}, tile=(64, 32), guided=True,
                                     guide_pass=g, repeats=1, gpu=False, cpu_timing=False).loc["usenet", "gflops"]
               for g in ("whole", "strips")}
    for g, gflops in by_pass.items():
        est = network_estimator(model, "cpu", tile=(64, 32), guided=True, guide_pass=g)
        assert gflops == pytest.approx(estimator_flops(est, narrow_pre, narrow_post) / 1e9)
    assert by_pass["strips"] > by_pass["whole"]


def test_measure_efficiency_without_cpu_timing_keeps_the_counts():
    pre, post = _pair()
    model = build_model("usenet_smoke")
    table = measure_efficiency(pre, post, {"usenet": model}, tile=(64, 32), repeats=1, gpu=False, cpu_timing=False)
    assert table.loc["usenet", "params"] == count_parameters(model)
    expected = estimator_flops(network_estimator(model, "cpu", tile=(64, 32)), pre, post) / 1e9
    assert table.loc["usenet", "gflops"] == pytest.approx(expected)
    assert table[["latency_cpu_ms", "peak_mem_cpu_mb"]].isna().all().all()


def test_measure_efficiency_cpu_bf16_times_the_networks_under_autocast():
    pre, post = _pair()
    # the pyramid teacher with the NCC head: correlation, warps and head must all run under CPU autocast
    model = build_model(dataclasses.replace(MODEL_CONFIGS["umen_teacher_smoke"](), refine_widths=(4,)), seed=0)
    conv_dtypes: set[torch.dtype] = set()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, out: conv_dtypes.add(out.dtype))
    trackers = {"zeros": Tracker(_numpy_tracker, flops_counted=False)}
    table = measure_efficiency(pre, post, {"teacher": model}, trackers, tile=(64, 32), repeats=1, gpu=False,
                               cpu_bf16=True)
    assert table.loc["teacher", "latency_cpu_bf16_ms"] > 0 and table.loc["teacher", "latency_cpu_ms"] > 0
    assert math.isnan(table.loc["zeros", "latency_cpu_bf16_ms"])  # the trackers are fp32 algorithms
    assert conv_dtypes == {torch.float32, torch.bfloat16}, "both precisions ran"
    assert "latency_cpu_bf16_ms" not in measure_efficiency(pre, post, {"teacher": model}, repeats=1, gpu=False)
    with pytest.raises(ValueError, match="cpu_timing"):
        measure_efficiency(pre, post, {"teacher": model}, gpu=False, cpu_timing=False, cpu_bf16=True)


def test_measure_efficiency_bad_input():
    pre, post = _pair()
    model = build_model("usenet_smoke")
    with pytest.raises(ValueError, match="used twice"):
        measure_efficiency(pre, post, {"a": model}, {"a": Tracker(_numpy_tracker)}, gpu=False)
    with pytest.raises(ValueError, match="one shape"):
        measure_efficiency(pre, post[:-1], {"a": model}, gpu=False)
    with pytest.raises(ValueError, match="repeats"):
        measure_efficiency(pre, post, {"a": model}, repeats=0, gpu=False)


@pytest.mark.gpu
def test_measure_efficiency_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pre, post = _pair(256, 64)
    model = build_model("usenet_smoke")
    table = measure_efficiency(pre, post, {"usenet": model}, repeats=2, gpu=True, cpu_timing=False)
    assert table[["latency_cpu_ms", "peak_mem_cpu_mb"]].isna().all().all()
    on_cpu = measure_efficiency(pre, post, {"usenet": model}, repeats=1, gpu=False)
    assert table.loc["usenet", "gflops"] == pytest.approx(on_cpu.loc["usenet", "gflops"])  # counted on the GPU
    for column in (
        "latency_gpu_fp32_ms",
        "latency_gpu_bf16_ms",
        "peak_mem_gpu_fp32_mb",
        "peak_mem_gpu_bf16_mb",
    ):
        assert table.loc["usenet", column] > 0


def test_measure_efficiency_times_compiled_networks_beside_eager(cpp_compiler):
    pre, post = _pair()
    model = build_model("usenet_smoke")
    trackers = {"zeros": Tracker(_numpy_tracker, flops_counted=False)}
    eager = measure_efficiency(pre, post, {"usenet": model}, repeats=1, gpu=False)
    table = measure_efficiency(pre, post, {"usenet": model}, trackers, repeats=1, gpu=False, cpu_compiled=True,
                               cpu_bf16=True)
    assert table.loc["usenet", "gflops"] == pytest.approx(eager.loc["usenet", "gflops"])  # the eager count
    for column in ("latency_cpu_ms", "latency_cpu_bf16_ms", "latency_cpu_compiled_ms", "latency_cpu_bf16_compiled_ms"):
        assert table.loc["usenet", column] > 0
    assert math.isnan(table.loc["zeros", "latency_cpu_compiled_ms"])  # trackers are not compiled
    assert "latency_cpu_compiled_ms" not in eager.columns
    with pytest.raises(ValueError, match="cpu_compiled"):
        measure_efficiency(pre, post, {"usenet": model}, gpu=False, cpu_timing=False, cpu_compiled=True)
