"""The training loop's speed machinery changes no result: `cotlab train` (background prefetch, token
counts on the device, asynchronous checkpoints) ends with the weights and losses of a plain loop;
`prefetch` yields the loader's own batches; the checkpoint cadence (steps, wall clock, last step);
a failed checkpoint write ends the run with one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import cotlab.checkpoint
import pandas as pd
from cotlab.checkpoint import state_dict_to_hf
from cotlab.cli import main as cli
from cotlab.data.loader import TrainLoader
from cotlab.data.prompts import IGNORE
from cotlab.data.store import open_dataset
from cotlab.formats import PromptConfig
from cotlab.model import Transformer
from cotlab.train import Trainer, prefetch
from cotlab.train_job import prepare

# 12 steps of 16 rows, evaluations at 0, 5, 10 and 12.
SMALL = ["model=smoke-tf4", "batch_size=16", "n_train=192", "eval_every=5", "n_eval=16", "eval_batch_size=16",
         "analysis_n=0", "lr=1e-3"]


def train_args(data, out, sets: list[str]) -> list[str]:
    args = ["train", "--data", data[0], "--eval-data", data[1], "--out", str(out), "--format", "cot"]
    for item in sets:
        args += ["--set", item]
    return args


def reference_loop(data, out, sets: list[str]) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The loop without any of the machinery: render, forward, CE over the labelled tokens, AdamW;
    -> (final weights, train_loss of each evaluation after step 0)."""
    job = prepare(data[0], data[1], str(out), None, [*sets, "prompt.format=cot"], 1)
    cfg = job.cfg
    torch.set_num_threads(cfg.threads)
    model = Transformer(job.model_cfg)
    model.init_weights(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                  weight_decay=cfg.weight_decay)
    loader = TrainLoader(job.train_data, cfg.prompt, cfg.batch_size, cfg.seed)
    losses, interval = [], []
    for step in range(1, job.steps + 1):
        batch = loader.next_batch()
        labels = batch["labels"][:, 1:]  # (B, T-1)
        logits = model(batch["input_ids"])  # (B, T, V); right-padded batches need no mask
        ce_sum = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE, reduction="sum")
        labelled = (labels != IGNORE).sum()
        optimizer.zero_grad()
        (ce_sum / labelled).backward()
        optimizer.step()
        interval.append(ce_sum.detach().double() / labelled)
        if step % cfg.eval_every == 0 or step == job.steps:
            losses.append(sum(interval).item() / len(interval))
            interval = []
    return model.state_dict(), losses


def test_train_equals_a_plain_loop_bit_for_bit(fixed_task_data, tmp_path):
    out = tmp_path / "run"
    assert cli(train_args(fixed_task_data, out, [*SMALL, "checkpoint_every=4"])) == 0
    weights, losses = reference_loop(fixed_task_data, tmp_path / "reference", SMALL)
    got = load_file(out / "final" / "model.safetensors")
    expected = state_dict_to_hf(weights)
    assert got.keys() == expected.keys()
    assert all(got[name].equal(expected[name]) for name in got)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert metrics["step"].tolist() == [0, 5, 10, 12]
    assert metrics["train_loss"].tolist()[1:] == losses


def test_prefetch_yields_the_loaders_batches_and_states(fixed_task_data):
    dataset = open_dataset(fixed_task_data[0])
    plain, ahead = (TrainLoader(dataset, PromptConfig(format="cot"), 48, seed=3) for _ in range(2))
    expected = []
    for _ in range(13):  # 624 rows: into the second epoch of 512
        batch = plain.next_batch()
        expected.append((batch, plain.state_dict()))
    got = list(prefetch(ahead, 13, pin=False))
    assert [state for _, state in got] == [state for _, state in expected]
    assert expected[-1][1] == {"epoch": 1, "position": 112}
    for (batch, _), (want, _) in zip(got, expected):
        assert batch.keys() == want.keys() and all(batch[k].equal(want[k]) for k in batch)
    assert ahead.state_dict() == plain.state_dict()  # nothing rendered past the last batch asked for


class Failing:
    """A loader whose third batch cannot be read."""

    def __init__(self):
        self.position = 0

    def next_batch(self):
        if self.position == 2:
            raise OSError("shard unreadable")
        self.position += 1
        return {"input_ids": torch.tensor([self.position])}

    def state_dict(self):
        return {"position": self.position}


def test_prefetch_raises_the_loaders_error_at_its_batch():
    batches = prefetch(Failing(), 5, pin=False)
    assert [next(batches)[1], next(batches)[1]] == [{"position": 1}, {"position": 2}]
    with pytest.raises(OSError, match="shard unreadable"):
        next(batches)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs CUDA")
def test_prefetch_pins_for_cuda(fixed_task_data):
    loader = TrainLoader(open_dataset(fixed_task_data[0]), PromptConfig(format="cot"), 8, seed=0)
    batch, _ = next(prefetch(loader, 1, pin=True))
    assert all(tensor.is_pinned() for tensor in batch.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_an_ordinary_step_does_not_wait_for_the_device(fixed_task_data, tmp_path):
    """CUDA's sync debug mode raises on any host sync (.item(), a blocking copy) inside train_step."""
    job = prepare(fixed_task_data[0], fixed_task_data[1], str(tmp_path / "run"), None,
                  [*SMALL, "prompt.format=cot", "precision=fp32"], 1)
    trainer = Trainer(job)
    batches = prefetch(trainer.loader, 4, pin=True)
    trainer.train_step(next(batches)[0], 1)  # first-call set-up (optimizer state, kernels) may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, (batch, _) in zip((2, 3, 4), batches):
            trainer.train_step(batch, step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        batches.close()
    assert trainer.state.interval_steps == 4 and int(trainer.tokens_seen) == 4 * 16 * 28


class Crash(Exception):
    """Stands in for a kill between the last checkpoint and final/."""


@pytest.mark.parametrize(("sets", "kept"), [
    ([], ["step-12"]),  # neither a step count nor 30 minutes: only the last step's
    (["checkpoint_every=3"], ["step-12", "step-9"]),
    (["checkpoint_interval_s=1e-9"], ["step-10", "step-12"]),  # due at every step that syncs: evals, last
])
def test_checkpoint_cadence(fixed_task_data, tmp_path, monkeypatch, sets, kept):
    def crash(self):
        raise Crash

    out = tmp_path / "run"
    monkeypatch.setattr(Trainer, "finish", crash)
    with pytest.raises(Crash):
        cli(train_args(fixed_task_data, out, [*SMALL, *sets]))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == kept


def test_a_failed_checkpoint_write_ends_the_run_with_one_line(fixed_task_data, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    out = tmp_path / "run"
    monkeypatch.setattr(cotlab.checkpoint, "save_file", full)
    assert cli(train_args(fixed_task_data, out, [*SMALL, "checkpoint_every=4"])) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cotlab train: error: {out / 'checkpoints' / 'step-4'}: cannot be written "
                   "([Errno 28] No space left on device)")
    assert not (out / "final").exists() and list((out / "checkpoints").iterdir()) == []
