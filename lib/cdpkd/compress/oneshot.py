"""One-shot pruning of a (trained) PWC network to a FLOP or parameter budget (e.g. teacher -> DP-Net)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cdpkd.models import PWCConfig

from .budget import allocate_by_importance, budget_keep_counts, check_fraction, measure_cost_model
from .channels import ChannelMap
from .importance import check_criterion, importance_scores, select_counts
from .surgery import hard_prune

ALLOCATIONS = ("proportional", "importance")


@dataclass
class PruneResult:
    """What :func:`prune_to_budget` made.

    Attributes:
        model, config: the pruned network and its configuration.
        masks: the 0/1 masks applied to the original network (name -> tensor).
        kind: "flops" or "params"; target: the requested fraction.
        cost_before, cost_after: measured cost of the original and pruned network
            (FLOPs as ``cdpkd.complexity.count_flops`` at ``height`` x ``width``, or
            ``count_parameters``).
        fraction: cost_after / cost_before (<= target).
    """

    model: nn.Module
    config: PWCConfig
    masks: dict[str, torch.Tensor]
    kind: str
    target: float
    cost_before: int
    cost_after: int
    fraction: float


def prune_to_budget(
    model: nn.Module,
    *,
    flops_fraction: float | None = None,
    params_fraction: float | None = None,
    criterion: str = "l1",
    height: int = 256,
    width: int = 128,
    allocation: str = "proportional",
    min_channels: int = 4,
    exponent: float = 1.0,
    multiple_of: int = 1,
    prune_correlation_inputs: bool | None = None,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    loss_fn: Callable[..., Any] | None = None,
) -> PruneResult:
    """Prune ``model`` once so its FLOPs (or parameters) are at most the given fraction; returns a :class:`PruneResult`.

    Args:
        model: a :class:`~cdpkd.models.PWCNet` (not modified).
        flops_fraction / params_fraction: exactly one, in (0, 1]: the cost kept.
            FLOPs are those of :func:`cdpkd.complexity.count_flops` at
            ``height`` x ``width``.
        criterion: "l1", "l2" or "taylor" (the latter needs ``batches`` of
            (pre, post) frames and ``loss_fn(pre, post, outputs)``).
        allocation: "proportional" (per-layer keep counts from the cost alone,
            then the most important channels of each layer) or "importance"
            (greedy, least importance per unit of cost first); see
            :mod:`cdpkd.compress.budget`.
        min_channels: every layer keeps at least this many channels (or all it has).
        exponent, multiple_of: see :func:`~cdpkd.compress.budget_keep_counts`.
        prune_correlation_inputs: see :class:`~cdpkd.compress.ChannelMap`.
    """
    if (flops_fraction is None) == (params_fraction is None):
        raise ValueError("give exactly one of flops_fraction and params_fraction")
    kind = "flops" if flops_fraction is not None else "params"
    target = check_fraction(flops_fraction if kind == "flops" else params_fraction, f"{kind}_fraction")
    check_criterion(criterion)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; expected one of {ALLOCATIONS}")
    cmap = ChannelMap.from_model(model, prune_correlation_inputs=prune_correlation_inputs)
    cost = measure_cost_model(model, kind, height=height, width=width, channel_map=cmap)
    scores = importance_scores(model, criterion, channel_map=cmap, batches=batches, loss_fn=loss_fn)
    if allocation == "proportional":
        keep = budget_keep_counts(
            cost, target, min_channels=min_channels, exponent=exponent, multiple_of=multiple_of
        )
        masks = select_counts(scores, keep)
    else:
        masks = allocate_by_importance(cost, scores, target, min_channels=min_channels, exponent=exponent)
    new_model, new_config = hard_prune(model, masks, channel_map=cmap)

    before = cost.total()  # at full width the cost model equals the measured cost
    # measured again on the pruned network (FlopCounterMode, the forward of count_flops; or count_parameters)
    after = measure_cost_model(new_model, kind, height=height, width=width).total()
    if after > target * before:  # the cost model is exact; this would be a bug, never a silent miss
        raise RuntimeError(
            f"pruned network has {after / before:.4f} of the {kind}, above the target {target:.4f} "
            f"(cost model predicted {cost.total(dict((n, int((m != 0).sum())) for n, m in masks.items()))})"
        )
    return PruneResult(new_model, new_config, masks, kind, target, before, after, after / before)
