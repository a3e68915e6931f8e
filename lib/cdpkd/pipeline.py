"""Run the ordered notebooks under a profile with papermill.

    python -m cdpkd.pipeline --profile smoke|cpu|paper [--only 00 01 ...] [--resume]

Parameters come from ``profiles/<profile>.yaml``::

    description: ...
    common:            # passed to every notebook that declares the parameter
      n_train: 128
    notebooks:
      00_data_simulation:
        simus_pairs: 2

A notebook must declare every parameter it is given (a typo in a profile is
an error, not a silently ignored value); ``common`` entries go only to the
notebooks that declare them. The pipeline always sets ``profile``.

Executed notebooks go to ``results/<profile>/``, the run state (status, wall
time, git SHA per notebook) to ``results/<profile>/pipeline.json``. After a
non-smoke run, the figures and tables of the notebooks that succeeded (also when a
later one failed) are copied to ``figures/`` with ``figures/PROVENANCE.json``. Expensive artifacts are cached
by the notebooks themselves (:mod:`cdpkd.artifacts`), so re-running after a
failure resumes where the work was; ``--resume`` additionally skips notebooks
that already succeeded with the same parameters at the same commit.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .artifacts import artifact_key
from .atomic import write_json
from .runtime import REPO_ROOT, device_description, git_sha, utc_now

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILE_DIR = REPO_ROOT / "profiles"
RESULTS_DIR = REPO_ROOT / "results"
FIGURES_DIR = REPO_ROOT / "figures"
KERNEL = "python3"


class PipelineError(RuntimeError):
    """A notebook failed or a profile is invalid; the message says which and where."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    common: dict[str, Any]
    notebooks: dict[str, dict[str, Any]]


def list_notebooks(notebook_dir: Path | None = None) -> list[Path]:
    """The pipeline's notebooks, in order (``NN_name.ipynb``)."""
    return sorted((notebook_dir or NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))


def load_profile(name: str, profile_dir: Path | None = None) -> Profile:
    """Read and check ``profiles/<name>.yaml``."""
    profile_dir = profile_dir or PROFILE_DIR
    path = profile_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in profile_dir.glob("*.yaml"))
        raise PipelineError(f"unknown profile {name!r}: no {path} (known profiles: {', '.join(known)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: invalid YAML: {err}") from err
    unknown = set(data) - {"description", "common", "notebooks"}
    if unknown:
        raise PipelineError(f"{path}: unknown top-level keys {sorted(unknown)}")
    common = data.get("common") or {}
    notebooks = data.get("notebooks") or {}
    if not isinstance(common, dict) or not isinstance(notebooks, dict):
        raise PipelineError(f"{path}: 'common' and 'notebooks' must be mappings")
    return Profile(name, str(data.get("description", "")), common, {k: v or {} for k, v in notebooks.items()})


def declared_parameters(notebook: Path) -> set[str]:
    """Names in the notebook's cell tagged ``parameters``."""
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    if not declared:
        raise PipelineError(f"{notebook.name}: no cell tagged 'parameters'")
    return declared


def notebook_parameters(profile: Profile, notebook: Path) -> dict[str, Any]:
    """Parameters for one notebook: declared ``common`` entries, its own section, ``profile``."""
    declared = declared_parameters(notebook)
    own = profile.notebooks.get(notebook.stem, {})
    undeclared = sorted(set(own) - declared)
    if undeclared:
        raise PipelineError(
            f"profile {profile.name!r} sets {undeclared} for {notebook.name}, which declares only {sorted(declared)}"
        )
    params = {k: v for k, v in profile.common.items() if k in declared}
    params.update(own)
    params["profile"] = profile.name
    return params


def resolved_parameters(profile_name: str, notebook: Path) -> dict[str, Any]:
    """Every parameter a notebook runs with under a profile: the defaults of its ``parameters`` cell
    (Python literals), updated by :func:`notebook_parameters`. For scripts that must build what a
    notebook builds (same recipes, so the same cached artifacts)."""
    import papermill

    defaults = {}
    for name, spec in papermill.inspect_notebook(str(notebook)).items():
        try:
            defaults[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError) as err:
            raise PipelineError(f"{notebook.name}: parameter {name} = {spec['default']!r} is not a literal") from err
    return {**defaults, **notebook_parameters(load_profile(profile_name), notebook)}


