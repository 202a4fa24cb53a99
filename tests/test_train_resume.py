"""SIGKILL a training run after its first checkpoint, rerun it, and get an uninterrupted run's bits;
damage its newest checkpoint, rerun it, and get them too.

docs/architecture.md (reliability): a killed run resumes from its newest checkpoint (model, optimizer, data
position, RNG state) and ends with the same metrics as an uninterrupted run, bit-identical on CPU.
Only `elapsed_s` (wall clock) may differ. A checkpoint whose files no longer match its manifest
is never resumed from: the previous one is, or with none intact the run starts again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from cotlab.cli import main as cli
from cotlab.train import Trainer


N_TRAIN = 1000  # > 1 epoch
# 240 steps, a checkpoint every 20 and an eval every 50: the kill lands mid eval-interval, so the
# running train-loss sum and the loader position have to come back from the checkpoint too.
RUN = ["model=smoke-tf4", "batch_size=8", "n_train=1920", "eval_every=50", "checkpoint_every=20",
       "n_eval=64", "eval_batch_size=32", "analysis_n=16", "lr=1e-3"]


def train_args(data, out, sets: list[str]) -> list[str]:
    args = ["train", "--data", data[0], "--eval-data", data[1], "--out", str(out), "--format", "cot"]
    for item in sets:
        args += ["--set", item]
    return args


def command(data, out) -> list[str]:
    return [sys.executable, "-m", "cotlab.cli", *train_args(data, out, RUN)]


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


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints: a run that died before final/ leaves step-8 and step-12 (the last step's
# checkpoint and the one before it); whatever happens to the newest one, the rerun must end with the
# uninterrupted run's bits (kill-free, in process).

SMALL = ["model=smoke-tf4", "batch_size=16", "n_train=192", "eval_every=6", "checkpoint_every=4",
         "n_eval=16", "eval_batch_size=16", "analysis_n=4", "lr=1e-3"]  # 12 steps


class Crash(Exception):
    """Stands in for a kill between the last checkpoint and final/."""


def small_run(data, out) -> int:
    return cli(train_args(data, out, SMALL))


@pytest.fixture(scope="module")
def reference(fixed_task_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    assert small_run(fixed_task_data, out) == 0
    return out


def crash_before_final(data, out, monkeypatch) -> None:
    def crash(self):
        raise Crash
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "finish", crash)
        with pytest.raises(Crash):
            small_run(data, out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-12", "step-8"]  # the newest two


def flip_byte(step: Path) -> str:
    """Scale one float of the weights by 4 (an exponent bit): the file still parses."""
    path = step / "model.safetensors"
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # the data area follows the JSON header
    data[start + 4 * ((len(data) - start) // 8) + 3] ^= 0x01
    path.write_bytes(bytes(data))
    return "model.safetensors"


def truncate(step: Path) -> str:
    path = step / "optimizer.safetensors"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    return "optimizer.safetensors"


def break_state(step: Path) -> str:
    path = step / "train_state.json"
    path.write_text(path.read_text()[:-7])
    return "train_state.json"


def remove_model(step: Path) -> str:
    (step / "model.safetensors").unlink()
    return "model.safetensors"


def empty_dir(step: Path) -> str:
    shutil.rmtree(step)
    step.mkdir()
    return "manifest.json"


def assert_same_result(reference: Path, rerun: Path) -> None:
    assert (rerun / "final" / "model.safetensors").read_bytes() == \
        (reference / "final" / "model.safetensors").read_bytes()
    a = pd.read_parquet(reference / "metrics.parquet").drop(columns="elapsed_s")
    b = pd.read_parquet(rerun / "metrics.parquet").drop(columns="elapsed_s")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not (rerun / "checkpoints").exists()


def test_a_run_that_died_before_final_resumes_at_its_last_step(fixed_task_data, reference, tmp_path, monkeypatch,
                                                              capsys):
    """The last step's checkpoint: a run that dies evaluating or writing final/ trains nothing again."""
    out = tmp_path / "run"
    crash_before_final(fixed_task_data, out, monkeypatch)
    capsys.readouterr()
    assert small_run(fixed_task_data, out) == 0
    assert "checkpoints/step-12 (step 12 of 12)" in capsys.readouterr().out
    assert_same_result(reference, out)


@pytest.mark.parametrize("damage", [flip_byte, truncate, break_state, remove_model, empty_dir])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(fixed_task_data, reference, tmp_path,
                                                                    monkeypatch, capsys, damage):
    out = tmp_path / "run"
    crash_before_final(fixed_task_data, out, monkeypatch)
    name = damage(out / "checkpoints" / "step-12")
    capsys.readouterr()
    assert small_run(fixed_task_data, out) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"step-12/{name}" in warnings[0], captured.err
    assert "checkpoints/step-8 (step 8 of 12)" in captured.out
    assert_same_result(reference, out)


def test_with_no_intact_checkpoint_training_starts_again(fixed_task_data, reference, tmp_path, monkeypatch,
                                                        capsys):
    out = tmp_path / "run"
    crash_before_final(fixed_task_data, out, monkeypatch)
    flip_byte(out / "checkpoints" / "step-12")
    break_state(out / "checkpoints" / "step-8")
    capsys.readouterr()
    assert small_run(fixed_task_data, out) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 3 and "step 0" in warnings[-1], captured.err
    assert "resuming from" not in captured.out
    assert_same_result(reference, out)


def test_checkpoint_damage_names_the_file(fixed_task_data, tmp_path, monkeypatch):
    from cotlab.checkpoint import checkpoint_damage

    out = tmp_path / "run"
    crash_before_final(fixed_task_data, out, monkeypatch)
    step = out / "checkpoints" / "step-12"
    assert checkpoint_damage(step) is None
    manifest = json.loads((step / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["model.safetensors", "optimizer.safetensors", "rng-rank0.json",
                                         "train_state.json"]
    (step / "manifest.json").write_text("[]")
    assert checkpoint_damage(step) == f"{step / 'manifest.json'}: unreadable (not a checkpoint manifest)"
