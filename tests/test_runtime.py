"""Provenance helpers: the git SHA a result records."""

from pathlib import Path


def test_git_sha_is_dirty_for_code_changes_not_for_pipeline_outputs(tmp_path, monkeypatch):
    import subprocess

    from cdpkd import runtime

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    outputs = ("results/cpu/01.json", "figures/01.png", "studies/results/x.json", "benchmarks/results/b.json")
    for name in ("lib.py", *outputs):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    monkeypatch.setattr(runtime, "REPO_ROOT", tmp_path)
    monkeypatch.delenv("CDPKD_GIT_SHA", raising=False)

    def sha():
        runtime.git_sha.cache_clear()
        return runtime.git_sha()

    clean = sha()
    assert len(clean) == 40 and not clean.endswith("-dirty")
    for name in outputs:
        (tmp_path / name).write_text("1")
    assert sha() == clean, "the pipeline's own outputs are not code changes"
    (tmp_path / "lib.py").write_text("1")
    assert sha() == clean + "-dirty"
    runtime.git_sha.cache_clear()


def test_git_sha_named_by_the_environment_wins_else_unknown_outside_a_checkout(tmp_path, monkeypatch):
    from cdpkd import runtime

    monkeypatch.setattr(runtime, "REPO_ROOT", tmp_path)  # no .git here
    monkeypatch.delenv("CDPKD_GIT_SHA", raising=False)
    runtime.git_sha.cache_clear()
    try:
        assert runtime.git_sha() == "unknown"
        monkeypatch.setenv("CDPKD_GIT_SHA", "0123abc")
        runtime.git_sha.cache_clear()
        assert runtime.git_sha() == "0123abc"
        monkeypatch.setattr(runtime, "REPO_ROOT", Path(__file__).resolve().parents[1])  # a checkout
        runtime.git_sha.cache_clear()
        assert runtime.git_sha() == "0123abc", "the vouched commit wins over the copy's own .git"
    finally:
        runtime.git_sha.cache_clear()


def test_file_slug_and_the_device_a_run_used():
    from cdpkd import runtime

    assert runtime.file_slug("NVIDIA H200") == "nvidia-h200"
    assert runtime.file_slug("cpu: AMD EPYC (2 cores)") == "cpu-amd-epyc-2-cores"
    assert len(runtime.file_slug("x " * 100)) == 60
    assert runtime.device_description("cpu") == "cpu: " + runtime.cpu_description()
