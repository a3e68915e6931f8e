"""cdpkd.losses: training losses.

Sub-packages, one per family:

- ``unsupervised``: similarity (local NCC after motion compensation),
  smoothness, incompressibility, Poisson bound and the multi-scale
  combinator :class:`UnsupervisedLoss`.
- ``distill`` (to come): distillation losses (output, features, attention,
  imitation, level selection, adaptation vectors).

The unsupervised API is re-exported here for convenience.
"""

from .unsupervised import (
    UnsupervisedLoss,
    UnsupervisedLossConfig,
    incompressibility,
    poisson_bound,
    similarity_ncc,
    smoothness,
)

__all__ = [
    "UnsupervisedLoss",
    "UnsupervisedLossConfig",
    "incompressibility",
    "poisson_bound",
    "similarity_ncc",
    "smoothness",
]
