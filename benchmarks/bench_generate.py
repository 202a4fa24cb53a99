"""Data generation speed and memory: cotlab's generator vs a reference-style per-sequence one.

    python benchmarks/bench_generate.py                      # steady state: 1 core and all cores, RSS at 20k/200k rows
    python benchmarks/bench_generate.py --timing cold        # start-up (process start, imports) counted on both sides
    python benchmarks/bench_generate.py --large              # also peak RSS at 3.2M rows
    python benchmarks/bench_generate.py --device cuda        # also the GPU vs the reference with 8 processes
    python benchmarks/bench_generate.py --n-ref 8 --n-ours 512 --cores 1 --skip-rss --json OUT.json   # tiny

The reference-style generator is written here in the way of the authors' v1 code
(`core/data.py`, `core/dag.py`, `core/token_processor.py`): per sequence a fresh DAG from
np.random.choice and C fresh TokenProcessors (bias-free torch.nn.Linear(d, d), weights N(0, 1)),
then per example np.random inputs and a Python loop over the chain steps, one example at a time
in torch float32, without torch.no_grad() (as in the authors' Dataset). It does not build prompt
tensors, which the authors' code also does, so the ratio slightly favours the reference.

Both sides run in the same harness: P spawned processes (one BLAS/torch thread each), each
generating its own share of the sequences in-process (cotlab: `generate_rows(..., workers=1)` on
its own row range, which is what `--workers P` does), nothing sent back to the parent on either
side. `--timing steady` (default) counts neither side's start-up: each process warms up (imports,
kernels, caches) and the clock runs from the first process's start of work to the last one's end.
`--timing cold` counts it on both: from before the processes start to the last result, with no
warm-up. "1 core" is P=1, "all cores" P = --cores (when > 1); the GPU row is `generate_rows(...,
device="cuda", workers=8)` in this process (8 drawing processes, the parent computes on the GPU; their
pool's start is inside the timed span) vs the reference with 8 processes: the same 8 cores. Default
point: V=1024, d=10, N=M=4, C=2, K=40, leaky_relu. Peak RSS is measured in a child process that writes a whole split with
`write_dataset` (ru_maxrss of that process).
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy/torch load: one thread per process on both sides

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cotlab.config import DataConfig  # noqa: E402
from cotlab.data.generate import generate_rows  # noqa: E402


# --- reference-style generator (per sequence, per example, per step) ---------------------------

def reference_generate(n_sequences: int, cfg: DataConfig, seed: int) -> list[dict]:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    activation = {"leaky_relu": nn.LeakyReLU(0.5), "relu": nn.ReLU(), "silu": nn.SiLU(),
                  "identity": nn.Identity()}[cfg.activation]
    embeddings = nn.Embedding(cfg.vocab_size, cfg.n_dims)
    embeddings.weight.data.normal_(mean=0.0, std=cfg.data_init_range)
    reserved = set(range(cfg.n_usable, cfg.vocab_size))

    class TokenProcessor(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(
                [nn.Linear(cfg.n_dims, cfg.n_dims, bias=False) for _ in range(cfg.h_num_layers)])
            for layer in self.layers:
                nn.init.normal_(layer.weight)

        def forward(self, x):
            for layer in self.layers[:-1]:
                x = activation(layer(x))
            return self.layers[-1](x)

    def output_token(available, parents, processor):
        parent_embeddings = embeddings(torch.tensor([available[i] for i in parents]))  # (M, d)
        h = activation(processor(parent_embeddings).mean(dim=0))  # (d,)
        logits = torch.matmul(h, embeddings.weight.T)  # (V,)
        token = torch.argmax(logits).item()
        while token in reserved:
            logits[token] = float("-inf")
            token = torch.argmax(logits).item()
        return token

    sequences = []
    for _ in range(n_sequences):
        processors = nn.ModuleList([TokenProcessor() for _ in range(cfg.chain_length)])
        adj_list, available_nodes = [], list(range(cfg.n_inputs))
        for c in range(cfg.chain_length):
            adj_list.append(np.random.choice(available_nodes, cfg.n_parents, replace=False).tolist())
            available_nodes.append(cfg.n_inputs + c)
        examples = []
        for _ in range(cfg.n_examples):
            inputs = np.random.randint(cfg.n_usable, size=cfg.n_inputs).tolist()
            available, chain = list(inputs), []
            for c in range(cfg.chain_length):
                token = output_token(available, adj_list[c], processors[c])
                available.append(token)
                chain.append(token)
            examples.append({"input_tokens": inputs, "chain_tokens": chain})
        sequences.append({"examples": examples, "adj_list": adj_list})
    return sequences


def _work(side: str, n: int, share: int, cfg: DataConfig, device: str, workers: int) -> None:
    """Generate share number `share` of n sequences: the reference from seed `share`, cotlab rows
    [share * n, (share + 1) * n) with `workers` drawing processes."""
    if side == "reference":
        reference_generate(n, cfg, share)
    else:
        generate_rows(cfg, "train", share * n, (share + 1) * n, device=device, workers=workers)


def _worker(args: tuple[str, int, int, DataConfig, str, int, bool]) -> tuple[float, float]:
    """One process's share -> (start, stop) of its timed work; warm=True: warm up first."""
    side, n, share, cfg, device, workers, warm = args
    if warm:  # imports are done; this loads kernels, caches (cotlab's globals), the CUDA context
        _work(side, 2 if side == "reference" else 64, share, cfg, device, 1)
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    _work(side, n, share, cfg, device, workers)
    return start, time.perf_counter()


