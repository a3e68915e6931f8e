"""Triton kernels against the PyTorch reference: values, gradients, determinism.

Triton picks interpreter or compiled mode once per process, when its kernels
are defined, from ``TRITON_INTERPRET``. So on a machine without CUDA,
``test_interpreter_suite`` re-runs this module in a subprocess with
``TRITON_INTERPRET=1`` and the kernels run on CPU tensors in the interpreter;
in the parent process those cases skip with a reason. With CUDA the same
cases run on the GPU in-process, plus the ``gpu``-marked larger ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cdpkd.ops as ops
from cdpkd.ops import dispatch

INTERPRETER = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAS_TRITON = dispatch.triton_available()
HAS_CUDA = torch.cuda.is_available()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def device() -> str:
    """Where the Triton kernels can run in this process (skips visibly otherwise)."""
    if not HAS_TRITON:
        pytest.skip("triton cannot be imported")
    if INTERPRETER:
        return "cpu"
    if HAS_CUDA:
        return "cuda"
    pytest.skip(
        "no CUDA device: this case runs on CPU in the interpreter subprocess (test_interpreter_suite)"
    )


@pytest.fixture
def gpu() -> str:
    if not HAS_TRITON:
        pytest.skip("triton cannot be imported")
    if not HAS_CUDA or INTERPRETER:
        pytest.skip("needs a CUDA device (compiled Triton kernels)")
    return "cuda"


def _expected_backend() -> str:
    return "triton-interpreter" if INTERPRETER else "triton"


def _pair(shape, device, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g).to(device=device, dtype=dtype) for _ in range(2))


def _grads(fn, *inputs, grad_out):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    fn(*leaves).backward(grad_out)
    return [t.grad for t in leaves]


def _smooth_disp(n, h, w, device, seed=0, amplitude=3.0):
    """A smooth field several pixels in size: offset + uniform strain + a slow wave (|grad| < 0.05)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    axial = amplitude + 0.02 * rows + 0.5 * torch.sin(0.05 * cols + phase)
    lateral = -0.5 * amplitude - 0.01 * cols + 0.3 * torch.cos(0.05 * rows + phase)
    return torch.stack((axial, lateral), dim=1).to(device)


# ----------------------------------------------------------------- interpreter


def test_interpreter_suite():
    """Run this module's cases with TRITON_INTERPRET=1 in a fresh process (CPU tensors)."""
    if INTERPRETER:
        pytest.skip("already running inside the interpreter subprocess")
    if not HAS_TRITON:
        pytest.skip("triton cannot be imported")
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        __file__,
        "-q",
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:nbval",
        "-m",
        "not gpu",
        "-W",
        "ignore::UserWarning",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"interpreter run failed:\n{tail}"
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 20, f"too few interpreter cases ran:\n{tail}"


def test_triton_on_cpu_without_interpreter_is_refused():
    if not HAS_TRITON or INTERPRETER:
        pytest.skip("only meaningful with triton importable and the interpreter off")
    f = torch.randn(1, 1, 3, 3)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.correlation(f, f, 1, 1, backend="triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.warp(f, torch.zeros(1, 2, 3, 3), backend="triton")


# ----------------------------------------------------------------- correlation

CORR_CASES = [
    ((1, 1, 5, 7), 0, 0),
    ((2, 3, 9, 6), 2, 1),
    ((2, 4, 7, 9), 1, 3),
    ((1, 5, 3, 4), 4, 4),  # radii larger than the image
    ((3, 2, 11, 5), 3, 2),
]


@pytest.mark.parametrize("shape,ra,rl", CORR_CASES)
def test_correlation_forward_matches_reference(device, shape, ra, rl):
    f1, f2 = _pair(shape, device)
    out = ops.correlation(f1, f2, ra, rl, backend="triton")
    assert ops.last_backend("correlation") == _expected_backend()
    torch.testing.assert_close(
        out, ops.correlation(f1, f2, ra, rl, backend="reference"), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("shape,ra,rl", CORR_CASES)
def test_correlation_gradients_match_reference(device, shape, ra, rl):
    f1, f2 = _pair(shape, device, seed=1)
    n, _, h, w = shape
    grad_out = torch.randn(n, (2 * ra + 1) * (2 * rl + 1), h, w).to(device)
    got = _grads(lambda a, b: ops.correlation(a, b, ra, rl, backend="triton"), f1, f2, grad_out=grad_out)
    ref = _grads(lambda a, b: ops.correlation(a, b, ra, rl, backend="reference"), f1, f2, grad_out=grad_out)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_correlation_half_precision(device, dtype):
    f1, f2 = _pair((2, 8, 6, 7), device)
    out = ops.correlation(f1.to(dtype), f2.to(dtype), 2, 1, backend="triton")
    assert out.dtype == dtype
    ref = ops.correlation(f1.to(dtype), f2.to(dtype), 2, 1, backend="reference")
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)
    grad_out = torch.randn_like(out)
    got = _grads(
        lambda a, b: ops.correlation(a, b, 2, 1, backend="triton"),
        f1.to(dtype),
        f2.to(dtype),
        grad_out=grad_out,
    )
    ref_g = _grads(
        lambda a, b: ops.correlation(a, b, 2, 1, backend="reference"),
        f1.to(dtype),
        f2.to(dtype),
        grad_out=grad_out,
    )
    for g, r in zip(got, ref_g):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), r.float(), atol=2e-2, rtol=2e-2)


