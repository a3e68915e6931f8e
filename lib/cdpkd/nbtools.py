"""Maintainer tools for the committed notebooks.

    python -m cdpkd.nbtools execute notebooks/*.ipynb   # run with smoke defaults, in place, then clean
    python -m cdpkd.nbtools clean notebooks/*.ipynb     # strip volatile metadata only

Committed notebooks carry their smoke-profile outputs (nbval compares the
cells marked ``# NBVAL_CHECK_OUTPUT``); timestamps, durations and papermill's
bookkeeping would make every re-run a diff, so they are removed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

_VOLATILE_CELL_KEYS = ("execution", "papermill", "collapsed", "scrolled", "jupyter")


def clean(path: str | os.PathLike) -> None:
    """Remove volatile metadata from a notebook file, in place."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        for key in _VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        tags = cell.metadata.get("tags")
        if tags is not None and not tags:
            cell.metadata.pop("tags")
        # papermill marks the injected-parameters cell; the committed notebook has none
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nbformat.write(nb, path)


def execute(path: str | os.PathLike) -> None:
    """Execute a notebook in place with its own (smoke) defaults, then :func:`clean` it."""
    import papermill

    os.environ["CDPKD_PROGRESS"] = "0"
    path = Path(path)
    papermill.execute_notebook(str(path), str(path), kernel_name="python3", cwd=str(path.parent), progress_bar=False)
    clean(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdpkd.nbtools", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("execute", "clean"))
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        print(f"{args.action}: {nb}", flush=True)
        (execute if args.action == "execute" else clean)(nb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
