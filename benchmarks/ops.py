"""Speed and achieved memory bandwidth of the correlation and warp ops at the networks' shapes.

Shapes: every pyramid level of the teacher (channels 16/32/64/96/128/196; the
first two levels at full resolution, then H and W halve per level) for a full
2048 x 256 RF pair (batch 1) and for training crops (256 x 128, batch 8);
correlation radii (4, 4), (4, 2) and (8, 2).

For each backend: median forward time and median forward+backward time
(CUDA events on GPU, perf_counter on CPU), the bytes the ideal algorithm
moves (forward: read f1 and f2 once, write the output once; backward: read
the output gradient, f1 and f2, write both input gradients), the achieved
bandwidth in GB/s and its fraction of the device's peak (null when the peak
is unknown, e.g. on CPU). Results go to benchmarks/results/ops_<device>.json.

    python benchmarks/ops.py --device cuda
    python benchmarks/ops.py --device cpu --quick --repeats 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import cdpkd.ops as ops
from cdpkd.atomic import write_json
from cdpkd.runtime import cpu_description, file_slug, provenance

TEACHER_CHANNELS = (16, 32, 64, 96, 128, 196)
FULL_RES_LEVELS = 2
RADII = ((4, 4), (4, 2), (8, 2))
INPUTS = {"rf_pair": (1, 2048, 256), "crops": (8, 256, 128)}  # name: (batch, H, W)

# Peak DRAM bandwidth in GB/s by device-name pattern (first match wins; vendor data sheets).
PEAK_GBS: tuple[tuple[str, float], ...] = (
    (r"H200", 4800.0),
    (r"H100.*NVL", 3900.0),
    (r"H100.*PCIe", 2000.0),
    (r"H100", 3350.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (r"A100.*(80GB.*PCIe|PCIE-80GB)", 1935.0),
    (r"A100.*SXM4-80GB", 2039.0),
    (r"A100", 1555.0),  # 40 GB SXM4 / PCIe
    (r"L40S", 864.0),
    (r"\bL4\b", 300.0),
    (r"\bA10\b", 600.0),
    (r"RTX 4090", 1008.0),
    (r"V100", 900.0),
    (r"\bT4\b", 320.0),
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def peak_bandwidth_gbs(device_name: str) -> float | None:
    """Known peak memory bandwidth for a device name, or None."""
    for pattern, gbs in PEAK_GBS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return gbs
    return None


def pyramid(batch: int, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """N x C x H x W of every teacher pyramid level for an input of H x W."""
    shapes = []
    for level, c in enumerate(TEACHER_CHANNELS):
        scale = 2 ** max(0, level - (FULL_RES_LEVELS - 1))
        shapes.append((batch, c, max(1, h // scale), max(1, w // scale)))
    return shapes


def timer(device: torch.device, fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def correlation_bytes(shape: tuple[int, ...], d: int, elem: int) -> tuple[int, int]:
    """Ideal (forward, backward) bytes of the correlation."""
    n, c, h, w = shape
    feat, vol = n * c * h * w, n * d * h * w
    return (2 * feat + vol) * elem, (vol + 4 * feat) * elem


def warp_bytes(shape: tuple[int, ...], elem: int) -> tuple[int, int]:
    """Ideal (forward, backward) bytes of the warp (displacement in the same dtype)."""
    n, c, h, w = shape
    img, disp = n * c * h * w, 2 * n * h * w
    return (2 * img + disp) * elem, (3 * img + 2 * disp) * elem


def smooth_disp(n: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A plausible field: 2 % axial strain plus a small lateral offset (pixels)."""
    rows = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1).expand(n, h, w)
    axial = 0.02 * rows
    lateral = torch.full_like(axial, 0.3)
    return torch.stack((axial, lateral), dim=1).to(dtype)


