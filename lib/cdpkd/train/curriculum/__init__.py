"""Curriculum for CDP-KDNet: difficulty scores, pacing, an easy-to-hard batch plan, step schedules.

How the parts fit into :func:`cdpkd.train.fit`::

    scores = difficulty_scores(path, estimator=teacher_fn)          # one per pair, higher = harder
    plan = CurriculumBatches(scores, cfg.batch_size, cfg.seed, cfg.steps, pacing="root")
    ratio = pruning_ratio_schedule(0.55, start_step=100, end_step=800)   # read by the pruning hook
    kd = distillation_weight_schedule(1.0, 0.2, 0, cfg.steps, kind="cosine")  # read in loss_fn
    fit(model, dataset, loss_fn, cfg, plan=plan, hooks=[plan, ratio, kd, ...])

* :mod:`.difficulty`: applied strain, pre/post decorrelation, teacher
  confidence; rank-normalised and combined by a weighted mean.
* :mod:`.pacing`: linear / root / geometric pacing functions.
* :mod:`.batches`: :class:`CurriculumBatches`, deterministic per step (exact resume).
* :mod:`.schedules`: :class:`Schedule` (constant, linear, cubic, cosine) with a JSON round trip.

Everything is a pure function of the step, so nothing needs saving in checkpoints.
"""

from .batches import CurriculumBatches
from .difficulty import (
    KINDS,
    combine_difficulties,
    decorrelation_difficulty,
    difficulty_components,
    difficulty_scores,
    rank_normalize,
    strain_difficulty,
    teacher_confidence_difficulty,
)
from .pacing import PACINGS, pacing, pacing_curve
from .schedules import SCHEDULE_KINDS, Schedule, distillation_weight_schedule, pruning_ratio_schedule

__all__ = [
    "KINDS",
    "PACINGS",
    "SCHEDULE_KINDS",
    "CurriculumBatches",
    "Schedule",
    "combine_difficulties",
    "decorrelation_difficulty",
    "difficulty_components",
    "difficulty_scores",
    "distillation_weight_schedule",
    "pacing",
    "pacing_curve",
    "pruning_ratio_schedule",
    "rank_normalize",
    "strain_difficulty",
    "teacher_confidence_difficulty",
]
