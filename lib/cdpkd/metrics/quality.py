"""No-reference strain image quality: elastographic SNR, CNR and contrast ratio.

Formulas (m = mean, s = standard deviation of the strain inside a region;
t = target, e.g. an inclusion, b = background):

    SNRe         = |m| / s                                  (homogeneous region)
    CNR (linear) = 2 (m_b - m_t)^2 / (s_b^2 + s_t^2)
    CNR (dB)     = 10 log10(CNR_linear) = 20 log10(sqrt(2) |m_b - m_t| / sqrt(s_b^2 + s_t^2))
    contrast     = m_b / m_t

Standard deviations use the population form (divisor n, ``ddof=0``) by
default: it is what ``np.std`` returns and makes small hand-checked examples
exact; pass ``ddof=1`` for the sample form. Regions are large in practice, so
the choice changes results by a factor sqrt(n / (n - 1)) only.

Shapes: ``strain`` is ``(..., H, W)`` (e.g. N x 1 x H x W from
:func:`~cdpkd.metrics.axial_strain`, or a single H x W image). Statistics are
taken over the last two axes and the leading axes are kept: N x 1 x H x W
gives N x 1, H x W gives a 0-d result. Masks are bool (or 0/1) and broadcast
to ``strain``'s shape: one shared (H, W) mask or one mask per sample. torch
in, torch out (float64 except on MPS: statistics are accumulated in double
precision); numpy in, numpy out.

Degenerate regions are reported, not hidden: zero spread gives ``inf``
(``nan`` for 0/0); identical means give CNR 0 (-inf dB). Empty masks,
overlapping target/background and NaN/Inf strain inside a mask raise
``ValueError``; NaN outside the masks is ignored.
"""

from __future__ import annotations

from typing import Any

import torch

from ._arrays import (
    ArrayLike,
    as_mask,
    check_finite,
    check_nonempty,
    for_statistics,
    require_ndim,
    to_output,
    to_tensor,
)
from ._stats import masked_mean, masked_mean_var


def _region(strain: torch.Tensor, mask: Any, name: str, ddof: int) -> torch.Tensor:
    if mask is None:
        m = torch.ones((), dtype=torch.bool, device=strain.device).expand(strain.shape)
    else:
        m = as_mask(mask, strain.shape, name, strain.device)
    check_nonempty(m, name, min_count=ddof + 1)
    check_finite(strain, "strain", m)
    return m


def _check_ddof(ddof: Any) -> int:
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
        raise ValueError(f"ddof must be a non-negative integer, got {ddof!r}")
    return ddof


def snre(strain: ArrayLike, mask: Any = None, *, ddof: int = 0) -> ArrayLike:
    """Elastographic SNR ``|mean| / std`` of ``strain`` inside ``mask`` (dimensionless, linear).

    Args:
        strain: ``(..., H, W)`` strain image(s), dimensionless.
        mask: bool region, ideally homogeneous tissue; ``None`` = whole image.
            (H, W) shared or per sample (broadcast to ``strain``'s shape).
        ddof: divisor of the variance is ``n - ddof`` (0: population std).

    Returns:
        ``strain.shape[:-2]``; ``inf`` where the region has zero spread.
    """
    s, as_numpy = to_tensor(strain, "strain")
    s = for_statistics(s)
    require_ndim(s, 2, "strain", "..., H, W")
    ddof = _check_ddof(ddof)
    m = _region(s, mask, "mask", ddof)
    mean, var = masked_mean_var(s, m, ddof)
    return to_output(mean.abs() / var.sqrt(), as_numpy)


def _two_regions(strain: ArrayLike, target_mask: Any, background_mask: Any, ddof: int):
    s, as_numpy = to_tensor(strain, "strain")
    s = for_statistics(s)
    require_ndim(s, 2, "strain", "..., H, W")
    ddof = _check_ddof(ddof)
    if target_mask is None or background_mask is None:
        raise ValueError("target_mask and background_mask are both required")
    mt = _region(s, target_mask, "target_mask", ddof)
    mb = _region(s, background_mask, "background_mask", ddof)
    if bool((mt & mb).any()):
        raise ValueError(
            f"target_mask and background_mask overlap ({int((mt & mb).sum())} pixel(s)); "
            "use e.g. ring_mask with an inner radius beyond the target"
        )
    return s, as_numpy, mt, mb


def cnr_linear(
    strain: ArrayLike, target_mask: Any, background_mask: Any, *, ddof: int = 0
) -> ArrayLike:
    """Contrast-to-noise ratio ``2 (m_b - m_t)^2 / (s_b^2 + s_t^2)`` (linear power ratio).

    Shapes and masks as in :func:`snre`; result has shape ``strain.shape[:-2]``.
    """
    s, as_numpy, mt, mb = _two_regions(strain, target_mask, background_mask, ddof)
    mean_t, var_t = masked_mean_var(s, mt, ddof)
    mean_b, var_b = masked_mean_var(s, mb, ddof)
    return to_output(2.0 * (mean_b - mean_t) ** 2 / (var_b + var_t), as_numpy)


def cnr_db(
    strain: ArrayLike, target_mask: Any, background_mask: Any, *, ddof: int = 0
) -> ArrayLike:
    """CNR in dB: ``10 log10(2 (m_b - m_t)^2 / (s_b^2 + s_t^2))`` (see :func:`cnr_linear`)."""
    s, as_numpy, mt, mb = _two_regions(strain, target_mask, background_mask, ddof)
    mean_t, var_t = masked_mean_var(s, mt, ddof)
    mean_b, var_b = masked_mean_var(s, mb, ddof)
    return to_output(10.0 * torch.log10(2.0 * (mean_b - mean_t) ** 2 / (var_b + var_t)), as_numpy)


def contrast_ratio(strain: ArrayLike, target_mask: Any, background_mask: Any) -> ArrayLike:
    """Strain contrast ``m_b / m_t`` (dimensionless, linear).

    A stiff target strains less than its background, so it gives a ratio > 1
    (signs cancel under compression). Shapes and masks as in :func:`snre`.
    """
    s, as_numpy, mt, mb = _two_regions(strain, target_mask, background_mask, 0)
    return to_output(masked_mean(s, mb) / masked_mean(s, mt), as_numpy)
