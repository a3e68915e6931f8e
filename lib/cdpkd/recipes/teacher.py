"""The teacher of notebooks 01-05: its recipe from the notebooks' parameters and its training
stages (a base run, then refinement stages that continue from it).

One place builds the teacher recipe, so notebooks and scripts that take the same parameters
(``cdpkd.pipeline.resolved_parameters``) get the same cached artifacts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .unsupervised import UnsupervisedRecipe, ensure_unsupervised_model

# one refinement stage (recipe fields to change), a chain of them, or none
RefineSpec = dict[str, Any] | list[dict[str, Any]] | None

# the notebooks' parameters the base recipe is built from
TEACHER_PARAMETERS = (
    "teacher_model", "teacher_model_overrides", "teacher_crop_samples", "teacher_crop_lines", "teacher_steps",
    "teacher_batch_size", "teacher_lr", "teacher_warmup_steps", "teacher_val_every", "teacher_loss_overrides",
    "val_pairs", "strain_window", "seed",
)


def require_parameters(params: Mapping[str, Any], names: Iterable[str], what: str) -> None:
    """Raise one KeyError naming every parameter of ``names`` that ``params`` lacks (for the
    recipe builders of ``what``)."""
    missing = sorted(set(names) - set(params))
    if missing:
        raise KeyError(f"{what}: parameters {missing} are missing")


def teacher_base_recipe(params: Mapping[str, Any]) -> UnsupervisedRecipe:
    """The base stage's recipe from the notebooks' parameters (a notebook's ``globals()`` or
    :func:`cdpkd.pipeline.resolved_parameters`): ``teacher_model``, ``teacher_model_overrides``,
    ``teacher_crop_samples``/``_lines``, ``teacher_steps``, ``teacher_batch_size``, ``teacher_lr``,
    ``teacher_warmup_steps``, ``teacher_val_every``, ``teacher_loss_overrides``, ``val_pairs``,
    ``strain_window`` and ``seed``."""
    require_parameters(params, TEACHER_PARAMETERS, "teacher_base_recipe")
    return UnsupervisedRecipe(
        model=params["teacher_model"], model_overrides=dict(params["teacher_model_overrides"]),
        crop=(int(params["teacher_crop_samples"]), int(params["teacher_crop_lines"])),
        steps=int(params["teacher_steps"]), batch_size=int(params["teacher_batch_size"]),
        lr=float(params["teacher_lr"]), warmup_steps=int(params["teacher_warmup_steps"]),
        val_pairs=int(params["val_pairs"]), val_every=params["teacher_val_every"],
        loss=dict(params["teacher_loss_overrides"]), strain_window=int(params["strain_window"]),
        seed=int(params["seed"]),
    )


def teacher_stage_recipes(params: Mapping[str, Any]) -> list[UnsupervisedRecipe]:
    """Every stage's recipe of the teacher the parameters describe, without training anything:
    :func:`teacher_base_recipe`, then one per ``teacher_refine`` stage (:func:`refinement_recipe`;
    ``init_from`` is a label, ``"teacher/stage-<n>"``, not an artifact). The last one's
    ``model_config()`` is the teacher's architecture, e.g. for costs measured with random weights."""
    recipes = [teacher_base_recipe(params)]
    for number, changes in enumerate(refine_stages(params.get("teacher_refine"))):
        recipes.append(refinement_recipe(recipes[-1], changes, f"teacher/stage-{number}"))
    return recipes


def network_crop(params: Mapping[str, Any]) -> tuple[int, int]:
    """The crop (samples, lines) of the teacher's last stage: ``teacher_crop_samples`` x
    ``teacher_crop_lines`` unless a ``teacher_refine`` stage changes ``crop``. The students and
    baselines train on it, and the notebooks tile every network at it. A network trained on crops
    tolerates deeper input but not wider (``studies/README.md``, "Training on wider crops"), so a
    last stage on crops as wide as the frames lets the networks run on frame-wide tiles, or on the
    whole frame in one forward (``tiled_inference = False``; on the simulated test pairs that loses
    the pairs at 3 % strain: "Students from the wide-crop teacher")."""
    require_parameters(params, (*TEACHER_PARAMETERS, "teacher_refine"), "network_crop")
    crop = teacher_stage_recipes(params)[-1].crop
    return int(crop[0]), int(crop[1])


