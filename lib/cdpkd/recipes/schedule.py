"""Training settings every recipe shares: AdamW + cosine schedule, crops, loss overrides, seed.

:class:`TrainingSchedule` is the base dataclass of the teacher, student and
adaptation recipes (keyword-only fields, so a recipe adds its own fields
freely and changes defaults by redeclaring them). Cache keys hash the
recipes' ``to_dict()`` with sorted keys, so where a field is declared does
not change any key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..losses import UnsupervisedLossConfig
from ..train import FitConfig


@dataclass(kw_only=True)
class TrainingSchedule:
    """AdamW + cosine training settings.

    Attributes:
        crop: training crop (samples, lines), at random positions each epoch.
        steps, batch_size, lr, weight_decay, warmup_steps, grad_clip: the optimiser and its schedule.
        loss: overrides of :class:`~cdpkd.losses.UnsupervisedLossConfig` fields.
        seed: weights (where initialised), data order and crops.
    """

    crop: tuple[int, int] = (256, 64)
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float | None = 1.0
    loss: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self.crop = (int(self.crop[0]), int(self.crop[1]))
        UnsupervisedLossConfig.from_dict(self.loss)  # unknown or invalid loss settings fail here
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"{type(self).__name__}: steps must be an integer >= 1, got {self.steps!r}")

    # Fields added after cache keys were first published, with their defaults: left out of the key
    # while they hold them (cache_dict), so artifacts of recipes that do not use them keep their keys.
    LATER_FIELDS: ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cache_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the :attr:`LATER_FIELDS` that hold their defaults (the cache key's recipe)."""
        d = self.to_dict()
        for name, default in self.LATER_FIELDS.items():
            if d.get(name) == default:
                d.pop(name)
        return d

    def _check_data_options(self) -> None:
        """release_fraction in [0, 1] and axial_offset a non-negative int, where the recipe has them."""
        fraction = getattr(self, "release_fraction", 0.0)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{type(self).__name__}: release_fraction must be in [0, 1], got {fraction!r}")
        offset = getattr(self, "axial_offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"{type(self).__name__}: axial_offset must be a non-negative int (samples), got {offset!r}")

    def fit_config(self, profile: str, steps: int | None = None, lr: float | None = None) -> FitConfig:
        """The :class:`~cdpkd.train.FitConfig`, optionally with another number of ``steps`` or learning
        rate (e.g. a fine-tuning phase); validation every ``val_every`` steps where the recipe has one."""
        steps = self.steps if steps is None else steps
        return FitConfig(
            steps=steps,
            batch_size=self.batch_size,
            lr=self.lr if lr is None else lr,
            weight_decay=self.weight_decay,
            warmup_steps=min(self.warmup_steps, steps - 1),
            grad_clip=self.grad_clip,
            seed=self.seed,
            val_every=getattr(self, "val_every", None),
            checkpoint_every=max(1, steps // 10),  # an interrupted run loses at most a tenth
            log_every=max(1, min(10, steps // 20)),
            profile=profile,
        )


__all__ = ["TrainingSchedule"]
