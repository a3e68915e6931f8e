"""Axial and lateral LS strain of a displacement, for the physics-based loss terms."""

from __future__ import annotations

import torch

from cdpkd.metrics import ls_strain

from ._common import odd_window_for, pair_of_floats, pair_of_ints


def strain_pair(
    disp: torch.Tensor, window: int | tuple[int, int], spacing: float | tuple[float, float], fn: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(axial strain, lateral strain), each N x 1 x H x W, dimensionless.

    ``disp`` (N x 2 x H x W, already float32/64) is differentiated with
    :func:`cdpkd.metrics.ls_strain` (exact for linear fields, edges included):
    d u_ax / d y over ``window[0]`` pixels and d u_lat / d x over ``window[1]``,
    divided by the pixel ``spacing`` (in full-resolution samples / lines) so
    the strain is physical at any pyramid level. A window larger than the field
    is clipped to the largest odd size that fits; a field with fewer than 3
    pixels along an axis has no LS strain and raises ``ValueError``.
    """
    wy, wx = pair_of_ints(window, fn, "window", odd=True, minimum=3)
    sy, sx = pair_of_floats(spacing, fn, "spacing")
    _, _, h, w = disp.shape
    wy_, wx_ = odd_window_for(h, wy), odd_window_for(w, wx)
    if not wy_ or not wx_:
        raise ValueError(
            f"{fn}: the displacement ({h} x {w}) needs at least 3 pixels along each axis for an LS strain"
        )
    # check_finite_input=False: the finiteness check syncs with the device; the training
    # loop's NaN guard catches non-finite losses instead.
    eps_ax = ls_strain(disp[:, 0:1], wy_, axis=-2, check_finite_input=False) / sy
    eps_lat = ls_strain(disp[:, 1:2], wx_, axis=-1, check_finite_input=False) / sx
    return eps_ax, eps_lat
