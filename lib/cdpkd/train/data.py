"""Data order for :func:`cdpkd.train.fit`: which items each step sees, as a pure function of the step.

Exact resume needs the data stream to continue where it stopped. Rather than
snapshotting a sampler's internal state, the batch of step ``s`` is a pure
function of ``(seed, s, rank)``: a :class:`BatchPlan` maps steps to item
indices, and epochs are ``s // plan.steps_per_epoch``. Resuming at step ``s``
just starts the plan there. A curriculum (issue 5) is another BatchPlan that
restricts the indices to the pairs its pacing function allows at ``s``.

Per-item randomness (random crops, augmentation) is made independent of worker
count, prefetching, resume and the number of DDP ranks as well: every item is
fetched with the torch, NumPy and Python RNGs seeded from ``(seed, step, index)``
and the caller's RNG states restored afterwards. So a 2-rank run with batch B
per rank sees exactly the samples of a 1-process run with batch 2B.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


@runtime_checkable
class BatchPlan(Protocol):
    """Maps an optimizer step to the dataset indices this process uses in it.

    ``indices(step)`` must be deterministic (same step -> same indices) and
    return the same number of indices on every rank. ``steps_per_epoch`` sets
    the epoch counter passed to ``dataset.set_epoch`` (when the dataset has one).
    """

    steps_per_epoch: int

    def indices(self, step: int) -> Sequence[int]: ...


class ShuffledBatches:
    """Default plan: reshuffle every epoch, shard over ranks, fixed batch size.

    Epoch ``e`` uses ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)``
    at epoch ``e`` (also with one rank, so a 1-GPU and an N-GPU run split the same
    permutation); its per-rank order is cut into ``batch_size`` chunks and a
    trailing partial batch is dropped (constant batch shapes).

    Args:
        n_items: dataset length.
        batch_size: items per step on this rank.
        seed: shuffling seed.
        rank, world_size: this process's shard.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        per_rank = n_items // world_size
        if per_rank < batch_size:
            raise ValueError(
                f"dataset of {n_items} items is too small for batch_size={batch_size} on "
                f"{world_size} process(es): each rank gets {per_rank} items per epoch"
            )
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = per_rank // batch_size
        self._cached: tuple[int, list[int]] | None = None

    def epoch_order(self, epoch: int) -> list[int]:
        """This rank's item order in ``epoch`` (cached: consecutive steps share it)."""
        if self._cached is None or self._cached[0] != epoch:
            sampler = DistributedSampler(
                range(self.n_items),  # only its length is used
                num_replicas=self.world_size,
                rank=self.rank,
                shuffle=True,
                seed=self.seed,
                drop_last=True,
            )
            sampler.set_epoch(epoch)
            self._cached = (epoch, list(sampler))
        return self._cached[1]

    def indices(self, step: int) -> list[int]:
        epoch, b = divmod(step, self.steps_per_epoch)
        return self.epoch_order(epoch)[b * self.batch_size : (b + 1) * self.batch_size]


def item_seed(seed: int, step: int, index: int) -> int:
    """A well-mixed 63-bit seed for dataset item ``index`` drawn in ``step``."""
    return int(np.random.SeedSequence([seed, step, index]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed torch (CPU), NumPy's and Python's global RNGs; restore the previous states on exit.

    Only the CPU generator is touched: reseeding CUDA here would disturb the
    training step's dropout on the GPU.
    """
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()  # noqa: NPY002 - datasets may use the legacy global RNG
    py_state = random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


class _StepItems(Dataset):
    """Wraps the user's dataset: keys are ``(epoch, index, seed)`` instead of plain indices.

    Lives in each worker process too, so ``set_epoch`` reaches the worker's copy
    of the dataset without recreating workers every epoch.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        epoch, index, seed = key
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch
        with seeded_rngs(seed):
            return self.dataset[index]


class _StepBatches:
    """Batch sampler over steps ``start .. stop-1``: yields lists of ``(epoch, index, seed)`` keys."""

    def __init__(self, plan: BatchPlan, start: int, stop: int, seed: int) -> None:
        self.plan, self.start, self.stop, self.seed = plan, start, stop, seed

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start, self.stop):
            epoch = step // self.plan.steps_per_epoch
            indices = self.plan.indices(step)
            if len(indices) == 0:
                raise ValueError(f"batch plan {type(self.plan).__name__} returned no indices for step {step}")
            yield [(epoch, int(i), item_seed(self.seed, step, int(i))) for i in indices]


def step_loader(
    dataset: Dataset,
    plan: BatchPlan,
    start: int,
    stop: int,
    *,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding exactly the batches of steps ``start .. stop-1``, in order."""
    return DataLoader(
        _StepItems(dataset),
        batch_sampler=_StepBatches(plan, start, stop, seed),
        num_workers=num_workers,
        pin_memory=pin_memory,
        # own generator: creating the iterator must not consume the global torch RNG,
        # or a resumed run would see a different dropout stream than an uninterrupted one
        generator=torch.Generator().manual_seed(seed),
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict / list / tuple batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
