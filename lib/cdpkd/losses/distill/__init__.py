"""Distillation losses: a student PWC-family network learns from a teacher's outputs.

One method per module, each an ``nn.Module`` called as
``loss(student_outputs, teacher_outputs)`` on the output dicts of
``model(pre, post, return_features=True)`` and returning a dict of named
0-d loss terms plus ``"total"`` (what to backpropagate). Teacher tensors are
detached inside (constants); gradients reach the student and the methods'
own adapters, which are ``nn.Module`` parameters, so a training loop that
optimises its loss module's parameters trains them. Losses run in float32
(autocast disabled). Bad input (missing entries, different numbers of
levels, spatial / batch / channel mismatches) raises ``ValueError`` naming
what mismatched.

=================  ====================================  =====================================================
name               class (module)                        what
=================  ====================================  =====================================================
``output``         :class:`OutputDistillation`           Charbonnier / EPE / L1 / L2 on the displacement, final
                   (output.py)                           + every pyramid level, level weights
``feature``        :class:`FeatureDistillation`          per-level 1x1 adapters, MSE (optionally channel-
                   (feature.py)                          standardised), "pre" or "estimator" features
``attention``      :class:`AttentionTransfer`            attention transfer (Zagoruyko & Komodakis), no adapters
                   (attention.py)
``imitation``      :class:`ImitationLoss`                KD-MRI imitation: per-level displacement L1 + adapted
                   (imitation.py)                        estimator-feature L1 (our interpretation)
``teacher_level``  :class:`TeacherLevelDistillation`     Behboodi et al.: output / encoder / encoder+regressor,
                   (teacher_level.py)                    MSE or KL (cost volumes)
``mavkd``          :class:`MAVKD` (mavkd.py)             multi-scale adaptation vectors (our interpretation)
``kdmri``          :class:`KDMRIDistillation`            attention transfer + imitation (KD-MRI recipe)
                   (compose.py)
=================  ====================================  =====================================================

``build_distiller(name, teacher_channels, student_channels, **kwargs)``
builds any of them; channel counts may be the dicts :func:`feature_channels`
returns (each method picks its feature kind) and are ignored by the methods
without adapters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ._common import FEATURE_KINDS, DistillConfig, feature_channels
from .attention import ATTENTION_DISTANCES, AttentionTransfer, AttentionTransferConfig, attention_map
from .compose import CombinedDistillation, KDMRIDistillation
from .feature import FeatureDistillation, FeatureDistillationConfig
from .imitation import ImitationLoss, ImitationLossConfig
from .mavkd import MAVKD, AdaptationVector, MAVKDConfig
from .output import OUTPUT_PENALTIES, OutputDistillation, OutputDistillationConfig, displacement_distance
from .teacher_level import TEACHER_LEVELS, Regressor, TeacherLevelConfig, TeacherLevelDistillation

DISTILLERS: dict[str, type[nn.Module]] = {
    "output": OutputDistillation,
    "feature": FeatureDistillation,
    "attention": AttentionTransfer,
    "imitation": ImitationLoss,
    "teacher_level": TeacherLevelDistillation,
    "mavkd": MAVKD,
    "kdmri": KDMRIDistillation,
}


def build_distiller(
    name: str,
    teacher_channels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    student_channels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """The distiller ``DISTILLERS[name]`` built with ``kwargs`` (config fields or constructor arguments).

    Channel counts (per level, coarse -> fine; lists or :func:`feature_channels`
    dicts) are passed to the methods with adapters and ignored by the others;
    ``teacher_level`` needs them only for its encoder levels.
    """
    if name not in DISTILLERS:
        raise ValueError(f"build_distiller: unknown distiller {name!r}; known: {sorted(DISTILLERS)}")
    cls = DISTILLERS[name]
    if getattr(cls, "needs_channels", False):
        if name != "teacher_level" and (teacher_channels is None or student_channels is None):
            raise ValueError(
                f"build_distiller: {name!r} has adapters and needs teacher_channels and student_channels"
            )
        return cls(teacher_channels, student_channels, **kwargs)
    return cls(**kwargs)


__all__ = [
    "ATTENTION_DISTANCES",
    "DISTILLERS",
    "FEATURE_KINDS",
    "MAVKD",
    "OUTPUT_PENALTIES",
    "TEACHER_LEVELS",
    "AdaptationVector",
    "AttentionTransfer",
    "AttentionTransferConfig",
    "CombinedDistillation",
    "DistillConfig",
    "FeatureDistillation",
    "FeatureDistillationConfig",
    "ImitationLoss",
    "ImitationLossConfig",
    "KDMRIDistillation",
    "MAVKDConfig",
    "OutputDistillation",
    "OutputDistillationConfig",
    "Regressor",
    "TeacherLevelConfig",
    "TeacherLevelDistillation",
    "attention_map",
    "build_distiller",
    "displacement_distance",
    "feature_channels",
]
