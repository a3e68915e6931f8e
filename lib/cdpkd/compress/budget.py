"""FLOP / parameter budgets: an exact cost model of the channel widths, and per-layer keep counts.

**Cost model.** A conv's FLOPs are 2 N C_in C_out k_h k_w H_out W_out
(``torch.utils.flop_counter``'s convention) and its parameters C_in C_out k_h k_w
(+ C_out bias): bilinear in (C_in, C_out). The cost volume's FLOPs are linear
in the channels C of the features it reads (the registered
``cdpkd::correlation`` formula 2 N C D H W, once per correlation call, GOCor
included). :func:`measure_cost_model` runs the model once under
``FlopCounterMode`` (the same forward as :func:`cdpkd.complexity.count_flops`)
and reads each conv's and each cost volume's FLOPs from its per-module
breakdown, giving integer coefficients per conv (per C_in C_out) and per
correlation-feeding conv (per channel), plus a constant remainder (anything
counted outside those modules). :meth:`CostModel.total` then predicts
``count_flops`` (or ``count_parameters``) of the network for any widths, exactly.

**Proportional allocation** (:func:`budget_keep_counts`). The cost of one
channel of layer l is its marginal cost Delta_l at full width (its filter row
plus its input columns in every consumer, plus its share of the cost volume).
Layer l loses the fraction p_l = min(p_max_l, alpha (Delta_l / max Delta)^gamma)
of its channels (p_max_l leaves ``min_channels``), and alpha is found by
bisection as the smallest value whose rounded widths meet the target; the
rounding slack is then given back one channel (or ``multiple_of``) at a time
to the most-pruned layer that still fits. With
``gamma = 1`` the channels that cost most are cut hardest: for FLOPs the
full-resolution estimator and context network, barely the coarse levels
(where the parameters are); ``gamma = 0`` is a uniform ratio. Which channels
of a layer go is then the importance criterion's choice.

**Joint FLOP and parameter budget** (:func:`joint_keep_counts`): the same
allocation with alpha the smallest value meeting *both* targets, weighted by
the FLOP marginals when that meets the parameter target; otherwise (the
parameters sit in the coarse levels, which FLOP weights spare) by a blend
(1 - lam) Df_l / F + lam Dp_l / P of the FLOP and parameter shares, with lam
found where both targets bind. The slack is given back while both hold.

**Importance-aware greedy allocation** (:func:`allocate_by_importance`):
channels are removed one at a time in increasing order of (normalised
importance) / (Delta_l / mean Delta)^gamma, i.e. least importance per unit of
cost first, until the exact cost meets the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from cdpkd.complexity import flop_counter
from cdpkd.models import count_parameters

from .channels import ChannelMap
from .importance import _check_min_channels, _check_scores, normalize_scores

COST_KINDS = ("flops", "params")


def check_fraction(fraction: float, what: str = "fraction") -> float:
    """``ValueError`` unless ``fraction`` is a number in (0, 1] (the cost kept)."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0.0 < float(fraction) <= 1.0
    ):
        raise ValueError(f"{what} must be a number in (0, 1] (fraction of the cost kept), got {fraction!r}")
    return float(fraction)


