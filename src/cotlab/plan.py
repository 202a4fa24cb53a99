"""`cotlab plan`: jobs, training tokens and estimated GPU hours (or CPU minutes) of a workflow config,
before anything runs.

    cotlab plan --config config/config.yaml --set experiments='[fig_vocab,fig_examples]' --scale reduced
    cotlab plan --scale cpu --set experiments=all --cores 2

One row per experiment, then a total in which jobs shared between experiments (the same run_id or
data_id) count once.

GPU scales use a throughput model (docs/scales.md):

    R = TF-4 training tokens/s, divided by L/4 (TF-8 R/2, TF-12 R/3), x0.8 when B*T < 8k tokens/step
    run time = n_train * T / (R * G) * 1.15 (evals, analyses) + 30 s (compile)

with T the run's sequence length and G its GPUs (DDP taken as linear). GPU hours are run time x G.
R is measured when benchmarks/gpu_check.json (written by `bash benchmarks/gpu_check.sh` on the GPU;
another path with --throughput) exists: its train_tokens_s, and then each run's `cotlab evaluate`
job is counted too, on one GPU, at its e2e_evaluate_prompt_tokens_s (TF-4, divided by L/4 like R).
Without that file R is assumed, 344k tokens/s (the prototype's, bf16 compiled on one H100), and
evaluate jobs are not priced; the output says which. The workflow takes twice the training
estimate as the SLURM time limit of a training job.

A CPU scale (`cpu`) carries its own measured job speeds (`cpu_throughput` in config/scales.yaml,
written by benchmarks/bench_cpu_scale.py): generate and coverage sequences/s, train tokens/s per
model size (optimizer steps alone) and evaluate prompt tokens/s, which also prices the evaluations
during training. A card's CPU minutes are the seconds of all its single-thread jobs divided by the
cores they share, a lower bound of the wall time that the last, longest job can stretch. Scales with neither (smoke) count neither hours nor minutes.
"""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotlab.config import ConfigError, fail, merge, read_json
from cotlab.card_schema import CpuThroughput
from cotlab.cards import ProbeJob, Run
from cotlab.formats import FORMATS, evaluated_formats
from cotlab.jobs import Jobs, coverage_sizes, workflow_config, workflow_jobs
from cotlab.yamlio import parse_sets, read_yaml

TF4_TOKENS_PER_S = 344_000.0
SMALL_STEP_TOKENS = 8_192   # below this many tokens per step the GPU is under-used
SMALL_STEP_FACTOR = 0.8
OVERHEAD_FACTOR = 1.15      # in-loop evals and analyses
STARTUP_S = 30.0            # torch.compile
DEFAULT_THROUGHPUT = "benchmarks/gpu_check.json"


@dataclass(frozen=True)
class GpuThroughput:
    """Measured TF-4 speeds on one GPU (`bash benchmarks/gpu_check.sh`): training tokens/s and
    `cotlab evaluate` prompt tokens/s, with where and when they were measured."""

    train_tokens_s: float
    evaluate_tokens_s: float
    device: str
    date: str
    path: str


