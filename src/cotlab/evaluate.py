"""`cotlab evaluate`: score a trained model with and without CoT, plus the model analyses.

    cotlab evaluate RUN_DIR --eval-data DIR --out FILE.parquet [--n N] [--batch-size B]
                    [--device auto|cpu|cuda] [--n-attn A] [--formats F,F] [--set KEY=VALUE]...
                    [--grid KEY=V1,V2,...]... [--seed S] [--ood] [--data-id ID]

Reads RUN_DIR/final (the model) and RUN_DIR/config.json (the trained prompt format and precision)
and scores the first N rows of the eval split with the KV cache, greedy unless the grid asks for
sampling (docs/evaluation.md). The data must be an eval split (train rows would score
memorisation) of the run's data point, or with `--ood` one that differs from it in the shape fields
(n_inputs, n_parents, chain_length, n_examples) only, and, given `--data-id`, carry that data_id in
its manifest (the one the workflow planned).

`--grid KEY=V1,V2,...` (repeatable; keys drop_k, drop_strategy, force, temperature, n_samples,
max_new_tokens; `none` = null) crosses its values: every scored format is scored at every point of
the product (the workflow's probes). `--set` applies to every point; `--seed` seeds the sampling.
Every point is checked against the data before any work.

- paper 1: **with CoT** = `cot` prompts (K-1 CoT demonstrations, the model generates y_1..y_C and
  y_C is scored) and **without CoT** = `standard` prompts (one token). The trained format is the
  paper's number; the other one is flagged `cross_format=True` (docs/evaluation.md ("With CoT and
  without CoT")).
- paper 2 (special tokens): `cot_special_token` forced to think (⟨ts⟩ appended) and
  `standard_special_token` forced to answer (⟨as⟩ appended); cross-format when the model was
  trained in the other pure format (a hybrid model has none).

FILE.parquet holds one row per scored format and grid point: the point's options (drop_k,
drop_strategy, force, temperature, n_samples, max_new_tokens = the budget decoded), answer_acc,
format_acc, answer_acc_offline, format_acc_offline, length_p10/p50/p90 (special-token formats),
chain_acc_i (unconditional),
chain_cond_acc_i (position i given every earlier position right), chain_loss_i, eval_loss,
majority_baseline, a 95% Wilson interval `<metric>_lo` / `<metric>_hi` for every accuracy, n.
Beside it: FILE stem + `.analysis.parquet` (embedding similarity and attention-to-parent precision
of the final model, one row) and `.attention.npz` (the query attention maps for fig_attention).
All three are written atomically.
"""

from __future__ import annotations

import argparse
import itertools
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cotlab.analysis.model_analysis import analyse_model
from cotlab.analysis.similarity import chance_similarity
from cotlab.analysis.tables import wilson_interval
from cotlab.atomic import check_creatable, write_atomic
from cotlab.checkpoint import load_hf
from cotlab.card_schema import PROBE_OPTIONS
from cotlab.config import SHAPE_FIELDS, ConfigError, DataConfig, build, fail, other_tasks, read_json, short
from cotlab.data.store import open_dataset
from cotlab.formats import FORMATS, DecodeConfig, PromptConfig, evaluated_formats, max_new_tokens
from cotlab.layout import eval_companions
from cotlab.prompts_export import eval_prompt_config
from cotlab.train_job import check_data_id
from cotlab.metrics import reduce_scores, score_rows
from cotlab.precision import set_precision
from cotlab.yamlio import parse_sets

ACCURACY_METRICS = ("answer_acc", "majority_baseline", "global_majority_baseline", "format_acc",
                    "answer_acc_offline", "format_acc_offline")
PROMPT_OPTIONS = ("drop_k", "drop_strategy", "force")
"""The grid keys that edit the prompt; the other PROBE_OPTIONS are DecodeConfig's."""