def rate(side: str, n: int, cfg: DataConfig, processes: int, timing: str, device: str = "cpu",
         workers: int = 1) -> float:
    """Sequences/s of `processes` spawned processes generating `n` sequences each (same harness for
    both sides). workers > 1 (one cotlab process whose `workers` draw for its GPU) runs in this
    process: a pool's processes are daemons, which may not start the generator's own pool."""
    steady = timing == "steady"
    started = time.perf_counter()
    jobs = [(side, n, share, cfg, device, workers, steady) for share in range(processes)]
    if workers > 1:
        spans = [_worker(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            spans = pool.map(_worker, jobs)
    if steady:
        return n * processes / (max(s[1] for s in spans) - min(s[0] for s in spans))
    return n * processes / (time.perf_counter() - started)


# --- peak memory -----------------------------------------------------------------------------

def peak_rss_child(n: int, out: str) -> None:
    from cotlab.data.store import write_dataset

    start = time.perf_counter()
    write_dataset(out, DataConfig(n_sequences=n), "train")
    seconds = time.perf_counter() - start
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {seconds:.1f}")


def peak_rss(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, __file__, "--rss-child", str(n), f"{tmp}/train"],
                                capture_output=True, text=True, check=True)
    mib, seconds = result.stdout.split()
    return float(mib), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-ref", type=int, default=300, help="sequences per reference process (default 300)")
    parser.add_argument("--n-ours", type=int, default=20_000, help="sequences per cotlab process (default 20000)")
    parser.add_argument("--n-gpu", type=int, default=2_000_000, help="sequences for cotlab on the GPU (default 2000000)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="processes per side for the all-cores row (default: all cores)")
    parser.add_argument("--timing", default="steady", choices=["steady", "cold"],
                        help="steady: start-up excluded on both sides; cold: included on both (default steady)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--large", action="store_true", help="also measure peak RSS at 3.2M rows")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS measurements")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--rss-child", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        peak_rss_child(int(args.rss_child[0]), args.rss_child[1])
        return
    if min(args.n_ref, args.n_ours, args.n_gpu, args.cores) < 1:
        parser.error("--n-ref, --n-ours, --n-gpu and --cores must be >= 1")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    cfg = DataConfig()
    counted = ("start-up excluded on both sides (steady state, after warm-up)" if args.timing == "steady"
               else "start-up (process start, imports, first calls) included on both sides")
    print(f"point: V={cfg.vocab_size} d={cfg.n_dims} N={cfg.n_inputs} M={cfg.n_parents} "
          f"C={cfg.chain_length} K={cfg.n_examples} {cfg.activation}; numpy {np.__version__}, "
          f"torch {torch.__version__}; {os.cpu_count()} CPU cores; 1 BLAS/torch thread per process")
    print(f"timing: {args.timing}: {counted}")
    # (name, key, reference processes, cotlab processes, cotlab sequences per process, device,
    #  cotlab workers)
    rows = [("1 core", "1_core", 1, 1, args.n_ours, "cpu", 1)]
    if args.cores > 1:
        rows.append((f"{args.cores} cores", "all_cores", args.cores, args.cores, args.n_ours, "cpu", 1))
    if args.device == "cuda":  # the GPU with 8 drawing workers vs 8 reference processes: the same 8 cores
        rows.append((f"cuda ({torch.cuda.get_device_name()}) + 8 workers vs reference x8", "gpu", 8, 1,
                     args.n_gpu, "cuda", 8))
    figures: dict = {"timing": args.timing, "cores": args.cores, "settings": {}}
    print(f"{'setting':<58} {'reference seq/s':>15} {'cotlab seq/s':>13} {'ratio':>8}")
    for name, key, ref_processes, processes, n, device, workers in rows:
        ref = rate("reference", args.n_ref, cfg, ref_processes, args.timing)
        ours = rate("cotlab", n, cfg, processes, args.timing, device, workers)
        figures["settings"][key] = {"setting": name, "reference_seq_s": ref, "cotlab_seq_s": ours,
                                    "ratio": ours / ref}
        print(f"{name:<58} {ref:>15.1f} {ours:>13.0f} {ours / ref:>7.0f}x", flush=True)
    if not args.skip_rss:
        print("peak RSS of `write_dataset` (1 process, chunk 1024, shards of 65,536 rows):")
        figures["peak_rss_mib"] = {}
        for n in (20_000, 200_000) + ((3_200_000,) if args.large else ()):
            mib, seconds = peak_rss(n)
            figures["peak_rss_mib"][str(n)] = mib
            print(f"  n={n:>9,}: {mib:6.0f} MiB peak RSS, {seconds:7.1f} s "
                  f"({n / seconds:,.0f} seq/s incl. Parquet)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
