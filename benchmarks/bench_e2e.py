"""End to end: `cotlab train` and `cotlab evaluate` throughput on a small config, and bf16 vs fp32 loss agreement.

One data point (cot format, N=4, M=2, C=2, K = --examples), generated once; then, in this process
(imports done, so no process start-up is counted):

- `cotlab train` in precision `auto` (bf16 on CUDA, fp32 on CPU; --compile sets `compile: true`):
  tokens/s = tokens_seen / elapsed_s of its last metrics row, the figure its "done:" line prints
  (the training loop with its evaluations and checkpoints, compile included);
- `cotlab evaluate` of that run on --n-eval rows (both formats, the attention analysis): rows/s
  and prompt tokens/s (`cotlab.plan.eval_prompt_tokens`, the unit `cotlab plan` prices evaluation
  in), wall time of the command including loading the model and data;
- the same training run in the other precision (fp32 if the first was bf16, else bf16, without
  compile), for its first --check-evals evaluation intervals (default all): the largest |difference|
  of eval_loss over the evaluations both runs record, absolute and relative to the fp32 loss.
  Within --tolerance (relative, default 2%) the two agree;
- the in-training evaluation (`evaluate_accuracy` on --n-eval-train rows, one batch) of the first
  run's final model, eager vs `torch.compile(dynamic=True)` as `compile: true` runs it: seconds per
  evaluation after one warm-up call each (the compile), best of --eval-rounds, interleaved.

The figures are written (--json) after each of these stages, so a later stage that fails or runs
out of time leaves the earlier ones; the cold compile of the last stage is the riskiest.

    python benchmarks/bench_e2e.py                                                       # CPU: smoke-tf8, V=64
    python benchmarks/bench_e2e.py --size tf4 --vocab 1024 --examples 40 --rows 16384 --batch 64 \\
        --n-eval 4096 --check-evals 2 --compile --json OUT.json                          # GPU
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from cotlab.atomic import write_atomic
from cotlab.cli import main as cotlab
from cotlab.config import DataConfig
from cotlab.checkpoint import load_hf
from cotlab.data.loader import load_rows
from cotlab.data.store import open_dataset, write_dataset
from cotlab.formats import DecodeConfig, PromptConfig
from cotlab.metrics import evaluate_accuracy
from cotlab.precision import set_precision
from cotlab.model_config import MODEL_SIZES
from cotlab.plan import eval_prompt_tokens


def train(root: Path, name: str, args: argparse.Namespace, precision: str, compile_model: bool,
          evals: int) -> pd.DataFrame:
    """One `cotlab train` run of the first `evals` evaluation intervals -> its metrics (one row per
    evaluation, at the same steps for any `evals`)."""
    eval_every = max(1, args.rows // args.batch // args.evals)
    steps = min(args.rows // args.batch, evals * eval_every)
    sets = {"model": args.size, "batch_size": args.batch, "n_train": steps * args.batch, "precision": precision,
            "compile": str(compile_model).lower(), "threads": args.threads, "n_eval": args.n_eval_train,
            "eval_every": eval_every, "checkpoint_every": steps}
    code = cotlab(["train", "--data", str(root / "train"), "--eval-data", str(root / "eval"),
                   "--out", str(root / name), "--format", "cot", *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")]])
    if code:
        raise SystemExit(f"cotlab train ({name}) failed with exit code {code}")
    return pd.read_parquet(root / name / "metrics.parquet")


def eval_seconds(run_dir: Path, eval_dir: Path, args: argparse.Namespace, precision: str
                 ) -> tuple[dict[str, float], bool]:
    """Seconds of one in-training evaluation of the run's final model, eager and compiled (best of
    rounds), and whether both scored the same answer accuracy."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_hf(run_dir / "final").to(device).eval()
    models = {"eager": model, "compiled": torch.compile(model, dynamic=True)}
    dataset = open_dataset(eval_dir)
    rows, point = load_rows(dataset, args.n_eval_train), dataset.config
    best, scores = {name: float("inf") for name in models}, {}
    with set_precision(precision):
        for round_ in range(args.eval_rounds + 1):  # round 0 warms up (compiles)
            for name, m in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                scores[name] = evaluate_accuracy(m, rows, point, PromptConfig(format="cot"),
                                                 batch_size=args.n_eval_train, device=device,
                                                 decode=DecodeConfig(max_new_tokens=point.chain_length))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if round_:
                    best[name] = min(best[name], time.perf_counter() - start)
    return best, scores["eager"]["answer_acc"] == scores["compiled"]["answer_acc"]


