"""KD-MRI imitation loss (Murugesan, Vijayarangan, Sarveswaran, Ram, Sivaprakasam, MIDL 2020).

In KD-MRI, teacher and student are cascades of the same number of stages
(DC-CNN blocks); besides attention transfer, each student stage's
*intermediate output* is trained to imitate the output of the matching
teacher stage (pixel-wise distance), so the student follows the teacher's
coarse-to-fine trajectory rather than only its final answer.

Our interpretation for the PWC family (documented, not from the paper's code):

- the stages are the pyramid levels (teacher and student have the same
  levels and grids; only widths differ);
- a stage's intermediate output is the level's displacement prediction
  (``outputs["levels"]``, full-resolution units) -> L1 to the teacher's, and
  optionally the final full-resolution field as the last stage;
- because a 2-channel displacement carries little of the stage's state, the
  estimator's last activation (``features["estimator"]``: what the level's
  prediction head reads and what is passed up to the next level) also
  imitates the teacher's, through a learnable 1x1 adapter per level
  (student -> teacher channels), with L1.

Pair this with :class:`~cdpkd.losses.distill.AttentionTransfer` for the full
KD-MRI recipe (``build_distiller("kdmri", ...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..unsupervised._common import check_choice, check_positive, compute_dtype, full_precision
from ._common import (
    FEATURE_KINDS,
    AdaptedDistiller,
    DistillConfig,
    displacement_pairs,
    level_weights,
    weighted_mean,
)


@dataclass(frozen=True)
class ImitationLossConfig(DistillConfig):
    """Settings of :class:`ImitationLoss`.

    Attributes:
        disp_weight: weight of the displacement imitation in ``total`` (>= 0).
        feat_weight: weight of the adapted-feature imitation in ``total`` (>= 0).
        include_final: also imitate the final full-resolution displacement
            (weight ``final_weight`` among the displacement scales).
        final_weight: see ``include_final`` (>= 0).
        kind: feature kind imitated through the adapters ("estimator" by default).
        identity_init: adapters start as the (rectangular) identity.
        weight, level_weights, level_decay: see :class:`DistillConfig` (default: all levels equal).
    """

    disp_weight: float = 1.0
    feat_weight: float = 1.0
    include_final: bool = True
    final_weight: float = 1.0
    kind: str = "estimator"
    identity_init: bool = False

    def validate(self) -> None:
        super().validate()
        fn = type(self).__name__
        for name in ("disp_weight", "feat_weight", "final_weight"):
            check_positive(getattr(self, name), fn, name, allow_zero=True)
        check_choice(self.kind, FEATURE_KINDS, fn, "kind")
        for name in ("include_final", "identity_init"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{fn}: {name} must be a bool, got {getattr(self, name)!r}")


class ImitationLoss(AdaptedDistiller):
    """Stage-wise imitation: per-level displacement L1 + adapted estimator-feature L1.

    Args:
        teacher_channels, student_channels: per-level channel counts of the
            imitated feature kind (lists of ints or ``feature_channels`` dicts).
        config: an :class:`ImitationLossConfig` (defaults if None).
        **overrides: field overrides.

    ``loss(student_outputs, teacher_outputs)`` -> dict of 0-d tensors:
    ``"imitation_disp_final"``, ``"imitation_disp_l<k>"`` (samples / lines),
    ``"imitation_feat_l<k>"`` (feature units), the weighted means
    ``"imitation_disp"`` and ``"imitation_feat"``, and ``"total"`` =
    ``weight`` x (``disp_weight`` x disp + ``feat_weight`` x feat).
    The outputs need ``"displacement"``, ``"levels"`` and ``"features"[kind]``
    with equal level counts and spatial sizes.

    Parameters: ``adapters`` (1x1 convs, student -> teacher channels).
    """

    name = "imitation"
    config_class = ImitationLossConfig

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = type(self).__name__
        cfg = self.config
        disp = displacement_pairs(student, teacher, fn, final=cfg.include_final, levels=True)
        feats = self.checked_features(student, teacher)
        n_levels = len(feats)
        if len(disp) - int(cfg.include_final) != n_levels:
            raise ValueError(
                f"{fn}: number of levels mismatch: outputs['levels'] has {len(disp) - int(cfg.include_final)} "
                f"entries but features[{cfg.kind!r}] has {n_levels}"
            )
        lw = level_weights(cfg, n_levels, fn)
        disp_weights = ([cfg.final_weight] if cfg.include_final else []) + lw
        dtype = compute_dtype(*(s for _, s, _ in disp))
        out: dict[str, torch.Tensor] = {}
        with full_precision(disp[0][1].device):
            disp_parts = []
            for (name, s, t), w in zip(disp, disp_weights):
                value = (s.to(dtype) - t.to(dtype)).abs().mean()
                out[f"imitation_disp_{name}"] = value
                disp_parts.append((w, value))
            feat_parts = []
            for k, ((s, t), adapter, w) in enumerate(zip(feats, self.adapters, lw)):
                pdt = adapter.weight.dtype
                value = (adapter(s.to(pdt)) - t.to(pdt)).abs().mean()
                out[f"imitation_feat_l{k}"] = value
                feat_parts.append((w, value))
            out["imitation_disp"] = weighted_mean(disp_parts, disp_parts[0][1])
            out["imitation_feat"] = weighted_mean(feat_parts, feat_parts[0][1])
            out["total"] = cfg.weight * (
                cfg.disp_weight * out["imitation_disp"] + cfg.feat_weight * out["imitation_feat"].to(dtype)
            )
        return out


__all__ = ["ImitationLoss", "ImitationLossConfig"]
