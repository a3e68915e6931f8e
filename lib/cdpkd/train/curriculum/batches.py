"""`CurriculumBatches`: a :class:`~cdpkd.train.data.BatchPlan` that draws from the easiest pairs first.

At step ``s`` the pool is the ``ceil(pacing(s) * n)`` easiest items (never fewer
than one global batch, ``batch_size * world_size``); ties in difficulty are
broken by a seeded permutation. The batch is a pure function of
``(scores, settings, seed, s)``, so a resumed run draws exactly what an
uninterrupted one would, without any sampler state in the checkpoint.

How a step's batch is drawn: the steps over which the pool size stays the same
form a segment starting at ``s0``. Within it, the pool is shuffled once per
pass (seeded by ``(seed, s0, pass)``) and cut into global batches; the last
batch of a pass is topped up from the start of the same permutation (no item
twice in a batch), so every available item is used at least once per pass --
from the step where everything is available on, this is plain epoch-style
shuffling over the whole dataset. Rank ``r`` takes slice ``r`` of the global
batch, so N ranks with batch ``B`` see the items of one process with ``N * B``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .pacing import _is_int, check_pacing, pacing


class CurriculumBatches:
    """Easy-to-hard batch plan for :func:`cdpkd.train.fit` (``plan=``).

    Also a hook: pass it in ``hooks=`` as well to log ``curriculum_fraction``
    (pool size / items) and ``curriculum_pool`` with the metrics.

    Args:
        scores: difficulty of each dataset item (higher = harder), e.g. from
            :func:`~cdpkd.train.curriculum.difficulty_scores`; item ``i`` of the
            dataset given to ``fit`` has difficulty ``scores[i]``.
        batch_size: items per step on this rank (``FitConfig.batch_size``).
        seed: seed of tie-breaking and of the draws (``FitConfig.seed``).
        total_steps: length of the run (``FitConfig.steps``).
        pacing: ``"linear"``, ``"root"`` or ``"geometric"`` (:func:`~cdpkd.train.curriculum.pacing`).
        start_fraction: fraction of the items available at step 0.
        end_step_fraction: all items are available from ``end_step_fraction * total_steps`` on.
        rank, world_size: this process's share of the global batch.

    Attributes:
        steps_per_epoch: ``n_items // (batch_size * world_size)``, as for
            :class:`~cdpkd.train.ShuffledBatches` (sets the dataset epoch, e.g. for crops).
        order: item indices from easiest to hardest.
    """

    def __init__(
        self,
        scores: Sequence[float] | np.ndarray,
        batch_size: int,
        seed: int,
        total_steps: int,
        pacing: str = "root",
        start_fraction: float = 0.2,
        end_step_fraction: float = 0.5,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"scores must be a non-empty 1-D array (one per item), got shape {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError(f"scores hold {int((~np.isfinite(s)).sum())} NaN/Inf entries")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not _is_int(world_size) or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if not _is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        check_pacing(pacing, total_steps, start_fraction, end_step_fraction)
        global_batch = batch_size * world_size
        if s.size < global_batch:
            raise ValueError(
                f"{s.size} items are too few for batch_size={batch_size} on {world_size} process(es) "
                f"(one step needs {global_batch} distinct items)"
            )
        self.scores = s
        self.n_items = int(s.size)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.total_steps = int(total_steps)
        self.pacing, self.start_fraction, self.end_step_fraction = (
            pacing,
            float(start_fraction),
            float(end_step_fraction),
        )
        self.global_batch = global_batch
        self.steps_per_epoch = self.n_items // global_batch
        tiebreak = np.random.default_rng(np.random.SeedSequence([self.seed, 0xC0])).permutation(self.n_items)
        self.order = np.lexsort((tiebreak, s))  # by score, then by the seeded tie-break
        self._cached: tuple[tuple[int, int], np.ndarray] | None = None

    def fraction(self, step: int) -> float:
        """Pacing fraction at ``step`` (before rounding to whole items and the batch-size floor)."""
        return pacing(self.pacing, step, self.total_steps, self.start_fraction, self.end_step_fraction)

    def pool_size(self, step: int) -> int:
        """Number of items available at ``step``: ``ceil(fraction * n)``, at least one global batch."""
        f = self.fraction(step)
        k = self.n_items if f >= 1.0 else math.ceil(f * self.n_items - 1e-9)
        return min(self.n_items, max(self.global_batch, k))

    def available(self, step: int) -> np.ndarray:
        """Indices of the items available at ``step``, easiest first."""
        return self.order[: self.pool_size(step)].copy()

    def _segment_start(self, step: int, size: int) -> int:
        """First step with the same pool size as ``step`` (pool size never decreases)."""
        lo, hi = 0, step
        while lo < hi:
            mid = (lo + hi) // 2
            if self.pool_size(mid) < size:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def global_indices(self, step: int) -> np.ndarray:
        """Items of all ranks at ``step`` (``batch_size * world_size``, distinct)."""
        if not _is_int(step) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        size = self.pool_size(step)
        start = self._segment_start(step, size)
        per_pass = math.ceil(size / self.global_batch)
        n_pass, b = divmod(step - start, per_pass)
        key = (start, n_pass)
        if self._cached is None or self._cached[0] != key:
            perm = np.random.default_rng(np.random.SeedSequence([self.seed, start, n_pass])).permutation(size)
            padded = np.concatenate([perm, perm[: per_pass * self.global_batch - size]])
            self._cached = (key, padded)
        positions = self._cached[1][b * self.global_batch : (b + 1) * self.global_batch]
        return self.order[positions]

    def indices(self, step: int) -> list[int]:
        """This rank's items at ``step`` (the BatchPlan method)."""
        g = self.global_indices(step)
        return [int(i) for i in g[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]]

    def on_step_end(self, step: int, model: Any, logs: dict) -> None:
        """Hook: log the share of items available in update ``step``."""
        size = self.pool_size(step)
        logs["curriculum_fraction"] = size / self.n_items
        logs["curriculum_pool"] = size

    def __repr__(self) -> str:
        return (
            f"CurriculumBatches(n_items={self.n_items}, batch_size={self.batch_size}, seed={self.seed}, "
            f"total_steps={self.total_steps}, pacing={self.pacing!r}, start_fraction={self.start_fraction}, "
            f"end_step_fraction={self.end_step_fraction}, rank={self.rank}, world_size={self.world_size})"
        )


__all__ = ["CurriculumBatches"]
