"""Small building blocks: 3x3 convs and a (dense) conv stack.

Activations are applied functionally (LeakyReLU with the config's slope) so
that every learnable layer is a plain ``nn.Conv2d`` whose out-channels come
from the config: pruning code can hook or replace them one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv with 'same' padding (for stride 1), bias on."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation)


def he_init_(module: nn.Module, slope: float) -> nn.Module:
    """He (Kaiming) normal init, fan-in, for LeakyReLU(``slope``), of every Conv2d in ``module``; zero biases.

    PyTorch's default conv init scales activations by about 0.6 per layer:
    after a deep pyramid the features, and the cost volume (their product),
    are ~1e-4, the estimators cannot see the matching signal and learn a
    constant displacement. He init keeps activations O(1) at every level.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def small_init_(conv: nn.Conv2d, gain: float = 0.1) -> nn.Conv2d:
    """Shrink a displacement head's initial weights and zero its bias.

    A freshly built network then predicts displacements near zero, so the
    first warps are benign instead of random shuffles of the features.
    """
    with torch.no_grad():
        conv.weight.mul_(gain)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


def full_precision(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a displacement head outside autocast, in its parameters' dtype (float32 normally).

    Displacements are summed over levels and later differentiated into strain
    of ~0.1-3 %; bf16/fp16 (8-11 bit mantissa) would quantise a 30-sample
    displacement to 0.1-sample steps. The heads have 2 out-channels: cheap.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        return conv(x.to(conv.weight.dtype))


def make_stack(
    in_channels: int, widths: Sequence[int], *, dense: bool, dilations: Sequence[int] | None = None
) -> tuple[nn.ModuleList, int]:
    """Build the 3x3 convs of a (dense) stack; returns them and the stack's output channels.

    Dense: x_{k+1} = cat(x_k, act(conv_k(x_k))), output ``in_channels + sum(widths)``
    channels. Plain: x_{k+1} = act(conv_k(x_k)), output ``widths[-1]`` channels.
    """
    dilations = tuple(dilations) if dilations is not None else (1,) * len(widths)
    convs = nn.ModuleList()
    c = in_channels
    for w, d in zip(widths, dilations):
        convs.append(conv3x3(c, w, dilation=d))
        c = c + w if dense else w
    return convs, c


def run_stack(
    convs: nn.ModuleList, x: torch.Tensor, *, dense: bool, slope: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a stack from :func:`make_stack`, each conv followed by LeakyReLU.

    Shapes: N x in_channels x H x W -> (N x out_channels x H x W, the last
    conv's activation N x widths[-1] x H x W).
    """
    last = x
    for conv in convs:
        last = F.leaky_relu(conv(x), slope)
        x = torch.cat((x, last), dim=1) if dense else last
    return x, last
