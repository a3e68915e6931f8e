"""What every study script shares: its command line (profile, artifact root, output file, JSON
options) and the check that a named trained network exists before anything is loaded or trained.

The studies are scripts run from the repository root (``python studies/<name>.py``), which puts
this folder on ``sys.path``; tests load them the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from cdpkd.recipes import network_tile

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "studies" / "results"


def study_parser(doc: str | None, results_stem: str) -> argparse.ArgumentParser:
    """A parser with ``--profile`` (default cpu), ``--data-dir`` (``make reproduce``'s artifact root)
    and ``--out`` (default ``studies/results/<results_stem>_<profile>.json``, see :func:`output_path`);
    the description is the first line of the study's docstring."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--profile", default="cpu", help="profiles/<name>.yaml whose notebook parameters to use")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="artifact root (make reproduce's)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"result file (default studies/results/{results_stem}_<profile>.json)")
    parser.set_defaults(results_stem=results_stem)
    return parser


def json_object(text: str, option: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object, or an argparse error naming ``option`` (for ``type=``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{option}: invalid JSON ({err})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{option}: the JSON must be an object")
    return value


def parse_setting(text: str) -> dict[str, Any]:
    """A ``--set`` value as ``{name: value}``: ``NAME=JSON`` sets one parameter (a value that is not
    JSON is taken as a string: ``distiller=feature``); a JSON object sets several at once. For
    ``type=`` with ``action="append"``; merge the list with :func:`merge_settings`."""
    if text.lstrip().startswith("{"):
        return json_object(text, "--set")
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected NAME=VALUE (VALUE as JSON) or a JSON object")
    try:
        return {name: json.loads(value)}
    except json.JSONDecodeError:
        return {name: value}


def merge_settings(settings: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated ``--set`` values as one mapping; a parameter set twice is an error, not a silent override."""
    merged: dict[str, Any] = {}
    for setting in settings:
        twice = sorted(set(setting) & set(merged))
        if twice:
            raise SystemExit(f"--set: {twice} set more than once")
        merged.update(setting)
    return merged


def add_artifact_argument(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    """``--artifact KIND/KEY``: a trained network's folder under ``--data-dir`` (required)."""
    if repeatable:
        parser.add_argument("--artifact", action="append", required=True, metavar="KIND/KEY",
                            help="a trained network's folder under --data-dir, e.g. teacher/<key>; repeatable")
    else:
        parser.add_argument("--artifact", required=True, metavar="KIND/KEY",
                            help="a trained network's folder under --data-dir, e.g. teacher/<key>")


def _size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"a tile size must be >= 1, got {value}")
    return value


def add_tile_argument(parser: argparse.ArgumentParser) -> None:
    """``--tile SAMPLES LINES``: the networks' tiles instead of the profile's, e.g. for networks
    trained on other crops (see :func:`study_tile`)."""
    parser.add_argument("--tile", type=_size, nargs=2, default=None, metavar=("SAMPLES", "LINES"),
                        help="the networks' tiles (default: the notebooks' tile under the profile, "
                             "cdpkd.recipes.network_tile), e.g. for networks trained on wider crops")


def study_tile(args: argparse.Namespace, params: dict[str, Any]) -> tuple[int, int]:
    """``--tile``, or the notebooks' tile under the notebook parameters ``params``
    (:func:`~cdpkd.recipes.network_tile`: ``tile_samples`` deep, the teacher's last crop wide)."""
    if args.tile:
        return args.tile[0], args.tile[1]
    return network_tile({**params, "tiled_inference": True})


def output_path(args: argparse.Namespace) -> Path:
    """``--out``, or ``studies/results/<results_stem>_<profile>.json``."""
    return args.out or RESULTS_DIR / f"{args.results_stem}_{args.profile}.json"


def trained_folders(data_dir: Path, artifacts: list[str]) -> dict[str, Path]:
    """``{artifact: folder}`` for artifacts ``KIND/KEY`` under ``data_dir``; exits with the list of
    those that hold no trained model (``model.pt``) before anything is loaded."""
    folders = {name: data_dir / name for name in artifacts}
    missing = [name for name, folder in folders.items() if not (folder / "model.pt").is_file()]
    if missing:
        raise SystemExit(f"no trained model in {missing} under {data_dir}")
    return folders


def scored_row(mean: pd.Series, per_pair_strain_rmse: pd.Series) -> dict[str, Any]:
    """One scored estimator as the studies write it: its mean metrics (a row of
    :attr:`cdpkd.evaluation.Evaluation.summary`), the median and each pair's strain RMSE (its column
    of :func:`cdpkd.evaluation.per_pair_table`), as plain floats."""
    return {
        "mean": {k: float(v) for k, v in mean.items()},
        "median_strain_rmse": float(per_pair_strain_rmse.median()),
        "per_pair_strain_rmse": [float(x) for x in per_pair_strain_rmse],
    }
