"""Backend choice for the ops and a record of which backend ran.

``"auto"`` picks Triton for CUDA tensors when Triton can be imported and the
PyTorch reference otherwise. ``"triton"`` on CPU tensors works only in Triton's
interpreter, i.e. when ``TRITON_INTERPRET=1`` was set before triton was first
imported (Triton decides per process, when ``@triton.jit`` runs; the tests use
a subprocess for this). After each call, ``last_backend(op)`` says what ran:
``"reference"``, ``"triton"`` or ``"triton-interpreter"``.

The environment variable ``CDPKD_OPS_BACKEND=reference`` (read once, at import) makes
``"auto"`` pick the reference on CUDA too: a way round Triton kernels that fail on a new
GPU or Triton release, without touching code. Unset or ``auto``: the rule above.
"""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "reference", "triton")

_last: dict[str, str] = {}


# Looked up once, without importing triton, and kept
# as a constant so torch.compile can trace the dispatch without graph breaks.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def _auto_from_environment() -> str:
    value = os.environ.get("CDPKD_OPS_BACKEND", "").strip().lower() or "auto"
    if value not in ("auto", "reference"):
        raise ValueError(f"CDPKD_OPS_BACKEND must be 'auto' or 'reference', got {value!r}")
    return value


# what backend="auto" means on CUDA tensors: "auto" (Triton when installed) or "reference"
_AUTO_ON_CUDA = _auto_from_environment()


def triton_available() -> bool:
    """Whether triton is installed here (a broken install fails at first use, with its own error)."""
    return _TRITON_INSTALLED


def triton_interpreted() -> bool:
    """Whether this process runs Triton kernels in the interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(op: str, backend: str, device: torch.device) -> str:
    """Map ``backend`` ("auto" | "reference" | "triton") to "reference" or "triton"."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        use_triton = device.type == "cuda" and triton_available() and _AUTO_ON_CUDA == "auto"
        return "triton" if use_triton else "reference"
    if backend == "triton" and not triton_available():
        raise RuntimeError(
            f"{op}: backend='triton' was requested but triton cannot be imported; "
            "install triton or use backend='reference'"
        )
    if backend == "triton" and device.type != "cuda" and not triton_interpreted():
        raise RuntimeError(
            f"{op}: backend='triton' needs CUDA tensors, got tensors on {device}; for CPU tensors "
            "set TRITON_INTERPRET=1 before triton is first imported (Triton's interpreter, slow)"
        )
    return backend


def exporting() -> bool:
    """True while a graph is captured for export (torch.export, ONNX, jit.trace).

    The ops then use their plain-torch reference so the graph holds only standard ops.
    """
    is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or is_exporting()


def record(op: str, backend: str) -> None:
    """Remember which backend ``op`` just ran on (``triton`` split by interpreter or not)."""
    if backend == "triton" and triton_interpreted():
        backend = "triton-interpreter"
    _last[op] = backend


def last_backend(op: str) -> str | None:
    """The backend the last call of ``op`` ("correlation" or "warp") ran, or None before any call.

    One of ``"reference"``, ``"triton"`` (compiled, CUDA) or ``"triton-interpreter"``.
    """
    return _last.get(op)


def describe_backends() -> dict[str, object]:
    """What ``backend="auto"`` picks on this machine, plus the last backend of each op."""
    cuda = torch.cuda.is_available()
    return {
        "cuda_available": cuda,
        "triton_available": triton_available(),
        "auto_on_cuda": "triton" if triton_available() and _AUTO_ON_CUDA == "auto" else "reference",
        "auto_on_cpu": "reference",
        "last": dict(_last),
    }
