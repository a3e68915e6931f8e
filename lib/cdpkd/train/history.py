"""Training metrics: an in-memory :class:`History` mirrored to ``metrics.jsonl`` and ``metrics.csv``.

One record per logged step: ``step`` (updates done), ``epoch``, ``lr``,
``loss_<term>`` (window means), ``grad_norm``, ``time_per_step_s``, values
added by hooks, and ``val_<metric>`` on validation steps. JSON lines are
appended as training goes (a killed run keeps its log); the CSV is appended
too and rewritten whole only when a new column appears.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import write_text

JSONL_NAME = "metrics.jsonl"
CSV_NAME = "metrics.csv"


class History:
    """The metrics records of a run, oldest first.

    Attributes:
        records: list of dicts (keys vary: validation metrics appear only on
            validation steps).
        stopped_early: why the run stopped before ``config.steps`` (``"stop_after"``,
            ``"time_limit"``), or ``None``.
        checkpoint: path of the last checkpoint written or resumed from, if any.
    """

    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = list(records or [])
        self.stopped_early: str | None = None
        self.checkpoint: Path | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def __repr__(self) -> str:
        last = self.records[-1].get("step") if self.records else None
        return f"History({len(self.records)} records, last step {last}, columns {self.columns()})"

    @classmethod
    def read(cls, out_dir: str | Path) -> History:
        """The History of a run folder, from its ``metrics.jsonl`` (e.g. to plot a finished run)."""
        path = Path(out_dir) / JSONL_NAME
        if not path.exists():
            raise FileNotFoundError(f"no metrics log {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls([json.loads(line) for line in lines if line.strip()])

    def columns(self) -> list[str]:
        """Every key that occurs, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def frame(self):
        """The records as a pandas DataFrame (one row per record, NaN where absent)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records, columns=self.columns())

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of the records that have ``key`` (for plotting)."""
        rows = [(r["step"], r[key]) for r in self.records if r.get(key) is not None]
        return [s for s, _ in rows], [v for _, v in rows]

    def last(self, key: str, default: Any = None) -> Any:
        """The most recent value of ``key``."""
        for r in reversed(self.records):
            if r.get(key) is not None:
                return r[key]
        return default

    def best(self, key: str, mode: str = "min") -> dict[str, Any] | None:
        """The record with the smallest (``mode="min"``) or largest value of ``key``."""
        rows = [r for r in self.records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not rows:
            return None
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[key])


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    # NaN/Inf are not JSON: write null (pandas reads it back as NaN)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


class MetricsLog:
    """Writes :class:`History` records to ``out_dir`` (only on the main process).

    Args:
        out_dir: run folder.
        enabled: False on non-zero DDP ranks: keep the History, write nothing.
    """

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.jsonl = Path(out_dir) / JSONL_NAME
        self.csv = Path(out_dir) / CSV_NAME
        self.enabled = enabled
        self.history = History()
        self._columns: list[str] = []

    def resume(self, up_to_step: int) -> History:
        """Load earlier records up to ``up_to_step`` (the checkpoint's step).

        Records logged after that checkpoint belong to the interrupted tail that
        the resumed run will redo, so they are dropped and both files rewritten.
        """
        records: list[dict[str, Any]] = []
        if self.jsonl.exists():
            for line in self.jsonl.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by the kill: everything after it is the redone tail anyway
                if record.get("step", math.inf) <= up_to_step:
                    records.append(record)
        self.history = History(records)
        self._columns = self.history.columns()
        if self.enabled:
            self._rewrite()
        return self.history

    def start_fresh(self) -> History:
        """Forget earlier files (a new run in this folder)."""
        self.history = History()
        self._columns = []
        if self.enabled:
            self._rewrite()
        return self.history

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (and write it)."""
        self.history.records.append(record)
        if not self.enabled:
            return
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_json_safe(record), sort_keys=False) + "\n")
        new = [k for k in record if k not in self._columns]
        if new:
            self._columns += new
            self._rewrite_csv()
        else:
            with open(self.csv, "a", encoding="utf-8", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self._columns).writerow(record)

    def _rewrite(self) -> None:
        text = "".join(json.dumps(_json_safe(r)) + "\n" for r in self.history.records)
        write_text(self.jsonl, text)
        self._rewrite_csv()

    def _rewrite_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns)
        writer.writeheader()
        writer.writerows(self.history.records)
        write_text(self.csv, buf.getvalue())