@dataclass
class CostModel:
    """Exact FLOPs or parameters of the network as a function of the prunable convs' widths.

    Attributes:
        kind: "flops" or "params".
        channel_map: the network's :class:`ChannelMap`.
        pair: per conv, cost per (input channel x output channel).
        out: per conv, cost per output channel (bias parameters; 0 for FLOPs).
        source: per conv whose output feeds cost volumes, cost per channel.
        constant: everything else (width-independent).
        height, width: the input size the FLOPs refer to (None for params).
    """

    kind: str
    channel_map: ChannelMap
    pair: dict[str, int]
    out: dict[str, int]
    source: dict[str, int] = field(default_factory=dict)
    constant: int = 0
    height: int | None = None
    width: int | None = None

    def _widths(self, widths: Mapping[str, int] | None) -> dict[str, int]:
        full = self.channel_map.widths()
        if widths:
            self.channel_map.check_names(widths, "widths")
            full.update({k: int(v) for k, v in widths.items()})
        return full

    def total(self, widths: Mapping[str, int] | None = None) -> int:
        """Cost with the prunable convs' out-channels set to ``widths`` (others full)."""
        w = self._widths(widths)
        cmap = self.channel_map
        cost = self.constant
        for name, node in cmap.nodes.items():
            c_out = w.get(name, node.out_channels)
            cost += self.pair[name] * cmap.in_width(name, w) * c_out + self.out[name] * c_out
        for name, coef in self.source.items():
            cost += coef * w.get(name, cmap.nodes[name].out_channels)
        return cost

    def marginal(self, widths: Mapping[str, int] | None = None) -> dict[str, int]:
        """Per prunable conv, the cost removed by dropping one of its output channels at ``widths``."""
        w = self._widths(widths)
        return {name: _marginal_one(self, name, w) for name in self.channel_map.prunable}


def measure_cost_model(
    model: nn.Module,
    kind: str = "flops",
    *,
    height: int = 256,
    width: int = 128,
    channel_map: ChannelMap | None = None,
) -> CostModel:
    """Cost model of ``model`` ("flops" per ``height`` x ``width`` pair at batch 1, or "params")."""
    if kind not in COST_KINDS:
        raise ValueError(f"unknown cost kind {kind!r}; expected one of {COST_KINDS}")
    cmap = channel_map if channel_map is not None else ChannelMap.from_model(model)
    cmap.validate(model)
    modules = dict(model.named_modules())
    pair, out = {}, {}
    if kind == "params":
        for name in cmap.nodes:
            m = modules[name]
            pair[name] = m.kernel_size[0] * m.kernel_size[1]
            out[name] = 1 if m.bias is not None else 0
        convs = sum(p * cmap.in_width(n, {}) * cmap.nodes[n].out_channels for n, p in pair.items())
        biases = sum(b * cmap.nodes[n].out_channels for n, b in out.items())
        return CostModel("params", cmap, pair, out, {}, count_parameters(model) - convs - biases)

    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    counter = flop_counter(model, height, width)  # the forward of count_flops, per-module counts
    counts = counter.get_flop_counts()
    total = int(counter.get_total_flops())
    prefix = type(model).__name__ + "."

    def flops_of(name: str) -> int:
        key = prefix + name
        if key not in counts:
            raise RuntimeError(
                f"FlopCounterMode reported no FLOPs for module {name!r} (keys like {sorted(counts)[:4]}); "
                "cannot build the FLOP cost model"
            )
        return int(sum(counts[key].values()))

    accounted = 0
    for name, node in cmap.nodes.items():
        f = flops_of(name)
        denom = cmap.in_width(name, {}) * node.out_channels
        if f % denom:
            raise RuntimeError(f"FLOPs of {name} ({f}) are not bilinear in its channels ({denom})")
        pair[name], out[name] = f // denom, 0
        accounted += f
    source: dict[str, int] = {}
    for name, node in cmap.nodes.items():
        for i in node.correlations:
            f = flops_of(f"cost_volumes.{i}")
            if f % node.out_channels:
                raise RuntimeError(
                    f"cost volume {i} FLOPs ({f}) are not linear in its {node.out_channels} channels"
                )
            source[name] = source.get(name, 0) + f // node.out_channels
            accounted += f
    return CostModel("flops", cmap, pair, out, source, total - accounted, height, width)


def _round_keep(n: int, keep: float, floor: int, multiple_of: int) -> int:
    k = (
        int(math.floor(keep / multiple_of + 0.5)) * multiple_of
        if multiple_of > 1
        else int(math.floor(keep + 0.5))
    )
    return max(floor, min(n, k))


def _check_allocation_options(min_channels: int, exponent: float, multiple_of: int) -> int:
    min_channels = _check_min_channels(min_channels)
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ValueError(f"multiple_of must be an integer >= 1, got {multiple_of!r}")
    if (
        isinstance(exponent, bool)
        or not isinstance(exponent, (int, float))
        or not math.isfinite(exponent)
        or exponent < 0
    ):
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    return min_channels


