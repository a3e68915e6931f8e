"""Unsupervised fine-tuning of a trained network on real RF pairs (test-time adaptation, no labels).

The networks are trained on simulated RF only; on real data they meet another
centre frequency, other speckle and larger motions (notebook 05). Their
training loss needs no ground truth, so it can be minimised on the real
pairs themselves: :func:`ensure_adapted` fine-tunes a copy of a trained
network (any artifact with a ``model.pt``) with the unsupervised loss on
random crops of real pre/post frames, a short low-learning-rate schedule,
and caches the result keyed by the recipe, the source artifact and a SHA-256
fingerprint of the frames.

Evaluating such a network on the frames it was adapted on is test-time
adaptation: legitimate for an unsupervised method (nothing but the input
frames is used) but it must be reported as such, next to frames it never saw.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..artifacts import artifact_dir, cached
from ..models import load_model, save_model
from ..sim.torch_dataset import crop_origin, rf_pair_tensors
from ..train import fit
from .schedule import TrainingSchedule
from .unsupervised import MODEL_FILE, copy_run_logs, unsupervised_loss_fn


class RealPairCrops(Dataset):
    """Random crops of real pre/post RF frame pairs, as ``{"pre", "post"}`` float32 (1, h, w) tensors.

    Each crop is divided by its pre crop's RF standard deviation, as the
    networks saw their training data (:class:`cdpkd.sim.RFPairDataset`).
    Crop positions come from ``seed``, the epoch (:meth:`set_epoch`) and the index.

    Args:
        pairs: (pre, post) H x W frames (any sizes, each at least the crop).
        crop: (samples, lines).
    """

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], crop: tuple[int, int], seed: int = 0):
        if not pairs:
            raise ValueError("RealPairCrops: no pairs")
        self.pairs = []
        for k, (pre, post) in enumerate(pairs):
            pre, post = np.asarray(pre, dtype=np.float32), np.asarray(post, dtype=np.float32)
            if pre.ndim != 2 or pre.shape != post.shape:
                raise ValueError(
                    f"pair {k}: need two H x W frames of one shape, got {pre.shape} and {post.shape}"
                )
            if pre.shape[0] < crop[0] or pre.shape[1] < crop[1]:
                raise ValueError(f"pair {k}: frames of {pre.shape} are smaller than the crop {tuple(crop)}")
            if not (np.isfinite(pre).all() and np.isfinite(post).all()):
                raise ValueError(f"pair {k}: non-finite RF values")
            self.pairs.append((pre, post))
        self.crop = (int(crop[0]), int(crop[1]))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pre, post = self.pairs[index]
        h, w = self.crop
        top, left = crop_origin(self.seed, self.epoch, index, (pre.shape[0] - h, pre.shape[1] - w))
        return rf_pair_tensors(pre[top : top + h, left : left + w], post[top : top + h, left : left + w])


def frames_fingerprint(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> str:
    """SHA-256 (hex) of the pairs' shapes and float32 bytes, in order: the data part of the cache key."""
    digest = hashlib.sha256()
    for pre, post in pairs:
        for frame in (pre, post):
            frame = np.ascontiguousarray(frame, dtype=np.float32)
            digest.update(repr(frame.shape).encode())
            digest.update(frame.tobytes())
    return digest.hexdigest()


@dataclass(kw_only=True)
class AdaptationRecipe(TrainingSchedule):
    """Settings of an unsupervised fine-tuning run on real pairs: a short low-lr schedule
    (:class:`TrainingSchedule`); ``loss`` should repeat the network's own training settings.
    No validation: real data has no ground truth to validate against."""

    steps: int = 200
    lr: float = 1e-4
    warmup_steps: int = 10


def ensure_adapted(
    root: str | os.PathLike,
    recipe: AdaptationRecipe,
    model_dir: str | os.PathLike,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> Path:
    """Folder (kind ``"adapted"``) with ``model.pt`` and ``metrics.csv`` of the network in ``model_dir``
    fine-tuned on ``pairs``; trained once, then read from the cache."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{model_dir / MODEL_FILE}: no trained model to adapt")
    params = {
        "recipe": recipe.to_dict(),
        "source": f"{model_dir.parent.name}/{model_dir.name}",
        "frames": frames_fingerprint(pairs),
        "n_pairs": len(pairs),
    }
    dataset = RealPairCrops(pairs, recipe.crop, seed=recipe.seed)  # bad frames fail before any training

    run_dir = artifact_dir(root, "adapted", params)
    run_dir = run_dir.with_name(run_dir.name + ".run")  # checkpoints: an interrupted run resumes

    def build(out: Path) -> None:
        model = load_model(model_dir / MODEL_FILE)
        loss_fn = unsupervised_loss_fn(recipe.loss)
        fit(model, dataset, loss_fn, recipe.fit_config(profile), run_dir, device=device)
        save_model(out / MODEL_FILE, model.to("cpu"))
        copy_run_logs(run_dir, out)

    path = cached(root, "adapted", params, build)
    shutil.rmtree(run_dir, ignore_errors=True)
    return path


__all__ = ["AdaptationRecipe", "RealPairCrops", "ensure_adapted", "frames_fingerprint"]
