"""Explicit channel map of a PWC-family network: every conv, where its input channels come from.

Why an explicit, config-driven map instead of torch-pruning's dependency graph:

- the result of pruning must be a :class:`~cdpkd.models.PWCConfig` with smaller
  widths (DESIGN.md section 3: a pruned model is its channel configuration JSON
  plus a state_dict), so the map has to know which config entry each conv's
  out-channels come from anyway;
- the cost volume is a custom op (``cdpkd::correlation``, or GOCor built from
  it) that torch-pruning does not know, and it is a *mean* over channels, so
  removing channels that feed it changes its values unless the surgery
  rescales them (see :mod:`cdpkd.compress.surgery`); a generic dependency
  graph would treat it as an opaque op or, worse, as channel-wise;
- the wiring is simple and fully determined by the config: plain
  ``nn.Conv2d`` layers, functional LeakyReLU, dense concatenations (a conv's
  output is a channel segment of the input of every later conv of its stack,
  of the predict/upfeat heads and of the context network), warps (channel-wise,
  linear) and the correlation. Writing it down is shorter and exact, and
  :meth:`ChannelMap.validate` checks it against the model's actual conv shapes
  so a model change cannot silently desynchronise it.

There is no cross-layer coupling to resolve: no residual additions, and the
only shared weights (the pyramid, applied to the pre and post frames in one
batched pass) are one module. Each prunable conv is therefore one pruning
group; a dense concatenation just means a pruned channel disappears from many
consumers at once (:meth:`ChannelMap.consumers`).

Input channels of a conv are a sequence of :class:`Segment`\\ s, in concatenation
order. A segment's source is the name of a conv (its whole output), or one of
the fixed sources: ``"input"`` (the frames entering the pyramid),
``"cost_volumes.{i}"`` (the cost volume of estimator level ``i``) and
``"disp.{i}"`` (the upsampled displacement entering estimator ``i``; ``i`` =
number of estimator levels for the context network's input).

Prunable (out-channels from the config): ``pyramid.levels.{l}.{j}``,
``estimators.{i}.convs.{j}``, ``context.convs.{j}``. Never pruned: the
2-channel ``predict`` heads, the ``upfeat`` heads (``upfeat_channels`` is one
number shared by every level), the network's input channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from cdpkd.models import PWCConfig


@dataclass(frozen=True)
class Segment:
    """A contiguous run of ``width`` input channels taken from ``source``'s output."""

    source: str
    width: int


@dataclass(frozen=True)
class ConvNode:
    """One ``nn.Conv2d`` of the network.

    Attributes:
        name: module name in ``model.named_modules()`` (e.g. ``"estimators.1.convs.0"``).
        out_channels: its output channels.
        inputs: its input channels as segments, in concatenation order.
        field: the config entry holding ``out_channels``: ``("pyramid_channels", l, j)``,
            ``("estimator_widths", i, j)``, ``("context_widths", j)``, ``("refine_widths", j)``, or
            None (heads).
        correlations: indices of the cost volumes (estimator levels) that read this
            conv's output (only the last conv of an estimator's pyramid level).
    """

    name: str
    out_channels: int
    inputs: tuple[Segment, ...]
    field: tuple | None = None
    correlations: tuple[int, ...] = ()

    @property
    def in_channels(self) -> int:
        return sum(s.width for s in self.inputs)


