"""Ablations of CDP-KDNet: each component removed or swapped, on equal terms, over seeds.

A :class:`Variant` is one row of an ablation table: a recipe kind
(``"cdp_kdnet"``, ``"dpnet"`` or ``"baseline"``) and the fields it changes in
that kind's base recipe (the notebook builds the bases from its parameters,
so every variant shares budget, data, number of updates and loss settings
with ours). :func:`ablation_plan` lists the questions of notebook 04 and
their variants; :func:`run_ablation` trains every distinct variant once per
seed (cached artifacts: a rerun only evaluates) and scores it on the
simulated test set; :func:`summarize` gives mean and standard deviation over
the seeds.

Design choices (our reading of the questions, stated so they can be argued with):

- *static pruning*: the pruning ramp ends after the first step
  (``prune_end = 0``), so the channels are chosen once, by the same
  criterion, from the first batch, and never revisited; everything else
  (distillation, curriculum, hard pruning, fine-tuning) is unchanged.
- *no distillation*: distillation weight 0 throughout (the teacher still
  scores the curriculum's difficulty).
- *output-only distillation*: the final displacement only, no pyramid levels
  (ours distils every level).
- *baselines*: trained from scratch with the unsupervised loss on the same
  pairs and crops, widths set so their parameter count matches the budget
  (:func:`cdpkd.models.overrides_for_parameters`); their number of updates is
  the notebook's ``baseline_steps``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .complexity import count_flops
from .estimators import GUIDE_PASS, network_estimator
from .evaluation import evaluate_estimators
from .models import count_parameters, load_model, overrides_for_parameters
from .recipes import (
    CDPKDRecipe,
    DPNetRecipe,
    UnsupervisedRecipe,
    ensure_cdp_kdnet,
    ensure_dpnet,
    ensure_unsupervised_model,
)
from .recipes.teacher import TEACHER_PARAMETERS, network_crop, network_tile, require_parameters
from .report import mean_std_text

KINDS = ("cdp_kdnet", "dpnet", "baseline")
OURS = "CDP-KDNet (ours)"
# the parameters AblationSetting.from_parameters reads
SETTING_PARAMETERS = (*TEACHER_PARAMETERS, "teacher_refine", "tiled_inference", "tile_samples", "tile_overlap",
                      "guided_tiles", "guide_pass",
                      "strain_window", "border_samples", "border_lines", "ablation_test_pairs")
QUALITY_METRICS = ("strain_rmse", "snre", "cnr_db", "warp_ncc", "disp_rmse_axial", "disp_rmse_lateral")

#: Distillation methods compared with ours: label -> (``cdpkd.losses.distill`` name, options).
DISTILLATION_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "output-only": ("output", {"include_levels": False}),
    "feature": ("feature", {}),
    "KD-MRI (attention + imitation)": ("kdmri", {}),
    # the level that differs most from ours (output-level distillation is the output-only row)
    "teacher-level (breast US KD)": ("teacher_level", {"level": "encoder_regressor"}),
    "MAVKD": ("mavkd", {}),
}


@dataclass(frozen=True)
class Variant:
    """One trained configuration: ``kind``'s base recipe with ``changes`` applied.

    Attributes:
        name: unique row label.
        kind: "cdp_kdnet", "dpnet" or "baseline" (an :class:`UnsupervisedRecipe`).
        changes: recipe fields to change (``seed`` is set by the run).
        budget: (parameter fraction, FLOP fraction) the variant is held to, for the sweep plot.
    """

    name: str
    kind: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    budget: tuple[float | None, float | None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Variant {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if "seed" in self.changes:
            raise ValueError(f"Variant {self.name!r}: the seed is set by the run, not by the variant")


@dataclass
class AblationSetting:
    """Where the variants train and how they are scored (shared by every run).

    Attributes:
        data_dir: artifact root; teacher_dir: the trained teacher's artifact folder.
        train_path, test_path: simulated datasets.
        tile, overlap, guided, guide_pass: network inference on tiles (:func:`~cdpkd.recipes.network_tile`:
            ``tile_samples`` deep, the training crop's width), guided or not
            (:func:`cdpkd.estimators.network_estimator`), as in notebooks 01-03.
        strain_window, border: LS strain window (samples) and excluded margin (samples, lines).
        test_pairs: score on the first this many test pairs (None: all).
    """

    data_dir: str | os.PathLike
    teacher_dir: Path
    train_path: Path
    test_path: Path
    crop: tuple[int, int]
    profile: str = "default"
    device: torch.device | None = None
    tile: tuple[int, int] | None = None
    overlap: float = 0.5
    guided: bool = False
    guide_pass: str = GUIDE_PASS
    strain_window: int = 31
    border: tuple[int, int] = (32, 4)
    test_pairs: int | None = None

    @classmethod
    def from_parameters(
        cls,
        params: Mapping[str, Any],
        data_dir: str | os.PathLike,
        teacher_dir: Path,
        paths: Mapping[str, Path],
        *,
        profile: str = "default",
        device: torch.device | None = None,
    ) -> AblationSetting:
        """Notebook 04's setting from its parameters (a notebook's ``globals()`` or a resolved-parameters
        dict): the teacher's last training crop (:func:`~cdpkd.recipes.network_crop`), the tiling of
        inference as in notebooks 01-03 (:func:`~cdpkd.recipes.network_tile`), the LS strain window
        and border, and the first ``ablation_test_pairs`` of ``paths["test"]``."""
        require_parameters(params, SETTING_PARAMETERS, "AblationSetting.from_parameters")
        crop = network_crop(params)
        return cls(data_dir, teacher_dir, paths["train"], paths["test"], crop, profile=profile, device=device,
                   tile=network_tile(params), overlap=params["tile_overlap"],
                   guided=params["guided_tiles"], guide_pass=params["guide_pass"],
                   strain_window=params["strain_window"],
                   border=(params["border_samples"], params["border_lines"]), test_pairs=params["ablation_test_pairs"])


# ----------------------------------------------------------------------------- the questions
def _ours(budget: tuple[float | None, float | None]) -> Variant:
    return Variant(OURS, "cdp_kdnet", budget=budget)


def ablation_plan(
    base_budget: tuple[float | None, float | None],
    *,
    distillers: Sequence[str] = tuple(DISTILLATION_METHODS),
    criteria: Sequence[str] = ("l1",),
    pacings: Sequence[str] = ("linear", "geometric"),
    budgets: Sequence[Sequence[float]] = (),
    baselines: Sequence[str] = (),
    baseline_fractions: Sequence[float] | None = None,
    teacher_params: int | None = None,
    ours_criterion: str = "taylor",
    ours_pacing: str = "root",
) -> dict[str, list[Variant]]:
    """Question -> its variants (ours first in each; the same :class:`Variant` object, trained once).

    Questions: "components", "distillation", "criterion", "pacing" and, when
    ``budgets`` are given, "budget" (CDP-KDNet and DP-Net at every
    (params, FLOPs) fraction pair, the baselines at every parameter fraction of
    ``baseline_fractions``, default those of ``budgets``; needs ``teacher_params``
    for the baselines' widths).
    """
    ours = _ours(base_budget)
    plan = {
        "components": [
            ours,
            Variant("no curriculum", "cdp_kdnet", {"curriculum": False}, base_budget),
            Variant("static pruning", "cdp_kdnet", {"prune_start": 0.0, "prune_end": 0.0}, base_budget),
            Variant("no distillation", "cdp_kdnet", {"kd_weight": 0.0, "kd_final_weight": None}, base_budget),
        ],
        "distillation": [ours],
        "criterion": [ours],
        "pacing": [ours],
    }
    for label in distillers:
        if label not in DISTILLATION_METHODS:
            raise ValueError(f"unknown distillation method {label!r}; known: {list(DISTILLATION_METHODS)}")
        name, options = DISTILLATION_METHODS[label]
        plan["distillation"].append(
            Variant(
                f"KD: {label}", "cdp_kdnet", {"distiller": name, "distiller_options": options}, base_budget
            )
        )
    for criterion in criteria:
        if criterion != ours_criterion:
            plan["criterion"].append(
                Variant(f"criterion: {criterion}", "cdp_kdnet", {"criterion": criterion}, base_budget)
            )
    for pacing in pacings:
        if pacing != ours_pacing:
            plan["pacing"].append(Variant(f"pacing: {pacing}", "cdp_kdnet", {"pacing": pacing}, base_budget))
    if budgets:
        plan["budget"] = budget_variants(base_budget, budgets, baselines, teacher_params, baseline_fractions)
    return plan


def _fraction_label(budget: Sequence[float | None]) -> str:
    p, f = budget
    return f"{'-' if p is None else f'{100 * p:.0f}'}/{'-' if f is None else f'{100 * f:.0f}'} %"


def budget_variants(
    base_budget: tuple[float | None, float | None],
    budgets: Sequence[Sequence[float]],
    baselines: Sequence[str] = (),
    teacher_params: int | None = None,
    baseline_fractions: Sequence[float] | None = None,
) -> list[Variant]:
    """CDP-KDNet and DP-Net at each (params, FLOPs) fraction pair; each baseline sized to each of
    ``baseline_fractions`` of the teacher's parameters (default: every parameter fraction of ``budgets``)."""
    out: list[Variant] = []
    for raw in budgets:
        if len(raw) != 2:
            raise ValueError(f"budgets are (params fraction, FLOPs fraction) pairs, got {raw!r}")
        budget = (raw[0], raw[1])
        label = _fraction_label(budget)
        changes = {"budget": {"params_fraction": budget[0], "flops_fraction": budget[1]}}
        if tuple(budget) == tuple(base_budget):
            out.append(_ours(base_budget))
        else:
            out.append(Variant(f"CDP-KDNet @ {label}", "cdp_kdnet", changes, budget))
        out.append(Variant(f"DP-Net @ {label}", "dpnet", changes, budget))
    if baseline_fractions is None:
        baseline_fractions = list(dict.fromkeys(b[0] for b in budgets))
    if baselines and None in baseline_fractions:
        raise ValueError("budget_variants: baselines are sized by the parameter fraction; give one")
    for fraction in baseline_fractions if baselines else ():
        out += baseline_variants(baselines, fraction, teacher_params)
    return out


def baseline_variants(
    models: Sequence[str], params_fraction: float, teacher_params: int | None, *, label: str | None = None
) -> list[Variant]:
    """One ``"baseline"`` variant per registered model, widths sized to ``params_fraction`` of the teacher's
    parameters; named ``"<model> @ <label>"`` (default label: the fraction in %)."""
    if teacher_params is None:
        raise ValueError("baseline_variants: the baselines' widths need teacher_params")
    label = label or f"{100 * params_fraction:.0f} %"
    out = []
    for model in models:
        overrides, _ = overrides_for_parameters(model, int(params_fraction * teacher_params))
        changes = {"model": model, "model_overrides": overrides}
        out.append(Variant(f"{model} @ {label}", "baseline", changes, (params_fraction, None)))
    return out


def distinct(plan: Mapping[str, Iterable[Variant]]) -> list[Variant]:
    """Every variant of ``plan`` once (first occurrence order); the same name twice must be the same variant."""
    seen: dict[str, Variant] = {}
    for variants in plan.values():
        for v in variants:
            if v.name in seen and seen[v.name] != v:
                raise ValueError(f"two different variants named {v.name!r}")
            seen.setdefault(v.name, v)
    return list(seen.values())


# ----------------------------------------------------------------------------- training and scoring
def variant_recipe(variant: Variant, seed: int, bases: Mapping[str, Any]) -> Any:
    """The recipe ``variant`` trains with ``seed``: its kind's base with the changes applied."""
    base = bases.get(variant.kind)
    if base is None:
        raise ValueError(f"no base recipe for kind {variant.kind!r} (variant {variant.name!r})")
    expected = {"cdp_kdnet": CDPKDRecipe, "dpnet": DPNetRecipe, "baseline": UnsupervisedRecipe}[variant.kind]
    if not isinstance(base, expected):
        raise TypeError(
            f"base recipe for {variant.kind!r} must be a {expected.__name__}, got {type(base).__name__}"
        )
    changes = dict(variant.changes)
    if "budget" in changes and variant.kind != "baseline":  # a partial budget keeps the base's other fields
        changes["budget"] = {**dataclasses.asdict(base.budget), **changes["budget"]}
    return dataclasses.replace(base, **changes, seed=int(seed))


def train_variant(variant: Variant, seed: int, bases: Mapping[str, Any], setting: AblationSetting) -> Path:
    """Artifact folder of ``variant`` trained with ``seed`` (trained now if not cached)."""
    recipe = variant_recipe(variant, seed, bases)
    common = dict(profile=setting.profile, device=setting.device)
    if variant.kind == "cdp_kdnet":
        return ensure_cdp_kdnet(setting.data_dir, recipe, setting.teacher_dir, setting.train_path, **common)
    if variant.kind == "dpnet":
        return ensure_dpnet(setting.data_dir, recipe, setting.teacher_dir, setting.train_path, **common)
    return ensure_unsupervised_model(setting.data_dir, "baseline", recipe, setting.train_path, **common)


def score_model(name: str, model: torch.nn.Module, setting: AblationSetting) -> dict[str, float]:
    """Mean test-set metrics of one network, with its parameters and FLOPs (at the crop)."""
    estimator = network_estimator(model, setting.device, tile=setting.tile, overlap=setting.overlap,
                                  guided=setting.guided, guide_pass=setting.guide_pass)
    evaluation = evaluate_estimators(
        {name: estimator},
        setting.test_path,
        strain_window=setting.strain_window,
        border=setting.border,
        max_pairs=setting.test_pairs,
    )
    row = {k: float(v) for k, v in evaluation.summary.loc[name].items()}
    model = model.to("cpu")
    return {
        "params": float(count_parameters(model)),
        "flops": float(count_flops(model, *setting.crop)),
        **row,
    }


def run_ablation(
    variants: Iterable[Variant],
    seeds: Sequence[int],
    bases: Mapping[str, Any],
    setting: AblationSetting,
    *,
    progress: bool = True,
) -> pd.DataFrame:
    """Train (or load) and score every variant with every seed.

    Returns:
        One row per (variant, seed): ``variant``, ``kind``, ``seed``, ``artifact``
        (kind/key), ``budget_params``, ``budget_flops``, ``params``, ``flops`` and the
        metrics of :func:`cdpkd.evaluation.evaluate_estimators`.
    """
    variants = list(variants)
    if not seeds:
        raise ValueError("run_ablation: give at least one seed")
    rows = []
    for variant in variants:
        for seed in seeds:
            path = train_variant(variant, seed, bases, setting)
            if progress:
                print(f"{variant.name} (seed {seed}): {path.parent.name}/{path.name}", flush=True)
            model = load_model(path / "model.pt")
            budget = variant.budget or (None, None)
            rows.append(
                {
                    "variant": variant.name,
                    "kind": variant.kind,
                    "seed": int(seed),
                    "artifact": f"{path.parent.name}/{path.name}",
                    "budget_params": budget[0],
                    "budget_flops": budget[1],
                    **score_model(variant.name, model, setting),
                }
            )
    return pd.DataFrame(rows)


def summarize(
    results: pd.DataFrame, variants: Sequence[Variant] | None = None, metrics: Sequence[str] = QUALITY_METRICS
) -> pd.DataFrame:
    """Mean and standard deviation over seeds of ``metrics`` (and params / FLOPs) per variant.

    Columns ``<metric>`` (mean) and ``<metric>_std`` (sample std, NaN for one seed),
    plus ``seeds``; rows in the order of ``variants`` (default: as they appear).
    """
    if results.empty:
        raise ValueError("summarize: no results")
    missing = [m for m in metrics if m not in results]
    if missing:
        raise ValueError(f"summarize: metrics {missing} not in the results")
    order = [v.name for v in variants] if variants is not None else list(dict.fromkeys(results["variant"]))
    absent = [name for name in order if name not in set(results["variant"])]
    if absent:
        raise ValueError(f"summarize: no results for {absent}")
    grouped = results[results["variant"].isin(order)].groupby("variant", sort=False)
    columns = ["params", "flops", *metrics]
    mean = grouped[columns].mean()
    std = grouped[list(metrics)].std(ddof=1).add_suffix("_std")
    table = mean.join(std)
    table["seeds"] = grouped.size()
    table = table.loc[order]
    table.index.name = "variant"
    return table


def mean_std_strings(summary: pd.DataFrame, metrics: Sequence[str], fmt: str = "{:.3g}") -> pd.DataFrame:
    """``mean ± std`` strings of ``metrics`` (for display; the numbers stay in ``summary``)."""
    return pd.DataFrame(
        {m: [mean_std_text(a, b, fmt) for a, b in zip(summary[m], summary[f"{m}_std"])] for m in metrics},
        index=summary.index,
    )


__all__ = [
    "DISTILLATION_METHODS",
    "KINDS",
    "OURS",
    "QUALITY_METRICS",
    "AblationSetting",
    "Variant",
    "ablation_plan",
    "baseline_variants",
    "budget_variants",
    "distinct",
    "mean_std_strings",
    "run_ablation",
    "summarize",
    "train_variant",
    "variant_recipe",
]
