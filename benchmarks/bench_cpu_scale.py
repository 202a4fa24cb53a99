"""CPU throughput of the `cpu` scale's jobs, measured with the real commands (docs/scales.md).

`cotlab plan --scale cpu` turns these speeds into CPU minutes per card; this script measures them
on the machine at hand and prints the `cpu_throughput` block of config/scales.yaml:

- generate and coverage: sequences/s of `cotlab generate --workers 1` and of `cotlab coverage`;
- train: tokens/s of `cotlab train` per model size (threads=1), from its own "done:" line, with
  evaluation reduced to two tiny passes so that only the optimizer steps count;
- evaluate: prompt tokens/s of `cotlab evaluate` (both formats, start-up included), the unit in
  which plan counts `cotlab evaluate` jobs and in-training evaluations alike.

All on one representative cpu-scale point (V=32, N=4, M=2, C=4, K=16, CoT: the longest sequences a
cpu card trains), one job at a time, so the figures are single-thread speeds. Run it on an idle
machine; two jobs share two cores at about these speeds each.

    python benchmarks/bench_cpu_scale.py            # ~3 minutes on 2 cores
    python benchmarks/bench_cpu_scale.py --rows 512 --sizes cpu-tf4   # a quick look
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cotlab.plan import eval_prompt_tokens, format_length

POINT = {"vocab_size": 32, "n_inputs": 4, "n_parents": 2, "chain_length": 4, "n_examples": 16, "n_dims": 10}
TRAIN_FORMAT = "cot"


def cotlab(*args: str) -> tuple[float, str]:
    """Run one `cotlab` command; its wall seconds and output (a failure stops the benchmark)."""
    start = time.perf_counter()
    proc = subprocess.run(["cotlab", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"cotlab {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return seconds, proc.stdout + proc.stderr


def sets(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2048, help="training sequences per size (default: %(default)s)")
    parser.add_argument("--eval-rows", type=int, default=256, help="rows `cotlab evaluate` scores (default: %(default)s)")
    parser.add_argument("--sizes", default="cpu-tf4,cpu-tf8,cpu-tf12", help="model sizes (default: %(default)s)")
    args = parser.parse_args()
    n_tokens = format_length(POINT, TRAIN_FORMAT)
    eval_tokens = eval_prompt_tokens(POINT, args.eval_rows)  # the unit `cotlab plan` prices evaluate in
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gen_s, _ = cotlab("generate", "--out", str(root / "train"), "--split", "train", "--workers", "1",
                          *sets({**POINT, "n_sequences": args.rows}))
        cotlab("generate", "--out", str(root / "eval"), "--split", "eval", *sets({**POINT, "n_sequences": args.eval_rows}))
        cov_s, _ = cotlab("coverage", str(root / "train"))
        train_rate, eval_rate = {}, {}
        for size in args.sizes.split(","):
            run = root / f"run-{size}"
            _, out = cotlab("train", "--data", str(root / "train"), "--eval-data", str(root / "eval"), "--out", str(run),
                            "--format", TRAIN_FORMAT, *sets({"model": size, "n_train": args.rows, "batch_size": 32,
                                                             "lr": 0.003, "eval_every": 10**6, "n_eval": 32,
                                                             "analysis_n": 0, "precision": "fp32", "threads": 1}))
            train_rate[size] = float(re.search(r"\(([\d,]+) tokens/s\)", out).group(1).replace(",", ""))
            eval_s, _ = cotlab("evaluate", str(run), "--eval-data", str(root / "eval"), "--out", str(root / f"{size}.parquet"),
                               "--n", str(args.eval_rows), "--n-attn", "0", "--device", "cpu")
            eval_rate[size] = eval_tokens / eval_s
            print(f"{size}: train {train_rate[size]:,.0f} tokens/s ({n_tokens} tokens/sequence), "
                  f"evaluate {eval_rate[size]:,.0f} tokens/s ({eval_s:.1f} s for {args.eval_rows} rows)", flush=True)
    print(f"generate: {args.rows / gen_s:,.0f} sequences/s, coverage: {args.rows / cov_s:,.0f} sequences/s "
          f"({gen_s:.1f} s and {cov_s:.1f} s for {args.rows}, start-up included)\n")
    print("  cpu_throughput:")
    print(f"    generate: {args.rows / gen_s:.0f}")
    print(f"    coverage: {args.rows / cov_s:.0f}")
    print("    train: {" + ", ".join(f"{k}: {v:.0f}" for k, v in train_rate.items()) + "}")
    print("    evaluate: {" + ", ".join(f"{k}: {v:.0f}" for k, v in eval_rate.items()) + "}")


if __name__ == "__main__":
    main()
