"""Image similarity: local NCC between the pre frame and the motion-compensated post frame.

Why our own box-filter NCC instead of :func:`cdpkd.metrics.local_ncc`: the
metric validates its input with host syncs (``bool(isfinite.all())``,
non-empty mask checks), clamps its output to [-1, 1] (a zero gradient where
rounding pushes it past 1) and averages its map over every pixel. A loss runs
several times per training step on the GPU, must not sync, must keep its
gradient, and must average only over pixels whose sampling position lies
inside the post frame. The statistics are the same (zero-mean NCC over a
``samples x lines`` box, frames first standardised by their detached global
mean / std so ``eps`` is a scale-free variance floor); a test checks the two
agree away from the edges.

The post frame is warped bilinearly (``cdpkd.ops.warp``, a Triton kernel on GPU) or, with
``interpolation="spline"``, by a cubic B-spline (``cdpkd.classic.interp.spline_warp``, as NCC block
matching warps RF). On RF with ~8 samples per carrier period, linear interpolation damps the carrier
by up to 8 % and shifts its phase by up to ~0.01 sample depending on the fractional position, so
part of the NCC deficit at the true displacement is interpolation error (on notebook 01's 16 cpu
test pairs the similarity term at the ground truth is 9-28 % lower with the spline; mean 0.0056
against 0.0067: studies/results/teacher_objective_cpu_truth_*.json).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cdpkd.classic.interp import RF_INTERPOLATIONS, warp_rf

from ._common import (
    REDUCTIONS,
    check_choice,
    check_disp,
    check_frames,
    check_positive,
    compute_dtype,
    full_precision,
    pair_of_ints,
    reduce,
)

#: Sampling positions within this many pixels outside the frame still count as inside
#: (the same tolerance as ``cdpkd.metrics.warp_ncc``; absorbs rounding of exact edge shifts).
EDGE_TOLERANCE = 1e-3


def _box(x: torch.Tensor, wy: int, wx: int) -> torch.Tensor:
    """Separable zero-padded box mean over (wy, wx) (odd), same size. avg_pool2d, not conv2d:
    autocast leaves pooling alone, and two 1-D passes cost wy + wx instead of wy * wx."""
    if wy > 1:
        x = F.avg_pool2d(x, (wy, 1), stride=1, padding=(wy // 2, 0))
    if wx > 1:
        x = F.avg_pool2d(x, (1, wx), stride=1, padding=(0, wx // 2))
    return x


def _standardize(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per (n, c) plane over the weighted pixels, statistics detached.

    Local NCC is invariant to a global positive affine change, so detaching
    changes no gradient; it only makes ``eps`` relative to the frame's variance.
    A plane with no weighted pixel, or a flat one, keeps unit scale: dividing by a
    floored ~0 would overflow to inf, and inf * weight 0 is NaN (a network whose
    estimate sends a whole crop out of the frame must get loss 1, not NaN).
    """
    xd = x.detach()
    total = weight.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    mean = (xd * weight).sum(dim=(-2, -1), keepdim=True) / total
    std = ((((xd - mean) ** 2) * weight).sum(dim=(-2, -1), keepdim=True) / total).sqrt()
    return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))


