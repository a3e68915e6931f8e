"""Tissue incompressibility: axial + lateral strain ~ 0.

Soft tissue is nearly incompressible (Poisson's ratio ~0.495). Under plane
strain -- the 2-D model of the simulation -- the in-plane lateral strain is
-nu / (1 - nu) times the axial strain, ~ -0.98 eps_ax, so the in-plane area
change eps_ax + eps_lat is ~0. Lateral displacement is poorly observable in RF
(no lateral carrier, wide beam), so this term is what lets the axial
estimate (good) inform the lateral one (poor).
"""

from __future__ import annotations

import torch

from ._common import (
    PENALTIES,
    REDUCTIONS,
    check_choice,
    check_disp,
    check_positive,
    compute_dtype,
    full_precision,
    penalty,
    reduce,
)
from ._strain import strain_pair


def incompressibility_from_strains(
    eps_ax: torch.Tensor, eps_lat: torch.Tensor, penalty_kind: str = "l1", eps: float = 1e-3
) -> torch.Tensor:
    """Per-sample mean rho(eps_ax + eps_lat) from N x 1 x H x W strains (shape N)."""
    return penalty(eps_ax + eps_lat, penalty_kind, eps).mean(dim=(1, 2, 3))


def incompressibility(
    disp: torch.Tensor,
    window: int | tuple[int, int] = (9, 3),
    *,
    penalty_kind: str = "l1",
    eps: float = 1e-3,
    spacing: float | tuple[float, float] = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean |axial strain + lateral strain| (plane-strain incompressibility residual).

    Strains are least-squares slopes (:func:`cdpkd.metrics.ls_strain`) over
    small windows, so the term sees the strain a user would compute while
    staying local. Example: (eps * y, -eps * x) gives exactly 0; (eps * y, 0)
    gives |eps|.

    Args:
        disp: N x 2 x H x W, samples (axial) / lines (lateral).
        window: odd LS windows (axial samples, lateral lines) >= 3; default
            (9, 3): short enough to stay local, long enough not to amplify
            sample-to-sample noise. Clipped to the field size.
        penalty_kind: "l1" (default, the mean absolute residual), "l2" or
            "charbonnier" (scale ``eps``, dimensionless strain).
        eps: Charbonnier scale (strain units); unused otherwise.
        spacing: pixel spacing (axial, lateral) in full-resolution samples /
            lines (the level stride for a pyramid output).
        reduction: "mean" (0-d) or "none" (shape N).

    Returns:
        Dimensionless non-negative loss, float32 (float64 for float64 input),
        autocast disabled, differentiable.
    """
    fn = "incompressibility"
    check_disp(disp, fn)
    check_choice(penalty_kind, PENALTIES, fn, "penalty_kind")
    check_positive(eps, fn, "eps")
    check_choice(reduction, REDUCTIONS, fn, "reduction")
    with full_precision(disp.device):
        eps_ax, eps_lat = strain_pair(disp.to(compute_dtype(disp)), window, spacing, fn)
        return reduce(incompressibility_from_strains(eps_ax, eps_lat, penalty_kind, eps), reduction)