def network_tile(params: Mapping[str, Any]) -> tuple[int, int] | None:
    """The tile (samples, lines) the notebooks run every network on, or ``None`` for one forward
    on the whole frame (``tiled_inference = False``): ``tile_samples`` deep (``None``: the
    crop's depth) and as wide as :func:`network_crop`. Networks tolerate deeper input than their
    crop, not wider, and deeper tiles leave fewer seams: on the simulated test pairs 512 x 64 tiles
    improve the cpu networks and, at overlap 0.25, take less time, while on the real frames they
    lower the in vivo match (``studies/README.md``, "Deeper tiles for the notebooks' networks")."""
    require_parameters(params, ("tiled_inference", "tile_samples"), "network_tile")
    if not params["tiled_inference"]:
        return None
    samples, lines = network_crop(params)
    depth = params["tile_samples"]
    if depth is None:
        return samples, lines
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"tile_samples must be None (the crop's depth, {samples}) or an integer >= 1, got {depth!r}")
    return depth, lines


def ensure_teacher(
    root: str | os.PathLike,
    recipe: UnsupervisedRecipe,
    train_path: str | os.PathLike,
    *,
    refine: RefineSpec = None,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> list[Path]:
    """The teacher's training stages as artifact folders: ``[base, refined...]``.

    ``refine``: refinement stages, each continuing from the previous stage's model with the
    recipe fields it names changed from the previous stage's recipe (e.g.
    ``{"steps": 400, "lr": 2e-4, "loss": {"smooth_weight": 0.5}}``; ``loss`` and
    ``model_overrides`` entries update the previous stage's, so a stage names only what it
    changes). One dict = one stage, a list = a chain, None or ``{}`` = none.
    Refinement stages validate on tiles. The last folder is the teacher to use.
    """
    base = ensure_unsupervised_model(root, "teacher", recipe, train_path, profile=profile, device=device)
    refined = ensure_refined(root, recipe, base, refine, train_path, profile=profile, device=device)
    return [base, *(path for _, path in refined)]


def ensure_refined(
    root: str | os.PathLike,
    recipe: UnsupervisedRecipe,
    start: Path,
    refine: RefineSpec,
    train_path: str | os.PathLike,
    *,
    profile: str = "default",
    device: str | torch.device | None = None,
) -> list[tuple[UnsupervisedRecipe, Path]]:
    """Refinement stages (``refine`` as in :func:`ensure_teacher`) continuing from the teacher
    artifact ``start`` that ``recipe`` trained: each stage's recipe and artifact folder."""
    stages = []
    for changes in refine_stages(refine):
        recipe = refinement_recipe(recipe, changes, f"teacher/{start.name}")
        start = ensure_unsupervised_model(root, "teacher", recipe, train_path, profile=profile, device=device)
        stages.append((recipe, start))
    return stages


def refine_stages(refine: RefineSpec) -> list[dict[str, Any]]:
    """``refine`` (see :func:`ensure_teacher`) as a list of stages; rejects anything else."""
    if not refine:
        return []
    stages = [refine] if isinstance(refine, dict) else list(refine)
    for number, stage in enumerate(stages):
        if not isinstance(stage, dict) or not stage:
            raise ValueError(f"refine stage {number}: expected a non-empty dict of recipe fields, got {stage!r}")
    return stages


def final_teacher_loss(recipe: UnsupervisedRecipe, refine: RefineSpec) -> dict[str, Any]:
    """The loss settings the teacher's last stage trained with: the base ``recipe.loss`` updated
    by each refinement stage's ``loss`` entries (the students train with the same)."""
    loss = dict(recipe.loss)
    for stage in refine_stages(refine):
        loss.update(stage.get("loss", {}))
    return loss


def refinement_recipe(recipe: UnsupervisedRecipe, refine: dict[str, Any], init_from: str) -> UnsupervisedRecipe:
    """A refinement stage of ``recipe``: the ``refine`` fields changed (``loss`` and
    ``model_overrides`` entries update ``recipe.loss`` and ``recipe.model_overrides``), starting
    from the artifact ``init_from`` (e.g. ``"teacher/<key>"``), validating on tiles unless
    ``refine`` says otherwise."""
    changes = dict(refine)
    loss = {**recipe.loss, **changes.pop("loss", {})}
    overrides = {**recipe.model_overrides, **changes.pop("model_overrides", {})}
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(recipe)})
    if unknown:
        raise ValueError(f"refine: {unknown} are not fields of UnsupervisedRecipe")
    if "init_from" in changes:
        raise ValueError("refine: init_from is set by the stage (the artifact it continues from), not by refine")
    return dataclasses.replace(recipe, **{"val_tile": True, **changes}, loss=loss, model_overrides=overrides,
                               init_from=init_from)
