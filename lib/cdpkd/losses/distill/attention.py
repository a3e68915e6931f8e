"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017), as used by KD-MRI (Murugesan et al., MIDL 2020).

Spatial attention map of an N x C x h x w activation F (activation-based,
power p, default 2):

    Q = sum_c |F_c|^p                      (N x h x w)
    a = vec(Q) / ||vec(Q)||_2              (N x h*w, unit L2 norm per sample)

and the loss per level is a distance between the student's and the
teacher's maps, averaged over the batch:

- ``"l2sq"`` (default): ||a_s - a_t||_2^2, in [0, 4]: independent of the map
  size, smooth everywhere;
- ``"l2"``: ||a_s - a_t||_2 as in the paper (computed as sqrt(x + eps^2) - eps
  so its gradient stays finite when the maps coincide).

Only the spatial pattern is transferred, so no adapters are needed and the
channel counts of student and teacher may differ; spatial sizes must match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..unsupervised._common import check_choice, check_positive, compute_dtype, full_precision
from ._common import FEATURE_KINDS, DistillConfig, feature_pairs, level_weights, safe_sqrt, weighted_mean

ATTENTION_DISTANCES: tuple[str, ...] = ("l2sq", "l2")


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """N x C x h x w activations -> N x (h*w) spatial attention, unit L2 norm per sample (0 if all zero)."""
    q = features.pow(2) if p == 2 else features.abs().pow(p)
    return F.normalize(q.sum(dim=1).flatten(1), p=2.0, dim=1, eps=1e-12)


def attention_distance(
    student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0, distance: str = "l2sq", eps: float = 1e-6
) -> torch.Tensor:
    """Batch-mean distance between the attention maps of two N x C x h x w activations (C may differ) -> 0-d."""
    d2 = (attention_map(student, p) - attention_map(teacher, p)).pow(2).sum(dim=1)
    return (d2 if distance == "l2sq" else safe_sqrt(d2, eps)).mean()


@dataclass(frozen=True)
class AttentionTransferConfig(DistillConfig):
    """Settings of :class:`AttentionTransfer`.

    Attributes:
        kind: feature kind, "pre" | "estimator" | "cost".
        p: power of the activations in the map (> 0; 2 in the paper).
        distance: "l2sq" | "l2" (module docstring).
        eps: smoothing of the "l2" distance (> 0, attention-map units).
        weight, level_weights, level_decay: see :class:`DistillConfig` (default: all levels equal).
    """

    kind: str = "pre"
    p: float = 2.0
    distance: str = "l2sq"
    eps: float = 1e-6

    def validate(self) -> None:
        super().validate()
        fn = type(self).__name__
        check_choice(self.kind, FEATURE_KINDS, fn, "kind")
        check_choice(self.distance, ATTENTION_DISTANCES, fn, "distance")
        check_positive(self.p, fn, "p")
        check_positive(self.eps, fn, "eps")


class AttentionTransfer(nn.Module):
    """Attention-transfer distillation over the pyramid levels (no parameters).

    ``loss(student_outputs, teacher_outputs)`` -> dict of 0-d tensors:
    ``"attention_l<k>"`` per level (0 = coarsest), ``"attention"`` (level-weighted
    mean, dimensionless) and ``"total"`` = ``weight`` x ``"attention"``.
    The outputs need ``"features"[kind]`` lists (N x C_l x h_l x w_l) with the
    same number of levels and equal spatial sizes; channels may differ.

    Args:
        config: an :class:`AttentionTransferConfig` (defaults if None).
        **overrides: field overrides, e.g. ``kind="estimator"``.
    """

    name = "attention"
    needs_channels = False

    def __init__(self, config: AttentionTransferConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = AttentionTransferConfig.build(config, overrides)

    def extra_repr(self) -> str:
        return self.config.to_json()

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = type(self).__name__
        cfg = self.config
        pairs = feature_pairs(student, teacher, cfg.kind, fn)
        weights = level_weights(cfg, len(pairs), fn)
        dtype = compute_dtype(*(s for s, _ in pairs))
        out: dict[str, torch.Tensor] = {}
        parts = []
        with full_precision(pairs[0][0].device):
            for k, ((s, t), w) in enumerate(zip(pairs, weights)):
                value = attention_distance(s.to(dtype), t.to(dtype), cfg.p, cfg.distance, cfg.eps)
                out[f"attention_l{k}"] = value
                parts.append((w, value))
            out["attention"] = weighted_mean(parts, parts[0][1])
            out["total"] = cfg.weight * out["attention"]
        return out


__all__ = [
    "ATTENTION_DISTANCES",
    "AttentionTransfer",
    "AttentionTransferConfig",
    "attention_distance",
    "attention_map",
]
