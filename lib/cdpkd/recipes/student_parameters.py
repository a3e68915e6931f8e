"""The students' and baselines' recipes of notebooks 02-05 from the notebooks' parameters.

Like :func:`~cdpkd.recipes.teacher_base_recipe`, one place builds each recipe, so every
notebook (or script, via ``cdpkd.pipeline.resolved_parameters``) that takes the same parameters
trains, or reuses, the same cached artifact. ``params`` is a notebook's ``globals()`` or a
resolved-parameters dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .students import CDPKDRecipe, DPNetRecipe
from .teacher import (
    TEACHER_PARAMETERS,
    final_teacher_loss,
    network_crop,
    require_parameters,
    teacher_base_recipe,
)
from .unsupervised import UnsupervisedRecipe

# shared by every student and baseline: budget, crop, batch, validation, data options
STUDENT_PARAMETERS = (
    "params_fraction", "flops_fraction", "min_channels", "student_width_multiple", "teacher_crop_samples",
    "teacher_crop_lines",
    "student_batch_size", "val_pairs", "student_val_every", "strain_window", "seed", "student_release_fraction",
    "student_axial_offset", "teacher_refine", *TEACHER_PARAMETERS,
)
DPNET_PARAMETERS = ("dpnet_steps", "dpnet_lr", "dpnet_init")
# CDP-KDNet's method settings; its length (steps, finetune_steps) and lr are separate, since the
# ablations keep the method and change the length
CDP_METHOD_PARAMETERS = (
    "cdp_criterion", "prune_start", "prune_end", "prune_every", "distiller", "distiller_options", "kd_weight",
    "kd_final_weight", "curriculum", "pacing", "start_fraction", "end_step_fraction", "difficulty", "finetune_lr",
)
CDP_KDNET_PARAMETERS = (*CDP_METHOD_PARAMETERS, "cdp_steps", "cdp_lr", "finetune_steps")
BASELINE_PARAMETERS = ("baseline_steps", "baseline_lr", "baseline_warmup_steps")
# notebook 04: the short setting shared by most questions, and the components question's own
# setting (each None falls back to its ablation_* counterpart)
ABLATION_PARAMETERS = ("ablation_seeds", "ablation_steps", "ablation_finetune_steps", "ablation_batch_size")
COMPONENT_PARAMETERS = ("component_seeds", "component_steps", "component_finetune_steps", "component_batch_size")
# ablation runs keep no validation split: every pair trains, the test set scores the variants
NO_VALIDATION: dict[str, Any] = {"val_pairs": 0, "val_every": None}


def student_loss(params: Mapping[str, Any]) -> dict[str, Any]:
    """The loss settings of the teacher's last stage (base loss updated by ``teacher_refine``):
    the students and baselines train with the same unsupervised loss as the teacher."""
    require_parameters(params, (*TEACHER_PARAMETERS, "teacher_refine"), "student_loss")
    return final_teacher_loss(teacher_base_recipe(params), params["teacher_refine"])


def student_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """Fields every student recipe shares: ``budget`` (``params_fraction``, ``flops_fraction``,
    ``min_channels``, ``student_width_multiple``), ``crop`` (samples, lines; the teacher's last stage's:
    :func:`~cdpkd.recipes.network_crop`), ``batch_size``, ``loss``, validation, LS
    strain window (samples), ``seed`` and the training-data options."""
    require_parameters(params, STUDENT_PARAMETERS, "student_settings")
    return dict(
        budget=dict(params_fraction=params["params_fraction"], flops_fraction=params["flops_fraction"],
                    min_channels=params["min_channels"], multiple_of=params["student_width_multiple"]),
        crop=network_crop(params),
        batch_size=params["student_batch_size"], loss=student_loss(params), val_pairs=params["val_pairs"],
        val_every=params["student_val_every"], strain_window=params["strain_window"], seed=params["seed"],
        release_fraction=params["student_release_fraction"], axial_offset=params["student_axial_offset"],
    )


def cdp_method_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """CDP-KDNet's method fields (pruning, distillation, curriculum, fine-tuning lr) without its
    training length and lr."""
    require_parameters(params, CDP_METHOD_PARAMETERS, "cdp_method_settings")
    settings = {name: params[name] for name in CDP_METHOD_PARAMETERS}
    settings["criterion"] = settings.pop("cdp_criterion")
    return settings


def dpnet_recipe(params: Mapping[str, Any]) -> DPNetRecipe:
    """Notebook 02's DP-Net: ``dpnet_steps`` at ``dpnet_lr`` from ``dpnet_init``."""
    require_parameters(params, (*STUDENT_PARAMETERS, *DPNET_PARAMETERS), "dpnet_recipe")
    return DPNetRecipe(**student_settings(params), steps=params["dpnet_steps"], lr=params["dpnet_lr"],
                       init=params["dpnet_init"])


