"""Teacher-level selection after Behboodi, Brooks & Rivaz (AIH 2025, breast-ultrasound segmentation KD).

That study compares *where* the student learns from the teacher -- the
output ("KD-Logits"), the encoder's hidden features ("KD-Hidden"), or the
hidden features through a small regressor ("KD-HiddenRegressor") -- and
*how* (MSE vs KL divergence), with and without augmenting the teacher's
input. Our translation to displacement networks:

- ``level="output"``: the displacements, final + every pyramid level.
  MSE (samples^2); with ``cost_kl=True`` instead KL over the cost volumes
  at every level: per pixel, the softmax over the D candidate displacements
  -- the matching "logits" the estimator decodes the displacement from (the
  analogue of the segmentation logits of KD-Logits). No parameters.
- ``level="encoder"``: the encoder (pre-frame pyramid) features through a
  learnable 1x1 adapter A_l per level (student -> teacher channels). MSE of
  A_l(student) and the teacher; with ``cost_kl=True`` KL over the *channel*
  softmax of both (features have no displacement axis, so the softmax runs
  over channels, as in hidden-feature KLD).
- ``level="encoder_regressor"``: as "encoder" with A_l a regressor
  (3x3 conv, ReLU, 3x3 conv).

KL is KL(teacher || student) of softmax(x / T), times T^2 (Hinton et al.).
The encoder features are the pre-frame pyramid features (``kind="pre"``,
configurable).

Augmentation is the caller's business: to reproduce the "teacher with
augmentation" variants, compute the teacher outputs on augmented input
(e.g. the same pair with added noise / gain change) and pass those here;
this loss only compares what it is given.

Regressor: conv3x3(C_s -> hidden), ReLU, conv3x3(hidden -> C_t), hidden =
``regressor_hidden`` or max(C_t, 2 C_s). ``identity_init`` makes it the exact
(rectangular) identity despite the ReLU: the first 2 C_s hidden channels
hold +x and -x (centre taps), the second conv adds relu(x) - relu(-x) = x;
other hidden channels keep the default init in conv1 and start at zero in
conv2 (so they train).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..unsupervised._common import check_choice, check_positive, compute_dtype, full_precision
from ._common import (
    FEATURE_KINDS,
    DistillConfig,
    check_pair_channels,
    displacement_pairs,
    feature_pairs,
    identity_conv1x1,
    level_weights,
    resolve_channel_pair,
    softmax_kl,
    weighted_mean,
)

TEACHER_LEVELS: tuple[str, ...] = ("output", "encoder", "encoder_regressor")


class Regressor(nn.Module):
    """conv3x3 (C_in -> hidden), ReLU, conv3x3 (hidden -> C_out); N x C_in x h x w -> N x C_out x h x w.

    ``identity_init`` (needs hidden >= 2 C_in): starts as the rectangular
    identity (see the module docstring).
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, identity_init: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, hidden, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(hidden, c_out, kernel_size=3, padding=1)
        if identity_init:
            if hidden < 2 * c_in:
                raise ValueError(
                    f"Regressor: identity_init needs hidden >= 2 x input channels ({2 * c_in}), got hidden={hidden}"
                )
            with torch.no_grad():
                eye_in = torch.eye(c_in)
                self.conv1.weight[: 2 * c_in].zero_()
                self.conv1.weight[:c_in, :, 1, 1] = eye_in
                self.conv1.weight[c_in : 2 * c_in, :, 1, 1] = -eye_in
                self.conv1.bias[: 2 * c_in].zero_()
                self.conv2.weight.zero_()
                self.conv2.bias.zero_()
                m = min(c_in, c_out)
                eye = torch.eye(m)
                self.conv2.weight[:m, :m, 1, 1] = eye
                self.conv2.weight[:m, c_in : c_in + m, 1, 1] = -eye

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