def box_ncc(
    a: torch.Tensor,
    b: torch.Tensor,
    window: tuple[int, int],
    weight: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Local zero-mean NCC map of two frames over a ``window = (samples, lines)`` box.

    Args:
        a, b: N x C x H x W, same shape and dtype (any units; NCC is scale-free).
        window: odd (axial, lateral) box size in pixels of ``a``.
        weight: optional N x 1 x H x W (or N x C x H x W) map in [0, 1] of pixels
            allowed into the window statistics (0 = excluded); None = all.
        eps: variance floor relative to each frame's global variance; a window
            flatter than that tends to NCC 0 instead of dividing by ~0.

    Returns:
        N x C x H x W NCC map, ~[-1, 1] (not clamped, to keep the gradient); 0
        where a window holds no allowed pixel. Differentiable in ``a`` and ``b``.
    """
    wy, wx = window
    if weight is None:
        weight = torch.ones_like(a[:, :1])
    weight = weight.expand_as(a)
    xa = _standardize(a, weight) * weight
    xb = _standardize(b, weight) * weight
    frac = _box(weight, wy, wx)  # share of the window that is allowed
    # Below half a pixel's share the window is empty (up to rounding): NCC 0 there.
    has = frac > 0.5 / (wy * wx)
    inv = torch.where(has, 1.0 / torch.where(has, frac, torch.ones_like(frac)), torch.zeros_like(frac))
    mu_a, mu_b = _box(xa, wy, wx) * inv, _box(xb, wy, wx) * inv
    # xa is already 0 where weight is 0, and weight is 0/1 in practice, so
    # box(xa * xa) = box(w * a^2): the weighted second moment.
    var_a = (_box(xa * xa, wy, wx) * inv - mu_a * mu_a).clamp_min(0.0)
    var_b = (_box(xb * xb, wy, wx) * inv - mu_b * mu_b).clamp_min(0.0)
    cov = _box(xa * xb, wy, wx) * inv - mu_a * mu_b
    return cov / torch.sqrt((var_a + eps) * (var_b + eps))


def in_frame_mask(disp: torch.Tensor, tolerance: float = EDGE_TOLERANCE) -> torch.Tensor:
    """N x 1 x H x W float mask: 1 where ``(y + disp_ax, x + disp_lat)`` lies inside the frame.

    ``disp`` is N x 2 x H x W in pixels of the frame it indexes. An axis of size
    1 is ignored (``warp`` ignores the displacement along it). Detached: the
    mask gates the loss, it is not optimised.
    """
    d = disp.detach()
    _, _, h, w = d.shape
    ok = torch.ones_like(d[:, :1], dtype=torch.bool)
    if h > 1:
        y = torch.arange(h, device=d.device, dtype=d.dtype).view(1, 1, h, 1) + d[:, :1]
        ok = ok & (y >= -tolerance) & (y <= h - 1 + tolerance)
    if w > 1:
        x = torch.arange(w, device=d.device, dtype=d.dtype).view(1, 1, 1, w) + d[:, 1:]
        ok = ok & (x >= -tolerance) & (x <= w - 1 + tolerance)
    return ok.to(d.dtype)


def _user_mask(
    mask: object, shape: torch.Size, device: torch.device, dtype: torch.dtype, fn: str
) -> torch.Tensor:
    """A bool / 0-1 mask of shape (H, W), (N, 1, H, W) or (1, 1, H, W) as an N x 1 x H x W float map."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{fn}: mask must be a torch.Tensor (bool or 0/1), got {type(mask).__name__}")
    n, _, h, w = shape
    m = mask
    if m.dim() == 2:
        m = m.view(1, 1, *m.shape)
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] not in (1, n) or tuple(m.shape[-2:]) != (h, w):
        raise ValueError(
            f"{fn}: mask must be H x W or N x 1 x H x W with H={h}, W={w}, N={n}, got shape {tuple(mask.shape)}"
        )
    return m.to(device=device, dtype=dtype).expand(n, 1, h, w)