def measure(
    op: str,
    backend: str,
    shape: tuple[int, int, int, int],
    radius: tuple[int, int] | None,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    peak: float | None,
) -> dict[str, object]:
    n, c, h, w = shape
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
    elem = a.element_size()
    if op == "correlation":
        ra, rl = radius
        b = torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)

        def forward():
            return ops.correlation(a, b, ra, rl, backend=backend)

        fwd_bytes, bwd_bytes = correlation_bytes(shape, ops.num_displacements(ra, rl), elem)
        inputs = (a, b)
    else:
        disp = smooth_disp(n, h, w, device, dtype).requires_grad_(True)

        def forward():
            return ops.warp(a, disp, backend=backend)

        fwd_bytes, bwd_bytes = warp_bytes(shape, elem)
        inputs = (a, disp)
    grad_out = torch.randn_like(forward().detach())

    def forward_backward():
        torch.autograd.grad(forward(), inputs, grad_out)

    with torch.no_grad():
        fwd_ms = timer(device, forward, repeats)
    fwd_bwd_ms = timer(device, forward_backward, repeats)
    ran = ops.last_backend(op)

    def gbs(nbytes: int, ms: float) -> float | None:
        return nbytes / (ms * 1e-3) / 1e9 if ms > 0 else None

    def frac(x: float | None) -> float | None:
        return x / peak if (x is not None and peak) else None

    fwd_gbs, fwd_bwd_gbs = gbs(fwd_bytes, fwd_ms), gbs(fwd_bytes + bwd_bytes, fwd_bwd_ms)
    bwd_ms = fwd_bwd_ms - fwd_ms
    bwd_gbs = gbs(bwd_bytes, bwd_ms) if bwd_ms > 0 else None
    return {
        "op": op,
        "backend": ran,
        "shape": list(shape),
        "radius": list(radius) if radius else None,
        "dtype": str(dtype).replace("torch.", ""),
        "fwd_ms": fwd_ms,
        "fwd_bwd_ms": fwd_bwd_ms,
        "bwd_ms_derived": bwd_ms,
        "ideal_bytes_fwd": fwd_bytes,
        "ideal_bytes_bwd": bwd_bytes,
        "fwd_gbs": fwd_gbs,
        "fwd_bwd_gbs": fwd_bwd_gbs,
        "bwd_gbs_derived": bwd_gbs,
        "fwd_frac_peak": frac(fwd_gbs),
        "fwd_bwd_frac_peak": frac(fwd_bwd_gbs),
        "bwd_frac_peak_derived": frac(bwd_gbs),
    }


def add_speedups(results: list[dict[str, object]]) -> None:
    """Attach the Triton/reference time ratio to each Triton row (same op, shape, radius, dtype)."""
    key = lambda r: (r["op"], r["input"], r["level"], str(r["radius"]), r["dtype"])  # noqa: E731
    ref = {key(r): r for r in results if r["backend"] == "reference"}
    for r in results:
        base = ref.get(key(r))
        if r["backend"] != "reference" and base:
            r["speedup_fwd_vs_reference"] = base["fwd_ms"] / r["fwd_ms"]
            r["speedup_fwd_bwd_vs_reference"] = base["fwd_bwd_ms"] / r["fwd_bwd_ms"]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--quick", action="store_true", help="crops only, radius (4, 2): a reduced set")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per case (default 20 GPU, 3 CPU)"
    )
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--ops", default="correlation,warp", help="comma-separated: correlation,warp")
    parser.add_argument(
        "--out", type=Path, default=None, help="output JSON (default benchmarks/results/ops_<device>.json)"
    )
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    wanted = [o.strip() for o in args.ops.split(",") if o.strip()]
    if not set(wanted) <= {"correlation", "warp"}:
        parser.error(f"--ops must name correlation and/or warp, got {args.ops!r}")
    backends = ["reference"] + (["triton"] if device.type == "cuda" and ops.triton_available() else [])

    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
        peak = peak_bandwidth_gbs(device_name)
    else:
        device_name = "cpu " + cpu_description()
        peak = None
    inputs = {"crops": INPUTS["crops"]} if args.quick else INPUTS
    radii = ((4, 2),) if args.quick else RADII

    results: list[dict[str, object]] = []
    for input_name, (batch, h, w) in inputs.items():
        for level, shape in enumerate(pyramid(batch, h, w)):
            cases = [("correlation", r) for r in radii if "correlation" in wanted]
            cases += [("warp", None)] if "warp" in wanted else []
            for op, radius in cases:
                for backend in backends:
                    row = measure(op, backend, shape, radius, device, dtype, repeats, peak)
                    row.update({"input": input_name, "level": level})
                    results.append(row)
                    gbs = row["fwd_gbs"] or 0.0
                    print(
                        f"{op:11s} {input_name:7s} L{level} {str(tuple(shape)):22s} r={radius} "
                        f"{row['backend']:10s} fwd {row['fwd_ms']:9.3f} ms ({gbs:7.1f} GB/s)  "
                        f"fwd+bwd {row['fwd_bwd_ms']:9.3f} ms",
                        flush=True,
                    )
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    add_speedups(results)

    report = {
        **provenance(),
        "benchmark": "ops",
        "device_name": device_name,
        "peak_bandwidth_gbs": peak,
        "config": {
            "device": args.device,
            "quick": args.quick,
            "repeats": repeats,
            "dtype": args.dtype,
            "threads": torch.get_num_threads(),
            "teacher_channels": list(TEACHER_CHANNELS),
            "inputs": {k: list(v) for k, v in inputs.items()},
            "radii": [list(r) for r in radii],
            "bytes_model": "ideal: fwd reads inputs once and writes output once; bwd reads grad_out and "
            "inputs, writes input grads; bwd_* = fwd_bwd - fwd (derived)",
        },
        "results": results,
    }
    out = args.out or Path(__file__).resolve().parent / "results" / f"ops_{file_slug(device_name)}.json"
    write_json(out, report)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
