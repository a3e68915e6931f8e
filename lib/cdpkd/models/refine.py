"""Full-resolution refinement head: a residual displacement from a windowed NCC cost volume on RF.

The cpu teacher estimates at stride 2 and its error is the precision of the match at the speckle
scale (README, "Teacher vs classical trackers"); NCC block matching gets its sub-sample precision
from the windowed correlation of the RF carrier. This head gives a network that same evidence:
after the finest estimate (upsampled to the input grid), it warps the RF post frame by it,
computes the zero-mean NCC between the RF pre frame and the warped post frame over a window at
every integer offset of a small search box (``cdpkd.classic.ncc_volume``, built on the correlation
op), and a dense conv stack turns [NCC volume, finest pyramid features of the pre frame, current
displacement] into a residual. Enabled by ``PWCConfig.refine_widths``; with ``refine_peak`` the
head also sees the volume's peak located to a sub-sample offset as NCC block matching locates it
(:func:`cdpkd.classic.subsample.peak_features`), which a small conv stack cannot easily compute from the volume itself (a
ratio of differences around an argmax). ``refine_interp="spline"`` warps the RF post frame with a
cubic B-spline instead of bilinearly (:func:`cdpkd.classic.interp.warp_rf`). With
``refine_guide_smoothing`` the network hands the head a box mean of its estimate and adds the residual
to that mean (``PWCNet.forward``), as NCC block matching's passes warp by a smoothed estimate: the
windowed NCC does not see the estimate's jitter below the window, so a residual added to the raw
estimate would keep it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cdpkd.classic.interp import RF_INTERPOLATIONS, warp_rf
from cdpkd.classic.ncc_volume import ncc_volume
from cdpkd.classic.subsample import peak_features

from .blocks import conv3x3, full_precision, make_stack, run_stack, small_init_


class NCCRefinement(nn.Module):
    """Residual displacement at full resolution from an RF NCC cost volume.

    forward(pre, post, disp, features) -> residual N x 2 x H x W (axial samples, lateral lines):
        pre, post: N x 1 x H x W RF frames (any scale: NCC is scale-free);
        disp: N x 2 x H x W current estimate in samples / lines (warp(post, disp) ~ pre);
        features: N x C x H x W pre-frame features at full resolution (the pyramid's level 0).

    The cost volume has D = (2 ra + 1)(2 rl + 1) channels in [-1, 1] (-1 where a window is flat or
    leaves the frame); with ``peak`` the head also sees :func:`~cdpkd.classic.subsample.peak_features` of it (3 channels).
    It is computed without gradient (``ncc_volume`` works in place): the head's weights and,
    through the ``disp`` input and the residual sum, the network before it still train.
    The prediction conv starts near zero (:func:`~cdpkd.models.blocks.small_init_`), so a head added
    to a trained network starts close to that network's output.
    """

    def __init__(
        self,
        feature_channels: int,
        widths: Sequence[int],
        radius: tuple[int, int],
        window: tuple[int, int],
        *,
        slope: float,
        peak: bool = False,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if interpolation not in RF_INTERPOLATIONS:
            raise ValueError(f"NCCRefinement: interpolation must be one of {RF_INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation
        self.radius, self.window, self.slope = (int(radius[0]), int(radius[1])), (int(window[0]), int(window[1])), slope
        self.peak = peak
        d = (2 * self.radius[0] + 1) * (2 * self.radius[1] + 1)
        self.convs, out = make_stack(d + feature_channels + 2 + (3 if peak else 0), widths, dense=True)
        self.predict = small_init_(conv3x3(out, 2))

    def cost(self, pre: torch.Tensor, post: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
        """The NCC volume N x D x H x W of ``pre`` and ``post`` warped by ``disp`` (float32, no gradient)."""
        with torch.no_grad():
            pre32, post32, disp32 = pre.float(), post.float(), disp.float()
            return ncc_volume(pre32, warp_rf(post32, disp32, self.interpolation), self.window, self.radius)

    def forward(
        self, pre: torch.Tensor, post: torch.Tensor, disp: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        cost = self.cost(pre, post, disp)
        parts = [cost.to(features.dtype), features, disp.to(features.dtype)]
        if self.peak:
            parts.append(peak_features(cost, self.radius).to(features.dtype))
        x = torch.cat(parts, dim=1)
        stack, _ = run_stack(self.convs, x, dense=True, slope=self.slope)
        return full_precision(self.predict, stack)

    def extra_repr(self) -> str:
        return (f"radius={self.radius}, window={self.window}, {self.interpolation} warp"
                + (", peak features" if self.peak else ""))
