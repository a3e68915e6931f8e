"""Multi-scale adaptation-vector distillation: OUR INTERPRETATION of MAVKD (Liu et al. 2024).

Only the abstract of the DPU-Net + MAVKD paper is public: it distils a
teacher into a lightweight dilated-parallel-convolution U-Net through
"multi-scale adaptation vectors". The method below is our reading of that
phrase, not the authors' algorithm:

- scales = the pyramid levels (coarse -> fine), optionally each also
  compared after average pooling by ``pool_factors`` (e.g. (1, 2): the
  level's grid and a 2x coarser one), so both fine detail and regional
  layout are matched;
- at every level l a learnable per-channel *adaptation vector* pair
  (scale a_l, shift b_l, length C_s,l; start at 1 and 0) re-weights the
  student's channels -- cheap, interpretable channel re-calibration; when
  the channel counts differ a learnable 1x1 projection P_l (C_s,l -> C_t,l,
  no bias) follows, otherwise P_l is the identity (no parameters):

      aligned_l = P_l(a_l * student_l + b_l)

- loss = level-weighted mean over levels (and pool factors, equally
  weighted within a level) of MSE(aligned_l, teacher_l).

With equal channel counts the adaptation starts as the identity, so equal
student and teacher features give zero loss at initialisation; with
``identity_init`` the projection starts as the rectangular identity too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..unsupervised._common import check_choice, full_precision
from ._common import (
    FEATURE_KINDS,
    AdaptedDistiller,
    DistillConfig,
    level_weights,
    weighted_mean,
)


class AdaptationVector(nn.Module):
    """Per-channel scale and shift (init 1, 0), then a 1x1 projection if C_in != C_out.

    N x C_in x h x w -> N x C_out x h x w.
    """

    def __init__(self, c_in: int, c_out: int, identity_init: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(c_in))
        self.shift = nn.Parameter(torch.zeros(c_in))
        self.projection: nn.Module = nn.Identity()
        if c_in != c_out:
            conv = nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)
            if identity_init:
                with torch.no_grad():
                    nn.init.eye_(conv.weight.view(c_out, c_in))
            self.projection = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1))


@dataclass(frozen=True)
class MAVKDConfig(DistillConfig):
    """Settings of :class:`MAVKD`.

    Attributes:
        kind: feature kind, "pre" | "estimator" | "cost".
        pool_factors: extra spatial scales per level (ints >= 1; 1 = the level's grid).
            Pooling is adaptive average pooling to ceil(h / f) x ceil(w / f).
        identity_init: the 1x1 projections (channel counts differ) start as the
            rectangular identity instead of PyTorch's default init.
        weight, level_weights, level_decay: see :class:`DistillConfig` (default: all levels equal).
    """

    kind: str = "pre"
    pool_factors: tuple[int, ...] = (1,)
    identity_init: bool = False

    def validate(self) -> None:
        super().validate()
        fn = type(self).__name__
        check_choice(self.kind, FEATURE_KINDS, fn, "kind")
        pf = self.pool_factors
        if (
            not isinstance(pf, Sequence)
            or len(pf) == 0
            or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in pf)
        ):
            raise ValueError(f"{fn}: pool_factors must be a non-empty sequence of ints >= 1, got {pf!r}")
        if not isinstance(self.identity_init, bool):
            raise ValueError(f"{fn}: identity_init must be a bool, got {self.identity_init!r}")


class MAVKD(AdaptedDistiller):
    """Multi-scale adaptation-vector distillation (our interpretation; see the module docstring).

    Args:
        teacher_channels, student_channels: per-level channel counts of the
            chosen feature kind (lists of ints or ``feature_channels`` dicts).
        config: a :class:`MAVKDConfig` (defaults if None).
        **overrides: field overrides, e.g. ``pool_factors=(1, 2)``.

    ``loss(student_outputs, teacher_outputs)`` -> dict of 0-d tensors:
    ``"mavkd_l<k>"`` per level (mean over the pool factors; 0 = coarsest),
    ``"mavkd"`` (level-weighted mean, squared feature units) and ``"total"`` =
    ``weight`` x ``"mavkd"``. The outputs need ``"features"[kind]`` with the
    channel counts given here, equal level counts and spatial sizes.

    Parameters: ``adapters`` (one :class:`AdaptationVector` per level).
    """

    name = "mavkd"
    config_class = MAVKDConfig

    def make_adapter(self, c_student: int, c_teacher: int) -> nn.Module:
        return AdaptationVector(c_student, c_teacher, self.config.identity_init)

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = type(self).__name__
        cfg = self.config
        pairs = self.checked_features(student, teacher)
        weights = level_weights(cfg, len(pairs), fn)
        out: dict[str, torch.Tensor] = {}
        parts = []
        with full_precision(pairs[0][0].device):
            for k, ((s, t), adapter, w) in enumerate(zip(pairs, self.adapters, weights)):
                dtype = adapter.scale.dtype
                aligned, t = adapter(s.to(dtype)), t.to(dtype)
                h, wd = t.shape[-2:]
                per_scale = []
                for f in cfg.pool_factors:
                    if f == 1:
                        a_f, t_f = aligned, t
                    else:
                        size = (math.ceil(h / f), math.ceil(wd / f))
                        a_f, t_f = F.adaptive_avg_pool2d(aligned, size), F.adaptive_avg_pool2d(t, size)
                    per_scale.append((a_f - t_f).pow(2).mean())
                value = torch.stack(per_scale).mean()
                out[f"mavkd_l{k}"] = value
                parts.append((w, value))
            out["mavkd"] = weighted_mean(parts, parts[0][1])
            out["total"] = cfg.weight * out["mavkd"]
        return out


__all__ = ["MAVKD", "AdaptationVector", "MAVKDConfig"]
