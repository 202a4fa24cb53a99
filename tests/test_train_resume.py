"""SIGKILL a training run after its first checkpoint, rerun it, and get an uninterrupted run's bits.

targets.md (reliability): a killed run resumes from its newest checkpoint (model, optimizer, data
position, RNG state) and ends with the same metrics as an uninterrupted run, bit-identical on CPU.
Only `elapsed_s` (wall clock) may differ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
from safetensors.torch import load_file


N_TRAIN = 1000  # > 1 epoch
# 240 steps, a checkpoint every 20 and an eval every 50: the kill lands mid eval-interval, so the
# running train-loss sum and the loader position have to come back from the checkpoint too.
RUN = ["model=smoke-tf4", "batch_size=8", "n_train=1920", "eval_every=50", "checkpoint_every=20",
       "n_eval=64", "eval_batch_size=32", "analysis_n=16", "lr=1e-3"]


def command(data, out) -> list[str]:
    args = [sys.executable, "-m", "cotlab.cli", "train", "--data", data[0], "--eval-data", data[1],
            "--out", str(out), "--format", "cot"]
    for item in RUN:
        args += ["--set", item]
    return args


def run_to_end(data, out) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(data, out), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def kill_after_first_checkpoint(data, out) -> None:
    proc = subprocess.Popen(command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "checkpoints").glob("step-*")):
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "final").exists(), "the run finished before it could be killed"


def test_killed_run_resumes_bit_identically(fixed_task_data, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_to_end(fixed_task_data, reference)

    kill_after_first_checkpoint(fixed_task_data, resumed)
    proc = run_to_end(fixed_task_data, resumed)
    assert "resuming from" in proc.stdout

    weights = [run / "final" / "model.safetensors" for run in (reference, resumed)]
    expected, got = load_file(weights[0]), load_file(weights[1])
    assert expected.keys() == got.keys()
    assert all(expected[k].equal(got[k]) for k in expected)
    assert weights[0].read_bytes() == weights[1].read_bytes()

    a = pd.read_parquet(reference / "metrics.parquet").drop(columns="elapsed_s")
    b = pd.read_parquet(resumed / "metrics.parquet").drop(columns="elapsed_s")
    assert a["step"].tolist() == [0, 50, 100, 150, 200, 240]
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not list(resumed.glob(".*tmp*")) and not (resumed / "checkpoints").exists()
