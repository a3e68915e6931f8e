"""Cost-volume modules: plain local correlation or GOCor, behind one interface."""

from __future__ import annotations

import torch
from torch import nn

from cdpkd.ops import correlation

from .gocor import GOCorrelation


class PlainCorrelation(nn.Module):
    """``cdpkd.ops.correlation`` as a module (no parameters).

    forward(f1, f2): N x C x H x W each -> N x (2ra+1)(2rl+1) x H x W, mean over C.
    """

    def __init__(self, radius_axial: int, radius_lateral: int) -> None:
        super().__init__()
        self.radius_axial, self.radius_lateral = radius_axial, radius_lateral

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        return correlation(f1, f2, self.radius_axial, self.radius_lateral)

    def extra_repr(self) -> str:
        return f"radius_axial={self.radius_axial}, radius_lateral={self.radius_lateral}"


def make_cost_volume(kind: str, radius_axial: int, radius_lateral: int, gocor_steps: int) -> nn.Module:
    """ "plain" -> :class:`PlainCorrelation`, "gocor" -> :class:`GOCorrelation`."""
    if kind == "plain":
        return PlainCorrelation(radius_axial, radius_lateral)
    if kind == "gocor":
        return GOCorrelation(radius_axial, radius_lateral, gocor_steps)
    raise ValueError(f"unknown correlation type {kind!r}; expected 'plain' or 'gocor'")
