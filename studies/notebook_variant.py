"""Notebooks run under a profile with some parameters changed, beside the profile's own run.

Each notebook named by ``--notebook`` runs with the profile's parameters, updated by ``--set
NAME=JSON`` (repeatable; or one JSON object of several), into a work folder (``results/`` and ``figures/`` of the profile's own run are not
touched); the study file keeps the changes and each notebook's result JSON (with the notebook's own
provenance). Networks train into the artifact cache as usual, keyed by their recipes, so adopting
the same parameters in the profile later finds them trained.

    python studies/notebook_variant.py --name width16 --notebook 03 --set student_width_multiple=16
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from cdpkd.atomic import write_text
from cdpkd.pipeline import (
    RESULTS_DIR,
    PipelineError,
    declared_parameters,
    execute_notebook,
    list_notebooks,
    load_profile,
    notebook_parameters,
    select_notebooks,
)
from cdpkd.runtime import provenance

from _study import merge_settings, output_path, parse_setting, study_parser

# where a run reads and writes: the study sets them, a --set may not
RESERVED = ("profile", "data_dir", "results_dir")


def profile_run(profile: str, stem: str) -> dict[str, Any] | None:
    """Where the profile's own run of ``stem`` is, and its provenance (not its numbers), if there is one."""
    path = RESULTS_DIR / profile / f"{stem}.json"
    if not path.is_file():
        return None
    own = json.loads(path.read_text())
    return {"file": str(path.relative_to(RESULTS_DIR.parent)), **{k: own.get(k) for k in ("git_sha", "date", "device")}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "notebook_variant")
    parser.add_argument("--name", required=True,
                        help="the variant's label: the result file is studies/results/notebook_variant_<name>_<profile>.json")
    parser.add_argument("--notebook", action="append", required=True, metavar="NN",
                        help="a notebook by number or stem (repeatable; run in the pipeline's order)")
    parser.add_argument("--set", action="append", required=True, type=parse_setting, metavar="NAME=JSON",
                        dest="settings",
                        help="a parameter to change (repeatable), e.g. student_width_multiple=16, or a JSON object of several")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the executed notebooks and their results go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if not args.name.isidentifier():
        parser.error(f"--name {args.name!r}: letters, digits and underscores only")
    args.results_stem = f"notebook_variant_{args.name}"

    profile = load_profile(args.profile)
    try:
        notebooks = select_notebooks(list_notebooks(), args.notebook)
    except PipelineError as err:
        parser.error(str(err))
    changes = merge_settings(args.settings)
    reserved = [name for name in RESERVED if name in changes]
    if reserved:
        parser.error(f"--set {', '.join(reserved)}: the study sets {', '.join(RESERVED)} itself")
    for notebook in notebooks:  # every change must mean something to every notebook, checked before any runs
        unknown = sorted(set(changes) - declared_parameters(notebook))
        if unknown:
            parser.error(f"{notebook.stem} has no parameter {unknown}")

    work = args.work_dir or Path(tempfile.mkdtemp(prefix=f"notebook_variant_{args.name}_"))
    work.mkdir(parents=True, exist_ok=True)
    out = output_path(args)
    result = {**provenance(), "profile": args.profile, "name": args.name, "changes": changes,
              "work_dir": str(work), "notebooks": {}}
    for notebook in notebooks:
        params = {**notebook_parameters(profile, notebook), **changes,
                  "data_dir": str(args.data_dir.resolve()), "results_dir": str(work.resolve())}
        print(f"{notebook.stem} with {changes} -> {work}", flush=True)
        execute_notebook(notebook, work / notebook.name, params)
        own = json.loads((work / args.profile / f"{notebook.stem}.json").read_text())
        result["notebooks"][notebook.stem] = {"result": own, "profile_run": profile_run(args.profile, notebook.stem)}
        write_text(out, json.dumps(result, indent=1) + "\n")  # after each notebook: a stopped study keeps its rows
    print(f"-> {out}", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