def test_correlation_non_contiguous(device):
    f1 = torch.randn(2, 6, 5, 3).permute(0, 3, 1, 2).to(device)
    f2 = torch.randn(2, 3, 6, 10)[..., ::2].to(device)
    out = ops.correlation(f1, f2, 1, 2, backend="triton")
    torch.testing.assert_close(out, ops.correlation(f1, f2, 1, 2, backend="reference"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("splits", [2, 3, 7])
def test_correlation_channel_splits(device, splits):
    # Deep levels split the channel loop over programs; every split count gives the same result.
    from cdpkd.ops.correlation_triton import correlation_triton_backward, correlation_triton_forward

    f1, f2 = _pair((2, 7, 5, 4), device, seed=3)
    grad_out = torch.randn(2, 15, 5, 4).to(device)
    out = correlation_triton_forward(f1, f2, 1, 2, splits=splits)
    torch.testing.assert_close(out, ops.correlation(f1, f2, 1, 2, backend="reference"), atol=1e-5, rtol=1e-5)
    got = correlation_triton_backward(grad_out, f1, f2, 1, 2, splits=splits)
    ref = _grads(lambda a, b: ops.correlation(a, b, 1, 2, backend="reference"), f1, f2, grad_out=grad_out)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


def test_correlation_backward_is_deterministic(device):
    f1, f2 = _pair((2, 4, 9, 8), device, seed=2)
    grad_out = torch.randn(2, 45, 9, 8).to(device)
    first = _grads(lambda a, b: ops.correlation(a, b, 4, 2, backend="triton"), f1, f2, grad_out=grad_out)
    second = _grads(lambda a, b: ops.correlation(a, b, 4, 2, backend="triton"), f1, f2, grad_out=grad_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------- warp

WARP_SHAPES = [(2, 3, 7, 9), (1, 2, 12, 10), (1, 2, 1, 6), (2, 1, 5, 1)]


def _rough_disp(shape, device, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = shape
    return (torch.randn(n, 2, h, w, generator=g) * scale).to(device)


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("shape", WARP_SHAPES)
@pytest.mark.parametrize("scale", [0.4, 3.0])
def test_warp_matches_reference(device, padding, shape, scale):
    x = torch.randn(shape).to(device)
    disp = _rough_disp(shape, device, scale, seed=shape[2])
    out = ops.warp(x, disp, padding, backend="triton")
    assert ops.last_backend("warp") == _expected_backend()
    torch.testing.assert_close(out, ops.warp(x, disp, padding, backend="reference"), atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(out)
    got = _grads(lambda a, d: ops.warp(a, d, padding, backend="triton"), x, disp, grad_out=grad_out)
    ref = _grads(lambda a, d: ops.warp(a, d, padding, backend="reference"), x, disp, grad_out=grad_out)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)  # grad x
    torch.testing.assert_close(got[1], ref[1], atol=5e-5, rtol=1e-4)  # grad disp


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_smooth_large_field(device, padding):
    # Displacements of several pixels, smooth: the grad-x search window stays small.
    x = torch.randn(2, 3, 24, 16).to(device)
    disp = _smooth_disp(2, 24, 16, device)
    got = _grads(lambda a, d: ops.warp(a, d, padding, backend="triton"), x, disp, grad_out=torch.ones_like(x))
    ref = _grads(
        lambda a, d: ops.warp(a, d, padding, backend="reference"), x, disp, grad_out=torch.ones_like(x)
    )
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=5e-5, rtol=1e-4)


def test_warp_known_answers(device):
    x = torch.randn(1, 2, 10, 7).to(device)
    disp = torch.zeros(1, 2, 10, 7, device=device)
    disp[:, 0] = 2.0
    out = ops.warp(x, disp, backend="triton")
    torch.testing.assert_close(out[:, :, :8], x[:, :, 2:], atol=1e-6, rtol=0)
    assert out[:, :, 8:].abs().max() == 0
    disp = torch.zeros(1, 2, 10, 7, device=device)
    disp[:, 1] = 0.25
    out = ops.warp(x, disp, backend="triton")
    torch.testing.assert_close(out[..., :-1], 0.75 * x[..., :-1] + 0.25 * x[..., 1:], atol=1e-6, rtol=0)
    # Uniform 1 % axial strain on a ramp.
    h, w = 64, 8
    rows = torch.arange(h, dtype=torch.float32, device=device).view(h, 1)
    ramp = rows.expand(h, w).reshape(1, 1, h, w).contiguous()
    disp = torch.zeros(1, 2, h, w, device=device)
    disp[:, 0] = 0.01 * rows
    out = ops.warp(ramp, disp, backend="triton")
    inside = int((h - 1) / 1.01) + 1
    assert (out[0, 0, :inside] - 1.01 * rows[:inside]).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_warp_half_precision(device, dtype):
    x = torch.randn(2, 3, 8, 6).to(device)
    disp = _smooth_disp(2, 8, 6, device, amplitude=1.0)
    out = ops.warp(x.to(dtype), disp.to(dtype), backend="triton")
    assert out.dtype == dtype
    ref = ops.warp(x.to(dtype), disp.to(dtype), backend="reference")
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)
    got = _grads(
        lambda a, d: ops.warp(a, d, backend="triton"),
        x.to(dtype),
        disp.to(dtype),
        grad_out=torch.ones_like(out),
    )
    assert got[0].dtype == dtype and got[1].dtype == dtype


@pytest.mark.parametrize("splits", [2, 5])
def test_warp_channel_splits(device, splits):
    # Deep levels split the channel loop over programs; every split count gives the same result.
    from cdpkd.ops import warp_triton as wt

    x = torch.randn(2, 5, 6, 7).to(device)
    disp = _rough_disp(x.shape, device, 1.5, seed=4)
    grad_out = torch.randn_like(x)
    out = wt.warp_triton_forward(x, disp, "zeros", splits=splits)
    torch.testing.assert_close(out, ops.warp(x, disp, backend="reference"), atol=1e-5, rtol=1e-5)
    ref = _grads(lambda a, d: ops.warp(a, d, backend="reference"), x, disp, grad_out=grad_out)
    got_x = wt.warp_triton_backward_x(grad_out, disp, "zeros", x.dtype, splits=splits)
    got_d = wt.warp_triton_backward_disp(grad_out, x, disp, "zeros", splits=splits)
    torch.testing.assert_close(got_x, ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_d, ref[1], atol=5e-5, rtol=1e-4)


def test_warp_backward_is_deterministic(device):
    x = torch.randn(2, 3, 12, 10).to(device)
    disp = _rough_disp(x.shape, device, 2.0)
    grad_out = torch.randn_like(x)
    first = _grads(lambda a, d: ops.warp(a, d, backend="triton"), x, disp, grad_out=grad_out)
    second = _grads(lambda a, d: ops.warp(a, d, backend="triton"), x, disp, grad_out=grad_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_huge_displacements(device, padding):
    # Samples far outside (and a window clamped to the whole image) still match the reference.
    x = torch.randn(1, 2, 6, 5).to(device)
    disp = (torch.randn(1, 2, 6, 5) * 50.0).to(device)
    disp[0, 0, 2, 2] = 3e9  # absurd but finite
    grad_out = torch.randn_like(x)
    got = _grads(lambda a, d: ops.warp(a, d, padding, backend="triton"), x, disp, grad_out=grad_out)
    ref = _grads(lambda a, d: ops.warp(a, d, padding, backend="reference"), x, disp, grad_out=grad_out)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)


def test_warp_backward_rejects_non_finite_disp(device):
    x = torch.randn(1, 1, 4, 4, device=device, requires_grad=True)
    disp = torch.zeros(1, 2, 4, 4, device=device)
    disp[0, 0, 1, 1] = float("nan")
    out = ops.warp(x, disp, backend="triton")
    with pytest.raises(ValueError, match="NaN or Inf"):
        out.sum().backward()


# ------------------------------------------------- host-side pieces (no kernel launch)


def test_search_window_is_small_for_smooth_fields():
    if not HAS_TRITON:
        pytest.skip("triton cannot be imported")
    from cdpkd.ops.warp_triton import search_window

    # Uniform shift of many pixels: every contributor sits in a 3 x 3 window.
    assert search_window(torch.full((1, 2, 16, 16), 7.3), "zeros")[2:] == (3, 3)
    # 1 % axial strain over 2048 rows (up to 20 px): dev = 0.01 * 20 px, still 3 x 3.
    strain = torch.zeros(1, 2, 2048, 4)
    strain[:, 0] = 0.01 * torch.arange(2048.0).view(2048, 1)
    assert search_window(strain, "zeros")[2:] == (3, 3)
    assert max(search_window(_smooth_disp(2, 64, 32, "cpu", amplitude=8.0), "zeros")[2:]) <= 4
    # A rough field needs (and gets) a wide window, never wider than the image.
    ry, _, wy, _ = search_window(torch.randn(1, 2, 128, 128) * 3.0, "zeros")
    assert wy == int(2 * ry) + 3 and 10 < wy < 128
    jump = torch.zeros(1, 2, 8, 6)
    jump[0, 0, 0, 0] = 5.0  # one pixel samples 5 rows down, where e = 0: dev = 5
    jump[0, 1, 7, 0] = 5.0
    assert search_window(jump, "zeros")[2:] == (8, 6)  # 13 x 13 capped to the image


def _window_by_definition(disp: np.ndarray, border: bool) -> tuple[float, float]:
    """dev per axis from the module docstring's definition, pixel by pixel (small fields only)."""
    n, _, h, w = disp.shape
    dev = [0.0, 0.0]
    for b in range(n):
        for y in range(h):
            for x in range(w):
                pos = [y + (disp[b, 0, y, x] if h > 1 else 0.0), x + (disp[b, 1, y, x] if w > 1 else 0.0)]
                if border:
                    pos = [min(max(pos[0], 0.0), h - 1.0), min(max(pos[1], 0.0), w - 1.0)]
                e_q = (pos[0] - y, pos[1] - x)
                y0 = int(np.floor(min(max(pos[0], -2.0), h + 1.0)))
                x0 = int(np.floor(min(max(pos[1], -2.0), w + 1.0)))
                for ty, tx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
                    if 0 <= ty < h and 0 <= tx < w:
                        t_pos = [ty + (disp[b, 0, ty, tx] if h > 1 else 0.0), tx + (disp[b, 1, ty, tx] if w > 1 else 0.0)]
                        if border:
                            t_pos = [min(max(t_pos[0], 0.0), h - 1.0), min(max(t_pos[1], 0.0), w - 1.0)]
                        dev[0] = max(dev[0], abs(e_q[0] - (t_pos[0] - ty)))
                        dev[1] = max(dev[1], abs(e_q[1] - (t_pos[1] - tx)))
    return dev[0], dev[1]


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_search_window_matches_its_definition(padding):
    if not HAS_TRITON:
        pytest.skip("triton cannot be imported")
    from cdpkd.ops.warp_triton import _MARGIN, search_window

    g = torch.Generator().manual_seed(3)
    for n, h, w, scale in ((1, 7, 5, 0.3), (2, 9, 6, 2.0), (1, 1, 8, 4.0), (2, 6, 1, 9.0), (1, 12, 10, 25.0)):
        disp = torch.randn(n, 2, h, w, generator=g) * scale
        ry, rx, wy, wx = search_window(disp, padding)
        dev_y, dev_x = _window_by_definition(disp.double().numpy(), padding == "border")
        assert ry - _MARGIN == pytest.approx(dev_y, abs=1e-4) and rx - _MARGIN == pytest.approx(dev_x, abs=1e-4)
        assert (wy, wx) == (min(int(np.floor(2 * ry)) + 3, h), min(int(np.floor(2 * rx)) + 3, w))
    # every tap of an all-NaN field is "outside": the window must not silently stay 3 x 3
    with pytest.raises(ValueError, match="NaN or Inf"):
        search_window(torch.full((1, 2, 4, 4), float("nan")), padding)
    far = torch.zeros(1, 2, 4, 4)
    far[0, 0, 1, 1] = float("inf")
    if padding == "zeros":
        with pytest.raises(ValueError, match="NaN or Inf"):
            search_window(far, padding)
    else:  # border clamps the position into the image: a finite window
        assert search_window(far, padding)[2] <= 4


@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")
def test_kernels_compile_for_hopper():
    """Compile every kernel ahead of time for sm_90 (no GPU needed): catches errors the interpreter misses."""
    if not HAS_TRITON:
        pytest.skip("triton cannot be imported")
    if INTERPRETER:
        pytest.skip("interpreted kernels cannot be compiled")
    if HAS_CUDA:
        pytest.skip("real compilation is exercised by the CUDA cases")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import compile as triton_compile

    from cdpkd.ops import correlation_triton as ct
    from cdpkd.ops import warp_triton as wt

    def build(fn, signature, constexprs):
        sig = dict(signature, **{k: "constexpr" for k in constexprs})
        triton_compile(
            ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", 90, 32)
        )

    ints = {"C": "i32", "H": "i32", "W": "i32"}
    for ra, rl in [(4, 4), (8, 2)]:
        cfg = ct.launch_config(ra, rl)
        build(
            ct._corr_fwd_kernel,
            {
                "f1_ptr": "*bf16",
                "f2_ptr": "*bf16",
                "out_ptr": "*bf16",
                **ints,
                "inv_c": "fp32",
                "C_SPLIT": "i32",
            },
            {"RA": ra, "RL": rl, "DP": cfg["DP"], "BLOCK_P": cfg["BLOCK_P"]},
        )
        cfg = ct.launch_config(ra, rl, backward=True)
        ptrs = {k: "*fp32" for k in ("f1_ptr", "f2_ptr", "g_ptr", "g1_ptr", "g2_ptr")}
        build(
            ct._corr_bwd_kernel,
            {**ptrs, **ints, "inv_c": "fp32", "C_SPLIT": "i32"},
            {"RA": ra, "RL": rl, "DP": cfg["DP"], "BLOCK_P": cfg["BLOCK_P"]},
        )
    # Triton specializes integer arguments equal to 1 as constants: compile that case too.
    build(
        ct._corr_fwd_kernel,
        {"f1_ptr": "*fp32", "f2_ptr": "*fp32", "out_ptr": "*fp32", "W": "i32", "inv_c": "fp32"},
        {"C": 1, "H": 1, "C_SPLIT": 1, "RA": 1, "RL": 0, "DP": 4, "BLOCK_P": 64},
    )
    scales = {"scale_y": "fp32", "scale_x": "fp32"}
    split = {"C_SPLIT": "i32"}
    for border in (False, True):
        build(
            wt._warp_fwd_kernel,
            {"x_ptr": "*fp16", "d_ptr": "*fp32", "out_ptr": "*fp16", **ints, **scales, **split},
            {"BORDER": border, "BLOCK_P": 128},
        )
        build(
            wt._warp_bwd_disp_kernel,
            {
                "x_ptr": "*fp32",
                "d_ptr": "*fp32",
                "g_ptr": "*fp32",
                "gd_ptr": "*fp32",
                **ints,
                **scales,
                **split,
            },
            {"BORDER": border, "BLOCK_P": 128},
        )
        build(
            wt._warp_bwd_x_kernel,
            {
                "d_ptr": "*fp32",
                "g_ptr": "*fp32",
                "gx_ptr": "*fp32",
                **ints,
                **scales,
                "ry": "fp32",
                "rx": "fp32",
                "WY": "i32",
                "WX": "i32",
                "NWIN": "i32",
                **split,
            },
            {"BORDER": border, "WCHUNK": 16, "BLOCK_P": 128},
        )
    build(
        wt._warp_fwd_kernel,
        {"x_ptr": "*fp32", "d_ptr": "*fp32", "out_ptr": "*fp32", "C": "i32", **scales, **split},
        {"H": 1, "W": 1, "BORDER": False, "BLOCK_P": 128},
    )


# ------------------------------------------------------------- GPU (real shapes)


@pytest.mark.gpu
@pytest.mark.parametrize("ra,rl", [(4, 4), (4, 2), (8, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_correlation_realistic_shapes(gpu, ra, rl, dtype):
    f1, f2 = _pair((2, 32, 128, 64), gpu, dtype=dtype, seed=5)
    out = ops.correlation(f1, f2, ra, rl)  # auto -> triton on CUDA
    assert ops.last_backend("correlation") == "triton"
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(
        out.float(), ops.correlation(f1, f2, ra, rl, backend="reference").float(), atol=tol, rtol=tol
    )
    grad_out = torch.randn_like(out)
    got = _grads(lambda a, b: ops.correlation(a, b, ra, rl), f1, f2, grad_out=grad_out)
    again = _grads(lambda a, b: ops.correlation(a, b, ra, rl), f1, f2, grad_out=grad_out)
    ref = _grads(lambda a, b: ops.correlation(a, b, ra, rl, backend="reference"), f1, f2, grad_out=grad_out)
    for g, a, r in zip(got, again, ref):
        assert torch.equal(g, a)
        torch.testing.assert_close(g.float(), r.float(), atol=10 * tol, rtol=10 * tol)


@pytest.mark.gpu
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_gpu_warp_realistic_shapes(gpu, padding):
    x = torch.randn(2, 16, 512, 128, device=gpu)
    disp = _smooth_disp(2, 512, 128, gpu, amplitude=8.0)
    out = ops.warp(x, disp, padding)
    assert ops.last_backend("warp") == "triton"
    # grid_sample's normalized grid rounds positions by ~eps * size: compare loosely.
    torch.testing.assert_close(out, ops.warp(x, disp, padding, backend="reference"), atol=1e-3, rtol=1e-3)
    grad_out = torch.randn_like(x)
    got = _grads(lambda a, d: ops.warp(a, d, padding), x, disp, grad_out=grad_out)
    again = _grads(lambda a, d: ops.warp(a, d, padding), x, disp, grad_out=grad_out)
    ref = _grads(lambda a, d: ops.warp(a, d, padding, backend="reference"), x, disp, grad_out=grad_out)
    for g, a in zip(got, again):
        assert torch.equal(g, a)
    torch.testing.assert_close(got[0], ref[0], atol=1e-3, rtol=1e-3)
    # The disp gradient jumps where a position crosses an integer; that rounding difference
    # can flip a tap, so compare only samples clearly between pixels.
    rows = torch.arange(512, device=gpu, dtype=torch.float32).view(512, 1)
    cols = torch.arange(128, device=gpu, dtype=torch.float32).view(1, 128)
    frac_y = torch.frac(rows + disp[:, 0]).abs()
    frac_x = torch.frac(cols + disp[:, 1]).abs()
    clear = (frac_y - 0.5).abs() < 0.499
    clear &= (frac_x - 0.5).abs() < 0.499
    clear = clear.unsqueeze(1).expand_as(got[1])
    torch.testing.assert_close(got[1][clear], ref[1][clear], atol=1e-2, rtol=1e-3)


@pytest.mark.parametrize("which", ["x", "disp"])
def test_warp_partial_gradients(device, which):
    x = torch.randn(1, 2, 6, 5).to(device)
    disp = _smooth_disp(1, 6, 5, device, amplitude=1.0)
    x.requires_grad_(which == "x")
    disp.requires_grad_(which == "disp")
    ops.warp(x, disp, backend="triton").sum().backward()
    leaf, other = (x, disp) if which == "x" else (disp, x)
    ref = _grads(lambda a, d: ops.warp(a, d, backend="reference"), x, disp, grad_out=torch.ones_like(x))
    torch.testing.assert_close(leaf.grad, ref[0 if which == "x" else 1], atol=5e-5, rtol=1e-4)
    assert other.grad is None