def read_gpu_throughput(path: str | Path) -> GpuThroughput:
    """The figures of a gpu_check.json, or a one-line ConfigError naming what is missing or wrong."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("mode") != "gpu":
        fail(f"{path}: mode", data.get("mode") if isinstance(data, dict) else data,
             "must be gpu (a file written by `bash benchmarks/gpu_check.sh` on a GPU, not --cpu-smoke)")
    failed = data.get("failed") or []  # sections that failed or overran: some of their figures are null
    rerun = (f" (sections that failed: {', '.join(map(str, failed))}; rerun `bash benchmarks/gpu_check.sh`)"
             if failed else "")
    size = (data.get("train_model") or {}).get("size")
    if size != "tf4":
        fail(f"{path}: train_model.size", size, "must be tf4 (the throughput model scales TF-4's speed)" + rerun)
    figures = data.get("figures") if isinstance(data.get("figures"), dict) else {}
    for key in ("train_tokens_s", "e2e_evaluate_prompt_tokens_s"):
        value = figures.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            fail(f"{path}: figures.{key}", value, "must be a positive number" + rerun)
    return GpuThroughput(float(figures["train_tokens_s"]), float(figures["e2e_evaluate_prompt_tokens_s"]),
                         str(data.get("device", "?")), str(data.get("date", "?")), str(path))


def format_length(data: dict[str, Any], fmt: str) -> int:
    """T of a data point's sequences in one format (`cotlab.formats`; an upper bound for the mixed one),
    at the mean of each shape field's choices when they are drawn per sequence."""
    mean = {name: statistics.fmean(value) if isinstance(value, list) else value  # choices: uniform draws
            for name, value in data.items() if name in ("n_examples", "n_inputs", "chain_length")}
    return math.ceil(FORMATS[fmt].sequence_length(mean["n_examples"], mean["n_inputs"], mean["chain_length"]))


def sequence_length(run: Run) -> int:
    """T of a run's training sequences."""
    return format_length(run.data.data, run.format)


def eval_prompt_tokens(data: dict[str, Any], n_eval: int) -> int:
    """Prompt tokens `cotlab evaluate` scores on a data point: n_eval sequences in each evaluated format
    (the unit of a CPU scale's measured evaluate speed, benchmarks/bench_cpu_scale.py)."""
    return n_eval * sum(format_length(data, f) for f in evaluated_formats(bool(data.get("special_tokens"))))


def tokens(run: Run) -> int:
    """Training tokens of a run: n_train sequences of T tokens."""
    return run.train["n_train"] * sequence_length(run)