def run(args: argparse.Namespace, save: Callable[[dict], None]) -> dict:
    """The figures, passed to `save` after each stage as well: a later stage that fails or overruns
    (gpu_check.sh's time limit) leaves the earlier stages' figures."""
    point = DataConfig(vocab_size=args.vocab, n_inputs=4, n_parents=2, chain_length=2, n_examples=args.examples)
    on_gpu = torch.cuda.is_available()
    main_precision, other = ("bf16", "fp32") if on_gpu else ("fp32", "bf16")
    name = torch.cuda.get_device_name() if on_gpu else "cpu"
    print(f"device {name}, torch {torch.__version__}; {args.size}, V={args.vocab}, K={args.examples} "
          f"(T={args.examples * 6}), {args.rows} train rows, batch {args.batch}", flush=True)
    figures = {"device": name, "size": args.size, "vocab": args.vocab, "rows": args.rows, "batch": args.batch,
               "train_precision": main_precision, "tolerance": args.tolerance}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root / "train", point.model_copy(update={"n_sequences": args.rows}), "train")
        write_dataset(root / "eval", point.model_copy(update={"n_sequences": args.n_eval}), "eval")
        metrics = train(root, "run", args, "auto", args.compile, args.evals)
        last = metrics.iloc[-1]
        figures["train_tokens_s"] = float(last["tokens_seen"] / last["elapsed_s"])
        print(f"cotlab train ({main_precision}{', compiled' if args.compile else ''}): "
              f"{figures['train_tokens_s']:,.0f} tokens/s ({int(last['tokens_seen']):,} tokens in "
              f"{last['elapsed_s']:.1f} s, {len(metrics)} evaluations included)", flush=True)
        start = time.perf_counter()
        code = cotlab(["evaluate", str(root / "run"), "--eval-data", str(root / "eval"),
                       "--out", str(root / "scores.parquet"), "--n", str(args.n_eval)])
        eval_s = time.perf_counter() - start
        if code:
            raise SystemExit(f"cotlab evaluate failed with exit code {code}")
        eval_tokens = eval_prompt_tokens(point.to_dict(), args.n_eval)
        figures.update(evaluate_rows_s=args.n_eval / eval_s, evaluate_prompt_tokens_s=eval_tokens / eval_s)
        print(f"cotlab evaluate: {args.n_eval / eval_s:,.1f} rows/s, {eval_tokens / eval_s:,.0f} prompt tokens/s "
              f"({args.n_eval} rows, both formats, {eval_s:.1f} s with loading)", flush=True)
        save(figures)
        check = train(root, "check", args, other, False, args.check_evals)
        losses = {main_precision: metrics.set_index("step")["eval_loss"], other: check.set_index("step")["eval_loss"]}
        diff = (losses["bf16"] - losses["fp32"]).dropna().abs()  # the steps both runs evaluated
        rel = float((diff / losses["fp32"].loc[diff.index]).max())
        last_common = int(diff.index[-1])
        figures.update(loss_max_abs_diff=float(diff.max()), loss_max_rel_diff=rel, loss_compared_to_step=last_common,
                       eval_loss_fp32=float(losses["fp32"].loc[last_common]),
                       eval_loss_bf16=float(losses["bf16"].loc[last_common]), loss_agree=bool(rel <= args.tolerance))
        print(f"bf16 vs fp32 eval_loss over {len(diff)} evaluations: max |difference| {diff.max():.2e} "
              f"({100 * rel:.3g}% of fp32; at step {last_common} fp32 {figures['eval_loss_fp32']:.4f}, "
              f"bf16 {figures['eval_loss_bf16']:.4f}): {'agree' if rel <= args.tolerance else 'DISAGREE'} "
              f"within {100 * args.tolerance:g}%", flush=True)
        save(figures)
        in_training, eval_agree = eval_seconds(root / "run", root / "eval", args, "bf16" if on_gpu else "fp32")
        eval_ratio = in_training["eager"] / in_training["compiled"]
        figures.update(eval_eager_s=in_training["eager"], eval_compiled_s=in_training["compiled"],
                       eval_compile_ratio=eval_ratio, eval_compiled_agrees=eval_agree)
        print(f"in-training evaluation ({args.n_eval_train} rows): eager {in_training['eager']:.3f} s, compiled "
              f"{in_training['compiled']:.3f} s: compiled/eager speed {eval_ratio:.2f}x, "
              f"answer_acc {'equal' if eval_agree else 'DIFFERENT'}", flush=True)
        save(figures)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="smoke-tf8", choices=list(MODEL_SIZES))
    parser.add_argument("--vocab", type=int, default=64, help="data vocabulary V")
    parser.add_argument("--examples", type=int, default=8, help="K examples per sequence (T = 6K)")
    parser.add_argument("--rows", type=int, default=2048, help="training sequences (default 2048)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n-eval", type=int, default=256, help="rows `cotlab evaluate` scores (default 256)")
    parser.add_argument("--n-eval-train", type=int, default=64, help="eval rows of each in-training evaluation")
    parser.add_argument("--evals", type=int, default=4, help="evaluations during training besides step 0")
    parser.add_argument("--compile", action="store_true", help="compile: true for the timed run")
    parser.add_argument("--eval-rounds", type=int, default=3, help="timed in-training evaluations per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the runs")
    parser.add_argument("--check-evals", type=int, help="evaluation intervals the other-precision run trains "
                        "(default: all of them, --evals)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="relative eval_loss agreement bf16 vs fp32")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()
    args.check_evals = args.evals if args.check_evals is None else args.check_evals
    if min(args.rows, args.batch, args.n_eval, args.n_eval_train, args.evals, args.threads, args.examples,
           args.eval_rounds, args.check_evals) < 1:
        parser.error("sizes and counts must be >= 1")
    if args.rows < args.batch or args.n_eval_train > args.n_eval:
        parser.error("need --rows >= --batch and --n-eval-train <= --n-eval")
    def save(figures: dict) -> None:
        if args.json:
            text = json.dumps(figures, indent=2) + "\n"  # whole or not at all: a time limit may stop us
            write_atomic(args.json, lambda tmp: Path(tmp).write_text(text))

    run(args, save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
