#!/usr/bin/env bash
# Every GPU figure of benchmarks/RESULTS.md in one run (about 5 minutes on one H100/H200, at most 8.5):
#   training: tokens/s, MFU and ratio vs HF fp32 eager, TF-4 at V=1024, B=64, T=240 (bench_train.py)
#   decoding: greedy CoT prompts/s vs HF generate() fp32 (bench_decode.py)
#   data generation: GPU vs the reference-style generator in 8 processes, steady state (bench_generate.py)
#   end to end: `cotlab train` tokens/s, `cotlab evaluate` rows/s, compiled vs eager in-training
#     evaluation, bf16 vs fp32 eval_loss (bench_e2e.py)
# and writes them to one JSON file: {"mode", "date", "device", "complete", "failed", "figures":
# {name: value}, "details": {...}}, rewritten after every section ("complete": false until the end).
# `cotlab plan` prices GPU scales from that file when it exists.
# Each of the four sections has a time limit (GPU: 130 + 60 + 70 + 210 s: 7.8 minutes, 8.5 if all
# overrun and are killed 10 s later); one that fails or overruns is named in "failed" and the figures
# it did not reach are null (the end-to-end section keeps those of its finished stages), the others
# are still measured and written, and the script exits 1: a device session never loses every figure
# to one problem.
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine -> benchmarks/gpu_check.json
#   bash benchmarks/gpu_check.sh --out FILE.json
#   bash benchmarks/gpu_check.sh --cpu-smoke --out /tmp/smoke.json   # the same script, tiny, on a CPU (< 2 min)
set -euo pipefail

out=benchmarks/gpu_check.json
mode=gpu
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-smoke) mode=cpu-smoke ;;
        --out) out="${2:?gpu_check.sh: --out needs a FILE.json}"; shift ;;
        -h|--help) sed -n '2,19p' "$0" | cut -c3-; exit 0 ;;
        *) echo "gpu_check.sh: option '$1' is not allowed (allowed: --cpu-smoke, --out FILE.json)" >&2; exit 2 ;;
    esac
    shift
done
case "$out" in *.json) ;; *) echo "gpu_check.sh: --out='$out': must end in .json" >&2; exit 2 ;; esac
if ! mkdir -p "$(dirname "$out")" 2>/dev/null || [ ! -w "$(dirname "$out")" ]; then
    echo "gpu_check.sh: --out='$out': its folder cannot be written" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONUNBUFFERED=1

if [ "$mode" = cpu-smoke ]; then
    export CUDA_VISIBLE_DEVICES=""  # the CPU, even on a GPU machine
    # MFU on a CPU is against a nominal 0.2 TFLOP/s (2 cores); only the GPU figure means anything.
    train=(--size smoke-tf8 --vocab 64 --batch 8 --seq 48 --warmup 1 --steps 2 --rounds 1 --peak-tflops 0.2)
    decode=(--size smoke-tf8 --vocab 64 --batch 8 --seq 48 --rounds 1 --batches 1)
    generate=(--n-ref 4 --n-ours 256 --cores 1 --skip-rss)
    e2e=(--size smoke-tf8 --vocab 64 --examples 8 --rows 64 --batch 16 --n-eval 16 --n-eval-train 8 --evals 2 --check-evals 1 --eval-rounds 1)
    limits=(600 600 600 600)  # no limit that matters on a shared CPU
else
    timeout 60 python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
'gpu_check.sh: no CUDA device here (on a CPU use --cpu-smoke)')"
    train=(--size tf4 --vocab 1024 --batch 64 --seq 240 --compile --warmup 5 --steps 20 --rounds 3)
    decode=(--size tf4 --vocab 1024 --batch 64 --seq 240 --rounds 5 --batches 3)
    generate=(--device cuda --cores 8 --n-ref 100 --n-ours 10000 --n-gpu 2000000 --skip-rss)
    e2e=(--size tf4 --vocab 1024 --examples 40 --rows 16384 --batch 64 --n-eval 4096 --n-eval-train 256 --check-evals 2 --compile)
    limits=(130 60 70 210)  # seconds: train, decode, generate, e2e (7.8 minutes)
fi

