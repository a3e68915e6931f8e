"""DPU-Net-style baseline: a U-Net of residual dilated-parallel-convolution blocks.

Liu et al. (2024) describe DPU-Net (with MAVKD distillation) for ultrasound
elastography; only the abstract is public, so this module is OUR
INTERPRETATION of it, not a reproduction: a U-Net on the concatenated
pre/post RF whose blocks run several 3x3 convs with different dilation rates
in parallel, merge them (concatenation or sum), fuse with a 1x1 conv and add
a residual connection (:class:`~cdpkd.models.baselines.layers.DilatedParallelBlock`).
Encoder levels >= 1 start with a stride-2 3x3 conv (no pooling of the RF
carrier); the decoder upsamples bilinearly and concatenates skip features.
The displacement is regressed at full resolution and, with ``multiscale``,
at every decoder scale (summed coarse to fine, returned as "levels").
MAVKD (the distillation) is not part of the network and is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..blocks import conv3x3
from ._config import check_choice, check_int, int_tuple
from .layers import DilatedParallelBlock
from .unet import UNetConfig, UNetDisplacementNet

FUSIONS = ("concat", "sum")


@dataclass(frozen=True)
class DPUNetConfig(UNetConfig):
    """:class:`UNetConfig` plus the dilated-parallel block settings.

    Attributes:
        dilations: dilation rate of each parallel 3x3 branch (in pixels of the
            block's level), e.g. (1, 2, 4): receptive fields 3, 5, 9.
        fusion: "concat" (1x1 conv over all branches) or "sum" (branches added, then 1x1).
        blocks_per_level: dilated-parallel blocks per encoder and decoder level.
    """

    dilations: tuple = (1, 2, 4)
    fusion: str = "concat"
    blocks_per_level: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        object.__setattr__(self, "dilations", int_tuple(self.dilations, owner, "dilations"))
        check_choice(self.fusion, FUSIONS, owner, "fusion")
        check_int(self.blocks_per_level, owner, "blocks_per_level", 1)


def _level(config: DPUNetConfig, in_channels: int, out_channels: int, downsample: bool) -> nn.Sequential:
    """[stride-2 3x3 conv + LeakyReLU] then ``blocks_per_level`` dilated-parallel blocks."""
    layers: list[nn.Module] = []
    c = in_channels
    if downsample:
        layers += [conv3x3(c, out_channels, stride=2), nn.LeakyReLU(config.leaky_slope)]
        c = out_channels
    for _ in range(config.blocks_per_level):
        layers.append(
            DilatedParallelBlock(
                c, out_channels, dilations=config.dilations, fusion=config.fusion, slope=config.leaky_slope
            )
        )
        c = out_channels
    return nn.Sequential(*layers)


class DPUNet(UNetDisplacementNet):
    """DPU-Net-style U-Net (see the module docstring); ``forward`` as :class:`UNetDisplacementNet`.

    State dict: ``encoder.{l}.{i}`` (for l >= 1, i = 0 is the stride-2 conv, i = 1 its
    activation, then the blocks), ``decoder.{l}.{i}`` (blocks), ``heads.{k}`` (coarse to fine).
    """

    architecture = "dpunet"

    def __init__(self, config: DPUNetConfig) -> None:
        if not isinstance(config, DPUNetConfig):
            raise TypeError(f"DPUNet needs a DPUNetConfig, got {type(config).__name__}")
        enc_io, dec_io = config.channel_plan()
        encoder = [_level(config, i, o, downsample=lv > 0) for lv, (i, o) in enumerate(enc_io)]
        decoder = [_level(config, i, o, downsample=False) for i, o in dec_io]
        super().__init__(config, encoder, decoder)
