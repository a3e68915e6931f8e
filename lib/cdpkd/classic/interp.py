"""Cubic B-spline warping of RF frames (torch, any device).

Why not the bilinear ``cdpkd.ops.warp`` for RF: at 40 MHz sampling of a
5 MHz pulse there are only 8 samples per carrier period, and linear
interpolation shifts the carrier's phase by up to ~0.01 sample (and damps it
by up to 8 %) depending on the fractional position. A warp by a smooth
strain field sweeps the fractional part through [0, 1) every 1/strain
samples, so that error becomes a periodic ripple in the estimated
displacement and a ~6 % ripple in strain. Interpolating the cubic B-spline
of the frame (prefiltered so that it passes through the samples) cuts the
phase error to ~3e-4 sample and also gives exact derivatives of the
interpolant (the image gradients GLUE linearises with).

The envelope (coarse levels of the NCC pyramid) is smooth, so those levels
use the bilinear ``cdpkd.ops.warp``.
"""

from __future__ import annotations

import math

import torch

from ..ops import warp

_EDGE_TOL = 1e-3  # positions this far outside the frame still count as inside

#: How the networks' RF warps can interpolate (``PWCConfig.refine_interp``,
#: ``UnsupervisedLossConfig.interpolation``): linear (``cdpkd.ops.warp``) or this module's spline.
RF_INTERPOLATIONS: tuple[str, ...] = ("bilinear", "spline")


def _prefilter_dim(x: torch.Tensor, dim: int) -> torch.Tensor:
    """B-spline coefficients along ``dim`` with mirror boundaries, via FFT.

    Interpolation requires ``sum_k c_k B3(i - k) = x_i``, i.e. a convolution by
    (1, 4, 1)/6; on the whole-sample-symmetric extension (period 2n - 2) it is
    diagonal in Fourier space: divide by (4 + 2 cos w) / 6 (never below 1/3).
    """
    n = x.shape[dim]
    if n < 3:
        return x
    xt = x.movedim(dim, -1)
    ext = torch.cat([xt, xt[..., 1:-1].flip(-1)], dim=-1)  # period 2n - 2, mirror about 0 and n - 1
    spec = torch.fft.rfft(ext.to(torch.float64) if x.dtype == torch.float64 else ext.float(), dim=-1)
    m = ext.shape[-1]
    w = 2.0 * math.pi * torch.arange(spec.shape[-1], device=x.device, dtype=torch.float64) / m
    spec = spec / ((4.0 + 2.0 * torch.cos(w)) / 6.0).to(spec.real.dtype)
    coef = torch.fft.irfft(spec, n=m, dim=-1)[..., :n]
    return coef.to(x.dtype).movedim(-1, dim)