def budget_keep_counts(
    cost_model: CostModel,
    fraction: float,
    *,
    min_channels: int = 1,
    exponent: float = 1.0,
    multiple_of: int = 1,
) -> dict[str, int]:
    """Per prunable conv the number of channels to keep so the cost is at most ``fraction`` of the full cost.

    Proportional allocation (module docstring). ``multiple_of`` rounds the kept
    counts to multiples (e.g. 8 for tensor cores; a layer's full width and
    ``min_channels`` are always allowed). Raises ``ValueError`` if the target is
    out of reach even with every layer at ``min_channels``.
    """
    fraction = check_fraction(fraction)
    min_channels = _check_allocation_options(min_channels, exponent, multiple_of)
    full = cost_model.channel_map.widths()
    floors = {n: min(min_channels, c) for n, c in full.items()}
    bounds = [(cost_model, fraction)]
    _check_reach(bounds, floors, min_channels)
    keep, _ = _proportional_keep(cost_model.marginal(), bounds, full, floors, exponent, multiple_of)
    return keep


def joint_keep_counts(
    flops_model: CostModel,
    params_model: CostModel,
    *,
    flops_fraction: float | None,
    params_fraction: float | None,
    min_channels: int = 1,
    exponent: float = 1.0,
    multiple_of: int = 1,
) -> dict[str, int]:
    """Per prunable conv the channels to keep so FLOPs <= ``flops_fraction`` AND params <= ``params_fraction``.

    Args:
        flops_model, params_model: :func:`measure_cost_model` of the same network
            ("flops" and "params"; same channel map widths).
        flops_fraction, params_fraction: the fraction of the full FLOPs / parameters
            kept, in (0, 1]; ``None`` leaves that cost unconstrained (not both).
        min_channels, exponent, multiple_of: as :func:`budget_keep_counts`.

    With one fraction given this is :func:`budget_keep_counts` on that cost
    model. With both, the proportional allocation uses the combined marginal
    cost of a channel, w_l = (1 - lam) Df_l / F + lam Dp_l / P (its share of the
    full FLOPs F and of the full parameters P), and the common scale alpha is
    the smallest whose rounded widths meet both targets (every width is
    non-increasing in alpha, so both costs are: bisection is exact). lam = 0
    (FLOP marginals: channels are cut where the FLOPs are, the full-resolution
    estimator and context) is used whenever it meets the parameter target
    first; it then equals the FLOP-only allocation. Otherwise the parameters
    bind, and with FLOP weights alone the FLOPs can collapse far below their
    target (the parameters sit in the coarse levels, which FLOP weights spare;
    e.g. 2 % of the teacher's FLOPs for a 36 % parameter target), so lam = 1
    (parameter marginals) is tried and, if the FLOP target binds there, lam is
    bisected to where the binding target switches, i.e. both budgets are used.
    Of all allocations tried (all meet both targets) the one using most of the
    budgets (largest FLOPs / FLOP target + params / params target) is returned.
    The rounding slack is given back one channel (or ``multiple_of``) at a time
    while both targets hold. Both costs are checked with
    :meth:`CostModel.total` (exact integers). Raises ``ValueError`` if either
    target is out of reach with every layer at ``min_channels``.
    """
    if flops_fraction is None and params_fraction is None:
        raise ValueError("joint_keep_counts: give flops_fraction, params_fraction or both (got neither)")
    for cm, kind, what in ((flops_model, "flops", "flops_model"), (params_model, "params", "params_model")):
        if not isinstance(cm, CostModel) or cm.kind != kind:
            got = cm.kind if isinstance(cm, CostModel) else type(cm).__name__
            raise ValueError(
                f"{what} must be a {kind!r} CostModel (measure_cost_model(model, {kind!r})), got {got!r}"
            )
    if flops_model.channel_map.widths() != params_model.channel_map.widths():
        raise ValueError(
            "flops_model and params_model describe different networks (their prunable convs or widths differ); "
            "measure both on the same model with the same channel map"
        )
    opts = {"min_channels": min_channels, "exponent": exponent, "multiple_of": multiple_of}
    if params_fraction is None:
        return budget_keep_counts(flops_model, check_fraction(flops_fraction, "flops_fraction"), **opts)
    if flops_fraction is None:
        return budget_keep_counts(params_model, check_fraction(params_fraction, "params_fraction"), **opts)
    ff = check_fraction(flops_fraction, "flops_fraction")
    pf = check_fraction(params_fraction, "params_fraction")
    min_channels = _check_allocation_options(min_channels, exponent, multiple_of)
    full = flops_model.channel_map.widths()
    floors = {n: min(min_channels, c) for n, c in full.items()}
    bounds = [(flops_model, ff), (params_model, pf)]
    _check_reach(bounds, floors, min_channels)
    total_f, total_p = flops_model.total(), params_model.total()
    d_f, d_p = flops_model.marginal(), params_model.marginal()

    def solve(lam: float) -> tuple[dict[str, int], bool]:
        """Allocation at blend ``lam`` and whether the parameter target is the binding one."""
        marginal = {n: (1.0 - lam) * d_f[n] / total_f + lam * d_p[n] / total_p for n in full}
        keep, (alpha_f, alpha_p) = _proportional_keep(marginal, bounds, full, floors, exponent, multiple_of)
        return keep, alpha_p > alpha_f

    def used(keep: Mapping[str, int]) -> float:
        return flops_model.total(keep) / (ff * total_f) + params_model.total(keep) / (pf * total_p)

    keep, params_bind = solve(0.0)
    if not params_bind:
        return keep
    candidates = [keep]  # every allocation tried meets both targets: keep the one using most of them
    keep, params_bind_hi = solve(1.0)
    candidates.append(keep)
    if not params_bind_hi:
        lo, hi = 0.0, 1.0
        for _ in range(12):  # 12 halvings: lam to 2.4e-4
            mid = 0.5 * (lo + hi)
            keep, params_bind = solve(mid)
            candidates.append(keep)
            lo, hi = (mid, hi) if params_bind else (lo, mid)
    return max(candidates, key=used)  # ties: the first, i.e. the FLOP-weighted allocation


