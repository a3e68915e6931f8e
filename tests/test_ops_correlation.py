"""Reference correlation: known answers against a naive loop, gradients, dispatch, export, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import cdpkd.ops as ops
from cdpkd.ops.correlation_reference import correlation_reference


def naive_correlation(f1: torch.Tensor, f2: torch.Tensor, ra: int, rl: int) -> torch.Tensor:
    """Straight from the definition, one pixel and displacement at a time (float64)."""
    n, c, h, w = f1.shape
    out = torch.zeros(n, (2 * ra + 1) * (2 * rl + 1), h, w, dtype=torch.float64)
    for dy in range(-ra, ra + 1):
        for dx in range(-rl, rl + 1):
            k = (dy + ra) * (2 * rl + 1) + (dx + rl)
            for y in range(h):
                for x in range(w):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        prod = f1[:, :, y, x].double() * f2[:, :, y + dy, x + dx].double()
                        out[:, k, y, x] = prod.sum(dim=1) / c
    return out


RADII = [(0, 0), (0, 2), (1, 0), (1, 1), (2, 3), (3, 1), (4, 4)]
SHAPES = [(1, 1, 5, 7), (2, 3, 9, 6), (3, 4, 4, 11)]


@pytest.mark.parametrize("ra,rl", RADII)
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_naive(shape, ra, rl):
    g = torch.Generator().manual_seed(hash((shape, ra, rl)) % 2**31)
    f1 = torch.randn(shape, generator=g)
    f2 = torch.randn(shape, generator=g)
    expected = naive_correlation(f1, f2, ra, rl)
    out = ops.correlation(f1, f2, ra, rl, backend="reference")
    assert out.shape == (shape[0], (2 * ra + 1) * (2 * rl + 1), shape[2], shape[3])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=1e-5)
    # The export-friendly variant computes the same thing.
    torch.testing.assert_close(correlation_reference(f1, f2, ra, rl).double(), expected, atol=1e-6, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    ra=st.integers(0, 3),
    rl=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_reference_matches_naive_random_shapes(n, c, h, w, ra, rl, seed):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    f2 = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    out = ops.correlation(f1, f2, ra, rl, backend="reference")
    torch.testing.assert_close(out, naive_correlation(f1, f2, ra, rl))


def test_zero_radius_is_channel_mean_of_product():
    f1, f2 = torch.randn(2, 5, 4, 3), torch.randn(2, 5, 4, 3)
    out = ops.correlation(f1, f2, 0, 0)
    torch.testing.assert_close(out[:, 0], (f1 * f2).mean(dim=1))


def test_channel_index_convention():
    # A single bright pixel in f2 at (3, 4); f1 all ones: channel k lights up at (3 - dy, 4 - dx).
    f1 = torch.ones(1, 1, 8, 9)
    f2 = torch.zeros(1, 1, 8, 9)
    f2[0, 0, 3, 4] = 1.0
    ra, rl = 2, 1
    out = ops.correlation(f1, f2, ra, rl)
    for dy in range(-ra, ra + 1):
        for dx in range(-rl, rl + 1):
            k = (dy + ra) * (2 * rl + 1) + (dx + rl)
            assert out[0, k, 3 - dy, 4 - dx] == 1.0
            assert out[0, k].sum() == 1.0


@pytest.mark.parametrize("ra,rl", [(0, 0), (1, 2), (2, 1)])
def test_gradcheck_custom_op_backward(ra, rl):
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    f2 = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ops.correlation(a, b, ra, rl, backend="reference"), (f1, f2))


def test_gradcheck_export_variant():
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    f2 = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: correlation_reference(a, b, 1, 2), (f1, f2))


def test_half_precision_inputs_keep_dtype_and_accuracy():
    f1, f2 = torch.randn(2, 8, 6, 5), torch.randn(2, 8, 6, 5)
    exact = ops.correlation(f1, f2, 2, 1)
    for dtype in (torch.float16, torch.bfloat16):
        out = ops.correlation(f1.to(dtype), f2.to(dtype), 2, 1)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), exact, atol=3e-2, rtol=3e-2)


def test_mixed_dtypes_are_promoted():
    f1, f2 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    out = ops.correlation(f1.half(), f2, 1, 1)
    assert out.dtype == torch.float32


def test_non_contiguous_inputs():
    f1 = torch.randn(2, 6, 7, 3).permute(0, 3, 1, 2)  # 2 x 3 x 6 x 7 view, channels last
    f2 = torch.randn(2, 3, 6, 14)[..., ::2]  # strided view
    out = ops.correlation(f1, f2, 1, 1)
    torch.testing.assert_close(out, ops.correlation(f1.contiguous(), f2.contiguous(), 1, 1))


def test_auto_backend_on_cpu_is_reference_and_reported():
    f = torch.randn(1, 2, 3, 3)
    ops.correlation(f, f, 1, 1)
    assert ops.last_backend("correlation") == "reference"
    info = ops.describe_backends()
    assert info["auto_on_cpu"] == "reference"
    assert info["last"]["correlation"] == "reference"
    assert set(info) >= {"cuda_available", "triton_available", "auto_on_cuda"}


def test_flops_formula_and_flop_counter():
    assert ops.correlation_flops((2, 3, 5, 7), 1, 2) == 2 * 2 * 3 * 15 * 5 * 7
    f1 = torch.randn(2, 4, 6, 5, requires_grad=True)
    f2 = torch.randn(2, 4, 6, 5, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        ops.correlation(f1, f2, 2, 1).sum().backward()
    fwd = ops.correlation_flops(f1.shape, 2, 1)
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    assert counts["cdpkd.correlation"] == fwd
    assert counts["cdpkd.correlation_backward"] == 2 * fwd


class _CorrModel(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ops.correlation(a, b, 2, 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_export_uses_only_standard_ops():
    args = (torch.randn(1, 3, 6, 5), torch.randn(1, 3, 6, 5))
    model = _CorrModel()
    program = torch.export.export(model, args)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("cdpkd" in t for t in targets), targets
    torch.testing.assert_close(program.module()(*args), model(*args))
    traced = torch.jit.trace(model, args)
    torch.testing.assert_close(traced(*args), model(*args))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export(tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed; ONNX export not checked")
    args = (torch.randn(1, 3, 6, 5), torch.randn(1, 3, 6, 5))
    path = tmp_path / "corr.onnx"
    torch.onnx.export(_CorrModel(), args, str(path), dynamo=False, opset_version=17)
    onnx.checker.check_model(onnx.load(str(path)))


@pytest.mark.parametrize(
    "f1,f2,ra,rl,match",
    [
        (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 5), 1, 1, "same shape"),
        (torch.randn(2, 4, 4), torch.randn(2, 4, 4), 1, 1, "4-D"),
        (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4), -1, 1, "radius_axial must be non-negative"),
        (torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4), 1, -2, "radius_lateral must be non-negative"),
        (
            torch.randn(1, 2, 4, 4),
            torch.randn(1, 2, 4, 4),
            1.5,
            1,
            "radius_axial must be a non-negative integer",
        ),
        (
            torch.randn(1, 2, 4, 4),
            torch.randn(1, 2, 4, 4),
            True,
            1,
            "radius_axial must be a non-negative integer",
        ),
        (
            torch.ones(1, 2, 4, 4, dtype=torch.int64),
            torch.ones(1, 2, 4, 4, dtype=torch.int64),
            1,
            1,
            "floating point",
        ),
        (torch.randn(1, 0, 4, 4), torch.randn(1, 0, 4, 4), 1, 1, "must not be empty"),
        ([[1.0]], torch.randn(1, 2, 4, 4), 1, 1, "f1 must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_value_error(f1, f2, ra, rl, match):
    with pytest.raises(ValueError, match=match):
        ops.correlation(f1, f2, ra, rl)


def test_unknown_backend_raises():
    f = torch.randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.correlation(f, f, 1, 1, backend="cuda")


def test_environment_can_make_auto_use_the_reference_on_cuda(monkeypatch):
    from cdpkd.ops import dispatch

    cuda = torch.device("cuda")  # a device object only: no GPU is touched
    monkeypatch.setattr(dispatch, "_AUTO_ON_CUDA", "reference")
    assert dispatch.resolve_backend("correlation", "auto", cuda) == "reference"
    assert dispatch.describe_backends()["auto_on_cuda"] == "reference"
    monkeypatch.setattr(dispatch, "_AUTO_ON_CUDA", "auto")
    expected = "triton" if dispatch.triton_available() else "reference"
    assert dispatch.resolve_backend("correlation", "auto", cuda) == expected


@pytest.mark.parametrize(("value", "ok"), [("reference", True), ("auto", True), ("", True), ("cuda", False)])
def test_ops_backend_environment_variable_is_read_and_checked(value, ok):
    import os
    import subprocess
    import sys

    code = "import torch; from cdpkd.ops import dispatch; print(dispatch.resolve_backend('w', 'auto', torch.device('cuda')))"
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, CDPKD_OPS_BACKEND=value),
                          capture_output=True, text=True, timeout=120)
    if not ok:
        assert proc.returncode != 0 and "CDPKD_OPS_BACKEND must be 'auto' or 'reference'" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    if value == "reference":
        assert proc.stdout.strip() == "reference"
