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

Where the wide input fails, two ways: across the lines (``line_profile``: the axial RMSE of every
line of the frame over all pairs and bands of ``--rows``, from one forward on the frame's whole
width and from strips of the training width side by side, no overlap), and along the pyramid
(``levels``: for every crop size, the median axial RMSE of each estimator level's displacement,
upsampled bilinearly to the crop, on the same pixels: the first level where a wide crop falls
behind the training-width crop is where the network stops handling the width; PWC-family
networks only).

    python studies/input_width.py --profile cpu --artifact teacher/edb500e7b84e6931

Writes ``studies/results/input_width_<profile>.json`` (provenance, settings, per network and crop
size the mean and median axial RMSE over the pairs and bands, and the per-pair, per-band values).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cdpkd.atomic import write_text
from cdpkd.estimators import default_device, network_estimator, normalised_forward
from cdpkd.models import PWCNet
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import load_trained, network_crop
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
    h = size[0]
    errors = []
    for y0 in range(0, pre.shape[0] - h + 1, h):
        box = crop_box(pre.shape, size, y0, lines)
        disp = np.asarray(estimate_fn(pre[box], post[box]), dtype=np.float64)
        err = disp[0] - truth[0][box]
        x0 = box[1].start
        kept = err[border : h - border, lines.start - x0 : lines.stop - x0]
        errors.append(float(np.sqrt(np.mean(kept**2))))
    return errors


def crop_box(frame: tuple[int, int], size: tuple[int, int], y0: int, lines: slice) -> tuple[slice, slice]:
    """Rows ``y0`` .. ``y0 + h`` and the ``w`` lines centred on the frame, which must cover ``lines``."""
    width, (h, w) = frame[1], size
    x0 = (width - w) // 2
    if lines.start < x0 or lines.stop > x0 + w:
        raise ValueError(f"crop {size} does not cover the scored lines {lines.start}..{lines.stop}")
    return slice(y0, y0 + h), slice(x0, x0 + w)


def level_errors(model: torch.nn.Module, pre: np.ndarray, post: np.ndarray, truth: np.ndarray,
                 size: tuple[int, int], lines: slice, border: int) -> list[list[float]]:
    """Per crop of ``size`` stacked down the frame (as :func:`band_errors`), the axial RMSE (samples) of
    every estimator level's displacement (coarse to fine, then the network's output), each upsampled
    bilinearly to the crop and scored on the same pixels. One forward per crop, normalised as
    :func:`cdpkd.estimators.network_estimator` normalises it, so the last value of each crop is
    :func:`band_errors` of that estimator without running the network again."""
    device = next(model.parameters()).device
    h = size[0]
    errors = []
    for y0 in range(0, pre.shape[0] - h + 1, h):
        box = crop_box(pre.shape, size, y0, lines)
        a, b = (torch.as_tensor(np.asarray(frame[box], dtype=np.float32), device=device)[None, None]
                for frame in (pre, post))
        with torch.no_grad():
            out = normalised_forward(model, a, b)
        fields = [F.interpolate(level.float(), size=size, mode="bilinear", align_corners=False)
                  for level in out["levels"]] + [out["displacement"].float()]
        x0 = box[1].start
        kept = (slice(border, h - border), slice(lines.start - x0, lines.stop - x0))
        truth_box = truth[0][box]
        errors.append([float(np.sqrt(np.mean((f[0, 0].cpu().numpy().astype(np.float64) - truth_box)[kept] ** 2)))
                       for f in fields])
    return errors


def line_errors(estimate_fn, pre: np.ndarray, post: np.ndarray, truth: np.ndarray, rows: int,
                border: int) -> np.ndarray:
    """Sum of squared axial errors (samples^2) per line of the frame, and the number of rows summed, of
    ``estimate_fn`` on full-width bands ``rows`` deep stacked down the frame (each less ``border``
    samples at top and bottom): ``2 x W``."""
    height, width = pre.shape
    total = np.zeros((2, width))
    for y0 in range(0, height - rows + 1, rows):
        band = slice(y0, y0 + rows)
        err = np.asarray(estimate_fn(pre[band], post[band]), dtype=np.float64)[0] - truth[0][band]
        total[0] += np.sum(err[border : rows - border] ** 2, axis=0)
        total[1] += rows - 2 * border
    return total


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
    crop = network_crop(p)
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
    rows = min(args.rows, frame[0])
    for name, folder in folders.items():
        model = load_trained(folder, device)
        estimate = network_estimator(model, device, tile=None)
        strips = network_estimator(model, device, tile=(rows, crop[1]), overlap=0.0)  # side by side, one forward each
        has_levels = isinstance(model, PWCNet)  # per-level outputs: the PWC family only
        per_size: dict[str, list[list[float]]] = {f"{h}x{w}": [] for h, w in sizes}
        per_level: dict[str, list[list[float]]] = {f"{h}x{w}": [] for h, w in sizes}
        by_line = {"whole_width": np.zeros((2, frame[1])), "strips": np.zeros((2, frame[1]))}
        for index in range(p["n_test"]):
            pair = read_pair(test, index)
            for h, w in sizes:
                args_ = (pair.pre, pair.post, pair.displacement, (h, w), lines, p["border_samples"])
                if has_levels:  # one forward per crop gives every level and the output
                    crops = level_errors(model, *args_)
                    per_level[f"{h}x{w}"] += crops
                    per_size[f"{h}x{w}"].append([levels[-1] for levels in crops])
                else:
                    per_size[f"{h}x{w}"].append(band_errors(estimate, *args_))
            for mode, fn in (("whole_width", estimate), ("strips", strips)):
                by_line[mode] += line_errors(fn, pair.pre, pair.post, pair.displacement, rows, p["border_samples"])
        row: dict[str, Any] = {"artifact": name, "crops": {}}
        for key, values in per_size.items():
            flat = [v for bands in values for v in bands]
            row["crops"][key] = {"mean_axial_rmse": float(np.mean(flat)), "median_axial_rmse": float(np.median(flat)),
                                 "per_pair_per_band": values}
            if has_levels:  # coarse to fine, then the output
                row["crops"][key]["level_median_axial_rmse"] = np.median(per_level[key], axis=0).tolist()
            print(f"{name} {key}: axial RMSE mean {np.mean(flat):.3f}, median {np.median(flat):.3f} samples", flush=True)
        if has_levels:
            row["level_strides"] = list(model.config.strides)
        row["line_profile"] = {"rows": rows, **{mode: np.sqrt(t[0] / t[1]).tolist() for mode, t in by_line.items()}}
        result["networks"].append(row)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every network: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
