"""`cotlab train`: plain-PyTorch (DDP) training with in-loop evaluation and bit-identical resume.

    cotlab train --data D/train --eval-data D/eval --out RUN --format cot [--config F] [--set K=V]...
                 [--data-id ID]                      # refuse data whose manifest has another data_id
    cotlab train ... --nproc 2                       # re-executes itself under torchrun
    torchrun --nproc-per-node 2 -m cotlab.train ...  # the same

The recipe is the authors' (docs/training.md): AdamW (lr 5e-5, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01) at a constant lr, no clipping, next-token CE over the labelled positions only,
evaluated at step 0 and every `eval_every` steps. The global batch is `batch_size` sequences
whatever the world size: rank r trains on its slice of the same global batch, and the loss is
normalised by the global number of labelled tokens, so the summed gradient equals the
single-process one. Every input is checked first (`cotlab.train_job.prepare`); then `Trainer` runs
the loop as named steps (`train_step`, `check`, `evaluate_and_record`, `save`). A step whose loss is
nan or inf stops the run with a one-line error naming that step (checked on the device without
waiting for it, and acted on at the sync steps below, so that no diverged state is recorded).
Under DDP, a rank that stalls ends the job after `collective_timeout_s` (`cotlab.distributed.init`).

Where the loop waits for the device. An ordinary step only queues work: a background thread renders
the next batch (pinned on CUDA) while this one trains (`prefetch`), the batch is copied with
non_blocking, the token counts that normalise the loss are counted on the device and (NCCL)
all-reduced while the forward runs, and the running loss, token count and first non-finite step stay on the
device. The host reads the device (`.item()`, `.tolist()`) only on sync steps: every
PROGRESS_EVERY-th step, evaluation steps and checkpoint steps, in `check` (the loss check and the
checkpoint-clock vote, one all-reduce), `show_progress`, `evaluate`/`sync_state` and
`Checkpointer.save` (gathering the RNG states; the weights and moments are copied to host buffers
without waiting, and a background thread writes them).

Checkpoints: every `checkpoint_every` steps (if set), once `checkpoint_interval_s` has passed since
the last one (looked at on sync steps; every rank votes, so all save together), and at the last step.
At most one is being written; leaving the loop, normally or by an error, waits for it, and a write
that failed stops the run with a one-line error.

Outputs in RUN_DIR:
- config.json: the resolved configs, written once the model is built (a run that cannot build its
  model leaves nothing that a corrected rerun would be refused for); a rerun with a different one
  is refused.
- metrics.parquet: one row per eval, rewritten atomically after each (rank 0).
- checkpoints/step-N/: model.safetensors, optimizer.safetensors, train_state.json (step, loader
  position, metrics so far), rng-rank{r}.json and manifest.json (their SHA-256s, written last);
  written by rank 0 under a temporary name and renamed, the newest two kept. Rerunning the same command
  resumes from the newest one whose files match its manifest; a damaged one is skipped with a
  one-line warning naming the file, and with none intact training starts again from step 0
  (deterministic, so only time is lost). The result equals an uninterrupted run's bit for bit on
  CPU (the wall-clock column `elapsed_s` aside).
- final/: the HF Llama directory (`cotlab.checkpoint.save_hf`) with the run's generation_config.json
  (`cotlab.checkpoint.generation_config`), written last; it marks the run as complete (the resume
  checkpoint is then deleted) and makes a rerun a no-op.

Letters: B rows per rank, T sequence length, V vocabulary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cotlab.analysis.model_analysis import analyse_model
from cotlab.atomic import write_atomic
from cotlab.checkpoint import (Checkpointer, TrainState, checkpoint_dir, generation_config, good_checkpoint,
                               load_checkpoint, save_hf)
from cotlab.config import ConfigError, fail
from cotlab.data.loader import TrainLoader, load_rows
from cotlab.data.prompts import IGNORE
from cotlab.distributed import all_reduce_min, all_reduce_sum, barrier, broadcast, init
from cotlab.formats import FORMATS, DecodeConfig
from cotlab.metrics import evaluate_accuracy
from cotlab.model import Transformer
from cotlab.precision import set_precision
from cotlab.train_job import TrainJob, prepare

ANALYSIS_BATCH = 32  # sequences per attention pass: it holds (B, heads, T, T) fp32 probabilities
PROGRESS_EVERY = 50  # steps between progress updates, loss checks and checkpoint-clock looks (each one syncs)
NO_STEP = torch.iinfo(torch.int64).max  # "no non-finite loss yet"


class LossNotFinite(ConfigError):
    """A training loss became nan or inf: the run stops (one line) instead of training on garbage."""


# ---------------------------------------------------------------------------------------------
# The loop.


def init_run_dir(job: TrainJob) -> None:
    """Create the run directory and its config.json; remove leftovers of a killed attempt (rank 0).

    Called once the model is built, so that config.json belongs to a run that could start.
    """
    job.out.mkdir(parents=True, exist_ok=True)
    if not (job.out / "config.json").is_file():
        text = json.dumps(job.resolved, indent=2) + "\n"
        write_atomic(job.out / "config.json", lambda tmp: Path(tmp).write_text(text))
    for stale in [*job.out.glob(".*.tmp*"), *(job.out / "checkpoints").glob(".*.tmp*")]:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def write_metrics(out: Path, rows: list[dict[str, float]]) -> None:
    """metrics.parquet, replaced atomically."""
    write_atomic(out / "metrics.parquet", lambda tmp: pd.DataFrame(rows).to_parquet(tmp, index=False))


def prefetch(loader: TrainLoader, n: int, pin: bool) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, int]]]:
    """The loader's next `n` batches, each with the loader state after it (what a checkpoint of that
    step records: the loader itself runs one batch ahead).

    A background thread renders the next batch (and pins it when `pin`, for CUDA) while the caller
    trains on the current one; its errors are raised here. Close the generator to stop the thread.
    """
    def render() -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        batch = loader.next_batch()
        if pin:
            batch = {name: tensor.pin_memory() for name, tensor in batch.items()}
        return batch, loader.state_dict()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as worker:
        ahead = worker.submit(render) if n else None
        for i in range(n):
            batch, ahead = ahead.result(), (worker.submit(render) if i + 1 < n else None)
            yield batch


def step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], world_size: int,
              device: torch.device, autocast: contextlib.AbstractContextManager
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward one rank's share of a global batch -> (loss to backpropagate, CE sum, global counts).

    `batch` is a loader batch on the CPU (pinned for CUDA, so the copies do not wait), right-padded:
    the model then runs purely causal with no mask (positions 0..T-1 are every row's own, and no
    real token attends to the padding after it), so SDPA takes its fused kernels. counts =
    [labelled tokens, real input tokens] of the whole global batch (int64, all ranks), counted on the
    device and, on GPUs, summed over the ranks while the forward runs: no host round trip. DDP averages
    gradients over ranks; the loss is scaled by world_size to turn that average into a sum, so the
    gradient is that of (global CE sum) / (global labelled tokens), as on one process.
    """
    host_mask = batch["attention_mask"]  # (B, T) bool
    if (host_mask[:, 1:] & ~host_mask[:, :-1]).any():  # a real token after padding: left-padded
        raise ValueError("step_loss needs right-padded batches (TrainLoader's), got padding before a real token")
    input_ids = batch["input_ids"].to(device, non_blocking=True)  # (B, T)
    labels = batch["labels"].to(device, non_blocking=True)[:, 1:]  # (B, T-1): the target of position t is token t+1
    attention_mask = host_mask.to(device, non_blocking=True)  # (B, T)
    counts = torch.stack([(labels != IGNORE).sum(), attention_mask.sum()])  # (2,) this rank's
    summing = dist.all_reduce(counts, async_op=True) if world_size > 1 else None
    if summing is not None and device.type == "cpu":
        summing.wait()  # gloo: no stream to defer to, and a stalled rank then times out in this collective
    with autocast:
        logits = model(input_ids)  # (B, T, V) float32; padding columns only feed ignored labels
    ce_sum = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE, reduction="sum")
    if summing is not None:
        summing.wait()  # NCCL: the stream waits, not the host
    return ce_sum * world_size / counts[0], ce_sum, counts


