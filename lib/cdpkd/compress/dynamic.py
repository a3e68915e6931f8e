"""Dynamic (soft) channel pruning during training toward a joint FLOP / parameter budget.

:class:`DynamicPruning` is a training hook for :func:`cdpkd.train.fit`. It
attaches :class:`~cdpkd.compress.ChannelMasks` to the model and, at update
steps, recomputes 0/1 masks:

1. the ramp progress p in [0, 1] follows a :class:`~cdpkd.train.curriculum.Schedule`
   (cubic by default: Zhu & Gupta 2017, ``p = 1 - (1 - (t - t0) / (t1 - t0))^3``,
   held for ``every`` steps);
2. the kept cost fractions are ``f = 1 - p (1 - target)`` for the FLOPs and the
   parameters (a ``None`` target stays unconstrained);
3. per-layer keep counts come from :func:`~cdpkd.compress.joint_keep_counts`
   (exact cost models measured once on the dense network);
4. which channels of a layer are kept is the importance criterion's choice:
   filter norms of the current weights ("l1"/"l2"), or the Taylor scores the
   masks accumulated since the previous update ("taylor"; the first update,
   with nothing accumulated yet, falls back to l1).

Masked channels stay in the model and in the optimizer and are scored at
every update like the others, so a channel masked early can come back later
(soft pruning). At the end of the ramp (p = 1) :meth:`DynamicPruning.finalize`
removes the masked channels (:func:`~cdpkd.compress.hard_prune`) and returns
the smaller dense network with its config.

Under DDP the l1/l2 masks agree on every rank (the weights do); Taylor scores
are averaged over ranks before selection so that every rank keeps the same
channels.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cdpkd.models import PWCConfig
from cdpkd.train.curriculum.schedules import Schedule

from .budget import check_fraction, joint_keep_counts, measure_cost_model
from .channels import ChannelMap
from .importance import check_criterion, filter_norm_scores, select_counts
from .masks import ChannelMasks
from .surgery import hard_prune

#: Ramp shapes allowed for the pruning progress (a constant schedule would never prune).
RAMP_KINDS = ("linear", "cubic", "cosine")

# progress values within this distance of 1 count as the end of the ramp (float rounding of the schedule)
_DONE = 1.0 - 1e-12


def _check_step(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


class DynamicPruning:
    """Training hook: soft channel masks ramped toward a FLOP and/or parameter budget.

    Args:
        model: a :class:`~cdpkd.models.PWCNet`; the mask hooks are attached at once
            (build the hook before or after moving the model to its device: the
            masks follow the model at ``on_fit_start``).
        flops_fraction: FLOPs kept at the end of the ramp, in (0, 1] of the dense
            network's FLOPs (``count_flops`` at ``height`` x ``width``); None = unconstrained.
        params_fraction: parameters kept at the end, in (0, 1]; None = unconstrained.
            At least one of the two fractions is required.
        start_step, end_step: 0-based optimizer steps where the ramp starts (progress 0)
            and ends (progress 1); ``end_step >= start_step``.
        every: masks are recomputed every this many steps from ``start_step`` on
            and at the first step >= ``end_step``; after that they stay fixed
            (the rest of the run fine-tunes the pruned network).
        kind: ramp shape, "cubic" (Zhu & Gupta), "linear" or "cosine".
        criterion: channel importance, "l1", "l2" or "taylor".
        height, width: input size (pixels) the FLOPs refer to.
        min_channels, exponent, multiple_of: see :func:`~cdpkd.compress.budget_keep_counts`.

    Attributes:
        masks: the :class:`ChannelMasks` acting in the model's forward.
        flops_model, params_model: exact cost models of the dense network.
        schedule: the progress :class:`Schedule` (logged as ``prune_progress``).
        progress: ramp progress of the masks in force (0 before the first update).
        last_update: step of the last mask update (None before the first).

    Raises ``ValueError`` on bad settings, or if the final budget is out of
    reach with every layer at ``min_channels``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        flops_fraction: float | None = None,
        params_fraction: float | None = None,
        start_step: int = 0,
        end_step: int,
        every: int = 10,
        kind: str = "cubic",
        criterion: str = "l1",
        height: int = 256,
        width: int = 64,
        min_channels: int = 4,
        exponent: float = 1.0,
        multiple_of: int = 1,
    ) -> None:
        if flops_fraction is None and params_fraction is None:
            raise ValueError("DynamicPruning needs flops_fraction, params_fraction or both (got neither)")
        self.flops_fraction = (
            None if flops_fraction is None else check_fraction(flops_fraction, "flops_fraction")
        )
        self.params_fraction = (
            None if params_fraction is None else check_fraction(params_fraction, "params_fraction")
        )
        self.start_step = _check_step(start_step, "start_step")
        self.end_step = _check_step(end_step, "end_step")
        if self.end_step < self.start_step:
            raise ValueError(f"end_step ({self.end_step}) must be >= start_step ({self.start_step})")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer (steps between mask updates), got {every!r}")
        self.every = int(every)
        if kind not in RAMP_KINDS:
            raise ValueError(f"unknown ramp kind {kind!r}; expected one of {RAMP_KINDS}")
        self.criterion = check_criterion(criterion)
        self.min_channels = min_channels
        self.exponent = exponent
        self.multiple_of = multiple_of
        self.schedule = Schedule(
            kind=kind,
            start_value=0.0,
            end_value=1.0,
            start_step=self.start_step,
            end_step=self.end_step,
            every=self.every,
            name="prune_progress",
            domain="any",
        )

        self.model = model
        self.channel_map = ChannelMap.from_model(model)
        # cost models of the dense network, measured before any mask is attached
        self.flops_model = measure_cost_model(
            model, "flops", height=height, width=width, channel_map=self.channel_map
        )
        self.params_model = measure_cost_model(model, "params", channel_map=self.channel_map)
        self._full_flops = self.flops_model.total()
        self._full_params = self.params_model.total()
        self._total_channels = sum(self.channel_map.widths().values())
        # fail now, not at end_step, if the final budget is out of reach (also validates the options)
        self._keep_at(1.0)

        self.masks = ChannelMasks(model, channel_map=self.channel_map, track_taylor=criterion == "taylor")
        self._device = next(model.parameters()).device
        self.progress = 0.0
        self.last_update: int | None = None
        self._loaded = False

    # ------------------------------------------------------------------ budget
    def targets_at(self, progress: float) -> tuple[float | None, float | None]:
        """Kept (FLOPs, params) fractions at ramp ``progress`` in [0, 1]: 1 - p (1 - target), None if unconstrained."""

        def ramp(target: float | None) -> float | None:
            # min(1, ...): never above the dense cost; max(target, ...): no float undershoot at p = 1
            return None if target is None else min(1.0, max(target, 1.0 - progress * (1.0 - target)))

        return ramp(self.flops_fraction), ramp(self.params_fraction)

    def _keep_at(self, progress: float) -> dict[str, int]:
        f_flops, f_params = self.targets_at(progress)
        return joint_keep_counts(
            self.flops_model,
            self.params_model,
            flops_fraction=f_flops,
            params_fraction=f_params,
            min_channels=self.min_channels,
            exponent=self.exponent,
            multiple_of=self.multiple_of,
        )

    def is_update_step(self, step: int) -> bool:
        """Whether the masks are recomputed before update ``step``."""
        if step == self.start_step or step == self.end_step:
            return True
        return self.start_step < step < self.end_step and (step - self.start_step) % self.every == 0

    def due_update(self, step: int) -> int | None:
        """The last update step <= ``step`` (None before ``start_step``): whose masks are in force at ``step``."""
        if step < self.start_step:
            return None
        if step >= self.end_step:
            return self.end_step
        return self.start_step + (step - self.start_step) // self.every * self.every

    # ------------------------------------------------------------------ importance
    def _scores(self) -> dict[str, torch.Tensor]:
        if self.criterion == "taylor":
            try:
                scores = self.masks.taylor_scores()
            except ValueError:  # nothing accumulated yet (first update, or no backward since): use l1
                scores = None
            if _any_rank(scores is None):
                return filter_norm_scores(self.model, self.channel_map, p=1)
            return _mean_over_ranks(scores)
        return filter_norm_scores(self.model, self.channel_map, p=1 if self.criterion == "l1" else 2)

    def update(self, step: int) -> dict[str, torch.Tensor]:
        """Recompute the masks for the progress at ``step``; returns them (name -> 0/1 tensor)."""
        step = _check_step(step, "step")
        progress = float(self.schedule(step))
        keep = self._keep_at(progress)
        masks = select_counts(self._scores(), keep)
        self.masks.set(masks)
        if self.criterion == "taylor":
            self.masks.reset_taylor()  # the next update scores the weights trained under these masks
        self.progress = progress
        self.last_update = step
        self._sync_taylor()
        return masks

    def _sync_taylor(self) -> None:
        # after the last update nothing reads the Taylor scores: stop paying for their backward hooks
        self.masks.track_taylor = self.criterion == "taylor" and self.progress < _DONE

    # ------------------------------------------------------------------ hook protocol
    def on_fit_start(self, step: int, model: nn.Module, optimizer: Any = None) -> None:
        """Apply the masks due at ``step`` (resumed runs: keep the loaded masks)."""
        if model is not self.model and getattr(model, "_orig_mod", None) is not self.model:
            raise ValueError(
                "DynamicPruning.on_fit_start: fit got a different model than the hook was built for"
            )
        self._follow_device()
        loaded, self._loaded = self._loaded, False
        due = self.due_update(step)
        if loaded or due is None or self.last_update == due:
            self._sync_taylor()
            return  # loaded from a checkpoint, before the ramp, or already current
        self.update(step)

    def on_step_start(self, step: int, model: nn.Module, optimizer: Any = None) -> None:
        """At update steps, recompute the masks (before the batch of update ``step``)."""
        if self.is_update_step(step) and step != self.last_update:
            self.update(step)

    def on_step_end(self, step: int, model: nn.Module, logs: dict) -> None:
        """Log ``prune_progress``, ``prune_flops_fraction``, ``prune_params_fraction``, ``prune_masked_channels``."""
        logs["prune_progress"] = self.progress
        fractions = self.fractions()
        logs["prune_flops_fraction"] = fractions["flops"]
        logs["prune_params_fraction"] = fractions["params"]
        logs["prune_masked_channels"] = self._total_channels - sum(self.keep_counts().values())

    def state_dict(self) -> dict[str, Any]:
        """Plain (``weights_only``-loadable) state: the masks, Taylor sums, last update and settings."""
        return {
            "masks": self.masks.state_dict(),
            "progress": float(self.progress),
            "last_update": self.last_update,
            "settings": self._settings(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the loaded masks are kept by the next :meth:`on_fit_start`."""
        if not isinstance(state, Mapping) or "masks" not in state:
            raise ValueError(
                "DynamicPruning.load_state_dict: expected a mapping with 'masks' (from state_dict())"
            )
        saved = state.get("settings")
        if saved is not None and dict(saved) != self._settings():
            changed = sorted(
                k for k in set(saved) | set(self._settings()) if saved.get(k) != self._settings().get(k)
            )
            warnings.warn(
                f"DynamicPruning: loading a state saved with different settings ({', '.join(changed)}); "
                "the masks are restored and the ramp continues with the current settings",
                stacklevel=2,
            )
        self.masks.load_state_dict(state["masks"])
        self.progress = float(state.get("progress", 0.0))
        last = state.get("last_update")
        self.last_update = None if last is None else int(last)
        self._loaded = True

    def _settings(self) -> dict[str, Any]:
        return {
            "flops_fraction": self.flops_fraction,
            "params_fraction": self.params_fraction,
            "start_step": self.start_step,
            "end_step": self.end_step,
            "every": self.every,
            "kind": self.schedule.kind,
            "criterion": self.criterion,
            "height": self.flops_model.height,
            "width": self.flops_model.width,
            "min_channels": self.min_channels,
            "exponent": float(self.exponent),
            "multiple_of": self.multiple_of,
        }

    def _follow_device(self) -> None:
        # fit moves the model after the hook was built: rebuild the masks on the new device so the
        # hooks do not copy masks and Taylor sums between devices at every forward/backward
        device = next(self.model.parameters()).device
        if device == self._device:
            return
        state = self.masks.state_dict()
        self.masks.remove()
        self.masks = ChannelMasks(
            self.model, channel_map=self.channel_map, track_taylor=self.criterion == "taylor"
        )
        self.masks.load_state_dict(state)
        self._device = device

    # ------------------------------------------------------------------ results
    def keep_counts(self) -> dict[str, int]:
        """Kept (non-zero) channels per prunable conv under the current masks."""
        return self.masks.keep_counts()

    def fractions(self) -> dict[str, float]:
        """Exact FLOPs and parameters of the current masks' widths as fractions of the dense network's."""
        keep = self.keep_counts()
        return {
            "flops": self.flops_model.total(keep) / self._full_flops,
            "params": self.params_model.total(keep) / self._full_params,
        }

    def finalize(self, *, force: bool = False) -> tuple[nn.Module, PWCConfig]:
        """Hard-prune the model with the current masks: ``(smaller dense network, its config)``.

        The model itself is left unchanged (masks still attached; call :meth:`remove`
        to detach them). Raises ``ValueError`` before the end of the ramp
        (progress < 1) unless ``force``: the budget is not met yet.
        """
        if self.progress < _DONE and not force:
            raise ValueError(
                f"DynamicPruning.finalize: the pruning ramp is at progress {self.progress:.3f} < 1 "
                f"(it ends at step {self.end_step}; last update at step {self.last_update}); "
                "train up to end_step first, or pass force=True"
            )
        return hard_prune(self.model, self.masks)

    def remove(self) -> None:
        """Detach the mask hooks: the model computes the dense network again."""
        self.masks.remove()

    def __repr__(self) -> str:
        f = self.fractions()
        return (
            f"DynamicPruning(targets flops={self.flops_fraction}, params={self.params_fraction}; "
            f"progress {self.progress:.3f}, now flops {f['flops']:.3f}, params {f['params']:.3f}, "
            f"criterion={self.criterion!r})"
        )


# ---------------------------------------------------------------------- DDP helpers
def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _reduce_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo reduces CPU tensors
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def _any_rank(flag: bool) -> bool:
    if not _distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _mean_over_ranks(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # each rank saw its own shard: average the scores so every rank selects the same channels
    if not _distributed():
        return scores
    names = list(scores)
    flat = torch.cat([scores[n].flatten() for n in names]).to(_reduce_device(), torch.float64)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = (flat / dist.get_world_size()).cpu()
    out, offset = {}, 0
    for n in names:
        k = scores[n].numel()
        out[n] = flat[offset : offset + k]
        offset += k
    return out


__all__ = ["RAMP_KINDS", "DynamicPruning"]
