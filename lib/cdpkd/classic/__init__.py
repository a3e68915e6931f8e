"""Classical displacement trackers: the methods users would pick instead of a network.

- :func:`ncc_block_matching`: windowed normalised cross-correlation block
  matching, coarse to fine (envelope pyramid, then RF with warping passes),
  sub-sample peak by parabolic or cosine fit. Built on
  ``cdpkd.ops.correlation``, so it runs on the GPU (Triton) as well as on the
  CPU; numpy or torch in, the same type out.
- :func:`glue`: GLUE-style tracker (Hashemi & Rivaz, IEEE TUFFC 2017):
  dynamic-programming integer seed on one A-line, propagated to all lines,
  then global regularised sub-sample refinement of axial and lateral
  displacement as one sparse SPD system (scipy, preconditioned CG). CPU.

Both return displacement 2 x H x W (N x 2 x H x W for batched NCC input):
channel 0 axial in samples, channel 1 lateral in lines, Lagrangian on the
pre-frame grid (``post(y + d_ax, x + d_lat) ~ pre(y, x)``, the convention of
``cdpkd.ops.warp`` and of the simulator's ground truth). ``return_result=True``
gives a :class:`TrackerResult` with a quality map (peak NCC), the time and
diagnostics. Helpers: :func:`ncc_volume` (windowed NCC cost volume),
:func:`peak_offset` (sub-sample estimators), :func:`spline_warp` (cubic
B-spline warp used for RF).
"""

from ._common import TrackerResult
from .glue import glue
from .interp import spline_warp
from .ncc import ncc_block_matching
from .ncc_volume import box_sum, ncc_volume
from .pyramid import envelope
from .subsample import cosine_offset, parabolic_offset, peak_offset

__all__ = [
    "TrackerResult",
    "box_sum",
    "cosine_offset",
    "envelope",
    "glue",
    "ncc_block_matching",
    "ncc_volume",
    "parabolic_offset",
    "peak_offset",
    "spline_warp",
]