class Trainer:
    """One rank's training of a job: the model, optimizer, data and the state a checkpoint stores.

    `state` is what train_state.json holds. The running train loss and token count stay on the
    device between evals (`interval_loss`, `tokens_seen`) and `sync_state` copies them into it, so
    that a step never waits for the device; `position` is the loader state after the last step
    trained (the loader runs ahead, `prefetch`).
    """

    def __init__(self, job: TrainJob, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        cfg = job.cfg
        self.job, self.rank, self.world_size = job, rank, world_size
        self.device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.set_num_threads(cfg.threads)
        self.autocast = set_precision(job.precision)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        self.model = Transformer(job.model_cfg)
        self.model.init_weights(cfg.seed)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                           eps=cfg.eps, weight_decay=cfg.weight_decay,
                                           fused=self.device.type == "cuda")
        self.loader = TrainLoader(job.train_data, cfg.prompt, cfg.batch_size, cfg.seed, rank, world_size)
        self.eval_rows = load_rows(job.eval_data, job.n_eval)
        self.state = self.resume()
        self.position = self.loader.state_dict()
        self.checkpointer = Checkpointer(job.out, self.model, self.optimizer, rank, world_size, self.device)

        self.step_model: torch.nn.Module = torch.compile(self.model) if cfg.compile else self.model
        # Evaluation prefills and decodes with a growing KV cache: shapes vary, so dynamic; the
        # cache's bookkeeping stays eager (cotlab.decode), the layers between are compiled.
        self.eval_model: torch.nn.Module = torch.compile(self.model, dynamic=True) if cfg.compile else self.model
        if world_size > 1:
            device_ids = [local_rank] if self.device.type == "cuda" else None
            self.step_model = DistributedDataParallel(self.step_model, device_ids=device_ids)
        # A checkpoint holds the all-ranks sum; resumed, rank 0 carries it and the others start at 0.
        self.interval_loss = torch.tensor(self.state.interval_loss if rank == 0 else 0.0,
                                          dtype=torch.float64, device=self.device)  # () this rank's sum
        self.tokens_seen = torch.tensor(self.state.tokens_seen, dtype=torch.int64, device=self.device)  # ()
        # The first step whose loss was not finite on this rank (NO_STEP: none) and that loss.
        self.bad_step = torch.tensor(NO_STEP, dtype=torch.int64, device=self.device)  # ()
        self.bad_loss = torch.tensor(0.0, dtype=torch.float32, device=self.device)  # ()
        self.started = time.perf_counter() - self.state.elapsed_s
        self.bar = tqdm(total=job.steps, initial=self.state.step, desc="train", unit="step",
                        dynamic_ncols=True, disable=None if rank == 0 else True)
        self.board = None
        if rank == 0 and cfg.logger == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # optional extra: imported only when asked
            # purge_step: after a resume, TensorBoard drops what the killed run logged past the checkpoint
            self.board = SummaryWriter(str(job.out / "tensorboard"), purge_step=self.state.step or None)

    def resume(self) -> TrainState:
        """Load the newest intact checkpoint (weights, moments, RNG, loader position); a fresh state if none.

        Rank 0 checks the checkpoints against their manifests, warning about each damaged one, and
        every rank loads the one it chose, so that all ranks continue from the same step.
        """
        damaged: list[str] = []
        found = good_checkpoint(self.job.out, damaged.append) if self.rank == 0 else None
        for message in damaged:
            warn(message)
        step = int(broadcast(torch.tensor(-1 if found is None else found, device=self.device),
                             self.world_size).item())
        if step < 0:
            if damaged:
                warn("no intact checkpoint is left: training again from step 0")
            return TrainState()
        checkpoint = checkpoint_dir(self.job.out, step)
        state = load_checkpoint(checkpoint, self.model, self.optimizer, self.rank, self.device)
        self.loader.load_state_dict(state.loader)
        print0(self.rank, f"resuming from {checkpoint} (step {state.step} of {self.job.steps})")
        return state

    def fit(self) -> None:
        """Evaluate at step 0 (unless resumed), then train to the last step, evaluating and checkpointing.

        A checkpoint is written every `checkpoint_every` steps (if set), when `checkpoint_interval_s`
        has passed since the last one (looked at on the steps that synchronise anyway), and at the
        last step. Leaving, normally or by an error, waits for the checkpoint being written.
        """
        cfg, steps = self.job.cfg, self.job.steps
        if self.state.step == 0:
            self.evaluate_and_record(0)
        self.saved_at = time.perf_counter()
        batches = prefetch(self.loader, steps - self.state.step, pin=self.device.type == "cuda")
        with self.checkpointer, contextlib.closing(batches):
            for step, (batch, position) in zip(range(self.state.step + 1, steps + 1), batches):
                self.train_step(batch, step)
                self.position = position
                record = step % cfg.eval_every == 0 or step == steps
                save = step == steps or (cfg.checkpoint_every is not None and step % cfg.checkpoint_every == 0)
                if record or save or step % PROGRESS_EVERY == 0:  # the only steps that wait for the device
                    save |= self.check(time.perf_counter() - self.saved_at >= cfg.checkpoint_interval_s)
                    if step % PROGRESS_EVERY == 0:
                        self.show_progress()
                if record:
                    self.evaluate_and_record(step)
                if save:
                    self.save(step)
        self.bar.close()

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> None:
        """Optimizer step `step` on this rank's share of a global batch; the loss stays on the device."""
        loss, ce_sum, counts = step_loss(self.step_model, batch, self.world_size, self.device, self.autocast)
        first_bad = ~torch.isfinite(loss.detach()) & (self.bad_step == NO_STEP)
        self.bad_step.masked_fill_(first_bad, step)
        self.bad_loss.copy_(torch.where(first_bad, loss.detach().float(), self.bad_loss))  # no .item() inside
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.interval_loss += ce_sum.detach().double() / counts[0]
        self.tokens_seen += counts[1]
        self.state.interval_steps += 1
        self.bar.update(1)

    def check(self, due: bool) -> bool:
        """Raise LossNotFinite naming the first step (over all ranks) whose loss was nan or inf; else
        return whether any rank found a checkpoint `due` (its clock past the interval).

        A collective and a host sync: every rank must call it at the same step, and every rank raises
        (or saves) together.
        """
        flags = torch.stack([self.bad_step, torch.full_like(self.bad_step, 0 if due else 1)])  # (2,)
        step, not_due = all_reduce_min(flags, self.world_size).tolist()
        if step != NO_STEP:
            loss = self.bad_loss.item() if int(self.bad_step.item()) == step else math.nan
            raise LossNotFinite(f"train_loss became {loss} at step {step} "
                                f"(lr={self.optimizer.param_groups[0]['lr']:g})")
        return not_due == 0

    def show_progress(self) -> None:
        """The progress bar's running loss (rank 0's share of the interval so far); reads the device."""
        if not self.bar.disable:
            mean_loss = self.interval_loss.item() * self.world_size / self.state.interval_steps
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{self.state.metrics[-1]['answer_acc']:.3f}")

    def sync_state(self, step: int) -> None:
        """Bring `state` up to `step` (a collective: every rank must call it)."""
        self.state.step, self.state.loader = step, self.position
        self.state.interval_loss = all_reduce_sum(self.interval_loss.clone(), self.world_size).item()
        self.state.tokens_seen = int(self.tokens_seen.item())
        self.state.elapsed_s = time.perf_counter() - self.started

    def evaluate(self, step: int) -> dict[str, float]:
        """The metrics.parquet row of `step`: eval scores (all ranks), analyses (rank 0), train loss."""
        cfg, state = self.job.cfg, self.state
        with self.autocast:
            scores = evaluate_accuracy(self.eval_model, self.eval_rows, self.job.train_data.config, cfg.prompt,
                                       batch_size=cfg.eval_batch_size, device=self.device, rank=self.rank,
                                       world_size=self.world_size,
                                       decode=DecodeConfig(max_new_tokens=cfg.eval_max_new_tokens))
            analyses = self.analyse() if self.rank == 0 else {}
        self.sync_state(step)
        n_eval = int(scores.pop("n"))
        return {"step": step, "seqs_seen": step * cfg.batch_size, "tokens_seen": state.tokens_seen,
                "train_loss": state.interval_loss / state.interval_steps if state.interval_steps else math.nan,
                **scores, **analyses, "lr": self.optimizer.param_groups[0]["lr"], "n_eval": n_eval,
                "elapsed_s": state.elapsed_s}

    def analyse(self) -> dict[str, float]:
        """embed_sim, embed_cos_i, parent_prec, parent_mass and parent_chance of the model now."""
        job, prompt = self.job, self.job.cfg.prompt
        row, _ = analyse_model(self.model, job.train_data.embedding, self.eval_rows, job.train_data.config,
                               prompt.format, offset=prompt.offset, n_attn=min(job.cfg.analysis_n, job.n_eval),
                               batch_size=ANALYSIS_BATCH, device=self.device)
        return row

    def evaluate_and_record(self, step: int) -> None:
        """Evaluate, append the row to the metrics, start a new loss interval; rank 0 writes and reports."""
        row = self.evaluate(step)
        self.state.metrics.append(row)
        self.interval_loss.zero_()
        self.state.interval_steps = 0
        if self.rank == 0:
            write_metrics(self.job.out, self.state.metrics)
            if self.board is not None:
                for name, value in row.items():
                    if name != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                        self.board.add_scalar(name, value, step)
                self.board.flush()
            self.bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['answer_acc']:.3f}")
            steps = self.job.steps  # the ETA assumes the pace so far (evaluations included)
            eta = f"{row['elapsed_s'] / step * (steps - step):.0f}s" if step else "?"
            self.bar.write(f"step {step:>7}/{steps} | train_loss {row['train_loss']:.4f} | eval_loss "
                           f"{row['eval_loss']:.4f} | answer_acc {row['answer_acc']:.4f} | majority "
                           f"{row['majority_baseline']:.4f} | {row['elapsed_s']:.1f}s, ETA {eta}")

    def save(self, step: int) -> None:
        """Snapshot the resume checkpoint of `step` and write it in the background (every rank must call it)."""
        self.sync_state(step)
        self.checkpointer.save(self.state)
        self.saved_at = time.perf_counter()

    def finish(self) -> None:
        """Write final/ and drop the resume checkpoint (rank 0): this marks the run complete."""
        out, state = self.job.out, self.state
        save_hf(self.model, out / "final", generation=generation_config(
            self.job.train_data.config, self.job.cfg.prompt, self.job.cfg.eval_max_new_tokens))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        if self.board is not None:
            self.board.close()
        tokens_per_s = state.tokens_seen / max(state.elapsed_s, 1e-9)
        print0(self.rank, f"done: {self.job.steps} steps, {state.tokens_seen:,} tokens in "
                          f"{state.elapsed_s:.1f}s ({tokens_per_s:,.0f} tokens/s), model in {out / 'final'}")


