"""``PWCConfig``: the complete, explicit channel configuration of a PWC-family network.

Every convolution's output channel count is a number in the config, so a
pruning step can write a new config with fewer channels per layer and the
network rebuilds from it alone (DESIGN.md section 3: a pruned model is its
channel configuration JSON plus a state_dict).

Levels are indexed 0 .. L-1 from the finest (full resolution) to the
coarsest. The first ``full_res_levels`` levels keep full resolution (stride
1); each later level halves H and W, so level l has stride
``2 ** max(0, l - full_res_levels + 1)``.

Which config entry sets which module's out-channels (state_dict names):

- ``pyramid_channels[l][j]``    -> ``pyramid.levels.{l}.{j}``
- ``estimator_widths[i][j]``    -> ``estimators.{i}.convs.{j}`` (i over ``estimator_levels``,
  coarse to fine); ``estimators.{i}.predict`` has 2 out-channels, ``estimators.{i}.upfeat``
  ``upfeat_channels`` (absent at the finest estimator level)
- ``context_widths[j]``         -> ``context.convs.{j}``; ``context.predict`` has 2.
- ``refine_widths[j]``          -> ``refine.convs.{j}``; ``refine.predict`` has 2 (only with a
  refinement head, see :class:`~cdpkd.models.refine.NCCRefinement`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cdpkd.classic.interp import RF_INTERPOLATIONS

INPUT_MODES = ("rf", "rf+envelope")
CORRELATIONS = ("plain", "gocor")
# Fields added after model configs were first hashed into artifact keys, with their defaults
# (as in to_dict): left out of to_dict while they hold them, so earlier configs keep their keys.
_LATER_FIELDS: dict[str, Any] = {"cost_windows": [], "refine_widths": [], "refine_radius": [3, 1],
                                 "refine_window": [15, 3], "refine_peak": False, "refine_interp": "bilinear",
                                 "refine_passes": 1, "refine_guide_smoothing": [1, 1]}

# UMEN-Net teacher (DESIGN.md section 1), PWC-Net-like: three 3x3 convs per pyramid level.
TEACHER_PYRAMID = (16, 32, 64, 96, 128, 196)
TEACHER_ESTIMATOR = (128, 128, 96, 64, 32)
TEACHER_CONTEXT = (128, 128, 128, 96, 64, 32)
TEACHER_DILATIONS = (1, 2, 4, 8, 16, 1)
TEACHER_LEVELS = (5, 4, 3, 2, 1)
# Axial search radius larger than lateral: axial motion dominates under compression.
TEACHER_RADII = ((4, 2),) * 5


def _is_odd_window(window: tuple[int, ...]) -> bool:
    """Two odd integers >= 1 (samples, lines): a centred window."""
    return len(window) == 2 and min(window) >= 1 and window[0] % 2 == 1 and window[1] % 2 == 1


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"PWCConfig: {what} must be a sequence of integers, got {value!r}")
    out = tuple(value)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"PWCConfig: {what} must contain integers, got {v!r} in {value!r}")
    return out


def _positive(values: tuple[int, ...], what: str) -> None:
    if not values or any(v < 1 for v in values):
        raise ValueError(f"PWCConfig: {what} must be a non-empty sequence of positive integers, got {values}")


def _level_pairs(value: Any, count: int, what: str) -> tuple[tuple[int, ...], ...]:
    """One (axial, lateral) int pair per estimator level; a single pair is shared by all ``count`` levels."""
    items = tuple(value) if isinstance(value, Iterable) and not isinstance(value, (str, bytes)) else ()
    if len(items) == 2 and all(isinstance(v, int) for v in items):
        items = (items,) * count
    pairs = tuple(_int_tuple(pair, what) for pair in items)
    if len(pairs) != count or any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"PWCConfig: {what} needs {count} (axial, lateral) pairs, got {value!r}")
    return pairs


def _per_level(value: Any, count: int, what: str, convs: int) -> tuple[tuple[int, ...], ...]:
    """Accept one int per level (expanded to ``convs`` equal widths), or explicit tuples."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"PWCConfig: {what} must be a sequence, got {value!r}")
    items = tuple(value)
    out = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append((item,) * convs)
        else:
            out.append(_int_tuple(item, what))
    if count >= 0 and len(out) != count:
        raise ValueError(f"PWCConfig: {what} needs {count} entries (one per level), got {len(out)}")
    for t in out:
        _positive(t, what)
    return tuple(out)


