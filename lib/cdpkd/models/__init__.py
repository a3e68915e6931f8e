"""Displacement networks: one configurable PWC-family network, baselines, and named configurations.

Public API:

- ``PWCConfig``: frozen dataclass with every conv width explicit
  (``to_dict``/``from_dict``/``to_json``/``from_json``, ``scaled(m)``, ``replace``).
- ``PWCNet(config)``: ``forward(pre, post, return_features=False)`` -> dict with
  "displacement" (N x 2 x H x W, samples / lines), "levels" (coarse to fine,
  full-resolution units), "strides", "pyramid_levels", optionally "features".
- ``GOCorrelation``: GOCor-style optimized local cost volume; ``transposed_correlation``.
- ``MODEL_CONFIGS`` (name -> config factory), ``build_model(name_or_config, seed=None)``,
  ``count_parameters(model)``, ``model_spec(model)``.
- ``save_model(path, model)`` / ``load_model(path)``: spec JSON + state_dict, no pickle.
- Baselines (``cdpkd.models.baselines``, same forward convention): ``USENet`` /
  ``USENetConfig``, ``DPUNet`` / ``DPUNetConfig``, ``DSPWCNet`` / ``DSPWCConfig``;
  named configurations in ``BASELINE_CONFIGS`` (also accepted by ``get_config`` /
  ``build_model``).
"""

from .baselines import DPUNet, DPUNetConfig, DSPWCConfig, DSPWCNet, USENet, USENetConfig
from .config import PWCConfig
from .gocor import GOCorrelation, transposed_correlation
from .io import load_model, save_model
from .pwc import PWCNet
from .registry import (
    ARCHITECTURES,
    BASELINE_CONFIGS,
    MODEL_CONFIGS,
    build_model,
    count_parameters,
    get_config,
    model_spec,
)
from .scaling import overrides_for_parameters, width_overrides

__all__ = [
    "ARCHITECTURES",
    "BASELINE_CONFIGS",
    "DPUNet",
    "DPUNetConfig",
    "DSPWCConfig",
    "DSPWCNet",
    "GOCorrelation",
    "MODEL_CONFIGS",
    "PWCConfig",
    "PWCNet",
    "USENet",
    "USENetConfig",
    "build_model",
    "count_parameters",
    "get_config",
    "load_model",
    "model_spec",
    "overrides_for_parameters",
    "save_model",
    "transposed_correlation",
    "width_overrides",
]