def train(job: TrainJob, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> None:
    """Train (or resume) `job` to completion on this rank; the caller has set up the process group."""
    trainer = Trainer(job, rank, world_size, local_rank)
    if rank == 0:
        init_run_dir(job)
    barrier(world_size)
    trainer.fit()
    if rank == 0:
        trainer.finish()
    barrier(world_size)


def print0(rank: int, message: str) -> None:
    if rank == 0:
        print(message, flush=True)


def warn(message: str) -> None:
    """One line on stderr: something was wrong but the run goes on (e.g. a damaged checkpoint skipped)."""
    print(f"cotlab train: warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Command line.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="train split directory (cotlab generate --split train)")
    parser.add_argument("--eval-data", required=True, metavar="DIR",
                        help="eval split directory of the same data point")
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="run directory (created; rerun to resume)")
    parser.add_argument("--format", choices=list(FORMATS), metavar="FORMAT",
                        help=f"{' | '.join(FORMATS)}; overrides prompt.format")
    parser.add_argument("--config", metavar="FILE", help="YAML file of TrainConfig values")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one value, e.g. --set lr=1e-3 --set prompt.format=cot")
    parser.add_argument("--data-id", metavar="ID",
                        help="refuse --data / --eval-data unless their manifest has this data_id (the workflow's)")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="ranks on this machine: >1 re-executes under torchrun (gloo on CPU, nccl on GPU)")


