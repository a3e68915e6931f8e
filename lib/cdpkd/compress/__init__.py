"""Channel pruning of the PWC-family networks: soft masks, importance, budgets, hard pruning.

Public API:

- ``ChannelMap(config)`` / ``ChannelMap.from_model(model)``: every conv and where its input
  channels come from (dense concatenations, heads, context, correlation inputs);
  ``prunable`` names, ``consumers(name)``, ``config_with(widths)``.
- ``ChannelMasks(model, track_taylor=False)``: soft masks by forward hooks (dynamic pruning):
  ``set``, ``reset``, ``prune(ratio, criterion, scope=..., min_channels=...)``,
  ``taylor_scores()``, ``keep_counts()``, ``state_dict``/``load_state_dict``, ``remove()``.
- Importance: ``filter_norm_scores(model, p=1|2)``, ``taylor_scores(model, batches, loss_fn)``,
  ``importance_scores(model, criterion)``, ``select(scores, ratio, scope="global"|"per_layer",
  min_channels=1)``, ``select_counts(scores, keep)``.
- Budgets: ``measure_cost_model(model, "flops"|"params", height=, width=)`` -> exact
  ``CostModel``; ``budget_keep_counts(cost_model, fraction)`` (proportional per-layer keep
  counts); ``joint_keep_counts(flops_model, params_model, flops_fraction=, params_fraction=)``
  (both budgets at once; either may be None); ``allocate_by_importance(cost_model, scores, fraction)``.
- ``hard_prune(model, masks) -> (new_model, new_config)``; ``pruned_config(channel_map, masks)``.
- ``prune_to_budget(model, flops_fraction=... | params_fraction=..., criterion="l1") -> PruneResult``.
- ``DynamicPruning(model, flops_fraction=, params_fraction=, start_step=, end_step=, every=,
  kind="cubic", criterion="l1"|"l2"|"taylor")``: training hook for ``cdpkd.train.fit``
  ramping soft masks to a joint FLOP/parameter budget (logs ``prune_*``);
  ``finalize() -> (model, config)``, ``fractions()``, ``keep_counts()``, ``remove()``.
"""

from .budget import (
    COST_KINDS,
    CostModel,
    allocate_by_importance,
    budget_keep_counts,
    check_fraction,
    joint_keep_counts,
    measure_cost_model,
)
from .channels import ChannelMap, ConvNode, Segment
from .dynamic import RAMP_KINDS, DynamicPruning
from .importance import (
    CRITERIA,
    NORMALIZATIONS,
    SCOPES,
    check_criterion,
    check_ratio,
    filter_norm_scores,
    importance_scores,
    normalize_scores,
    select,
    select_counts,
    taylor_scores,
)
from .masks import ChannelMasks, check_masks, masked_fraction
from .oneshot import ALLOCATIONS, PruneResult, prune_to_budget
from .surgery import hard_prune, kept_channels, pruned_config

__all__ = [
    "ALLOCATIONS",
    "COST_KINDS",
    "CRITERIA",
    "NORMALIZATIONS",
    "RAMP_KINDS",
    "SCOPES",
    "ChannelMap",
    "ChannelMasks",
    "ConvNode",
    "CostModel",
    "DynamicPruning",
    "PruneResult",
    "Segment",
    "allocate_by_importance",
    "budget_keep_counts",
    "check_criterion",
    "check_fraction",
    "check_masks",
    "check_ratio",
    "filter_norm_scores",
    "hard_prune",
    "importance_scores",
    "joint_keep_counts",
    "kept_channels",
    "masked_fraction",
    "measure_cost_model",
    "normalize_scores",
    "prune_to_budget",
    "pruned_config",
    "select",
    "select_counts",
    "taylor_scores",
]
