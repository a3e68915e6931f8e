"""Helpers shared by the distillation losses: configs, input checks, level weights, adapters.

Inputs are the output dicts of PWC-family models (``model(pre, post,
return_features=True)``, see :class:`cdpkd.models.PWCNet`):

- ``"displacement"``: N x 2 x H x W, full resolution, samples (axial) / lines (lateral);
- ``"levels"``: coarse -> fine list of N x 2 x h_l x w_l displacements in
  full-resolution units on each level's grid;
- ``"features"``: ``{"pre", "estimator", "cost"}`` -> list (aligned with
  ``"levels"``) of N x C_l x h_l x w_l tensors. Teacher and student have the
  same number of levels and spatial sizes; their channel counts C_l may
  differ (the cost volume's D = (2ra+1)(2rl+1) only differs if the search
  radii do).

Every check raises ``ValueError`` naming the method, the argument and what
mismatched. Teacher tensors are detached here (constants: gradients reach the
student and the adapters only). Losses compute in float32 (float64 stays
float64) with autocast disabled; nothing synchronises with the device.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..unsupervised._common import check_choice, check_frames, check_positive

FEATURE_KINDS: tuple[str, ...] = ("pre", "estimator", "cost")

C = TypeVar("C", bound="DistillConfig")


# --- configs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistillConfig:
    """Fields every distillation method has (JSON via ``to_dict`` / ``from_dict``).

    Attributes:
        weight: multiplies the method's loss in ``"total"`` (>= 0).
        level_weights: one weight per pyramid level (coarse -> fine), or None
            for ``level_decay ** (distance from the finest level)``.
        level_decay: in (0, 1]; 1 = all levels count the same.
    """

    weight: float = 1.0
    level_weights: tuple[float, ...] | None = None
    level_decay: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):  # lists (e.g. from JSON) become tuples: hashable, comparable configs
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        if self.level_weights is not None and not isinstance(self.level_weights, tuple):
            if isinstance(self.level_weights, (str, bytes)) or not isinstance(self.level_weights, Sequence):
                raise ValueError(
                    f"{type(self).__name__}: level_weights must be a sequence of numbers or None, "
                    f"got {self.level_weights!r}"
                )
            object.__setattr__(self, "level_weights", tuple(self.level_weights))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field; subclasses extend this."""
        fn = type(self).__name__
        check_positive(self.weight, fn, "weight", allow_zero=True)
        ok = isinstance(self.level_decay, numbers.Real) and not isinstance(self.level_decay, bool)
        if not ok or not 0 < self.level_decay <= 1:
            raise ValueError(f"{fn}: level_decay must be in (0, 1], got {self.level_decay!r}")
        if self.level_weights is not None:
            if len(self.level_weights) == 0:
                raise ValueError(f"{fn}: level_weights must not be empty (use None for the default)")
            for v in self.level_weights:
                check_positive(v, fn, "level_weights", allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict` (lists from JSON become tuples); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def build(cls: type[C], config: C | None, overrides: Mapping[str, Any]) -> C:
        """``config`` (default if None) with ``overrides`` applied, type-checked."""
        if config is None:
            config = cls()
        elif not isinstance(config, cls):
            raise ValueError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        return cls.from_dict({**config.to_dict(), **overrides}) if overrides else config


def level_weights(config: DistillConfig, count: int, fn: str) -> list[float]:
    """Per-level weights (coarse -> fine) for ``count`` levels."""
    lw = config.level_weights
    if lw is None:
        return [config.level_decay ** (count - 1 - k) for k in range(count)]
    if len(lw) != count:
        raise ValueError(
            f"{fn}: config.level_weights has {len(lw)} entries but the outputs have {count} levels"
        )
    return [float(v) for v in lw]


def weighted_mean(parts: Sequence[tuple[float, torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
    """sum w_k t_k / sum w_k (a 0-d tensor); zero when the weights sum to 0 or there are no parts."""
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    wsum = sum(w for w, _ in parts)
    if wsum <= 0:
        return zero
    return sum((w * t for w, t in parts), zero) / wsum


# --- input checks -------------------------------------------------------------------------------
def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}"
    return type(x).__name__


def _check_mapping(outputs: object, fn: str, who: str) -> Mapping[str, Any]:
    if not isinstance(outputs, Mapping):
        raise ValueError(f"{fn}: {who} outputs must be a model output dict, got {_describe(outputs)}")
    return outputs


def _check_list(outputs: Mapping[str, Any], key: str, fn: str, who: str, hint: str = "") -> Sequence[Any]:
    if key not in outputs:
        raise ValueError(f"{fn}: {who} outputs have no {key!r} entry{hint}")
    value = outputs[key]
    if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
        raise ValueError(f"{fn}: {who} outputs[{key!r}] must be a list of tensors, got {_describe(value)}")
    return value


def _same_shape(s: torch.Tensor, t: torch.Tensor, fn: str, name: str, *, channels: bool) -> None:
    ss, ts = tuple(s.shape), tuple(t.shape)
    if ss[0] != ts[0]:
        raise ValueError(f"{fn}: batch size mismatch at {name}: student {ss}, teacher {ts}")
    if ss[2:] != ts[2:]:
        raise ValueError(
            f"{fn}: spatial size mismatch at {name}: student {ss[2]} x {ss[3]}, teacher {ts[2]} x {ts[3]} "
            f"(shapes {ss} and {ts})"
        )
    if channels and ss[1] != ts[1]:
        raise ValueError(
            f"{fn}: channel mismatch at {name}: student {ss[1]}, teacher {ts[1]} (shapes {ss}, {ts})"
        )


def _check_level_count(n_student: int, n_teacher: int, fn: str, what: str) -> None:
    if n_student != n_teacher:
        raise ValueError(
            f"{fn}: number of levels mismatch in {what}: student has {n_student}, teacher has {n_teacher}"
        )


def displacement_pairs(
    student: object, teacher: object, fn: str, *, final: bool = True, levels: bool = True
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, student, teacher.detach())`` displacement pairs: ``"final"`` then ``"l0"``.. (coarse -> fine).

    Each is N x 2 x h x w in samples / lines; student and teacher shapes must be equal.
    """
    s_out = _check_mapping(student, fn, "student")
    t_out = _check_mapping(teacher, fn, "teacher")
    pairs: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    if final:
        for who, out in (("student", s_out), ("teacher", t_out)):
            if "displacement" not in out:
                raise ValueError(f"{fn}: {who} outputs have no 'displacement' entry")
        s = check_frames(s_out["displacement"], fn, "student['displacement']")
        t = check_frames(t_out["displacement"], fn, "teacher['displacement']")
        _same_shape(s, t, fn, "the final displacement", channels=True)
        if s.shape[1] != 2:
            raise ValueError(
                f"{fn}: displacements must have 2 channels (axial, lateral), got shape {tuple(s.shape)}"
            )
        pairs.append(("final", s, t.detach()))
    if levels:
        s_lv = _check_list(s_out, "levels", fn, "student")
        t_lv = _check_list(t_out, "levels", fn, "teacher")
        _check_level_count(len(s_lv), len(t_lv), fn, "outputs['levels']")
        for k, (s, t) in enumerate(zip(s_lv, t_lv)):
            s = check_frames(s, fn, f"student['levels'][{k}]")
            t = check_frames(t, fn, f"teacher['levels'][{k}]")
            _same_shape(s, t, fn, f"levels[{k}]", channels=True)
            if s.shape[1] != 2:
                raise ValueError(
                    f"{fn}: displacements must have 2 channels (axial, lateral), levels[{k}] has shape {tuple(s.shape)}"
                )
            pairs.append((f"l{k}", s, t.detach()))
    return pairs


def feature_pairs(
    student: object, teacher: object, kind: str, fn: str, *, same_channels: bool = False
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(student, teacher.detach())`` feature pairs of ``kind``, one per level (coarse -> fine).

    Each is N x C_l x h_l x w_l; batch and spatial sizes must match, channels
    only if ``same_channels``.
    """
    check_choice(kind, FEATURE_KINDS, fn, "feature kind")
    hint = " (call the model with return_features=True)"
    lists = []
    for who, out in (("student", student), ("teacher", teacher)):
        feats = _check_mapping(out, fn, who).get("features")
        if feats is None:
            raise ValueError(f"{fn}: {who} outputs have no 'features' entry{hint}")
        if not isinstance(feats, Mapping):
            raise ValueError(f"{fn}: {who} outputs['features'] must be a dict, got {_describe(feats)}")
        lists.append(_check_list(feats, kind, fn, f"{who} features", ""))
    s_list, t_list = lists
    _check_level_count(len(s_list), len(t_list), fn, f"features[{kind!r}]")
    if len(s_list) == 0:
        raise ValueError(f"{fn}: features[{kind!r}] is empty")
    pairs = []
    for k, (s, t) in enumerate(zip(s_list, t_list)):
        s = check_frames(s, fn, f"student features[{kind!r}][{k}]")
        t = check_frames(t, fn, f"teacher features[{kind!r}][{k}]")
        _same_shape(s, t, fn, f"features[{kind!r}][{k}]", channels=same_channels)
        pairs.append((s, t.detach()))
    return pairs


def check_pair_channels(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    teacher_channels: Sequence[int],
    student_channels: Sequence[int],
    fn: str,
    kind: str,
) -> None:
    """The features must have the channel counts the adapters were built for."""
    _check_level_count(
        len(pairs), len(teacher_channels), fn, f"features[{kind!r}] vs the adapters (teacher side)"
    )
    for k, ((s, t), ct, cs) in enumerate(zip(pairs, teacher_channels, student_channels)):
        if s.shape[1] != cs:
            raise ValueError(
                f"{fn}: channel mismatch at student features[{kind!r}][{k}]: the adapter expects {cs} channels, "
                f"got {s.shape[1]} (shape {tuple(s.shape)})"
            )
        if t.shape[1] != ct:
            raise ValueError(
                f"{fn}: channel mismatch at teacher features[{kind!r}][{k}]: the adapter maps to {ct} channels, "
                f"got {t.shape[1]} (shape {tuple(t.shape)})"
            )


# --- channels and adapters ----------------------------------------------------------------------
def feature_channels(outputs: Mapping[str, Any]) -> dict[str, list[int]]:
    """Channel counts per level of each feature kind in a model's output dict.

    ``feature_channels(model(pre, post, return_features=True))`` ->
    ``{"pre": [C_0, ...], "estimator": [...], "cost": [...]}``, ready to pass
    as ``teacher_channels`` / ``student_channels`` to the adapter-based losses.
    """
    feats = outputs.get("features") if isinstance(outputs, Mapping) else None
    if not isinstance(feats, Mapping):
        raise ValueError(
            "feature_channels: outputs have no 'features' dict (call the model with return_features=True)"
        )
    return {kind: [int(f.shape[1]) for f in feats[kind]] for kind in feats}


def resolve_channels(spec: object, kind: str, fn: str, name: str) -> tuple[int, ...]:
    """Per-level channel counts from a list of ints or a ``{kind: list}`` dict (see :func:`feature_channels`)."""
    if isinstance(spec, Mapping):
        if kind not in spec:
            raise ValueError(f"{fn}: {name} has no entry for feature kind {kind!r} (keys: {sorted(spec)})")
        spec = spec[kind]
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or len(spec) == 0:
        raise ValueError(f"{fn}: {name} must be a non-empty list of channel counts per level, got {spec!r}")
    for c in spec:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1:
            raise ValueError(f"{fn}: {name} must hold positive integers, got {spec!r}")
    return tuple(int(c) for c in spec)


def resolve_channel_pair(
    teacher_channels: object, student_channels: object, kind: str, fn: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    t = resolve_channels(teacher_channels, kind, fn, "teacher_channels")
    s = resolve_channels(student_channels, kind, fn, "student_channels")
    _check_level_count(len(s), len(t), fn, f"student_channels / teacher_channels for {kind!r}")
    return t, s


def identity_conv1x1(c_in: int, c_out: int, identity_init: bool) -> nn.Conv2d:
    """A 1x1 conv ``c_in -> c_out`` with bias; ``identity_init``: weight = the (rectangular) identity, bias 0.

    With equal channel counts the identity-initialised adapter passes features
    through unchanged; otherwise the first min(c_in, c_out) channels map to
    each other and the rest start at zero. Without it: PyTorch's default init.
    """
    conv = nn.Conv2d(c_in, c_out, kernel_size=1, bias=True)
    if identity_init:
        with torch.no_grad():
            nn.init.eye_(conv.weight.view(c_out, c_in))
            conv.bias.zero_()
    return conv


# --- distances ----------------------------------------------------------------------------------
def softmax_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x mean over N, h, w of KL(softmax(teacher / T) || softmax(student / T)) over channel dim 1.

    N x D x h x w inputs; the T^2 factor (Hinton et al.) keeps gradient scale
    comparable across temperatures. Zero exactly when the inputs are equal.
    """
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * (temperature * temperature)


def safe_sqrt(x: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(x + eps^2) - eps: 0 at x = 0 with a finite gradient (plain sqrt's is infinite there)."""
    return torch.sqrt(x + eps * eps) - eps


# --- the methods with per-level student -> teacher adapters -------------------------------------
class AdaptedDistiller(nn.Module):
    """Base of the distillers that align each student level to the teacher with a learned adapter.

    Subclasses set ``config_class`` (a :class:`DistillConfig` with ``kind`` and
    ``identity_init`` fields) and may override :meth:`make_adapter` (default: a
    1x1 conv, :func:`identity_conv1x1`). Channel counts are per level, coarse ->
    fine, or the dicts :func:`feature_channels` returns.

    Parameters: ``adapters`` (``nn.ModuleList``, one per level), trained with the student.
    """

    needs_channels = True
    config_class: type[DistillConfig]

    def __init__(
        self,
        teacher_channels: Sequence[int] | Mapping[str, Sequence[int]],
        student_channels: Sequence[int] | Mapping[str, Sequence[int]],
        config: DistillConfig | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.config = self.config_class.build(config, overrides)
        self.teacher_channels, self.student_channels = resolve_channel_pair(
            teacher_channels, student_channels, self.config.kind, type(self).__name__
        )
        self.adapters = nn.ModuleList(
            self.make_adapter(cs, ct) for cs, ct in zip(self.student_channels, self.teacher_channels)
        )

    def make_adapter(self, c_student: int, c_teacher: int) -> nn.Module:
        return identity_conv1x1(c_student, c_teacher, self.config.identity_init)

    def extra_repr(self) -> str:
        return (
            f"teacher_channels={list(self.teacher_channels)}, student_channels={list(self.student_channels)}, "
            + self.config.to_json()
        )

    def checked_features(
        self, student: Mapping[str, Any], teacher: Mapping[str, Any]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(student, teacher) feature pairs of ``config.kind``, checked against the adapters' channels."""
        fn = type(self).__name__
        pairs = feature_pairs(student, teacher, self.config.kind, fn)
        check_pair_channels(pairs, self.teacher_channels, self.student_channels, fn, self.config.kind)
        return pairs
