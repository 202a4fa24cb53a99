"""The workflow through a real SLURM cluster (snakemake-executor-plugin-slurm) gives the local results.

Runs a tiny quickstart with `snakemake --workflow-profile workflow/profiles/slurm`, every job a
SLURM job, and compares its table with a local `--cores 2` run of the same config (equal values,
the wall-clock columns aside). Training jobs ask for a GPU (`--gpus=1`) when the cluster has GPUs
(tests/workflow/slurm/cluster.sh fakes them with device nodes; CPU torch trains on the CPU either way).

Where SLURM is absent: in CI (`CI` set) as root with apt-get, the session fixture installs and starts
a one-node cluster with tests/workflow/slurm/cluster.sh (docs/slurm.md) and stops it at the end;
otherwise the test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import LAYOUT, REPO, TINY_CARD, make_project, snakemake

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "workflow" / "slurm" / "cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"


def cluster_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster():
    """A SLURM cluster that answers `sinfo`: the machine's own, or one started here in CI."""
    if cluster_answers():
        yield
        return
    if not os.environ.get("CI"):
        pytest.skip("no SLURM cluster answers `sinfo`; in CI (CI set, root, Debian apt) the test starts one "
                    "itself; locally, as root: tests/workflow/slurm/cluster.sh install && tests/workflow/slurm/cluster.sh up")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("CI is set, but starting a SLURM cluster needs root and apt-get (Debian)")
    env = {**os.environ, "SLURM_LOCAL_GPUS": os.environ.get("SLURM_LOCAL_GPUS", "2")}

    def cluster(step: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(CLUSTER), step], env=env, capture_output=True, text=True, timeout=600)

    for step in ("install", "up"):
        proc = cluster(step)
        if proc.returncode != 0:
            cluster("down")  # `up` stops half-way on a timeout: stop what it started
            pytest.fail(f"tests/workflow/slurm/cluster.sh {step} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    try:
        yield
    finally:
        cluster("down")


def sinfo(fmt: str) -> str:
    return subprocess.run(["sinfo", "-h", "-o", fmt], capture_output=True, text=True, check=True).stdout


def test_slurm_run_equals_local_run(slurm_cluster, tmp_path: Path) -> None:
    card = yaml.safe_load(yaml.safe_dump(TINY_CARD))
    card["sweep"]["point"] = {"a": card["sweep"]["point"]["a"]}  # one point, std and cot: 8 jobs, 5 levels
    local = make_project(tmp_path / "local", card)
    cluster = make_project(tmp_path / "slurm", card)
    snakemake(local, "--cores", "2")

    # The profile's partition and GPUs, adapted to whatever cluster answers here.
    partition = next(p.rstrip("*") for p in sinfo("%P").split() if p.endswith("*"))
    gpus = 1 if "gpu" in sinfo("%G") else 0
    try:  # bounded: the executor can poll forever once it loses track of its jobs (docs/slurm.md, pitfall 1)
        proc = snakemake(
            cluster, "--workflow-profile", str(PROFILE), "--verbose", "--retries", "0",
            "--slurm-init-seconds-before-status-checks", "2", "--config", f"train_gpus={gpus}",
            "--default-resources", f"slurm_partition={partition}", "mem_mb=1000", "runtime=10",
            "--set-resources", f"train:slurm_partition={partition}", check=False, timeout=360)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the SLURM run took over {exc.timeout:.0f} s; squeue:\n{subprocess.getoutput('squeue')}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]

    calls = re.findall(r"sbatch call: (.*)", log)
    assert len(calls) == 8, log[-5000:]  # generate x2, train x2, evaluate x2, aggregate, claims
    train_calls = [c for c in calls if "rule_train" in c]
    assert len(train_calls) == 2 and all(f"-p {partition}" in c for c in calls)
    assert all(("--gpus=1" in c) == bool(gpus) for c in train_calls)
    assert sorted(p.name for p in (cluster / ".snakemake" / "slurm_logs").iterdir()) == [
        "rule_aggregate_quickstart", "rule_claims", "rule_evaluate", "rule_generate", "rule_train"]

    for path in LAYOUT.card_tables("quickstart", trains=True).values():
        ours, theirs = (pd.read_csv(root / path) for root in (cluster, local))
        wall_clock = [c for c in ours.columns if "elapsed" in c]
        assert len(ours) > 0 and list(ours.columns) == list(theirs.columns)
        pd.testing.assert_frame_equal(ours.drop(columns=wall_clock), theirs.drop(columns=wall_clock))
    assert (cluster / LAYOUT.figure("quickstart")).stat().st_size > 0
    claims = [pd.read_csv(root / LAYOUT.claims()) for root in (cluster, local)]
    pd.testing.assert_frame_equal(*claims)

    again = snakemake(cluster, "--workflow-profile", str(PROFILE), "--config", f"train_gpus={gpus}")
    assert "Nothing to be done" in again.stdout + again.stderr
