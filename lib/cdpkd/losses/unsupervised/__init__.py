"""Unsupervised elastography losses: no ground truth, only the pre/post RF pair.

One small module per term, each a function with units and shapes in its
docstring; all differentiable, computed in float32 with autocast disabled
(AMP-safe), no host-device syncs:

- :func:`similarity_ncc` (similarity.py): 1 - mean local NCC between the pre
  frame and the post frame warped back by the displacement.
- :func:`smoothness` (smoothness.py): first/second-order finite-difference
  penalties, per component and direction; second order by default.
- :func:`incompressibility` (incompressibility.py): mean |eps_ax + eps_lat|.
- :func:`poisson_bound` (poisson.py): optional hinge on the effective
  Poisson's ratio -eps_lat / eps_ax.
- :func:`block_matching_consistency` (block_matching.py): optional; pulls each pixel's
  displacement toward the sub-sample peak of the windowed NCC around it (block matching's answer).
- :class:`UnsupervisedLoss` / :class:`UnsupervisedLossConfig` (combined.py):
  all terms at every pyramid output with level weights; returns a dict of
  named terms plus ``"total"``.

Conventions (DESIGN.md section 3): N x C x H x W, H axial (samples), W
lateral (lines); displacement N x 2 x H x W in samples / lines, channel 0
axial; strain dimensionless, compression negative.
"""

from .block_matching import block_matching_consistency
from .combined import COARSE_MODES, TERMS, UnsupervisedLoss, UnsupervisedLossConfig
from .incompressibility import incompressibility
from .poisson import poisson_bound, ratio_bounds
from .similarity import box_ncc, envelope, in_frame_mask, similarity_ncc
from .smoothness import smoothness

__all__ = [
    "COARSE_MODES",
    "TERMS",
    "UnsupervisedLoss",
    "UnsupervisedLossConfig",
    "block_matching_consistency",
    "box_ncc",
    "envelope",
    "in_frame_mask",
    "incompressibility",
    "poisson_bound",
    "ratio_bounds",
    "similarity_ncc",
    "smoothness",
]
