"""Does a network trained on crops work on wider or deeper input? (why one forward on the whole frame fails)

Runs trained networks (cached artifacts of ``make reproduce``) once on crops of the simulated test
pairs of notebook 01 (its parameters under ``--profile``) that share their rows and their central
lines but differ in width (``--width``, lines, repeatable; default: the training crop's width, 1.5x
and 2x it, capped at the frame) and, at the training width, in depth (``--rows``: crops that many
samples deep, stacked down the frame). Pre and post crops are taken at the same place, as in
training, and each crop is one forward (:func:`cdpkd.estimators.network_estimator` without tiles).
Every crop of a row band is scored on the same pixels: the lines every width covers, less
``border_lines`` on each side, and the band's rows less ``border_samples`` at its top and bottom; the
score is the RMSE of the axial displacement against the ground truth (samples). Guided tiles
(``network_estimator(guided=True)``) start from such a coarse pass, and real frames are 2-6 times
wider than the training crop.

    python studies/input_width.py --profile cpu --artifact teacher/edb500e7b84e6931

Writes ``studies/results/input_width_<profile>.json`` (provenance, settings, per network and crop
size the mean and median axial RMSE over the pairs and bands, and the per-pair, per-band values).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from cdpkd.atomic import write_text
from cdpkd.estimators import default_device, network_estimator
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import load_trained
from cdpkd.runtime import provenance
from cdpkd.sim import read_pair
from cdpkd.sim.study import notebook_datasets

from _study import add_artifact_argument, output_path, study_parser, trained_folders

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"


def crop_sizes(crop: tuple[int, int], frame: tuple[int, int], widths: list[int] | None,
               rows: int) -> list[tuple[int, int]]:
    """(samples, lines) of the crops to run: ``rows`` deep at every width (default: the training
    crop's, 1.5x and 2x it), and at the training width the crop's own depth and the frame's; each
    capped at the frame, without repeats, in that order."""
    height, width = frame
    widths = widths or [crop[1], crop[1] * 3 // 2, 2 * crop[1]]
    sizes = [(min(rows, height), min(w, width)) for w in widths]
    sizes += [(min(crop[0], height), min(crop[1], width)), (height, min(crop[1], width))]
    return list(dict.fromkeys(sizes))


def band_errors(estimate_fn, pre: np.ndarray, post: np.ndarray, truth: np.ndarray, size: tuple[int, int],
                lines: slice, border: int) -> list[float]:
    """Axial displacement RMSE (samples) of ``estimate_fn`` on crops of ``size`` stacked down the frame
    (each centred on the frame's lines), scored on ``lines`` of the frame and each crop's rows less
    ``border`` samples at top and bottom; one value per crop, from the top."""
    height, width = pre.shape
    h, w = size
    x0 = (width - w) // 2
    if lines.start < x0 or lines.stop > x0 + w:
        raise ValueError(f"crop {size} does not cover the scored lines {lines.start}..{lines.stop}")
    errors = []
    for y0 in range(0, height - h + 1, h):
        box = (slice(y0, y0 + h), slice(x0, x0 + w))
        disp = np.asarray(estimate_fn(pre[box], post[box]), dtype=np.float64)
        err = disp[0] - truth[0][box]
        kept = err[border : h - border, lines.start - x0 : lines.stop - x0]
        errors.append(float(np.sqrt(np.mean(kept**2))))
    return errors


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "input_width")
    add_artifact_argument(parser, repeatable=True)
    parser.add_argument("--width", type=int, action="append", default=None,
                        help="crop width in lines (repeatable; default: the training crop's, 1.5x and 2x it)")
    parser.add_argument("--rows", type=int, default=512, help="depth of the crops compared across widths (samples)")
    args = parser.parse_args(argv)
    if any(w < 1 for w in args.width or []) or args.rows < 1:
        parser.error("--width and --rows must be >= 1")

    p = resolved_parameters(args.profile, NOTEBOOK)
    folders = trained_folders(args.data_dir, args.artifact)
    test = notebook_datasets(args.data_dir, p)["test"]
    crop = (p["teacher_crop_samples"], p["teacher_crop_lines"])
    frame = (p["n_samples"], p["n_lines"])
    sizes = crop_sizes(crop, frame, args.width, args.rows)
    narrowest = min(w for _, w in sizes)
    x0 = (frame[1] - narrowest) // 2
    lines = slice(x0 + p["border_lines"], x0 + narrowest - p["border_lines"])
    if lines.stop <= lines.start:
        parser.error(f"the narrowest crop ({narrowest} lines) leaves no line inside border_lines {p['border_lines']}")
    device = default_device()
    out = output_path(args)
    result: dict[str, Any] = {
        **provenance(), "profile": args.profile,
        "settings": {"training_crop": list(crop), "frame": list(frame), "crops": [list(s) for s in sizes],
                     "scored_lines": [lines.start, lines.stop], "border_samples": p["border_samples"],
                     "test_pairs": p["n_test"], "device": str(device)},
        "networks": [],
    }
    for name, folder in folders.items():
        estimate = network_estimator(load_trained(folder, device), device, tile=None)
        per_size: dict[str, list[list[float]]] = {f"{h}x{w}": [] for h, w in sizes}
        for index in range(p["n_test"]):
            pair = read_pair(test, index)
            for h, w in sizes:
                per_size[f"{h}x{w}"].append(band_errors(estimate, pair.pre, pair.post, pair.displacement, (h, w),
                                                        lines, p["border_samples"]))
        row: dict[str, Any] = {"artifact": name, "crops": {}}
        for key, values in per_size.items():
            flat = [v for bands in values for v in bands]
            row["crops"][key] = {"mean_axial_rmse": float(np.mean(flat)), "median_axial_rmse": float(np.median(flat)),
                                 "per_pair_per_band": values}
            print(f"{name} {key}: axial RMSE mean {np.mean(flat):.3f}, median {np.median(flat):.3f} samples", flush=True)
        result["networks"].append(row)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every network: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
