"""Cost-volume modules: plain local correlation or GOCor, behind one interface."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class WindowedCost(nn.Module):
    """A cost volume averaged over an odd (axial, lateral) window around each pixel (no parameters).

    forward(f1, f2) -> the inner module's N x D x H x W volume, box-averaged per
    displacement channel (borders: mean over the pixels inside the frame). A
    single pixel's feature product mostly measures speckle; the window's mean
    is the correlation of the two patches, as in NCC block matching.
    """

    def __init__(self, inner: nn.Module, window: tuple[int, int]) -> None:
        super().__init__()
        self.inner, self.window = inner, (int(window[0]), int(window[1]))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        wa, wl = self.window
        cost = self.inner(f1, f2)
        return F.avg_pool2d(cost, (wa, wl), stride=1, padding=(wa // 2, wl // 2), count_include_pad=False)

    def extra_repr(self) -> str:
        return f"window={self.window}"


def make_cost_volume(
    kind: str, radius_axial: int, radius_lateral: int, gocor_steps: int, window: tuple[int, int] = (1, 1)
) -> nn.Module:
    """ "plain" -> :class:`PlainCorrelation`, "gocor" -> :class:`GOCorrelation`; wrapped in
    :class:`WindowedCost` when ``window`` is larger than one pixel."""
    if kind == "plain":
        cost: nn.Module = PlainCorrelation(radius_axial, radius_lateral)
    elif kind == "gocor":
        cost = GOCorrelation(radius_axial, radius_lateral, gocor_steps)
    else:
        raise ValueError(f"unknown correlation type {kind!r}; expected 'plain' or 'gocor'")
    return cost if tuple(window) == (1, 1) else WindowedCost(cost, window)
