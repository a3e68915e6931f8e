"""Why do the networks fail on the real phantom? (the real-data target of the ablation issue)

Runs one trained network (a cached artifact of ``make reproduce``) and NCC block matching on the
real pairs of notebook 05 (its parameters under ``--profile``: the CIRS 059 phantom pair with its
ROIs, and the first consecutive pair of every in vivo sequence), whole frames, the network on
plain and on guided tiles of its training crop (guided as the notebooks, just below the coarse
pass's smallest displacements, and centred on its median; each with the coarse pass on the whole
frame, as the notebooks before git 16660ee, and on full-depth strips of the tile's width, as they do since), and records for each: warp NCC, the 1st / 50th /
99th percentile of the axial displacement (samples), the mean axial strain and, on the phantom,
SNRe in the background ROI and CNR (dB) between inclusion and background ROIs; and, per band of
``DEPTH_BAND`` rows, the NCC of the pre frame and the motion-compensated post frame and the share of
pixels whose axial displacement is more than 2 samples from NCC block matching's (where in depth a
network loses the match).

The question it answers: the simulator holds the bottom of the phantom still, so a compression
moves every pixel toward the deeper side of the frame by a *positive* axial displacement; a real
probe holds the top still, so the same strain comes with a negative one. A network trained on
simulated compression only has never seen a negative axial displacement.

    python studies/real_data_offsets.py --profile cpu --artifact teacher/b47059a98936d310

Writes ``studies/results/real_data_offsets_<profile>.json`` (provenance, settings, one row per pair).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cdpkd.atomic import write_text
from cdpkd.classic import ncc_block_matching
from cdpkd.estimators import default_device, network_estimator
from cdpkd.io import CIRS059_ACQUISITION, read_rf
from cdpkd.metrics import axial_strain, warp_ncc
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.realdata import inner_mask, no_reference_metrics, roi_mask
from cdpkd.recipes import load_trained
from cdpkd.runtime import provenance

from _study import (
    add_artifact_argument,
    add_tile_argument,
    output_path,
    study_parser,
    study_tile,
    trained_folders,
)

NOTEBOOK = NOTEBOOK_DIR / "05_invivo_evaluation.ipynb"
DEPTH_BAND = 250  # rows (samples) per band of agreement_by_depth
OFF_SAMPLES = 2.0  # an axial displacement this far from the reference's counts as a lost match


def agreement_by_depth(pre: np.ndarray, post: np.ndarray, disp: np.ndarray, reference: np.ndarray,
                       band: int = DEPTH_BAND, *, strain_window: int | None = None,
                       border: tuple[int, int] = (0, 0)) -> list[dict[str, Any]]:
    """Per band of ``band`` rows of the H x W frames: ``warp_ncc`` (:func:`cdpkd.metrics.warp_ncc` of
    ``pre`` and ``post`` motion-compensated by ``disp``, 2 x H x W, over the band's pixels sampled inside
    the post frame; NaN if there are none), ``share_off``, the share of pixels whose axial
    displacement is more than :data:`OFF_SAMPLES` samples from ``reference``'s (2 x H x W, e.g. NCC
    block matching's), and with ``strain_window`` (samples) ``mean_axial_strain``, the mean LSQ axial
    strain of ``disp`` over the band's pixels inside ``border`` (samples, lines; NaN if none): where
    in depth a mean strain comes from."""
    height, width = pre.shape
    frames = [np.asarray(x, np.float32)[None, None] for x in (pre, post)]
    batch = np.asarray(disp, np.float32)[None]  # 1 x 2 x H x W, as the metrics take it
    off = np.abs(disp[0] - reference[0]) > OFF_SAMPLES
    strain = axial_strain(batch, strain_window)[0, 0] if strain_window else None
    inner = inner_mask((height, width), border) if strain_window else None
    bands = []
    for top in range(0, height, band):
        rows = slice(top, min(top + band, height))
        region = np.zeros((height, width), bool)
        region[rows] = True
        try:
            ncc = float(warp_ncc(*frames, batch, region=region)[0])
        except ValueError:  # every pixel of the band samples outside the post frame
            ncc = float("nan")
        entry = {"rows": [top, rows.stop], "warp_ncc": ncc, "share_off": float(off[rows].mean())}
        if strain is not None:
            kept = strain[rows][inner[rows]]
            entry["mean_axial_strain"] = float(kept.mean()) if kept.size else float("nan")
        bands.append(entry)
    return bands


def describe(pre: np.ndarray, post: np.ndarray, disp: np.ndarray, window: int, border: tuple[int, int],
             rois: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """No-reference numbers of one 2 x H x W displacement on the pair (see the module docstring): notebook
    05's (:func:`cdpkd.realdata.no_reference_metrics`; SNRe in the background ROI) plus the axial
    displacement's percentiles and mean strain inside ``border``."""
    regions = dict(homogeneous=rois["background"], target=rois["inclusion"], background=rois["background"]) if rois else {}
    metrics = no_reference_metrics(disp, pre, post, strain_window=window, **regions)
    inner = inner_mask(disp.shape[1:], border)
    axial = disp[0][inner]
    row = {
        "warp_ncc": metrics["warp_ncc"],
        "axial_p01": float(np.percentile(axial, 1)), "axial_p50": float(np.percentile(axial, 50)),
        "axial_p99": float(np.percentile(axial, 99)),
        "mean_axial_strain": float(axial_strain(disp[None], window)[0, 0][inner].mean()),
    }
    if rois:
        row.update(snre=metrics["snre"], cnr_db=metrics["cnr_db"])
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "real_data_offsets")
    add_artifact_argument(parser)
    parser.add_argument("--real-data-dir", type=Path, default=None,
                        help="default: notebook 05's real_data_dir (relative to notebooks/)")
    add_tile_argument(parser)
    parser.add_argument("--whole-frame", action="store_true",
                        help="also run the network in one forward on the whole frame (mode network_whole_frame)")
    args = parser.parse_args(argv)

    p = resolved_parameters(args.profile, NOTEBOOK)
    real_dir = args.real_data_dir or (NOTEBOOK_DIR / p["real_data_dir"]).resolve()
    folder = trained_folders(args.data_dir, [args.artifact])[args.artifact]
    phantom = [real_dir / p["phantom_pre"], real_dir / p["phantom_post"]]
    sequences = [real_dir / "invivo_arm" / f"{s}.mhd" for s in p["invivo_sequences"]]
    missing = [str(f) for f in [*phantom, *sequences] if not f.is_file()]
    if missing:
        raise SystemExit(f"real data missing: {missing} (see the README's 'Real data' section)")

    pitch = p["phantom_pitch_mm"] * 1e-3
    pre, post = (read_rf(f, **CIRS059_ACQUISITION, pitch_m=pitch).frames[0] for f in phantom)
    pairs = [("phantom", pre, post, {"inclusion": roi_mask(pre.shape, p["phantom_inclusion_roi"]),
                                     "background": roi_mask(pre.shape, p["phantom_background_roi"])})]
    for path in sequences:
        frames = read_rf(path).frames
        pairs.append((f"{path.stem} 0->1", frames[0], frames[1], None))

    device = default_device()
    model = load_trained(folder, device)
    tile = study_tile(args, p)
    tiles = dict(tile=tile, overlap=p["tile_overlap"])
    methods = {
        "ncc": lambda a, b: ncc_block_matching(a, b, **p["ncc_options"]),
        "network_plain_tiles": network_estimator(model, device, **tiles),
    }
    # guided tiles with the coarse pass on the whole frame (as the notebooks before git 16660ee) and on
    # full-depth strips of the tile's width (real frames are 2-6x wider than the training crop); each
    # with the notebooks' shift, and with the residual centred on zero (for networks trained on both
    # signs of axial displacement)
    rules = {"guided": {}, "centred": {"guide_quantile": 0.5, "guide_margin": 0.0}}
    for suffix, guide_pass in (("tiles", "whole"), ("strips", "strips")):
        for rule, options in rules.items():
            methods[f"network_{rule}_{suffix}"] = network_estimator(model, device, **tiles, guided=True,
                                                                     guide_pass=guide_pass, **options)
    if args.whole_frame:  # no tiles: what a network that handles wide input could run at a quarter of the cost
        methods["network_whole_frame"] = network_estimator(model, device, tile=None)
    window, border = p["strain_window"], (p["border_samples"], p["border_lines"])
    out = output_path(args)
    result: dict[str, Any] = {
        **provenance(), "artifact": args.artifact, "profile": args.profile,
        "settings": {"tile": list(tile), "overlap": p["tile_overlap"], "strain_window": window, "border": list(border),
                     "phantom_rois": {"inclusion": p["phantom_inclusion_roi"], "background": p["phantom_background_roi"]},
                     "frames": "whole"},
        "pairs": [],
    }
    for name, a, b, rois in pairs:
        row: dict[str, Any] = {"pair": name, "shape": list(a.shape), "methods": {}}
        reference = None
        for method, estimate in methods.items():
            start = time.perf_counter()
            disp = np.asarray(estimate(a, b), dtype=np.float32)
            seconds = time.perf_counter() - start
            if method == "ncc":  # first in `methods`: the reference of every method's by-depth agreement
                reference = disp
            row["methods"][method] = {**describe(a, b, disp, window, border, rois), "seconds": seconds,
                                      "by_depth": agreement_by_depth(a, b, disp, reference, strain_window=window,
                                                                     border=border)}
        result["pairs"].append(row)
        print(name + ": " + "; ".join(f"{m} warp NCC {v['warp_ncc']:.3f}, axial {v['axial_p01']:.1f}..{v['axial_p99']:.1f}"
                                      for m, v in row["methods"].items()), flush=True)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every pair: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
