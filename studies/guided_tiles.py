"""Do guided tiles help the networks? (the teacher issue's open gap: errors near the compressed surface)

Scores trained networks (cached artifacts of ``make reproduce``) on the simulated test set twice,
exactly as notebook 01 does (overlapping tiles of the training crop, the same strain window and
border): with plain tiles, and with guided tiles (``cdpkd.estimators.network_estimator(guided=True)``:
a whole-frame pass first, then each tile's post crop shifted axially to just below that pass's
displacement in the tile). The datasets and evaluation settings are notebook 01's parameters under
``--profile``.

    python studies/guided_tiles.py --profile cpu --artifact teacher/b47059a98936d310

Writes ``studies/results/guided_tiles_<profile>.json`` (provenance, per network and mode the mean
metrics, median and per-pair strain RMSE, with the applied strain of each pair).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cdpkd.atomic import write_text
from cdpkd.estimators import default_device, network_estimator
from cdpkd.evaluation import evaluate_estimators, per_pair_table
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import load_trained
from cdpkd.runtime import provenance
from cdpkd.sim.study import notebook_datasets

from _study import add_artifact_argument, output_path, study_parser, trained_folders

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "guided_tiles")
    add_artifact_argument(parser, repeatable=True)
    args = parser.parse_args(argv)

    p = resolved_parameters(args.profile, NOTEBOOK)
    if not p["tiled_inference"]:
        raise SystemExit(f"profile {args.profile}: tiled_inference is off, there are no tiles to guide")
    folders = trained_folders(args.data_dir, args.artifact)
    paths = notebook_datasets(args.data_dir, p)
    tile = (p["teacher_crop_samples"], p["teacher_crop_lines"])
    device = default_device()  # as notebook 01 evaluates
    out = output_path(args)
    result = {
        **provenance(), "profile": args.profile,
        "evaluation": {"tile": list(tile), "overlap": p["tile_overlap"], "strain_window": p["strain_window"],
                       "border": [p["border_samples"], p["border_lines"]], "test_pairs": p["n_test"]},
        "networks": [],
    }
    for name, folder in folders.items():
        model = load_trained(folder, device)
        estimators = {mode: network_estimator(model, device, tile=tile, overlap=p["tile_overlap"],
                                              guided=mode == "guided") for mode in ("plain", "guided")}
        evaluation = evaluate_estimators(estimators, paths["test"], strain_window=p["strain_window"],
                                         border=(p["border_samples"], p["border_lines"]))
        per_pair = per_pair_table(evaluation, paths["test"])
        result["evaluation"]["applied_strain_pct"] = [float(x) for x in per_pair["applied_strain_pct"]]
        row = {"artifact": name, "modes": {}}
        for mode in estimators:
            summary = evaluation.summary.loc[mode]
            row["modes"][mode] = {
                "mean": {k: float(v) for k, v in summary.items()},
                "median_strain_rmse": float(per_pair[mode].median()),
                "per_pair_strain_rmse": [float(x) for x in per_pair[mode]],
            }
            print(f"{name} {mode}: strain RMSE mean {summary['strain_rmse']:.3e}, median {per_pair[mode].median():.3e}, "
                  f"SNRe {summary['snre']:.2f}, {summary['time_per_frame_ms']:.0f} ms/frame", flush=True)
        result["networks"].append(row)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every network: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
