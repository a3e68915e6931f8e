"""Dilated context network: refines the finest displacement estimate (PWC-Net style)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv3x3, full_precision, make_stack, run_stack, small_init_


class ContextNetwork(nn.Module):
    """Plain stack of dilated 3x3 convs (growing receptive field), then a 2-channel head.

    Input: the finest estimator's features concatenated with its displacement
    (N x in_channels x h x w). Output: a displacement residual N x 2 x h x w
    in that level's pixels, added to the estimate by the caller.
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int], dilations: Sequence[int], slope: float
    ) -> None:
        super().__init__()
        self.slope = slope
        self.convs, out = make_stack(in_channels, widths, dense=False, dilations=dilations)
        self.predict = small_init_(conv3x3(out, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = run_stack(self.convs, x, dense=False, slope=self.slope)
        return full_precision(self.predict, last)
