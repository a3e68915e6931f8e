"""``PWCNet``: the configurable PWC-family displacement network (teacher, DP-Net, pruned students).

Coarse to fine over ``config.estimator_levels``: upsample the previous
displacement, warp the post-frame features by it, build a local cost volume
(plain or GOCor) + LeakyReLU, feed [cost, pre features, displacement,
upsampled estimator features] to a dense estimator that predicts a residual
displacement; a dilated context network refines the finest estimate, and an
optional head (``refine_widths``, :mod:`.refine`) refines it again at full
resolution from an NCC cost volume on the RF.

Units: inside the network a level's displacement is in *that level's* pixels
(what ``warp`` needs at that resolution); when moving to a finer level it is
upsampled bilinearly and multiplied by the stride ratio. Every returned
displacement is in full-resolution units (samples axially, lines laterally).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cdpkd.classic.pyramid import edge_box_mean
from cdpkd.ops import warp

from .blocks import he_init_, small_init_
from .config import PWCConfig
from .context import ContextNetwork
from .cost import make_cost_volume
from .estimator import LevelEstimator
from .inputs import check_pair, crop_level, envelope, normalize_pair, pad_to_multiple
from .pyramid import FeaturePyramid
from .refine import NCCRefinement


def upsample(x: torch.Tensor, size: tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """Bilinear resize to ``size`` (h, w), values multiplied by ``scale``."""
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x * scale if scale != 1.0 else x


class PWCNet(nn.Module):
    """PWC-family displacement network built entirely from a :class:`PWCConfig`.

    ``forward(pre, post, return_features=False)``:

    Args:
        pre, post: RF frames N x in_channels x H x W (H axial samples, W
            lateral lines), any H, W >= 1. They are zero-padded at the
            bottom/right to multiples of ``config.total_stride`` and every
            output is cropped back (padding + cropping, so odd sizes work).

    Returns a dict:
        "displacement": N x 2 x H x W, channel 0 axial (samples), 1 lateral
            (lines): warp(post, displacement) ~ pre.
        "levels": list, coarse to fine, one per estimator level, of
            N x 2 x ceil(H / s) x ceil(W / s) displacements **in full-resolution
            units**; the last entry is after the context network.
        "strides": list of the per-level downsampling factors s (ints).
        "pyramid_levels": the pyramid level index of each entry.
        "features" (only if ``return_features``): dict of lists aligned with
            "levels": "pre" (pre-frame pyramid features N x C_l x h x w),
            "estimator" (last estimator conv's activation N x widths[-1] x h x w),
            "cost" (cost volume after LeakyReLU N x D_l x h x w).

    Displacements are float32 (the model's parameter dtype) even under
    autocast: the 2-channel heads run outside it (see ``blocks.full_precision``).

    Raises ``ValueError`` for a non-tensor, wrong ndim, non-float, empty,
    pre/post shape mismatch, wrong channel count, or NaN/Inf input (the
    finiteness check costs one fused reduction; set ``model.check_finite =
    False`` to skip it, e.g. in timed loops or under ``torch.compile``).
    """

    architecture = "pwc"

    def __init__(self, config: PWCConfig) -> None:
        super().__init__()
        if not isinstance(config, PWCConfig):
            raise TypeError(f"PWCNet needs a PWCConfig, got {type(config).__name__}")
        self.config = config
        self.check_finite = True
        self.pyramid = FeaturePyramid(config)
        self.cost_volumes = nn.ModuleList()
        self.estimators = nn.ModuleList()
        last = len(config.estimator_levels) - 1
        for i, (level, widths, (ra, rl)) in enumerate(
            zip(config.estimator_levels, config.estimator_widths, config.search_radii)
        ):
            self.cost_volumes.append(
                make_cost_volume(config.correlation, ra, rl, config.gocor_steps, config.cost_window(i))
            )
            d = (2 * ra + 1) * (2 * rl + 1)
            in_ch = d + config.pyramid_channels[level][-1] + (0 if i == 0 else 2 + config.upfeat_channels)
            self.estimators.append(
                LevelEstimator(
                    in_ch,
                    widths,
                    dense=config.dense,
                    slope=config.leaky_slope,
                    upfeat_channels=config.upfeat_channels if i < last else 0,
                )
            )
        self.context = None
        if config.context:
            self.context = ContextNetwork(
                self.estimators[-1].out_channels + 2,
                config.context_widths,
                config.context_dilations,
                config.leaky_slope,
            )

        self.refine = None
        if config.refine_widths:
            self.refine = NCCRefinement(config.pyramid_channels[0][-1], config.refine_widths, config.refine_radius,
                                        config.refine_window, slope=config.leaky_slope, peak=config.refine_peak,
                                        interpolation=config.refine_interp)

        he_init_(self, config.leaky_slope)
        heads = [e.predict for e in self.estimators] + ([self.context.predict] if self.context is not None else [])
        heads += [self.refine.predict] if self.refine is not None else []
        for head in heads:  # displacement heads start near zero (see small_init_)
            small_init_(head)

    def _prepare(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """Normalised, envelope-augmented, padded frames stacked as 2N x C' x H' x W'."""
        cfg = self.config
        dtype = self.pyramid.levels[0][0].weight.dtype
        pre, post = pre.to(dtype), post.to(dtype)
        if cfg.normalize_input:
            pre, post = normalize_pair(pre, post)
        x = torch.cat((pre, post), dim=0)  # one pyramid pass for both frames (shared weights)
        if cfg.input_mode == "rf+envelope":
            x = torch.cat((x, envelope(x)), dim=1)
        return pad_to_multiple(x, cfg.total_stride)

    def forward(self, pre: torch.Tensor, post: torch.Tensor, return_features: bool = False) -> dict[str, Any]:
        cfg = self.config
        check_pair(pre, post, cfg.in_channels, check_finite=self.check_finite)
        n, _, height, width = pre.shape
        feats = self.pyramid(self._prepare(pre, post))
        slope = cfg.leaky_slope

        disp = upfeat = None  # displacement in the current level's pixels
        prev_stride = 1
        levels, f_pre, f_est, f_cost = [], [], [], []
        last = len(cfg.estimator_levels) - 1
        for i, level in enumerate(cfg.estimator_levels):
            stride = cfg.level_stride(level)
            f1, f2 = feats[level][:n], feats[level][n:]
            size = (f1.shape[-2], f1.shape[-1])
            extra: list[torch.Tensor] = []
            if disp is not None:
                disp = upsample(disp, size, prev_stride / stride)  # to this level's pixel units
                f2 = warp(f2, disp)
                extra.append(disp)
                if upfeat is not None:
                    extra.append(upsample(upfeat, size))
            cost = F.leaky_relu(self.cost_volumes[i](f1, f2), slope)
            hidden, last_act, residual, upfeat = self.estimators[i](torch.cat([cost, f1, *extra], dim=1))
            disp = residual if disp is None else disp + residual
            if i == last and self.context is not None:
                disp = disp + self.context(torch.cat((hidden, disp), dim=1))
            prev_stride = stride
            levels.append(crop_level(disp * stride, height, width, stride))
            if return_features:
                f_pre.append(crop_level(f1, height, width, stride))
                f_est.append(crop_level(last_act, height, width, stride))
                f_cost.append(crop_level(cost, height, width, stride))

        full = disp * prev_stride
        if prev_stride > 1:  # finest estimator below full resolution: bilinear to the input grid
            full = upsample(full, tuple(feats[0].shape[-2:]))
        full = full[..., :height, :width]
        if self.refine is not None:  # full-resolution residual from the RF NCC volume (models/refine.py)
            rf_pre, rf_post, level0 = pre[:, :1], post[:, :1], feats[0][:n, :, :height, :width]
            for _ in range(cfg.refine_passes):
                guide = edge_box_mean(full, cfg.refine_guide_smoothing)  # `full` itself at (1, 1)
                full = guide + self.refine(rf_pre, rf_post, guide, level0)
        out: dict[str, Any] = {
            "displacement": full,
            "levels": levels,
            "strides": list(cfg.strides),
            "pyramid_levels": list(cfg.estimator_levels),
        }
        if return_features:
            out["features"] = {"pre": f_pre, "estimator": f_est, "cost": f_cost}
        return out

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"levels={cfg.num_levels}, full_res_levels={cfg.full_res_levels}, "
            f"estimator_levels={cfg.estimator_levels}, correlation={cfg.correlation!r}"
        )
