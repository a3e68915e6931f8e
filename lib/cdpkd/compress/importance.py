"""Channel importance (filter norm, first-order Taylor) and mask selection for a target ratio.

Scores are dicts conv name -> 1-D CPU float64 tensor over that conv's output
channels (higher = more important), for the prunable convs of a
:class:`~cdpkd.compress.ChannelMap`.

- ``"l1"`` / ``"l2"``: norm of each output filter (weights over input channels
  and kernel; the bias is left out), Li et al. ICLR 2017.
- ``"taylor"``: mean |sum_{h,w} activation x gradient| over samples
  (Molchanov et al. ICLR 2017), accumulated by
  :class:`~cdpkd.compress.ChannelMasks` hooks; :func:`taylor_scores` runs
  the batches for a one-shot score.

Filter norms of layers with different fan-in are not on one scale, so the
global selection normalises each layer's scores (by their mean, by default)
before ranking them together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .channels import ChannelMap

CRITERIA = ("l1", "l2", "taylor")
SCOPES = ("global", "per_layer")
NORMALIZATIONS = ("mean", "max", "none")


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown importance criterion {criterion!r}; expected one of {CRITERIA}")
    return criterion


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """``ValueError`` unless ``ratio`` is a real number in [0, 1) (the fraction of channels pruned)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"{what} must be a number in [0, 1) (fraction of channels pruned), got {ratio!r}")
    return float(ratio)


def _check_min_channels(min_channels: int) -> int:
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"min_channels must be an integer >= 1, got {min_channels!r}")
    return min_channels


def filter_norm_scores(
    model: nn.Module, channel_map: ChannelMap | None = None, p: int = 1
) -> dict[str, torch.Tensor]:
    """L``p`` norm of each output filter of every prunable conv (``p`` = 1 or 2)."""
    if p not in (1, 2):
        raise ValueError(f"filter norm order p must be 1 or 2, got {p!r}")
    cmap = channel_map if channel_map is not None else ChannelMap.from_model(model)
    modules = dict(model.named_modules())
    out = {}
    for name in cmap.prunable:
        w = modules[name].weight.detach().to("cpu", torch.float64)
        out[name] = w.flatten(1).norm(p=p, dim=1)
    return out


def _total_loss(value: Any) -> torch.Tensor:
    if isinstance(value, Mapping):
        value = value["total"]
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor or a mapping with a scalar 'total'")
    return value.reshape(())


def taylor_scores(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any]], Any],
    *,
    channel_map: ChannelMap | None = None,
) -> dict[str, torch.Tensor]:
    """One-shot Taylor scores of the dense network over ``batches`` of (pre, post) frames.

    ``loss_fn(pre, post, outputs)`` returns a scalar tensor or a mapping with
    "total" (e.g. :class:`cdpkd.losses.UnsupervisedLoss`). The gradients are
    taken with ``torch.autograd.grad`` with respect to the inputs only, so the
    model's parameters and their ``.grad`` are left untouched.
    """
    from .masks import ChannelMasks

    cmap = channel_map if channel_map is not None else ChannelMap.from_model(model)
    device = next(model.parameters()).device
    seen = 0
    with ChannelMasks(model, channel_map=cmap, track_taylor=True) as masks:
        for pre, post in batches:
            pre = pre.to(device).detach().requires_grad_(True)
            post = post.to(device)
            loss = _total_loss(loss_fn(pre, post, model(pre, post)))
            torch.autograd.grad(loss, [pre])
            seen += 1
        if seen == 0:
            raise ValueError("taylor_scores: batches is empty")
        return masks.taylor_scores()


