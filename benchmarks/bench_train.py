"""Training throughput: `cotlab train`'s own step vs the authors' setup (HF LlamaForCausalLM, fp32 eager).

Both train the same model (same initial weights, loaded into HF via `save_hf`) on the same batches
of one generated dataset (cot format, N=4, C=2, K = T/6), side by side in one process after
warm-up, in alternating timed rounds so that both see the same machine load, on the device
`cotlab train` picks (CUDA whenever present, else the CPU):

- ours: the real training step of `cotlab train`, `Trainer.train_step(trainer.loader.next_batch())`,
  built by `cotlab.train_job.prepare` from --set values like the CLI, so every step pays what a run
  pays: rendering the batch from Parquet rows, the host-to-device copy, the loss, the non-finite
  check, AdamW (fused on CUDA) and the running loss. Precision `auto` is bf16 autocast on CUDA and
  fp32 on CPU; --compile sets `compile: true`. Not timed: the evaluations and checkpoints a run
  interleaves (bench_e2e.py times whole runs);
- reference: `LlamaForCausalLM` with attn_implementation="eager", fp32 (TF32 off, PyTorch's
  default), `torch.optim.AdamW` with its defaults, on the same batches already rendered and in
  memory (so the ratio slightly favours the reference).

FLOPs per token = 6N + 12·L·H·Dh·T (docs/models.md); MFU = tokens/s · FLOPs/token / peak,
against --peak-tflops (default 989 = H100/H200 SXM bf16 dense; on a CPU give its own peak).

    python benchmarks/bench_train.py --size smoke-tf8 --vocab 64 --batch 16 --seq 48   # CPU
    python benchmarks/bench_train.py --size tf4 --vocab 1024 --batch 64 --seq 240 --compile --json OUT.json   # GPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cotlab.checkpoint import save_hf
from cotlab.config import DataConfig
from cotlab.data.loader import TrainLoader
from cotlab.data.store import write_dataset
from cotlab.model_config import MODEL_SIZES
from cotlab.precision import set_precision
from cotlab.train import Trainer
from cotlab.train_job import prepare

N_INPUTS, CHAIN = 4, 2  # T = K (N + C): the default data point's example of 6 tokens
DISTINCT_BATCHES = 8  # the train split holds this many batches; the loader cycles through them


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# A side: (setup, step). setup() sets that side's global precision switches (TF32) before its
# rounds; step() runs one optimizer step and returns a tensor whose value after the first step is
# that step's mean loss.
Side = tuple[Callable[[], None], Callable[[], torch.Tensor]]


def measure(sides: dict[str, Side], warmup: int, n_steps: int, rounds: int,
            device: torch.device) -> dict[str, tuple[float, float]]:
    """Warm each side up, then alternate timed rounds of `n_steps` steps between them, so that
    both see the same machine load -> name: (median seconds per step, first loss)."""
    first_loss = {}
    for name, (setup, step) in sides.items():
        setup()
        first_loss[name] = float(step())
        for _ in range(warmup - 1):
            step()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, (setup, step) in sides.items():
            setup()
            sync(device)
            start = time.perf_counter()
            for _ in range(n_steps):
                step()
            sync(device)
            times[name].append((time.perf_counter() - start) / n_steps)
    return {name: (statistics.median(times[name]), first_loss[name]) for name in sides}


def ours_side(trainer: Trainer) -> Side:
    steps = itertools.count(1)

    def step() -> torch.Tensor:
        trainer.train_step(trainer.loader.next_batch(), next(steps))
        return trainer.interval_loss  # () sum of the steps' mean losses (one step: its loss)
    return (lambda: set_precision(trainer.job.precision)), step


def reference_side(hf_model, batches: list[dict[str, torch.Tensor]], device: torch.device) -> Side:
    optimizer = torch.optim.AdamW(hf_model.parameters(), lr=5e-5, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.01)  # docs/training.md, the authors' recipe
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches]
    cycle = itertools.cycle(on_device)

    def step() -> torch.Tensor:
        batch = next(cycle)
        loss = hf_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        labels=batch["labels"]).loss  # HF shifts the labels itself; -100 is skipped
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()
    return (lambda: set_precision("fp32")), step


def run(args: argparse.Namespace) -> dict:
    """Build both sides in a temporary directory, measure, print and return the figures."""
    from transformers import LlamaForCausalLM  # benchmark-only dependency

    point = DataConfig(vocab_size=args.vocab, n_inputs=N_INPUTS, chain_length=CHAIN,
                       n_examples=args.seq // (N_INPUTS + CHAIN), n_sequences=DISTINCT_BATCHES * args.batch)
    sets = [f"model={args.size}", f"batch_size={args.batch}", "prompt.format=cot", f"precision={args.precision}",
            f"compile={str(args.compile).lower()}", f"threads={args.threads}", "n_eval=1", "analysis_n=0"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root / "train", point, "train")
        write_dataset(root / "eval", point.model_copy(update={"n_sequences": 1}), "eval")
        job = prepare(str(root / "train"), str(root / "eval"), str(root / "run"), None, sets, world_size=1)
        trainer = Trainer(job)
        device = trainer.device
        loader = TrainLoader(job.train_data, job.cfg.prompt, args.batch, job.cfg.seed)  # the same batches
        batches = [loader.next_batch() for _ in range(DISTINCT_BATCHES)]
        hf_dir = save_hf(trainer.model, root / "hf")
        hf_model = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32)
        hf_model.to(device).train()
        results = measure({"ours": ours_side(trainer), "reference": reference_side(hf_model, batches, device)},
                          args.warmup, args.steps, args.rounds, device)
    (ours_s, ours_loss), (ref_s, ref_loss) = results["ours"], results["reference"]

    cfg = job.model_cfg
    n_params = trainer.model.num_params()
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * args.seq
    tokens = args.batch * args.seq
    ours_tps, ref_tps = tokens / ours_s, tokens / ref_s
    name = device.type if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"device {name} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    print(f"model {args.size} V={cfg.vocab_size}: {n_params:,} params, {flops_per_token / 1e9:.3f} GFLOP/token "
          f"at T={args.seq}; batch {args.batch}; {args.warmup} warm-up steps, then {args.rounds} alternating "
          f"rounds of {args.steps} timed steps (median round)")
    print(f"first-step loss: ours {ours_loss:.5f}, reference {ref_loss:.5f}")
    print(f"ours      (Trainer.train_step, {job.precision}{', compiled' if args.compile else ''}): "
          f"{ours_tps:,.0f} tokens/s ({1e3 * ours_s:.1f} ms/step)")
    print(f"reference (HF LlamaForCausalLM fp32 eager, default AdamW): {ref_tps:,.0f} tokens/s ({1e3 * ref_s:.1f} ms/step)")
    figures = {"device": name, "size": args.size, "vocab": cfg.vocab_size, "batch": args.batch, "seq": args.seq,
               "precision": job.precision, "compile": args.compile, "params": n_params,
               "flops_per_token": flops_per_token, "ours_tokens_s": ours_tps, "reference_tokens_s": ref_tps,
               "ratio": ours_tps / ref_tps, "first_loss_ours": ours_loss, "first_loss_reference": ref_loss}
    peak = args.peak_tflops * 1e12
    figures["mfu"], figures["reference_mfu"] = ours_tps * flops_per_token / peak, ref_tps * flops_per_token / peak
    mfu = (f", MFU {100 * figures['mfu']:.1f}% (reference {100 * figures['reference_mfu']:.1f}%) "
           f"of {args.peak_tflops:g} TFLOP/s")
    print(f"ratio ours/reference: {ours_tps / ref_tps:.2f}x{mfu}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="smoke-tf8", choices=list(MODEL_SIZES))
    parser.add_argument("--vocab", type=int, default=64, help="data vocabulary V")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=48, help="tokens per training sequence T, a multiple of 6")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side (>= 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds; the median counts")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "tf32", "bf16"],
                        help="ours (`cotlab train`'s precision; auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (compile: true)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="peak for MFU (default 989 = H100/H200 SXM bf16 dense)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, both sides (default 1, `cotlab train`'s threads)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if min(args.warmup, args.steps, args.rounds, args.batch, args.threads) < 1:
        parser.error("--warmup, --steps, --rounds, --batch and --threads must be >= 1")
    if args.seq % (N_INPUTS + CHAIN):
        parser.error(f"--seq {args.seq} must be a multiple of N + C = {N_INPUTS + CHAIN} (K examples)")
    figures = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
