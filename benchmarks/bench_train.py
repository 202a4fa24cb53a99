"""Training throughput: our Transformer vs the authors' setup (HF LlamaForCausalLM, fp32 eager).

Both train the same model (same initial weights, loaded into HF via `save_hf`) on the same random
batch, side by side in one process after warm-up, in alternating timed rounds so that both see
the same machine load (docs/architecture.md "training, GPU"):

- ours: bf16 autocast on CUDA (fp32 on CPU), SDPA attention, fused AdamW on CUDA (foreach on
  CPU), optionally `torch.compile` (--compile);
- reference: `LlamaForCausalLM` with attn_implementation="eager", fp32 (TF32 left off, PyTorch's
  default), `torch.optim.AdamW` with its defaults.

FLOPs per token = 6N + 12·L·H·Dh·T (docs/models.md); MFU = tokens/s · FLOPs/token / peak,
reported on CUDA only (--peak-tflops, default 989 = H100 SXM bf16 dense).

    python benchmarks/bench_train.py --size smoke-tf8 --vocab 64 --batch 16 --seq 48   # CPU
    python benchmarks/bench_train.py --size tf4 --vocab 1024 --batch 64 --seq 240 --compile   # GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cotlab.checkpoint import save_hf
from cotlab.model import Transformer
from cotlab.model_config import MODEL_SIZES, model_config

LR, BETAS, EPS, WEIGHT_DECAY = 5e-5, (0.9, 0.999), 1e-8, 0.01  # docs/training.md


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(steps: dict[str, Callable[[], float]], warmup: int, n_steps: int, rounds: int,
            device: torch.device) -> dict[str, tuple[float, float]]:
    """Warm each step up, then alternate timed rounds of `n_steps` steps between them, so that
    both see the same machine load -> name: (median seconds per step, first loss)."""
    first_loss = {name: step() for name, step in steps.items()}
    for step in steps.values():
        for _ in range(warmup - 1):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(n_steps):
                step()
            sync(device)
            times[name].append((time.perf_counter() - start) / n_steps)
    return {name: (statistics.median(times[name]), first_loss[name]) for name in steps}


def ours_step(model: Transformer, batch: torch.Tensor, compile_model: bool) -> Callable[[], float]:
    device = batch.device
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS,
                                  weight_decay=WEIGHT_DECAY, fused=fused, foreach=not fused)
    forward = torch.compile(model) if compile_model else model
    targets = batch[:, 1:].reshape(-1)  # (B*(T-1),)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(batch)  # (B, T, V) float32
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()
    return step


def reference_step(hf_model, batch: torch.Tensor) -> Callable[[], float]:
    optimizer = torch.optim.AdamW(hf_model.parameters(), lr=LR, betas=BETAS, eps=EPS,
                                  weight_decay=WEIGHT_DECAY)

    def step() -> float:
        loss = hf_model(input_ids=batch, labels=batch).loss  # HF shifts the labels itself
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()
    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="smoke-tf8", choices=list(MODEL_SIZES))
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=48, help="tokens per training sequence T")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model (>= 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds; the median counts")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="accelerator peak for MFU (989 = H100 SXM bf16 dense)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if min(args.warmup, args.steps, args.rounds) < 1:
        parser.error("--warmup, --steps and --rounds must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import LlamaForCausalLM  # benchmark-only dependency

    device = torch.device(args.device)
    cfg = model_config(args.size, args.vocab)
    batch = torch.randint(0, args.vocab, (args.batch, args.seq),
                          generator=torch.Generator().manual_seed(0)).to(device)  # (B, T)
    model = Transformer(cfg)
    model.init_weights(42)
    n_params = model.num_params()
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * args.seq
    tokens = args.batch * args.seq
    name = device.type if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"device {name} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    print(f"model {args.size} V={args.vocab}: {n_params:,} params, {flops_per_token / 1e9:.3f} "
          f"GFLOP/token at T={args.seq}; batch {args.batch}; {args.warmup} warm-up steps, then "
          f"{args.rounds} alternating rounds of {args.steps} timed steps (median round)")

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = save_hf(model, f"{tmp}/model")
        hf_model = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager",
                                                    dtype=torch.float32)

    model.to(device).train()
    hf_model.to(device).train()
    results = measure({"ours": ours_step(model, batch, args.compile),
                       "reference": reference_step(hf_model, batch)},
                      args.warmup, args.steps, args.rounds, device)
    (ours_s, ours_loss), (ref_s, ref_loss) = results["ours"], results["reference"]

    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    optimizer = "fused AdamW" if device.type == "cuda" else "foreach AdamW"
    ours_tps, ref_tps = tokens / ours_s, tokens / ref_s
    mfu = ""
    if device.type == "cuda":
        peak = args.peak_tflops * 1e12
        mfu = (f", MFU {100 * ours_tps * flops_per_token / peak:.1f}% "
               f"(reference {100 * ref_tps * flops_per_token / peak:.1f}%) of {args.peak_tflops:g} TFLOP/s")
    print(f"first-step loss: ours {ours_loss:.5f}, reference {ref_loss:.5f}")
    print(f"ours      ({precision}, SDPA, {optimizer}{', compiled' if args.compile else ''}): "
          f"{ours_tps:,.0f} tokens/s ({1e3 * ours_s:.1f} ms/step)")
    print(f"reference (HF LlamaForCausalLM fp32 eager, default AdamW): {ref_tps:,.0f} tokens/s "
          f"({1e3 * ref_s:.1f} ms/step)")
    print(f"ratio ours/reference: {ours_tps / ref_tps:.2f}x{mfu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