@dataclass(frozen=True)
class TeacherLevelConfig(DistillConfig):
    """Settings of :class:`TeacherLevelDistillation`.

    Attributes:
        level: "output" | "encoder" | "encoder_regressor" (module docstring).
        cost_kl: KL divergence instead of MSE (module docstring).
        temperature: softmax temperature T of the KL (> 0).
        kind: encoder feature kind for the encoder levels ("pre").
        final_weight: weight of the full-resolution displacement (level "output", MSE).
        identity_init: adapters / regressors start as the (rectangular) identity.
        regressor_hidden: hidden width of the regressor (None: max(C_t, 2 C_s)).
        weight, level_weights, level_decay: see :class:`DistillConfig` (default: all levels equal).
    """

    level: str = "output"
    cost_kl: bool = False
    temperature: float = 1.0
    kind: str = "pre"
    final_weight: float = 1.0
    identity_init: bool = False
    regressor_hidden: int | None = None

    def validate(self) -> None:
        super().validate()
        fn = type(self).__name__
        check_choice(self.level, TEACHER_LEVELS, fn, "level")
        check_choice(self.kind, FEATURE_KINDS, fn, "kind")
        check_positive(self.temperature, fn, "temperature")
        check_positive(self.final_weight, fn, "final_weight", allow_zero=True)
        for name in ("cost_kl", "identity_init"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{fn}: {name} must be a bool, got {getattr(self, name)!r}")
        rh = self.regressor_hidden
        if rh is not None and (isinstance(rh, bool) or not isinstance(rh, int) or rh < 1):
            raise ValueError(f"{fn}: regressor_hidden must be a positive int or None, got {rh!r}")


class TeacherLevelDistillation(nn.Module):
    """Distil from a selectable teacher level (output / encoder / encoder + regressor) with MSE or KL.

    Args:
        teacher_channels, student_channels: per-level channel counts of the
            encoder features (lists of ints or ``feature_channels`` dicts);
            only needed (and only used) for the encoder levels.
        config: a :class:`TeacherLevelConfig` (defaults if None).
        **overrides: field overrides, e.g. ``level="encoder_regressor", cost_kl=True``.

    ``loss(student_outputs, teacher_outputs)`` -> dict of 0-d tensors: per
    scale ``"<term>_<scale>"`` with term ``"output_mse"`` (scales ``final``,
    ``l<k>``), ``"cost_kl"``, ``"encoder_mse"`` or ``"encoder_kl"`` (scales
    ``l<k>``, 0 = coarsest); ``"teacher_level"`` (weighted mean over the
    scales) and ``"total"`` = ``weight`` x ``"teacher_level"``.

    Parameters (encoder levels only): ``adapters`` (1x1 convs or regressors).
    """

    name = "teacher_level"
    needs_channels = True

    def __init__(
        self,
        teacher_channels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
        student_channels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
        config: TeacherLevelConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        cfg = self.config = TeacherLevelConfig.build(config, overrides)
        fn = type(self).__name__
        self.adapters = nn.ModuleList()
        self.teacher_channels: tuple[int, ...] = ()
        self.student_channels: tuple[int, ...] = ()
        if cfg.level == "output":
            return
        if teacher_channels is None or student_channels is None:
            raise ValueError(f"{fn}: level={cfg.level!r} needs teacher_channels and student_channels")
        self.teacher_channels, self.student_channels = resolve_channel_pair(
            teacher_channels, student_channels, cfg.kind, fn
        )
        for cs, ct in zip(self.student_channels, self.teacher_channels):
            if cfg.level == "encoder":
                self.adapters.append(identity_conv1x1(cs, ct, cfg.identity_init))
            else:
                hidden = cfg.regressor_hidden or max(ct, 2 * cs)
                self.adapters.append(Regressor(cs, ct, hidden, cfg.identity_init))

    def extra_repr(self) -> str:
        return self.config.to_json()

    def _output(self, student: Mapping[str, Any], teacher: Mapping[str, Any], fn: str) -> list:
        cfg = self.config
        if cfg.cost_kl:
            pairs = feature_pairs(student, teacher, "cost", fn, same_channels=True)
            dtype = compute_dtype(*(s for s, _ in pairs))
            weights = level_weights(cfg, len(pairs), fn)
            with full_precision(pairs[0][0].device):
                return [
                    (f"cost_kl_l{k}", w, softmax_kl(s.to(dtype), t.to(dtype), cfg.temperature))
                    for k, ((s, t), w) in enumerate(zip(pairs, weights))
                ]
        disp = displacement_pairs(student, teacher, fn, final=True, levels=True)
        dtype = compute_dtype(*(s for _, s, _ in disp))
        weights = [cfg.final_weight] + level_weights(cfg, len(disp) - 1, fn)
        with full_precision(disp[0][1].device):
            return [
                (f"output_mse_{name}", w, (s.to(dtype) - t.to(dtype)).pow(2).mean())
                for (name, s, t), w in zip(disp, weights)
            ]

    def _encoder(self, student: Mapping[str, Any], teacher: Mapping[str, Any], fn: str) -> list:
        cfg = self.config
        pairs = feature_pairs(student, teacher, cfg.kind, fn)
        check_pair_channels(pairs, self.teacher_channels, self.student_channels, fn, cfg.kind)
        weights = level_weights(cfg, len(pairs), fn)
        terms = []
        with full_precision(pairs[0][0].device):
            for k, ((s, t), adapter, w) in enumerate(zip(pairs, self.adapters, weights)):
                dtype = next(adapter.parameters()).dtype
                s_adapted, t = adapter(s.to(dtype)), t.to(dtype)
                if cfg.cost_kl:
                    terms.append((f"encoder_kl_l{k}", w, softmax_kl(s_adapted, t, cfg.temperature)))
                else:
                    terms.append((f"encoder_mse_l{k}", w, (s_adapted - t).pow(2).mean()))
        return terms

    def forward(self, student: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = type(self).__name__
        cfg = self.config
        terms = (
            self._output(student, teacher, fn)
            if cfg.level == "output"
            else self._encoder(student, teacher, fn)
        )
        out = {name: value for name, _, value in terms}
        out["teacher_level"] = weighted_mean([(w, v) for _, w, v in terms], terms[0][2])
        out["total"] = cfg.weight * out["teacher_level"]
        return out


__all__ = ["TEACHER_LEVELS", "Regressor", "TeacherLevelConfig", "TeacherLevelDistillation"]
