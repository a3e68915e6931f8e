"""Normalized cross-correlation (NCC) between frames, and NCC after motion compensation.

Zero-mean NCC of ``a`` and ``b`` over a region::

    NCC = sum (a - mean a)(b - mean b) / sqrt(sum (a - mean a)^2 * sum (b - mean b)^2)

in [-1, 1]: 1 for identical frames (up to a positive affine change), -1 for
negated ones, ~0 for independent ones. :func:`ncc` uses the whole frame (or
a mask), :func:`local_ncc` a sliding window (``samples x lines``) computed
with box filters. :func:`warp_ncc` is the no-reference tracking quality
metric: NCC between the pre frame and the post frame warped back by the
estimated displacement (higher is better).

Frames are ``(..., H, W)``; NCC is taken over the last two axes. torch in,
torch out; numpy in, numpy out. :func:`ncc` and :func:`warp_ncc` return
float64 (except on MPS); :func:`local_ncc` keeps the input dtype. A flat
(zero-variance) region has no defined NCC and gives 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._arrays import (
    ArrayLike,
    as_mask,
    check_finite,
    check_nonempty,
    check_same_shape,
    for_statistics,
    require_ndim,
    to_output,
    to_tensor,
)
from ._stats import masked_mean, masked_mean_var

#: Sampling positions within this many pixels outside the frame still count as inside.
_EDGE_TOLERANCE = 1e-3


def _frame_pair(a: ArrayLike, b: ArrayLike, name_a: str, name_b: str):
    ta, as_numpy = to_tensor(a, name_a)
    tb, _ = to_tensor(b, name_b)
    require_ndim(ta, 2, name_a, "..., H, W")
    check_same_shape(ta, tb, name_a, name_b)
    dtype = torch.promote_types(ta.dtype, tb.dtype)
    return ta.to(dtype), tb.to(device=ta.device, dtype=dtype), as_numpy


def ncc(a: ArrayLike, b: ArrayLike, mask: Any = None) -> ArrayLike:
    """Global zero-mean NCC of two frames over the last two axes (inside ``mask`` if given).

    Args:
        a, b: frames of equal shape ``(..., H, W)`` (any units: NCC is scale-free).
        mask: optional bool region, (H, W) shared or per sample (broadcast to ``a``).

    Returns:
        Shape ``a.shape[:-2]``, in [-1, 1] (0 where either frame is flat).
    """
    ta, tb, as_numpy = _frame_pair(a, b, "a", "b")
    ta, tb = for_statistics(ta), for_statistics(tb)
    if mask is None:
        m = torch.ones((), dtype=torch.bool, device=ta.device).expand(ta.shape)
    else:
        m = as_mask(mask, ta.shape, "mask", ta.device)
    check_nonempty(m, "mask")
    check_finite(ta, "a", m)
    check_finite(tb, "b", m)
    zero = torch.zeros((), dtype=ta.dtype, device=ta.device)
    da = torch.where(m, ta - masked_mean(ta, m)[..., None, None], zero)
    db = torch.where(m, tb - masked_mean(tb, m)[..., None, None], zero)
    num = (da * db).sum(dim=(-2, -1))
    den = ((da * da).sum(dim=(-2, -1)) * (db * db).sum(dim=(-2, -1))).sqrt()
    out = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), zero)
    return to_output(out.clamp(-1.0, 1.0), as_numpy)


def _window_pair(window: Any) -> tuple[int, int]:
    """``window`` as (samples, lines): an int (square) or a pair of odd positive ints."""
    is_int = isinstance(window, (int, np.integer)) and not isinstance(window, bool)
    try:
        wy, wx = (window, window) if is_int else window
    except (TypeError, ValueError):
        raise ValueError(
            f"window must be an odd int or a pair (samples, lines), got {window!r}"
        ) from None
    for w in (wy, wx):
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 or w % 2 == 0:
            raise ValueError(f"window sizes must be odd positive integers, got {window!r}")
    wy, wx = int(wy), int(wx)
    if wy * wx < 2:
        raise ValueError(f"window must cover at least 2 pixels, got {window!r}")
    return wy, wx


def local_ncc(
    a: ArrayLike,
    b: ArrayLike,
    window: int | tuple[int, int],
    mask: Any = None,
    *,
    eps: float = 1e-6,
) -> ArrayLike:
    """Local (windowed) zero-mean NCC map of two frames.

    Each output pixel is the NCC of the ``window = (samples, lines)`` patches
    centred on it. Only pixels inside the frame -- and inside ``mask``, when
    given -- enter a window's statistics, so near edges (or masked-out areas)
    the window is effectively cropped and the map keeps the input's shape.
    Computed with box filters (avg_pool2d); differentiable, usable as a
    similarity loss.

    Why ``eps`` is scale-free: each frame is first standardized by its global
    mean and (detached) standard deviation -- NCC is invariant to that -- so
    ``eps`` is a variance floor relative to the frame's global variance;
    windows flatter than that tend to 0 instead of dividing by ~0.

    Args:
        a, b: frames of equal shape ``(..., H, W)``.
        window: odd int (square) or (samples, lines), each odd, not larger than the frame.
        mask: optional bool map of pixels that may enter the windows ((H, W)
            or per sample, broadcast to ``a``); pixels whose window holds no
            such pixel get 0.
        eps: relative variance floor (default 1e-6).

    Returns:
        Map of shape ``a.shape`` and ``a``'s dtype, values in [-1, 1].
    """
    ta, tb, as_numpy = _frame_pair(a, b, "a", "b")
    wy, wx = _window_pair(window)
    H, W = ta.shape[-2:]
    if wy > H or wx > W:
        raise ValueError(f"window ({wy}, {wx}) is larger than the frames ({H}, {W})")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    if mask is None:
        m = torch.ones((), dtype=torch.bool, device=ta.device).expand(ta.shape)
    else:
        m = as_mask(mask, ta.shape, "mask", ta.device)
        check_nonempty(m, "mask")
    check_finite(ta, "a", m)
    check_finite(tb, "b", m)

    zero = torch.zeros((), dtype=ta.dtype, device=ta.device)

    def standardize(x: torch.Tensor) -> torch.Tensor:
        mean, var = masked_mean_var(x.detach(), m)
        x = torch.where(m, x - mean[..., None, None], zero)  # also drops NaN outside the mask
        return x / var.sqrt().clamp_min(torch.finfo(x.dtype).tiny)[..., None, None]

    lead = ta.shape[:-2]
    xa = standardize(ta).reshape(-1, 1, H, W)
    xb = standardize(tb).reshape(-1, 1, H, W)
    weight = m.to(ta.dtype).reshape(-1, 1, H, W)

    def box(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(
            x, (wy, wx), stride=1, padding=(wy // 2, wx // 2), count_include_pad=False
        )

    # Masked window means: box(w * x) / box(w) (box's own pixel count cancels).
    frac = box(weight)
    has = frac > 0
    inv = torch.where(has, 1.0 / torch.where(has, frac, torch.ones_like(frac)), zero)
    mu_a, mu_b = box(xa) * inv, box(xb) * inv  # xa, xb are already 0 outside the mask
    # E[x^2] - E[x]^2 may round slightly below 0; clamp before the sqrt.
    var_a = (box(xa * xa) * inv - mu_a * mu_a).clamp_min(0.0)
    var_b = (box(xb * xb) * inv - mu_b * mu_b).clamp_min(0.0)
    cov = box(xa * xb) * inv - mu_a * mu_b
    out = cov / ((var_a + eps).sqrt() * (var_b + eps).sqrt())
    return to_output(out.clamp(-1.0, 1.0).reshape(*lead, H, W), as_numpy)


def warp_ncc(
    pre: ArrayLike,
    post: ArrayLike,
    disp: ArrayLike,
    window: int | tuple[int, int] | None = None,
    *,
    exclude_outside: bool = True,
    region: Any = None,
    eps: float = 1e-6,
) -> ArrayLike:
    """NCC between the pre frame and the post frame motion-compensated by ``disp``.

    The post frame is warped with :func:`cdpkd.ops.warp` (bilinear, pixel
    units): ``comp(y, x) = post(y + disp_axial(y, x), x + disp_lateral(y, x))``,
    so a correct displacement makes ``comp`` match ``pre``.

    Args:
        pre, post: N x C x H x W frames (RF or envelope; C is usually 1).
        disp: N x 2 x H x W displacement, channel 0 axial in samples,
            channel 1 lateral in lines.
        window: ``None`` for the global NCC over the frame; an odd int or
            (samples, lines) for the mean of the local NCC map.
        exclude_outside: ignore pixels whose sampling position falls outside
            the post frame (their warped value is padding, not data), both
            in the average and inside the local windows.
        region: optional bool (H, W) map, or one per sample (N x H x W), of
            the pixels to score, e.g. one depth band: the global NCC is taken
            over those pixels only; with ``window`` the local map (whose
            windows still see the whole frame) is averaged over them. Combined
            with ``exclude_outside``; an error if it leaves a sample no pixel.
        eps: relative variance floor of :func:`local_ncc`.

    Returns:
        Shape (N,): NCC averaged over channels, in [-1, 1].
    """
    tpre, tpost, as_numpy = _frame_pair(pre, post, "pre", "post")
    d, _ = to_tensor(disp, "disp")
    if tpre.dim() != 4:
        raise ValueError(f"pre must be N x C x H x W, got shape {tuple(tpre.shape)}")
    N, _, H, W = tpre.shape
    if tuple(d.shape) != (N, 2, H, W):
        raise ValueError(
            f"disp must be N x 2 x H x W = {(N, 2, H, W)} to match pre/post, got {tuple(d.shape)}"
        )
    check_finite(tpre, "pre")
    check_finite(tpost, "post")
    check_finite(d, "disp")
    d = d.to(device=tpre.device, dtype=tpre.dtype)
    try:
        from cdpkd.ops import warp  # lazy: ops is a separate, heavier module
    except ImportError as err:
        raise ImportError("warp_ncc needs cdpkd.ops.warp, which could not be imported") from err

    comp = warp(tpost, d, padding="border")

    if exclude_outside:
        ys = torch.arange(H, device=d.device, dtype=d.dtype).view(1, H, 1) + d[:, 0]
        xs = torch.arange(W, device=d.device, dtype=d.dtype).view(1, 1, W) + d[:, 1]
        tol = _EDGE_TOLERANCE
        inside = (ys >= -tol) & (ys <= H - 1 + tol) & (xs >= -tol) & (xs <= W - 1 + tol)
        valid = inside.unsqueeze(1).expand(tpre.shape)  # (N, C, H, W)
        counts = valid[:, 0].sum(dim=(-2, -1))
        if bool((counts == 0).any()):
            n = int(torch.nonzero(counts == 0)[0])
            raise ValueError(f"disp moves every pixel of sample {n} outside the post frame")
    else:
        valid = torch.ones((), dtype=torch.bool, device=tpre.device).expand(tpre.shape)

    scored = valid
    if region is not None:
        in_region = as_mask(region, torch.Size((N, H, W)), "region", tpre.device)
        scored = valid & in_region.unsqueeze(1)
        counts = scored[:, 0].sum(dim=(-2, -1))
        if bool((counts == 0).any()):
            n = int(torch.nonzero(counts == 0)[0])
            raise ValueError(f"region holds no pixel sampled inside the post frame for sample {n}")
    if window is None:
        per_channel = ncc(tpre, comp, scored)
    else:
        ncc_map = local_ncc(tpre, comp, window, valid, eps=eps)
        per_channel = masked_mean(ncc_map, scored)
    return to_output(per_channel.mean(dim=-1), as_numpy)
