"""Least-squares (LS) strain estimation from displacement.

Strain is the spatial derivative of displacement. Differentiating a noisy
displacement sample-to-sample amplifies noise, so elastography fits a straight
line over a sliding window of ``window`` samples and takes its slope -- the
Savitzky-Golay first derivative of polynomial order 1. The slope of the LS
line over samples ``x_0 .. x_{2m}`` is ``sum_i k_i x_i`` with

    k_i = (i - m) / sum_j (j - m)^2,      sum_j (j - m)^2 = m (m + 1) (2m + 1) / 3,

so the estimator is one 1-D convolution (differentiable in torch).

Edges: the first and last ``m = window // 2`` outputs reuse the slope of the
nearest full window (the window is shifted inside the signal rather than
padded). This is exactly ``scipy.signal.savgol_filter(..., polyorder=1,
deriv=1, mode="interp")``, keeps every output a full-window LS fit (same noise
level at the edges) and is unbiased for a linear field -- unlike padding the
displacement with ``replicate``, which flattens it and biases the edge strain
toward zero.

Units: displacement in samples (axial) or lines (lateral), derivative taken
per sample / per line, so strain is dimensionless; compression is negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._arrays import (
    ArrayLike,
    check_finite,
    check_odd_window,
    to_output,
    to_tensor,
)


def ls_slope_kernel(
    window: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """The LS-slope kernel ``k_i = (i - m) / sum (i - m)^2`` of length ``window`` (odd, >= 3).

    Applied as a cross-correlation (``conv1d``) to samples ``x[j - m .. j + m]`` it
    returns the slope of the straight line fitted to them, per sample.
    """
    w = check_odd_window(window)
    m = w // 2
    offsets = torch.arange(-m, m + 1, dtype=torch.float64)
    # sum (i - m)^2 computed in closed form: exact in float64 for any sane window.
    kernel = offsets / (m * (m + 1) * (2 * m + 1) / 3.0)
    return kernel.to(dtype=dtype, device=device)


def ls_strain(
    disp_component: ArrayLike, window: int, axis: int = -2, *, check_finite_input: bool = True
) -> ArrayLike:
    """Least-squares derivative of one displacement component along ``axis``.

    Args:
        disp_component: displacement of one component, any shape ``(..., H, W)``
            (or ``(..., L)`` with ``axis=-1``), in samples or lines. torch
            tensors stay on their device and dtype (half precision is computed
            in float32) and keep autograd; numpy arrays give a numpy array back.
        window: LS window length in samples along ``axis``; odd integer,
            ``3 <= window <= size along axis``.
        axis: axis to differentiate; ``-2`` (default) is axial (depth, RF
            samples), ``-1`` is lateral (A-lines).
        check_finite_input: raise on NaN/Inf input. The check syncs with the
            device, so training losses may pass ``False`` (they have their own
            NaN guard).

    Returns:
        Strain of the same shape as ``disp_component``: displacement units per
        sample/line along ``axis`` (dimensionless). For a linear field
        ``a + eps * index`` it is exactly ``eps`` everywhere, edges included.
    """
    x, as_numpy = to_tensor(disp_component, "disp_component")
    w = check_odd_window(window)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"axis must be an int, got {axis!r}")
    if x.dim() == 0 or not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for an input of shape {tuple(x.shape)}")
    length = x.shape[axis]
    if w > length:
        raise ValueError(
            f"window ({w}) is larger than the input along axis {axis} ({length} samples)"
        )
    if check_finite_input:
        check_finite(x, "disp_component")

    m = w // 2
    kernel = ls_slope_kernel(w, dtype=x.dtype, device=x.device)
    axis = axis % x.dim()
    if axis == x.dim() - 2:
        # Axial on (..., H, W): a (w x 1) conv2d on a view avoids transposing a
        # large batch (this runs inside training losses).
        planes = x.reshape(-1, 1, *x.shape[-2:])
        valid = F.conv2d(planes, kernel.view(1, 1, w, 1))  # full windows only
        # Replicating the *slope* (not the displacement) = shifting the edge
        # windows inside the signal: unbiased for linear fields, SG "interp" mode.
        out = F.pad(valid, (0, 0, m, m), mode="replicate").reshape(x.shape)
    else:
        moved = x.movedim(axis, -1)  # a view (no copy) when axis is already last
        valid = F.conv1d(moved.reshape(-1, 1, length), kernel.view(1, 1, w))
        full = F.pad(valid, (m, m), mode="replicate")
        out = full.reshape(moved.shape).movedim(-1, axis)
    return to_output(out, as_numpy)


def _component_strain(
    disp: ArrayLike, window: int, channel: int, axis: int, name: str, check_finite_input: bool
) -> ArrayLike:
    d, as_numpy = to_tensor(disp, name)
    if d.dim() != 4 or d.shape[1] != 2:
        raise ValueError(
            f"{name} must be N x 2 x H x W (channel 0 axial, 1 lateral), got shape {tuple(d.shape)}"
        )
    out = ls_strain(
        d[:, channel : channel + 1], window, axis=axis, check_finite_input=check_finite_input
    )
    return to_output(out, as_numpy)


def axial_strain(disp: ArrayLike, window: int, *, check_finite_input: bool = True) -> ArrayLike:
    """Axial strain d(axial displacement)/d(axial sample), N x 2 x H x W -> N x 1 x H x W.

    ``window`` is the LS window in RF samples (odd, >= 3, <= H). Dimensionless;
    compression is negative. See :func:`ls_strain`.
    """
    return _component_strain(disp, window, 0, -2, "disp", check_finite_input)


def lateral_strain(disp: ArrayLike, window: int, *, check_finite_input: bool = True) -> ArrayLike:
    """Lateral strain d(lateral displacement)/d(lateral line), N x 2 x H x W -> N x 1 x H x W.

    ``window`` is the LS window in A-lines (odd, >= 3, <= W). Displacement and
    position are both in lines, so the ratio is the physical (dimensionless)
    lateral strain whatever the line pitch. See :func:`ls_strain`.
    """
    return _component_strain(disp, window, 1, -1, "disp", check_finite_input)
