"""The student's training objective: the unsupervised loss plus distillation from a frozen teacher.

:class:`DistillationObjective` is a ``loss_fn`` for :func:`cdpkd.train.fit`
(``objective(model, batch, step) -> {"total", ...}``). It is an ``nn.Module``
so ``fit`` optimises the distiller's own parameters (adapters, adaptation
vectors) with the student and checkpoints them; the teacher is deliberately
*not* a submodule: it is frozen, never optimised, and stays out of the
checkpoints (it is an artifact of its own).

Per step::

    total = unsupervised_weight * L_unsup(student) + w_kd(step) * L_kd(student, teacher)

with ``w_kd`` a number or a :class:`~cdpkd.train.curriculum.Schedule`
(e.g. a cosine decay: lean on the teacher early, on the data late). Every term
is logged: ``unsup_<term>``, ``kd_<term>`` and ``kd_weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .curriculum.schedules import Schedule


class DistillationObjective(nn.Module):
    """``fit`` loss: unsupervised loss of the student + weighted distillation from ``teacher``.

    Args:
        teacher: trained PWC-family network; put in eval mode and frozen here.
        distiller: a :mod:`cdpkd.losses.distill` module, ``distiller(student_out,
            teacher_out) -> {"total", ...}``; None trains without distillation.
        unsupervised: e.g. :class:`cdpkd.losses.UnsupervisedLoss`,
            ``unsupervised(pre, post, outputs) -> {"total", ...}``; None = distillation only.
        kd_weight: weight of the distillation total, a number >= 0 or a Schedule of the step.
        unsupervised_weight: weight of the unsupervised total (>= 0).
        features: ask both networks for their features (``return_features=True``);
            needed by the feature-based distillers, not by output distillation.

    Batches are dicts with ``"pre"`` and ``"post"`` (N x C x H x W RF frames).
    """

    def __init__(
        self,
        teacher: nn.Module,
        distiller: nn.Module | None,
        unsupervised: nn.Module | None,
        *,
        kd_weight: float | Schedule = 1.0,
        unsupervised_weight: float = 1.0,
        features: bool = False,
    ) -> None:
        super().__init__()
        if distiller is None and unsupervised is None:
            raise ValueError("DistillationObjective: give a distiller, an unsupervised loss or both")
        if isinstance(kd_weight, bool) or not isinstance(kd_weight, (int, float, Schedule)):
            raise ValueError(f"kd_weight must be a number or a Schedule, got {kd_weight!r}")
        if isinstance(kd_weight, (int, float)) and not kd_weight >= 0:
            raise ValueError(f"kd_weight must be >= 0, got {kd_weight!r}")
        if not unsupervised_weight >= 0:
            raise ValueError(f"unsupervised_weight must be >= 0, got {unsupervised_weight!r}")
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self._teacher = (
            teacher,
        )  # a tuple hides it from nn.Module registration: no optimiser, no checkpoint
        self.distiller = distiller
        self.unsupervised = unsupervised
        self.kd_weight = kd_weight
        self.unsupervised_weight = float(unsupervised_weight)
        self.features = bool(features)

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def weight_at(self, step: int) -> float:
        """Distillation weight at ``step``."""
        return self.kd_weight.value(step) if isinstance(self.kd_weight, Schedule) else float(self.kd_weight)

    @torch.no_grad()
    def teacher_outputs(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, Any]:
        teacher = self.teacher
        first = next(teacher.parameters())
        if first.device != pre.device:
            teacher.to(pre.device)
        teacher.eval()
        return teacher(pre, post, return_features=self.features)

    def forward(
        self, model: nn.Module, batch: Mapping[str, torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        pre, post = batch["pre"], batch["post"]
        student = model(pre, post, return_features=self.features)
        terms: dict[str, torch.Tensor] = {}
        total = None
        if self.unsupervised is not None:
            unsup = self.unsupervised(pre, post, student)
            terms.update({f"unsup_{k}": v.detach() for k, v in unsup.items() if k != "total"})
            terms["unsup_total"] = unsup["total"].detach()
            total = self.unsupervised_weight * unsup["total"]
        w = self.weight_at(step)
        if self.distiller is not None:
            kd = self.distiller(student, self.teacher_outputs(pre, post))
            terms.update({f"kd_{k}": v.detach() for k, v in kd.items() if k != "total"})
            terms["kd_total"] = kd["total"].detach()
            kd_term = w * kd["total"]
            total = kd_term if total is None else total + kd_term
        terms["kd_weight"] = torch.tensor(w)
        terms["total"] = total
        return terms
