"""Sub-sample peak location from three correlation values around an integer maximum.

Given ``c_minus, c0, c_plus`` = correlation at integer lags ``k-1, k, k+1``
with ``c0`` the largest, each estimator returns the fractional offset
``delta`` so that the peak lies at ``k + delta`` (``|delta| <= 0.5`` when
``c0`` really is the maximum; clipped to [-1, 1] otherwise).

- ``parabolic``: vertex of the parabola through the three points. Exact for
  a parabolic peak; for RF correlation (a cosine at the carrier under an
  envelope) it is biased toward the integer lag, by up to ~0.01 sample at
  8 samples per carrier period (more at fewer samples per period).
- ``cosine``: fit ``A cos(w (k - delta))`` (Cespedes et al., Ultrason. Imaging
  1995): ``w = arccos((c_minus + c_plus) / 2 c0)``,
  ``delta = atan((c_plus - c_minus) / (2 c0 sin w)) / w``. Exact for a
  cosine, hence nearly unbiased on RF (~0.001 sample under a Gaussian
  envelope); on a wide smooth (lateral) peak it behaves like the parabola.
- ``none``: integer lag only.

:func:`peak_features` locates the best offset of a whole NCC volume this way (by default cosine
axially, parabola laterally); NCC block matching and the NCC refinement head both use it.

All functions take torch tensors of equal shape and are elementwise, so they
run on the cost volume's device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

METHODS = ("parabolic", "cosine", "none")


def parabolic_offset(c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
    """Vertex offset of the parabola through (-1, c_minus), (0, c0), (1, c_plus)."""
    curvature = c_minus - 2.0 * c0 + c_plus
    ok = curvature < 0  # a maximum; flat or convex triples give no sub-sample information
    safe = torch.where(ok, curvature, torch.full_like(curvature, -1.0))
    delta = 0.5 * (c_minus - c_plus) / safe
    return torch.where(ok, delta, torch.zeros_like(delta)).clamp(-1.0, 1.0)


def cosine_offset(c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
    """Peak offset of the cosine ``A cos(w (k - delta))`` through the three values."""
    positive = c0 > 0
    c0_safe = torch.where(positive, c0, torch.ones_like(c0))
    ratio = ((c_minus + c_plus) / (2.0 * c0_safe)).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    w = torch.arccos(ratio)
    delta = torch.atan((c_plus - c_minus) / (2.0 * c0_safe * torch.sin(w))) / w
    # A non-positive centre value has no cosine fit: fall back to the parabola.
    return torch.where(positive, delta, parabolic_offset(c_minus, c0, c_plus)).clamp(-1.0, 1.0)


def none_offset(c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
    """No sub-sample refinement: offset 0."""
    return torch.zeros_like(c0)


_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "parabolic": parabolic_offset,
    "cosine": cosine_offset,
    "none": none_offset,
}


def get_estimator(method: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The offset function for ``method`` (one of :data:`METHODS`)."""
    if method not in _ESTIMATORS:
        raise ValueError(f"subsample method must be one of {METHODS}, got {method!r}")
    return _ESTIMATORS[method]


def peak_offset(
    c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor, method: str = "parabolic"
) -> torch.Tensor:
    """Fractional peak offset by ``method`` (see the module docstring); elementwise."""
    return get_estimator(method)(c_minus, c0, c_plus)


FLAT_PEAKS = ("first", "centre")


def peak_features(
    cost: torch.Tensor,
    radius: tuple[int, int],
    methods: tuple[str, str] = ("cosine", "parabolic"),
    flat: str = "first",
) -> torch.Tensor:
    """The best offset of an NCC volume, to sub-sample precision, and its NCC.

    Args:
        cost: N x D x H x W NCC volume of :func:`~cdpkd.classic.ncc_volume.ncc_volume` with
            D = (2 ra + 1)(2 rl + 1), offsets ordered axial-major (axial -ra..ra, lateral -rl..rl).
        radius: (ra, rl), axial samples and lateral lines.
        methods: (axial, lateral) sub-sample estimators (:data:`METHODS`); by default the cosine fit
            axially, as NCC block matching refines RF, and the parabola laterally.
        flat: where a flat window (NCC -1 at every offset: no match defined) is placed: ``"first"``,
            the box's first offset (-ra, -rl), as the NCC refinement head was trained; ``"centre"``,
            offset (0, 0), NCC block matching's zero residual.

    Returns:
        N x 3 x H x W: the peak's axial offset (samples; integer argmax plus the axial estimator
        through its axial neighbours), its lateral offset (lines; the lateral estimator through its
        lateral neighbours) and the NCC at the integer peak. A peak on the edge of the search box has
        no neighbour on one side: its fractional part is 0 on that axis.
    """
    ra, rl = radius
    na, nl = 2 * ra + 1, 2 * rl + 1
    if cost.shape[1] != na * nl:
        raise ValueError(f"peak_features: a volume of radius {radius} has {na * nl} channels, got {cost.shape[1]}")
    if flat not in FLAT_PEAKS:
        raise ValueError(f"peak_features: flat must be one of {FLAT_PEAKS}, got {flat!r}")
    estimate_a, estimate_l = get_estimator(methods[0]), get_estimator(methods[1])
    peak, index = cost.max(dim=1, keepdim=True)
    if flat == "centre":
        index = torch.where(peak > -1.0, index, torch.full_like(index, ra * nl + rl))
    ia, il = torch.div(index, nl, rounding_mode="floor"), index % nl

    def at(da: int, dl: int) -> torch.Tensor:  # the volume at the peak's neighbour, clamped into the box
        a, lat = (ia + da).clamp(0, na - 1), (il + dl).clamp(0, nl - 1)
        return cost.gather(1, a * nl + lat)

    inside_a = (ia > 0) & (ia < na - 1)
    inside_l = (il > 0) & (il < nl - 1)
    frac_a = torch.where(inside_a, estimate_a(at(-1, 0), peak, at(1, 0)), torch.zeros_like(peak))
    frac_l = torch.where(inside_l, estimate_l(at(0, -1), peak, at(0, 1)), torch.zeros_like(peak))
    return torch.cat(((ia - ra).to(cost.dtype) + frac_a, (il - rl).to(cost.dtype) + frac_l, peak), dim=1)