failed=()
# The JSON is assembled after every section, so a device call stopped mid-way still returns the
# figures measured so far ("complete": false).
cat > "$tmp/assemble.py" <<'EOF'
import datetime, json, pathlib, sys

from cotlab.atomic import write_atomic

tmp, out, mode, stage, failed = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
details = {}
for path in sorted(tmp.glob("[!.]*.json")):  # not the hidden temp files of a write cut off mid-way
    try:
        details[path.stem] = json.loads(path.read_text())
    except json.JSONDecodeError:  # cut off mid-write by its time limit: as if not written
        pass
setting = "gpu" if mode == "gpu" else "1_core"  # the smoke runs 1 core
FIGURES = {  # name: where it is in details
    "train_tokens_s": ("train", "ours_tokens_s"),  # TF-4, V=1024, B=64, T=240 on the GPU
    "train_mfu": ("train", "mfu"),
    "train_ratio": ("train", "ratio"),  # vs HF LlamaForCausalLM fp32 eager
    "decode_prompts_s": ("decode", "ours_prompts_s"),
    "decode_ratio": ("decode", "ratio"),  # vs HF generate() fp32
    "generate_seq_s": ("generate", "settings", setting, "cotlab_seq_s"),
    "generate_ratio": ("generate", "settings", setting, "ratio"),  # GPU vs reference x8 processes
    "e2e_train_tokens_s": ("e2e", "train_tokens_s"),  # `cotlab train`, evaluations and compile included
    "e2e_evaluate_rows_s": ("e2e", "evaluate_rows_s"),
    "e2e_evaluate_prompt_tokens_s": ("e2e", "evaluate_prompt_tokens_s"),
    "eval_compile_ratio": ("e2e", "eval_compile_ratio"),  # in-training evaluation, compiled vs eager
    "loss_bf16_fp32_max_abs_diff": ("e2e", "loss_max_abs_diff"),
    "loss_bf16_fp32_max_rel_diff": ("e2e", "loss_max_rel_diff"),
}


def lookup(keys):
    """details[k1][k2]..., None where a failed section did not get that far."""
    value = details
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


figures = {name: lookup(keys) for name, keys in FIGURES.items()}
device = next((d["device"] for d in details.values() if "device" in d), "?")
result = {"mode": mode, "date": datetime.date.today().isoformat(), "device": device, "complete": stage == "final",
          "failed": failed,
          "train_model": {k: details["train"][k] for k in ("size", "vocab", "batch", "seq", "precision", "compile")}
          if "train" in details else None,
          "evaluate_model": details["e2e"]["size"] if "e2e" in details else None,
          "figures": figures, "details": details}
text = json.dumps(result, indent=2) + "\n"
write_atomic(out, lambda tmp_path: pathlib.Path(tmp_path).write_text(text))  # the call may be stopped any moment
if stage == "final":
    print(f"== {mode} on {device}, written to {out}" + (f" (failed: {', '.join(failed)})" if failed else ""))
    for name, value in figures.items():
        print(f"{name:<30} {'-' if value is None else f'{value:.4g}'}")
    sys.exit(1 if failed else 0)
EOF
assemble() { python3 "$tmp/assemble.py" "$tmp" "$out" "$mode" "$1" "${failed[@]}"; }

# section NAME LIMIT SCRIPT ARGS...: one benchmark, its figures to $tmp/NAME.json; a failure or an
# overrun is reported and the next section still runs (bench_e2e.py writes its figures stage by
# stage, so what it measured before is kept)
section() {
    local name=$1 limit=$2 script=$3
    shift 3
    echo "== $name ($script $*)"
    if ! timeout --kill-after=10 "$limit" python3 "$here/$script" "$@" --json "$tmp/$name.json"; then
        echo "gpu_check.sh: $name failed or ran past ${limit} s; the other sections still run" >&2
        failed+=("$name")
    fi
    assemble partial || echo "gpu_check.sh: could not write $out after $name; the other sections still run" >&2
}
section train "${limits[0]}" bench_train.py "${train[@]}"
section decode "${limits[1]}" bench_decode.py "${decode[@]}"
section generate "${limits[2]}" bench_generate.py "${generate[@]}"
section e2e "${limits[3]}" bench_e2e.py "${e2e[@]}"
assemble final
