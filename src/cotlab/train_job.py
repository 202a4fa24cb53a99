"""A training job checked before any work: configs, datasets and the run directory (`cotlab train`).

`prepare` turns the command line into a `TrainJob` or raises a one-line ConfigError naming the
first bad input, so that a bad run writes nothing. A rerun into an existing run directory must
resolve to the same config.json (up to settings that change no result), so that it resumes.
Given `--data-id`, both splits must carry that data_id in their manifests: the workflow names the
dataset it planned, and a path that now holds another one must not train silently.
"""

from __future__ import annotations

import importlib.util

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cotlab.config import ConfigError, fail, read_json
from cotlab.data.store import Dataset, open_dataset
from cotlab.model_config import ModelConfig, model_config
from cotlab.train_config import TrainConfig
from cotlab.yamlio import load


@dataclass
class TrainJob:
    """A validated training job: everything `train` needs, checked before anything is written."""

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
        """final/ and config.json both exist: final/ alone may be a copy or a leftover, not this run's
        result (config.json is what ties a run directory to its settings)."""
        return (self.out / "final").is_dir() and (self.out / "config.json").is_file()


def check_data_id(option: str, path: str, dataset: Dataset, expected: str | None) -> None:
    """Refuse `dataset` unless its manifest carries data_id `expected` (no check when None)."""
    found = dataset.manifest.get("data_id")
    if expected is not None and found != expected:
        fail(option, path, f"holds data_id {found!r}, but --data-id is {expected!r}")


def prepare(data: str, eval_data: str, out: str, config: str | None, sets: list[str],
            world_size: int, data_id: str | None = None) -> TrainJob:
    """Load and cross-check every input; raise a one-line ConfigError on the first problem."""
    cfg = load(TrainConfig, config, sets)
    if cfg.logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        fail("logger", cfg.logger, "needs the tensorboard package: pip install -e '.[tensorboard]'")
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device_type == "cuda" else "fp32")

    train_data, evals = open_dataset(data), open_dataset(eval_data)
    if train_data.split != "train":
        fail("--data", data, f"must be a train split (this one is {train_data.split!r})")
    if evals.split != "eval":
        fail("--eval-data", eval_data, f"must be an eval split (this one is {evals.split!r})")
    check_data_id("--data", data, train_data, data_id)
    check_data_id("--eval-data", eval_data, evals, data_id)
    data_cfg = train_data.config
    theirs = evals.config.to_dict()
    for key, value in data_cfg.to_dict().items():
        if key != "n_sequences" and theirs[key] != value:
            fail("--eval-data", eval_data, f"must hold the same data point as --data ({key} is "
                 f"{theirs[key]!r} there, {value!r} in --data)")
    cfg.check_data(data_cfg)

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
        previous = read_json(saved)
        if not isinstance(previous, dict) or not isinstance(previous.get("train"), dict):
            raise ConfigError(f"{saved}: has no train section (not written by `cotlab train`)")
        mismatch = first_difference(*(without_neutral(c) for c in (previous, resolved)))
        if mismatch:
            key, there, here = mismatch
            raise ConfigError(f"--out {out}: its config.json has {key}={there!r} but this run has "
                              f"{here!r}; use another --out or delete the old run")
    return TrainJob(cfg, model_cfg, train_data, evals, out_dir, n_train // cfg.batch_size, n_eval,
                    precision, resolved)


# Settings a rerun may change without changing any result (Snakemake caps threads at --cores; the
# collective timeout only decides how long a stalled rank may hold the job; the logger only copies;
# checkpoints resume bit-identically whenever they were written).
RESULT_NEUTRAL = ("threads", "eval_batch_size", "collective_timeout_s", "logger", "checkpoint_every",
                  "checkpoint_interval_s")


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
