"""Width scaling of registered configs, for budget sweeps of networks trained from scratch.

:func:`width_overrides` turns a width multiplier into ``model_overrides`` of
:class:`cdpkd.recipes.UnsupervisedRecipe` (plain JSON values, so they enter
cache keys); :func:`overrides_for_parameters` finds the multiplier that gives
a target parameter count (bisection on the exact count of the built model).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .baselines import DSPWCConfig, UNetConfig
from .config import PWCConfig
from .registry import build_model, count_parameters, get_config


def _scale(c: int, m: float) -> int:
    return max(4, int(math.floor(c * m + 0.5)))


def width_overrides(config: Any, width_multiplier: float) -> dict[str, Any]:
    """``model_overrides`` scaling every conv width of ``config`` by ``width_multiplier`` (rounded, >= 4).

    PWC family (and the depthwise-separable variant): :meth:`PWCConfig.scaled`;
    U-Net baselines: encoder and decoder widths.
    """
    m = float(width_multiplier)
    if not math.isfinite(m) or m <= 0:
        raise ValueError(
            f"width_overrides: width_multiplier must be a positive number, got {width_multiplier!r}"
        )
    if isinstance(config, PWCConfig):
        scaled = config.scaled(m).to_dict()
        return {k: scaled[k] for k in ("pyramid_channels", "estimator_widths", "context_widths")}
    if isinstance(config, DSPWCConfig):
        return {"pwc": config.pwc.scaled(m).to_dict()}
    if isinstance(config, UNetConfig):
        return {
            "encoder_widths": [_scale(c, m) for c in config.encoder_widths],
            "decoder_widths": [_scale(c, m) for c in config.decoder_widths],
        }
    raise TypeError(f"width_overrides: no width scaling for {type(config).__name__}")


def _parameters(config: Any, overrides: dict[str, Any]) -> int:
    return count_parameters(build_model(dataclasses.replace(config, **overrides)))


def overrides_for_parameters(
    name: str, target_parameters: int, *, iterations: int = 40
) -> tuple[dict[str, Any], int]:
    """Width ``model_overrides`` of registered model ``name`` with about ``target_parameters`` parameters.

    Bisection on the width multiplier (parameters grow monotonically with it);
    returns the overrides with the largest count not above the target, and that count.
    Widths are integers, so small networks land below the target by up to one
    width step (the count returned says by how much). Raises ``ValueError`` when
    the target is below the narrowest network (widths 4).
    """
    if not isinstance(target_parameters, int) or target_parameters < 1:
        raise ValueError(f"target_parameters must be a positive integer, got {target_parameters!r}")
    config = get_config(name)
    lo, hi = 1e-3, 1.0
    while _parameters(config, width_overrides(config, hi)) <= target_parameters:
        lo, hi = hi, hi * 2
        if hi > 64:
            raise ValueError(f"{name}: no width up to x64 reaches {target_parameters:,} parameters")
    if _parameters(config, width_overrides(config, lo)) > target_parameters:
        raise ValueError(f"{name}: even the narrowest widths (4) exceed {target_parameters:,} parameters")
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if _parameters(config, width_overrides(config, mid)) <= target_parameters:
            lo = mid
        else:
            hi = mid
    overrides = width_overrides(config, lo)
    return overrides, _parameters(config, overrides)


__all__ = ["overrides_for_parameters", "width_overrides"]
