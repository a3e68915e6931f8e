"""Shared U-Net skeleton of the U-Net baselines (USENet-style, DPU-Net-style).

The pre and post RF frames are stacked as channels (early fusion: no cost
volume, no warping) and pass through an encoder of ``L`` levels (level 0 at
full resolution, level l at stride 2**l) and a decoder that upsamples
bilinearly, concatenates the encoder's skip features and applies a block.
Subclasses only choose the blocks.

Displacement heads (3x3 conv -> 2 channels, float32 even under autocast) sit
on the bottleneck and on every decoder level (``multiscale=True``, summed
coarse to fine: each head adds a residual in its level's pixels, scaled to
full-resolution units by the stride), or on the finest decoder level only.

Sizes: H and W need no divisibility: inputs are zero-padded at the
bottom/right to multiples of ``2 ** (L - 1)`` and every output is cropped
back (as in ``PWCNet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import conv3x3, full_precision, he_init_, small_init_
from ..inputs import check_pair, crop_level, normalize_pair, pad_to_multiple
from ._config import JSONConfig, check_bool, check_int, check_slope, int_tuple


@dataclass(frozen=True)
class UNetConfig(JSONConfig):
    """Fields shared by the U-Net baselines (levels indexed finest first, like ``PWCConfig``).

    Attributes:
        in_channels: channels of each of pre/post (1 for RF); the network sees 2x that.
        normalize_input: divide each pre/post pair by its joint RMS (amplitude-scale invariance).
        encoder_widths: out-channels of encoder level l = 0 .. L-1 (L >= 2); the last
            level is the bottleneck, at stride 2 ** (L - 1).
        decoder_widths: out-channels of decoder level l = 0 .. L-2 (L - 1 entries, finest first).
        multiscale: displacement heads on the bottleneck and every decoder level, summed
            coarse to fine, returned as "levels" (True), or one head at full resolution.
        leaky_slope: negative slope of every LeakyReLU.
    """

    in_channels: int = 1
    normalize_input: bool = True
    encoder_widths: tuple = (16, 32, 64, 128)
    decoder_widths: tuple = (16, 32, 64)
    multiscale: bool = True
    leaky_slope: float = 0.1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        set_ = object.__setattr__  # frozen: normalise once here, immutable afterwards
        check_int(self.in_channels, owner, "in_channels", 1)
        check_bool(self.normalize_input, owner, "normalize_input")
        check_bool(self.multiscale, owner, "multiscale")
        set_(self, "leaky_slope", check_slope(self.leaky_slope, owner))
        enc = int_tuple(self.encoder_widths, owner, "encoder_widths", min_len=2)
        dec = int_tuple(self.decoder_widths, owner, "decoder_widths")
        if len(dec) != len(enc) - 1:
            raise ValueError(
                f"{owner}: decoder_widths needs len(encoder_widths) - 1 = {len(enc) - 1} entries "
                f"(finest first), got {len(dec)}: {dec}"
            )
        set_(self, "encoder_widths", enc)
        set_(self, "decoder_widths", dec)

    @property
    def num_levels(self) -> int:
        return len(self.encoder_widths)

    @property
    def total_stride(self) -> int:
        """Inputs are padded to multiples of this (the bottleneck's stride)."""
        return 2 ** (self.num_levels - 1)

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each returned level, coarse to fine."""
        if not self.multiscale:
            return (1,)
        return tuple(2**level for level in reversed(range(self.num_levels)))

    def channel_plan(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(in, out) channels of each encoder level and each decoder level, finest first.

        Decoder level l takes the upsampled output of level l + 1 (the
        bottleneck for l = L - 2) concatenated with encoder level l's output.
        """
        enc, dec = self.encoder_widths, self.decoder_widths
        n = self.num_levels
        encoder = [(2 * self.in_channels if lv == 0 else enc[lv - 1], enc[lv]) for lv in range(n)]
        decoder = [((enc[lv + 1] if lv == n - 2 else dec[lv + 1]) + enc[lv], dec[lv]) for lv in range(n - 1)]
        return encoder, decoder


class UNetDisplacementNet(nn.Module):
    """Early-fusion U-Net regressing displacement; subclasses supply the blocks.

    ``forward(pre, post, return_features=False)``:

    Args:
        pre, post: RF frames N x in_channels x H x W (H axial samples, W lateral
            lines), any H, W >= 1 (padded, then cropped back).

    Returns a dict:
        "displacement": N x 2 x H x W float32, channel 0 axial (samples), 1
            lateral (lines); Lagrangian on the pre grid: warp(post, d) ~ pre.
        "levels": coarse to fine list of N x 2 x ceil(H / s) x ceil(W / s)
            displacements in full-resolution units (the last is the final
            displacement); only the final one when ``multiscale`` is False.
        "strides": the matching downsampling factors s (ints).
        "features" (only if ``return_features``): {"encoder": encoder outputs
            finest first, "decoder": bottleneck then decoder outputs, coarse to
            fine}, each cropped to ceil(H / s) x ceil(W / s).

    Raises ``ValueError`` for invalid inputs (see ``cdpkd.models.inputs.check_pair``;
    ``model.check_finite = False`` skips the NaN/Inf check).
    """

    architecture = ""  # set by subclasses; the key in ``cdpkd.models.ARCHITECTURES``

    def __init__(self, config: UNetConfig, encoder: list[nn.Module], decoder: list[nn.Module]) -> None:
        super().__init__()
        n = config.num_levels
        if len(encoder) != n or len(decoder) != n - 1:
            raise ValueError(f"{type(self).__name__}: need {n} encoder and {n - 1} decoder blocks")
        self.config = config
        self.check_finite = True
        self.encoder = nn.ModuleList(encoder)
        self.decoder = nn.ModuleList(decoder)
        # heads[k] for the k-th returned level, coarse to fine (bottleneck first when multiscale)
        widths = (config.encoder_widths[-1], *reversed(config.decoder_widths))
        self.heads = nn.ModuleList(conv3x3(w, 2) for w in (widths if config.multiscale else widths[-1:]))
        he_init_(self, config.leaky_slope)
        for head in self.heads:  # displacement starts near zero: the first warps in the loss are benign
            small_init_(head)

    def _prepare(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """Normalised pair stacked on channels and padded: N x 2C x H' x W'."""
        dtype = self.heads[0].weight.dtype
        pre, post = pre.to(dtype), post.to(dtype)
        if self.config.normalize_input:
            pre, post = normalize_pair(pre, post)
        return pad_to_multiple(torch.cat((pre, post), dim=1), self.config.total_stride)

    def forward(self, pre: torch.Tensor, post: torch.Tensor, return_features: bool = False) -> dict[str, Any]:
        cfg = self.config
        check_pair(pre, post, cfg.in_channels, check_finite=self.check_finite)
        height, width = pre.shape[-2:]
        x = self._prepare(pre, post)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)

        n = cfg.num_levels
        decoded = [x]  # coarse to fine, aligned with self.heads when multiscale
        for lv in reversed(range(n - 1)):
            skip = skips[lv]
            up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder[lv](torch.cat((up, skip), dim=1))
            decoded.append(x)

        head_inputs = decoded if cfg.multiscale else decoded[-1:]
        disp = None  # full-resolution units on the current level's grid
        levels = []
        for head, feat, stride in zip(self.heads, head_inputs, cfg.strides):
            residual = full_precision(head, feat) * stride  # level pixels -> samples / lines
            if disp is not None:
                disp = F.interpolate(disp, size=feat.shape[-2:], mode="bilinear", align_corners=False)
                residual = residual + disp
            disp = residual
            levels.append(crop_level(disp, height, width, stride))

        out: dict[str, Any] = {"displacement": levels[-1], "levels": levels, "strides": list(cfg.strides)}
        if return_features:
            out["features"] = {
                "encoder": [crop_level(f, height, width, 2**lv) for lv, f in enumerate(skips)],
                "decoder": [crop_level(f, height, width, 2 ** (n - 1 - k)) for k, f in enumerate(decoded)],
            }
        return out

    def extra_repr(self) -> str:
        cfg = self.config
        return f"levels={cfg.num_levels}, multiscale={cfg.multiscale}"
