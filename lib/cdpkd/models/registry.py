"""Named model configurations, model building and parameter counting.

``MODEL_CONFIGS`` maps a name to a zero-argument factory returning a
:class:`PWCConfig` (a plain dict, so notebooks and profiles can add entries).
Exact parameter counts (asserted in tests/test_models_registry.py):

==========================  ===========  ==================================================
name                        parameters   what
==========================  ===========  ==================================================
``umen_teacher``              9,366,466  UMEN-Net teacher, plain correlation (DESIGN.md 1)
``umen_teacher_gocor``        9,366,536  the same with GOCor cost volumes (+70 parameters)
``umen_teacher_cpu``          2,629,020  width x0.5, one full-resolution level (2-core CPU)
``umen_teacher_smoke``            9,954  tiny, for CI / smoke notebooks
``dpnet``                     3,654,664  teacher topology, width x0.6 (DP-Net)
``dpnet_cpu``                 1,082,800  ``umen_teacher_cpu`` topology, width x0.6
``dpnet_smoke``                   6,819  ``umen_teacher_smoke`` topology, width x0.6 (min 4)
==========================  ===========  ==================================================

Baselines for the ablation (``BASELINE_CONFIGS``, kept apart from
``MODEL_CONFIGS`` so code that iterates the PWC family keeps getting
``PWCConfig``; :func:`get_config` and :func:`build_model` accept both).
The ``*_cpu`` widths are chosen so the parameter counts match ``dpnet_cpu``
(the 40 %-of-teacher student of ``umen_teacher_cpu``, 1,082,800) within 2 %.
Exact counts asserted in tests/test_models_baselines.py; GFLOPs per 256 x 128
pair (``cdpkd.complexity.count_flops``) for reference (``dpnet_cpu``: 5.16):

==========================  ===========  ======  =========================================
name                        parameters   GFLOPs  what
==========================  ===========  ======  =========================================
``usenet_cpu``                1,065,610    2.94  USENet-style U-Net, 5 levels, 2 convs/block
``usenet_smoke``                  4,966          3 levels, widths 4/8/8
``dpunet_cpu``                1,099,122    4.91  DPU-Net-style U-Net, 5 levels, dilations 1/2/4
``dpunet_smoke``                  7,606          3 levels, widths 4/8/8, dilations 1/2
``dspwc_cpu``                 1,074,792    5.00  ``umen_teacher_cpu`` topology, teacher widths
                                                 x0.92, depthwise-separable convs
``dspwc_smoke``                   4,397          ``umen_teacher_smoke``, depthwise-separable
==========================  ===========  ======  =========================================

Teacher correlation: UMEN-Net uses a GOCor-style volume. Its FLOPs are
negligible (< 1 % of the teacher's 175 GFLOPs per 256 x 128 pair), but the
unrolled steps run as many small ops (the transposed correlation loops over
the 45 window offsets: ~700 extra kernels per forward on GPU) and add 15 % to
100 % to the teacher's CPU forward (1.5 s -> 1.75-3.1 s on 2 cores, depending
on load). So, as issue 4 asks, ``umen_teacher`` uses plain correlation and
``umen_teacher_gocor`` is the paper-faithful variant for the ablation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .baselines import DPUNet, DPUNetConfig, DSPWCConfig, DSPWCNet, USENet, USENetConfig
from .config import PWCConfig
from .pwc import PWCNet

TEACHER_CPU_WIDTH = 0.5
DPNET_WIDTH = 0.6
# Separable convs cut umen_teacher_cpu from 2.63 M to 0.40 M parameters: widen to match dpnet_cpu's count.
DSPWC_CPU_WIDTH = 0.92

# Any registered architecture's config.
ModelConfig = PWCConfig | USENetConfig | DPUNetConfig | DSPWCConfig


def umen_teacher() -> PWCConfig:
    """UMEN-Net teacher: 6 levels 16/32/64/96/128/196 (3 convs each, first two at full
    resolution), dense estimators 128/128/96/64/32 at levels 5..1 (strides 16..1),
    search radius 4 axial x 2 lateral, upfeat 2, dilated context 128/128/128/96/64/32
    (dilations 1/2/4/8/16/1), plain correlation. 9,366,466 parameters (paper: ~9.4 M).
    """
    return PWCConfig()


def umen_teacher_gocor() -> PWCConfig:
    """The teacher with GOCor-style optimized cost volumes (3 steps). 9,366,536 parameters."""
    return PWCConfig(correlation="gocor", gocor_steps=3)


def umen_teacher_cpu() -> PWCConfig:
    """Teacher for 2-core CPU training: widths x0.5 and only level 0 at full resolution,
    so the finest estimator runs at stride 2 (its output is upsampled bilinearly):
    about 4x fewer FLOPs than the same widths at full resolution. 2,629,020 parameters.
    """
    return PWCConfig(full_res_levels=1).scaled(TEACHER_CPU_WIDTH)


def umen_teacher_smoke() -> PWCConfig:
    """Tiny 3-level network (strides 1, 2, 4) for CI: 9,954 parameters."""
    return PWCConfig(
        pyramid_channels=(4, 8, 8),
        pyramid_convs=1,
        full_res_levels=1,
        estimator_levels=(2, 1),
        estimator_widths=(6, 4),
        search_radii=(2, 1),
        context_widths=(6,),
        context_dilations=(2,),
    )


def dpnet() -> PWCConfig:
    """DP-Net: the teacher's topology with every width x0.6. 3,654,664 parameters."""
    return umen_teacher().scaled(DPNET_WIDTH)


