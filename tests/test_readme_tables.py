"""README result tables stay equal to the run outputs they name (cdpkd.readme_tables)."""

from __future__ import annotations

import subprocess

import pytest

from cdpkd import readme_tables
from cdpkd.runtime import REPO_ROOT

CSV = (
    "variant,params,strain_rmse,warp_ncc,strain_rmse_std,warp_ncc_std,seeds\n"
    "ours,1117271.0,0.004950373,0.98990645,0.000116323,0.000344616,3\n"
    "single,698300.0,0.0101,0.9694,,,1\n"
)


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.md").write_text("| m | x |\n|---|---|\n| t | 1 |\n")
    (tmp_path / "figures" / "b.csv").write_text(CSV)
    return tmp_path


def test_csv_table_titles_formats_and_seed_spread(tree):
    text = readme_tables.render("figures/b.csv", ("variant", "params", "strain_rmse", "warp_ncc", "seeds"), tree)
    assert text.splitlines() == [
        "| variant | params | strain RMSE | warp NCC | seeds |",
        "|---|---|---|---|---|",
        "| ours | 1,117,271 | 0.00495 ± 0.00012 | 0.9899 ± 0.00034 | 3 |",
        "| single | 698,300 | 0.0101 | 0.9694 | 1 |",
    ]
    # without a column list: every column but the spreads
    assert readme_tables.render("figures/b.csv", None, tree).splitlines()[0] == (
        "| variant | params | strain RMSE | warp NCC | seeds |")


def test_sync_rewrites_stale_tables_and_check_changes_nothing(tree):
    doc = tree / "README.md"
    original = (
        "intro\n<!-- table: figures/a.md -->\n| m | x |\n|---|---|\n| t | 2 |\n\ntext\n"
        "<!-- table: figures/b.csv; columns: variant strain_rmse -->\n| variant | strain RMSE |\n|---|---|\n"
        "| ours | 0.00495 ± 0.00012 |\n| single | 0.0101 |\nend\n"
    )
    doc.write_text(original)
    assert readme_tables.sync(doc, tree, check=True) == ["figures/a.md"]
    assert doc.read_text() == original
    assert readme_tables.sync(doc, tree) == ["figures/a.md"]
    assert "| t | 1 |" in doc.read_text() and "| t | 2 |" not in doc.read_text()
    assert doc.read_text().endswith("| single | 0.0101 |\nend\n")  # the text around tables is kept
    assert readme_tables.sync(doc, tree, check=True) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<!-- table: figures/missing.md -->\n| a |\n", "not found"),
        ("<!-- table: figures/a.md -->\ntext\n", "not followed by a table"),
        ("<!-- table figures/a.md -->\n| a |\n", "malformed"),
        ("<!-- table: figures/b.csv; columns: variant nope -->\n| a |\n", "no column"),
        ("<!-- table: figures/a.md; columns: m -->\n| a |\n", "csv sources only"),
    ],
)
def test_bad_markers_fail_clearly(tree, body, message):
    doc = tree / "README.md"
    doc.write_text(body)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        readme_tables.sync(doc, tree, check=True)


def test_readme_tables_match_the_committed_figures():
    """The committed README quotes the committed figures/ exactly (skipped when a local run has
    replaced figures/: the README then describes the committed run, not the local one)."""
    try:
        changed = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "figures"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell committed figures from a local run's")
    if changed:
        pytest.skip("figures/ holds a local run's outputs (git status shows changes); README describes the committed run")
    stale = readme_tables.sync(REPO_ROOT / "README.md", check=True)
    assert stale == [], f"README tables differ from their sources: {stale}; run python -m cdpkd.readme_tables README.md"
    marked = readme_tables.find_tables((REPO_ROOT / "README.md").read_text().splitlines(keepends=True))
    assert len(marked) >= 5, "the README's result tables should carry table markers"