def in_training_eval_tokens(run: Run) -> int:
    """Prompt tokens of a run's evaluations during training: n_eval sequences in its own format at
    step 0, every eval_every steps and the last step."""
    steps = run.train["n_train"] // run.train["batch_size"]
    every = run.train["eval_every"]
    return (steps // every + 1 + (steps % every != 0)) * run.train["n_eval"] * sequence_length(run)


def cpu_train_seconds(run: Run, speed: CpuThroughput) -> float:
    """One training run as a single-thread CPU job: its steps and its evaluations during training."""
    size = run.train["model"]
    return tokens(run) / speed.train[size] + in_training_eval_tokens(run) / speed.evaluate[size]


def probe_prompt_tokens(job: ProbeJob, run: Run) -> int:
    """Prompt tokens a probe scores: its eval rows (as many as the run's evaluation) at every point of
    its grid, in its format (or each default one). Sampling's extra decoding steps are not counted."""
    points = math.prod(len(values) for values in job.grid.values())
    data = job.data.data
    formats = [job.format] if job.format else evaluated_formats(bool(data.get("special_tokens")))
    return min(run.train["n_eval"], job.data.n_eval) * points * sum(format_length(data, f) for f in formats)


def cpu_job_seconds(jobs: Jobs, run_ids: set[str], splits: set[tuple[str, str, int]],
                    coverage: set[tuple[str, int]], probes: set[tuple[str, str]]) -> float:
    """Single-thread seconds of a set of runs (train, evaluate), dataset splits (generate), coverage
    jobs (every prefix size they measure) and probes at the scale's measured CPU throughput."""
    speed = jobs.cpu_throughput
    runs = [jobs.runs[r] for r in run_ids]
    return (sum(n_rows for _, _, n_rows in splits) / speed.generate
            + sum(sum(coverage_sizes(n_rows)) for _, n_rows in coverage) / speed.coverage
            + sum(cpu_train_seconds(r, speed) + eval_prompt_tokens(r.data.data, r.train["n_eval"]) / speed.evaluate[r.train["model"]]
                  for r in runs)
            + sum(probe_prompt_tokens(jobs.probes[k], jobs.runs[k[0]]) / speed.evaluate[jobs.runs[k[0]].train["model"]]
                  for k in probes))


def depth_factor(run: Run) -> float:
    """L/4: how many times slower than TF-4 a run's model is (card names tf4/tf8/tf12 carry the depth)."""
    return int(run.model.removeprefix("tf")) / 4


def train_seconds(run: Run, gpus: int, cpu: CpuThroughput | None = None, gpu: GpuThroughput | None = None) -> float:
    """Estimated wall time of one training run: on one CPU thread at the measured `cpu` speeds when
    it has no GPU and they are given, else on `gpus` GPUs (1 if 0: the model is a GPU model) at the
    measured `gpu` speed, or the assumed H100 one when none is given."""
    if gpus == 0 and cpu is not None:
        return cpu_train_seconds(run, cpu)
    rate = (TF4_TOKENS_PER_S if gpu is None else gpu.train_tokens_s) / depth_factor(run)
    if run.train["batch_size"] * sequence_length(run) < SMALL_STEP_TOKENS:
        rate *= SMALL_STEP_FACTOR
    return tokens(run) / (rate * max(gpus, 1)) * OVERHEAD_FACTOR + STARTUP_S


def gpu_evaluate_seconds(run: Run, gpu: GpuThroughput, prompt_tokens: int | None = None) -> float:
    """Wall time of a run's `cotlab evaluate` job (or of a probe scoring `prompt_tokens`) on one GPU
    at the measured speed."""
    if prompt_tokens is None:
        prompt_tokens = eval_prompt_tokens(run.data.data, run.train["n_eval"])
    return prompt_tokens / (gpu.evaluate_tokens_s / depth_factor(run))


def plan_table(experiments: list[str], scale: str, config_dir: str = "config", train_gpus: int | None = None,
               seeds: int | None = None, cores: int = 2, gpu: GpuThroughput | None = None
               ) -> tuple[list[dict[str, Any]], int]:
    """Rows (experiment, generate, train, evaluate, coverage, aggregate, train_tokens, gpu_hours, and
    cpu_minutes on `cores` cores for a CPU scale that has measured throughput, else None), the last
    one 'total', and the GPUs per training run (`train_gpus`, or the scale's when None). GPU hours
    come from the measured `gpu` speeds (evaluate jobs included) when given, else the assumed ones."""
    jobs = workflow_jobs(experiments, scale, config_dir, seeds=seeds)
    gpus = jobs.resources["train"].gpus if train_gpus is None else train_gpus
    on_cpu = gpus == 0 and jobs.cpu_throughput is not None
    if on_cpu:
        measured = set(jobs.cpu_throughput.train) & set(jobs.cpu_throughput.evaluate)
        for run in jobs.runs.values():
            if run.train["model"] not in measured:
                raise ConfigError(f"scales.{scale}.cpu_throughput: no measured speed for model "
                                  f"{run.train['model']!r} (run {run.run_id}); measured: {', '.join(sorted(measured))}")

    def row(name: str, run_ids: set[str], splits: set, coverage: set, probes: set, aggregates: int) -> dict[str, Any]:
        runs = [jobs.runs[r] for r in sorted(run_ids)]
        gpu_seconds = sum(train_seconds(r, gpus, gpu=gpu) * gpus for r in runs)
        if gpu is not None and gpus:  # evaluate and probe jobs, one GPU each
            gpu_seconds += sum(gpu_evaluate_seconds(r, gpu) for r in runs)
            gpu_seconds += sum(gpu_evaluate_seconds(jobs.runs[k[0]], gpu, probe_prompt_tokens(jobs.probes[k], jobs.runs[k[0]]))
                               for k in probes)
        return {"experiment": name, "generate": len(splits), "train": len(runs), "evaluate": len(runs),
                "probe": len(probes), "coverage": len(coverage), "aggregate": aggregates,
                "train_tokens": sum(tokens(r) for r in runs), "gpu_hours": gpu_seconds / 3600,
                "cpu_minutes": cpu_job_seconds(jobs, run_ids, splits, coverage, probes) / cores / 60 if on_cpu else None}

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
        probes = set(jobs.probes_of[exp_id])
        splits |= {(p.data.data_id, "eval", p.data.n_eval) for p in (jobs.probes[k] for k in probes)}
        rows.append(row(exp_id, run_ids, splits, coverage, probes, 1))
    rows.append(row("total", set(jobs.runs), jobs.splits, jobs.coverage, set(jobs.probes), len(experiments)))
    return rows, gpus


def format_table(rows: list[dict[str, Any]], cores: int = 2) -> str:
    """A plain-text table; tokens in millions, GPU hours to two decimals or CPU minutes to one."""
    on_cpu = rows[-1]["cpu_minutes"] is not None
    header = ["experiment", "generate", "train", "evaluate", "probe", "coverage", "aggregate", "tokens (M)",
              f"CPU min ({cores} cores)" if on_cpu else "GPU h"]
    body = [[r["experiment"], *(str(r[k]) for k in ("generate", "train", "evaluate", "probe", "coverage", "aggregate")),
             f"{r['train_tokens'] / 1e6:,.1f}", f"{r['cpu_minutes']:.1f}" if on_cpu else f"{r['gpu_hours']:.2f}"]
            for r in rows]
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
    parser.add_argument("--throughput", metavar="JSON",
                        help=f"measured GPU figures of `bash benchmarks/gpu_check.sh` (default: {DEFAULT_THROUGHPUT} "
                             "if it exists, else the assumed throughput model)")
    parser.add_argument("--cores", type=int, default=2,
                        help="CPU cores the jobs of a CPU scale share, for its minutes (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    values = merge(read_yaml(args.config), parse_sets(args.set))
    if args.scale is not None:
        values["scale"] = args.scale
    if args.cores < 1:
        raise ConfigError(f"--cores={args.cores}: must be a positive integer")
    if args.throughput is not None and not Path(args.throughput).is_file():
        fail("--throughput", args.throughput, "must be an existing file (write it with `bash benchmarks/gpu_check.sh`)")
    path = args.throughput or (DEFAULT_THROUGHPUT if Path(DEFAULT_THROUGHPUT).is_file() else None)
    gpu = None if path is None else read_gpu_throughput(path)
    cfg = workflow_config(values, args.config_dir)
    rows, gpus = plan_table(cfg.experiments, cfg.scale, args.config_dir, cfg.train_gpus, cfg.seeds, args.cores, gpu)
    where = f"{gpus} GPU(s) per training run" if gpus else "CPU (no GPU hours)"
    print(f"scale {cfg.scale}: {where}; shared jobs count once in the total")
    print(format_table(rows, args.cores))
    if gpus and gpu is not None:
        print(f"GPU hours: measured throughput ({gpu.path}, {gpu.device}, {gpu.date}): TF-4 trains at "
              f"{gpu.train_tokens_s:,.0f} tokens/s, evaluates at {gpu.evaluate_tokens_s:,.0f} prompt tokens/s; "
              "training and evaluate jobs counted")
    elif gpus:
        print(f"GPU hours: assumed throughput (no {DEFAULT_THROUGHPUT}): TF-4 trains at {TF4_TOKENS_PER_S:,.0f} "
              "tokens/s on one H100 (docs/scales.md); training jobs only, evaluate jobs not counted; "
              "measure with `bash benchmarks/gpu_check.sh`")
    if rows[-1]["cpu_minutes"] is not None:
        print(f"CPU minutes: every job's single-thread seconds at the scale's measured throughput, over {args.cores} "
              "cores (a lower bound of the wall time; docs/scales.md)")
    elif not gpus:
        print("this scale has no measured CPU throughput, and the GPU throughput model does not apply to it")
    return 0

