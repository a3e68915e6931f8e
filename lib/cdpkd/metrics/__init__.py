"""cdpkd.metrics: strain estimation and image/tracking quality metrics.

Conventions (DESIGN.md section 3): arrays are ``(..., H, W)`` with H axial
(RF samples, depth) and W lateral (A-lines); displacement is N x 2 x H x W,
channel 0 axial in samples, channel 1 lateral in lines; strain is
dimensionless with compression negative.

Array types: every function takes torch tensors (kept on their device,
autograd intact) or numpy arrays; numpy in gives numpy out. ``ls_strain`` and
``local_ncc`` keep the input dtype (they double as loss terms); scalar
metrics accumulate and return float64 (float32 on MPS). Metrics
reduce over the last two (H, W) axes and keep the leading ones, so a batch
of N x 1 x H x W strain images gives N x 1 values and one H x W image a 0-d
value. Bad input (empty mask, mis-shaped mask, shape mismatch, NaN/Inf,
bad window) raises ``ValueError`` with a message naming the problem.

Modules:
    strain   least-squares strain (``ls_strain``, ``axial_strain``, ``lateral_strain``)
    quality  SNRe, CNR (linear and dB), contrast ratio
    errors   displacement RMSE per component, endpoint error, strain RMSE
    ncc      global / local NCC, NCC after motion compensation (``warp_ncc``)
    masks    rectangle, (elliptical) disk and ring ROIs, erosion
"""

from .errors import DispRMSE, disp_rmse, epe, strain_rmse
from .masks import disk_mask, erode, rect_mask, ring_mask
from .ncc import local_ncc, ncc, warp_ncc
from .quality import cnr_db, cnr_linear, contrast_ratio, snre
from .strain import axial_strain, lateral_strain, ls_slope_kernel, ls_strain

__all__ = [
    "DispRMSE",
    "axial_strain",
    "cnr_db",
    "cnr_linear",
    "contrast_ratio",
    "disk_mask",
    "disp_rmse",
    "epe",
    "erode",
    "lateral_strain",
    "local_ncc",
    "ls_slope_kernel",
    "ls_strain",
    "ncc",
    "rect_mask",
    "ring_mask",
    "snre",
    "strain_rmse",
    "warp_ncc",
]
