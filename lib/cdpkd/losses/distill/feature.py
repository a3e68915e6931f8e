"""Feature distillation (FitNets-style hints): 1x1 adapters map student features to the teacher's channels.

Per pyramid level l, a learnable 1x1 conv A_l (C_s,l -> C_t,l, with bias)
maps the student's features of the chosen kind to the teacher's channel
count; the loss is the MSE between A_l(student) and the teacher, averaged
over N, channels and pixels, then level-weighted.

``normalize=True`` standardises every channel by the *teacher's* per-sample
spatial mean and standard deviation (the adapted student is mapped with the
same statistics, so an exact match is still required): each channel then
counts the same regardless of its activation scale. The variance is floored
at ``norm_eps`` x the mean channel variance of that sample (plus 1e-12), so
near-constant channels do not blow up.

Feature kinds (``kind``): ``"pre"`` (pre-frame pyramid features, the encoder)
or ``"estimator"`` (last activation of each level's estimator, the decoder);
``"cost"`` (cost volumes) is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..unsupervised._common import check_choice, check_positive, full_precision
from ._common import (
    FEATURE_KINDS,
    AdaptedDistiller,
    DistillConfig,
    level_weights,
    weighted_mean,
)


def channel_standardized_mse(student: torch.Tensor, teacher: torch.Tensor, eps: float) -> torch.Tensor:
    """MSE after dividing both by the teacher's per-sample, per-channel spatial std (N x C x h x w -> 0-d).

    (The teacher's mean cancels in the difference.) Variance floor: ``eps`` x
    the sample's mean channel variance + 1e-12.
    """
    var = teacher.var(dim=(2, 3), keepdim=True, unbiased=False)
    floor = eps * var.mean(dim=1, keepdim=True) + 1e-12
    return ((student - teacher).pow(2) / (var + floor)).mean()


@dataclass(frozen=True)
class FeatureDistillationConfig(DistillConfig):
    """Settings of :class:`FeatureDistillation`.

    Attributes:
        kind: feature kind, "pre" | "estimator" | "cost".
        normalize: standardise channels by the teacher's statistics (module docstring).
        norm_eps: relative variance floor for ``normalize`` (> 0).
        identity_init: initialise the adapters to the (rectangular) identity
            instead of PyTorch's default init (then equal features give zero loss).
        weight, level_weights, level_decay: see :class:`DistillConfig` (default: all levels equal).
    """

    kind: str = "pre"
    normalize: bool = False
    norm_eps: float = 1e-3
    identity_init: bool = False

    def validate(self) -> None:
        super().validate()
        fn = type(self).__name__
        check_choice(self.kind, FEATURE_KINDS, fn, "kind")
        check_positive(self.norm_eps, fn, "norm_eps")
        for name in ("normalize", "identity_init"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{fn}: {name} must be a bool, got {getattr(self, name)!r}")


class FeatureDistillation(AdaptedDistiller):
    """Per-level 1x1-adapter feature distillation (MSE).

    Args:
        teacher_channels, student_channels: channel counts per level (coarse ->
            fine) of the chosen feature kind: lists of ints, or the dicts
            :func:`~cdpkd.losses.distill.feature_channels` returns.
        config: a :class:`FeatureDistillationConfig` (defaults if None).
        **overrides: field overrides, e.g. ``kind="estimator"``.

    ``loss(student_outputs, teacher_outputs)`` -> dict of 0-d tensors:
    ``"feature_l<k>"`` per level (0 = coarsest), ``"feature"`` (level-weighted
    mean; units: squared feature units, or dimensionless with ``normalize``) and
    ``"total"`` = ``weight`` x ``"feature"``. The outputs need
    ``"features"[kind]`` lists (N x C_l x h_l x w_l) with the channel counts
    given here, the same number of levels and equal spatial sizes.

    Parameters: ``adapters`` (``nn.ModuleList`` of 1x1 convs), trained with the student.
    """

    name = "feature"
    config_class = FeatureDistillationConfig

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = type(self).__name__
        cfg = self.config
        pairs = self.checked_features(student, teacher)
        weights = level_weights(cfg, len(pairs), fn)
        out: dict[str, torch.Tensor] = {}
        parts = []
        with full_precision(pairs[0][0].device):
            for k, ((s, t), adapter, w) in enumerate(zip(pairs, self.adapters, weights)):
                dtype = adapter.weight.dtype
                s_adapted = adapter(s.to(dtype))
                t = t.to(dtype)
                if cfg.normalize:
                    value = channel_standardized_mse(s_adapted, t, cfg.norm_eps)
                else:
                    value = (s_adapted - t).pow(2).mean()
                out[f"feature_l{k}"] = value
                parts.append((w, value))
            out["feature"] = weighted_mean(parts, parts[0][1])
            out["total"] = cfg.weight * out["feature"]
        return out


__all__ = ["FeatureDistillation", "FeatureDistillationConfig", "channel_standardized_mse"]
