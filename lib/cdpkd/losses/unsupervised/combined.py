"""The multi-scale unsupervised loss: every term at every pyramid output, weighted.

Model outputs (the PWC family) are a mapping with
``"displacement"``: N x 2 x H x W at full resolution, and optionally
``"levels"``: coarse -> fine list of N x 2 x h_l x w_l displacements in
FULL-RESOLUTION units (samples / lines) on each level's grid, with
``"strides"``: the per-level integer downsampling factor (1 = full
resolution; an int or an (axial, lateral) pair).

How a coarse level is compared (``coarse_mode``) -- RF is a carrier at fc
sampled at fs (~8 samples per period at 5 / 40 MHz), and averaging it over a
stride of s samples multiplies the carrier by sinc-like gain
|sin(pi s fc / fs) / (s sin(pi fc / fs))|: 0.65 at s = 4, exactly 0 at s = 8
-- what survives is aliased noise. So RF must never be average-pooled.
Options:

- ``"envelope"`` (default): compare the envelopes (|Hilbert|), average-pooled
  to the level's grid, with the level displacement converted to level pixels
  (divided by the stride) and the NCC window scaled down by the stride. The
  envelope is low-pass, so pooling keeps it; its NCC has a wide, smooth basin
  (speckle size, not a half wavelength), which is what coarse levels -- whose
  job is the large, rough displacement -- need; the carrier-phase precision
  comes from the full-resolution levels, which always compare the signal as
  given. Cheap: coarse levels cost a fraction of the full-resolution term.
- ``"upsample"``: upsample the level displacement to full resolution
  (bilinear) and compare the original signal there. Exact, but every level
  then costs a full-resolution NCC, and on RF the NCC oscillates with the
  carrier, so a coarse estimate more than a quarter wavelength off sits in a
  side lobe and gets a misleading gradient.
- ``"avgpool"``: average-pool the signal as given; only for inputs that are
  already envelopes / B-mode (not RF).

Aggregation: each term is the level-weighted mean over the scales where it
is defined, sum_s w_s t_s / sum_s w_s, so it keeps the single-scale term's
meaning (e.g. "similarity" stays 1 - a mean NCC); ``total`` is the
term-weighted sum. The final displacement has weight ``final_weight``; the
levels ``level_weights`` (coarse -> fine), by default ``level_decay`` to the
power of the distance from the finest level (0.5: each coarser level counts
half as much).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cdpkd.classic.interp import RF_INTERPOLATIONS

from ._common import (
    PENALTIES,
    check_choice,
    check_disp,
    check_frames,
    check_positive,
    compute_dtype,
    full_precision,
    odd_window_for,
    pair_of_ints,
    scaled_window,
)
from ._strain import strain_pair
from .block_matching import block_matching_consistency
from .incompressibility import incompressibility_from_strains
from .poisson import POISSON_MODELS, poisson_from_strains, ratio_bounds
from .similarity import envelope, similarity_ncc
from .smoothness import smoothness, smoothness_weights

COARSE_MODES: tuple[str, ...] = ("envelope", "upsample", "avgpool")
TERMS: tuple[str, ...] = ("similarity", "smooth", "incompressibility", "poisson")


@dataclass(frozen=True)
class UnsupervisedLossConfig:
    """Weights and settings of :class:`UnsupervisedLoss` (JSON via to_dict / from_dict).

    Attributes:
        similarity_weight, smooth_weight, incompressibility_weight, poisson_weight:
            term weights in ``total`` (>= 0). The Poisson bound is optional (0 =
            reported for monitoring, not trained on).
        ncc_window: odd NCC box (samples, lines) at full resolution; scaled by
            the stride at coarse levels (envelope / avgpool modes), clipped to
            frames smaller than it.
        ncc_eps: NCC variance floor relative to the frame variance.
        smooth_order: finite-difference order per component (axial, lateral).
        smooth_weights: [component][direction] weights, see
            :func:`~cdpkd.losses.unsupervised.smoothness`.
        smooth_penalty, smooth_eps: penalty ("charbonnier", "l1", "l2") and
            Charbonnier scale (displacement units per sample^order).
        smooth_lag: distance (axial samples, lateral lines, full resolution) between the
            differenced values of the smoothness term (``lag`` of
            :func:`~cdpkd.losses.unsupervised.smoothness`; at a level of stride s, lag / s level
            pixels rounded, at least 1). (1, 1), the default, is adjacent pixels.
        strain_window: odd LS windows (samples, lines) of the strain terms at
            full resolution (scaled by the stride at coarse levels, min 3).
        incompressibility_penalty, incompressibility_eps: "l1" (mean |eps_ax + eps_lat|),
            "l2" or "charbonnier" with scale ``incompressibility_eps`` (strain units).
        nu_min, nu_max, poisson_model, min_axial_strain: see :func:`poisson_bound`.
        final_weight: weight of ``outputs["displacement"]`` among the scales.
        level_weights: one weight per pyramid level (coarse -> fine) or None for
            ``level_decay ** (distance from the finest level)``.
        level_decay: in (0, 1]; used when ``level_weights`` is None.
        coarse_mode: "envelope" | "upsample" | "avgpool" (module docstring).
        regularize_levels: apply smoothness / incompressibility / Poisson at the
            pyramid levels too (True) or only to the final displacement.
        interpolation: how the full-resolution similarity warps the post frame, "bilinear" or
            "spline" (cubic B-spline; see :func:`~cdpkd.losses.unsupervised.similarity_ncc`).
            Coarse envelope levels are smooth and always warp bilinearly.
        block_matching_weight, block_matching_window, block_matching_radius,
        block_matching_guide_smoothing: the optional
            block-matching consistency of the final displacement
            (:func:`~cdpkd.losses.unsupervised.block_matching_consistency`, samples^2, the post frame
            warped by cubic B-spline as NCC block matching warps RF): computed, reported as
            ``"block_matching"`` and added to ``total`` only when its weight is > 0.
    """

    similarity_weight: float = 1.0
    smooth_weight: float = 0.05
    incompressibility_weight: float = 0.1
    poisson_weight: float = 0.0
    ncc_window: tuple[int, int] = (31, 5)
    ncc_eps: float = 1e-4
    smooth_order: tuple[int, int] = (2, 2)
    smooth_weights: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 1.0), (1.0, 1.0))
    smooth_penalty: str = "charbonnier"
    smooth_eps: float = 1e-3
    smooth_lag: tuple[int, int] = (1, 1)
    strain_window: tuple[int, int] = (9, 3)
    incompressibility_penalty: str = "l1"
    incompressibility_eps: float = 1e-4
    nu_min: float = 0.3
    nu_max: float = 0.5
    poisson_model: str = "plane_strain"
    min_axial_strain: float = 1e-3
    final_weight: float = 1.0
    level_weights: tuple[float, ...] | None = None
    level_decay: float = 0.5
    coarse_mode: str = "envelope"
    regularize_levels: bool = True
    interpolation: str = "bilinear"
    block_matching_weight: float = 0.0
    block_matching_window: tuple[int, int] = (41, 9)
    block_matching_radius: tuple[int, int] = (3, 1)
    block_matching_guide_smoothing: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        fn = "UnsupervisedLossConfig"
        for name in (
            "similarity_weight",
            "smooth_weight",
            "incompressibility_weight",
            "poisson_weight",
            "final_weight",
            "block_matching_weight",
        ):
            check_positive(getattr(self, name), fn, name, allow_zero=True)
        for name in ("ncc_eps", "smooth_eps", "incompressibility_eps", "min_axial_strain"):
            check_positive(getattr(self, name), fn, name)
        wy, wx = pair_of_ints(self.ncc_window, fn, "ncc_window", odd=True)
        if wy * wx < 2:
            raise ValueError(f"{fn}: ncc_window must cover at least 2 pixels, got {self.ncc_window!r}")
        orders = pair_of_ints(self.smooth_order, fn, "smooth_order")
        if any(k not in (1, 2) for k in orders):
            raise ValueError(f"{fn}: smooth_order must hold 1 or 2, got {self.smooth_order!r}")
        smoothness_weights(self.smooth_weights, fn)
        # One int means both axes; stored as the (axial, lateral) pair the loss indexes.
        pairs = {
            "ncc_window": (wy, wx),
            "strain_window": pair_of_ints(self.strain_window, fn, "strain_window", odd=True, minimum=3),
            "smooth_order": orders,
            "smooth_lag": pair_of_ints(self.smooth_lag, fn, "smooth_lag"),
            "block_matching_window": pair_of_ints(self.block_matching_window, fn, "block_matching_window", odd=True),
            "block_matching_radius": pair_of_ints(self.block_matching_radius, fn, "block_matching_radius"),
            "block_matching_guide_smoothing": pair_of_ints(
                self.block_matching_guide_smoothing, fn, "block_matching_guide_smoothing", odd=True
            ),
        }
        for name, pair in pairs.items():
            object.__setattr__(self, name, pair)  # frozen dataclass: normalised once, here
        check_choice(self.smooth_penalty, PENALTIES, fn, "smooth_penalty")
        check_choice(self.incompressibility_penalty, PENALTIES, fn, "incompressibility_penalty")
        check_choice(self.poisson_model, POISSON_MODELS, fn, "poisson_model")
        if not 0 <= self.nu_min <= self.nu_max < 1:
            raise ValueError(f"{fn}: need 0 <= nu_min <= nu_max < 1, got [{self.nu_min}, {self.nu_max}]")
        check_choice(self.coarse_mode, COARSE_MODES, fn, "coarse_mode")
        check_choice(self.interpolation, RF_INTERPOLATIONS, fn, "interpolation")
        if not (isinstance(self.level_decay, (int, float)) and 0 < self.level_decay <= 1):
            raise ValueError(f"{fn}: level_decay must be in (0, 1], got {self.level_decay!r}")
        if self.level_weights is not None:
            for v in self.level_weights:
                check_positive(v, fn, "level_weights", allow_zero=True)
        if not isinstance(self.regularize_levels, bool):
            raise ValueError(f"{fn}: regularize_levels must be a bool, got {self.regularize_levels!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists in JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnsupervisedLossConfig:
        """Inverse of :meth:`to_dict` (accepts the lists JSON gives back); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"UnsupervisedLossConfig.from_dict: unknown key(s) {unknown}; known: {sorted(known)}"
            )

        def as_tuple(v: Any) -> Any:
            return tuple(as_tuple(x) for x in v) if isinstance(v, (list, tuple)) else v

        return cls(**{k: as_tuple(v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UnsupervisedLossConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class _Scale:
    name: str  # "final" or "l<k>" (k = index in outputs["levels"], 0 = coarsest)
    disp: torch.Tensor
    stride: tuple[int, int]
    weight: float


class UnsupervisedLoss(nn.Module):
    """Unsupervised elastography loss over a PWC-style multi-scale output.

    ``loss(pre, post, outputs)`` returns a dict of 0-d tensors:
    ``"similarity"``, ``"smooth"``, ``"incompressibility"``, ``"poisson"``
    (level-weighted means over the scales), ``"similarity_final"`` and
    ``"similarity_l<k>"`` per pyramid level (k = index in
    ``outputs["levels"]``, 0 = coarsest), ``"block_matching"`` (samples^2, final displacement
    only) when its weight is > 0, and ``"total"`` = sum of term weight x term (what to
    backpropagate). Units: the other terms are dimensionless.

    Args:
        config: an :class:`UnsupervisedLossConfig` (default settings if None).
        **overrides: field overrides, e.g. ``UnsupervisedLoss(smooth_weight=0.1)``.
    """

    def __init__(self, config: UnsupervisedLossConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config or UnsupervisedLossConfig()
        if overrides:
            config = UnsupervisedLossConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self._r_bounds = ratio_bounds(config.nu_min, config.nu_max, config.poisson_model)

    def extra_repr(self) -> str:
        return self.config.to_json()

    # --- input handling -------------------------------------------------
    def _scales(self, outputs: Mapping[str, Any], n: int, h: int, w: int) -> list[_Scale]:
        fn = "UnsupervisedLoss"
        if not isinstance(outputs, Mapping) or "displacement" not in outputs:
            raise ValueError(
                f"{fn}: outputs must be a mapping with a 'displacement' entry, got {type(outputs).__name__}"
            )
        final = check_disp(outputs["displacement"], fn, "outputs['displacement']")
        if tuple(final.shape) != (n, 2, h, w):
            raise ValueError(
                f"{fn}: outputs['displacement'] must be N x 2 x H x W matching the frames "
                f"({n}, 2, {h}, {w}), got {tuple(final.shape)}"
            )
        scales = [_Scale("final", final, (1, 1), self.config.final_weight)]
        levels = outputs.get("levels")
        if levels is None:
            return scales
        strides = outputs.get("strides")
        if (
            not isinstance(levels, Sequence)
            or not isinstance(strides, Sequence)
            or len(levels) != len(strides)
        ):
            raise ValueError(
                f"{fn}: outputs['levels'] and outputs['strides'] must be sequences of equal length, "
                f"got {type(levels).__name__} and {type(strides).__name__}"
                + (
                    f" of lengths {len(levels)} and {len(strides)}"
                    if hasattr(levels, "__len__") and hasattr(strides, "__len__")
                    else ""
                )
            )
        weights = self._level_weights(len(levels))
        for k, (disp, stride) in enumerate(zip(levels, strides)):
            name = f"outputs['levels'][{k}]"
            check_disp(disp, fn, name)
            sy, sx = pair_of_ints(stride, fn, f"outputs['strides'][{k}]")
            _, _, hl, wl = disp.shape
            if disp.shape[0] != n or abs(hl * sy - h) >= sy or abs(wl * sx - w) >= sx:
                raise ValueError(
                    f"{fn}: {name} has shape {tuple(disp.shape)}, which does not match frames of "
                    f"{n} x {h} x {w} at stride {stride} (expected N={n}, about {h / sy:g} x {w / sx:g})"
                )
            scales.append(_Scale(f"l{k}", disp, (sy, sx), weights[k]))
        return scales

    def _level_weights(self, count: int) -> list[float]:
        lw = self.config.level_weights
        if lw is None:
            return [self.config.level_decay ** (count - 1 - k) for k in range(count)]
        if len(lw) != count:
            raise ValueError(
                f"UnsupervisedLoss: config.level_weights has {len(lw)} entries but the model returned {count} levels"
            )
        return [float(v) for v in lw]

    # --- terms per scale -----------------------------------------------
    def _similarity(
        self, pre: torch.Tensor, post: torch.Tensor, scale: _Scale, cache: dict[Any, torch.Tensor]
    ) -> torch.Tensor | None:
        cfg = self.config
        h, w = pre.shape[-2:]
        hl, wl = scale.disp.shape[-2:]
        disp = scale.disp
        # Small frames (smoke-test crops) get the window clipped to the frame rather than an error.
        full_window = (odd_window_for(h, cfg.ncc_window[0], 1), odd_window_for(w, cfg.ncc_window[1], 1))
        if full_window[0] * full_window[1] < 2:
            return None
        if (hl, wl) == (h, w) and scale.stride == (1, 1):
            return similarity_ncc(pre, post, disp, full_window, eps=cfg.ncc_eps, interpolation=cfg.interpolation)
        if cfg.coarse_mode == "upsample":
            # Values are already full-resolution units: resample positions only. align_corners=False
            # puts level pixel i at full-res s*i + (s-1)/2, the centre of the block it summarises.
            full = F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False)
            return similarity_ncc(pre, post, full, full_window, eps=cfg.ncc_eps, interpolation=cfg.interpolation)
        sy, sx = scale.stride
        key = (hl, wl)
        if key not in cache:
            with torch.no_grad():  # data, not parameters: no graph through the envelope
                if cfg.coarse_mode == "envelope":
                    if "env" not in cache:
                        cache["env"] = torch.cat([envelope(pre), envelope(post)], dim=0)
                    src = cache["env"]
                else:
                    src = torch.cat([pre, post], dim=0)
                # adaptive pooling = avg_pool2d(kernel=stride) when the stride divides the frame;
                # otherwise it still lands exactly on the level's grid (ceil or floor sizes).
                cache[key] = F.adaptive_avg_pool2d(src, (hl, wl))
        pooled = cache[key]
        n = pre.shape[0]
        wy = odd_window_for(hl, scaled_window(cfg.ncc_window[0], sy), minimum=1)
        wx = odd_window_for(wl, scaled_window(cfg.ncc_window[1], sx), minimum=1)
        if wy * wx < 2:
            return None  # a level too small for any NCC window: skipped, not faked
        disp_px = disp / torch.tensor([sy, sx], dtype=disp.dtype, device=disp.device).view(1, 2, 1, 1)
        return similarity_ncc(pooled[:n], pooled[n:], disp_px, (wy, wx), eps=cfg.ncc_eps)

    def _regularizers(self, scale: _Scale) -> dict[str, torch.Tensor]:
        cfg = self.config
        sy, sx = scale.stride
        out = {
            "smooth": smoothness(
                scale.disp,
                cfg.smooth_order,
                cfg.smooth_weights,
                penalty_kind=cfg.smooth_penalty,
                eps=cfg.smooth_eps,
                spacing=(float(sy), float(sx)),
                lag=tuple(max(1, round(lag / stride)) for lag, stride in zip(cfg.smooth_lag, (sy, sx))),
            )
        }
        hl, wl = scale.disp.shape[-2:]
        if hl >= 3 and wl >= 3:  # LS strain needs 3 pixels per axis; tiny levels skip these two
            window = (scaled_window(cfg.strain_window[0], sy), scaled_window(cfg.strain_window[1], sx))
            eps_ax, eps_lat = strain_pair(scale.disp, window, (float(sy), float(sx)), "UnsupervisedLoss")
            out["incompressibility"] = incompressibility_from_strains(
                eps_ax, eps_lat, cfg.incompressibility_penalty, cfg.incompressibility_eps
            ).mean()
            r_min, r_max = self._r_bounds
            out["poisson"] = poisson_from_strains(eps_ax, eps_lat, r_min, r_max, cfg.min_axial_strain).mean()
        return out

    # --- forward --------------------------------------------------------
    def forward(
        self, pre: torch.Tensor, post: torch.Tensor, outputs: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Named loss terms for frames ``pre``/``post`` (N x C x H x W) and the model's ``outputs``."""
        fn = "UnsupervisedLoss"
        check_frames(pre, fn, "pre")
        check_frames(post, fn, "post")
        if pre.shape != post.shape:
            raise ValueError(
                f"{fn}: pre and post must have the same shape, got {tuple(pre.shape)} and {tuple(post.shape)}"
            )
        n, _, h, w = pre.shape
        scales = self._scales(outputs, n, h, w)
        cfg = self.config
        dtype = compute_dtype(pre, post, *(s.disp for s in scales))
        with full_precision(pre.device):
            pre_, post_ = pre.to(dtype), post.to(device=pre.device, dtype=dtype)
            sums: dict[str, list[tuple[float, torch.Tensor]]] = {t: [] for t in TERMS}
            result: dict[str, torch.Tensor] = {}
            cache: dict[Any, torch.Tensor] = {}
            for scale in scales:
                scale.disp = scale.disp.to(dtype)
                sim = self._similarity(pre_, post_, scale, cache)
                if sim is not None:
                    result[f"similarity_{scale.name}"] = sim
                    sums["similarity"].append((scale.weight, sim))
                if scale.name == "final" or cfg.regularize_levels:
                    for term, value in self._regularizers(scale).items():
                        sums[term].append((scale.weight, value))
            zero = torch.zeros((), dtype=dtype, device=pre.device)
            total = zero
            for term in TERMS:
                parts = sums[term]
                weight_sum = sum(wt for wt, _ in parts)
                value = sum((wt * v for wt, v in parts), zero) / weight_sum if weight_sum > 0 else zero
                result[term] = value
                total = total + getattr(cfg, f"{term}_weight") * value
            if cfg.block_matching_weight > 0:
                bm = block_matching_consistency(
                    pre_[:, :1], post_[:, :1], scales[0].disp, cfg.block_matching_window,
                    cfg.block_matching_radius, interpolation="spline",
                    guide_smoothing=cfg.block_matching_guide_smoothing,
                )
                result["block_matching"] = bm
                total = total + cfg.block_matching_weight * bm
            result["total"] = total
        return result


__all__ = ["COARSE_MODES", "TERMS", "UnsupervisedLoss", "UnsupervisedLossConfig"]
