"""Lightweight baseline displacement networks for the ablation (trained like the students).

Same calling convention as the PWC family: ``model(pre, post,
return_features=False)`` -> dict with "displacement" (N x 2 x H x W,
samples / lines), "levels" (coarse to fine, full-resolution units) and
"strides". Each has a frozen JSON config, so ``save_model`` / ``load_model``
round-trip it without pickle.

- :class:`USENet` / :class:`USENetConfig`: compact U-Net on the stacked pre/post
  frames (after Delaunay, Hu & Vercauteren, PMB 2021).
- :class:`DPUNet` / :class:`DPUNetConfig`: U-Net of residual dilated-parallel
  blocks (our interpretation of Liu et al. 2024's DPU-Net: abstract only).
- :class:`DSPWCNet` / :class:`DSPWCConfig`: a ``PWCNet`` with depthwise-separable convs.
"""

from .dpunet import DPUNet, DPUNetConfig
from .dspwc import DSPWCConfig, DSPWCNet, make_separable_
from .layers import ConvBlock, DilatedParallelBlock, SeparableConv2d
from .unet import UNetConfig, UNetDisplacementNet
from .usenet import USENet, USENetConfig

__all__ = [
    "ConvBlock",
    "DPUNet",
    "DPUNetConfig",
    "DSPWCConfig",
    "DSPWCNet",
    "DilatedParallelBlock",
    "SeparableConv2d",
    "UNetConfig",
    "UNetDisplacementNet",
    "USENet",
    "USENetConfig",
    "make_separable_",
]
