"""A torch ``Dataset`` over a simulated HDF5 dataset, with seeded random crops (and, optionally,
release pairs: compression pairs played backwards; and rigid axial offsets between the pre and
post crops)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset import open_dataset
from .release import UNKNOWN_LABEL, invert_displacement, released_labels


def crop_origin(seed: int, epoch: int, index: int, room: tuple[int, int]) -> tuple[int, int]:
    """Random (top, left) crop origin in ``0 .. room`` (inclusive) from ``(seed, epoch, index)`` alone,
    so crops do not depend on worker count or order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))
    return int(rng.integers(room[0] + 1)), int(rng.integers(room[1] + 1))


def is_released(seed: int, epoch: int, index: int, fraction: float) -> bool:
    """Whether item ``index`` of ``epoch`` is served as a release pair (a seeded draw, like the crops)."""
    if fraction <= 0.0:
        return False
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, index, 1]))  # 1: not the crop stream
    return bool(rng.uniform() < fraction)


def axial_shift(seed: int, epoch: int, index: int, max_offset: int) -> int:
    """Integer axial offset in ``-max_offset .. max_offset`` of item ``index``'s post crop (a seeded draw)."""
    if max_offset <= 0:
        return 0
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, index, 2]))  # 2: its own stream
    return int(rng.integers(-max_offset, max_offset + 1))


def rf_pair_tensors(pre: np.ndarray, post: np.ndarray, normalize: bool = True) -> dict[str, torch.Tensor]:
    """``{"pre", "post"}`` as float32 (1, H, W) tensors, both divided by ``pre``'s RF std when ``normalize``.

    Displacement estimation is scale-free; dividing keeps network inputs O(1)
    whatever the scanner's or simulator's gain (a flat crop is left unscaled).
    """
    if normalize:
        scale = float(pre.std()) or 1.0
        pre, post = pre / scale, post / scale
    return {
        "pre": torch.from_numpy(np.ascontiguousarray(pre[None], dtype=np.float32)),
        "post": torch.from_numpy(np.ascontiguousarray(post[None], dtype=np.float32)),
    }