def cdp_kdnet_recipe(params: Mapping[str, Any]) -> CDPKDRecipe:
    """Notebook 03's CDP-KDNet: ``cdp_steps`` at ``cdp_lr``, then ``finetune_steps``."""
    require_parameters(params, (*STUDENT_PARAMETERS, *CDP_KDNET_PARAMETERS), "cdp_kdnet_recipe")
    return CDPKDRecipe(**student_settings(params), **cdp_method_settings(params), steps=params["cdp_steps"],
                       lr=params["cdp_lr"], finetune_steps=params["finetune_steps"])


def baseline_recipe(params: Mapping[str, Any]) -> UnsupervisedRecipe:
    """The lightweight baselines' shared recipe (``teacher_model`` is a placeholder: each
    baseline variant sets its own model and widths), with the students' loss, crop and data."""
    require_parameters(params, (*STUDENT_PARAMETERS, *BASELINE_PARAMETERS), "baseline_recipe")
    shared = student_settings(params)
    del shared["budget"]  # a baseline's size is its own architecture's
    return UnsupervisedRecipe(model=params["teacher_model"], **shared, steps=params["baseline_steps"],
                              lr=params["baseline_lr"], warmup_steps=params["baseline_warmup_steps"])


def _unvalidated_cdp_kdnet(params: Mapping[str, Any], steps: int, finetune_steps: int, batch_size: int) -> CDPKDRecipe:
    """Notebook 03's CDP-KDNet at another length and batch size, without a validation split."""
    return replace(cdp_kdnet_recipe(params), steps=steps, finetune_steps=finetune_steps, batch_size=batch_size,
                   **NO_VALIDATION)


def component_setting(params: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 04's components question: ``seeds``, ``steps``, ``finetune_steps`` and
    ``batch_size``, each its ``component_*`` parameter or, where that is None, its ``ablation_*`` one."""
    require_parameters(params, (*ABLATION_PARAMETERS, *COMPONENT_PARAMETERS), "component_setting")
    names = (name.removeprefix("component_") for name in COMPONENT_PARAMETERS)
    return {name: params[f"ablation_{name}"] if params[f"component_{name}"] is None else params[f"component_{name}"]
            for name in names}


def ablation_bases(params: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 04's base recipes of the short questions, by variant kind: CDP-KDNet with
    ``ablation_steps`` + ``ablation_finetune_steps`` updates of batch ``ablation_batch_size``,
    DP-Net with as many updates, and the baselines' recipe; none keeps a validation split."""
    require_parameters(params, ABLATION_PARAMETERS, "ablation_bases")
    batch = params["ablation_batch_size"]
    updates = params["ablation_steps"] + params["ablation_finetune_steps"]
    return {
        "cdp_kdnet": _unvalidated_cdp_kdnet(params, params["ablation_steps"], params["ablation_finetune_steps"], batch),
        "dpnet": replace(dpnet_recipe(params), steps=updates, batch_size=batch, **NO_VALIDATION),
        "baseline": baseline_recipe(params),
    }


def component_bases(params: Mapping[str, Any]) -> dict[str, CDPKDRecipe]:
    """Notebook 04's base recipe of the components question (``{"cdp_kdnet": recipe}``): CDP-KDNet
    at the length of :func:`component_setting`, without a validation split."""
    setting = component_setting(params)
    return {"cdp_kdnet": _unvalidated_cdp_kdnet(params, setting["steps"], setting["finetune_steps"],
                                                setting["batch_size"])}