class ChannelMap:
    """Every conv of a :class:`~cdpkd.models.PWCNet` built from ``config``, with its input wiring.

    Args:
        config: the network's configuration.
        prune_correlation_inputs: if False, the pyramid convs whose output feeds a
            cost volume are not prunable (the correlation then never changes).
            If True they are, and :func:`~cdpkd.compress.hard_prune` rescales
            them so that the pruned network computes the masked network's cost
            volume: exactly for plain correlation; for GOCor up to its 1e-8
            line-search guard, which breaks the scale invariance where the
            curvature is tiny (measured: up to 1e-4 absolute on a random
            network's displacement). None (default): True for plain
            correlation, False for GOCor, so hard pruning is always exact.

    Attributes:
        nodes: name -> :class:`ConvNode`, in forward order.
        prunable: names of the prunable convs, in forward order.
    """

    def __init__(self, config: PWCConfig, *, prune_correlation_inputs: bool | None = None) -> None:
        if not isinstance(config, PWCConfig):
            raise TypeError(f"ChannelMap needs a PWCConfig, got {type(config).__name__}")
        self.config = config
        if prune_correlation_inputs is None:
            prune_correlation_inputs = config.correlation == "plain"
        self.prune_correlation_inputs = bool(prune_correlation_inputs)
        nodes: dict[str, ConvNode] = {}
        corr: dict[str, list[int]] = {}

        # Pyramid: a plain chain of convs over all levels.
        prev: tuple[Segment, ...] = (Segment("input", config.feature_channels),)
        level_out: list[str] = []
        pyramid_fields: dict[str, tuple] = {}
        for lv, widths in enumerate(config.pyramid_channels):
            for j, w in enumerate(widths):
                name = f"pyramid.levels.{lv}.{j}"
                nodes[name] = ConvNode(name, w, prev)  # field/correlations filled below
                pyramid_fields[name] = ("pyramid_channels", lv, j)
                prev = (Segment(name, w),)
            level_out.append(prev[0].source)

        # Estimators, coarse to fine: input = [cost, pre features, disp, upfeat].
        k = len(config.estimator_levels)
        u = config.upfeat_channels
        x: tuple[Segment, ...] = ()
        for i, (level, widths, (ra, rl)) in enumerate(
            zip(config.estimator_levels, config.estimator_widths, config.search_radii)
        ):
            d = (2 * ra + 1) * (2 * rl + 1)
            src = level_out[level]
            corr.setdefault(src, []).append(i)
            x = (Segment(f"cost_volumes.{i}", d), Segment(src, config.pyramid_channels[level][-1]))
            if i > 0:
                x += (Segment(f"disp.{i}", 2),)
                if u > 0:
                    x += (Segment(f"estimators.{i - 1}.upfeat", u),)
            for j, w in enumerate(widths):
                name = f"estimators.{i}.convs.{j}"
                nodes[name] = ConvNode(name, w, x, ("estimator_widths", i, j))
                out = Segment(name, w)
                x = (*x, out) if config.dense else (out,)
            nodes[f"estimators.{i}.predict"] = ConvNode(f"estimators.{i}.predict", 2, x)
            if i < k - 1 and u > 0:
                nodes[f"estimators.{i}.upfeat"] = ConvNode(f"estimators.{i}.upfeat", u, x)

        if config.context:
            x = (*x, Segment(f"disp.{k}", 2))
            for j, w in enumerate(config.context_widths):
                name = f"context.convs.{j}"
                nodes[name] = ConvNode(name, w, x, ("context_widths", j))
                x = (Segment(name, w),)
            nodes["context.predict"] = ConvNode("context.predict", 2, x)

        if config.refine_widths:  # full-resolution head: [RF NCC volume, level-0 pre features, displacement, peak]
            ra, rl = config.refine_radius
            x = (Segment("refine.cost", (2 * ra + 1) * (2 * rl + 1)),
                 Segment(level_out[0], config.pyramid_channels[0][-1]), Segment("disp.refine", 2))
            if config.refine_peak:
                x = (*x, Segment("refine.peak", 3))
            for j, w in enumerate(config.refine_widths):
                name = f"refine.convs.{j}"
                nodes[name] = ConvNode(name, w, x, ("refine_widths", j))
                x = (*x, Segment(name, w))
            nodes["refine.predict"] = ConvNode("refine.predict", 2, x)

        for name, fld in pyramid_fields.items():
            n = nodes[name]
            nodes[name] = ConvNode(name, n.out_channels, n.inputs, fld, tuple(corr.get(name, ())))
        # forward order: pyramid first (dict insertion order already is)
        self.nodes: dict[str, ConvNode] = nodes
        self.prunable: tuple[str, ...] = tuple(
            n.name
            for n in nodes.values()
            if n.field is not None and (self.prune_correlation_inputs or not n.correlations)
        )
        self._consumers: dict[str, list[tuple[str, int]]] = {}
        for n in nodes.values():
            offset = 0
            for seg in n.inputs:
                self._consumers.setdefault(seg.source, []).append((n.name, offset))
                offset += seg.width

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: nn.Module, *, prune_correlation_inputs: bool | None = None) -> ChannelMap:
        """The map of ``model.config``, validated against ``model``'s conv modules."""
        config = getattr(model, "config", None)
        if getattr(model, "architecture", None) != "pwc" or not isinstance(config, PWCConfig):
            raise ValueError(
                f"channel pruning supports PWC-family networks (cdpkd.models.PWCNet), got {type(model).__name__}"
            )
        cmap = cls(config, prune_correlation_inputs=prune_correlation_inputs)
        cmap.validate(model)
        return cmap

    def validate(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless the model's convs are exactly the map's nodes, with matching shapes."""
        convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        missing = sorted(set(self.nodes) - set(convs))
        extra = sorted(set(convs) - set(self.nodes))
        if missing or extra:
            raise ValueError(
                f"channel map does not match the model: convs missing from the model {missing}, "
                f"convs not in the map {extra}"
            )
        for name, node in self.nodes.items():
            m = convs[name]
            if m.groups != 1 or (m.out_channels, m.in_channels) != (node.out_channels, node.in_channels):
                raise ValueError(
                    f"channel map does not match the model at {name}: model conv has "
                    f"{m.in_channels} -> {m.out_channels} channels (groups={m.groups}), "
                    f"map expects {node.in_channels} -> {node.out_channels}"
                )

    # ------------------------------------------------------------------ queries
    def consumers(self, source: str) -> list[tuple[str, int]]:
        """(conv name, channel offset of ``source``'s output in that conv's input) for every reader."""
        return list(self._consumers.get(source, ()))

    def widths(self) -> dict[str, int]:
        """Out-channels of every prunable conv."""
        return {name: self.nodes[name].out_channels for name in self.prunable}

    def check_names(self, names: Iterable[str], what: str = "masks") -> None:
        """``ValueError`` naming any entry that is not a prunable conv."""
        bad = sorted(set(names) - set(self.prunable))
        if bad:
            hint = ""
            if any(self.nodes.get(b) is not None and self.nodes[b].correlations for b in bad):
                hint = " (correlation inputs are not prunable with prune_correlation_inputs=False)"
            raise ValueError(f"{what}: {bad} are not prunable convs{hint}; prunable: {list(self.prunable)}")

    def in_width(self, name: str, widths: Mapping[str, int]) -> int:
        """Input channels of conv ``name`` when the prunable convs have out-channels ``widths``."""
        return sum(widths.get(s.source, s.width) for s in self.nodes[name].inputs)

    def config_with(self, widths: Mapping[str, int]) -> PWCConfig:
        """The config with each prunable conv's out-channels replaced by ``widths[name]`` (others kept)."""
        self.check_names(widths, "widths")
        cfg = self.config
        pyramid = [list(lv) for lv in cfg.pyramid_channels]
        estimator = [list(lv) for lv in cfg.estimator_widths]
        context = list(cfg.context_widths)
        refine = list(cfg.refine_widths)
        for name, w in widths.items():
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                raise ValueError(f"widths: {name} needs a positive integer channel count, got {w!r}")
            fld = self.nodes[name].field
            if fld[0] == "pyramid_channels":
                pyramid[fld[1]][fld[2]] = w
            elif fld[0] == "estimator_widths":
                estimator[fld[1]][fld[2]] = w
            elif fld[0] == "refine_widths":
                refine[fld[1]] = w
            else:
                context[fld[1]] = w
        return cfg.replace(
            pyramid_channels=tuple(tuple(lv) for lv in pyramid),
            estimator_widths=tuple(tuple(lv) for lv in estimator),
            context_widths=tuple(context),
            refine_widths=tuple(refine),
        )

    def __repr__(self) -> str:
        return f"ChannelMap({len(self.nodes)} convs, {len(self.prunable)} prunable)"
