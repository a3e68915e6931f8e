"""Notebook 04's components question under another unsupervised loss for the students.

On the cpu teacher of git 0620826 and later, CDP-KDNet without distillation beats CDP-KDNet with it
(notebook 04). Between that run and the previous one, where distillation mattered, the teacher, the
students' loss and the scoring tiles all changed. This study keeps the teacher and the scoring and
changes only the loss the students train with (``--loss``, fields of the profile's student loss),
training the components' variants exactly as notebook 04 does (same base recipe, lengths, seeds
and test pairs). With ``--control`` the same variants are also run with the profile's loss: those
are notebook 04's own runs (same recipes, so cache hits after a notebook 04 run).

    python studies/component_loss.py --loss '{"final_weight": 0.25, "level_decay": 1.0}' --control
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from cdpkd import recipes
from cdpkd.ablation import AblationSetting, ablation_plan, run_ablation, summarize
from cdpkd.atomic import write_text
from cdpkd.estimators import default_device
from cdpkd.losses import UnsupervisedLossConfig
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import ensure_teacher, teacher_base_recipe
from cdpkd.runtime import provenance
from cdpkd.sim.study import notebook_datasets

from _study import json_object, output_path, study_parser

NOTEBOOK = NOTEBOOK_DIR / "04_ablations.ipynb"
METRICS = ("strain_rmse", "snre", "cnr_db", "warp_ncc", "disp_rmse_axial", "disp_rmse_lateral")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "component_loss")
    parser.add_argument("--loss", type=lambda text: json_object(text, "--loss"), required=True, metavar="JSON",
                        help='student loss fields to change (UnsupervisedLossConfig), e.g. {"final_weight": 0.25, "level_decay": 1.0}')
    parser.add_argument("--variant", action="append", default=None, metavar="NAME",
                        help="a components variant of notebook 04 (repeatable; default: all four)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's component seeds")
    parser.add_argument("--control", action="store_true", help="also run the variants with the profile's loss")
    args = parser.parse_args(argv)

    p = resolved_parameters(args.profile, NOTEBOOK)
    base = recipes.component_bases(p)["cdp_kdnet"]  # notebook 04's
    try:  # checked before anything trains
        UnsupervisedLossConfig.from_dict({**base.loss, **args.loss})
    except ValueError as err:
        raise SystemExit(f"--loss: {err}") from err
    paths = notebook_datasets(args.data_dir, p)
    teacher_dir = ensure_teacher(args.data_dir, teacher_base_recipe(p), paths["train"], refine=p["teacher_refine"],
                                 profile=args.profile)[-1]
    # the components need no teacher size (only the baselines' budget does): no model is loaded
    plan = ablation_plan((p["params_fraction"], p["flops_fraction"]))["components"]
    names = args.variant or [v.name for v in plan]
    missing = sorted(set(names) - {v.name for v in plan})
    if missing:
        raise SystemExit(f"--variant: {missing} are not components variants ({[v.name for v in plan]})")
    variants = [v for v in plan if v.name in names]
    seeds = args.seeds or recipes.component_setting(p)["seeds"]
    setting = AblationSetting.from_parameters(p, args.data_dir, teacher_dir, paths, profile=args.profile,
                                              device=default_device())
    losses = {"changed": {**base.loss, **args.loss}, **({"profile": dict(base.loss)} if args.control else {})}
    out = output_path(args)
    result = {**provenance(), "profile": args.profile, "teacher": teacher_dir.name, "seeds": list(seeds),
              "base_recipe": base.to_dict(), "loss_changes": args.loss, "losses": losses, "runs": {}, "summary": {}}
    for label, loss in losses.items():
        runs = run_ablation(variants, seeds, {"cdp_kdnet": replace(base, loss=loss)}, setting)
        result["runs"][label] = json.loads(runs.to_json(orient="records"))
        summary = summarize(runs, variants, metrics=METRICS)
        result["summary"][label] = json.loads(summary.to_json(orient="index"))
        write_text(out, json.dumps(result, indent=1) + "\n")  # after each loss: a stopped study keeps its rows
        print(f"{label} loss {loss}:\n{summary[list(METRICS[:4])].to_string()}\n-> {out}", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
