"""The Snakemake workflow on a tiny config: a real run, then the exact jobs planned after each change.

docs/architecture.md: changing a value reruns exactly the jobs whose resolved point changed and what is
downstream of them. The planned jobs are read from `snakemake --summary` (one row per output file
of every job in the DAG, its `plan` column "update pending" when the job would run), which applies
the same rerun triggers (mtime, params, input, code, software-env) as a real run.
"""

from __future__ import annotations

import json
import os
import socket
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import STAGE1
from cotlab import cards
from cotlab.jobs import workflow_jobs
from cotlab.layout import Layout

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"

# Two named grid points so that one point's values can change alone; seconds per job on a CPU.
TINY_CARD = {
    "title": "tiny caching check",
    "base": {"data": {"n_inputs": 2, "n_parents": 2, "chain_length": 2, "n_examples": 4, "n_dims": 4},
             "train": {"lr": 0.001}},
    "sweep": {"point": {"a": {"data": {"vocab_size": 16}}, "b": {"data": {"vocab_size": 24}}}},
    "models": ["tf4"],
    "formats": ["standard", "cot"],
    "scales": {"smoke": {"base": {"train": {"n_train": 64, "n_eval": 16, "batch_size": 16},
                                  "eval_every_seqs": 32}}},
    "plot": {"kind": "curves", "x": "step", "y": "answer_acc", "hue": "format", "col": "point",
             "refs": ["majority_baseline"]},
}


# The quickstart's table and figure, and claims.csv, which reads that table (a claim compares its runs).
LAYOUT = Layout("smoke")
TABLES = LAYOUT.card_tables("quickstart", trains=True)
AGGREGATE = {("aggregate_quickstart", p) for p in
             (*TABLES.values(), LAYOUT.figure("quickstart", "png"), LAYOUT.figure("quickstart", "pdf"))} | {
             ("claims", LAYOUT.claims())}


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the repository's workflow in `workdir` (its own config/, results/ and .snakemake/);
    `cotlab` and `snakemake` come from this interpreter's environment."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_project(root: Path, card: dict, scale: str = "smoke") -> Path:
    """A working directory with the repository's scales and `card` as the quickstart."""
    (root / "config" / "experiments").mkdir(parents=True)
    shutil.copy(REPO / "config" / "scales.yaml", root / "config" / "scales.yaml")
    (root / "config" / "config.yaml").write_text(yaml.safe_dump({"experiments": ["quickstart"], "scale": scale}))
    write_card(root, card)
    return root


def write_card(root: Path, card: dict) -> None:
    (root / "config" / "experiments" / "quickstart.yaml").write_text(yaml.safe_dump(card, sort_keys=False))


def planned(workdir: Path) -> set[tuple[str, str]]:
    """(rule, output file) of every job a run would execute now."""
    lines = snakemake(workdir, "--summary").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    rows = [line.split("\t") for line in lines[start + 1:] if line.count("\t") == 5]
    return {(row[2], row[0]) for row in rows if row[5] == "update pending"}


def outputs(workdir: Path, runs: list[cards.Run], splits: set[tuple[str, str, int]],
            aggregate: bool = True) -> set[tuple[str, str]]:
    """The (rule, output file) rows of these runs' train/evaluate jobs, these splits and the aggregate."""
    out = {("generate", LAYOUT.data(*split)) for split in splits}
    for run in runs:
        out |= {("train", LAYOUT.final(run.run_id)), ("train", LAYOUT.metrics(run.run_id))}
        out |= {("evaluate", path) for path in LAYOUT.evaluation(run.run_id).values()}
    if aggregate:
        out |= AGGREGATE
    return out


