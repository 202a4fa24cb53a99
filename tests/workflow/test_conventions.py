"""Snakemake's own conventions for the workflow: `snakemake --lint` and `snakefmt --check` are clean
(the same checks .ci/run makes before the tests), and `snakemake --report` groups each card's figure
and tables under the card, with its scale as subcategory, puts claims.csv in a category of its own,
and opens on a landing page (workflow/report/workflow.rst)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from test_workflow import LAYOUT, TABLES, TINY_CARD, make_project, snakemake

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean() -> None:
    proc = run_module("snakemake", "--lint")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_snakefmt_check_is_clean() -> None:
    proc = run_module("snakefmt", "--check", "workflow/")
    assert proc.returncode == 0, f"run `snakefmt workflow/`:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"


def report_var(html: str, name: str, kind: type):
    """The value of `var <name> = <JSON object or string>` in Snakemake's report page (the page's
    scripts assign other values to some of these names too)."""
    opening = "{" if kind is dict else '"'
    start = html.index(f"var {name} = {opening}") + len(f"var {name} = ")
    return json.JSONDecoder().raw_decode(html[start:])[0]


def test_report_groups_each_cards_figure_and_tables_by_card_and_scale(tmp_path: Path) -> None:
    """The report of the tiny workflow, on stand-ins for its final files: the report reads only the
    files marked for it, so no job needs to run."""
    root = make_project(tmp_path / "project", TINY_CARD)
    figure = LAYOUT.figure("quickstart", "png")
    for path in (*TABLES.values(), LAYOUT.claims(), figure):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
    for path in (*TABLES.values(), LAYOUT.claims()):
        (root / path).write_text("card,value\nquickstart,1\n")
    plt.imsave(root / figure, [[0.0, 1.0]])
    snakemake(root, "--report", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()

    categories = report_var(html, "categories", dict)
    assert {cat: {sub: set(files) for sub, files in subs.items()} for cat, subs in categories.items()} == {
        "quickstart": {"smoke": {figure, TABLES["summary"], TABLES["curves"]}},
        "claims": {"smoke": {LAYOUT.claims()}},
    }
    results = report_var(html, "results", dict)
    assert {path: entry["labels"] for path, entry in results.items()} == {
        figure: {"file": "figure"}, TABLES["summary"]: {"file": "summary table"},
        TABLES["curves"]: {"file": "curves table"}, LAYOUT.claims(): {"file": "claims table"}}
    assert "Quickstart" in results[figure]["caption"]  # the card's own caption
    assert "quickstart_summary.csv" in results[TABLES["summary"]]["caption"]
    assert "quickstart_curves.csv" in results[TABLES["curves"]]["caption"]
    landing = report_var(html, "workflow_desc", str)
    assert "How the report is organised" in landing and "quickstart at scale smoke" in landing
