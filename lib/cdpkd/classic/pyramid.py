"""Resampling and smoothing helpers of the coarse-to-fine NCC tracker (torch, any device).

Levels decimate only axially, by box averaging over cells of ``factor``
samples; a level sample sits at the centre of its cell, full-resolution
position ``factor * k + (factor - 1) / 2``. Displacements move between levels
on those centres (axial component scaled by the factor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ncc_volume import box_sum


def envelope(x: torch.Tensor) -> torch.Tensor:
    """Envelope |analytic signal| along the axial axis (-2) of N x C x H x W RF, via FFT."""
    n = x.shape[-2]
    spec = torch.fft.fft(x, dim=-2)
    h = torch.zeros(n, dtype=x.dtype, device=x.device)
    h[0] = 1.0
    h[1 : (n + 1) // 2] = 2.0
    if n % 2 == 0:
        h[n // 2] = 1.0
    return torch.fft.ifft(spec * h.view(-1, 1), dim=-2).abs()


def decimate(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Axial box average over cells of ``factor`` samples (bottom padded by replication)."""
    if factor == 1:
        return x
    pad = (-x.shape[-2]) % factor
    if pad:
        x = F.pad(x, (0, 0, 0, pad), mode="replicate")
    return F.avg_pool2d(x, (factor, 1), stride=(factor, 1))


def to_level(disp: torch.Tensor, factor: int) -> torch.Tensor:
    """Full-grid displacement (samples) -> level grid (level samples): cell average, axial / factor."""
    d = decimate(disp, factor)
    return torch.cat([d[:, :1] / factor, d[:, 1:]], dim=1)


def from_level(disp: torch.Tensor, factor: int, height: int) -> torch.Tensor:
    """Level-grid displacement -> full grid (samples).

    ``align_corners=False`` maps full-resolution sample y to level position
    (y + 0.5) / f - 0.5, i.e. onto the centres of the pooled cells.
    """
    if factor == 1:
        return disp
    up = F.interpolate(
        disp, size=(disp.shape[-2] * factor, disp.shape[-1]), mode="bilinear", align_corners=False
    )
    up = up[..., :height, :]
    return torch.cat([up[:, :1] * factor, up[:, 1:]], dim=1)


def centre_grid(size: int, step: int, device: torch.device) -> torch.Tensor:
    """Window centres every ``step`` pixels, always including the last pixel."""
    idx = list(range(0, size, step))
    if idx[-1] != size - 1:
        idx.append(size - 1)
    return torch.tensor(idx, device=device)


def interp_axis(values: torch.Tensor, centres: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Linear interpolation along ``dim`` from samples at ``centres`` to 0 .. size-1."""
    if centres.numel() == size:
        return values
    pos = torch.arange(size, device=values.device, dtype=values.dtype)
    c = centres.to(values.dtype)
    hi = torch.searchsorted(c, pos, right=True).clamp(1, c.numel() - 1)
    lo = hi - 1
    t = ((pos - c[lo]) / (c[hi] - c[lo])).clamp(0.0, 1.0)
    shape = [1] * values.dim()
    shape[dim] = size
    t = t.view(shape)
    return values.index_select(dim, lo) * (1 - t) + values.index_select(dim, hi) * t


def median_filter(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Median over an odd (axial x lateral) neighbourhood of N x C x H x W (edges replicated)."""
    ka, kl = size
    if ka == 1 and kl == 1:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (kl // 2, kl // 2, ka // 2, ka // 2), mode="replicate")
    patches = padded.unfold(-2, ka, 1).unfold(-2, kl, 1)  # N x C x H x W x ka x kl (lateral unfold is on W)
    return patches.reshape(n, c, h, w, ka * kl).median(dim=-1).values


def edge_box_mean(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean of N x C x H x W ``x`` over an odd (axial x lateral) box, same size, edge values replicated.

    The smoother of a displacement guide (the block-matching loss term's, the refinement head's): an
    edge row of a smooth field extrapolates better by its own value than by zeros. Differentiable.
    Summed by :func:`box_sum` (~2 log2 k shifted adds per axis; ``avg_pool2d`` spends ka x kl adds
    per output, 549 at the head's 61 x 9).
    """
    ka, kl = size
    if ka == 1 and kl == 1:
        return x
    return box_sum(x, size, edges="replicate") / (ka * kl)


def weighted_box_mean(x: torch.Tensor, weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Normalised convolution: box(weight * x) / box(weight) over an odd (axial x lateral) window.

    Only pixels inside the frame count (zero padding), so the unreliable edge
    rows -- where tissue leaves the field of view -- are not replicated into
    their neighbours, and low-weight (poorly correlated) pixels hardly count.
    """
    if size == (1, 1):
        return x
    return box_sum(x * weight, size) / box_sum(weight, size).clamp_min(1e-12)
