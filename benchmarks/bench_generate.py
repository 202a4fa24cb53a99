"""Data generation speed and memory: cotlab's generator vs a reference-style per-sequence one.

    python benchmarks/bench_generate.py                      # 1 core and all cores, RSS at 20k/200k rows
    python benchmarks/bench_generate.py --large              # also peak RSS at 3.2M rows
    python benchmarks/bench_generate.py --device cuda        # GPU vs the reference with 8 processes

The reference-style generator is written here in the way of the authors' v1 code
(`core/data.py`, `core/dag.py`, `core/token_processor.py`): per sequence a fresh DAG from
np.random.choice and C fresh TokenProcessors (bias-free torch.nn.Linear(d, d), weights N(0, 1)),
then per example np.random inputs and a Python loop over the chain steps, one example at a time
in torch float32, without torch.no_grad() (as in the authors' Dataset). It does not build prompt
tensors, which the authors' code also does, so the ratio slightly favours the reference.

Both sides run with one BLAS/torch thread per process: "1 core" is one process each, "all cores"
is one process per core each (reference: independent processes, like DataLoader workers; cotlab:
--workers). Default point: V=1024, d=10, N=M=4, C=2, K=40, leaky_relu. Peak RSS is measured in a
child process that writes a whole split with `write_dataset` (ru_maxrss of that process).
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy/torch load: one thread per process on both sides

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

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


def _reference_worker(args: tuple[int, DataConfig, int]) -> tuple[float, float]:
    n, cfg, seed = args
    reference_generate(2, cfg, seed)  # warm-up: torch kernels, allocator
    start = time.perf_counter()
    reference_generate(n, cfg, seed)
    return start, time.perf_counter()


def reference_rate(n: int, cfg: DataConfig, processes: int) -> float:
    """Sequences/s of `processes` concurrent reference-style processes (start-up excluded)."""
    if processes == 1:
        start, stop = _reference_worker((n, cfg, 0))
        return n / (stop - start)
    per_process = max(1, n // processes)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        spans = pool.map(_reference_worker, [(per_process, cfg, seed) for seed in range(processes)])
    return per_process * processes / (max(s[1] for s in spans) - min(s[0] for s in spans))


def ours_rate(n: int, cfg: DataConfig, workers: int, device: str) -> float:
    """Sequences/s of generate_rows (worker start-up included)."""
    generate_rows(cfg, "train", 0, 64, device=device)  # warm-up (CUDA context, caches)
    start = time.perf_counter()
    generate_rows(cfg, "train", 0, n, workers=workers, device=device)
    return n / (time.perf_counter() - start)


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
    parser.add_argument("--n-ref", type=int, default=300, help="sequences for the reference (default 300)")
    parser.add_argument("--n-ours", type=int, default=20_000, help="sequences for cotlab (default 20000)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--large", action="store_true", help="also measure peak RSS at 3.2M rows")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS measurements")
    parser.add_argument("--rss-child", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        peak_rss_child(int(args.rss_child[0]), args.rss_child[1])
        return

    import torch

    cfg = DataConfig()
    cores = os.cpu_count() or 1
    print(f"point: V={cfg.vocab_size} d={cfg.n_dims} N={cfg.n_inputs} M={cfg.n_parents} "
          f"C={cfg.chain_length} K={cfg.n_examples} {cfg.activation}; numpy {np.__version__}, "
          f"torch {torch.__version__}; {cores} CPU cores; 1 BLAS/torch thread per process")
    rows = [("1 core", 1, 1, "cpu"), (f"{cores} cores", cores, cores, "cpu")]
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: CUDA is not available")
        rows.append((f"cuda ({torch.cuda.get_device_name()}) vs reference x8 processes", 8,
                     min(8, cores), "cuda"))
    print(f"{'setting':<58} {'reference seq/s':>15} {'cotlab seq/s':>13} {'ratio':>8}")
    for name, ref_processes, workers, device in rows:
        ref = reference_rate(args.n_ref * ref_processes, cfg, ref_processes)
        ours = ours_rate(args.n_ours * (workers if device == "cpu" else 10), cfg, workers, device)
        print(f"{name:<58} {ref:>15.1f} {ours:>13.0f} {ours / ref:>7.0f}x", flush=True)
    if args.skip_rss:
        return
    print("peak RSS of `write_dataset` (1 process, chunk 1024, shards of 65,536 rows):")
    for n in (20_000, 200_000) + ((3_200_000,) if args.large else ()):
        mib, seconds = peak_rss(n)
        print(f"  n={n:>9,}: {mib:6.0f} MiB peak RSS, {seconds:7.1f} s "
              f"({n / seconds:,.0f} seq/s incl. Parquet)", flush=True)


if __name__ == "__main__":
    main()
