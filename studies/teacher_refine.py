"""Which loss weights should the teacher's refinement stage use? (the teacher issue's open gap)

Trains refinement stages that continue from notebook 01's cached base teacher, each with other
recipe fields (a JSON object like one stage of the profile's ``teacher_refine``; ``loss`` entries
update the loss settings of the stage it continues from), and scores every stage on the simulated test set exactly as notebook 01
does: overlapping tiles of the stage's training crop (a variant that changes ``crop`` is scored on
tiles of its own crop), the same strain window and border. The teacher
recipe, datasets and evaluation settings are notebook 01's parameters under ``--profile`` (its
defaults updated by ``profiles/<profile>.yaml``), so the base stage and the profile's own
refinement are cache hits of ``make reproduce``'s artifacts.

    python studies/teacher_refine.py --profile cpu \
        --variant profile='{}' \
        --variant final-weighted='{"steps": 400, "lr": 2e-4, "warmup_steps": 10, "val_every": 200,
                                   "loss": {"smooth_weight": 0.5, "final_weight": 2.0, "level_decay": 0.5}}'

``profile`` as a variant name with ``{}`` means the profile's own ``teacher_refine`` (all its
stages; the last one is scored). A variant may continue from another one instead of the base:
``"after": "<variant name>"`` (it then changes that variant's recipe). Writes
``studies/results/teacher_refine_<profile>.json`` (provenance, every variant's artifact, mean and
median metrics, per-pair strain RMSE, training similarity per pyramid output at the last logged step).
With ``--release`` every variant is also scored on the release set of the test pairs (each pair
played backwards, ``cdpkd.sim.release``): the simulator only compresses, freehand scanning also
releases. With ``--probe-frame`` every variant is also scored on the test pairs (and, with
``--release``, the release pairs) seen from a probe that moved with the compression
(``cdpkd.sim.probe_frame``: the compressed surface stays put, deeper tissue comes toward the
probe, as in real hand-held data; the simulator holds the bottom still instead). ``--guided``
scores with guided tiles (as the notebooks do since they have the option); ``--ncc``
also scores NCC block matching on the same pairs, as a reference. ``--set NAME=JSON`` (repeatable;
or one JSON object of several, as ``studies/notebook_variant.py`` takes them) changes notebook 01's
parameters before anything is built, e.g. another base teacher:
``--set 'teacher_model_overrides={"input_mode": "rf+envelope", "full_res_levels": 2}'``
(the base and every stage are then new artifacts; the result records the parameters changed).
``--base`` changes fields of the base stage's recipe itself (every refinement stage inherits them),
e.g. ``--base '{"axial_offset": 32, "release_fraction": 0.25}'``: a teacher that sees both signs of
axial displacement and strain from its first step. ``--train-set`` changes the *training* set's
simulation parameters only (the test set stays notebook 01's), e.g. ``'{"strain_min": 0.001}'``, or
``'{"pulse_ranges": {"fc_hz": [3.5e6, 6.5e6], "snr_db": [15, 40]}}'`` (per-pair draws,
``cdpkd.sim.pulse_variation``).
``--guide`` sets the guided tiles' shift rule (``{"guide_quantile": 0.5, "guide_margin": 0}`` centres
the residual, for networks that predict both signs).
``--score-base`` also scores the base teacher itself (as variant ``base``; with no ``--variant``
only the base is trained and scored), e.g. to compare two base architectures at equal training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from cdpkd.atomic import write_text
from cdpkd.classic import ncc_block_matching
from cdpkd.estimators import default_device, network_estimator
from cdpkd.evaluation import evaluate_estimators, per_pair_table
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import (
    UnsupervisedRecipe,
    ensure_refined,
    ensure_unsupervised_model,
    load_trained,
    teacher_base_recipe,
)
from cdpkd.runtime import provenance
from cdpkd.sim import ensure_probe_frame_set, ensure_release_set
from cdpkd.sim.dataset import ensure_dataset
from cdpkd.sim.study import notebook_datasets, notebook_simulation_config

from _study import json_object, merge_settings, output_path, parse_setting, scored_row, study_parser

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant takes NAME=JSON, got {text!r}")
    return name, json_object(spec, f"--variant {name}")


TRAIN_SET_PARAMETERS = {"strain_min", "strain_max", "snr_db", "pulse_ranges"}
GUIDE_FIELDS = {"guide_quantile", "guide_margin", "guide_pass"}
BASE_FIELDS = {f.name for f in dataclasses.fields(UnsupervisedRecipe)} - {"init_from"}


def keys_among(option: str, allowed: set[str]):
    """An argparse ``type=``: a JSON object whose keys are all in ``allowed``, else an error naming ``option``."""

    def parse(text: str) -> dict[str, Any]:
        changes = json_object(text, option)
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise argparse.ArgumentTypeError(f"{option}: {unknown} are not among {sorted(allowed)}")
        return changes

    return parse


def variant_plan(variants: list[tuple[str, dict[str, Any]]], profile_refine: Any) -> list[tuple[str, Any, str | None]]:
    """``--variant`` entries as ``(name, refinement stages, after)``, every one checked before any trains:
    ``after`` must name an earlier variant, and a variant must change something (``profile={}`` is the
    profile's own ``teacher_refine``)."""
    plan, names = [], []
    for name, changes in variants:
        changes = dict(changes)
        after = changes.pop("after", None)
        if after is not None and after not in names:
            raise SystemExit(f"variant {name}: 'after' names {after!r}, not an earlier variant ({names})")
        refine = profile_refine if name == "profile" and not changes else changes
        if not refine:
            raise SystemExit(f"variant {name}: no recipe fields to change")
        plan.append((name, refine, after))
        names.append(name)
    return plan


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "teacher_refine")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--score-base", action="store_true", help="also score the base teacher itself (variant 'base')")
    parser.add_argument("--release", action="store_true", help="also score on the test pairs played backwards")
    parser.add_argument("--probe-frame", action="store_true",
                        help="also score on the test (and release) pairs in the coordinates of a probe that moved")
    parser.add_argument("--guided", action="store_true", help="guided tiles (default: plain tiles)")
    parser.add_argument("--ncc", action="store_true", help="also score NCC block matching (notebook 01's), as a reference")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=JSON",
                        help="a notebook 01 parameter to change (repeatable), e.g. the base teacher's "
                             "teacher_model_overrides, or a JSON object of several")
    parser.add_argument("--base", type=keys_among("--base", BASE_FIELDS), default={}, metavar="JSON",
                        help="fields of the base stage's recipe to change (the refinement stages inherit them)")
    parser.add_argument("--train-set", type=keys_among("--train-set", TRAIN_SET_PARAMETERS), default={}, metavar="JSON",
                        help=f"simulation parameters of the training set only, among {sorted(TRAIN_SET_PARAMETERS)}")
    parser.add_argument("--guide", type=keys_among("--guide", GUIDE_FIELDS), default={}, metavar="JSON",
                        help="guided tiles' guide_quantile / guide_margin / guide_pass (default: the estimator's)")
    args = parser.parse_args(argv)
    run_provenance = provenance()  # the code that starts the run, before hours of training
    if not args.variant and not args.score_base:
        parser.error("give at least one --variant, or --score-base")
    if args.guide and not args.guided:
        parser.error("--guide sets the guided tiles' shift: add --guided")
    if args.score_base and any(name == "base" for name, _ in args.variant):
        raise SystemExit("--score-base scores a variant named 'base': name yours otherwise")

    args.set = merge_settings(args.set)
    p = resolved_parameters(args.profile, NOTEBOOK)
    unknown = sorted(set(args.set) - set(p))
    if unknown:
        raise SystemExit(f"--set: {unknown} are not parameters of {NOTEBOOK.name}")
    p = {**p, **args.set}
    plan = variant_plan(args.variant, p["teacher_refine"])  # checked before anything trains
    try:
        base = dataclasses.replace(teacher_base_recipe(p), **args.base)  # the recipe checks the values
    except ValueError as err:
        raise SystemExit(f"--base: {err}") from err
    paths = notebook_datasets(args.data_dir, p)
    if args.train_set:  # same pairs' seed, other simulation parameters: a separate cached training set
        try:
            config = notebook_simulation_config({**p, **args.train_set})
        except (TypeError, ValueError) as err:
            raise SystemExit(f"--train-set: {err}") from err
        paths["train"] = ensure_dataset(args.data_dir, config, p["n_train"], p["seed"], workers=p["workers"],
                                        name="sim_train")
    common = dict(profile=args.profile)
    base_dir = ensure_unsupervised_model(args.data_dir, "teacher", base, paths["train"], **common)
    tile = base.crop if p["tiled_inference"] else None
    release_set = ensure_release_set(args.data_dir, paths["test"]) if args.release else None
    extra_sets = {"release": release_set} if args.release else {}  # scored besides the test pairs
    if args.probe_frame:
        extra_sets["probe_frame"] = ensure_probe_frame_set(args.data_dir, paths["test"])
        if args.release:
            extra_sets["probe_frame_release"] = ensure_probe_frame_set(args.data_dir, release_set)
    out = output_path(args)
    result = {
        **run_provenance, "profile": args.profile, "parameters_changed": args.set,
        "base_changed": args.base, "train_set_changed": args.train_set, "training_set": paths["train"].parent.name,
        "base_artifact": base_dir.name, "base_recipe": base.to_dict(),
        "evaluation": {"tile": list(tile) if tile else None, "overlap": p["tile_overlap"],
                       "strain_window": p["strain_window"], "border": [p["border_samples"], p["border_lines"]],
                       "test_pairs": p["n_test"], "guided": args.guided, "guide": args.guide, "release": args.release,
                       "probe_frame": args.probe_frame},
        "variants": [],
    }
    score = dict(strain_window=p["strain_window"], border=(p["border_samples"], p["border_lines"]))
    if args.ncc:  # the tracker a user would pick instead, on the same pairs
        sets = {"compression": paths["test"], **extra_sets}
        result["ncc"] = {}
        for label, dataset in sets.items():
            summary = evaluate_estimators({"ncc": ncc_block_matching}, dataset, **score).summary.loc["ncc"]
            result["ncc"][label] = {k: float(v) for k, v in summary.drop("time_per_frame_ms").items()}
    device = default_device()  # as notebook 01 evaluates

    def score_stage(name: str, refine: Any, after: str | None, recipe: Any, stage: Path) -> None:
        """Score one trained stage on the test pairs (and the extra sets) and append its row to the result file."""
        # tiles of the stage's own training crop (the base's, unless the variant changes ``crop``)
        stage_tile = tuple(recipe.crop) if tile else None
        estimator = network_estimator(load_trained(stage, device), device, tile=stage_tile, overlap=p["tile_overlap"],
                                      guided=args.guided, **args.guide)
        evaluation = evaluate_estimators({name: estimator}, paths["test"], **score)
        per_pair = per_pair_table(evaluation, paths["test"])
        mean = evaluation.summary.loc[name].drop("time_per_frame_ms")
        result["evaluation"]["applied_strain_pct"] = [float(x) for x in per_pair["applied_strain_pct"]]
        # similarity per pyramid output at the last logged training step: which scales the loss is spent on
        last_log = pd.read_csv(stage / "metrics.csv").iloc[-1]
        similarity = {k.removeprefix("loss_similarity_"): float(v) for k, v in last_log.items()
                      if k.startswith("loss_similarity_")}
        result["variants"].append({
            "name": name, "changes": refine, "after": after, "artifact": stage.name, "init_from": recipe.init_from,
            "tile": list(stage_tile) if stage_tile else None, "train_similarity_last_step": similarity,
            **scored_row(mean, per_pair[name]),
        })
        for label, dataset in extra_sets.items():
            scored = evaluate_estimators({name: estimator}, dataset, **score)
            result["variants"][-1][label] = {
                "mean": {k: float(v) for k, v in scored.summary.loc[name].drop("time_per_frame_ms").items()},
                "per_pair_strain_rmse": [float(x) for x in per_pair_table(scored, dataset)[name]],
            }
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every stage: a stopped study keeps its rows
        print(f"{name}: artifact {stage.name}; strain RMSE mean {mean['strain_rmse']:.3e}, "
              f"median {per_pair[name].median():.3e}; SNRe {mean['snre']:.2f} -> {out}", flush=True)

    if args.score_base:
        score_stage("base", None, None, base, base_dir)
    done = {}  # variant name -> (its last stage's recipe, artifact folder)
    for name, refine, after in plan:
        start_recipe, start = done[after] if after else (base, base_dir)
        recipe, stage = ensure_refined(args.data_dir, start_recipe, start, refine, paths["train"], **common)[-1]
        done[name] = recipe, stage
        score_stage(name, refine, after, recipe, stage)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