def main(args: argparse.Namespace) -> int:
    """Validate everything, then train on this process, under torchrun, or relaunch under torchrun."""
    # COTLAB_LOGGER=tensorboard turns the logger on for every job of a workflow without touching its
    # params (the logger changes no result, so it must not rerun anything); an explicit --set wins.
    logger = [f"logger={os.environ['COTLAB_LOGGER']}"] if os.environ.get("COTLAB_LOGGER") else []
    sets = [*logger, *args.set, *([f"prompt.format={args.format}"] if args.format else [])]
    launched = "LOCAL_RANK" in os.environ  # under torchrun
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if launched else args.nproc
    if world_size < 1:
        fail("--nproc", args.nproc, "must be a positive integer")
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    job = prepare(args.data, args.eval_data, args.out, args.config, sets, world_size, args.data_id)
    if job.done:
        print0(rank, f"{job.out / 'final'} exists: the run is complete, nothing to do")
        return 0
    if world_size > 1 and not launched:
        forwarded = ["--data", args.data, "--eval-data", args.eval_data, "--out", args.out,
                     *(["--config", args.config] if args.config else []),
                     *(["--data-id", args.data_id] if args.data_id else []),
                     *[item for s in sets for item in ("--set", s)]]
        return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc-per-node={world_size}", "-m", "cotlab.train", *forwarded])
    if world_size > 1:
        if torch.cuda.is_available():  # before NCCL starts, so that each rank talks from its own GPU
            torch.cuda.set_device(local_rank)
        init(job.cfg.collective_timeout_s)
    try:
        train(job, rank, world_size, local_rank)
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m cotlab.train` / torchrun entry: the same as `cotlab train` (errors: one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="cotlab train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except ConfigError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"cotlab train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