def _check_reach(bounds: list[tuple[CostModel, float]], floors: Mapping[str, int], min_channels: int) -> None:
    for cm, fraction in bounds:
        if cm.total(floors) > fraction * cm.total():
            reach = cm.total(floors) / cm.total()
            raise ValueError(
                f"cost target {fraction:.4f} of the full {cm.kind} is out of reach: with every layer at "
                f"min_channels={min_channels} the cost is still {reach:.4f} of the full cost"
            )


def _proportional_keep(
    marginal: Mapping[str, float],
    bounds: list[tuple[CostModel, float]],
    full: Mapping[str, int],
    floors: Mapping[str, int],
    exponent: float,
    multiple_of: int,
) -> tuple[dict[str, int], list[float]]:
    """Proportional allocation weighted by ``marginal`` meeting every (cost model, fraction) of ``bounds``.

    Returns the keep counts and, per bound, the smallest alpha meeting it alone
    (the largest of them is the one used: that bound binds).
    """
    top = max(marginal.values())
    weight = {n: (d / top) ** exponent if top > 0 and d > 0 else 0.0 for n, d in marginal.items()}
    p_max = {n: 1.0 - floors[n] / c for n, c in full.items()}

    def counts(alpha: float) -> dict[str, int]:
        # a layer at its largest cut sits exactly at its floor (rounding to multiple_of could lift it)
        return {
            n: floors[n]
            if alpha * weight[n] >= p_max[n]
            else _round_keep(c, c * (1.0 - alpha * weight[n]), floors[n], multiple_of)
            for n, c in full.items()
        }

    hi = max((p_max[n] / weight[n] for n in full if weight[n] > 0), default=0.0) + 1.0
    alphas = []
    for cm, fraction in bounds:
        target = fraction * cm.total()
        if cm.total(counts(0.0)) <= target:
            alphas.append(0.0)
            continue
        if cm.total(counts(hi)) > target:  # width-free layers (weight 0) cannot help: uniform fallback
            raise ValueError(
                f"cost target {fraction:.4f} of the full {cm.kind} cannot be met by proportional allocation "
                f"(exponent={exponent}); try exponent=0 or allocate_by_importance"
            )
        lo, up = 0.0, hi
        for _ in range(200):
            mid = 0.5 * (lo + up)
            if cm.total(counts(mid)) <= target:
                up = mid
            else:
                lo = mid
            if up - lo <= 1e-12 * max(1.0, up):
                break
        alphas.append(up)

    def fits(keep: Mapping[str, int]) -> bool:
        return all(cm.total(keep) <= fraction * cm.total() for cm, fraction in bounds)

    alpha = max(alphas)
    if alpha == 0.0:
        return counts(0.0), alphas
    return _fill_back(counts(alpha), full, fits, multiple_of), alphas


