"""Masked moments over the last two (H, W) axes, shared by quality, errors and NCC."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the pixels where ``mask`` is True, per leading index.

    ``mask`` must already have ``x``'s shape and select at least one pixel per
    sample. ``torch.where`` (not ``x * mask``) so that NaN outside the mask
    cannot leak in through ``0 * NaN``.
    """
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return total.sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1)).to(x.dtype)


def masked_mean_var(
    x: torch.Tensor, mask: torch.Tensor, ddof: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean and variance (divisor ``count - ddof``), two-pass for accuracy."""
    mean = masked_mean(x, mask)
    dev = torch.where(
        mask, x - mean[..., None, None], torch.zeros((), dtype=x.dtype, device=x.device)
    )
    count = mask.sum(dim=(-2, -1)).to(x.dtype)
    var = (dev * dev).sum(dim=(-2, -1)) / (count - ddof)
    return mean, var
