"""What a notebook leaves behind: figures, tables (CSV + Markdown) and a metrics JSON.

Layout under ``<results_dir>/<profile>/``::

    <stem>.json                 {"profile", "device", "git_sha", "date", "methods": {...}, ...}
    figures/<stem>__<name>.png
    tables/<stem>__<name>.csv and .md

The pipeline copies figures and tables of full (non-smoke) runs to ``figures/``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_json, write_text
from .runtime import git_sha, run_stamp


def markdown_table(df: Any, float_format: str = "{:.4g}") -> str:
    """Render a pandas DataFrame as a GitHub Markdown table (index included when named)."""
    frame = df.reset_index() if df.index.name is not None else df

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else float_format.format(value)
        return str(value)

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def mean_std_text(mean: float, std: float | None = None, fmt: str = "{:.3g}", spread_fmt: str | None = None) -> str:
    """``mean`` formatted, followed by `` ± std`` when ``std`` is finite (``spread_fmt``, default
    ``fmt``); a single seed's NaN spread prints the mean alone."""
    text = fmt.format(mean)
    if std is not None and math.isfinite(std):
        text += " ± " + (spread_fmt or fmt).format(std)
    return text


class NotebookReport:
    """Writes one notebook's outputs for one profile.

    Args:
        stem: notebook name without extension, e.g. ``"00_data_simulation"``.
        profile: ``smoke``, ``cpu`` or ``paper``.
        results_dir: root of the results tree.
    """

    def __init__(self, stem: str, profile: str, results_dir: str | os.PathLike = "../results") -> None:
        self.stem = stem
        self.profile = profile
        self.root = Path(results_dir) / profile
        self.root.mkdir(parents=True, exist_ok=True)
        # the commit the notebook starts from: an edit to the tree while it runs is not what ran
        self.git_sha = git_sha()

    def figure(self, fig: Any, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as PNG; returns its path."""
        target = self.root / "figures" / f"{self.stem}__{name}.png"
        with atomic_path(target, suffix=".png") as tmp:
            # no timestamp metadata, so re-running gives the same file
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None})
        return target

    def table(self, df: Any, name: str) -> Path:
        """Save a DataFrame as CSV and Markdown; returns the Markdown path."""
        buffer = io.StringIO()
        df.to_csv(buffer)
        write_text(self.root / "tables" / f"{self.stem}__{name}.csv", buffer.getvalue())
        return write_text(self.root / "tables" / f"{self.stem}__{name}.md", markdown_table(df))

    def metrics(self, methods: dict[str, dict[str, float]], **extra: Any) -> Path:
        """Write ``<stem>.json`` with provenance, per-method metrics and extra sections.

        NaN / Inf (a metric that was not measured, e.g. GPU latency without a
        GPU, or undefined, e.g. CNR without an inclusion) are written as ``null``.
        """
        payload = {
            "notebook": self.stem,
            "profile": self.profile,
            **run_stamp(),
            "git_sha": self.git_sha,
            "methods": methods,
            **extra,
        }
        return write_json(self.root / f"{self.stem}.json", _finite_or_null(payload))


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value
