"""Unsupervised training of a displacement network on simulated RF pairs (the teacher recipe).

The recipe is a plain dataclass; :func:`ensure_unsupervised_model` trains it
once and caches the result (``model.pt`` + training history) under the
artifact root, keyed by the recipe, the model configuration and the training
set. The training run itself lives in a sibling ``<key>.run/`` folder with
checkpoints, so an interrupted run resumes where it stopped.

Validation holds out the last ``val_pairs`` pairs of the training file
(never the test set) and scores whole frames against ground truth.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..artifacts import artifact_dir, cached
from ..atomic import write_json
from ..estimators import network_estimator
from ..evaluation import pair_metrics
from ..losses import UnsupervisedLoss, UnsupervisedLossConfig
from ..models import PWCConfig, build_model, get_config, load_model, save_model
from ..sim import RFPairDataset, read_pair
from ..sim.dataset import open_dataset
from ..train import History, fit
from .schedule import TrainingSchedule

MODEL_FILE = "model.pt"
# Part of every cache key: bump when a code change alters what the same recipe trains
# (2: He initialisation of the PWC convs).
RECIPE_VERSION = 2


@dataclass(kw_only=True)
class UnsupervisedRecipe(TrainingSchedule):
    """Settings of one unsupervised training run (the schedule fields: :class:`TrainingSchedule`).

    Attributes:
        model: registry name of the network (:data:`cdpkd.models.MODEL_CONFIGS`).
        model_overrides: fields of its :class:`~cdpkd.models.PWCConfig` to change,
            e.g. ``{"input_mode": "rf+envelope"}``.
        val_pairs: last pairs of the training file held out for validation (0 = none).
        val_every: validate every this many steps (None = at the end only).
        strain_window: LS strain window (samples) of the validation metrics.
        init_from: artifact folder, relative to the artifact root (e.g.
            ``"teacher/<key>"``), whose trained model this run starts from (a
            refinement stage, see :func:`ensure_teacher`); None = random init.
        keep_best: end with the weights of the lowest validation strain RMSE
            instead of the last ones (needs validation pairs; the best weights are
            saved in the run folder as they appear, so a resumed run keeps them).
        val_tile: validate on overlapping tiles of the training crop (as the
            notebooks evaluate) instead of one whole-frame forward.
        release_fraction: fraction of the training items served as release pairs
            (:class:`cdpkd.sim.RFPairDataset`); validation stays on compression pairs.
        axial_offset: largest rigid axial offset (samples, both signs) between each
            training item's pre and post crops (:class:`cdpkd.sim.RFPairDataset`), so the
            network sees negative axial displacements too; validation stays unshifted.
        trainable: train only the parameters whose names start with one of these prefixes
            (e.g. ``["refine."]``: a refinement head added to a trained network, the rest
            frozen); None = all.
    """

    model: str
    model_overrides: dict[str, Any] = field(default_factory=dict)
    val_pairs: int = 4
    val_every: int | None = None
    strain_window: int = 31
    init_from: str | None = None
    val_tile: bool = False
    keep_best: bool = False
    release_fraction: float = 0.0
    axial_offset: int = 0
    trainable: list[str] | None = None

    LATER_FIELDS: ClassVar[dict[str, Any]] = {
        "init_from": None, "val_tile": False, "keep_best": False, "release_fraction": 0.0, "axial_offset": 0,
        "trainable": None,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_data_options()
        self.model_config()  # unknown names or fields fail here, with a clear message
        if self.val_pairs < 0:
            raise ValueError(f"val_pairs must be >= 0, got {self.val_pairs}")
        if self.trainable is not None:
            if isinstance(self.trainable, str) or not all(isinstance(t, str) and t for t in self.trainable):
                raise ValueError(f"trainable must be a list of parameter-name prefixes, got {self.trainable!r}")
            self.trainable = list(self.trainable)
            names = [name for name, _ in build_model(self.model_config()).named_parameters()]
            unmatched = [t for t in self.trainable if not any(name.startswith(t) for name in names)]
            if unmatched:
                raise ValueError(f"trainable: {unmatched} match no parameter of {self.model}")

    def model_config(self) -> PWCConfig:
        """The registry configuration of ``model`` with ``model_overrides`` applied."""
        config = get_config(self.model)
        unknown = sorted(set(self.model_overrides) - {f.name for f in dataclasses.fields(config)})
        if unknown:
            raise ValueError(f"model_overrides: {unknown} are not fields of {type(config).__name__}")
        return dataclasses.replace(config, **self.model_overrides)



def unsupervised_loss_fn(loss_settings: dict[str, Any]):
    """``fit`` loss: the unsupervised loss (:class:`UnsupervisedLossConfig` overrides) of ``net(pre, post)``."""
    loss = UnsupervisedLoss(UnsupervisedLossConfig.from_dict(loss_settings))

    def loss_fn(net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        return loss(batch["pre"], batch["post"], net(batch["pre"], batch["post"]))

    return loss_fn


def copy_run_logs(run_dir: Path, out: Path, prefix: str = "") -> None:
    """Copy a ``fit`` run folder's metrics and config files into an artifact folder."""
    for name in ("metrics.csv", "metrics.jsonl", "fit_config.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / f"{prefix}{name}")


BEST_FILE = "best_model.pt"
BEST_RECORD = BEST_FILE + ".best.json"  # written by keeping_best


def _split(train_path: Path, val_pairs: int) -> tuple[list[int], list[int]]:
    with open_dataset(train_path) as f:
        n = f["pre"].shape[0]
    if val_pairs >= n:
        raise ValueError(f"val_pairs={val_pairs} leaves no training pairs in {train_path} ({n} pairs)")
    return list(range(n - val_pairs)), list(range(n - val_pairs, n))


def validation_fn(train_path: Path, indices: list[int], strain_window: int, tile: tuple[int, int] | None = None):
    """``val_fn(model, step)``: mean full-frame metrics of the held-out pairs against ground truth.

    ``tile``: estimate on overlapping tiles of this size (see :func:`~cdpkd.estimators.network_estimator`)
    instead of one whole-frame forward.
    """
    pairs = [read_pair(train_path, i) for i in indices]

    def val_fn(model: nn.Module, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        estimate = network_estimator(model, device, tile=tile)
        rows = []
        for p in pairs:
            rows.append(
                pair_metrics(
                    estimate(p.pre, p.post), p.displacement, p.pre, p.post, p.labels,
                    strain_window=strain_window, border=(32, 4),
                )
            )
        keys = ("disp_rmse_axial", "disp_rmse_lateral", "strain_rmse", "warp_ncc")
        return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}  # logged as val_<key>

    return val_fn


def train_unsupervised(
    recipe: UnsupervisedRecipe,
    train_path: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
    init_model: str | os.PathLike | None = None,
    hooks: Sequence[Any] = (),
) -> tuple[nn.Module, History]:
    """Train ``recipe.model`` with the unsupervised loss; resumes from checkpoints in ``run_dir``.

    ``init_model``: a saved model (``model.pt``) to start from: the recipe's configuration, or
    another one with exactly the same parameters (names and shapes), e.g. the same network with
    other pyramid strides (``full_res_levels``), whose trained weights then carry over, or the
    same network without the recipe's refinement head (:func:`load_start`). ``hooks``: training
    hooks passed to :func:`cdpkd.train.fit` (e.g. a profiler around one step).
    """
    train_path = Path(train_path)
    train_idx, val_idx = _split(train_path, recipe.val_pairs)
    dataset = RFPairDataset(train_path, crop=recipe.crop, seed=recipe.seed, indices=train_idx,
                            release_fraction=recipe.release_fraction, axial_offset=recipe.axial_offset)
    model = build_model(recipe.model_config(), seed=recipe.seed)
    if init_model is not None:
        load_start(model, init_model)
    if recipe.trainable is not None:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(any(name.startswith(prefix) for prefix in recipe.trainable))
    loss_fn = unsupervised_loss_fn(recipe.loss)
    tile = recipe.crop if recipe.val_tile else None
    val_fn = validation_fn(train_path, val_idx, recipe.strain_window, tile=tile) if val_idx else None
    best = Path(run_dir) / BEST_FILE
    if recipe.keep_best:
        if val_fn is None:
            raise ValueError("keep_best needs validation pairs (val_pairs > 0)")
        val_fn = keeping_best(val_fn, best)
    history = fit(model, dataset, loss_fn, recipe.fit_config(profile), run_dir, val_fn=val_fn, device=device,
                  hooks=hooks)
    if recipe.keep_best and best.is_file():
        model.load_state_dict(load_model(best).state_dict())
    return model, history


def load_start(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a saved model's weights into ``model``: every parameter must fit by name and shape,
    except that a refinement head (``refine.*``) the saved model lacks keeps its fresh
    initialisation (a head added to a trained network). Anything else raises ``ValueError``."""
    start = load_model(path).state_dict()
    try:  # strict on shapes: a start of another width must not load partially
        missing, unexpected = model.load_state_dict(start, strict=False)
    except RuntimeError as error:  # reshaped parameters, listed by torch
        raise ValueError(f"{path}: its parameters do not fit the recipe's model: {error}") from error
    head_added = not any(k.startswith("refine.") for k in start)
    missing = [k for k in missing if not (head_added and k.startswith("refine."))]
    if missing or unexpected:
        raise ValueError(f"{path}: its parameters do not fit the recipe's model: missing {missing}, "
                         f"unexpected {unexpected}")


def keeping_best(val_fn, path: Path, metric: str = "strain_rmse"):
    """Wrap ``val_fn`` so that each new lowest ``metric`` saves the model to ``path``.

    The best score and its step are written to ``<path>.best.json``,
    read back on every call, so a resumed run compares against what it already saved.
    """
    record = path.with_name(path.name + ".best.json")

    def wrapped(model: nn.Module, step: int) -> dict[str, float]:
        metrics = val_fn(model, step)
        score = metrics.get(metric, float("nan"))
        best = json.loads(record.read_text())["score"] if record.is_file() else float("inf")
        if np.isfinite(score) and score < best:
            save_model(path, model)
            write_json(record, {"score": float(score), "metric": metric, "step": int(step)})
        return metrics

    return wrapped


def ensure_unsupervised_model(
    root: str | os.PathLike,
    kind: str,
    recipe: UnsupervisedRecipe,
    train_path: str | os.PathLike,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> Path:
    """Folder with ``model.pt`` and ``metrics.csv`` of ``recipe`` trained on ``train_path``; trains if missing.

    The cache key covers the recipe, the model's full configuration and the
    training set's own cache key (its folder name), not the profile: the same
    recipe on the same data is the same model whichever profile asks.
    """
    train_path = Path(train_path)
    params = {
        "version": RECIPE_VERSION,
        "recipe": recipe.cache_dict(),
        "model_config": recipe.model_config().to_dict(),
        "train_set": f"{train_path.parent.parent.name}/{train_path.parent.name}/{train_path.name}",
    }
    final = artifact_dir(root, kind, params)
    run_dir = final.with_name(final.name + ".run")

    init_model = None
    if recipe.init_from is not None:
        init_model = Path(root) / recipe.init_from / MODEL_FILE
        if not init_model.is_file():
            raise FileNotFoundError(f"init_from={recipe.init_from!r}: no trained model at {init_model}")

    def build(out: Path) -> None:
        model, _ = train_unsupervised(
            recipe, train_path, run_dir, profile=profile, device=device, init_model=init_model
        )
        save_model(out / MODEL_FILE, model)
        copy_run_logs(run_dir, out)
        if (run_dir / BEST_RECORD).is_file():
            shutil.copy2(run_dir / BEST_RECORD, out / BEST_RECORD)

    path = cached(root, kind, params, build)
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints were only needed until the model was final
    return path


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The network saved by :func:`ensure_unsupervised_model` in ``path``."""
    return load_model(Path(path) / MODEL_FILE, map_location=device)