def conditional_accuracy(chain: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy at column i among rows whose earlier chain columns are all right.

    chain, present: (n, P) bool -> (acc (P,) float64 with NaN where no row qualifies,
    count (P,) int64 rows that qualify). Column 0 is the unconditional accuracy.
    """
    ok = chain | ~present  # a column a row does not have cannot be wrong
    earlier_ok = np.ones_like(ok)
    earlier_ok[:, 1:] = np.cumprod(ok[:, :-1], axis=1).astype(bool)  # (n, P)
    eligible = present & earlier_ok
    count = eligible.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, (chain & eligible).sum(axis=0) / count, np.nan)
    return acc, count


def with_intervals(metrics: dict[str, float], n_chain: np.ndarray) -> dict[str, float]:
    """Add `<m>_lo`, `<m>_hi` (95% Wilson) next to every accuracy in `metrics`."""
    out = dict(metrics)
    n = int(metrics["n"])
    for name, value in metrics.items():
        if name in ACCURACY_METRICS:
            count = n
        elif name.startswith("chain_acc_"):
            count = int(n_chain[int(name.rsplit("_", 1)[1])])
        else:
            continue
        lo, hi = wilson_interval(value * count, count) if value == value else (float("nan"),) * 2
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    return out


def evaluate_format(model: torch.nn.Module, rows, data_cfg: DataConfig, prompt_cfg: PromptConfig, *,
                    batch_size: int, device: torch.device | str,
                    decode: DecodeConfig = DecodeConfig()) -> dict[str, float]:
    """All metrics of one format from a single decoding pass: the trainer's (`cotlab.metrics`),
    conditional chain accuracies and intervals."""
    scores = score_rows(model, rows, data_cfg, prompt_cfg, batch_size=batch_size, device=device, decode=decode)
    out = with_intervals(reduce_scores(scores, data_cfg, prompt_cfg), scores.present.sum(axis=0))
    cond, count = conditional_accuracy(scores.chain, scores.present)
    for i, (acc, k) in enumerate(zip(cond, count)):
        out[f"chain_cond_acc_{i}"] = float(acc)
        out[f"chain_cond_acc_{i}_lo"], out[f"chain_cond_acc_{i}_hi"] = wilson_interval(acc * k, int(k))
        out[f"chain_cond_n_{i}"] = int(k)
    return out


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`--grid KEY=V1,V2,...` items -> {key: values}: `none` is None, numbers are int or float."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in PROBE_OPTIONS:
            fail("grid", item, f"must look like KEY=V1,V2,... with KEY one of {', '.join(PROBE_OPTIONS)}")
        if key in grid:
            fail("grid", item, f"gives {key} a second time (list every value in one --grid)")
        texts = raw.split(",")
        if "" in texts or len(set(texts)) != len(texts):
            fail("grid", item, "needs comma-separated values, each once")
        grid[key] = [grid_value(text) for text in texts]
    return grid


def grid_value(text: str) -> Any:
    if text == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def scored_formats(trained: str, data_cfg: DataConfig, overrides: dict[str, Any],
                   formats: list[str] | None) -> list[tuple[PromptConfig, bool]]:
    """(prompt config, cross_format) per format to score: with CoT first, then without."""
    if formats is None:
        formats = evaluated_formats(data_cfg.special_tokens)
    out = []
    for fmt in formats:
        prompt_cfg = eval_prompt_config(fmt, data_cfg, overrides)  # shared with `cotlab prompts`
        # A mixed-format (hybrid) model has no cross format: it was trained on both forms.
        cross = not FORMATS[trained].mixed and fmt != trained
        out.append((prompt_cfg, cross))
    return out


def scored_points(trained: str, data_cfg: DataConfig, overrides: dict[str, Any], formats: list[str] | None,
                  grid: dict[str, list[Any]], seed: int) -> list[tuple[PromptConfig, DecodeConfig, bool]]:
    """(prompt config, decoding config, cross_format) at every point of the grid's product (the last
    key fastest), each point for every scored format (`scored_formats`). Every point is checked
    against the data (one-line ConfigError)."""
    out = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        prompt_point = {key: value for key, value in point.items() if key in PROMPT_OPTIONS}
        decode = build(DecodeConfig, {**{k: v for k, v in point.items() if k not in PROMPT_OPTIONS}, "seed": seed})
        for prompt_cfg, cross in scored_formats(trained, data_cfg, {**overrides, **prompt_point}, formats):
            decode.check(data_cfg, prompt_cfg)
            out.append((prompt_cfg, decode, cross))
    return out


def check_eval_data(run_cfg: dict[str, Any], data_cfg: DataConfig, path: str, ood: bool) -> None:
    """The eval data must be the run's eval data point (any size: prefix stability); with `ood` it may
    differ in the shape fields too (same E, H and seeds: the workflow's probes)."""
    here = data_cfg.to_dict()
    there = run_cfg.get("eval_data", here)
    free = ("n_sequences", *SHAPE_FIELDS) if ood else ("n_sequences",)
    differing = {key: value for key, value in there.items() if key not in free and here.get(key) != value}
    if differing:
        allowed = (f"may differ from the run's eval split only in {', '.join(SHAPE_FIELDS)}" if ood else
                   f"is another data point than the run's eval split (--ood allows other {', '.join(SHAPE_FIELDS)})")
        fail("eval-data", path, f"{allowed}; the run's has {differing}")
    problem = other_tasks(build(DataConfig, there), data_cfg) if ood else None
    if problem:
        fail("eval-data", path, f"has other shapes than the run's eval split, but {problem}")


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR/config.json (written by `cotlab train`): {"train": TrainConfig values, "precision", ...}."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"run_dir={str(run_dir)!r}: {path.name} not found (not a cotlab run directory)")
    config = read_json(path)
    train = config.get("train") if isinstance(config, dict) else None
    prompt = train.get("prompt") if isinstance(train, dict) else None
    if not isinstance(prompt, dict) or not isinstance(prompt.get("format"), str):
        raise ConfigError(f"{path}: has no train.prompt.format (not written by `cotlab train`)")
    return config


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        fail("device", name, "must be auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        fail("device", name, "CUDA is not available on this machine (use auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished `cotlab train` directory (holds final/ and config.json)")
    parser.add_argument("--eval-data", required=True, help="the eval split directory (`cotlab generate --split eval`)")
    parser.add_argument("--out", required=True, help="FILE.parquet; FILE.analysis.parquet and "
                        "FILE.attention.npz are written beside it")
    parser.add_argument("--n", type=int, default=None, help="score the first N eval rows (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per decoding batch")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    parser.add_argument("--n-attn", type=int, default=256, help="eval rows for the attention analysis")
    parser.add_argument("--formats", default=None,
                        help="comma-separated formats to score (default: cot,standard or, with special "
                             "tokens, cot_special_token,standard_special_token)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="prompt option for every scored format (drop_k, drop_strategy, force, offset)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="score every format at every point of the product of these values (keys: "
                             f"{', '.join(PROBE_OPTIONS)}; none = null)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling (grid temperature > 0)")
    parser.add_argument("--ood", action="store_true",
                        help="accept eval data whose shape fields (n_inputs, n_parents, chain_length, "
                             "n_examples) differ from the run's")
    parser.add_argument("--data-id", metavar="ID",
                        help="refuse --eval-data unless its manifest has this data_id (the workflow's)")


def main(args: argparse.Namespace) -> int:
    run_dir, out = Path(args.run_dir), Path(args.out)
    for name in ("n", "n_attn"):
        value = getattr(args, name)
        if value is not None and value < 0:
            fail(name.replace("_", "-"), value, "must be >= 0")
    if args.batch_size <= 0:
        fail("batch-size", args.batch_size, "must be a positive integer")
    if out.suffix != ".parquet":
        fail("out", str(out), "must end in .parquet")
    check_creatable(f"out={short(str(out))}", out)
    device = resolve_device(args.device)
    run_cfg = read_run_config(run_dir)
    trained, offset = run_cfg["train"]["prompt"]["format"], run_cfg["train"]["prompt"].get("offset", 0)
    overrides = {"offset": offset, **parse_sets(args.sets)}  # ids live where training put them
    grid = parse_grid(args.grid)
    both = [key for key in grid if key in overrides]
    if both:
        fail("grid", both[0], "is also given by --set (give it in one place)")
    formats = None if args.formats is None else [f.strip() for f in args.formats.split(",") if f.strip()]
    if formats == []:
        fail("formats", args.formats, f"must name at least one format ({', '.join(FORMATS)})")
    dataset = open_dataset(args.eval_data)
    if dataset.split != "eval":
        fail("eval-data", args.eval_data, f"must be an eval split (this one is {dataset.split!r})")
    check_data_id("eval-data", args.eval_data, dataset, args.data_id)
    data_cfg = dataset.config
    check_eval_data(run_cfg, data_cfg, args.eval_data, args.ood)
    plan = scored_points(trained, data_cfg, overrides, formats, grid, args.seed)  # validates before work

    model = load_hf(run_dir / "final", device=device).eval()
    if model.cfg.vocab_size != data_cfg.vocab_size + offset:
        fail("eval-data", args.eval_data, f"has vocab_size={data_cfg.vocab_size} (+ offset {offset}), "
             f"the model {model.cfg.vocab_size}")
    n = dataset.n_rows if args.n is None else min(args.n, dataset.n_rows)
    if n == 0:
        fail("n", args.n, "must select at least one eval row")
    rows = dataset.read(0, n)
    # The training precision on GPU (bf16 autocast by default); exact fp32 on CPU, where bf16 is slow.
    autocast = set_precision(run_cfg.get("precision", "fp32")) if device.type == "cuda" else nullcontext()

    run_id = run_dir.name
    records = []
    with autocast:
        for prompt_cfg, decode, cross in plan:
            metrics = evaluate_format(model, rows, data_cfg, prompt_cfg, batch_size=args.batch_size, device=device,
                                      decode=decode)
            options = {"force": prompt_cfg.force or "", "drop_k": prompt_cfg.drop_k,
                       "drop_strategy": prompt_cfg.drop_strategy, "temperature": decode.temperature,
                       "n_samples": decode.n_samples,
                       "max_new_tokens": max_new_tokens(data_cfg, prompt_cfg, decode.max_new_tokens)}
            records.append({"run_id": run_id, "trained_format": trained, "format": prompt_cfg.format, **options,
                            "with_cot": prompt_cfg.spec.with_cot, "cross_format": cross, **metrics})
            point = " ".join(f"{key}={value}" for key, value in options.items())
            print(f"{run_id} {prompt_cfg.format}{' (cross-format)' if cross else ''} [{point}]: answer_acc "
                  f"{metrics['answer_acc']:.4f} [{metrics['answer_acc_lo']:.4f}, {metrics['answer_acc_hi']:.4f}]"
                  f" majority {metrics['majority_baseline']:.4f} n={int(metrics['n'])}")
        model_row, arrays = analyse_model(model, dataset.embedding, rows, data_cfg, trained, offset=offset,
                                          n_attn=min(args.n_attn, n), batch_size=args.batch_size, device=device)
    analysis = {"run_id": run_id, "trained_format": trained, "embed_sim": model_row.pop("embed_sim"),
                "embed_sim_chance": chance_similarity(data_cfg.vocab_size, data_cfg.n_dims), **model_row,
                "n_attn": len(arrays["maps"])}

    files = eval_companions(out)
    write_atomic(files["scores"], lambda tmp: pd.DataFrame(records).to_parquet(tmp, index=False))
    write_atomic(files["analysis"], lambda tmp: pd.DataFrame([analysis]).to_parquet(tmp, index=False))

    def save_npz(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file handle: np.savez would append .npz to a name
            np.savez(handle, **arrays)

    write_atomic(files["attention"], save_npz)
    return 0