def runs(workdir: Path) -> list[cards.Run]:
    return cards.expand("quickstart", "smoke", workdir / "config")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny workflow, run once for real (4 runs: 2 points x std/cot)."""
    root = make_project(tmp_path_factory.mktemp("workflow"), TINY_CARD)
    snakemake(root, "--cores", "2")
    return root


@pytest.fixture
def card(project: Path):
    """Edit the card for one test; restored afterwards (dry runs leave no other trace)."""
    edited = yaml.safe_load(yaml.safe_dump(TINY_CARD))
    yield edited
    write_card(project, TINY_CARD)


def test_first_run_writes_table_and_figure(project: Path) -> None:
    summary = pd.read_csv(project / TABLES["summary"])
    assert sorted(summary["run_id"]) == sorted(r.run_id for r in runs(project))  # one row per run
    assert set(summary["format"]) == {"standard", "cot"} and set(summary["scale"]) == {"smoke"}
    assert {"acc_final_lo", "acc_final_hi", "with_cot_answer_acc_lo", "trivial_baseline"} <= set(summary)
    curves = pd.read_csv(project / TABLES["curves"])
    assert set(curves["run_id"]) == set(summary["run_id"]) and curves.groupby("run_id")["step"].nunique().min() > 1
    for suffix in ("png", "pdf"):
        assert (project / LAYOUT.figure("quickstart", suffix)).stat().st_size > 0
    assert sorted(p.name for p in (project / "results").iterdir()) == ["smoke"]  # everything under its scale
    assert sorted(p.name for p in (project / "results" / "smoke" / "logs").iterdir()) == [
        "aggregate", "evaluate", "generate", "train"]
    assert set(pd.read_csv(project / LAYOUT.claims())["card"]) >= {"quickstart"}


def test_each_dataset_directory_is_named_by_its_manifest_id(project: Path) -> None:
    for run in runs(project):
        for split in ("train", "eval"):
            manifest = json.loads((project / LAYOUT.data(run.data_id, split, run.data.n_rows(split))
                                   / "manifest.json").read_text())
            assert manifest["data_id"] == run.data_id and manifest["split"] == split


def test_noop_plans_nothing(project: Path) -> None:
    assert planned(project) == set()
    rerun = snakemake(project, "--cores", "2")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_a_run_killed_with_sigkill_leaves_locks_that_the_next_run_clears(project: Path) -> None:
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True).stdout)  # a process that has ended, as a SIGKILLed snakemake has
    state = project / ".snakemake"
    (state / "locks").mkdir(exist_ok=True)
    (state / "locks" / "0.output.lock").write_text(str(project / "results") + "\n")
    (state / "cotlab-lock-owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    rerun = snakemake(project, "--cores", "2")
    assert "removed stale locks" in rerun.stderr and "Nothing to be done" in rerun.stdout + rerun.stderr


def test_plot_change_plans_only_the_aggregate(project: Path, card: dict) -> None:
    card["plot"]["hue"] = "model"
    write_card(project, card)
    assert planned(project) == AGGREGATE


def test_one_points_n_examples_plans_its_data_runs_and_aggregate(project: Path, card: dict) -> None:
    before = {r.run_id for r in runs(project)}
    card["sweep"]["point"]["b"]["data"]["n_examples"] = 3
    write_card(project, card)
    changed = [r for r in runs(project) if r.run_id not in before]
    assert {r.values["point"] for r in changed} == {"b"} and {r.format for r in changed} == {"standard", "cot"}
    point = changed[0].data
    splits = {(point.data_id, split, point.n_rows(split)) for split in ("train", "eval")}
    assert planned(project) == outputs(project, changed, splits)


def test_training_only_change_plans_no_data(project: Path, card: dict) -> None:
    card["base"]["train"]["lr"] = 0.002
    write_card(project, card)
    jobs = planned(project)
    assert jobs == outputs(project, runs(project), set())
    assert not any(rule == "generate" for rule, _ in jobs)


def test_bad_config_fails_before_any_job_naming_the_field(tmp_path: Path) -> None:
    root = make_project(tmp_path, TINY_CARD)
    for setting, field in (("scale=bogus", "scale"), ("experiments=[nope]", "experiments"),
                           ("train_gpus=-1", "train_gpus"), ("colour=red", "colour")):
        proc = snakemake(root, "-n", "--config", setting, check=False)
        assert proc.returncode != 0 and field in proc.stderr + proc.stdout, setting
    bad = yaml.safe_load(yaml.safe_dump(TINY_CARD))
    bad["sweep"]["point"]["a"]["data"]["n_parents"] = 3  # > n_inputs
    write_card(root, bad)
    proc = snakemake(root, "-n", check=False)
    assert proc.returncode != 0 and "n_parents=3" in proc.stderr + proc.stdout
    bad = yaml.safe_load(yaml.safe_dump(TINY_CARD))
    bad["base"]["train"]["eval_batch_size"] = 0  # a TrainConfig value: checked when the workflow plans
    write_card(root, bad)
    proc = snakemake(root, "-n", check=False)
    message = proc.stderr + proc.stdout
    assert proc.returncode != 0 and "quickstart run" in message and "train.eval_batch_size=0: must be" in message
    assert not (root / "results").exists()


def planned_counts(experiments: list[str], scale: str) -> dict[str, int]:
    """Jobs per rule of `snakemake -n --config experiments=[...] scale=...` on the repository's cards."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--config",
                           f"experiments=[{','.join(experiments)}]", f"scale={scale}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0]: int(line.split()[1]) for line in proc.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


def test_paper_scale_plans_every_stage1_card() -> None:
    counts = planned_counts(STAGE1, "paper")
    jobs = workflow_jobs(STAGE1, "paper", REPO / "config")
    assert counts["train"] == counts["evaluate"] == len(jobs.runs) == 150  # docs/scales.md
    assert counts["generate"] == len(jobs.splits) and counts["coverage"] == len(jobs.coverage)
    assert all(counts[f"aggregate_{exp}"] == 1 for exp in STAGE1) and counts["claims"] == 1


def test_a_new_card_file_plans_without_editing_any_schema(tmp_path: Path) -> None:
    root = make_project(tmp_path, TINY_CARD)
    (root / "config" / "experiments" / "my_card.yaml").write_text(yaml.safe_dump({**TINY_CARD, "title": "mine"}))
    proc = snakemake(root, "-n", "--config", "experiments=[my_card]")
    assert "aggregate_my_card" in proc.stdout
    proc = snakemake(root, "-n", "--config", "experiments=[not_a_card]", check=False)
    assert proc.returncode != 0 and "'not_a_card' is not a card" in proc.stdout + proc.stderr
