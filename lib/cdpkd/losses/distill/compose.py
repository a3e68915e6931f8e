"""Sums of distillation losses, and the KD-MRI recipe (attention transfer + imitation) as one module.

:class:`CombinedDistillation` runs several distillers on the same
(student, teacher) outputs; its dict holds every part's terms prefixed by
the part's name (``"attention.attention_l0"``), each part's total under its
name (``"attention"``), and ``"total"`` = sum of weight x part total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..unsupervised._common import check_positive
from .attention import AttentionTransfer
from .imitation import ImitationLoss


class CombinedDistillation(nn.Module):
    """Weighted sum of named distillers (each ``loss(student, teacher) -> {"total": ...}``).

    Args:
        parts: ``{name: distiller module}`` (at least one; names without dots).
        weights: ``{name: weight >= 0}``; missing names weigh 1.

    Parameters: those of the parts (``parts`` is an ``nn.ModuleDict``).
    """

    name = "combined"

    def __init__(self, parts: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        fn = type(self).__name__
        if not isinstance(parts, Mapping) or not parts:
            raise ValueError(f"{fn}: parts must be a non-empty {{name: module}} mapping, got {parts!r}")
        for key, part in parts.items():
            if not isinstance(key, str) or not key or "." in key or key == "total":
                raise ValueError(
                    f"{fn}: part names must be non-empty strings without '.' (not 'total'), got {key!r}"
                )
            if not isinstance(part, nn.Module):
                raise ValueError(f"{fn}: part {key!r} must be an nn.Module, got {type(part).__name__}")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(parts))
        if unknown:
            raise ValueError(f"{fn}: weights for unknown parts {unknown}; parts: {sorted(parts)}")
        self.parts = nn.ModuleDict(dict(parts))
        self.weights = {
            k: check_positive(weights.get(k, 1.0), fn, f"weights[{k!r}]", allow_zero=True) for k in parts
        }

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for key, part in self.parts.items():
            terms = part(student, teacher)
            for term, value in terms.items():
                if term != "total":
                    out[f"{key}.{term}"] = value
            out[key] = terms["total"]
            contribution = self.weights[key] * terms["total"]
            total = contribution if total is None else total + contribution
        assert total is not None
        out["total"] = total
        return out


class KDMRIDistillation(CombinedDistillation):
    """KD-MRI (Murugesan et al. 2020): attention transfer + stage-wise imitation.

    Args:
        teacher_channels, student_channels: channel counts for the imitation
            adapters (lists for its feature kind, or ``feature_channels`` dicts).
        attention_weight, imitation_weight: weights of the two parts in ``total``.
        attention, imitation: config overrides for :class:`AttentionTransfer`
            and :class:`ImitationLoss` (dicts of field values).

    Terms: see :class:`CombinedDistillation` (parts ``"attention"``, ``"imitation"``).
    """

    name = "kdmri"
    needs_channels = True

    def __init__(
        self,
        teacher_channels: Sequence[int] | Mapping[str, Sequence[int]],
        student_channels: Sequence[int] | Mapping[str, Sequence[int]],
        attention_weight: float = 1.0,
        imitation_weight: float = 1.0,
        attention: Mapping[str, Any] | None = None,
        imitation: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            {
                "attention": AttentionTransfer(**dict(attention or {})),
                "imitation": ImitationLoss(teacher_channels, student_channels, **dict(imitation or {})),
            },
            {"attention": attention_weight, "imitation": imitation_weight},
        )


__all__ = ["CombinedDistillation", "KDMRIDistillation"]
