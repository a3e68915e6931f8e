"""Where does the teacher's strain error come from? (the teacher issue's open gap: NCC is better)

Scores one trained network (a cached artifact of ``make reproduce``) on a few simulated test pairs,
with notebook 01's tiles, strain window and border under ``--profile``, and records what the
README's teacher section says about its error:

- ``modes``: strain / axial displacement RMSE with plain tiles, guided tiles (the notebooks'),
  guided tiles centred on the median of the coarse estimate instead of below its minimum, guided
  tiles averaged with the laterally mirrored pair (a test-time ensemble), and NCC block matching;
- ``depth_bands``: strain RMSE per band of rows (plain and guided tiles: is the error at the
  compressed surface?);
- ``structure``: how the guided-tile and NCC strain errors are built: the share of their power
  that is a function of depth only, and their lateral and axial autocorrelation (speckle-sized
  noise or a tile-sized pattern?);
- ``smoothed``: strain RMSE of the guided-tile displacement after a box filter (samples x lines):
  how much a smoother output would gain; ``smoothed_ncc``: NCC block matching's after the same
  filters (a smoother output trades resolution for noise: compare the two at the same filter);
- ``locking``: the mean axial displacement error of the guided tiles and of NCC in each eighth of the
  true axial displacement's sub-sample part (peak locking: an estimator biased toward whole samples
  has a curve swinging with it; a flat curve has none);
- ``release``: on the same pair played backwards (``cdpkd.sim.release``), the mean axial strain
  of the truth and of the network (plain and guided tiles): does it find the sign?

    python studies/teacher_diagnostics.py --profile cpu --artifact teacher/b47059a98936d310

Writes ``studies/results/teacher_diagnostics_<profile>.json`` (provenance, settings, one row per pair).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from cdpkd.atomic import write_text
from cdpkd.classic import ncc_block_matching
from cdpkd.estimators import default_device, network_estimator
from cdpkd.evaluation import pair_metrics, scored_mask
from cdpkd.metrics import axial_strain
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import load_trained, network_crop
from cdpkd.runtime import provenance
from cdpkd.sim import read_pair
from cdpkd.sim.release import release_pair
from cdpkd.sim.study import notebook_datasets

from _study import add_artifact_argument, output_path, study_parser, trained_folders

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"
BAND_ROWS = 128
SMOOTHING = ((1, 9), (21, 9), (41, 9), (61, 9))  # box filters (samples, lines); NCC block matching's window is 41 x 9
LOCKING_BINS = 8
LATERAL_LAGS = (1, 2, 4, 8, 16)
AXIAL_LAGS = (4, 16, 32, 64, 128)


def mirrored(estimate: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``estimate`` averaged with its run on the laterally mirrored pair (lateral component negated)."""

    def run(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
        direct = estimate(pre, post)
        flipped = estimate(np.ascontiguousarray(pre[:, ::-1]), np.ascontiguousarray(post[:, ::-1]))[:, :, ::-1]
        return 0.5 * (direct + flipped * np.array([1.0, -1.0], dtype=np.float32)[:, None, None])

    return run


def strain_error(estimate: np.ndarray, truth: np.ndarray, window: int) -> np.ndarray:
    """H x W axial strain error (estimate minus truth), LS strain with the same window for both."""
    return axial_strain(estimate[None], window)[0, 0] - axial_strain(truth[None], window)[0, 0]


def depth_bands(error: np.ndarray, mask: np.ndarray) -> list[dict[str, float]]:
    """Strain RMSE per band of ``BAND_ROWS`` rows (scored pixels only)."""
    bands = []
    for top in range(0, error.shape[0], BAND_ROWS):
        rows = slice(top, top + BAND_ROWS)
        if mask[rows].any():
            bands.append({"rows": [top, min(top + BAND_ROWS, error.shape[0])],
                          "strain_rmse": float(np.sqrt(np.mean(error[rows][mask[rows]] ** 2)))})
    return bands


def error_structure(error: np.ndarray, border: tuple[int, int]) -> dict[str, Any]:
    """Share of the error power that depends on depth only, and the autocorrelation of the rest."""
    by, bx = border
    e = error[by : error.shape[0] - by, bx : error.shape[1] - bx]
    depth = e.mean(axis=1, keepdims=True)
    rest = e - depth
    power = np.mean(rest * rest)
    return {
        "depth_profile_share": float(np.mean(depth**2) / np.mean(e**2)),
        "lateral_autocorrelation": {str(k): float(np.mean(rest[:, :-k] * rest[:, k:]) / power) for k in LATERAL_LAGS},
        "axial_autocorrelation": {str(k): float(np.mean(rest[:-k] * rest[k:]) / power) for k in AXIAL_LAGS},
    }


def locking_curve(
    estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray, bins: int = LOCKING_BINS
) -> list[float | None]:
    """Mean axial displacement error (samples) of the masked pixels in each of ``bins`` equal parts of
    the true axial displacement's sub-sample part [0, 1) (None for an empty part: JSON has no NaN)."""
    error = (estimate[0] - truth[0])[mask]
    part = np.minimum((np.mod(truth[0][mask], 1.0) * bins).astype(int), bins - 1)
    return [float(error[part == b].mean()) if np.any(part == b) else None for b in range(bins)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "teacher_diagnostics")
    add_artifact_argument(parser)
    parser.add_argument("--pairs", type=int, nargs="+", default=[0, 1, 4, 14], help="test pair indices")
    args = parser.parse_args(argv)

    p = resolved_parameters(args.profile, NOTEBOOK)
    folder = trained_folders(args.data_dir, [args.artifact])[args.artifact]
    test = notebook_datasets(args.data_dir, p)["test"]
    tile, window = network_crop(p), p["strain_window"]
    border = (p["border_samples"], p["border_lines"])
    device = default_device()
    model = load_trained(folder, device)

    def network(**options: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return network_estimator(model, device, tile=tile, overlap=p["tile_overlap"], **options)

    guided = network(guided=True)
    modes = {
        "plain": network(),
        "guided": guided,
        "guided_median_centred": network(guided=True, guide_quantile=0.5, guide_margin=0.0),
        "guided_mirror_average": mirrored(guided),
        "ncc": ncc_block_matching,
    }
    out = output_path(args)
    result: dict[str, Any] = {
        **provenance(), "artifact": args.artifact, "profile": args.profile,
        "settings": {"tile": list(tile), "overlap": p["tile_overlap"], "strain_window": window,
                     "border": list(border), "band_rows": BAND_ROWS, "smoothing": [list(s) for s in SMOOTHING]},
        "pairs": [],
    }
    for index in args.pairs:
        pair = read_pair(test, index)
        mask = scored_mask(pair.labels, border, window)
        row: dict[str, Any] = {"pair": index, "applied_strain_pct": float(pair.meta["applied_strain"]) * 100,
                               "modes": {}, "depth_bands": {}, "structure": {}}
        estimates = {}
        for name, estimate in modes.items():
            estimates[name] = np.asarray(estimate(pair.pre, pair.post), dtype=np.float32)
            m = pair_metrics(estimates[name], pair.displacement, pair.pre, pair.post, pair.labels,
                             strain_window=window, border=border)
            row["modes"][name] = {k: m[k] for k in ("strain_rmse", "disp_rmse_axial", "disp_rmse_lateral")}
        for name in ("plain", "guided", "ncc"):
            error = strain_error(estimates[name], pair.displacement, window)
            if name != "ncc":
                row["depth_bands"][name] = depth_bands(error, mask)
            if name != "plain":
                row["structure"][name] = error_structure(error, border)
        for name, key in (("guided", "smoothed"), ("ncc", "smoothed_ncc")):
            row[key] = {
                f"{a}x{b}": pair_metrics(uniform_filter(estimates[name], size=(1, a, b), mode="nearest"),
                                         pair.displacement, pair.pre, pair.post, pair.labels,
                                         strain_window=window, border=border)["strain_rmse"]
                for a, b in SMOOTHING
            }
        row["locking"] = {name: locking_curve(estimates[name], pair.displacement, mask) for name in ("guided", "ncc")}
        released = release_pair(pair)
        inner = scored_mask(released.labels, border, window)
        row["release"] = {"true_mean_axial_strain": float(axial_strain(released.displacement[None], window)[0, 0][inner].mean())}
        for name in ("plain", "guided"):
            estimate = np.asarray(modes[name](released.pre, released.post), dtype=np.float32)
            row["release"][f"{name}_mean_axial_strain"] = float(axial_strain(estimate[None], window)[0, 0][inner].mean())
        result["pairs"].append(row)
        print(f"pair {index}: " + ", ".join(f"{k} {v['strain_rmse']:.2e}" for k, v in row["modes"].items()), flush=True)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every pair: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