def spline_coefficients(x: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline coefficients of frames N x C x H x W (prefiltered along H and W)."""
    return _prefilter_dim(_prefilter_dim(x, -2), -1)


def _weights(t: torch.Tensor, derivative: bool) -> list[torch.Tensor]:
    """B-spline weights (or their derivatives) of taps floor-1 .. floor+2 at fraction ``t``."""
    if derivative:
        return [-0.5 * (1 - t) ** 2, 0.5 * (3 * t - 4) * t, 0.5 * (1 + t * (2 - 3 * t)), 0.5 * t * t]
    t2, t3 = t * t, t * t * t
    return [(1 - t) ** 3 / 6.0, (3 * t3 - 6 * t2 + 4) / 6.0, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6.0, t3 / 6.0]


def _mirror(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Whole-sample mirror of integer indices into [0, n - 1] (matches the prefilter's extension)."""
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    r = torch.remainder(idx, period)
    return torch.where(r > n - 1, period - r, r)


def spline_sample(
    coef: torch.Tensor,
    pos_y: torch.Tensor,
    pos_x: torch.Tensor,
    *,
    padding: str = "zeros",
    gradients: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Evaluate the spline with coefficients ``coef`` (N x C x H x W) at pixel positions.

    Args:
        pos_y, pos_x: N x H' x W' row / column positions in pixels.
        padding: ``"zeros"`` (value 0 outside the frame) or ``"border"``
            (positions clamped into the frame).
        gradients: also return d/dy and d/dx of the interpolant (per pixel).

    Returns:
        (values, d_dy, d_dx), each N x C x H' x W' (the derivatives ``None``
        unless asked for).
    """
    n, c, h, w = coef.shape
    if padding == "border":
        pos_y = pos_y.clamp(0, h - 1)
        pos_x = pos_x.clamp(0, w - 1)
    inside = (
        (pos_y > -_EDGE_TOL)
        & (pos_y < h - 1 + _EDGE_TOL)
        & (pos_x > -_EDGE_TOL)
        & (pos_x < w - 1 + _EDGE_TOL)
    )
    fy, fx = torch.floor(pos_y), torch.floor(pos_x)
    ty, tx = pos_y - fy, pos_x - fx
    iy, ix = fy.long(), fx.long()
    wy, wx = _weights(ty, False), _weights(tx, False)
    dwy = _weights(ty, True) if gradients else None
    dwx = _weights(tx, True) if gradients else None
    flat = coef.reshape(n, c, h * w)
    out_shape = (n, c) + tuple(pos_y.shape[1:])
    val = coef.new_zeros(out_shape)
    gy = coef.new_zeros(out_shape) if gradients else None
    gx = coef.new_zeros(out_shape) if gradients else None
    rows = [_mirror(iy + a - 1, h) for a in range(4)]
    cols = [_mirror(ix + b - 1, w) for b in range(4)]
    for a in range(4):
        for b in range(4):
            idx = (rows[a] * w + cols[b]).reshape(n, 1, -1).expand(n, c, -1)
            tap = torch.gather(flat, 2, idx).reshape(out_shape)
            val += (wy[a] * wx[b]).unsqueeze(1) * tap
            if gradients:
                gy += (dwy[a] * wx[b]).unsqueeze(1) * tap
                gx += (wy[a] * dwx[b]).unsqueeze(1) * tap
    mask = inside.unsqueeze(1).to(val.dtype)
    val = val * mask
    if gradients:
        gy, gx = gy * mask, gx * mask
    return val, gy, gx


def spline_warp(
    x: torch.Tensor, disp: torch.Tensor, *, padding: str = "zeros", gradients: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Backward warp ``out(y, x) = x(y + disp0, x + disp1)`` by cubic B-spline interpolation.

    Args:
        x: frames N x C x H x W.
        disp: N x 2 x H x W in pixels (channel 0 axial, 1 lateral).
        padding, gradients: see :func:`spline_sample`.

    Returns:
        (warped, d/dy, d/dx) like :func:`spline_sample`; the derivatives are
        those of the frame's interpolant at the displaced positions.
    """
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=disp.dtype).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=disp.dtype).view(1, 1, w)
    coef = spline_coefficients(x)
    return spline_sample(
        coef,
        rows + disp[:, 0].to(x.dtype),
        cols + disp[:, 1].to(x.dtype),
        padding=padding,
        gradients=gradients,
    )


def warp_rf(x: torch.Tensor, disp: torch.Tensor, interpolation: str, *, padding: str = "zeros") -> torch.Tensor:
    """``x`` (N x C x H x W, RF) backward-warped by ``disp`` (N x 2 x H x W, samples / lines), by the
    networks' interpolation setting (:data:`RF_INTERPOLATIONS`).

    ``"bilinear"``: :func:`cdpkd.ops.warp` (a Triton kernel on GPU; on an RF carrier of ~8 samples per
    period it shifts the phase by up to ~0.01 sample and damps the carrier by up to 8 %, depending on
    where between samples each position falls). ``"spline"``: :func:`spline_warp` (plain torch ops),
    phase error ~3e-4 sample. ``padding``: "zeros" (bilinear: each tap outside counts 0, so a position
    less than a sample outside still reads part of the edge; spline: 0 beyond the edge) or "border".
    """
    if interpolation == "bilinear":
        return warp(x, disp, padding=padding)
    if interpolation == "spline":
        return spline_warp(x, disp, padding=padding)[0]
    raise ValueError(f"warp_rf: interpolation must be one of {RF_INTERPOLATIONS}, got {interpolation!r}")
