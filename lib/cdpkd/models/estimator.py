"""Per-level displacement estimator: (dense) conv stack, displacement head, upfeat head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv3x3, full_precision, make_stack, run_stack, small_init_


class LevelEstimator(nn.Module):
    """Predicts a residual displacement at one pyramid level.

    Input x: N x in_channels x h x w, the concatenation [cost volume, pre
    features, upsampled displacement, upsampled upfeat] (the last two absent at
    the coarsest estimator level).

    Returns (features, last, residual, upfeat):
        features: N x out_channels x h x w, the stack's output (dense concat),
            fed to the context network at the finest level;
        last: N x widths[-1] x h x w, the last conv's activation (for distillation);
        residual: N x 2 x h x w displacement residual in this level's pixels
            (float32 even under autocast);
        upfeat: N x upfeat_channels x h x w for the next finer level, or None.
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int], *, dense: bool, slope: float, upfeat_channels: int
    ) -> None:
        super().__init__()
        self.dense = dense
        self.slope = slope
        self.convs, out = make_stack(in_channels, widths, dense=dense)
        self.out_channels = out
        self.predict = small_init_(conv3x3(out, 2))
        # Computed at the coarse level and upsampled bilinearly (cheaper than a
        # transposed conv at the fine level, and no checkerboard artefacts).
        self.upfeat = conv3x3(out, upfeat_channels) if upfeat_channels > 0 else None

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        features, last = run_stack(self.convs, x, dense=self.dense, slope=self.slope)
        upfeat = self.upfeat(features) if self.upfeat is not None else None
        return features, last, full_precision(self.predict, features), upfeat
