"""Shared feature pyramid applied to the pre and the post frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv3x3
from .config import PWCConfig


class FeaturePyramid(nn.Module):
    """Per level a few 3x3 conv + LeakyReLU; the first conv of a level has stride 2
    unless the level keeps full resolution (``config.full_res_levels``).

    Shapes: N x feature_channels x H x W -> list over levels (finest first) of
    N x pyramid_channels[l][-1] x H / s_l x W / s_l, s_l = ``config.level_stride(l)``
    (H, W divisible by the total stride).
    """

    def __init__(self, config: PWCConfig) -> None:
        super().__init__()
        self.slope = config.leaky_slope
        self.levels = nn.ModuleList()
        c = config.feature_channels
        for level, widths in enumerate(config.pyramid_channels):
            stride = 1 if level < config.full_res_levels else 2
            convs = nn.ModuleList()
            for j, w in enumerate(widths):
                convs.append(conv3x3(c, w, stride=stride if j == 0 else 1))
                c = w
            self.levels.append(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for convs in self.levels:
            for conv in convs:
                x = F.leaky_relu(conv(x), self.slope)
            feats.append(x)
        return feats
