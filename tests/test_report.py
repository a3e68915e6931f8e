"""NotebookReport: metrics JSON with provenance; NaN (not measured) becomes null."""

import json
import math

from cdpkd import report as report_module
from cdpkd.report import NotebookReport


def test_metrics_json_has_provenance_and_nulls_for_nan(tmp_path):
    report = NotebookReport("99_example", "smoke", tmp_path)
    path = report.metrics({"teacher": {"strain_rmse": 1e-3, "latency_gpu_ms": math.nan}}, extra={"x": [math.inf, 1]})
    data = json.loads(path.read_text())
    assert path == tmp_path / "smoke" / "99_example.json"
    assert {"profile", "device", "numerics", "git_sha", "date", "methods"} <= set(data)
    # what makes CPU float results differ between machines of the same code: recorded with them
    assert data["numerics"]["torch_threads"] >= 1 and data["numerics"]["cpu_capability"]
    assert data["methods"]["teacher"] == {"strain_rmse": 1e-3, "latency_gpu_ms": None}
    assert data["extra"] == {"x": [None, 1]}


def test_metrics_keep_the_commit_the_notebook_started_from(tmp_path, monkeypatch):
    monkeypatch.setattr(report_module, "git_sha", lambda: "abc123")
    report = NotebookReport("99_example", "smoke", tmp_path)
    # the tree is edited while the notebook runs: the stamp at the end would say so
    monkeypatch.setattr(report_module, "run_stamp",
                        lambda: {"git_sha": "abc123-dirty", "date": "2026-12-05", "device": "cpu", "numerics": {}})
    data = json.loads(report.metrics({"teacher": {"strain_rmse": 1e-3}}).read_text())
    assert data["git_sha"] == "abc123" and data["date"] == "2026-12-05"
