"""`FitConfig`: every knob of :func:`cdpkd.train.fit`, as a JSON-round-trippable dataclass."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEDULES = ("cosine", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")

# Fields that shape the optimisation trajectory: resuming with a different value
# would silently produce a run that neither configuration describes.
TRAJECTORY_FIELDS = (
    "batch_size",
    "lr",
    "weight_decay",
    "betas",
    "schedule",
    "warmup_steps",
    "min_lr_ratio",
    "amp",
    "grad_clip",
    "seed",
)


@dataclass
class FitConfig:
    """Configuration of one training run.

    Attributes:
        steps: total number of optimizer steps (not epochs); also the length of
            the cosine schedule.
        batch_size: samples per step *per process* (global batch = batch_size x world size).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay, applied to weights with >= 2
            dimensions only (not to biases or normalisation scales).
        betas: AdamW betas.
        schedule: ``"cosine"`` (linear warmup, cosine decay to ``lr * min_lr_ratio``)
            or ``"constant"`` (linear warmup, then ``lr``).
        warmup_steps: steps of linear warmup (0 = none).
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of ``lr``.
        amp: ``"auto"`` (bf16 autocast on CUDA when supported, else fp16 with a
            GradScaler; off on CPU), ``"off"``, ``"bf16"`` or ``"fp16"``.
        grad_clip: clip the global gradient norm to this value; ``None`` = no clipping
            (the norm is still computed, logged and checked for NaN/Inf).
        seed: seed of the global RNGs, the data order and per-item randomness.
        num_workers: DataLoader worker processes.
        log_every: write a metrics record every this many steps (loss terms are
            averaged over the window).
        val_every: run ``val_fn`` every this many steps; ``None`` = only at the end.
        checkpoint_every: save a checkpoint every this many steps; ``None`` = only at
            the end (and when stopped early).
        keep_last: keep this many most recent checkpoints; ``None`` = keep all.
        profile: pipeline profile name recorded in checkpoint manifests.
        deterministic: ``torch.use_deterministic_algorithms(True)`` during the run
            (bit-reproducible GPU runs at some speed cost; CPU runs are reproducible anyway).
        find_unused_parameters: passed to DistributedDataParallel (needed when some
            parameters get no gradient in a step, e.g. unused pyramid heads).
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    amp: str = "auto"
    grad_clip: float | None = 1.0
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    val_every: int | None = None
    checkpoint_every: int | None = None
    keep_last: int | None = 3
    profile: str = "default"
    deterministic: bool = False
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        errors = []

        def positive_int(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors.append(
                    f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}"
                )

        positive_int("steps", self.steps)
        positive_int("batch_size", self.batch_size)
        positive_int("log_every", self.log_every)
        positive_int("val_every", self.val_every, allow_none=True)
        positive_int("checkpoint_every", self.checkpoint_every, allow_none=True)
        positive_int("keep_last", self.keep_last, allow_none=True)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            errors.append(f"lr must be a positive finite number, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            errors.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            errors.append(f"betas must lie in [0, 1), got {self.betas!r}")
        if self.schedule not in SCHEDULES:
            errors.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            errors.append(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            errors.append(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if self.amp not in AMP_MODES:
            errors.append(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            errors.append(f"grad_clip must be a positive number or None, got {self.grad_clip!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            errors.append(f"seed must be a non-negative integer, got {self.seed!r}")
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            errors.append(f"num_workers must be a non-negative integer, got {self.num_workers!r}")
        if errors:
            raise ValueError("invalid FitConfig: " + "; ".join(errors))

    # --- JSON round trip ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (betas as a list)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not be ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FitConfig field(s) {unknown}; known fields: {sorted(known)}")
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def to_json(self) -> str:
        """JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> FitConfig:
        """Parse JSON text, or read it from a ``.json`` file path."""
        text = str(text_or_path)
        if isinstance(text_or_path, os.PathLike) or not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> FitConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def trajectory_differences(saved: dict[str, Any], current: FitConfig) -> dict[str, tuple[Any, Any]]:
    """Trajectory-shaping fields whose value differs between a checkpoint's config and ``current``."""
    now = current.to_dict()
    return {k: (saved.get(k), now[k]) for k in TRAJECTORY_FIELDS if saved.get(k) != now[k]}


def learning_rate(step: int, config: FitConfig) -> float:
    """Learning rate of update ``step`` (0-based): linear warmup, then constant or cosine decay.

    A pure function of the step, so resuming needs no scheduler object.
    """
    if step < config.warmup_steps:
        # (step + 1): the first update already moves, at lr / (warmup + 1)
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    if config.schedule == "constant":
        return config.lr
    min_lr = config.lr * config.min_lr_ratio
    decay_steps = max(1, config.steps - config.warmup_steps)
    ratio = min(1.0, (step - config.warmup_steps) / decay_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (config.lr - min_lr)
