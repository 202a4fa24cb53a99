"""Evaluation throughput: our greedy CoT decoding vs HF `generate()` fp32 on the same weights.

The workload of one paper-1 eval batch (docs/evaluation.md): prompts of K(N+C) − C tokens (K−1
cot demonstrations + the query's N inputs), then C greedy tokens.

- ours: `cotlab.decode.greedy_decode` (batched prefill, static KV cache), bf16 autocast on CUDA
  (fp32 on CPU or with --fp32);
- reference: `LlamaForCausalLM.from_pretrained(save_hf(...))`, fp32, attn_implementation="eager",
  `generate(do_sample=False, max_new_tokens=C, use_cache=True)`, as the authors evaluate.

Both decode the same random prompts, side by side in alternating timed rounds after warm-up.
A check pass (untimed) reports how often the two agree on all C tokens, and how close our fp32
logits are to HF's.

    python benchmarks/bench_decode.py --size smoke-tf8 --vocab 64 --batch 16 --seq 48   # CPU
    python benchmarks/bench_decode.py --size tf4 --vocab 1024 --batch 64 --seq 240 --json OUT.json   # GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cotlab.checkpoint import load_hf, save_hf
from cotlab.decode import greedy_decode
from cotlab.model import Transformer
from cotlab.model_config import MODEL_SIZES, model_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="smoke-tf8", choices=list(MODEL_SIZES))
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--checkpoint", default=None,
                        help="decode with this save_hf directory instead of a fresh seed-42 init")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=48, help="K(N+C): prompt + generated tokens")
    parser.add_argument("--n-inputs", type=int, default=4, help="N")
    parser.add_argument("--chain", type=int, default=2, help="C: tokens generated per prompt")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds; the median counts")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per model and round")
    parser.add_argument("--fp32", action="store_true", help="decode ours in fp32 on CUDA too")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args()
    example = args.n_inputs + args.chain
    if args.seq % example:
        parser.error(f"--seq {args.seq} must be a multiple of N + C = {example} (K examples)")
    if min(args.rounds, args.batches, args.batch) < 1:
        parser.error("--rounds, --batches and --batch must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import LlamaForCausalLM  # benchmark-only dependency

    device = torch.device(args.device)
    C, prompt_len = args.chain, args.seq - args.chain  # K(N+C) - C
    bf16 = device.type == "cuda" and not args.fp32
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            model = Transformer(model_config(args.size, args.vocab))
            model.init_weights(42)
            hf_dir = save_hf(model, f"{tmp}/model")
        else:
            model, hf_dir = load_hf(args.checkpoint), args.checkpoint
        hf_model = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager",
                                                    dtype=torch.float32)
    model.to(device).eval()
    hf_model.to(device).eval()
    vocab = model.cfg.vocab_size
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (args.batch, prompt_len), generator=generator).to(device)
               for _ in range(args.batches)]  # each (B, K(N+C) - C)

    def ours(prompt: torch.Tensor, use_bf16: bool = bf16) -> tuple[torch.Tensor, torch.Tensor]:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
        with autocast:
            return greedy_decode(model, prompt, None, max_new_tokens=C)

    @torch.no_grad()
    def reference(prompt: torch.Tensor, **extra):
        return hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=C, use_cache=True, **extra)

    run = {"ours": lambda p: ours(p), "reference": lambda p: reference(p)}
    for step in run.values():
        step(prompts[0])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in run}
    for _ in range(args.rounds):
        for name, step in run.items():
            sync(device)
            start = time.perf_counter()
            for prompt in prompts:
                step(prompt)
            sync(device)
            times[name].append(time.perf_counter() - start)
    n_prompts = args.batch * args.batches
    ours_pps = n_prompts / statistics.median(times["ours"])
    ref_pps = n_prompts / statistics.median(times["reference"])

    agree_timed = agree_fp32 = 0
    max_logit_diff = 0.0
    for prompt in prompts:  # untimed check pass
        check = reference(prompt, return_dict_in_generate=True, output_logits=True)
        ref_tokens, ref_logits = check.sequences[:, prompt_len:], torch.stack(check.logits, dim=1)
        tokens_fp32, logits_fp32 = ours(prompt, use_bf16=False)
        agree_timed += int((ours(prompt)[0] == ref_tokens).all(dim=1).sum())
        agree_fp32 += int((tokens_fp32 == ref_tokens).all(dim=1).sum())
        max_logit_diff = max(max_logit_diff, (logits_fp32 - ref_logits.float()).abs().max().item())

    name = device.type if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"device {name} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    print(f"model {args.size if args.checkpoint is None else args.checkpoint} V={vocab}: "
          f"{model.num_params():,} params; batch {args.batch}, prompt {prompt_len} tokens "
          f"(K={args.seq // example}, N={args.n_inputs}, C={C}), {C} new tokens; "
          f"{args.rounds} alternating rounds of {args.batches} batches (median round)")
    print(f"ours      (greedy_decode, static KV cache, {'bf16 autocast' if bf16 else 'fp32'}): "
          f"{ours_pps:,.1f} prompts/s")
    print(f"reference (HF generate, fp32 eager): {ref_pps:,.1f} prompts/s")
    print(f"ratio ours/reference: {ours_pps / ref_pps:.2f}x")
    print(f"agreement on all {C} tokens: timed precision {agree_timed}/{n_prompts} prompts, "
          f"fp32 {agree_fp32}/{n_prompts}; max |logit difference| fp32 vs HF {max_logit_diff:.2e}")
    if args.json:
        figures = {"device": name, "params": model.num_params(), "batch": args.batch, "prompt_tokens": prompt_len,
                   "new_tokens": C, "precision": "bf16" if bf16 else "fp32", "ours_prompts_s": ours_pps,
                   "reference_prompts_s": ref_pps, "ratio": ours_pps / ref_pps, "agree_timed": agree_timed,
                   "agree_fp32": agree_fp32, "n_prompts": n_prompts, "max_logit_diff_fp32": max_logit_diff}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
