"""cdpkd.train: the one training loop of the project, its checkpoints and DDP helpers.

* :func:`fit` trains any model with a ``loss_fn(model, batch, step) -> {"total": ..., ...}``:
  AdamW + warmup/cosine schedule, AMP, gradient clipping, NaN/Inf guard,
  seeded data order, metrics log (CSV + JSON lines), validation, hooks,
  atomic SHA-256-verified checkpoints and exact resume; single process or
  DDP under ``torchrun``.
* :class:`FitConfig` holds its settings (JSON round trip).
* :func:`load_weights` / :func:`load_checkpoint` / :func:`latest_checkpoint`
  read checkpoints back (``weights_only=True``, never pickle).
* :mod:`cdpkd.train.curriculum`: difficulty scores, pacing, :class:`CurriculumBatches`
  (an easy-to-hard ``plan``) and :class:`Schedule` (pruning ratio, distillation weight).
"""

from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_model_config,
    save_checkpoint,
    verify_checkpoint,
)
from .config import FitConfig, learning_rate
from .curriculum import (
    CurriculumBatches,
    Schedule,
    difficulty_scores,
    distillation_weight_schedule,
    pacing,
    pruning_ratio_schedule,
)
from .data import BatchPlan, ShuffledBatches
from .distributed import cleanup, get_rank, get_world_size, is_distributed, is_main_process, unwrap
from .history import History
from .loop import TrainingDivergedError, fit, resolve_amp

__all__ = [
    "BatchPlan",
    "CheckpointError",
    "CurriculumBatches",
    "FitConfig",
    "History",
    "Schedule",
    "ShuffledBatches",
    "TrainingDivergedError",
    "cleanup",
    "difficulty_scores",
    "distillation_weight_schedule",
    "fit",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "latest_checkpoint",
    "learning_rate",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "pacing",
    "pruning_ratio_schedule",
    "read_model_config",
    "resolve_amp",
    "save_checkpoint",
    "unwrap",
    "verify_checkpoint",
]
