"""benchmarks/gpu_check.sh: the GPU check script runs end to end, tiny, on the CPU (`--cpu-smoke`),
and writes every figure that `cotlab plan` and benchmarks/RESULTS.md read."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = {"train_tokens_s", "train_mfu", "train_ratio", "decode_prompts_s", "decode_ratio", "generate_seq_s",
           "generate_ratio", "e2e_train_tokens_s", "e2e_evaluate_rows_s", "e2e_evaluate_prompt_tokens_s",
           "eval_compile_ratio", "loss_bf16_fp32_max_abs_diff", "loss_bf16_fp32_max_rel_diff"}


def gpu_check(*args: str, hook: Path | None = None) -> subprocess.CompletedProcess:
    """Run the script; `hook`: a folder put first on PYTHONPATH (its sitecustomize.py runs in every python)."""
    paths = [str(hook)] if hook else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])  # this test's python
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


def test_cpu_smoke_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = gpu_check("--cpu-smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "cpu-smoke" and result["device"] == "cpu"
    figures = result["figures"]
    assert set(figures) == FIGURES
    for name, value in figures.items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)
    details = result["details"]
    # the figures are the scripts' own numbers, not copies of one another
    assert figures["train_ratio"] == details["train"]["ours_tokens_s"] / details["train"]["reference_tokens_s"]
    assert figures["generate_ratio"] == (details["generate"]["settings"]["1_core"]["cotlab_seq_s"]
                                         / details["generate"]["settings"]["1_core"]["reference_seq_s"])
    assert details["generate"]["timing"] == "steady"
    # both sides of the training benchmark start from the same weights and batch: the same first loss (fp32)
    assert math.isclose(details["train"]["first_loss_ours"], details["train"]["first_loss_reference"], rel_tol=1e-5)
    assert details["decode"]["agree_fp32"] == details["decode"]["n_prompts"]
    e2e = details["e2e"]  # compiled in-training evaluation: timed against eager, and scoring what eager does
    assert figures["eval_compile_ratio"] == e2e["eval_eager_s"] / e2e["eval_compiled_s"] and e2e["eval_compiled_agrees"]
    assert f"written to {out}\n" in proc.stdout and result["failed"] == [] and result["complete"]


def test_failed_sections_are_named_and_the_others_still_measured(tmp_path: Path) -> None:
    """A sitecustomize hook crashes the training and generation benchmarks at start-up and the end-to-end
    one at its last stage, the compiled evaluation: the decoding figures and those of the e2e stages
    before it are still written, the rest are null, "failed" names the three, and the script exits 1.
    The file is written after every section: the hook copies it as the e2e section starts."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "script = os.path.basename(sys.argv[0])\n"
        "if script in ('bench_train.py', 'bench_generate.py'):\n"
        "    sys.stderr.write('crashed on purpose\\n')\n"
        "    os._exit(3)\n"
        "if script == 'bench_e2e.py':\n"
        f"    import shutil; shutil.copy({str(tmp_path / 'check.json')!r}, {str(tmp_path / 'seen.json')!r})\n"
        "    import torch\n"
        "    def crash(*args, **kwargs):\n"
        "        raise RuntimeError('compile crashed on purpose')\n"
        "    torch.compile = crash\n")
    out = tmp_path / "check.json"
    proc = gpu_check("--cpu-smoke", "--out", str(out), hook=hook)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("train", "generate", "e2e"):
        assert f"gpu_check.sh: {name} failed or ran past 600 s; the other sections still run" in proc.stderr
    result = json.loads(out.read_text())
    assert result["failed"] == ["train", "generate", "e2e"] and set(result["details"]) == {"decode", "e2e"}
    assert result["device"] == "cpu" and result["train_model"] is None and result["evaluate_model"] == "smoke-tf8"
    measured = {name for name, value in result["figures"].items() if value is not None}
    assert set(result["figures"]) == FIGURES
    assert measured == {"decode_prompts_s", "decode_ratio", "e2e_train_tokens_s", "e2e_evaluate_rows_s",
                        "e2e_evaluate_prompt_tokens_s", "loss_bf16_fp32_max_abs_diff", "loss_bf16_fp32_max_rel_diff"}
    assert f"written to {out} (failed: train, generate, e2e)" in proc.stdout and result["complete"]
    seen = json.loads((tmp_path / "seen.json").read_text())  # the file as the e2e section started
    assert not seen["complete"] and seen["failed"] == ["train", "generate"] and set(seen["details"]) == {"decode"}
    assert seen["figures"]["decode_ratio"] == result["figures"]["decode_ratio"]


def test_bad_options_are_refused_before_any_work(tmp_path: Path) -> None:
    proc = gpu_check("--cpu-smoke", "--fast")
    assert (proc.returncode, proc.stderr) == (2, "gpu_check.sh: option '--fast' is not allowed "
                                                 "(allowed: --cpu-smoke, --out FILE.json)\n")
    proc = gpu_check("--cpu-smoke", "--out", str(tmp_path / "check.txt"))
    assert (proc.returncode, proc.stderr) == (2, f"gpu_check.sh: --out='{tmp_path / 'check.txt'}': must end in .json\n")
    assert proc.stdout == "" and not list(tmp_path.iterdir())
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where --out's folder would be
    proc = gpu_check("--cpu-smoke", "--out", str(blocked / "check.json"))
    assert (proc.returncode, proc.stderr) == (2, f"gpu_check.sh: --out='{blocked / 'check.json'}': "
                                                 "its folder cannot be written\n")
    assert proc.stdout == "" and [p.name for p in tmp_path.iterdir()] == ["file"]
