"""Output distillation: the student's displacement imitates the teacher's, at the output and every level.

The teacher's displacement is a pseudo-label for the (unsupervised) student:
a robust distance between the two fields at full resolution (``"final"``)
and at every pyramid level (``"levels"``, full-resolution units, so the same
distance means the same error in samples / lines at every level).

Penalties (``d`` = student - teacher, per component, samples / lines):

- ``"charbonnier"`` (default): sqrt(d^2 + eps^2) - eps per component: quadratic
  below ``eps``, L1-like above, so teacher outliers (decorrelated regions,
  inclusion boundaries) do not dominate;
- ``"epe"``: end-point error sqrt(d_ax^2 + d_lat^2 + eps^2) - eps per pixel
  (the ``eps`` keeps its gradient finite at d = 0);
- ``"l1"``: |d|; ``"l2"``: d^2 (MSE).

``component_weights`` (axial, lateral) weight the components of the
elementwise penalties (lateral displacement is the noisier one); for
``"epe"`` they scale the components before the norm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..unsupervised._common import check_choice, check_positive, compute_dtype, full_precision
from ._common import DistillConfig, displacement_pairs, level_weights, safe_sqrt, weighted_mean

OUTPUT_PENALTIES: tuple[str, ...] = ("charbonnier", "epe", "l1", "l2")


def displacement_distance(
    student: torch.Tensor,
    teacher: torch.Tensor,
    penalty: str = "charbonnier",
    eps: float = 0.01,
    component_weights: Sequence[float] = (1.0, 1.0),
) -> torch.Tensor:
    """Mean penalty between two N x 2 x h x w displacement fields (samples / lines) -> 0-d tensor.

    Zero exactly when the fields are equal; ``eps`` is in samples / lines.
    No checks (callers validate); ``teacher`` should already be detached.
    """
    d = student - teacher
    wa, wl = float(component_weights[0]), float(component_weights[1])
    if (wa, wl) != (1.0, 1.0):
        d = d * torch.tensor([wa, wl], dtype=d.dtype, device=d.device).view(1, 2, 1, 1)
    if penalty == "epe":
        return safe_sqrt(d.pow(2).sum(dim=1), eps).mean()
    if penalty == "charbonnier":
        return safe_sqrt(d * d, eps).mean()
    if penalty == "l1":
        return d.abs().mean()
    return (d * d).mean()


@dataclass(frozen=True)
class OutputDistillationConfig(DistillConfig):
    """Settings of :class:`OutputDistillation`.

    Attributes:
        penalty: "charbonnier" | "epe" | "l1" | "l2" (module docstring).
        eps: Charbonnier / EPE scale in samples / lines (> 0).
        component_weights: (axial, lateral) weights (>= 0).
        final_weight: weight of the full-resolution displacement among the scales.
        include_levels: also distil every pyramid level (``outputs["levels"]``).
        weight, level_weights, level_decay: see :class:`DistillConfig`; the default
            decay 0.5 halves the weight per level away from the finest.
    """

    level_decay: float = 0.5
    penalty: str = "charbonnier"
    eps: float = 0.01
    component_weights: tuple[float, float] = (1.0, 1.0)
    final_weight: float = 1.0
    include_levels: bool = True

    def validate(self) -> None:
        super().validate()
        fn = type(self).__name__
        check_choice(self.penalty, OUTPUT_PENALTIES, fn, "penalty")
        check_positive(self.eps, fn, "eps")
        check_positive(self.final_weight, fn, "final_weight", allow_zero=True)
        if not isinstance(self.component_weights, Sequence) or len(self.component_weights) != 2:
            raise ValueError(
                f"{fn}: component_weights must be an (axial, lateral) pair, got {self.component_weights!r}"
            )
        for v in self.component_weights:
            check_positive(v, fn, "component_weights", allow_zero=True)
        if not isinstance(self.include_levels, bool):
            raise ValueError(f"{fn}: include_levels must be a bool, got {self.include_levels!r}")


class OutputDistillation(nn.Module):
    """Displacement (output) distillation over the final field and every pyramid level.

    ``loss(student_outputs, teacher_outputs)`` -> dict of 0-d tensors:
    ``"output_final"``, ``"output_l<k>"`` (k = index in ``outputs["levels"]``,
    0 = coarsest), ``"output"`` (weighted mean over the scales, in the
    penalty's units: samples / lines for L1 / Charbonnier / EPE, squared for
    L2) and ``"total"`` = ``weight`` x ``"output"``.

    Inputs: model output dicts with ``"displacement"`` (N x 2 x H x W) and,
    if ``include_levels``, ``"levels"`` (lists of equal length, equal shapes).
    Teacher tensors are detached. No parameters.

    Args:
        config: an :class:`OutputDistillationConfig` (defaults if None).
        **overrides: field overrides, e.g. ``OutputDistillation(penalty="epe")``.
    """

    name = "output"
    needs_channels = False

    def __init__(self, config: OutputDistillationConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = OutputDistillationConfig.build(config, overrides)

    def extra_repr(self) -> str:
        return self.config.to_json()

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = type(self).__name__
        cfg = self.config
        pairs = displacement_pairs(student, teacher, fn, final=True, levels=cfg.include_levels)
        n_levels = len(pairs) - 1
        weights = [cfg.final_weight] + (level_weights(cfg, n_levels, fn) if n_levels else [])
        dtype = compute_dtype(*(s for _, s, _ in pairs))
        out: dict[str, torch.Tensor] = {}
        parts = []
        with full_precision(pairs[0][1].device):
            for (name, s, t), w in zip(pairs, weights):
                value = displacement_distance(
                    s.to(dtype), t.to(dtype), cfg.penalty, cfg.eps, cfg.component_weights
                )
                out[f"output_{name}"] = value
                parts.append((w, value))
            out["output"] = weighted_mean(parts, parts[0][1])
            out["total"] = cfg.weight * out["output"]
        return out


__all__ = ["OUTPUT_PENALTIES", "OutputDistillation", "OutputDistillationConfig", "displacement_distance"]
