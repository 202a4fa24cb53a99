"""DDP scaling: tokens/s of `cotlab train` with G gloo (CPU) or NCCL (GPU) ranks vs 1 rank.

Same data, same global batch and steps (the trainer keeps both independent of the world size), run
in alternating rounds so both settings see the same machine load; tokens/s is the last metrics row's
tokens_seen / elapsed_s (training plus two tiny evaluations). docs/architecture.md: "DDP ... reported".

    python benchmarks/bench_ddp.py                     # CPU: 1 vs 2 ranks, smoke-tf8, V=64, K=8, C=3
    python benchmarks/bench_ddp.py --nproc 8 --model tf4 --steps 200   # a GPU node
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

POINT = ["vocab_size=64", "n_inputs=4", "n_parents=2", "chain_length=3", "n_examples=8"]


def cotlab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cotlab.cli", *args], check=True, stdout=subprocess.DEVNULL)


def tokens_per_second(root: Path, name: str, nproc: int, args: argparse.Namespace) -> float:
    out = root / name
    sets = [f"model={args.model}", f"batch_size={args.batch}", f"n_train={args.batch * args.steps}",
            f"eval_every={args.steps}", f"checkpoint_every={args.steps}", "n_eval=16", "analysis_n=0"]
    cotlab("train", "--data", str(root / "train"), "--eval-data", str(root / "eval"), "--out", str(out),
           "--format", "cot", "--nproc", str(nproc), *[x for s in sets for x in ("--set", s)])
    last = pd.read_parquet(out / "metrics.parquet").iloc[-1]
    return float(last["tokens_seen"] / last["elapsed_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="ranks to compare with 1 (default 2)")
    parser.add_argument("--model", default="smoke-tf8")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for split, n in (("train", args.batch * args.steps), ("eval", 16)):
            cotlab("generate", "--out", str(root / split), "--split", split,
                   *[x for s in [*POINT, f"n_sequences={n}"] for x in ("--set", s)])
        results: dict[int, list[float]] = {1: [], args.nproc: []}
        for r in range(args.rounds):
            for nproc in results:
                results[nproc].append(tokens_per_second(root, f"r{r}-g{nproc}", nproc, args))
    one, many = (statistics.median(results[g]) for g in results)
    print(f"{args.model}, global batch {args.batch}, {args.steps} steps, point {' '.join(POINT)}; "
          f"{args.rounds} alternating rounds, median")
    for g, values in results.items():
        print(f"{g} rank(s): {statistics.median(values):,.0f} tokens/s  (rounds: "
              + ", ".join(f"{v:,.0f}" for v in values) + ")")
    print(f"ratio {args.nproc} ranks / 1 rank: {many / one:.2f}x")


if __name__ == "__main__":
    main()
