"""Displacement smoothness: penalties on first or second finite differences.

Why second order is the natural default in elastography: the signal of
interest is the strain, the *first* derivative of the displacement. A
first-order penalty pulls the axial derivative of the axial displacement --
the axial strain itself -- toward zero, i.e. it biases every strain image
toward "no compression" and flattens lesion contrast. A second-order penalty
is zero for any uniform strain field (a displacement linear in position) and
only penalises changes of strain, so it smooths noise without biasing the
strain level. The same holds for the lateral component (lateral strain ~
-axial strain under near-incompressibility). First order remains available
(e.g. for the lateral component's axial derivative, or for comparison).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

from ._common import (
    PENALTIES,
    REDUCTIONS,
    check_choice,
    check_disp,
    check_positive,
    compute_dtype,
    full_precision,
    pair_of_floats,
    pair_of_ints,
    penalty,
    reduce,
)

Weights = float | tuple[float, float] | tuple[tuple[float, float], tuple[float, float]]


def smoothness_weights(
    value: object, fn: str = "smoothness"
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Normalise smoothness weights to ((ax_d_ax, ax_d_lat), (lat_d_ax, lat_d_lat)).

    Accepts one number (all four), an (axial component, lateral component)
    pair (same weight along both directions), or a 2 x 2 nested pair
    ``[component][direction]``. Weights are >= 0.
    """
    is_num = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if is_num:
        a = check_positive(value, fn, "weights_axial_lateral", allow_zero=True)
        return ((a, a), (a, a))
    if isinstance(value, Sequence) and len(value) == 2:
        rows = []
        for row in value:
            if isinstance(row, numbers.Real) and not isinstance(row, bool):
                v = check_positive(row, fn, "weights_axial_lateral", allow_zero=True)
                rows.append((v, v))
            else:
                pair = pair_of_floats(row, fn, "weights_axial_lateral", positive=False)
                if min(pair) < 0:
                    raise ValueError(f"{fn}: weights_axial_lateral must be >= 0, got {value!r}")
                rows.append(pair)
        return (rows[0], rows[1])
    raise ValueError(
        f"{fn}: weights_axial_lateral must be a number, an (axial, lateral) pair or a 2 x 2 "
        f"[component][direction] nested pair, got {value!r}"
    )


def _lagged_diff(x: torch.Tensor, order: int, lag: int, dim: int) -> torch.Tensor:
    """The ``order``-th forward difference of ``x`` along ``dim`` between values ``lag`` apart.

    Lag 1 is ``torch.diff`` itself: same values and the same gradients to the last bit, so a
    network trained with the default loss is the one its cached artifact key names (the sliced
    form's backward rounds differently, and training amplifies that).
    """
    if lag == 1:
        return torch.diff(x, n=order, dim=dim)
    for _ in range(order):
        n = x.shape[dim] - lag
        x = x.narrow(dim, lag, n) - x.narrow(dim, 0, n)
    return x


def smoothness(
    disp: torch.Tensor,
    order: int | tuple[int, int] = 2,
    weights_axial_lateral: Weights = ((1.0, 1.0), (1.0, 1.0)),
    *,
    penalty_kind: str = "charbonnier",
    eps: float = 1e-3,
    spacing: float | tuple[float, float] = 1.0,
    lag: int | tuple[int, int] = 1,
    reduction: str = "mean",
) -> torch.Tensor:
    """Weighted mean penalty of the order-k finite differences of the displacement.

    smooth = sum_{c in (ax, lat)} sum_{d in (ax, lat)} w[c][d] * mean(rho(D_d^k u_c / (L_d s_d)^k))

    with D_d^k the k-th forward difference along direction d between pixels L_d apart
    (``torch.diff`` when L_d = 1), s_d the pixel spacing and rho the penalty. Examples: u_ax = eps * y gives
    0 at order 2 and ``w[0][0] * rho(eps)`` at order 1.

    Args:
        disp: N x 2 x H x W, samples (axial) / lines (lateral).
        order: 1 or 2, or a pair (order for the axial component, for the lateral
            component). Default 2 (see the module docstring: order 1 penalises
            the strain itself).
        weights_axial_lateral: w[component][direction]; a number, a per-component
            pair, or 2 x 2 (see :func:`smoothness_weights`).
        penalty_kind: "charbonnier" (default: robust, keeps strain jumps at
            inclusion boundaries), "l1" or "l2".
        eps: Charbonnier scale, in displacement units per pixel^order (samples /
            sample^2 at order 2): 1e-3 keeps smooth strain gradients in the
            quadratic regime and treats larger kinks L1-like.
        spacing: pixel spacing (axial, lateral) in full-resolution samples / lines
            -- the level stride for a pyramid output whose displacement is in
            full-resolution units -- so the differences are per full-resolution
            sample^order whatever the level.
        lag: pixels between the differenced values (axial, lateral), >= 1. At 1 the penalty sees
            pixel-to-pixel jitter, which least-squares strain over a window mostly averages away;
            a larger lag weighs changes of the field over that distance (a second difference at
            lag L of white noise is L^2 times smaller per pixel spacing), so it regularises at the
            scale the strain is read at.
        reduction: "mean" (0-d) or "none" (shape N).

    Returns:
        Non-negative loss, float32 (float64 for float64 input), autocast
        disabled, differentiable. A direction with k x lag or fewer pixels contributes 0.
    """
    fn = "smoothness"
    check_disp(disp, fn)
    orders = pair_of_ints(order, fn, "order")
    if any(k not in (1, 2) for k in orders):
        raise ValueError(f"{fn}: order must be 1 or 2 (or a pair of them), got {order!r}")
    w = smoothness_weights(weights_axial_lateral, fn)
    check_choice(penalty_kind, PENALTIES, fn, "penalty_kind")
    check_positive(eps, fn, "eps")
    sy, sx = pair_of_floats(spacing, fn, "spacing")
    lags = pair_of_ints(lag, fn, "lag")  # integers >= 1
    check_choice(reduction, REDUCTIONS, fn, "reduction")

    dtype = compute_dtype(disp)
    with full_precision(disp.device):
        d = disp.to(dtype)
        total = torch.zeros(d.shape[0], dtype=dtype, device=d.device)
        for c, k in enumerate(orders):
            comp = d[:, c]
            for axis, s, weight, step in ((-2, sy, w[c][0], lags[0]), (-1, sx, w[c][1], lags[1])):
                if weight == 0 or comp.shape[axis] <= k * step:
                    continue
                diff = _lagged_diff(comp, k, step, axis) / ((step * s) ** k)
                total = total + weight * penalty(diff, penalty_kind, eps).mean(dim=(-2, -1))
        return reduce(total, reduction)
