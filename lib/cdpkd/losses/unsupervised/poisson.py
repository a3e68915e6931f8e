"""Optional bound on the effective Poisson's ratio seen in the estimated strains.

The measured ratio r = -eps_lat / eps_ax relates to Poisson's ratio nu by

- ``model="plane_strain"`` (the 2-D simulation's model, and the model behind
  the incompressibility term): r = nu / (1 - nu), so nu in [0.3, 0.5] means
  r in [0.43, 1.0] (r = 1 at nu = 0.5, consistent with eps_ax + eps_lat = 0);
- ``model="apparent"`` (uniaxial stress, e.g. free-hand data where the tissue
  also bulges out of plane): r = nu directly.

Using the apparent bound on plane-strain data would fight the
incompressibility term (r ~ 0.98 > 0.5), hence the plane-strain default.
The ratio is meaningful only where the axial strain is well above its noise,
so pixels with |eps_ax| < ``min_axial_strain`` are left out (a detached gate).
"""

from __future__ import annotations

import torch

from ._common import (
    REDUCTIONS,
    check_choice,
    check_disp,
    check_positive,
    compute_dtype,
    full_precision,
    reduce,
)
from ._strain import strain_pair

POISSON_MODELS: tuple[str, ...] = ("plane_strain", "apparent")


def ratio_bounds(nu_min: float, nu_max: float, model: str) -> tuple[float, float]:
    """Bounds on r = -eps_lat / eps_ax equivalent to nu in [nu_min, nu_max] under ``model``."""
    if model == "plane_strain":
        return nu_min / (1.0 - nu_min), nu_max / (1.0 - nu_max)
    return nu_min, nu_max


def poisson_from_strains(
    eps_ax: torch.Tensor,
    eps_lat: torch.Tensor,
    r_min: float,
    r_max: float,
    min_axial_strain: float,
) -> torch.Tensor:
    """Per-sample mean hinge on r = -eps_lat / eps_ax over pixels with |eps_ax| >= min (shape N)."""
    meaningful = (eps_ax.detach().abs() >= min_axial_strain).to(eps_ax.dtype)
    # Safe denominator: pixels below the gate get 1 (their value is masked out anyway), so
    # neither the forward nor the backward pass ever divides by ~0.
    denom = torch.where(meaningful > 0, eps_ax, torch.ones_like(eps_ax))
    ratio = -eps_lat / denom
    hinge = torch.relu(r_min - ratio) + torch.relu(ratio - r_max)
    count = meaningful.sum(dim=(1, 2, 3))
    return (hinge * meaningful).sum(dim=(1, 2, 3)) / count.clamp_min(1.0)


def poisson_bound(
    disp: torch.Tensor,
    nu_min: float = 0.3,
    nu_max: float = 0.5,
    *,
    model: str = "plane_strain",
    window: int | tuple[int, int] = (9, 3),
    min_axial_strain: float = 1e-3,
    spacing: float | tuple[float, float] = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hinge penalty where the effective Poisson's ratio leaves [nu_min, nu_max].

    penalty = mean over meaningful pixels of relu(r_min - r) + relu(r - r_max),
    r = -eps_lat / eps_ax, with [r_min, r_max] the image of [nu_min, nu_max]
    under ``model`` (see the module docstring). Zero inside the range; grows
    linearly with the ratio's excursion outside it.

    Args:
        disp: N x 2 x H x W, samples (axial) / lines (lateral).
        nu_min, nu_max: Poisson's ratio bounds, 0 <= nu_min <= nu_max < 1 (plane
            strain) / <= 1 (apparent). Default [0.3, 0.5]: soft tissue sits near
            0.5; 0.3 leaves room for compressible (e.g. fatty, porous) media.
        model: "plane_strain" (default) or "apparent".
        window: odd LS strain windows (axial samples, lateral lines).
        min_axial_strain: |eps_ax| below which the ratio is too noisy to use
            (dimensionless; default 1e-3 = 0.1 %, below the 0.5-3 % applied strains).
        spacing: pixel spacing (axial, lateral) in full-resolution samples / lines.
        reduction: "mean" (0-d) or "none" (shape N).

    Returns:
        Dimensionless non-negative loss (0 for a sample with no meaningful
        pixel), float32 (float64 for float64 input), differentiable.
    """
    fn = "poisson_bound"
    check_disp(disp, fn)
    check_choice(model, POISSON_MODELS, fn, "model")
    check_positive(nu_min, fn, "nu_min", allow_zero=True)
    check_positive(nu_max, fn, "nu_max", allow_zero=True)
    upper = 1.0 if model == "apparent" else 1.0 - 1e-6
    if not nu_min <= nu_max <= upper:
        raise ValueError(
            f"{fn}: need 0 <= nu_min <= nu_max {'<=' if model == 'apparent' else '<'} 1, got [{nu_min}, {nu_max}]"
        )
    check_positive(min_axial_strain, fn, "min_axial_strain")
    check_choice(reduction, REDUCTIONS, fn, "reduction")
    r_min, r_max = ratio_bounds(nu_min, nu_max, model)
    with full_precision(disp.device):
        eps_ax, eps_lat = strain_pair(disp.to(compute_dtype(disp)), window, spacing, fn)
        return reduce(poisson_from_strains(eps_ax, eps_lat, r_min, r_max, min_axial_strain), reduction)