def similarity_ncc(
    pre: torch.Tensor,
    post: torch.Tensor,
    disp: torch.Tensor,
    window: int | tuple[int, int] = (31, 5),
    mask: torch.Tensor | None = None,
    *,
    eps: float = 1e-4,
    reduction: str = "mean",
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """1 - mean local NCC between ``pre`` and ``post`` warped back by ``disp``.

    ``post`` is backward-warped with ``cdpkd.ops.warp(post, disp, padding="border")``
    (out(y, x) = post(y + disp_ax, x + disp_lat)), so the true displacement maps
    the post frame onto the pre frame and gives NCC ~1. Pixels whose sampling
    position falls outside the post frame are excluded from the window
    statistics and from the mean (border padding only keeps their values
    finite); so is everything outside ``mask``.

    Args:
        pre, post: frames N x C x H x W (RF, envelope, ...; any units). With C > 1
            the NCC is averaged over channels.
        disp: N x 2 x H x W displacement in pixels of these frames (samples,
            lines); channel 0 axial.
        window: odd (samples, lines) NCC box, e.g. (31, 5) for RF at full
            resolution (a few wavelengths axially, a few lines laterally).
        mask: optional bool / 0-1 map, H x W or N x 1 x H x W, of pixels to use.
        eps: NCC variance floor relative to the frame's global variance.
        reduction: "mean" (0-d) or "none" (shape N).
        interpolation: "bilinear" (``cdpkd.ops.warp``) or "spline" (cubic B-spline, for RF; the
            module docstring says why; plain torch ops, no Triton kernel).

    Returns:
        Dimensionless loss in [0, 2]: 0 for a perfect match (identical frames,
        zero displacement), ~1 for unrelated frames. float32 (float64 for
        float64 input), autocast disabled; differentiable w.r.t. ``disp`` (and
        the frames).
    """
    fn = "similarity_ncc"
    check_frames(pre, fn, "pre")
    check_frames(post, fn, "post")
    check_disp(disp, fn)
    if pre.shape != post.shape:
        raise ValueError(
            f"{fn}: pre and post must have the same shape, got {tuple(pre.shape)} and {tuple(post.shape)}"
        )
    n, _, h, w = pre.shape
    if (disp.shape[0], disp.shape[2], disp.shape[3]) != (n, h, w):
        raise ValueError(
            f"{fn}: disp must be N x 2 x H x W matching the frames (N={n}, H={h}, W={w}), got shape {tuple(disp.shape)}"
        )
    wy, wx = pair_of_ints(window, fn, "window", odd=True)
    if wy * wx < 2:
        raise ValueError(f"{fn}: window must cover at least 2 pixels, got {window!r}")
    if wy > h or wx > w:
        raise ValueError(f"{fn}: window ({wy}, {wx}) is larger than the frames ({h}, {w})")
    check_positive(eps, fn, "eps")
    check_choice(reduction, REDUCTIONS, fn, "reduction")
    check_choice(interpolation, RF_INTERPOLATIONS, fn, "interpolation")

    dtype = compute_dtype(pre, post, disp)
    with full_precision(pre.device):
        pre_, post_, disp_ = pre.to(dtype), post.to(device=pre.device, dtype=dtype), disp.to(dtype)
        valid = in_frame_mask(disp_)
        if mask is not None:
            valid = valid * _user_mask(mask, pre.shape, pre.device, dtype, fn)
        warped = warp_rf(post_, disp_, interpolation, padding="border")
        ncc = box_ncc(pre_, warped, (wy, wx), valid, eps)
        channels = pre.shape[1]
        count = valid.sum(dim=(1, 2, 3)) * channels
        mean_ncc = (ncc * valid).sum(dim=(1, 2, 3)) / count.clamp_min(1.0)
        return reduce(1.0 - mean_ncc, reduction)


def envelope(rf: torch.Tensor) -> torch.Tensor:
    """Envelope |analytic signal| along the axial axis (-2), via the FFT Hilbert transform.

    Same definition as ``scipy.signal.hilbert`` / :func:`cdpkd.signal.envelope`
    (periodic along depth, so the first and last few samples see a wrap-around).
    Shape and (float32/float64) dtype of ``rf``; differentiable, though the
    loss applies it to data only.
    """
    h = rf.shape[-2]
    dtype = compute_dtype(rf)
    with full_precision(rf.device):
        spectrum = torch.fft.fft(rf.to(dtype), dim=-2)
        gain = torch.zeros(h, dtype=dtype, device=rf.device)
        gain[0] = 1.0
        if h % 2 == 0:
            gain[1 : h // 2] = 2.0
            gain[h // 2] = 1.0
        else:
            gain[1 : (h + 1) // 2] = 2.0
        return torch.fft.ifft(spectrum * gain.view(h, 1), dim=-2).abs()
