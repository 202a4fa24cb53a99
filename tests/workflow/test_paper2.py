"""Paper 2 end to end: every p2 card plans at paper scale, and at smoke scale the recipe and drop-k
cards produce their tables and figures, with the recipe's CoT shares as the paper gives them."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import STAGE2
from cotlab.cards import card_ids
from cotlab.jobs import workflow_jobs
from cotlab.layout import Layout
from test_workflow import REPO, planned, planned_counts, snakemake

pytestmark = pytest.mark.workflow
LAYOUT = Layout("smoke")


def test_stage2_is_every_p2_card() -> None:
    assert sorted(STAGE2) == sorted(c for c in card_ids(REPO / "config") if c.startswith("p2_"))


def test_paper_scale_plans_every_stage2_card() -> None:
    counts = planned_counts(STAGE2, "paper")
    jobs = workflow_jobs(STAGE2, "paper", REPO / "config")
    # 5 alphas x TF-4/8/12, and 2 task-diversity regimes x TF-4/8/12
    assert counts["train"] == counts["evaluate"] == len(jobs.runs) == 21
    # per alpha run: dropk (shared by p2_tab_headline), C5 + six K, sampling; per task-diversity run: C5
    assert counts["probe"] == len(jobs.probes) == 15 * 9 + 6
    assert all(counts[f"aggregate_{exp}"] == 1 for exp in STAGE2) and counts["claims"] == 1


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's cards in a fresh directory, p2_fig_recipe and p2_fig_alpha_dropk run at smoke."""
    root = tmp_path_factory.mktemp("paper2")
    shutil.copytree(REPO / "config", root / "config")
    snakemake(root, "--cores", "2", "--config", "experiments=[p2_fig_recipe,p2_fig_alpha_dropk]", "scale=smoke")
    return root


def test_recipe_shares_are_one_over_alpha_plus_one(smoke: Path) -> None:
    table = pd.read_csv(smoke / LAYOUT.table("p2_fig_recipe"))
    shares = table.groupby("alpha")[["mean_cot_share", "expected_cot_share"]].first()
    assert list(shares.index) == [0.0, 0.5, 1.0, 2.0, math.inf]
    for alpha, row in shares.iterrows():
        assert row["expected_cot_share"] == pytest.approx(1 / (alpha + 1), abs=1e-3)  # n = 20,000 slots
        assert row["mean_cot_share"] == pytest.approx(1 / (alpha + 1), abs=0.01)  # 160,000 coins: sd <= 0.0013
    counts = table.groupby("alpha")["n_sequences"].sum()
    assert (counts == 20000).all()
    assert (smoke / LAYOUT.figure("p2_fig_recipe")).is_file()


def test_dropk_probes_table_and_figure(smoke: Path) -> None:
    probes = pd.read_csv(smoke / LAYOUT.table("p2_fig_alpha_dropk_probes"), dtype={"alpha": str})  # variant names
    assert sorted(probes["alpha"].astype(str).unique()) == ["0", "0.5", "1", "2", "inf"]
    assert sorted(probes["cot_demos"].unique()) == [0, 4, 7]  # K = 8: drop_k 7, 3, 0
    assert sorted(probes["force"].unique()) == ["answer", "free", "think"]
    assert len(probes) == 5 * 3 * 3 and (probes["scored_format"] == "cot_special_token").all()
    assert probes["answer_acc"].between(0, 1).all() and (probes["n_eval"] == 64).all()
    assert (smoke / LAYOUT.figure("p2_fig_alpha_dropk")).is_file()
    claims = pd.read_csv(smoke / LAYOUT.claims()).set_index("claim")
    assert claims.loc["p2_excess_cot_hurts", "n_compared"] == 3  # tf4 x three forcings


def test_headline_card_shares_the_dropk_probes(smoke: Path) -> None:
    """p2_tab_headline probes the runs exactly as p2_fig_alpha_dropk: only its aggregate plans (the
    paper-2 claims read p2_fig_alpha_dropk's probes table, which is unchanged, so claims.csv stands)."""
    jobs = planned_with(smoke, "p2_fig_alpha_dropk,p2_tab_headline")
    assert {rule for rule, _ in jobs} == {"aggregate_p2_tab_headline"}


def planned_with(root: Path, experiments: str) -> set[tuple[str, str]]:
    config = root / "config" / "config.yaml"
    saved = config.read_text()
    config.write_text(f"experiments: [{experiments}]\nscale: smoke\n")
    try:
        return planned(root)
    finally:
        config.write_text(saved)
