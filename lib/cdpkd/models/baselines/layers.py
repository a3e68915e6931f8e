"""Building blocks of the baselines: plain conv block, dilated parallel block, separable conv.

Like ``cdpkd.models.blocks``, activations are functional LeakyReLUs and every
learnable layer is a plain ``nn.Conv2d``. Shapes are N x C x H x W throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import conv3x3

RESIDUAL_SCALE = 2**-0.5  # two roughly independent unit-variance paths summed -> unit variance


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """Pointwise conv, bias on."""
    return nn.Conv2d(in_channels, out_channels, 1)


class ConvBlock(nn.Module):
    """``convs`` x (3x3 conv + LeakyReLU); the first conv has stride ``stride``.

    Shapes: N x in_channels x H x W -> N x out_channels x ceil(H / stride) x ceil(W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, *, convs: int, stride: int, slope: float) -> None:
        super().__init__()
        self.slope = slope
        self.convs = nn.ModuleList(
            conv3x3(in_channels if j == 0 else out_channels, out_channels, stride=stride if j == 0 else 1)
            for j in range(convs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.slope)
        return x


class DilatedParallelBlock(nn.Module):
    """Residual block of parallel dilated 3x3 convs fused by a 1x1 conv.

    y = act(fuse(merge_d act(conv3x3_d(x))) + skip(x)), one branch per
    dilation d (out_channels each), merged by channel concatenation
    (``fusion="concat"``, the 1x1 conv then mixes the scales) or by summation
    (``"sum"``, cheaper fuse). ``skip`` is the identity when in == out
    channels, else a 1x1 projection. Parallel dilations see several speckle /
    displacement scales at the cost of one conv's depth. The sum is scaled by
    1/sqrt(2) so a He-initialised block keeps the activation variance (a
    plain residual sum doubles it per block: ~20x in std over a 5-level
    U-Net, and the initial displacement would be tens of samples).

    Shapes: N x in_channels x H x W -> N x out_channels x H x W.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, dilations: Sequence[int], fusion: str, slope: float
    ) -> None:
        super().__init__()
        if fusion not in ("concat", "sum"):
            raise ValueError(f"DilatedParallelBlock: fusion must be 'concat' or 'sum', got {fusion!r}")
        self.slope = slope
        self.concat = fusion == "concat"
        self.branches = nn.ModuleList(conv3x3(in_channels, out_channels, dilation=d) for d in dilations)
        merged = out_channels * len(self.branches) if self.concat else out_channels
        self.fuse = conv1x1(merged, out_channels)
        self.skip = None if in_channels == out_channels else conv1x1(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [F.leaky_relu(branch(x), self.slope) for branch in self.branches]
        merged = torch.cat(outs, dim=1) if self.concat else torch.stack(outs).sum(dim=0)
        shortcut = x if self.skip is None else self.skip(x)
        return F.leaky_relu((self.fuse(merged) + shortcut) * RESIDUAL_SCALE, self.slope)


class SeparableConv2d(nn.Module):
    """Depthwise-separable replacement of a 3x3 conv: depthwise 3x3 (no bias) then pointwise 1x1.

    No activation in between: the pair stands in for one linear conv, and the
    caller applies the same LeakyReLU as after the original conv. Parameters:
    9 * in + in * out + out instead of 9 * in * out + out.

    Shapes: N x in_channels x H x W -> N x out_channels x H' x W' (the
    original conv's stride, dilation and 'same' padding are kept).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1, slope: float = 0.1
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = conv1x1(in_channels, out_channels)
        self.reset_parameters(slope)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, slope: float) -> SeparableConv2d:
        """A fresh separable conv with ``conv``'s channels, stride and dilation (weights not copied)."""
        if conv.kernel_size != (3, 3) or conv.groups != 1 or conv.padding != conv.dilation:
            raise ValueError(
                f"SeparableConv2d.from_conv: expected a dense 3x3 'same'-padded conv, got {conv}"
            )
        if conv.stride[0] != conv.stride[1] or conv.dilation[0] != conv.dilation[1]:
            raise ValueError(f"SeparableConv2d.from_conv: anisotropic stride/dilation not supported: {conv}")
        return cls(
            conv.in_channels, conv.out_channels, stride=conv.stride[0], dilation=conv.dilation[0], slope=slope
        )

    def reset_parameters(self, slope: float) -> None:
        """He init of the pair as one conv: the depthwise part preserves variance (gain 1, fan-in 9),
        the pointwise part carries the LeakyReLU gain (fan-in = in_channels)."""
        nn.init.kaiming_normal_(self.depthwise.weight, mode="fan_in", nonlinearity="linear")
        nn.init.kaiming_normal_(self.pointwise.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
        nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
