"""`cotlab plan`: jobs, training tokens and estimated GPU hours of a workflow config, before anything runs.

    cotlab plan --config config/config.yaml --set experiments='[fig_vocab,fig_examples]' --scale reduced

One row per experiment, then a total in which jobs shared between experiments (the same run_id or
data_id) count once. The estimate is the throughput model of experiments.md §5.1, measured on one
H100 (bf16, compiled):

    R = 344k tokens/s for TF-4, divided by L/4 (TF-8 172k, TF-12 115k), x0.8 when B*T < 8k tokens/step
    run time = n_train * T / (R * G) * 1.15 (evals, analyses) + 30 s (compile)

with T the run's sequence length and G its GPUs (DDP taken as linear). GPU hours are run time x G.
Smoke runs use tiny models on the CPU, where the model does not apply: they count no GPU hours.
The workflow takes twice this estimate as the SLURM time limit of a training job.
"""

from __future__ import annotations

import argparse
from typing import Any

from cotlab.config import merge
from cotlab.cards import Run
from cotlab.formats import FORMATS
from cotlab.jobs import workflow_config, workflow_jobs
from cotlab.yamlio import parse_sets, read_yaml

TF4_TOKENS_PER_S = 344_000.0
SMALL_STEP_TOKENS = 8_192   # below this many tokens per step the GPU is under-used
SMALL_STEP_FACTOR = 0.8
OVERHEAD_FACTOR = 1.15      # in-loop evals and analyses
STARTUP_S = 30.0            # torch.compile


def sequence_length(run: Run) -> int:
    """T of a run's training sequences (`cotlab.formats`; an upper bound for the mixed format)."""
    data = run.data.data
    return FORMATS[run.format].sequence_length(data["n_examples"], data["n_inputs"], data["chain_length"])


def tokens(run: Run) -> int:
    """Training tokens of a run: n_train sequences of T tokens."""
    return run.train["n_train"] * sequence_length(run)


def train_seconds(run: Run, gpus: int) -> float:
    """Estimated wall time of one training run on `gpus` H100s (1 if 0: the model is a GPU model)."""
    layers = int(run.model.removeprefix("tf"))  # card names tf4/tf8/tf12 carry the paper depth
    rate = TF4_TOKENS_PER_S / (layers / 4)
    if run.train["batch_size"] * sequence_length(run) < SMALL_STEP_TOKENS:
        rate *= SMALL_STEP_FACTOR
    return tokens(run) / (rate * max(gpus, 1)) * OVERHEAD_FACTOR + STARTUP_S


def plan_table(experiments: list[str], scale: str, config_dir: str = "config",
               train_gpus: int | None = None, seeds: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """Rows (experiment, generate, train, evaluate, coverage, aggregate, train_tokens, gpu_hours), the last
    one 'total', and the GPUs per training run (`train_gpus`, or the scale's when None)."""
    jobs = workflow_jobs(experiments, scale, config_dir, seeds=seeds)
    gpus = jobs.resources["train"].gpus if train_gpus is None else train_gpus

    def row(name: str, run_ids: set[str], splits: set, coverage: set, aggregates: int) -> dict[str, Any]:
        runs = [jobs.runs[r] for r in sorted(run_ids)]
        seconds = sum(train_seconds(r, gpus) for r in runs)
        return {"experiment": name, "generate": len(splits), "train": len(runs), "evaluate": len(runs),
                "coverage": len(coverage), "aggregate": aggregates, "train_tokens": sum(tokens(r) for r in runs),
                "gpu_hours": seconds * gpus / 3600}

    rows = []
    for exp_id in experiments:
        run_ids = set(jobs.runs_of[exp_id])
        runs = [jobs.runs[r].data for r in run_ids]
        splits = {(d.data_id, s, d.n_rows(s)) for d in runs for s in ("train", "eval")}
        kind = jobs.cards[exp_id].kind
        points = [p.data for p in jobs.points_of[exp_id]]
        if kind in ("coverage", "data"):
            splits |= {(d.data_id, "train", d.n_train) for d in points}
        coverage = {(d.data_id, d.n_train) for d in points} if kind == "coverage" else set()
        rows.append(row(exp_id, run_ids, splits, coverage, 1))
    rows.append(row("total", set(jobs.runs), jobs.splits, jobs.coverage, len(experiments)))
    return rows, gpus


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table; tokens in millions, hours to two decimals."""
    header = ["experiment", "generate", "train", "evaluate", "coverage", "aggregate", "tokens (M)", "GPU h"]
    body = [[r["experiment"], *(str(r[k]) for k in ("generate", "train", "evaluate", "coverage", "aggregate")),
             f"{r['train_tokens'] / 1e6:,.1f}", f"{r['gpu_hours']:.2f}"] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, body[:-1]), rule, fmt(body[-1])])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/config.yaml", help="workflow config (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. experiments='[fig_vocab]' (YAML value; repeatable)")
    parser.add_argument("--scale", help="shorthand for --set scale=S")
    parser.add_argument("--config-dir", default="config", help="cards and scales.yaml (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    values = merge(read_yaml(args.config), parse_sets(args.set))
    if args.scale is not None:
        values["scale"] = args.scale
    cfg = workflow_config(values, args.config_dir)
    rows, gpus = plan_table(cfg.experiments, cfg.scale, args.config_dir, cfg.train_gpus, cfg.seeds)
    where = f"{gpus} GPU(s) per training run" if gpus else "CPU (no GPU hours)"
    print(f"scale {cfg.scale}: {where}; shared jobs count once in the total")
    print(format_table(rows))
    if not gpus:
        print("smoke-sized models run on the CPU; the throughput model (experiments.md §5.1) is for GPUs")
    return 0