def dpnet_cpu() -> PWCConfig:
    """DP-Net for the cpu profile: ``umen_teacher_cpu`` widths x0.6. 1,082,800 parameters."""
    return umen_teacher_cpu().scaled(DPNET_WIDTH)


def dpnet_smoke() -> PWCConfig:
    """DP-Net for the smoke profile: ``umen_teacher_smoke`` widths x0.6 (min 4). 6,819 parameters."""
    return umen_teacher_smoke().scaled(DPNET_WIDTH)


MODEL_CONFIGS: dict[str, Callable[[], PWCConfig]] = {
    "umen_teacher": umen_teacher,
    "umen_teacher_gocor": umen_teacher_gocor,
    "umen_teacher_cpu": umen_teacher_cpu,
    "umen_teacher_smoke": umen_teacher_smoke,
    "dpnet": dpnet,
    "dpnet_cpu": dpnet_cpu,
    "dpnet_smoke": dpnet_smoke,
}


def usenet_cpu() -> USENetConfig:
    """USENet-style U-Net, encoder 16/32/64/96/160 (strides 1..16), decoder 16/32/64/96,
    2 convs per block, heads at every scale. 1,065,610 parameters."""
    return USENetConfig(encoder_widths=(16, 32, 64, 96, 160), decoder_widths=(16, 32, 64, 96))


def usenet_smoke() -> USENetConfig:
    """Tiny USENet-style U-Net for CI: 3 levels (strides 1, 2, 4). 4,966 parameters."""
    return USENetConfig(encoder_widths=(4, 8, 8), decoder_widths=(4, 8))


def dpunet_cpu() -> DPUNetConfig:
    """DPU-Net-style U-Net, encoder 16/32/48/64/88, decoder 16/32/48/64, one residual
    dilated-parallel block (dilations 1/2/4, concat fusion) per level. 1,099,122 parameters."""
    return DPUNetConfig(encoder_widths=(16, 32, 48, 64, 88), decoder_widths=(16, 32, 48, 64))


def dpunet_smoke() -> DPUNetConfig:
    """Tiny DPU-Net-style U-Net for CI: 3 levels, dilations 1/2. 7,606 parameters."""
    return DPUNetConfig(encoder_widths=(4, 8, 8), decoder_widths=(4, 8), dilations=(1, 2))


