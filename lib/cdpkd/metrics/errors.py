"""Errors against ground truth (simulation): displacement RMSE, endpoint error, strain RMSE.

Shapes: displacements are ``(..., 2, H, W)`` -- typically N x 2 x H x W,
channel 0 axial in samples, channel 1 lateral in lines. Errors are averaged
over the (masked) pixels of each sample; leading axes are kept, so
N x 2 x H x W gives results of shape (N,). Average over samples yourself
(``.mean()``) for a dataset figure.

Masks are bool (or 0/1) and broadcast to ``(..., 1, H, W)``: one shared
(H, W) mask or one N x 1 x H x W mask per sample. torch in, torch out
(float64 except on MPS); numpy in, numpy out. Displacements must be finite
everywhere (a NaN anywhere in a tracker's output is a bug worth an error,
not a masked-away pixel).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch

from ._arrays import (
    ArrayLike,
    as_mask,
    check_finite,
    check_nonempty,
    check_odd_window,
    check_same_shape,
    for_statistics,
    to_output,
    to_tensor,
)
from ._stats import masked_mean
from .strain import ls_strain


class DispRMSE(NamedTuple):
    """Per-component displacement RMSE: ``axial`` in samples, ``lateral`` in lines."""

    axial: ArrayLike
    lateral: ArrayLike


def _disp_pair(
    estimate: ArrayLike, ground_truth: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    est, as_numpy = to_tensor(estimate, "estimate")
    gt, _ = to_tensor(ground_truth, "ground_truth")
    est, gt = for_statistics(est), for_statistics(gt)
    if est.dim() < 3 or est.shape[-3] != 2:
        raise ValueError(
            f"estimate must be (..., 2, H, W) displacement (channel 0 axial, 1 lateral), "
            f"got shape {tuple(est.shape)}"
        )
    check_same_shape(est, gt, "estimate", "ground_truth")
    check_finite(est, "estimate")
    check_finite(gt, "ground_truth")
    gt = gt.to(device=est.device, dtype=torch.promote_types(est.dtype, gt.dtype))
    return est.to(gt.dtype), gt, as_numpy


def _pixel_mask(mask: Any, field: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Bool mask of shape ``field.shape[:-3] + (1, H, W)`` (all True for ``None``)."""
    shape = field.shape[:-3] + (1,) + field.shape[-2:]
    if mask is None:
        return torch.ones((), dtype=torch.bool, device=field.device).expand(shape)
    return as_mask(mask, shape, name, field.device)


def disp_rmse(estimate: ArrayLike, ground_truth: ArrayLike, mask: Any = None) -> DispRMSE:
    """Root-mean-square displacement error per component.

    Args:
        estimate, ground_truth: ``(..., 2, H, W)`` displacement in samples / lines.
        mask: optional region (see module docstring).

    Returns:
        ``DispRMSE(axial, lateral)``, each of shape ``estimate.shape[:-3]``, in
        samples (axial) and lines (lateral).
    """
    est, gt, as_numpy = _disp_pair(estimate, ground_truth)
    m = _pixel_mask(mask, est)
    check_nonempty(m, "mask")
    diff = est - gt
    rmse = masked_mean(diff * diff, m.expand(diff.shape)).sqrt()  # (..., 2)
    return DispRMSE(to_output(rmse[..., 0], as_numpy), to_output(rmse[..., 1], as_numpy))


def epe(
    estimate: ArrayLike,
    ground_truth: ArrayLike,
    mask: Any = None,
    *,
    spacing: tuple[float, float] | None = None,
) -> ArrayLike:
    """Mean endpoint error: mean over pixels of the Euclidean norm of the displacement error.

    Samples and lines have different physical sizes, so a norm in pixel units
    weighs them equally by convention (``spacing=None``, result in "pixels").
    Pass ``spacing=(axial_size, lateral_size)`` (e.g. mm per sample, mm per
    line) to get a physical endpoint error in those units.

    Returns shape ``estimate.shape[:-3]``.
    """
    est, gt, as_numpy = _disp_pair(estimate, ground_truth)
    m = _pixel_mask(mask, est)
    check_nonempty(m, "mask")
    diff = est - gt
    if spacing is not None:
        if len(spacing) != 2 or not all(float(s) > 0 for s in spacing):
            raise ValueError(
                f"spacing must be two positive sizes (axial, lateral), got {spacing!r}"
            )
        scale = torch.tensor([float(s) for s in spacing], dtype=diff.dtype, device=diff.device)
        diff = diff * scale.view(2, 1, 1)
    norm = diff.pow(2).sum(dim=-3, keepdim=True).sqrt()  # (..., 1, H, W)
    return to_output(masked_mean(norm, m)[..., 0], as_numpy)


def strain_rmse(
    estimate: ArrayLike,
    ground_truth: ArrayLike,
    window: int,
    mask: Any = None,
    *,
    component: Literal["axial", "lateral"] = "axial",
    exclude_border: bool = True,
) -> ArrayLike:
    """RMSE between LS strains of the estimated and the true displacement (dimensionless).

    Both strains use the same LS window (:func:`~cdpkd.metrics.ls_strain`), so
    the error measures the tracker, not the strain estimator's smoothing.

    Args:
        estimate, ground_truth: ``(..., 2, H, W)`` displacement.
        window: LS window (odd) in samples (axial) or lines (lateral).
        mask: optional region (see module docstring).
        component: ``"axial"`` (d axial / d depth, default) or ``"lateral"``.
        exclude_border: drop the first and last ``window // 2`` samples (lines)
            along the differentiation axis, where the LS fit is extrapolated
            from the nearest full window.

    Returns shape ``estimate.shape[:-3]``.
    """
    if component not in ("axial", "lateral"):
        raise ValueError(f"component must be 'axial' or 'lateral', got {component!r}")
    w = check_odd_window(window)
    est, gt, as_numpy = _disp_pair(estimate, ground_truth)
    channel, axis = (0, -2) if component == "axial" else (1, -1)
    s_est = ls_strain(est[..., channel : channel + 1, :, :], w, axis=axis)
    s_gt = ls_strain(gt[..., channel : channel + 1, :, :], w, axis=axis)
    m = _pixel_mask(mask, est)
    if exclude_border:
        keep = torch.zeros(m.shape[-2:], dtype=torch.bool, device=m.device)
        b = w // 2
        if axis == -2:
            keep[b : keep.shape[0] - b, :] = True
        else:
            keep[:, b : keep.shape[1] - b] = True
        m = m & keep
    check_nonempty(
        m, "mask" + (" (after excluding the window//2 border)" if exclude_border else "")
    )
    diff = s_est - s_gt
    return to_output(masked_mean(diff * diff, m).sqrt()[..., 0], as_numpy)
