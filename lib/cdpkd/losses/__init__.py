"""cdpkd.losses: training losses.

Sub-packages, one per family:

- ``unsupervised``: similarity (local NCC after motion compensation),
  smoothness, incompressibility, Poisson bound and the multi-scale
  combinator :class:`UnsupervisedLoss`.
- ``distill``: distillation losses (output, features, attention,
  imitation, level selection, adaptation vectors), one module per method,
  with the registry ``DISTILLERS`` and :func:`build_distiller`.

The unsupervised API and the distillation entry points are re-exported here
for convenience.
"""

from .distill import DISTILLERS, build_distiller, feature_channels
from .unsupervised import (
    UnsupervisedLoss,
    UnsupervisedLossConfig,
    incompressibility,
    poisson_bound,
    similarity_ncc,
    smoothness,
)

__all__ = [
    "DISTILLERS",
    "UnsupervisedLoss",
    "UnsupervisedLossConfig",
    "build_distiller",
    "feature_channels",
    "incompressibility",
    "poisson_bound",
    "similarity_ncc",
    "smoothness",
]
