"""Compact students of a trained teacher: DP-Net and CDP-KDNet, as cached artifacts.

Both students live under one joint budget (:class:`StudentBudget`: at most a
fraction of the teacher's parameters *and* of its FLOPs, FLOPs counted at the
training crop, which is also the inference tile) and train without ground
truth on the same simulated pairs as the teacher.

**DP-Net** (:class:`DPNetRecipe`): a sub-network of the teacher at reduced
width. One-shot pruning of the trained teacher picks the channels (per-layer
keep counts from the budget, FLOP-proportional so the full-resolution
estimator and context network lose most; within a layer the most important
channels by filter norm), then the student trains *alone* with the
unsupervised loss, starting from the kept teacher weights (``init =
"pruned_teacher"``) or from random weights of the same architecture
(``"scratch"``).

**CDP-KDNet** (:class:`CDPKDRecipe`): starts as a copy of the whole teacher.
During the first phase, soft channel masks prune it dynamically toward the
budget on a cubic ramp (:class:`~cdpkd.compress.DynamicPruning`; importance by
first-order Taylor score or filter norm, masked channels can come back),
while it learns from the frozen teacher (a :mod:`cdpkd.losses.distill`
method, weight decaying on a cosine) plus the unsupervised loss, with the
training pairs introduced easy to hard (curriculum by applied strain,
pre/post decorrelation and teacher confidence). Then the masked channels are
removed for real (hard pruning) and the smaller dense network is fine-tuned
briefly with the same objective.

Each recipe is a dataclass; ``ensure_*`` trains it once and caches the result
(``model.pt`` + its JSON spec, which reloads with :func:`cdpkd.models.load_model`
and no pruning code; metrics CSVs; ``student.json`` with the budget reached).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..artifacts import artifact_dir, cached
from ..atomic import write_json
from ..complexity import count_flops
from ..compress import (
    ChannelMap,
    DynamicPruning,
    hard_prune,
    importance_scores,
    joint_keep_counts,
    measure_cost_model,
    select_counts,
)
from ..estimators import network_estimator
from ..losses import UnsupervisedLoss, UnsupervisedLossConfig
from ..losses.distill import DISTILLERS, build_distiller, feature_channels
from ..models import build_model, count_parameters, load_model, save_model
from ..sim import RFPairDataset
from ..train import fit
from ..train.curriculum import CurriculumBatches, Schedule, difficulty_scores
from ..train.distillation import DistillationObjective
from .schedule import TrainingSchedule
from .unsupervised import (
    MODEL_FILE,
    _split,
    copy_run_logs,
    unsupervised_loss_fn,
    validation_fn,
)

STUDENT_FILE = "student.json"
# Part of every cache key: bump when a code change alters what the same recipe trains.
STUDENT_RECIPE_VERSION = 1
FEATURE_DISTILLERS = ("feature", "attention", "imitation", "teacher_level", "mavkd", "kdmri")


@dataclass
class StudentBudget:
    """The compact student's cost, as fractions of the teacher's (kept, in (0, 1]; None = free).

    FLOPs are counted (:func:`cdpkd.complexity.count_flops`) at the training
    crop, the tile the networks run on at inference.
    """

    params_fraction: float | None = 0.40
    flops_fraction: float | None = 0.50
    min_channels: int = 4
    # kept channel counts rounded to multiples of this (within the budget): narrow layers with
    # odd counts run slowly (README, CPU benchmarks); 1 = no rounding (and no cache-key entry)
    multiple_of: int = 1

    def __post_init__(self) -> None:
        if self.params_fraction is None and self.flops_fraction is None:
            raise ValueError("StudentBudget: give params_fraction, flops_fraction or both")
        for name in ("params_fraction", "flops_fraction"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v <= 1):
                raise ValueError(f"StudentBudget: {name} must be in (0, 1], got {v!r}")
        if not isinstance(self.min_channels, int) or self.min_channels < 1:
            raise ValueError(
                f"StudentBudget: min_channels must be an integer >= 1, got {self.min_channels!r}"
            )
        if isinstance(self.multiple_of, bool) or not isinstance(self.multiple_of, int) or self.multiple_of < 1:
            raise ValueError(f"StudentBudget: multiple_of must be an integer >= 1, got {self.multiple_of!r}")


@dataclass(kw_only=True)
class StudentTraining(TrainingSchedule):
    """Settings shared by both students: the budget, the schedule (:class:`TrainingSchedule`, with the
    students' defaults) and validation on held-out training pairs (see UnsupervisedRecipe)."""

    budget: StudentBudget = field(default_factory=StudentBudget)
    steps: int = 400
    lr: float = 3e-4
    warmup_steps: int = 20
    val_pairs: int = 4
    val_every: int | None = None
    strain_window: int = 31
    release_fraction: float = 0.0  # as in UnsupervisedRecipe
    axial_offset: int = 0  # as in UnsupervisedRecipe

    LATER_FIELDS: ClassVar[dict[str, Any]] = {"release_fraction": 0.0, "axial_offset": 0}

    def __post_init__(self) -> None:
        if isinstance(self.budget, dict):
            self.budget = StudentBudget(**self.budget)
        super().__post_init__()
        self._check_data_options()

    def cache_dict(self) -> dict[str, Any]:
        """As :meth:`TrainingSchedule.cache_dict`, without the budget's ``multiple_of`` while it is 1,
        so the students trained before it existed keep their cache keys."""
        d = super().cache_dict()
        if d["budget"].get("multiple_of") == 1:
            d["budget"].pop("multiple_of")
        return d


@dataclass(kw_only=True)
class DPNetRecipe(StudentTraining):
    """DP-Net: one-shot pruned teacher sub-network, trained alone with the unsupervised loss.

    Attributes:
        criterion: channel importance of the one-shot pruning ("l1" or "l2" filter norm).
        init: "pruned_teacher" (start from the kept teacher weights) or "scratch".
    """

    criterion: str = "l1"
    init: str = "pruned_teacher"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.criterion not in ("l1", "l2"):
            raise ValueError(f"DPNetRecipe: criterion must be 'l1' or 'l2', got {self.criterion!r}")
        if self.init not in ("pruned_teacher", "scratch"):
            raise ValueError(f"DPNetRecipe: init must be 'pruned_teacher' or 'scratch', got {self.init!r}")


@dataclass(kw_only=True)
class CDPKDRecipe(StudentTraining):
    """CDP-KDNet: curriculum-guided dynamic pruning with distillation, hard pruning, fine-tuning.

    Attributes:
        criterion: importance for the dynamic masks: "taylor", "l1" or "l2".
        prune_start, prune_end: the pruning ramp, as fractions of ``steps``.
        prune_every: steps between mask updates.
        distiller, distiller_options: a :data:`cdpkd.losses.distill.DISTILLERS`
            name and its settings.
        kd_weight, kd_final_weight: distillation weight, cosine-decayed to the
            final weight over ``steps`` (None: constant).
        unsupervised_weight: weight of the unsupervised loss.
        curriculum: introduce pairs easy to hard (False: uniform shuffling).
        pacing, start_fraction, end_step_fraction: see
            :class:`~cdpkd.train.curriculum.CurriculumBatches`.
        difficulty: cues of :func:`~cdpkd.train.curriculum.difficulty_scores`
            ("teacher" runs the teacher on a centred crop of every pair).
        finetune_steps, finetune_lr: after hard pruning (0 steps: none).
    """

    criterion: str = "taylor"
    prune_start: float = 0.0
    prune_end: float = 0.6
    prune_every: int = 10
    distiller: str = "output"
    distiller_options: dict[str, Any] = field(default_factory=dict)
    kd_weight: float = 1.0
    kd_final_weight: float | None = 0.25
    unsupervised_weight: float = 1.0
    curriculum: bool = True
    pacing: str = "root"
    start_fraction: float = 0.3
    end_step_fraction: float = 0.5
    difficulty: tuple[str, ...] = ("strain", "decorrelation", "teacher")
    finetune_steps: int = 100
    finetune_lr: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        self.difficulty = tuple(self.difficulty)
        if self.criterion not in ("taylor", "l1", "l2"):
            raise ValueError(f"CDPKDRecipe: criterion must be 'taylor', 'l1' or 'l2', got {self.criterion!r}")
        if not 0 <= self.prune_start <= self.prune_end <= 1:
            raise ValueError(
                f"CDPKDRecipe: need 0 <= prune_start <= prune_end <= 1, got {self.prune_start}, {self.prune_end}"
            )
        if self.distiller not in DISTILLERS:
            raise ValueError(
                f"CDPKDRecipe: unknown distiller {self.distiller!r}; known: {sorted(DISTILLERS)}"
            )
        if not isinstance(self.finetune_steps, int) or self.finetune_steps < 0:
            raise ValueError(
                f"CDPKDRecipe: finetune_steps must be an integer >= 0, got {self.finetune_steps!r}"
            )

    @property
    def distills(self) -> bool:
        """Whether the teacher's outputs are distilled at all (a zero weight throughout: no)."""
        return self.kd_weight > 0 or bool(self.kd_final_weight)

    @property
    def prune_steps(self) -> tuple[int, int]:
        """The pruning ramp's (start, end) optimizer steps."""
        return int(round(self.prune_start * self.steps)), max(1, int(round(self.prune_end * self.steps)))

    def kd_schedule(self) -> float | Schedule:
        if self.kd_final_weight is None:
            return float(self.kd_weight)
        return Schedule(
            kind="cosine",
            start_value=self.kd_weight,
            end_value=self.kd_final_weight,
            start_step=0,
            end_step=self.steps,
            name="kd_weight",
            domain="weight",
        )


# ----------------------------------------------------------------------------- one-shot pruning
def one_shot_prune(
    teacher: nn.Module, budget: StudentBudget, crop: tuple[int, int], criterion: str = "l1"
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``teacher`` once to ``budget`` (widths rounded to ``budget.multiple_of``); returns
    (pruned copy, report of kept channels and fractions)."""
    teacher = teacher.to("cpu")
    cmap = ChannelMap.from_model(teacher)
    h, w = crop
    flops_model = measure_cost_model(teacher, "flops", height=h, width=w, channel_map=cmap)
    params_model = measure_cost_model(teacher, "params", height=h, width=w, channel_map=cmap)
    keep = joint_keep_counts(
        flops_model,
        params_model,
        flops_fraction=budget.flops_fraction,
        params_fraction=budget.params_fraction,
        min_channels=budget.min_channels,
        multiple_of=budget.multiple_of,
    )
    masks = select_counts(importance_scores(teacher, criterion, channel_map=cmap), keep)
    student, _ = hard_prune(teacher, masks, channel_map=cmap)
    return student, cost_report(teacher, student, crop, cmap.widths())


def cost_report(
    teacher: nn.Module, student: nn.Module, crop: tuple[int, int], teacher_widths: dict[str, int]
) -> dict[str, Any]:
    """Measured parameters / FLOPs (at ``crop``) of both networks and the per-layer kept channels."""
    student_widths = ChannelMap.from_model(student).widths()
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    t_flops, s_flops = count_flops(teacher, *crop), count_flops(student, *crop)
    return {
        "teacher_params": t_params,
        "student_params": s_params,
        "params_fraction": s_params / t_params,
        "teacher_flops": t_flops,
        "student_flops": s_flops,
        "flops_fraction": s_flops / t_flops,
        "flops_at": list(crop),
        "channels": {n: {"teacher": c, "student": student_widths[n]} for n, c in teacher_widths.items()},
    }


def _check_budget(report: dict[str, Any], budget: StudentBudget) -> None:
    for name in ("params_fraction", "flops_fraction"):
        target = getattr(budget, name)
        if (
            target is not None and report[name] > target + 1e-12
        ):  # the cost models are exact: a bug, not noise
            raise RuntimeError(f"student has {report[name]:.4f} of the teacher's {name[:-9]}, above {target}")


# ----------------------------------------------------------------------------- DP-Net
def _student_params(recipe: StudentTraining, teacher_dir: Path, train_path: Path) -> dict[str, Any]:
    return {
        "version": STUDENT_RECIPE_VERSION,
        "recipe": recipe.cache_dict(),
        "teacher": f"{teacher_dir.parent.name}/{teacher_dir.name}",
        "train_set": f"{train_path.parent.parent.name}/{train_path.parent.name}/{train_path.name}",
    }


def _training_data(recipe: StudentTraining, train_path: Path):
    """(training indices, cropped training dataset, tiled validation on the held-out pairs or None)."""
    train_idx, val_idx = _split(train_path, recipe.val_pairs)
    dataset = RFPairDataset(train_path, crop=recipe.crop, seed=recipe.seed, indices=train_idx,
                            release_fraction=recipe.release_fraction, axial_offset=recipe.axial_offset)
    val_fn = validation_fn(train_path, val_idx, recipe.strain_window, tile=recipe.crop) if val_idx else None
    return train_idx, dataset, val_fn


def _ensure_student(
    root: str | os.PathLike,
    kind: str,
    recipe: StudentTraining,
    teacher_dir: Path,
    train_path: Path,
    train,
    logs: dict[str, str],
    profile: str,
    device: str | torch.device | None,
) -> Path:
    """Train ``train(recipe, teacher, train_path, run_dir, ...)`` once as the ``kind`` artifact.

    ``logs``: run sub-folder -> file prefix of the metrics copied into the artifact.
    """
    params = _student_params(recipe, teacher_dir, train_path)
    run_dir = artifact_dir(root, kind, params)
    run_dir = run_dir.with_name(run_dir.name + ".run")

    def build(out: Path) -> None:
        start = time.perf_counter()
        teacher = load_model(teacher_dir / MODEL_FILE)
        model, report = train(recipe, teacher, train_path, run_dir, profile=profile, device=device)
        save_model(out / MODEL_FILE, model)
        for sub, prefix in logs.items():
            copy_run_logs(run_dir / sub, out, prefix)
        write_json(out / STUDENT_FILE, {**report, "train_seconds": time.perf_counter() - start})

    path = cached(root, kind, params, build)
    shutil.rmtree(run_dir, ignore_errors=True)
    return path


def train_dpnet(
    recipe: DPNetRecipe,
    teacher: nn.Module,
    train_path: Path,
    run_dir: Path,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """One-shot prune ``teacher`` to the budget and train the sub-network alone; returns (model, report)."""
    student, report = one_shot_prune(teacher, recipe.budget, recipe.crop, recipe.criterion)
    _check_budget(report, recipe.budget)
    if recipe.init == "scratch":
        student = build_model(student.config, seed=recipe.seed)
    train_idx, dataset, val_fn = _training_data(recipe, train_path)
    fit(
        student,
        dataset,
        unsupervised_loss_fn(recipe.loss),
        recipe.fit_config(profile),
        run_dir,
        val_fn=val_fn,
        device=device,
    )
    return student, report


def ensure_dpnet(
    root: str | os.PathLike,
    recipe: DPNetRecipe,
    teacher_dir: str | os.PathLike,
    train_path: str | os.PathLike,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> Path:
    """Folder with ``model.pt``, ``metrics.csv`` and ``student.json`` of DP-Net; trains if missing."""
    return _ensure_student(
        root, "dpnet", recipe, Path(teacher_dir), Path(train_path), train_dpnet, {"": ""}, profile, device
    )


# ----------------------------------------------------------------------------- CDP-KDNet
def _distiller(recipe: CDPKDRecipe, teacher: nn.Module, student: nn.Module) -> tuple[nn.Module, bool]:
    """The distillation module and whether it needs the networks' features."""
    features = recipe.distiller in FEATURE_DISTILLERS
    channels = {}
    if features:
        h, w = recipe.crop
        probe = torch.zeros(1, teacher.config.in_channels, h, w)
        with torch.no_grad():
            channels = {
                "teacher_channels": feature_channels(teacher.eval()(probe, probe, return_features=True)),
                "student_channels": feature_channels(student.eval()(probe, probe, return_features=True)),
            }
        student.train()
    return build_distiller(recipe.distiller, **channels, **recipe.distiller_options), features


# Difficulty scores already computed in this process, by (teacher weights, data, pairs, crop, cues):
# every CDP-KDNet variant of an ablation scores the same pairs with the same teacher.
_SCORES: dict[str, np.ndarray] = {}


def _scores_key(recipe: CDPKDRecipe, teacher: nn.Module, train_path: Path, indices: list[int]) -> str:
    digest = hashlib.sha256(repr((str(train_path), indices, recipe.crop, recipe.difficulty)).encode())
    if "teacher" in recipe.difficulty:
        for name, tensor in teacher.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def curriculum_scores(
    recipe: CDPKDRecipe, teacher: nn.Module, train_path: Path, indices: list[int], device: torch.device | None
) -> np.ndarray:
    """Difficulty of each training pair (higher = harder); the teacher cue on a centred crop.

    Deterministic, so computed once per process for the same teacher weights, pairs, crop and cues.
    """
    key = _scores_key(recipe, teacher, train_path, indices)
    if key not in _SCORES:
        estimator = network_estimator(teacher, device) if "teacher" in recipe.difficulty else None
        _SCORES[key] = difficulty_scores(
            train_path, kinds=recipe.difficulty, estimator=estimator, indices=indices, crop=recipe.crop
        )
    return _SCORES[key].copy()


def train_cdp_kdnet(
    recipe: CDPKDRecipe,
    teacher: nn.Module,
    train_path: Path,
    run_dir: Path,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Dynamic pruning + distillation + curriculum, hard pruning, fine-tuning; returns (model, report)."""
    train_idx, dataset, val_fn = _training_data(recipe, train_path)
    teacher = teacher.to("cpu").eval()
    student = build_model(teacher.config, seed=recipe.seed)
    student.load_state_dict(teacher.state_dict())  # CDP-KDNet starts as the whole teacher
    teacher_widths = ChannelMap.from_model(teacher).widths()

    config = recipe.fit_config(profile)
    start, end = recipe.prune_steps
    pruning = DynamicPruning(
        student,
        flops_fraction=recipe.budget.flops_fraction,
        params_fraction=recipe.budget.params_fraction,
        start_step=start,
        end_step=end,
        every=recipe.prune_every,
        criterion=recipe.criterion,
        height=recipe.crop[0],
        width=recipe.crop[1],
        min_channels=recipe.budget.min_channels,
        multiple_of=recipe.budget.multiple_of,
    )
    distiller, features = _distiller(recipe, teacher, student) if recipe.distills else (None, False)
    unsupervised = UnsupervisedLoss(UnsupervisedLossConfig.from_dict(recipe.loss))
    objective = DistillationObjective(
        teacher,
        distiller,
        unsupervised,
        kd_weight=recipe.kd_schedule(),
        unsupervised_weight=recipe.unsupervised_weight,
        features=features,
    )
    hooks: list[Any] = [pruning]
    plan = None
    scores = None
    if recipe.curriculum:
        dev = torch.device(device) if device is not None else None
        scores = curriculum_scores(recipe, teacher, train_path, train_idx, dev)
        plan = CurriculumBatches(
            scores,
            recipe.batch_size,
            recipe.seed,
            recipe.steps,
            pacing=recipe.pacing,
            start_fraction=recipe.start_fraction,
            end_step_fraction=recipe.end_step_fraction,
        )
        hooks.append(plan)
    fit(
        student,
        dataset,
        objective,
        config,
        run_dir / "prune",
        val_fn=val_fn,
        hooks=hooks,
        plan=plan,
        device=device,
    )

    pruned, _ = pruning.finalize()
    pruning.remove()
    report = cost_report(teacher, pruned.to("cpu"), recipe.crop, teacher_widths)
    _check_budget(report, recipe.budget)
    if recipe.finetune_steps > 0:
        objective.kd_weight = (
            recipe.kd_final_weight if recipe.kd_final_weight is not None else recipe.kd_weight
        )
        distiller_ft, _ = _distiller(recipe, teacher, pruned) if features else (distiller, False)
        objective.distiller = distiller_ft  # the pruned student's feature widths changed: fresh adapters
        fit(
            pruned,
            dataset,
            objective,
            recipe.fit_config(profile, recipe.finetune_steps, recipe.finetune_lr),
            run_dir / "finetune",
            val_fn=val_fn,
            device=device,
        )
    if scores is not None:
        report["difficulty"] = [float(s) for s in scores]
    return pruned, report


def ensure_cdp_kdnet(
    root: str | os.PathLike,
    recipe: CDPKDRecipe,
    teacher_dir: str | os.PathLike,
    train_path: str | os.PathLike,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> Path:
    """Folder with ``model.pt``, ``prune_metrics.csv``, ``finetune_metrics.csv`` and ``student.json``."""
    return _ensure_student(
        root,
        "cdp_kdnet",
        recipe,
        Path(teacher_dir),
        Path(train_path),
        train_cdp_kdnet,
        {"prune": "prune_", "finetune": "finetune_"},
        profile,
        device,
    )


def read_student_report(path: str | os.PathLike) -> dict[str, Any]:
    """``student.json`` of a student artifact folder."""
    return json.loads((Path(path) / STUDENT_FILE).read_text())