def importance_scores(
    model: nn.Module,
    criterion: str = "l1",
    *,
    channel_map: ChannelMap | None = None,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    loss_fn: Callable[..., Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Scores by ``criterion`` ("l1", "l2" or "taylor"; taylor needs ``batches`` and ``loss_fn``)."""
    check_criterion(criterion)
    if criterion == "taylor":
        if batches is None or loss_fn is None:
            raise ValueError("criterion 'taylor' needs batches of (pre, post) frames and a loss_fn")
        return taylor_scores(model, batches, loss_fn, channel_map=channel_map)
    return filter_norm_scores(model, channel_map, p=1 if criterion == "l1" else 2)


def normalize_scores(scores: Mapping[str, torch.Tensor], how: str = "mean") -> dict[str, torch.Tensor]:
    """Each layer's scores divided by their mean or max ("none": unchanged); an all-zero layer stays zero."""
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {how!r}; expected one of {NORMALIZATIONS}")
    out = {}
    for name, s in scores.items():
        s = torch.as_tensor(s).detach().to("cpu", torch.float64)
        if how != "none":
            d = s.mean() if how == "mean" else s.max()
            s = s / d if float(d) > 0 else s
        out[name] = s
    return out


def _check_scores(scores: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty mapping conv name -> 1-D tensor")
    out = {}
    for name, s in scores.items():
        t = torch.as_tensor(s).detach().to("cpu", torch.float64)
        if t.dim() != 1 or t.numel() == 0:
            raise ValueError(f"scores[{name!r}] must be a non-empty 1-D tensor, got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"scores[{name!r}] contains NaN or Inf")
        out[name] = t
    return out


def select_counts(scores: Mapping[str, torch.Tensor], keep: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """0/1 masks keeping the ``keep[name]`` highest-scoring channels of each layer (ties: lower index kept).

    Layers of ``scores`` missing from ``keep`` are kept whole.
    """
    scores = _check_scores(scores)
    masks = {}
    for name, s in scores.items():
        n = s.numel()
        k = keep.get(name, n)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"keep[{name!r}] must be an integer in [1, {n}], got {k!r}")
        order = torch.argsort(-s, stable=True)  # descending, stable: ties keep the lower index
        m = torch.zeros(n)
        m[order[:k]] = 1.0
        masks[name] = m
    unknown = sorted(set(keep) - set(scores))
    if unknown:
        raise ValueError(f"keep names layers without scores: {unknown}")
    return masks


def select(
    scores: Mapping[str, torch.Tensor],
    ratio: float,
    *,
    scope: str = "global",
    min_channels: int = 1,
    normalize: str = "mean",
) -> dict[str, torch.Tensor]:
    """0/1 masks pruning the fraction ``ratio`` of channels with the lowest scores.

    Args:
        scores: name -> 1-D scores (see module docstring).
        ratio: fraction of channels to prune, in [0, 1).
        scope: "per_layer" prunes floor(ratio x n) channels of each layer;
            "global" ranks all channels together (after ``normalize``) and prunes
            floor(ratio x total) of them.
        min_channels: every layer keeps at least min(min_channels, its width)
            channels; this takes precedence over ``ratio`` (the pruned fraction
            may then fall short: read it off the returned masks).
        normalize: per-layer score normalisation for the global ranking
            ("mean", "max", "none"; ignored for "per_layer").

    Ties are broken deterministically (layer order, then channel index).
    """
    ratio = check_ratio(ratio)
    min_channels = _check_min_channels(min_channels)
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
    scores = _check_scores(scores)
    floors = {name: min(min_channels, s.numel()) for name, s in scores.items()}
    if scope == "per_layer":
        keep = {
            name: max(floors[name], s.numel() - int(math.floor(ratio * s.numel() + 1e-9)))
            for name, s in scores.items()
        }
        return select_counts(scores, keep)

    normed = normalize_scores(scores, normalize)
    names = list(normed)
    total = sum(s.numel() for s in normed.values())
    budget = int(math.floor(ratio * total + 1e-9))
    entries = sorted(
        (float(v), li, ci) for li, name in enumerate(names) for ci, v in enumerate(normed[name].tolist())
    )
    removable = {name: normed[name].numel() - floors[name] for name in names}
    masks = {name: torch.ones(normed[name].numel()) for name in names}
    pruned = 0
    for _, li, ci in entries:
        if pruned >= budget:
            break
        name = names[li]
        if removable[name] > 0:
            masks[name][ci] = 0.0
            removable[name] -= 1
            pruned += 1
    return masks
