"""Depthwise-separable PWC baseline: a :class:`PWCNet` whose 3x3 convs are made separable.

Built without touching the PWC family: a :class:`PWCNet` is constructed from
``config.pwc``, then the 3x3 convs of the selected parts are swapped for
:class:`~cdpkd.models.baselines.layers.SeparableConv2d` (depthwise 3x3 +
pointwise 1x1, MobileNet-style). ``PWCNet`` only *calls* these convs, so its
forward (correlation, warping, units, outputs) is unchanged.

Kept as dense 3x3 convs:

- the first pyramid conv: on 1 (or 2) input channels a depthwise 3x3 is a
  single filter, so a separable version would only lose capacity (MobileNet
  keeps its first conv dense for the same reason); ``PWCNet`` also reads the
  model dtype from it;
- the 2-channel displacement heads and the upfeat heads (tiny, and the
  displacement heads run in float32 outside autocast via their ``weight``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import PWCConfig
from ..pwc import PWCNet
from ._config import JSONConfig
from .layers import SeparableConv2d

PARTS = ("pyramid", "estimators", "context")


@dataclass(frozen=True)
class DSPWCConfig(JSONConfig):
    """A :class:`PWCConfig` plus which of its parts use depthwise-separable convs.

    Attributes:
        pwc: the PWC-family architecture (a ``PWCConfig`` or its ``to_dict()``).
        separable: subset of ("pyramid", "estimators", "context"), stored in
            that order; empty gives back the plain ``PWCNet`` (same parameters).
    """

    pwc: PWCConfig = dataclasses.field(default_factory=PWCConfig)
    separable: tuple = PARTS

    def __post_init__(self) -> None:
        owner = type(self).__name__
        pwc = self.pwc
        if isinstance(pwc, Mapping):
            pwc = PWCConfig.from_dict(pwc)
        if not isinstance(pwc, PWCConfig):
            raise ValueError(f"{owner}: pwc must be a PWCConfig or its dict, got {type(pwc).__name__}")
        object.__setattr__(self, "pwc", pwc)
        parts = self.separable
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Iterable):
            raise ValueError(f"{owner}: separable must be a sequence of part names {PARTS}, got {parts!r}")
        parts = tuple(parts)
        unknown = [p for p in parts if p not in PARTS]
        if unknown or len(set(parts)) != len(parts):
            raise ValueError(f"{owner}: separable must hold distinct names from {PARTS}, got {parts!r}")
        if "context" in parts and not pwc.context:
            raise ValueError(f"{owner}: separable names 'context' but pwc.context is False")
        object.__setattr__(self, "separable", tuple(p for p in PARTS if p in parts))

    @property
    def in_channels(self) -> int:
        """Input channels of pre/post (from ``pwc``), like the other configs."""
        return self.pwc.in_channels


def _swap_stack(convs: nn.ModuleList, slope: float, start: int = 0) -> None:
    for j in range(start, len(convs)):
        convs[j] = SeparableConv2d.from_conv(convs[j], slope)


def make_separable_(net: PWCNet, parts: Iterable[str]) -> PWCNet:
    """Swap the 3x3 convs of ``parts`` of ``net`` for freshly initialised separable ones, in place."""
    slope = net.config.leaky_slope
    parts = set(parts)
    if "pyramid" in parts:
        for level, convs in enumerate(net.pyramid.levels):
            _swap_stack(convs, slope, start=1 if level == 0 else 0)  # first conv stays dense
    if "estimators" in parts:
        for estimator in net.estimators:
            _swap_stack(estimator.convs, slope)
    if "context" in parts and net.context is not None:
        _swap_stack(net.context.convs, slope)
    return net


class DSPWCNet(nn.Module):
    """PWC-family network with depthwise-separable convs (see the module docstring).

    ``forward(pre, post, return_features=False)`` is exactly :meth:`PWCNet.forward`
    (same dict: "displacement", "levels", "strides", "pyramid_levels",
    optionally "features"). State dict: ``net.`` + the ``PWCNet`` names, a
    swapped conv ``X`` becoming ``X.depthwise`` (no bias) and ``X.pointwise``.
    """

    architecture = "ds_pwc"

    def __init__(self, config: DSPWCConfig) -> None:
        super().__init__()
        if not isinstance(config, DSPWCConfig):
            raise TypeError(f"DSPWCNet needs a DSPWCConfig, got {type(config).__name__}")
        self.config = config
        self.net = make_separable_(PWCNet(config.pwc), config.separable)

    @property
    def check_finite(self) -> bool:
        return self.net.check_finite

    @check_finite.setter
    def check_finite(self, value: bool) -> None:
        self.net.check_finite = value

    def forward(self, pre: Any, post: Any, return_features: bool = False) -> dict[str, Any]:
        return self.net(pre, post, return_features=return_features)

    def extra_repr(self) -> str:
        return f"separable={self.config.separable}"
