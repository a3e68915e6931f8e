"""How do the networks do at strains below the training range? (the in vivo strains, 0.01-0.17 %, lie far below it)

Scores trained networks (cached artifacts of ``make reproduce``) and NCC block matching on the
simulated test set of notebook 01 and on copies of it whose strain range is scaled by each
``--scale``: the same seeds, so the same phantoms, scatterers and noise draws, and each pair's
applied strain multiplied by exactly that factor (recorded per pair, and checked). The networks run
as the notebooks run them (their tile, overlap and guide); NCC block matching as in notebook 01.

The question: the cpu networks are trained on 0.5-3 % compression, while NCC block matching finds
0.01-0.17 % between consecutive in vivo frames (notebook 05; ``real_data_offsets.py``). Does a
network's strain error shrink with the strain, as a tracker's does (less decorrelation), or does it
keep a floor that small strains drown in?

    python studies/strain_scale.py --artifact teacher/edb500e7b84e6931 --artifact cdp_kdnet/7a35f0f3c5837584

Writes ``studies/results/strain_scale_<profile>.json`` (provenance, settings, per scale the applied
strain of each pair and, per method, the mean metrics and each pair's strain RMSE and SNRe).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cdpkd.atomic import write_text
from cdpkd.classic import ncc_block_matching
from cdpkd.estimators import default_device, network_estimator
from cdpkd.evaluation import evaluate_estimators, per_pair_table
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import load_trained, network_tile
from cdpkd.runtime import provenance
from cdpkd.sim.study import ensure_test_set, notebook_simulation_config

from _study import add_artifact_argument, output_path, scored_row, study_parser, trained_folders

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"


def scaled_test_set(data_dir: Path, params: dict[str, Any], scale: float) -> Path:
    """The notebooks' simulated test set with ``strain_min`` and ``strain_max`` times ``scale``
    (same seeds; built under ``data_dir`` if missing, a cache hit for ``scale == 1``)."""
    scaled = {**params, "strain_min": params["strain_min"] * scale, "strain_max": params["strain_max"] * scale}
    return ensure_test_set(data_dir, notebook_simulation_config(scaled), params["n_test"], params["seed"],
                           workers=params["workers"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "strain_scale")
    add_artifact_argument(parser, repeatable=True)
    parser.add_argument("--scale", type=float, action="append", default=None,
                        help="factor on the test set's strain range (repeatable; default 0.1); 1 is always scored")
    args = parser.parse_args(argv)
    scales = [1.0] + [s for s in dict.fromkeys(args.scale or [0.1]) if s != 1.0]
    bad = [s for s in scales if not 0.0 < s <= 10.0]
    if bad:
        parser.error(f"--scale must be in (0, 10], got {bad}")

    p = resolved_parameters(args.profile, NOTEBOOK)
    folders = trained_folders(args.data_dir, args.artifact)
    device = default_device()  # as notebook 01 evaluates
    tile = network_tile(p)
    estimators = {"ncc": ncc_block_matching}
    for name, folder in folders.items():
        estimators[name] = network_estimator(load_trained(folder, device), device, tile=tile,
                                             overlap=p["tile_overlap"], guided=p["guided_tiles"],
                                             guide_pass=p["guide_pass"])
    out = output_path(args)
    result: dict[str, Any] = {
        **provenance(), "profile": args.profile,
        "evaluation": {"tile": None if tile is None else list(tile), "overlap": p["tile_overlap"],
                       "guided": p["guided_tiles"], "guide_pass": p["guide_pass"],
                       "strain_window": p["strain_window"], "border": [p["border_samples"], p["border_lines"]],
                       "test_pairs": p["n_test"], "strain_range": [p["strain_min"], p["strain_max"]],
                       "device": str(device)},
        "scales": [],
    }
    reference = None
    for scale in scales:
        test = scaled_test_set(args.data_dir, p, scale)
        evaluation = evaluate_estimators(estimators, test, strain_window=p["strain_window"],
                                         border=(p["border_samples"], p["border_lines"]))
        strain = per_pair_table(evaluation, test)
        snre = per_pair_table(evaluation, test, "snre")
        applied = strain["applied_strain_pct"].to_numpy()
        if reference is None:
            reference = (applied, strain["inclusions"].to_numpy())
        elif not (np.allclose(applied, scale * reference[0], rtol=1e-6)
                  and np.array_equal(strain["inclusions"].to_numpy(), reference[1])):
            raise RuntimeError(f"scale {scale}: the test pairs are not the unscaled ones at {scale}x the strain")
        row: dict[str, Any] = {"scale": scale, "dataset": test.parent.name,
                               "applied_strain_pct": [float(x) for x in applied],
                               "inclusions": [int(x) for x in strain["inclusions"]], "methods": {}}
        for method in estimators:
            summary = evaluation.summary.loc[method]
            row["methods"][method] = {**scored_row(summary, strain[method]),
                                      "per_pair_snre": [float(x) for x in snre[method]]}
            print(f"scale {scale:g} {method}: strain RMSE mean {summary['strain_rmse']:.3e}, median "
                  f"{strain[method].median():.3e}, SNRe {summary['snre']:.2f}, CNR {summary['cnr_db']:.2f} dB",
                  flush=True)
        result["scales"].append(row)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every scale: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