def dspwc_cpu() -> DSPWCConfig:
    """``umen_teacher_cpu`` topology at teacher widths x0.92 with depthwise-separable pyramid,
    estimator and context convs. 1,074,792 parameters."""
    pwc = umen_teacher().replace(full_res_levels=1).scaled(DSPWC_CPU_WIDTH)
    return DSPWCConfig(pwc=pwc)


def dspwc_smoke() -> DSPWCConfig:
    """``umen_teacher_smoke`` with depthwise-separable convs. 4,397 parameters."""
    return DSPWCConfig(pwc=umen_teacher_smoke())


BASELINE_CONFIGS: dict[str, Callable[[], ModelConfig]] = {
    "usenet_cpu": usenet_cpu,
    "usenet_smoke": usenet_smoke,
    "dpunet_cpu": dpunet_cpu,
    "dpunet_smoke": dpunet_smoke,
    "dspwc_cpu": dspwc_cpu,
    "dspwc_smoke": dspwc_smoke,
}

# Architecture name (stored in saved models) -> (config class, model class).
ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "pwc": (PWCConfig, PWCNet),
    USENet.architecture: (USENetConfig, USENet),
    DPUNet.architecture: (DPUNetConfig, DPUNet),
    DSPWCNet.architecture: (DSPWCConfig, DSPWCNet),
}


def get_config(name: str) -> ModelConfig:
    """The registered config ``name`` (``MODEL_CONFIGS`` or ``BASELINE_CONFIGS``); a clear error lists the known names."""
    factory = MODEL_CONFIGS.get(name) or BASELINE_CONFIGS.get(name)
    if factory is None:
        known = sorted(MODEL_CONFIGS) + sorted(BASELINE_CONFIGS)
        raise ValueError(f"unknown model name {name!r}; known: {known}")
    return factory()


def _model_class(config: Any) -> type[nn.Module] | None:
    """The model class whose config class is exactly ``type(config)``, or None."""
    for config_cls, model_cls in ARCHITECTURES.values():
        if type(config) is config_cls:
            return model_cls
    return None


def model_spec(model: nn.Module) -> dict[str, Any]:
    """JSON-able description that rebuilds ``model``'s architecture: {"architecture", "config"}."""
    arch = getattr(model, "architecture", None)
    if arch not in ARCHITECTURES or not hasattr(model, "config"):
        raise ValueError(f"model of type {type(model).__name__} has no registered architecture/config")
    return {"architecture": arch, "config": model.config.to_dict()}


def _from_spec(spec: Mapping[str, Any]) -> nn.Module:
    arch = spec.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    if not isinstance(spec.get("config"), Mapping):
        raise ValueError(f"model spec for {arch!r} needs a 'config' mapping, got {spec.get('config')!r}")
    config_cls, model_cls = ARCHITECTURES[arch]
    return model_cls(config_cls.from_dict(spec["config"]))


def build_model(
    name_or_config: str | ModelConfig | Mapping[str, Any], *, seed: int | None = None
) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name_or_config: a ``MODEL_CONFIGS`` / ``BASELINE_CONFIGS`` name, a config
            of a registered architecture (:class:`PWCConfig`, ``USENetConfig``,
            ``DPUNetConfig``, ``DSPWCConfig``), a ``PWCConfig.to_dict()`` dict,
            or a :func:`model_spec` dict (any architecture).
        seed: if given, the weights are drawn from this seed without touching
            the global RNG state (same seed, same weights on CPU).
    """
    if isinstance(name_or_config, str):
        config: Any = get_config(name_or_config)
    elif _model_class(name_or_config) is not None:
        config = name_or_config
    elif isinstance(name_or_config, Mapping):
        if "architecture" in name_or_config:
            config = name_or_config
        else:
            config = PWCConfig.from_dict(name_or_config)
    else:
        known = ", ".join(cls.__name__ for cls, _ in ARCHITECTURES.values())
        raise ValueError(
            f"build_model: expected a name, a config ({known}) or dict, got {type(name_or_config).__name__}"
        )

    def make() -> nn.Module:
        if isinstance(config, Mapping):
            return _from_spec(config)
        return _model_class(config)(config)

    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Exact number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
