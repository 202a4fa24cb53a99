"""`cotlab train`: plain-PyTorch (DDP) training with in-loop evaluation and bit-identical resume.

    cotlab train --data D/train --eval-data D/eval --out RUN --format cot [--config F] [--set K=V]...
    cotlab train ... --nproc 2                       # re-executes itself under torchrun
    torchrun --nproc-per-node 2 -m cotlab.train ...  # the same

The recipe is the authors' (experiments.md §2): AdamW (lr 5e-5, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01) at a constant lr, no clipping, next-token CE over the labelled positions only,
evaluated at step 0 and every `eval_every` steps. The global batch is `batch_size` sequences
whatever the world size: rank r trains on its slice of the same global batch, and the loss is
normalised by the global number of labelled tokens, so the summed gradient equals the
single-process one.

Outputs in RUN_DIR:
- config.json: the resolved configs; a rerun with a different one is refused.
- metrics.parquet: one row per eval, rewritten atomically after each (rank 0).
- checkpoints/step-N/: model.safetensors, optimizer.safetensors, train_state.json (step, loader
  position, metrics so far), rng-rank{r}.json; written under a temporary name and renamed, only
  the newest kept. Rerunning the same command resumes from it; the result equals an
  uninterrupted run's bit for bit on CPU (the wall-clock column `elapsed_s` aside).
- final/: the HF Llama directory (`cotlab.checkpoint.save_hf`), written last; it marks the run as
  complete (the resume checkpoint is then deleted) and makes a rerun a no-op.

Letters: B rows per rank, T sequence length, V vocabulary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cotlab.analysis.attention import model_query_maps, scores_from_maps
from cotlab.analysis.similarity import embedding_similarity
from cotlab.atomic import write_atomic
from cotlab.checkpoint import replace_dir, save_hf
from cotlab.config import ConfigError, fail, load
from cotlab.data.loader import TrainLoader, load_rows
from cotlab.data.prompts import IGNORE
from cotlab.data.store import Dataset, open_dataset
from cotlab.metrics import evaluate_accuracy
from cotlab.formats import FORMATS
from cotlab.model import Transformer
from cotlab.model_config import ModelConfig, model_config
from cotlab.train_config import TrainConfig

CHECKPOINT_DIR = re.compile(r"^step-(\d+)$")
ANALYSIS_BATCH = 32  # sequences per attention pass: it holds (B, heads, T, T) fp32 probabilities


@dataclass
class Run:
    """A validated run: everything `train` needs, checked before anything is written."""

    cfg: TrainConfig
    model_cfg: ModelConfig
    train_data: Dataset
    eval_data: Dataset
    out: Path
    steps: int
    n_eval: int
    precision: str  # fp32 | tf32 | bf16, "auto" resolved
    resolved: dict[str, Any]  # the content of config.json

    @property
    def done(self) -> bool:
        return (self.out / "final").is_dir()


@dataclass
class TrainState:
    """What a checkpoint stores besides weights and optimizer moments (train_state.json)."""

    step: int = 0
    tokens_seen: int = 0  # real (non-padding) input tokens, all ranks
    interval_loss: float = 0.0  # sum over steps since the last eval of each step's mean CE
    interval_steps: int = 0
    elapsed_s: float = 0.0  # wall clock spent training and evaluating, summed over restarts
    loader: dict[str, int] = field(default_factory=dict)
    metrics: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Validation: configs, datasets and the run directory, before any work.


def prepare(data: str, eval_data: str, out: str, config: str | None, sets: list[str],
            world_size: int) -> Run:
    """Load and cross-check every input; raise a one-line ConfigError on the first problem."""
    cfg = load(TrainConfig, config, sets)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device_type == "cuda" else "fp32")

    train_data, evals = open_dataset(data), open_dataset(eval_data)
    if train_data.split != "train":
        fail("--data", data, f"must be a train split (this one is {train_data.split!r})")
    if evals.split != "eval":
        fail("--eval-data", eval_data, f"must be an eval split (this one is {evals.split!r})")
    data_cfg = train_data.config
    theirs = evals.config.to_dict()
    for key, value in data_cfg.to_dict().items():
        if key != "n_sequences" and theirs[key] != value:
            fail("--eval-data", eval_data, f"must hold the same data point as --data ({key} is "
                 f"{theirs[key]!r} there, {value!r} in --data)")
    try:
        cfg.prompt.check(data_cfg)
    except ConfigError as exc:
        raise ConfigError(f"prompt.{exc}") from None

    n_train = train_data.n_rows if cfg.n_train is None else cfg.n_train
    if n_train < cfg.batch_size:
        fail("n_train", n_train, f"must be >= batch_size={cfg.batch_size} (the train split holds "
             f"{train_data.n_rows} rows)")
    n_eval = evals.n_rows if cfg.n_eval is None else cfg.n_eval
    if n_eval > evals.n_rows:
        fail("n_eval", n_eval, f"must be <= {evals.n_rows} (rows of the eval split)")
    if cfg.batch_size % world_size:
        fail("batch_size", cfg.batch_size, f"must be divisible by the number of ranks ({world_size})")
    model_cfg = model_config(cfg.model, data_cfg.vocab_size + cfg.prompt.offset)

    resolved_cfg = cfg.model_copy(update={"n_train": n_train, "n_eval": n_eval})
    resolved = {"train": resolved_cfg.to_dict(), "precision": precision, "steps": n_train // cfg.batch_size,
                "model": model_cfg.to_dict(), "data": data_cfg.to_dict(), "eval_data": evals.config.to_dict()}
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        fail("--out", out, "must be a directory (a file is in the way)")
    saved = out_dir / "config.json"
    if saved.is_file():
        mismatch = first_difference(*(without_neutral(c) for c in (json.loads(saved.read_text()), resolved)))
        if mismatch:
            key, there, here = mismatch
            raise ConfigError(f"--out {out}: its config.json has {key}={there!r} but this run has "
                              f"{here!r}; use another --out or delete the old run")
    return Run(cfg, model_cfg, train_data, evals, out_dir, n_train // cfg.batch_size, n_eval,
               precision, resolved)


# Settings a rerun may change without changing any result (Snakemake caps threads at --cores).
RESULT_NEUTRAL = ("threads", "eval_batch_size")


def without_neutral(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved run config that must match for a rerun to resume (JSON types)."""
    resolved = json.loads(json.dumps(resolved))
    for key in RESULT_NEUTRAL:
        resolved["train"].pop(key, None)
    return resolved


