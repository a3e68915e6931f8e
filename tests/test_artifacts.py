"""Artifact cache and atomic writes."""

import json

import pytest

from cdpkd.artifacts import _partial_prefix, artifact_dir, artifact_key, cached, remove_stale_partials
from cdpkd.atomic import write_json


def test_key_is_canonical():
    assert artifact_key({"a": 1, "b": [1, 2]}) == artifact_key({"b": (1, 2), "a": 1})
    assert artifact_key({"a": 1}) != artifact_key({"a": 2})


def test_build_once_then_reuse(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("made")

    first = cached(tmp_path, "thing", {"n": 1}, build)
    second = cached(tmp_path, "thing", {"n": 1}, build)
    assert first == second == artifact_dir(tmp_path, "thing", {"n": 1})
    assert len(calls) == 1 and (first / "x.txt").read_text() == "made"
    manifest = json.loads((first / "artifact.json").read_text())
    assert manifest["params"] == {"n": 1} and "git_sha" in manifest
    cached(tmp_path, "thing", {"n": 1}, build, rebuild=True)
    assert len(calls) == 2


def test_failed_build_leaves_nothing_and_is_retried(tmp_path):
    def broken(folder):
        (folder / "half.txt").write_text("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        cached(tmp_path, "thing", {"n": 2}, broken)
    assert list((tmp_path / "thing").iterdir()) == []
    out = cached(tmp_path, "thing", {"n": 2}, lambda f: (f / "ok").write_text("1"))
    assert (out / "ok").exists()


def test_bad_kind_and_unserialisable_params(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        artifact_dir(tmp_path, "../escape", {})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        artifact_key({"f": object()})


def test_write_json_is_atomic_and_refuses_nan(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_killed_build_is_cleaned_up_by_the_next_one_on_this_host(tmp_path):
    import subprocess
    import sys

    final = artifact_dir(tmp_path, "thing", {"n": 3})
    prefix = _partial_prefix(final)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = final.with_name(prefix + dead.stdout.strip())  # that process has exited: its build is stale
    alive = final.with_name(prefix + "1")  # pid 1 always runs: a build in progress
    other_host = final.with_name(f"{final.name}.partial-elsewhere-{dead.stdout.strip()}")
    for folder in (killed, alive, other_host):
        folder.mkdir(parents=True)
        (folder / "pairs.h5").write_bytes(b"half a dataset")
    out = cached(tmp_path, "thing", {"n": 3}, lambda f: (f / "ok").write_text("1"))
    assert (out / "ok").exists()
    assert not killed.exists()
    assert alive.exists() and other_host.exists()
    assert remove_stale_partials(final) == []  # nothing more of this host's to remove