@dataclass(frozen=True)
class PWCConfig:
    """Architecture of a :class:`~cdpkd.models.PWCNet`; defaults are the UMEN-Net teacher.

    Attributes:
        in_channels: channels of the pre/post input tensors (1 for RF).
        input_mode: "rf" (inputs used as given) or "rf+envelope" (the model
            adds the envelope |hilbert(x)| along the axial axis of every input
            channel, doubling the pyramid's input channels).
        normalize_input: divide each pre/post pair by its joint RMS (per
            sample) so the network does not depend on the RF amplitude scale.
        pyramid_channels: per level (finest first) the out-channels of each
            conv; an int is shorthand for ``pyramid_convs`` equal convs.
        pyramid_convs: convs per level used to expand int shorthand.
        full_res_levels: how many leading levels keep stride 1.
        estimator_levels: pyramid levels that get a displacement estimator,
            strictly decreasing (coarse to fine). Pyramid levels coarser than
            the first one are still computed (and padded for): drop them from
            ``pyramid_channels`` rather than leaving them unused.
        estimator_widths: per estimator level the conv widths; a flat tuple of
            ints is shared by all levels.
        dense: DenseNet-style estimator (each conv's output is concatenated
            to its input) or a plain conv stack.
        upfeat_channels: channels of the estimator features passed to the
            next finer level (PWC-Net's "upfeat"); 0 disables.
        search_radii: per estimator level (radius_axial, radius_lateral) in
            that level's pixels; a single pair is shared by all levels.
        cost_windows: per estimator level an odd (axial, lateral) window, in that
            level's pixels, over which the cost volume is averaged before the
            estimator sees it (windowed correlation, as in NCC block matching: a
            single pixel's feature product is speckle noise); a single pair is
            shared by all levels; empty (default) or (1, 1): no averaging.
        correlation: "plain" (``cdpkd.ops.correlation``) or "gocor".
        gocor_steps: unrolled steepest-descent steps of GOCor.
        context: dilated context network refining the finest estimate.
        context_widths, context_dilations: its conv widths and dilations.
        leaky_slope: negative slope of every LeakyReLU.
        refine_widths: conv widths of an optional full-resolution refinement head
            (:class:`~cdpkd.models.refine.NCCRefinement`) after the finest estimate: it sees
            the windowed NCC of the RF pre frame and the RF post frame warped by that estimate
            at integer offsets, and predicts a residual displacement. Empty (default): none.
        refine_radius: its NCC search radii (axial samples, lateral lines).
        refine_window: its odd NCC window (axial samples, lateral lines).
        refine_peak: also give the head the NCC volume's peak located to a sub-sample offset as
            NCC block matching locates it (cosine fit axially, parabola laterally) and the peak's
            NCC value (3 more input channels, :func:`~cdpkd.classic.subsample.peak_features`).
        refine_interp: how the head warps the RF post frame: "bilinear" (``cdpkd.ops.warp``) or
            "spline" (cubic B-spline, ``cdpkd.classic.interp.spline_warp``, as NCC block matching
            warps RF: linear interpolation of an ~8-samples-per-period carrier shifts its phase by
            up to ~0.01 sample and damps it by up to 8 %, depending on the fractional position).
        refine_passes: how many times the head runs, each pass on the estimate the one before left
            (weights shared), as NCC block matching warps and matches again. 1 (default): once. The
            cpu teacher, whose head was trained for one pass, gets worse with more at inference, and
            its head trained with two passes is worse than with one (``studies/README.md``, "The head
            run again, and the mirrored pair"); with ``refine_guide_smoothing`` more passes help
            ("The head warps by a smoothed estimate").
        refine_guide_smoothing: odd (samples, lines) box over which the head's input estimate is
            averaged (edge values replicated, :func:`~cdpkd.classic.pyramid.edge_box_mean`) before it
            warps by it, its output then being that mean plus the residual, as NCC block matching's
            passes warp by a smoothed estimate and add the raw window residual: the windowed NCC
            cannot see the estimate's jitter below the window, so a residual added to the unsmoothed
            estimate keeps it. (1, 1) (default): the estimate itself.
    """

    in_channels: int = 1
    input_mode: str = "rf"
    normalize_input: bool = True
    pyramid_channels: tuple = TEACHER_PYRAMID
    pyramid_convs: int = 3
    full_res_levels: int = 2
    estimator_levels: tuple = TEACHER_LEVELS
    estimator_widths: tuple = TEACHER_ESTIMATOR
    dense: bool = True
    upfeat_channels: int = 2
    search_radii: tuple = TEACHER_RADII
    cost_windows: tuple = ()
    correlation: str = "plain"
    gocor_steps: int = 3
    context: bool = True
    context_widths: tuple = TEACHER_CONTEXT
    context_dilations: tuple = TEACHER_DILATIONS
    leaky_slope: float = 0.1
    refine_widths: tuple = ()
    refine_radius: tuple = (3, 1)
    refine_window: tuple = (15, 3)
    refine_peak: bool = False
    refine_interp: str = "bilinear"
    refine_passes: int = 1
    refine_guide_smoothing: tuple = (1, 1)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once here, immutable afterwards
        for name in ("in_channels", "pyramid_convs", "full_res_levels", "upfeat_channels", "gocor_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"PWCConfig: {name} must be an integer, got {v!r}")
        for name in ("normalize_input", "dense", "context"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PWCConfig: {name} must be True or False, got {getattr(self, name)!r}")
        if self.in_channels < 1 or self.pyramid_convs < 1:
            raise ValueError("PWCConfig: in_channels and pyramid_convs must be >= 1")
        if self.upfeat_channels < 0 or self.gocor_steps < 0:
            raise ValueError("PWCConfig: upfeat_channels and gocor_steps must be >= 0")
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"PWCConfig: input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if self.correlation not in CORRELATIONS:
            raise ValueError(
                f"PWCConfig: correlation must be one of {CORRELATIONS}, got {self.correlation!r}"
            )
        slope = self.leaky_slope
        if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0.0 <= slope < 1.0:
            raise ValueError(f"PWCConfig: leaky_slope must be a number in [0, 1), got {slope!r}")
        set_(self, "leaky_slope", float(slope))

        pyramid = _per_level(self.pyramid_channels, -1, "pyramid_channels", self.pyramid_convs)
        set_(self, "pyramid_channels", pyramid)
        n = len(pyramid)
        if not 1 <= self.full_res_levels <= n:
            raise ValueError(f"PWCConfig: full_res_levels must be in [1, {n}], got {self.full_res_levels}")

        levels = _int_tuple(self.estimator_levels, "estimator_levels")
        if not levels or any(lv < 0 or lv >= n for lv in levels):
            raise ValueError(
                f"PWCConfig: estimator_levels must name pyramid levels in [0, {n - 1}], got {levels}"
            )
        if any(a <= b for a, b in zip(levels, levels[1:])):
            raise ValueError(
                f"PWCConfig: estimator_levels must be strictly decreasing (coarse to fine), got {levels}"
            )
        set_(self, "estimator_levels", levels)
        k = len(levels)

        widths = self.estimator_widths
        flat = isinstance(widths, Iterable) and all(
            isinstance(w, int) and not isinstance(w, bool) for w in widths
        )
        widths = (tuple(widths),) * k if flat else widths
        set_(self, "estimator_widths", _per_level(widths, k, "estimator_widths", 1))

        radii = _level_pairs(self.search_radii, k, "search_radii")
        if any(min(r) < 0 for r in radii):
            raise ValueError(f"PWCConfig: search_radii must be >= 0, got {self.search_radii}")
        set_(self, "search_radii", radii)

        windows = () if self.cost_windows in ((), []) else _level_pairs(self.cost_windows, k, "cost_windows")
        if not all(_is_odd_window(w) for w in windows):
            raise ValueError(f"PWCConfig: cost_windows must be odd and >= 1, got {self.cost_windows}")
        set_(self, "cost_windows", () if all(w == (1, 1) for w in windows) else windows)  # all (1, 1) = none

        cw = _int_tuple(self.context_widths, "context_widths")
        cd = _int_tuple(self.context_dilations, "context_dilations")
        if self.context:
            _positive(cw, "context_widths")
            _positive(cd, "context_dilations")
            if len(cw) != len(cd):
                raise ValueError(
                    f"PWCConfig: context_widths {cw} and context_dilations {cd} differ in length"
                )
        set_(self, "context_widths", cw)
        set_(self, "context_dilations", cd)

        rw = _int_tuple(self.refine_widths, "refine_widths")
        if rw:
            _positive(rw, "refine_widths")
        set_(self, "refine_widths", rw)
        radius = _int_tuple(self.refine_radius, "refine_radius")
        if len(radius) != 2 or min(radius) < 0:
            raise ValueError(f"PWCConfig: refine_radius must be two integers >= 0, got {self.refine_radius!r}")
        window = _int_tuple(self.refine_window, "refine_window")
        if not _is_odd_window(window):
            raise ValueError(f"PWCConfig: refine_window must be two odd integers >= 1, got {self.refine_window!r}")
        set_(self, "refine_radius", radius)
        set_(self, "refine_window", window)
        if not isinstance(self.refine_peak, bool):
            raise ValueError(f"PWCConfig: refine_peak must be true or false, got {self.refine_peak!r}")
        if self.refine_interp not in RF_INTERPOLATIONS:
            raise ValueError(f"PWCConfig: refine_interp must be one of {RF_INTERPOLATIONS}, got {self.refine_interp!r}")
        if isinstance(self.refine_passes, bool) or not isinstance(self.refine_passes, int) or self.refine_passes < 1:
            raise ValueError(f"PWCConfig: refine_passes must be an integer >= 1, got {self.refine_passes!r}")
        smoothing = _int_tuple(self.refine_guide_smoothing, "refine_guide_smoothing")
        if not _is_odd_window(smoothing):
            raise ValueError(
                f"PWCConfig: refine_guide_smoothing must be two odd integers >= 1, got {self.refine_guide_smoothing!r}"
            )
        set_(self, "refine_guide_smoothing", smoothing)

    # ------------------------------------------------------------------ geometry
    @property
    def num_levels(self) -> int:
        return len(self.pyramid_channels)

    def level_stride(self, level: int) -> int:
        """Downsampling factor of pyramid level ``level`` relative to the input (1, 2, 4, ...)."""
        return 2 ** max(0, level - self.full_res_levels + 1)

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each estimator level, coarse to fine (aligned with ``estimator_levels``)."""
        return tuple(self.level_stride(lv) for lv in self.estimator_levels)

    @property
    def total_stride(self) -> int:
        """Input H and W are padded to a multiple of this (the coarsest pyramid level's stride)."""
        return self.level_stride(self.num_levels - 1)

    @property
    def feature_channels(self) -> int:
        """Channels entering the pyramid (inputs, plus their envelopes in "rf+envelope" mode)."""
        return self.in_channels * (2 if self.input_mode == "rf+envelope" else 1)

    def cost_window(self, index: int) -> tuple[int, int]:
        """Cost-volume averaging window of estimator ``index`` (coarse to fine); (1, 1) when none."""
        return self.cost_windows[index] if self.cost_windows else (1, 1)

    # ------------------------------------------------------------------ transforms
    def scaled(self, width_multiplier: float) -> PWCConfig:
        """Same topology with every conv width scaled by ``width_multiplier``, rounded, at least 4.

        Scaled: pyramid, estimator, context and refinement widths. Not scaled: the 2-channel
        displacement heads and ``upfeat_channels`` (already tiny).
        """
        m = float(width_multiplier)
        if not math.isfinite(m) or m <= 0:
            raise ValueError(
                f"PWCConfig.scaled: width_multiplier must be a positive number, got {width_multiplier!r}"
            )

        def s(c: int) -> int:
            return max(4, int(math.floor(c * m + 0.5)))

        return self.replace(
            pyramid_channels=tuple(tuple(s(c) for c in lv) for lv in self.pyramid_channels),
            estimator_widths=tuple(tuple(s(c) for c in lv) for lv in self.estimator_widths),
            context_widths=tuple(s(c) for c in self.context_widths),
            refine_widths=tuple(s(c) for c in self.refine_widths),
        )

    def replace(self, **changes: Any) -> PWCConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""

        def plain(v: Any) -> Any:
            return [plain(x) for x in v] if isinstance(v, tuple) else v

        d = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        for name, default in _LATER_FIELDS.items():  # keep the cache keys of configs that do not use them
            if d[name] == default:
                d.pop(name)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PWCConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"PWCConfig.from_dict: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"PWCConfig.from_dict: unknown keys {unknown}; known keys are {sorted(known)}")

        def frozen(v: Any) -> Any:
            return tuple(frozen(x) for x in v) if isinstance(v, list) else v

        return cls(**{k: frozen(v) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PWCConfig:
        return cls.from_dict(json.loads(text))
