"""Block-matching consistency: each pixel's displacement should sit at the sub-sample peak of the
windowed NCC around it, as NCC block matching locates it.

Why a second similarity: the warped similarity (similarity.py) compares the pre frame with the post
frame warped by the whole field, so inside each NCC window the field may bend to fit speckle noise,
and its minimum is not at the truth (studies/README.md, "Which loss settings have a better
optimum?": descending on it from NCC block matching's own field makes that field 1.6x worse on
pair 0). Block matching asks, per pixel, which *rigid* shift of one window matches best. This term
asks the same of the network's field d: the post frame is warped by d (detached), the zero-mean NCC
of the pre and warped post windows is computed at every integer offset of a small box
(:func:`~cdpkd.classic.ncc_volume.ncc_volume`), its peak is located to a sub-sample offset o
(:func:`~cdpkd.classic.subsample.peak_features`: cosine fit axially, parabola laterally) and d is
pulled toward d + o. Its gradient is -2 w o per pixel: it vanishes where d is at its own windows'
NCC peaks, i.e. at NCC block matching's answer with d itself as the guide.

With ``guide_smoothing`` the post frame is warped by a box mean g of d instead, and d is pulled
toward g + o, as NCC block matching's last pass warps by a smoothed estimate and adds the raw
window residual. Why: o is a window-level quantity, so d + o keeps whatever jitter d has at scales
below the window, which is most of a network's strain error; with g + o the term also charges d - g,
the field's sub-window jitter (on the cpu teacher one 400-step stage with the term measured around
the field did not improve the strain, measured around its 61 x 9 box mean it improved every test
pair: studies/README.md, "Block-matching consistency").
Nothing here is a ground truth: the target comes from the pair alone, recomputed at every step.
"""

from __future__ import annotations

import torch

from cdpkd.classic.interp import RF_INTERPOLATIONS, warp_rf
from cdpkd.classic.ncc_volume import ncc_volume
from cdpkd.classic.pyramid import edge_box_mean
from cdpkd.classic.subsample import peak_features

from ._common import check_choice, check_disp, check_frames, full_precision, pair_of_ints


def block_matching_consistency(
    pre: torch.Tensor,
    post: torch.Tensor,
    disp: torch.Tensor,
    window: tuple[int, int] = (41, 9),
    radius: tuple[int, int] = (3, 1),
    *,
    interpolation: str = "spline",
    guide_smoothing: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """Confidence-weighted mean squared distance between ``disp`` and the NCC peak around it.

    Args:
        pre, post: N x 1 x H x W RF frames (any scale: NCC is scale-free).
        disp: N x 2 x H x W displacement, samples (axial) / lines (lateral), ``post`` warped by it
            ~ ``pre``; the gradient flows to it, the peak itself is computed without gradient.
        window: odd NCC window (axial samples, lateral lines); default NCC block matching's.
        radius: integer search box (ra, rl) around ``disp``, each >= 1; keep ra below half a carrier
            period (4 samples at 8 samples per period) so RF side lobes cannot win.
        interpolation: how the post frame is warped, "spline" (as NCC block matching warps RF) or
            "bilinear".
        guide_smoothing: odd (samples, lines) box whose mean of ``disp`` (edge values replicated)
            is the guide the post frame is warped by and the target is measured from; (1, 1): the
            field itself.

    Returns:
        0-d tensor in samples^2 (axial offset^2 + lateral offset^2 in lines^2): the mean of
        w |o|^2 / mean of w, with w = max(peak NCC, 0)^2 and w = 0 where the peak is not inside the
        box by at least half a pixel on either axis (no sub-sample fit, or a jump the box cannot
        measure) or the window is not wholly inside the frame. 0 where no pixel qualifies.
    """
    fn = "block_matching_consistency"
    check_frames(pre, fn, "pre")
    check_frames(post, fn, "post")
    check_disp(disp, fn, "disp")
    wy, wx = pair_of_ints(window, fn, "window", odd=True)
    ra, rl = pair_of_ints(radius, fn, "radius", minimum=1)
    check_choice(interpolation, RF_INTERPOLATIONS, fn, "interpolation")
    gy, gx = pair_of_ints(guide_smoothing, fn, "guide_smoothing", odd=True)
    n, c, h, w = pre.shape
    if c != 1 or post.shape != pre.shape or disp.shape != (n, 2, h, w):
        raise ValueError(
            f"{fn}: need pre and post N x 1 x H x W and disp N x 2 x H x W of one size, got "
            f"{tuple(pre.shape)}, {tuple(post.shape)} and {tuple(disp.shape)}"
        )
    if h < wy + 2 * ra or w < wx + 2 * rl:
        raise ValueError(f"{fn}: frames of {h} x {w} are too small for window {(wy, wx)} and radius {(ra, rl)}")
    with full_precision(pre.device):
        disp32 = disp.float()
        with torch.no_grad():
            guide = edge_box_mean(disp32.detach(), (gy, gx))
            warped = warp_rf(post.float(), guide, interpolation)
            peak = peak_features(ncc_volume(pre.float(), warped, (wy, wx), (ra, rl)), (ra, rl))
            offset, ncc = peak[:, :2], peak[:, 2:]
            weight = ncc.clamp_min(0.0).square()
            weight = weight * ((offset[:, :1].abs() < ra - 0.5) & (offset[:, 1:].abs() < rl - 0.5))
            inside = torch.zeros_like(weight)
            by, bx = wy // 2 + ra, wx // 2 + rl  # windows wholly inside the frame at every offset
            inside[..., by : h - by, bx : w - bx] = 1.0
            weight = weight * inside
            target = guide + offset
        squared = (disp32 - target).square().sum(dim=1, keepdim=True)
        return (weight * squared).sum() / weight.sum().clamp_min(1e-12)


__all__ = ["block_matching_consistency"]
