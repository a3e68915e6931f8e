"""Step schedules for the pruning ratio, the distillation weight and similar scalars.

A :class:`Schedule` maps the 0-based optimizer step to a value: ``start_value``
up to ``start_step``, ``end_value`` from ``end_step`` on, and in between, with
``p = (t - start_step) / (end_step - start_step)``:

============  ================================================
kind          value at progress ``p``
============  ================================================
``constant``  ``start_value`` at every step
``linear``    ``v0 + (v1 - v0) p``
``cubic``     ``v1 + (v0 - v1) (1 - p)^3`` (Zhu & Gupta 2017)
``cosine``    ``v1 + (v0 - v1) (1 + cos(pi p)) / 2``
============  ================================================

The cubic ramp is the gradual pruning schedule of Zhu & Gupta ("To prune, or
not to prune", 2017): ``r_t = r_f + (r_0 - r_f)(1 - (t - t0) / (n dt))^3``
for ``t = t0, t0 + dt, ..., t0 + n dt``; here ``t0 = start_step``,
``n dt = end_step - start_step`` and ``dt = every`` (the value is held between
updates). It prunes fast while many redundant channels remain and slowly near
the final ratio.

Schedules are frozen dataclasses with a JSON round trip
(:meth:`Schedule.to_dict` / :meth:`Schedule.from_dict`), so they sit in
profiles and checkpoint metadata. They are also hooks: passed in
``fit(..., hooks=[...])`` they log their value under their ``name``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Ramp shapes of :class:`Schedule`.
SCHEDULE_KINDS = ("constant", "linear", "cubic", "cosine")
#: Allowed value ranges: any finite number, a ratio in [0, 1), a weight >= 0.
DOMAINS = ("any", "ratio", "weight")


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Schedule:
    """A scalar that follows the optimizer step.

    Attributes:
        kind: one of :data:`SCHEDULE_KINDS`.
        start_value: value up to ``start_step`` (and always, for ``constant``).
        end_value: value from ``end_step`` on; ``None`` only for ``constant``.
        start_step, end_step: 0-based steps where the ramp starts and ends
            (``end_step >= start_step``; equal = a jump at ``start_step``).
        every: the value changes only every this many steps after ``start_step``
            (Zhu & Gupta's pruning frequency ``dt``); 1 = every step.
        name: what is scheduled (``"pruning_ratio"``, ``"kd_weight"``, ...): used in
            error messages and as the logged metric name.
        domain: ``"ratio"`` (values in [0, 1)), ``"weight"`` (>= 0) or ``"any"`` (finite).
    """

    kind: str = "constant"
    start_value: float = 0.0
    end_value: float | None = None
    start_step: int = 0
    end_step: int = 0
    every: int = 1
    name: str = "value"
    domain: str = "any"

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}" if isinstance(self.name, str) else "schedule"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{where}: name must be a non-empty string, got {self.name!r}")
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"{where}: kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        if self.domain not in DOMAINS:
            raise ValueError(f"{where}: domain must be one of {DOMAINS}, got {self.domain!r}")
        for field in ("start_step", "end_step"):
            v = getattr(self, field)
            if not _is_int(v) or v < 0:
                raise ValueError(f"{where}: {field} must be a non-negative integer, got {v!r}")
            object.__setattr__(self, field, int(v))
        if self.end_step < self.start_step:
            raise ValueError(f"{where}: end_step ({self.end_step}) is before start_step ({self.start_step})")
        if not _is_int(self.every) or self.every < 1:
            raise ValueError(f"{where}: every must be a positive integer, got {self.every!r}")
        object.__setattr__(self, "every", int(self.every))
        if self.kind != "constant" and self.end_value is None:
            raise ValueError(f"{where}: end_value is required for a {self.kind!r} schedule")
        for field in ("start_value", "end_value"):
            v = getattr(self, field)
            if v is None:
                continue
            if not (_is_number(v) and math.isfinite(v)):
                raise ValueError(f"{where}: {field} must be a finite number, got {v!r}")
            if self.domain == "ratio" and not 0 <= v < 1:
                raise ValueError(f"{where}: {field} must be a ratio in [0, 1), got {v!r}")
            if self.domain == "weight" and v < 0:
                raise ValueError(f"{where}: {field} must be a weight >= 0, got {v!r}")
            object.__setattr__(self, field, float(v))
        if self.kind == "constant" and self.end_value is not None and self.end_value != self.start_value:
            raise ValueError(
                f"{where}: a constant schedule has one value; end_value {self.end_value!r} differs from "
                f"start_value {self.start_value!r} (use kind 'linear', 'cubic' or 'cosine' to change it)"
            )

    def value(self, step: int) -> float:
        """Value at the 0-based optimizer ``step``."""
        if not _is_int(step) or step < 0:
            raise ValueError(f"schedule {self.name!r}: step must be a non-negative integer, got {step!r}")
        v0 = self.start_value
        if self.kind == "constant":
            return v0
        v1 = float(self.end_value)  # type: ignore[arg-type]  # checked in __post_init__
        if step >= self.end_step:
            return v1
        if step <= self.start_step:
            return v0
        t = self.start_step + (step - self.start_step) // self.every * self.every
        p = (t - self.start_step) / (self.end_step - self.start_step)
        if self.kind == "linear":
            return v0 + (v1 - v0) * p
        if self.kind == "cubic":
            return v1 + (v0 - v1) * (1.0 - p) ** 3
        return v1 + (v0 - v1) * 0.5 * (1.0 + math.cos(math.pi * p))  # cosine

    __call__ = value

    def values(self, steps: int) -> np.ndarray:
        """The value at every step ``0 .. steps - 1`` (for plots)."""
        return np.array([self.value(s) for s in range(int(steps))])

    def on_step_end(self, step: int, model: Any, logs: dict) -> None:
        """Hook: log the value used in update ``step`` under ``name``."""
        logs[self.name] = self.value(step)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(d, dict):
            raise ValueError(f"schedule settings must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown schedule settings {unknown}; known: {sorted(known)}")
        return cls(**d)


def pruning_ratio_schedule(
    final_ratio: float,
    start_step: int,
    end_step: int,
    *,
    kind: str = "cubic",
    initial_ratio: float = 0.0,
    every: int = 1,
) -> Schedule:
    """Fraction of channels pruned at each step: ``initial_ratio`` -> ``final_ratio`` (cubic by default)."""
    return Schedule(
        kind=kind,
        start_value=initial_ratio,
        end_value=final_ratio,
        start_step=start_step,
        end_step=end_step,
        every=every,
        name="pruning_ratio",
        domain="ratio",
    )


def distillation_weight_schedule(
    weight: float,
    final_weight: float | None = None,
    start_step: int = 0,
    end_step: int = 0,
    *,
    kind: str = "linear",
) -> Schedule:
    """Weight of the distillation loss: constant ``weight``, or a ramp to ``final_weight``."""
    if final_weight is None:
        return Schedule(kind="constant", start_value=weight, name="kd_weight", domain="weight")
    return Schedule(
        kind=kind,
        start_value=weight,
        end_value=final_weight,
        start_step=start_step,
        end_step=end_step,
        name="kd_weight",
        domain="weight",
    )


__all__ = ["DOMAINS", "SCHEDULE_KINDS", "Schedule", "distillation_weight_schedule", "pruning_ratio_schedule"]
