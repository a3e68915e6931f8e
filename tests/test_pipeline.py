"""The papermill pipeline: profiles, parameter checks, failures, publishing, resume."""

import json

import nbformat
import pytest

from cdpkd import pipeline
from cdpkd.pipeline import (
    PipelineError,
    list_notebooks,
    load_profile,
    notebook_parameters,
    resolved_parameters,
)


def make_notebook(path, body):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('profile = "smoke"\nfail = False\nresults_dir = "results"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    notebooks, profiles, results, figures = (tmp_path / d for d in ("notebooks", "profiles", "results", "figures"))
    for d in (notebooks, profiles):
        d.mkdir()
    make_notebook(
        notebooks / "01_tiny.ipynb",
        "import pandas as pd\n"
        "from cdpkd.report import NotebookReport\n"
        "if fail:\n    raise ValueError('deliberate failure')\n"
        "r = NotebookReport('01_tiny', profile, results_dir)\n"
        "r.table(pd.DataFrame({'a': [1.5]}), 'numbers')\n"
        "r.metrics({'teacher': {'params': 3}})",
    )
    (profiles / "smoke.yaml").write_text(f"common:\n  results_dir: {results}\n")
    (profiles / "cpu.yaml").write_text(f"common:\n  results_dir: {results}\n  unused_elsewhere: 3\n")
    (profiles / "broken.yaml").write_text(f"notebooks:\n  01_tiny:\n    fail: true\n    results_dir: {results}\n")
    (profiles / "typo.yaml").write_text("notebooks:\n  01_tiny:\n    n_trian: 5\n")
    for name, value in (("NOTEBOOK_DIR", notebooks), ("PROFILE_DIR", profiles), ("RESULTS_DIR", results), ("FIGURES_DIR", figures)):
        monkeypatch.setattr(pipeline, name, value)
    return tmp_path


def test_unknown_profile_lists_known_ones(sandbox):
    with pytest.raises(PipelineError, match=r"unknown profile 'gpu'.*known profiles: broken, cpu, smoke, typo"):
        load_profile("gpu", pipeline.PROFILE_DIR)


def test_undeclared_parameter_is_an_error(sandbox):
    nb = pipeline.NOTEBOOK_DIR / "01_tiny.ipynb"
    with pytest.raises(PipelineError, match=r"sets \['n_trian'\] for 01_tiny.ipynb"):
        notebook_parameters(load_profile("typo", pipeline.PROFILE_DIR), nb)
    # common entries go only where declared
    params = notebook_parameters(load_profile("cpu", pipeline.PROFILE_DIR), nb)
    assert "unused_elsewhere" not in params and params["profile"] == "cpu"


def test_failure_names_notebook_and_cell(sandbox):
    with pytest.raises(PipelineError, match=r"01_tiny.ipynb failed in cell .*ValueError: deliberate failure"):
        pipeline.run("broken")
    state = json.loads((sandbox / "results" / "broken" / "pipeline.json").read_text())
    assert state["01_tiny"]["status"] == "failed"
    assert pipeline.main(["--profile", "broken"]) == 1


def test_full_run_publishes_and_resume_skips(sandbox, capsys):
    pipeline.run("cpu")
    out = sandbox / "results" / "cpu"
    assert (out / "01_tiny.ipynb").is_file()
    metrics = json.loads((out / "01_tiny.json").read_text())
    assert metrics["profile"] == "cpu" and metrics["methods"]["teacher"]["params"] == 3
    assert (sandbox / "figures" / "01_tiny__numbers.md").is_file()
    provenance = json.loads((sandbox / "figures" / "PROVENANCE.json").read_text())
    assert provenance["notebooks"]["01_tiny"]["profile"] == "cpu"
    assert provenance["notebooks"]["01_tiny"]["status"] == "ok"
    pipeline.run("cpu", resume=True)
    assert "up to date, skipped" in capsys.readouterr().out


def test_notebooks_before_a_failure_are_published(sandbox):
    # a second notebook that fails under this profile: the first one's results were rewritten,
    # so its figures must be published too, not left from an earlier run
    make_notebook(sandbox / "notebooks" / "02_bad.ipynb", "if fail:\n    raise ValueError('deliberate failure')")
    results = sandbox / "results"
    (sandbox / "profiles" / "half.yaml").write_text(f"common:\n  results_dir: {results}\nnotebooks:\n  02_bad:\n    fail: true\n")
    with pytest.raises(PipelineError, match="02_bad.ipynb failed"):
        pipeline.run("half")
    assert (sandbox / "figures" / "01_tiny__numbers.md").is_file()
    provenance = json.loads((sandbox / "figures" / "PROVENANCE.json").read_text())
    assert set(provenance["notebooks"]) == {"01_tiny"}


def test_smoke_never_publishes(sandbox):
    pipeline.run("smoke", only=["01"])
    assert not (sandbox / "figures").exists()
    with pytest.raises(PipelineError, match="no such notebook"):
        pipeline.run("smoke", only=["07"])


def test_repository_profiles_fit_the_notebooks():
    notebooks = list_notebooks()
    assert notebooks, "the repository has pipeline notebooks"
    for name in ("smoke", "cpu", "paper"):
        profile = load_profile(name)
        for nb in notebooks:
            notebook_parameters(profile, nb)
        listed = set(profile.notebooks)
        assert listed <= {nb.stem for nb in notebooks}, f"{name}.yaml names unknown notebooks {listed}"


def test_resolved_parameters_are_notebook_defaults_updated_by_the_profile():
    notebook = next(nb for nb in list_notebooks() if nb.stem == "01_teacher")
    smoke = resolved_parameters("smoke", notebook)
    cpu = resolved_parameters("cpu", notebook)
    profile = load_profile("cpu")
    assert smoke["profile"] == "smoke" and cpu["profile"] == "cpu"
    assert cpu["teacher_steps"] == profile.common["teacher_steps"] != smoke["teacher_steps"]
    # a parameter no profile sets keeps the notebook's default, parsed as a Python literal
    assert "fs_mhz" not in profile.common and cpu["fs_mhz"] == smoke["fs_mhz"] == 40.0
    # literals nest: a list of dicts holding lists and None
    assert isinstance(smoke["teacher_refine"], list) and smoke["teacher_refine"][-1]["trainable"] is None
    assert smoke["teacher_refine"][1]["trainable"] == ["refine."]


def test_resolved_parameters_reject_a_non_literal_default(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("profile = 'smoke'\nsteps = int('3')")
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "00_x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(PipelineError, match="steps .* is not a literal"):
        resolved_parameters("smoke", path)


def test_shared_parameters_agree_across_notebooks():
    """Notebooks share cached artifacts keyed by their parameters (teacher, students, baselines): a
    parameter several notebooks declare must resolve to one value under every profile, or one
    notebook would silently train another model than the next one reuses."""
    notebooks = list_notebooks()
    for name in ("smoke", "cpu", "paper"):
        values: dict[str, dict[str, str]] = {}
        for nb in notebooks:
            for key, value in resolved_parameters(name, nb).items():
                values.setdefault(key, {})[nb.stem] = repr(value)
        differing = {k: v for k, v in values.items() if len(set(v.values())) > 1}
        assert not differing, f"{name}: parameters differ between notebooks: {differing}"
        students = values["student_release_fraction"].keys() & values["student_axial_offset"].keys()
        assert {"02_dpnet", "03_cdp_kdnet", "04_ablations", "05_invivo_evaluation"} <= students