def select_notebooks(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """The notebooks named in ``only`` (by number or stem), in the order of ``notebooks``; all of them
    when ``only`` is empty.

    Raises:
        PipelineError: naming what matches no notebook.
    """
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.stem == o or nb.stem.startswith(f"{o}_") for o in only)]
    missing = [o for o in only if not any(nb.stem == o or nb.stem.startswith(f"{o}_") for nb in notebooks)]
    if missing:
        raise PipelineError(f"--only {missing}: no such notebook (have {[nb.stem for nb in notebooks]})")
    return chosen


def execute_notebook(notebook: Path, output: Path, params: dict[str, Any]) -> None:
    """Run ``notebook`` with papermill (in its own folder, parameters injected) and save the executed
    copy to ``output``.

    Raises:
        PipelineError: naming the failing cell and where the executed copy with the traceback is.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=params,
            kernel_name=KERNEL,
            cwd=str(notebook.parent),
            progress_bar=False,
            request_save_on_cell_execute=True,
        )
    except PapermillExecutionError as err:
        raise PipelineError(
            f"notebook {notebook.name} failed in cell {err.exec_count} (cell index {err.cell_index}): "
            f"{err.ename}: {err.evalue}\n  executed copy with the full traceback: {output}"
        ) from None


def _publish(profile: str, stems: list[str], state: dict[str, Any]) -> None:
    """Copy a full run's figures and tables to figures/ and record where they came from."""
    source = RESULTS_DIR / profile
    FIGURES_DIR.mkdir(exist_ok=True)
    provenance_path = FIGURES_DIR / "PROVENANCE.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {"notebooks": {}}
    for stem in stems:
        files = []
        for sub in ("figures", "tables"):
            for path in sorted((source / sub).glob(f"{stem}__*")):
                shutil.copy2(path, FIGURES_DIR / path.name)
                files.append(path.name)
        provenance["notebooks"][stem] = {"profile": profile, "files": files, **state[stem]}
    write_json(provenance_path, provenance)


def run(profile_name: str, only: list[str] | None = None, resume: bool = False) -> dict[str, Any]:
    """Execute the (selected) notebooks under a profile; returns the run state.

    Raises:
        PipelineError: naming the profile problem or the failing notebook and cell.
    """
    profile = load_profile(profile_name)
    notebooks = select_notebooks(list_notebooks(), only)
    if not notebooks:
        raise PipelineError(f"no notebooks found in {NOTEBOOK_DIR}")
    out_dir = RESULTS_DIR / profile.name
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "pipeline.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    # batch runs stay quiet: no progress bars in executed notebooks or logs
    os.environ["CDPKD_PROGRESS"] = "0"
    sha = git_sha()
    done: list[str] = []
    try:
        for notebook in notebooks:
            params = notebook_parameters(profile, notebook)
            key = artifact_key(params)
            previous = state.get(notebook.stem, {})
            if resume and previous.get("status") == "ok" and previous.get("params_key") == key and previous.get("git_sha") == sha:
                print(f"[{profile.name}] {notebook.stem}: up to date, skipped (--resume)", flush=True)
                continue
            print(f"[{profile.name}] {notebook.stem}: running ...", flush=True)
            start = time.perf_counter()
            record = {"params_key": key, "git_sha": sha, "device": device_description(), "date": utc_now()}
            try:
                execute_notebook(notebook, out_dir / notebook.name, params)
            except PipelineError:
                state[notebook.stem] = {**record, "status": "failed", "wall_s": round(time.perf_counter() - start, 1)}
                write_json(state_path, state)
                raise
            state[notebook.stem] = {**record, "status": "ok", "wall_s": round(time.perf_counter() - start, 1)}
            write_json(state_path, state)
            done.append(notebook.stem)
            print(f"[{profile.name}] {notebook.stem}: ok in {state[notebook.stem]['wall_s']} s", flush=True)
    finally:
        # what finished is published even when a later notebook fails: its results files
        # are already rewritten, and figures/ must not keep the previous run's
        if profile.name != "smoke" and done:
            _publish(profile.name, done, state)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpkd.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="profiles/<name>.yaml (smoke, cpu, paper)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (by number or stem)")
    parser.add_argument("--resume", action="store_true", help="skip notebooks already run ok with the same parameters")
    args = parser.parse_args(argv)
    try:
        run(args.profile, args.only, args.resume)
    except PipelineError as err:
        print(f"pipeline error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
