"""USENet-style baseline: a compact U-Net on the stacked pre/post RF frames.

After Delaunay, Hu & Vercauteren (PMB 2021, "An unsupervised learning
approach to ultrasound strain elastography with spatio-temporal
consistency"): a convolutional network regresses the displacement field
directly from pre- and post-compression RF frames and is trained
unsupervised (image similarity + strain smoothness, plus temporal
consistency over sequences). Our interpretation for this project, a compact
U-Net (encoder-decoder with skip connections, pre/post stacked as input
channels) trained on frame pairs with the project's own unsupervised loss:

- the recurrent (ConvLSTM) decoder of the paper, which links successive
  frames of a sequence, is replaced by plain conv blocks (pairs, not
  sequences, here), i.e. the paper's feed-forward variant;
- downsampling is a stride-2 conv rather than max pooling, because pooling
  an RF carrier (~8 samples per period) aliases it, while a learned strided
  conv can keep the phase information in its channels;
- displacement heads at every decoder scale, summed coarse to fine, so the
  multi-scale unsupervised loss gets "levels" like the PWC family.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import check_int
from .layers import ConvBlock
from .unet import UNetConfig, UNetDisplacementNet


@dataclass(frozen=True)
class USENetConfig(UNetConfig):
    """:class:`UNetConfig` plus ``convs_per_block``: 3x3 convs per encoder/decoder block
    (the first encoder conv of levels >= 1 has stride 2)."""

    convs_per_block: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.convs_per_block, type(self).__name__, "convs_per_block", 1)


class USENet(UNetDisplacementNet):
    """USENet-style U-Net (see the module docstring); ``forward`` as :class:`UNetDisplacementNet`.

    State dict: ``encoder.{l}.convs.{j}``, ``decoder.{l}.convs.{j}`` (l finest
    first), ``heads.{k}`` (k coarse to fine).
    """

    architecture = "usenet"

    def __init__(self, config: USENetConfig) -> None:
        if not isinstance(config, USENetConfig):
            raise TypeError(f"USENet needs a USENetConfig, got {type(config).__name__}")
        enc_io, dec_io = config.channel_plan()
        slope, convs = config.leaky_slope, config.convs_per_block
        encoder = [
            ConvBlock(i, o, convs=convs, stride=1 if lv == 0 else 2, slope=slope)
            for lv, (i, o) in enumerate(enc_io)
        ]
        decoder = [ConvBlock(i, o, convs=convs, stride=1, slope=slope) for i, o in dec_io]
        super().__init__(config, encoder, decoder)
