"""DDP on CPU (gloo): the same gradients and eval metrics as one process, `--nproc 2` end to end, and
a stalled rank ending the job after `collective_timeout_s`.

The gradient test runs `one_step` in the test process and this file as a script under
`torchrun --nproc-per-node 2`: each takes one global batch of 8 rows through `cotlab.train.step_loss` (DDP-wrapped when
there are 2 ranks), backpropagates, and dumps the gradients and `evaluate_accuracy`'s scores. The
timeout test runs this file as `cotlab train` (`stall` first) with rank 1 asleep in its second step.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from cotlab.cli import main as cli
from cotlab.data.store import open_dataset

TINY = ["model=smoke-tf8", "batch_size=16", "n_train=160", "eval_every=5", "checkpoint_every=4",
        "n_eval=50", "eval_batch_size=8", "analysis_n=8", "lr=1e-3"]


def one_step(out: Path, train_dir: str, eval_dir: str) -> None:
    """One global batch forward/backward on this rank; dump gradients and eval scores to `out`."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from cotlab.data.loader import TrainLoader, load_rows
    from cotlab.formats import PromptConfig
    from cotlab.data.store import open_dataset
    from cotlab.metrics import evaluate_accuracy
    from cotlab.model import Transformer
    from cotlab.model_config import model_config
    from cotlab.train import step_loss

    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    train_data, eval_data = open_dataset(train_dir), open_dataset(eval_dir)
    prompt_cfg = PromptConfig(format="cot")
    model = Transformer(model_config("smoke-tf8", train_data.config.vocab_size))
    model.init_weights(0)
    step_model = DistributedDataParallel(model) if world_size > 1 else model
    loader = TrainLoader(train_data, prompt_cfg, batch_size=8, seed=42, rank=rank, world_size=world_size)
    loss, ce_sum, counts = step_loss(step_model, loader.next_batch(), world_size, torch.device("cpu"),
                                     contextlib.nullcontext())
    loss.backward()
    save_file({name: p.grad for name, p in model.named_parameters()}, out / f"grads-w{world_size}-r{rank}.safetensors")
    scores = evaluate_accuracy(model, load_rows(eval_data, 45), eval_data.config, prompt_cfg, batch_size=4,
                               device="cpu", rank=rank, world_size=world_size)
    if rank == 0:
        (out / f"scores-w{world_size}.json").write_text(json.dumps({**scores, "labelled": int(counts[0])}))
    if world_size > 1:
        del step_model  # DDP's reducer before its process group: freed after it, gloo's teardown can deadlock
        dist.destroy_process_group()


def test_two_ranks_give_single_process_gradients_and_scores(fixed_task_data, tmp_path):
    one_step(tmp_path, *fixed_task_data)  # one process, here
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                    __file__, str(tmp_path), *fixed_task_data], check=True, env=env, timeout=180, capture_output=True)

    single = load_file(tmp_path / "grads-w1-r0.safetensors")
    rank0, rank1 = load_file(tmp_path / "grads-w2-r0.safetensors"), load_file(tmp_path / "grads-w2-r1.safetensors")
    assert single.keys() == rank0.keys() == rank1.keys()
    for name, grad in single.items():
        assert rank0[name].equal(rank1[name])  # DDP leaves every rank with the same gradient
        torch.testing.assert_close(rank0[name], grad, atol=1e-6, rtol=0, msg=name)
        assert grad.abs().max() > 1e-4  # a gradient that actually flows

    one = json.loads((tmp_path / "scores-w1.json").read_text())
    two = json.loads((tmp_path / "scores-w2.json").read_text())
    assert one.keys() == two.keys() and one["n"] == two["n"] == 45  # 45 rows: uneven shards 23 + 22
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-9), key


def stall_rank_one(argv: list[str]) -> int:
    """`cotlab train argv` on this rank; rank 1 sleeps (a stalled rank) before its second step."""
    from cotlab.train import Trainer, cli as train_cli

    if os.environ["RANK"] == "1":
        train_step = Trainer.train_step

        def stalled(self, batch, step):
            if step == 2:
                time.sleep(600)
            train_step(self, batch, step)

        Trainer.train_step = stalled
    return train_cli(argv)


def test_a_stalled_rank_ends_the_job_after_the_collective_timeout(fixed_task_data, tmp_path):
    train_dir, eval_dir = fixed_task_data
    args = ["--data", train_dir, "--eval-data", eval_dir, "--out", str(tmp_path / "run"), "--format", "cot"]
    for item in [*TINY, "collective_timeout_s=5"]:
        args += ["--set", item]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           __file__, "stall", *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Timed out" in proc.stderr, proc.stderr[-2000:]  # rank 0 gave up waiting for rank 1
    assert time.monotonic() - started < 60  # not gloo's 30-minute default


def test_train_with_two_ranks_matches_one(fixed_task_data, tmp_path):
    def train(out, *extra):
        train_dir, eval_dir = fixed_task_data
        args = ["train", "--data", train_dir, "--eval-data", eval_dir, "--out", str(out), "--format", "cot", *extra]
        for item in TINY:
            args += ["--set", item]
        assert cli(args) == 0  # --nproc 2 re-executes under torchrun and returns its exit code
        return pd.read_parquet(out / "metrics.parquet")

    data_id = open_dataset(fixed_task_data[0]).manifest["data_id"]
    one, two = train(tmp_path / "one"), train(tmp_path / "two", "--nproc", "2", "--data-id", data_id)
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()
    assert one["step"].tolist() == two["step"].tolist() == [0, 5, 10]
    assert one["tokens_seen"].tolist() == two["tokens_seen"].tolist()
    for column in ("train_loss", "eval_loss", "chain_loss_0", "embed_sim"):
        assert two[column].tolist() == pytest.approx(one[column].tolist(), rel=1e-4, nan_ok=True), column


if __name__ == "__main__":
    if sys.argv[1] == "stall":
        sys.exit(stall_rank_one(sys.argv[2:]))
    one_step(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
