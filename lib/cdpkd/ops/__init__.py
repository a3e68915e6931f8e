"""Correlation and warping ops: a PyTorch reference and Triton GPU kernels.

Public API:

- ``correlation(f1, f2, radius_axial, radius_lateral, *, backend="auto")``:
  N x (2ra+1)(2rl+1) x H x W local cost volume, mean over channels.
- ``warp(x, disp, padding="zeros", *, backend="auto")``: bilinear backward
  warp by a pixel displacement (channel 0 axial, 1 lateral).
- ``pixel_disp_to_grid(disp)``: the one pixel-to-``grid_sample`` converter.
- ``correlation_flops(f1_shape, ra, rl)``: 2 N C D H W; the same formula is
  registered with ``torch.utils.flop_counter`` for ``torch.ops.cdpkd.correlation``
  (and twice that for its backward op), so ``FlopCounterMode`` counts it.
- ``last_backend(op)``: "reference", "triton" or "triton-interpreter" for the
  last call of "correlation" / "warp"; ``describe_backends()`` for a summary.

``backend="auto"`` runs Triton on CUDA tensors when triton is installed, the
reference elsewhere; ``backend="triton"`` on CPU tensors needs
``TRITON_INTERPRET=1`` (Triton's interpreter, for tests). Triton backwards are
gathers without atomics, hence bit-reproducible. Eager calls go through the
custom ops ``torch.ops.cdpkd.correlation`` / ``cdpkd.warp_triton`` (opaque to
``torch.compile``); while exporting (torch.export, ONNX, jit.trace) the
plain-torch references are used. The kernel modules are imported on first use.
"""

from .correlation import correlation, correlation_flops
from .correlation_reference import correlation_reference, num_displacements
from .dispatch import describe_backends, last_backend, triton_available
from .warp import warp
from .warp_reference import pixel_disp_to_grid, warp_reference

__all__ = [
    "correlation",
    "correlation_flops",
    "correlation_reference",
    "describe_backends",
    "last_backend",
    "num_displacements",
    "pixel_disp_to_grid",
    "triton_available",
    "warp",
    "warp_reference",
]