class RFPairDataset(Dataset):
    """Serves pre/post RF, ground-truth displacement and ROI masks.

    Each item is a dict of tensors (H', W' = crop size or the full frame):

    * ``pre``, ``post``: float32 (1, H', W'), divided by the pre crop's RF std
      when ``normalize`` (displacement estimation is scale-free; this keeps
      network inputs O(1) whatever the simulator's gain);
    * ``displacement``: float32 (2, H', W'), axial samples / lateral lines;
    * ``inclusion_mask``, ``background_mask``: bool (1, H', W') (edge bands excluded);
    * ``applied_strain``: float32 scalar; ``index``: int64; ``offset``: int64 (2,) crop origin;
    * ``released``: bool scalar, True for a release pair (``release_fraction``);
    * ``axial_shift``: int64 scalar, the post crop's axial offset (``axial_offset``).

    Crops are drawn from ``seed``, the epoch (:meth:`set_epoch`) and the index,
    so they are reproducible and independent of worker count or order.

    Args:
        path: HDF5 file written by :func:`cdpkd.sim.dataset.write_dataset`.
        crop: (height, width) of crops, or ``None`` for whole frames.
        random_crop: random crop positions; else centred crops.
        seed: seed of the crop positions.
        normalize: scale RF by the pre crop's standard deviation.
        indices: serve only these pairs of the file (e.g. a train/validation
            split); item ``i`` is pair ``indices[i]``. Default: every pair.
        release_fraction: serve about this fraction of the items as release pairs
            (:mod:`cdpkd.sim.release`: the crop's frames swapped, its displacement inverted,
            its masks moved to the new pre frame; a seeded draw per seed, epoch and index), so
            a network sees the tissue relax as well as compress (freehand scanning does both;
            the simulator only compresses). ``released`` in each item says which.
        axial_offset: take each item's post crop up to this many samples above or below its
            pre crop (a seeded integer draw per seed, epoch and index; ``axial_shift`` in the
            item), and subtract the offset from the axial displacement. The simulator holds the
            bottom of its phantoms still, so every simulated compression moves tissue by a
            positive axial displacement; a hand-held probe holds the top still and gives
            negative ones (``studies/real_data_offsets.py``). A rigid offset changes neither
            strain nor speckle, only where the match is, so a network trained with it sees both
            signs. Needs crops (the offset room is taken from the frame).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        crop: tuple[int, int] | None = None,
        *,
        random_crop: bool = True,
        seed: int = 0,
        normalize: bool = True,
        indices: Sequence[int] | None = None,
        release_fraction: float = 0.0,
        axial_offset: int = 0,
    ) -> None:
        if not 0.0 <= release_fraction <= 1.0:
            raise ValueError(f"release_fraction must be in [0, 1], got {release_fraction}")
        self.release_fraction = float(release_fraction)
        if int(axial_offset) != axial_offset or axial_offset < 0:
            raise ValueError(f"axial_offset must be a non-negative integer (samples), got {axial_offset!r}")
        self.axial_offset = int(axial_offset)
        self.path = Path(path)
        with open_dataset(self.path) as f:
            n_file, self.height, self.width = f["pre"].shape
        self.indices = list(range(n_file)) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < n_file]
        if bad or not self.indices:
            raise ValueError(f"indices must be a non-empty subset of 0..{n_file - 1} for {self.path}, got bad {bad[:5]}")
        self.n_pairs = len(self.indices)
        if crop is not None:
            crop = (int(crop[0]), int(crop[1]))
            if not (0 < crop[0] <= self.height - 2 * self.axial_offset and 0 < crop[1] <= self.width):
                raise ValueError(f"crop {crop} with axial offsets up to {self.axial_offset} does not fit "
                                 f"frames of {self.height} x {self.width} in {self.path}")
        elif self.axial_offset:
            raise ValueError("axial_offset needs crops (the offset room is taken from the frame)")
        self.crop = crop
        self.random_crop = random_crop
        self.seed = int(seed)
        self.normalize = normalize
        self.epoch = 0
        self._file = None
        self._pid = None

    def set_epoch(self, epoch: int) -> None:
        """Draw new crop positions for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_pairs

    def _handle(self):
        # h5py handles must not cross a fork: reopen in each DataLoader worker
        if self._file is None or self._pid != os.getpid():
            self._file = open_dataset(self.path)
            self._pid = os.getpid()
        return self._file

    def _offset(self, index: int) -> tuple[int, int]:
        if self.crop is None:
            return 0, 0
        margin = self.axial_offset  # rows kept free above and below for the post crop's offset
        room_h, room_w = self.height - self.crop[0] - 2 * margin, self.width - self.crop[1]
        if not self.random_crop:
            return margin + room_h // 2, room_w // 2
        top, left = crop_origin(self.seed, self.epoch, index, (room_h, room_w))
        return margin + top, left

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.n_pairs:
            raise IndexError(f"index {index} out of range for {self.n_pairs} pairs in {self.path}")
        f = self._handle()
        index = self.indices[index]
        top, left = self._offset(index)
        h, w = self.crop or (self.height, self.width)
        rows, cols = slice(top, top + h), slice(left, left + w)
        labels = f["labels"][index, rows, cols]
        displacement = f["displacement"][index, :, rows, cols]
        released = is_released(self.seed, self.epoch, index, self.release_fraction)
        first, second = ("post", "pre") if released else ("pre", "post")
        shift = axial_shift(self.seed, self.epoch, index, self.axial_offset)
        pre = f[first][index, rows, cols]
        post = f[second][index, slice(top + shift, top + shift + h), cols]
        if released:  # the crop's ground truth is extrapolated where the inverse leaves the crop
            displacement = invert_displacement(displacement, tol=1e-3)
            labels = released_labels(labels, displacement)
        if shift:  # post crop `shift` rows lower: the same tissue sits `shift` samples higher in it
            displacement = displacement.copy()
            displacement[0] -= shift
        return {
            **rf_pair_tensors(pre, post, self.normalize),
            "displacement": torch.from_numpy(displacement),
            "inclusion_mask": torch.from_numpy((labels > 0) & (labels < UNKNOWN_LABEL))[None],
            "background_mask": torch.from_numpy(labels == 0)[None],
            "released": torch.tensor(released),
            "axial_shift": torch.tensor(shift, dtype=torch.int64),
            "applied_strain": torch.tensor(float(f["applied_strain"][index]), dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.int64),
            "offset": torch.tensor([top, left], dtype=torch.int64),
        }

    def __getstate__(self) -> dict:
        # an open h5py handle cannot be pickled into DataLoader workers
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state