def _fill_back(
    keep: dict[str, int], full: Mapping[str, int], fits: Callable[[Mapping[str, int]], bool], multiple_of: int
) -> dict[str, int]:
    """Give back rounding slack: grow the most-pruned layer that still fits the targets, until none fits."""
    keep = dict(keep)
    order = {n: i for i, n in enumerate(full)}
    while True:
        for n in sorted((n for n in full if keep[n] < full[n]), key=lambda n: (keep[n] / full[n], order[n])):
            grown = min(full[n], (keep[n] // multiple_of + 1) * multiple_of)
            if fits({**keep, n: grown}):
                keep[n] = grown
                break
        else:
            return keep


def allocate_by_importance(
    cost_model: CostModel,
    scores: Mapping[str, torch.Tensor],
    fraction: float,
    *,
    min_channels: int = 1,
    exponent: float = 1.0,
    normalize: str = "mean",
) -> dict[str, torch.Tensor]:
    """0/1 masks meeting the cost target, removing the least important channels per unit of cost first."""
    fraction = check_fraction(fraction)
    min_channels = _check_min_channels(min_channels)
    if not isinstance(exponent, (int, float)) or not math.isfinite(exponent) or exponent < 0:
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    cmap = cost_model.channel_map
    scores = _check_scores(scores)
    cmap.check_names(scores, "scores")
    full = cmap.widths()
    for name, s in scores.items():
        if s.numel() != full[name]:
            raise ValueError(f"scores[{name!r}] has {s.numel()} entries, the conv has {full[name]} channels")
    normed = normalize_scores(scores, normalize)
    delta = cost_model.marginal()
    mean_delta = sum(delta.values()) / len(delta)
    names = list(normed)
    entries = []
    for li, name in enumerate(names):
        rel = delta[name] / mean_delta if mean_delta > 0 else 1.0
        div = rel**exponent if rel > 0 else math.inf
        entries.extend((float(v) / div, li, ci) for ci, v in enumerate(normed[name].tolist()))
    entries.sort()
    widths = dict(full)
    floors = {n: min(min_channels, c) for n, c in full.items()}
    masks = {n: torch.ones(c) for n, c in full.items()}
    target = fraction * cost_model.total()
    cost = cost_model.total(widths)
    for _, li, ci in entries:
        if cost <= target:
            break
        name = names[li]
        if widths[name] <= floors[name]:
            continue
        cost -= _marginal_one(cost_model, name, widths)
        widths[name] -= 1
        masks[name][ci] = 0.0
    if cost > target:
        raise ValueError(
            f"cost target {fraction:.4f} of the full {cost_model.kind} is out of reach with "
            f"min_channels={min_channels} on the scored layers"
        )
    return {n: masks[n] for n in names}


def _marginal_one(cost_model: CostModel, name: str, widths: Mapping[str, int]) -> int:
    cmap = cost_model.channel_map
    d = (
        cost_model.pair[name] * cmap.in_width(name, widths)
        + cost_model.out[name]
        + cost_model.source.get(name, 0)
    )
    for consumer, _ in cmap.consumers(name):
        d += cost_model.pair[consumer] * widths.get(consumer, cmap.nodes[consumer].out_channels)
    return d
