"""Keep the README's result tables equal to the run outputs they quote.

A result table in a Markdown file is marked by an HTML comment on the line before it that
names its source under the repository root (normally ``figures/``, where the pipeline copies a
full run's tables)::

    <!-- table: figures/03_cdp_kdnet__comparison.md -->
    | method | params | ... |

    <!-- table: figures/04_ablations__components.csv; columns: variant strain_rmse snre -->
    | variant | strain RMSE | SNRe |

A ``.md`` source is copied verbatim. A ``.csv`` source is rendered: the listed columns (all
when ``columns`` is absent), renamed for reading (:data:`COLUMN_TITLES`), numbers to three
significant digits (:data:`COLUMN_FORMATS` for the exceptions), and ``mean ± std`` wherever the
CSV has a finite ``<column>_std`` beside the column (the ablations' seed spread, two digits).

``python -m cdpkd.readme_tables README.md`` rewrites every marked table from its source;
``--check`` only reports the stale ones and exits 1, so a hand-copied number cannot drift from
the run it claims to come from.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import write_text
from .report import markdown_table, mean_std_text
from .runtime import REPO_ROOT

MARKER = re.compile(r"^<!-- table: (?P<source>[^;]+?)(?:; columns: (?P<columns>[^>]+?))? -->$")

# reader-facing titles of the metric keys of the result files (DESIGN.md section 4)
COLUMN_TITLES = {
    "params": "params",
    "flops": "FLOPs",
    "gflops": "GFLOPs",
    "strain_rmse": "strain RMSE",
    "snre": "SNRe",
    "cnr_db": "CNR (dB)",
    "warp_ncc": "warp NCC",
    "disp_rmse_axial": "axial disp. RMSE (samples)",
    "disp_rmse_lateral": "lateral disp. RMSE (lines)",
    "peak_mem_cpu_mb": "peak memory CPU (MB)",
    "latency_cpu_ms": "CPU latency (ms)",
    "latency_gpu_fp32_ms": "GPU fp32 latency (ms)",
    "latency_gpu_bf16_ms": "GPU bf16 latency (ms)",
    "seeds": "seeds",
}
# number formats that differ from three significant digits
COLUMN_FORMATS = {
    "params": "{:,.0f}",
    "seeds": "{:.0f}",
    "warp_ncc": "{:.4g}",
    "latency_cpu_ms": "{:.0f}",
    "peak_mem_cpu_mb": "{:.0f}",
}
DEFAULT_FORMAT = "{:.3g}"
SPREAD_FORMAT = "{:.2g}"  # a seed spread has no third significant digit worth printing


@dataclass(frozen=True)
class MarkedTable:
    """One marked table: its line span [start, stop) (0-based; the marker is the line before) and spec."""

    start: int
    stop: int
    source: str
    columns: tuple[str, ...] | None


def find_tables(lines: list[str]) -> list[MarkedTable]:
    """The marked tables of a Markdown file's lines; a marker not followed by a table is an error."""
    found = []
    for i, line in enumerate(lines):
        if not line.startswith("<!-- table"):
            continue
        match = MARKER.match(line.strip())
        if match is None:
            raise ValueError(f"line {i + 1}: malformed table marker {line.strip()!r} "
                             "(expected '<!-- table: <path>[; columns: a b c] -->')")
        stop = i + 1
        while stop < len(lines) and lines[stop].startswith("|"):
            stop += 1
        if stop == i + 1:
            raise ValueError(f"line {i + 1}: table marker for {match['source']} is not followed by a table")
        columns = tuple(match["columns"].split()) if match["columns"] else None
        found.append(MarkedTable(i + 1, stop, match["source"].strip(), columns))
    return found


def _cell(column: str, value: Any, std: Any = None) -> str:
    """One rendered cell: text as is, a number in its column's format (``mean ± std`` with a
    finite spread), a missing or NaN number as a dash."""
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "—"
    spread = None if std is None or pd.isna(std) else float(std)
    return mean_std_text(float(value), spread, COLUMN_FORMATS.get(column, DEFAULT_FORMAT), SPREAD_FORMAT)


def render_csv(path: Path, columns: tuple[str, ...] | None = None) -> str:
    """A CSV result table as Markdown: ``columns`` (default: all but the ``_std`` ones), titled
    by :data:`COLUMN_TITLES`, numbers formatted, ``mean ± std`` where a ``<column>_std`` exists."""
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    header = list(frame.columns)
    chosen = list(columns) if columns else [c for c in header if not c.endswith("_std")]
    missing = [c for c in chosen if c not in header]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; it has {header}")
    cells = {}
    for column in chosen:
        spreads = frame[f"{column}_std"] if f"{column}_std" in frame else [None] * len(frame)
        cells[COLUMN_TITLES.get(column, column)] = [_cell(column, v, s) for v, s in zip(frame[column], spreads)]
    return markdown_table(pd.DataFrame(cells))


def render(source: str, columns: tuple[str, ...] | None, root: Path = REPO_ROOT) -> str:
    """The Markdown table a marker asks for (``source`` relative to ``root``)."""
    path = root / source
    if not path.is_file():
        raise FileNotFoundError(f"table source {source} not found under {root}")
    if path.suffix == ".md":
        if columns:
            raise ValueError(f"{source}: 'columns' applies to .csv sources only (a .md table is copied verbatim)")
        text = path.read_text()
        return text if text.endswith("\n") else text + "\n"
    if path.suffix == ".csv":
        return render_csv(path, columns)
    raise ValueError(f"{source}: table sources are .md or .csv files")


def sync(document: Path, root: Path = REPO_ROOT, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, only compare) every marked table of ``document``; returns the
    sources whose table was (or would be) changed."""
    lines = document.read_text().splitlines(keepends=True)
    stale = []
    # from the last table up, so earlier line numbers stay valid while replacing
    for table in reversed(find_tables(lines)):
        wanted = render(table.source, table.columns, root).splitlines(keepends=True)
        if lines[table.start : table.stop] != wanted:
            stale.append(table.source)
            lines[table.start : table.stop] = wanted
    if stale and not check:
        write_text(document, "".join(lines))
    return stale[::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("documents", nargs="+", type=Path, help="Markdown files with marked tables")
    parser.add_argument("--check", action="store_true", help="report stale tables, change nothing, exit 1 if any")
    args = parser.parse_args(argv)
    status = 0
    for document in args.documents:
        stale = sync(document, check=args.check)
        for source in stale:
            print(f"{document}: table from {source} {'is stale' if args.check else 'rewritten'}")
        status |= int(bool(stale) and args.check)
    return status


if __name__ == "__main__":
    sys.exit(main())