def first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key (in `b`'s order) at which two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*b, *(key for key in a if key not in b)]:
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


# ---------------------------------------------------------------------------------------------
# Checkpoints: complete or absent, newest kept; weights and moments as safetensors, state as JSON.


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoints/step-N directory (temporary ones never match)."""
    found = [(int(m.group(1)), p) for p in (out / "checkpoints").glob("step-*")
             if (m := CHECKPOINT_DIR.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch CPU (and CUDA) generator states as JSON-able lists."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(mt), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state().tolist(),
            "cuda": torch.cuda.get_rng_state(device).tolist() if device.type == "cuda" else None}


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


def save_checkpoint(out: Path, model: Transformer, optimizer: torch.optim.Optimizer,
                    state: TrainState, rank: int, world_size: int, device: torch.device) -> None:
    """Write checkpoints/step-N atomically (every rank adds its RNG state), then drop older ones."""
    root = out / "checkpoints"
    final = root / f"step-{state.step}"
    tmp = root / f".step-{state.step}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(world_size)
    (tmp / f"rng-rank{rank}.json").write_text(json.dumps(rng_state(device)))
    if rank == 0:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  tmp / "model.safetensors")
        moments = {f"{index}.{name}": value.detach().cpu().contiguous()
                   for index, per_param in optimizer.state_dict()["state"].items()
                   for name, value in per_param.items()}
        save_file(moments, tmp / "optimizer.safetensors")
        (tmp / "train_state.json").write_text(json.dumps(asdict(state)))
    barrier(world_size)
    if rank == 0:
        replace_dir(tmp, final)
        for older in root.glob("step-*"):
            if older != final and CHECKPOINT_DIR.match(older.name):
                shutil.rmtree(older)


def load_checkpoint(path: Path, model: Transformer, optimizer: torch.optim.Optimizer, rank: int,
                    device: torch.device) -> TrainState:
    """Restore weights, optimizer moments, this rank's RNG state; return the train state."""
    model.load_state_dict(load_file(path / "model.safetensors", device=str(device)))
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(path / "optimizer.safetensors").items():
        index, name = key.split(".", 1)
        moments.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": optimizer.state_dict()["param_groups"]})
    rng_file = path / f"rng-rank{rank}.json"
    if rng_file.is_file():  # absent when resuming with more ranks; nothing in training draws from it
        set_rng_state(json.loads(rng_file.read_text()), device)
    return TrainState(**json.loads((path / "train_state.json").read_text()))


def write_metrics(out: Path, rows: list[dict[str, float]]) -> None:
    """metrics.parquet, replaced atomically."""
    write_atomic(out / "metrics.parquet", lambda tmp: pd.DataFrame(rows).to_parquet(tmp, index=False))


# ---------------------------------------------------------------------------------------------
# Distributed helpers.


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        dist.all_reduce(tensor)
    return tensor


def set_precision(precision: str) -> contextlib.AbstractContextManager:
    """Set the TF32 switches for `precision` and return the forward pass's autocast context."""
    tf32 = precision != "fp32"  # bf16 autocast leaves some matmuls in fp32: let them use TF32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if precision == "bf16":
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# The loop.


def analysis_metrics(model: Transformer, run: Run, eval_rows, device: torch.device) -> dict[str, float]:
    """embed_sim (+ the d principal cosines) and parent_prec / parent_mass / parent_chance."""
    cfg, data_cfg = run.cfg, run.train_data.config
    offset, V = cfg.prompt.offset, data_cfg.vocab_size
    model_embedding = model.tok_embeddings.weight.detach()[offset:offset + V].float().cpu().numpy()  # (V, D)
    sim, cosines = embedding_similarity(run.train_data.embedding, model_embedding)
    out = {"embed_sim": sim, **{f"embed_cos_{i}": float(c) for i, c in enumerate(cosines)}}
    parents = {"parent_prec": math.nan, "parent_mass": math.nan, "chance": math.nan}
    n = min(cfg.analysis_n, run.n_eval)
    if n > 0 and cfg.prompt.spec.parent_attention:
        rows = eval_rows.take(slice(0, n))
        maps = model_query_maps(model, rows, data_cfg, batch_size=ANALYSIS_BATCH, device=device,
                                offset=offset)
        parents = scores_from_maps(maps, rows.dag, data_cfg)
    out.update(parent_prec=parents["parent_prec"], parent_mass=parents["parent_mass"],
               parent_chance=parents["chance"])
    return out


def step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], world_size: int,
              device: torch.device, autocast: contextlib.AbstractContextManager
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward one rank's share of a global batch -> (loss to backpropagate, CE sum, global counts).

    counts = [labelled tokens, real input tokens] of the whole global batch (int64, all ranks).
    DDP averages gradients over ranks; the loss is scaled by world_size to turn that average into a
    sum, so the gradient is that of (global CE sum) / (global labelled tokens), as on one process.
    """
    labels = batch["labels"][:, 1:]  # (B, T-1): the target of position t is token t+1
    counts = torch.stack([(labels != IGNORE).sum(), batch["attention_mask"].sum()]).to(device)
    all_reduce_sum(counts, world_size)
    input_ids = batch["input_ids"].to(device, non_blocking=True)  # (B, T)
    mask = None if batch["attention_mask"].all() else batch["attention_mask"].to(device)
    with autocast:
        logits = model(input_ids, mask)  # (B, T, V) float32
    ce_sum = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels.to(device), ignore_index=IGNORE,
                             reduction="sum")
    return ce_sum * world_size / counts[0], ce_sum, counts


def train(run: Run, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> None:
    """Train (or resume) `run` to completion on this rank; the caller has set up the process group."""
    cfg, data_cfg = run.cfg, run.train_data.config
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(cfg.threads)
    autocast = set_precision(run.precision)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    if rank == 0:  # the run directory, and leftovers of a killed attempt
        run.out.mkdir(parents=True, exist_ok=True)
        if not (run.out / "config.json").is_file():
            text = json.dumps(run.resolved, indent=2) + "\n"
            write_atomic(run.out / "config.json", lambda tmp: Path(tmp).write_text(text))
        for stale in [*run.out.glob(".*.tmp*"), *(run.out / "checkpoints").glob(".*.tmp*")]:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    barrier(world_size)

    model = Transformer(run.model_cfg)
    model.init_weights(cfg.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                  weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    loader = TrainLoader(run.train_data, cfg.prompt, cfg.batch_size, cfg.seed, rank, world_size)
    eval_rows = load_rows(run.eval_data, run.n_eval)

    state = TrainState()
    checkpoint = latest_checkpoint(run.out)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, rank, device)
        loader.load_state_dict(state.loader)
        print0(rank, f"resuming from {checkpoint} (step {state.step} of {run.steps})")

    step_model: torch.nn.Module = torch.compile(model) if cfg.compile else model
    if world_size > 1:
        step_model = DistributedDataParallel(step_model, device_ids=[local_rank] if device.type == "cuda" else None)
    # A checkpoint holds the all-ranks sum; resumed, rank 0 carries it and the others start at 0.
    interval_loss = torch.tensor(state.interval_loss if rank == 0 else 0.0, dtype=torch.float64, device=device)
    tokens_seen = torch.tensor(state.tokens_seen, dtype=torch.int64, device=device)
    started = time.perf_counter() - state.elapsed_s

    def sync_state(step: int) -> None:
        state.step, state.loader = step, loader.state_dict()
        state.interval_loss = all_reduce_sum(interval_loss.clone(), world_size).item()  # collective
        state.tokens_seen = int(tokens_seen.item())
        state.elapsed_s = time.perf_counter() - started

    def evaluate(step: int) -> dict[str, float]:
        with autocast:
            scores = evaluate_accuracy(model, eval_rows, data_cfg, cfg.prompt, batch_size=cfg.eval_batch_size,
                                       device=device, rank=rank, world_size=world_size)
            extra = analysis_metrics(model, run, eval_rows, device) if rank == 0 else {}
        sync_state(step)
        loss_sum = state.interval_loss
        n_eval = int(scores.pop("n"))
        return {"step": step, "seqs_seen": step * cfg.batch_size, "tokens_seen": state.tokens_seen,
                "train_loss": loss_sum / state.interval_steps if state.interval_steps else math.nan,
                **scores, **extra, "lr": optimizer.param_groups[0]["lr"], "n_eval": n_eval,
                "elapsed_s": state.elapsed_s}

    def record(row: dict[str, float]) -> None:
        state.metrics.append(row)
        interval_loss.zero_()
        state.interval_steps = 0
        if rank == 0:
            write_metrics(run.out, state.metrics)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['answer_acc']:.3f}")
            bar.write(f"step {row['step']:>7} | train_loss {row['train_loss']:.4f} | eval_loss "
                      f"{row['eval_loss']:.4f} | answer_acc {row['answer_acc']:.4f} | majority "
                      f"{row['majority_baseline']:.4f} | {row['elapsed_s']:.1f}s")

    bar = tqdm(total=run.steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True,
               disable=None if rank == 0 else True)
    if state.step == 0:
        record(evaluate(0))
    for step in range(state.step + 1, run.steps + 1):
        loss, ce_sum, counts = step_loss(step_model, loader.next_batch(), world_size, device, autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        interval_loss += ce_sum.detach().double() / counts[0]
        tokens_seen += counts[1]
        state.interval_steps += 1
        bar.update(1)
        if not bar.disable and step % 50 == 0:  # rank 0's share of the interval's mean loss
            bar.set_postfix(loss=f"{interval_loss.item() * world_size / state.interval_steps:.4f}",
                            acc=f"{state.metrics[-1]['answer_acc']:.3f}")

        if step % cfg.eval_every == 0 or step == run.steps:
            record(evaluate(step))
        if step % cfg.checkpoint_every == 0 and step < run.steps:
            sync_state(step)
            save_checkpoint(run.out, model, optimizer, state, rank, world_size, device)
    bar.close()

    if rank == 0:
        save_hf(model, run.out / "final")
        shutil.rmtree(run.out / "checkpoints", ignore_errors=True)
        tokens_per_s = state.tokens_seen / max(state.elapsed_s, 1e-9)
        print0(rank, f"done: {run.steps} steps, {state.tokens_seen:,} tokens in {state.elapsed_s:.1f}s "
                     f"({tokens_per_s:,.0f} tokens/s), model in {run.out / 'final'}")
    barrier(world_size)


def print0(rank: int, message: str) -> None:
    if rank == 0:
        print(message, flush=True)


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
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="ranks on this machine: >1 re-executes under torchrun (gloo on CPU, nccl on GPU)")


def main(args: argparse.Namespace) -> int:
    """Validate everything, then train on this process, under torchrun, or relaunch under torchrun."""
    sets = [*args.set, *([f"prompt.format={args.format}"] if args.format else [])]
    launched = "LOCAL_RANK" in os.environ  # under torchrun
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if launched else args.nproc
    if world_size < 1:
        fail("--nproc", args.nproc, "must be a positive integer")
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    run = prepare(args.data, args.eval_data, args.out, args.config, sets, world_size)
    if run.done:
        print0(rank, f"{run.out / 'final'} exists: the run is complete, nothing to do")
        return 0
    if world_size > 1 and not launched:
        forwarded = ["--data", args.data, "--eval-data", args.eval_data, "--out", args.out,
                     *(["--config", args.config] if args.config else []),
                     *[item for s in sets for item in ("--set", s)]]
        return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc-per-node={world_size}", "-m", "cotlab.train", *forwarded])
    if world_size > 1:
        if torch.cuda.is_available():  # before NCCL starts, so that each rank talks from its own GPU
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        train(run, rank, world_size, local_rank)
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
