"""Do guided tiles help the networks, and what do fewer tiles cost? (errors near the compressed surface; CPU speed)

Scores trained networks (cached artifacts of ``make reproduce``) on the simulated test set twice,
exactly as notebook 01 does (overlapping tiles of the training crop, the same strain window and
border): with plain tiles, and with guided tiles whose coarse pass is one forward on the whole frame
(``cdpkd.estimators.network_estimator(guided=True, guide_pass="whole")``, the notebooks' guide before git
16660ee): that pass first, then each tile's post crop shifted axially to just below that pass's
displacement in the tile). The datasets and evaluation settings are notebook 01's parameters under
``--profile``.

    python studies/guided_tiles.py --profile cpu --artifact teacher/b47059a98936d310

``--overlap`` (repeatable) scores both modes at each given tile overlap instead of the notebook's
(modes are then named ``plain@0.25`` ...): each pixel is estimated by up to ``1 / (1 - overlap)^2``
tiles (2.75 on average on the cpu test frames at 0.5), so the overlap sets most of a tiled network's
inference time. ``--whole-frame`` also scores
one forward on the whole frame (mode ``whole``: no tiles; the guided tiles' first pass alone).
``--strips`` also scores guided tiles whose coarse pass runs on full-depth strips of the tile's width
instead of the whole frame (modes named ``guided-strips`` ...; ``network_estimator(guide_pass="strips")``).
``--tile S L`` tiles at another size than the notebooks' (networks trained on other
crops). ``--ncc-seeded`` also scores NCC block matching seeded by each mode's estimate (modes named
``guided+ncc`` ...: ``ncc_block_matching(prior=...)``, its full-resolution passes from the estimate's
box mean instead of its own coarse levels) and NCC block matching itself (mode ``ncc``, notebook 01's):
how much of the gap to NCC is the network's coarse estimate and how much its sub-window jitter.
``--bf16`` also scores every mode under bf16 autocast on the evaluation device (modes named
``guided+bf16`` ...): what the faster precision costs in strain quality (the notebooks run fp32).
``--head-passes K`` (repeatable) also scores each mode with the network's NCC refinement head run K
times (``PWCConfig.refine_passes``, same weights; modes named ``guided+passes2`` ...), as NCC block
matching warps and matches again. ``--mirror`` also scores every mode averaged with itself on the
laterally mirrored pair (``cdpkd.estimators.mirror_averaged``; modes named ``guided+mirror`` ...).

Writes ``studies/results/guided_tiles_<profile>.json`` (provenance, per network and mode the mean
metrics (time per frame included), median and per-pair strain RMSE, with the applied strain of each
pair).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cdpkd.atomic import write_text
from cdpkd.classic import ncc_block_matching
from cdpkd.efficiency import bf16_autocast
from cdpkd.estimators import default_device, mirror_averaged, network_estimator
from cdpkd.evaluation import evaluate_estimators, per_pair_table
from cdpkd.models import build_model
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import load_trained
from cdpkd.runtime import provenance
from cdpkd.sim.study import notebook_datasets

from _study import (
    add_artifact_argument,
    add_tile_argument,
    output_path,
    scored_row,
    study_parser,
    study_tile,
    trained_folders,
)

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"


def seeded_ncc(estimate):
    """NCC block matching (notebook 01's settings) seeded by ``estimate(pre, post)``. The network runs
    again inside it, not reused from its own mode, so the seeded mode's time per frame is the whole
    hybrid's."""
    return lambda pre, post: ncc_block_matching(pre, post, prior=estimate(pre, post))


def with_head_passes(model, passes: int, device):
    """The same trained network with its NCC refinement head run ``passes`` times."""
    if getattr(model, "refine", None) is None:
        raise SystemExit("--head-passes: this network has no NCC refinement head (PWCConfig.refine_widths)")
    again = build_model(model.config.replace(refine_passes=passes))
    again.load_state_dict(model.state_dict())
    return again.to(device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "guided_tiles")
    add_artifact_argument(parser, repeatable=True)
    parser.add_argument("--overlap", type=float, action="append", default=None,
                        help="tile overlap in [0, 1) to score at (repeatable; default: the notebook's)")
    parser.add_argument("--whole-frame", action="store_true", help="also score one forward on the whole frame")
    parser.add_argument("--strips", action="store_true",
                        help="also score guided tiles with the coarse pass on strips of the tile's width")
    parser.add_argument("--bf16", action="store_true", help="also score every mode under bf16 autocast")
    parser.add_argument("--ncc-seeded", action="store_true",
                        help="also score NCC block matching seeded by each mode's estimate, and NCC itself")
    parser.add_argument("--head-passes", type=int, action="append", default=[],
                        help="also score with the NCC head run this many times (repeatable, >= 2)")
    parser.add_argument("--mirror", action="store_true",
                        help="also score every mode averaged with itself on the laterally mirrored pair")
    add_tile_argument(parser)
    args = parser.parse_args(argv)
    if any(k < 2 for k in args.head_passes):
        parser.error(f"--head-passes must be >= 2 (1 is the network as trained), got {args.head_passes}")
    bad = [o for o in args.overlap or [] if not 0.0 <= o < 1.0]
    if bad:
        parser.error(f"--overlap must be in [0, 1), got {bad}")

    p = resolved_parameters(args.profile, NOTEBOOK)
    if not p["tiled_inference"]:
        raise SystemExit(f"profile {args.profile}: tiled_inference is off, there are no tiles to guide")
    folders = trained_folders(args.data_dir, args.artifact)
    paths = notebook_datasets(args.data_dir, p)
    tile = study_tile(args, p)
    device = default_device()  # as notebook 01 evaluates
    out = output_path(args)
    overlaps = args.overlap or [p["tile_overlap"]]
    result = {
        **provenance(), "profile": args.profile,
        "evaluation": {"tile": list(tile), "overlap": overlaps, "strain_window": p["strain_window"],
                       "border": [p["border_samples"], p["border_lines"]], "test_pairs": p["n_test"],
                       "device": str(device)},
        "networks": [],
    }

    def overlap_suffix(overlap: float) -> str:
        return f"@{overlap:g}" if args.overlap else ""  # named only when overlaps were asked for

    def tile_modes(network, tag: str = "") -> dict:
        """Plain and guided tiles of ``network`` at each overlap, named ``plain<tag>[@overlap]`` ..."""
        modes = {}
        for overlap in overlaps:
            for mode in ("plain", "guided"):
                modes[f"{mode}{tag}{overlap_suffix(overlap)}"] = network_estimator(network, device, tile=tile, overlap=overlap,
                                                                  guided=mode == "guided", guide_pass="whole")
        return modes

    for name, folder in folders.items():
        model = load_trained(folder, device)
        estimators = tile_modes(model)
        if args.strips:
            for overlap in overlaps:
                estimators["guided-strips" + overlap_suffix(overlap)] = network_estimator(model, device, tile=tile, overlap=overlap,
                                                                         guided=True, guide_pass="strips")
        if args.whole_frame:
            estimators["whole"] = network_estimator(model, device, tile=None)
        for passes in args.head_passes:
            estimators.update(tile_modes(with_head_passes(model, passes, device), f"+passes{passes}"))
        if args.mirror:
            estimators.update({f"{mode}+mirror": mirror_averaged(fn) for mode, fn in list(estimators.items())})
        if args.bf16:
            estimators.update({f"{mode}+bf16": bf16_autocast(fn, device) for mode, fn in list(estimators.items())})
        if args.ncc_seeded:
            estimators.update({f"{mode}+ncc": seeded_ncc(fn) for mode, fn in list(estimators.items())})
            estimators["ncc"] = ncc_block_matching
        evaluation = evaluate_estimators(estimators, paths["test"], strain_window=p["strain_window"],
                                         border=(p["border_samples"], p["border_lines"]))
        per_pair = per_pair_table(evaluation, paths["test"])
        result["evaluation"]["applied_strain_pct"] = [float(x) for x in per_pair["applied_strain_pct"]]
        row = {"artifact": name, "modes": {}}
        for mode in estimators:
            summary = evaluation.summary.loc[mode]
            row["modes"][mode] = scored_row(summary, per_pair[mode])
            print(f"{name} {mode}: strain RMSE mean {summary['strain_rmse']:.3e}, median {per_pair[mode].median():.3e}, "
                  f"SNRe {summary['snre']:.2f}, {summary['time_per_frame_ms']:.0f} ms/frame", flush=True)
        result["networks"].append(row)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every network: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
