"""`cotlab plan`: the throughput model's budget and its table (docs/scales.md, "Budgets and `cotlab plan`"),
assumed or measured (benchmarks/gpu_check.json)."""

from __future__ import annotations

import json
from typing import Any
import re
from pathlib import Path

import pytest
import yaml

from conftest import STAGE1
from cotlab.cli import main as cli
from cotlab.jobs import workflow_jobs
from cotlab.plan import plan_table, read_gpu_throughput, train_seconds

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"



def test_plan_matches_the_reduced_budget() -> None:
    rows, gpus = plan_table(STAGE1, "reduced", str(CONFIG))
    by = {r["experiment"]: r for r in rows}
    assert gpus == 1
    # docs/scales.md: fig_vocab 18 runs, 1.01B tokens, 2.03 h; stage 1 about 5.9 H100-hours
    assert (by["fig_vocab"]["train"], round(by["fig_vocab"]["train_tokens"] / 1e9, 2)) == (18, 1.01)
    assert by["fig_vocab"]["gpu_hours"] == pytest.approx(2.03, abs=0.01)
    assert by["total"]["gpu_hours"] == pytest.approx(5.9, abs=0.3)
    paper, _ = plan_table(STAGE1, "paper", str(CONFIG))
    assert paper[-1]["train"] == 150  # and about 107B tokens, 210 H100-hours
    assert paper[-1]["train_tokens"] / 1e9 == pytest.approx(107, rel=0.05)
    assert paper[-1]["gpu_hours"] == pytest.approx(210, rel=0.1)


def test_plan_cli_prints_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the assumed throughput, whether or not benchmarks/gpu_check.json exists
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(CONFIG),
                "--scale", "reduced", "--set", "experiments=[fig_vocab,fig_examples]"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fig_vocab\s+6\s+18\s+18\s+0\s+0\s+1\s+1,013\.8\s+2\.03$", out, re.M), out
    assert re.search(r"^total\s+", out, re.M)
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(CONFIG),
                "--set", "scale=huge"]) == 2
    assert "scale='huge'" in capsys.readouterr().err


@pytest.mark.parametrize("cadence", [-5, 0])
def test_plan_rejects_a_card_with_a_bad_eval_cadence(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     cadence: int) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "scales.yaml").write_text((CONFIG / "scales.yaml").read_text())
    card = (CONFIG / "experiments" / "quickstart.yaml").read_text()
    (tmp_path / "experiments" / "quickstart.yaml").write_text(card.replace("eval_every_seqs: 6400",
                                                                           f"eval_every_seqs: {cadence}"))
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(tmp_path),
                "--set", "experiments=[quickstart]", "--scale", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err == (f"cotlab plan: error: {tmp_path / 'experiments' / 'quickstart.yaml'}: "
                   f"scales.smoke.base.eval_every_seqs={cadence}: must be a positive integer\n")


def test_plan_prices_a_cpu_scale_from_its_measured_throughput(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """One run, round speeds, minutes by hand. T = K·(N+1) = 16·5 = 80 (standard), 16·6 = 96 (cot).
    generate 3,200 + 100 rows at 100/s = 33 s; train 3,200·80 tokens at 1,000/s = 256 s; evals during
    training at steps 0, 50, 100: 3·100·80 = 24,000 tokens, `cotlab evaluate` 100·(96 + 80) = 17,600,
    both at 500/s = 83.2 s. (33 + 256 + 83.2) s over 2 cores = 3.10 min, over 1 core 6.20 min."""
    scales = yaml.safe_load((CONFIG / "scales.yaml").read_text())
    scales["cpu"]["cpu_throughput"] = {"generate": 100, "coverage": 1, "train": {"cpu-tf4": 1000}, "evaluate": {"cpu-tf4": 500}}
    (tmp_path / "scales.yaml").write_text(yaml.safe_dump(scales))
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "one.yaml").write_text(yaml.safe_dump({
        "title": "t", "models": ["tf4"], "formats": ["standard"], "seeds": 1,
        "base": {"data": {"vocab_size": 16, "n_inputs": 4, "n_parents": 2, "chain_length": 2, "n_examples": 16}},
        "scales": {"cpu": {"base": {"train": {"n_train": 3200, "n_eval": 100}, "eval_every_seqs": 1600}}}}))
    rows, gpus = plan_table(["one"], "cpu", str(tmp_path))
    assert gpus == 0 and rows[0]["train_tokens"] == 256_000
    jobs = workflow_jobs(["one"], "cpu", str(tmp_path))
    (run,) = jobs.runs.values()
    # the training job alone (its SLURM limit is twice this): steps + evaluations during training
    assert train_seconds(run, 0, jobs.cpu_throughput) == pytest.approx(256 + 24_000 / 500)
    assert rows[0]["cpu_minutes"] == pytest.approx(372.2 / 2 / 60)
    assert plan_table(["one"], "cpu", str(tmp_path), cores=1)[0][0]["cpu_minutes"] == pytest.approx(372.2 / 60)
    args = ["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(tmp_path), "--scale", "cpu",
            "--set", "experiments=[one]"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "CPU min (2 cores)" in out and re.search(r"^one\s+2\s+1\s+1\s+0\s+0\s+1\s+0\.3\s+3\.1$", out, re.M), out
    # a size without a measured speed is a named error, not a silent zero
    scales["cpu"]["cpu_throughput"]["train"] = {"cpu-tf8": 1000}
    (tmp_path / "scales.yaml").write_text(yaml.safe_dump(scales))
    assert cli(args) == 2
    assert "scales.cpu.cpu_throughput: no measured speed for model 'cpu-tf4'" in capsys.readouterr().err
    assert cli([*args[:-2], "--set", "experiments=[one]", "--cores", "0"]) == 2
    assert "--cores=0: must be a positive integer" in capsys.readouterr().err


def test_every_paper_card_plans_within_an_hour_at_cpu_scale() -> None:
    """The `cpu` scale's promise, priced at its measured throughput on 2 cores, with >= 2 seeds: every
    card that trains runs of its own fits in an hour; a reusing card (fig_attention, ...) trains
    nothing beyond its sources' runs, so once they ran it costs its aggregate alone."""
    rows, gpus = plan_table(STAGE1, "cpu", str(CONFIG))
    jobs = workflow_jobs(STAGE1, "cpu", str(CONFIG))
    assert gpus == 0
    for row in rows[:-1]:
        card = jobs.cards[row["experiment"]]
        if card.reuse:
            sources = {run for source in card.reuse for run in jobs.runs_of[source]}
            assert set(jobs.runs_of[row["experiment"]]) <= sources
        else:
            assert row["cpu_minutes"] <= 60, row
    assert {run.replicate for run in jobs.runs.values()} == {0, 1}


def gpu_card(tmp_path: Path, **extra: Any) -> list[str]:
    """A one-run card at the reduced scale (its overrides: n_train 256,000, n_eval 2,000, batch 64) in
    tmp_path/config, with `extra` card keys; the `cotlab plan` arguments that price it."""
    config = tmp_path / "config"
    (config / "experiments").mkdir(parents=True)
    (config / "scales.yaml").write_text((CONFIG / "scales.yaml").read_text())
    (config / "experiments" / "one.yaml").write_text(yaml.safe_dump({
        "title": "t", "models": ["tf4"], "formats": ["standard"], "seeds": 1,
        "base": {"data": {"vocab_size": 16, "n_inputs": 4, "n_parents": 2, "chain_length": 2, "n_examples": 16}},
        **extra}))
    return ["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(config), "--scale", "reduced",
            "--set", "experiments=[one]"]


def gpu_check_json(path: Path, mode: str = "gpu", failed: tuple[str, ...] = (), **figures: float) -> Path:
    """A gpu_check.json as benchmarks/gpu_check.sh writes it (the fields plan reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mode": mode, "date": "2026-12-02", "device": "NVIDIA H200", "failed": list(failed),
                                "train_model": {"size": "tf4"},
                                "figures": {"train_tokens_s": 100_000.0, "e2e_evaluate_prompt_tokens_s": 50_000.0,
                                            **figures}}))
    return path


def test_plan_prices_gpu_hours_from_measured_throughput(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """T = 16·5 = 80 (standard), 256,000·80 = 20.48M tokens; B·T = 5,120 < 8,192: rate x0.8.
    Measured (100k tokens/s): 20.48M / 80k · 1.15 + 30 = 324.4 s of training, and the evaluate job
    2,000·(96 + 80) = 352,000 prompt tokens at 50k/s = 7.04 s: 331.44 s = 0.0921 h.
    Assumed (344k tokens/s): 20.48M / 275.2k · 1.15 + 30 = 115.58 s = 0.0321 h, evaluate not counted."""
    args = gpu_card(tmp_path)
    gpu = read_gpu_throughput(gpu_check_json(tmp_path / "measured.json"))
    rows, gpus = plan_table(["one"], "reduced", str(tmp_path / "config"), gpu=gpu)
    assert gpus == 1 and rows[0]["train_tokens"] == 20_480_000
    assert rows[0]["gpu_hours"] == pytest.approx(331.44 / 3600)
    assumed, _ = plan_table(["one"], "reduced", str(tmp_path / "config"))
    assert assumed[0]["gpu_hours"] == pytest.approx(115.5814 / 3600, rel=1e-6)

    monkeypatch.chdir(tmp_path)  # no benchmarks/gpu_check.json here: assumed, and said so
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^one\s+2\s+1\s+1\s+0\s+0\s+1\s+20\.5\s+0\.03$", out, re.M), out
    assert "GPU hours: assumed throughput (no benchmarks/gpu_check.json): TF-4 trains at 344,000 tokens/s" in out
    assert "evaluate jobs not counted" in out
    # the default file, once it exists, is read; --throughput names another one
    for extra, path in (([], tmp_path / "benchmarks" / "gpu_check.json"), (["--throughput", "m.json"], tmp_path / "m.json")):
        gpu_check_json(path)
        assert cli([*args, *extra]) == 0
        out = capsys.readouterr().out
        assert re.search(r"^one\s+2\s+1\s+1\s+0\s+0\s+1\s+20\.5\s+0\.09$", out, re.M), out
        shown = path.relative_to(tmp_path).as_posix() if not extra else "m.json"
        assert (f"GPU hours: measured throughput ({shown}, NVIDIA H200, 2026-12-02): TF-4 trains at 100,000 "
                "tokens/s, evaluates at 50,000 prompt tokens/s; training and evaluate jobs counted") in out
        path.unlink()


def test_plan_counts_and_prices_probe_jobs(tmp_path: Path) -> None:
    """A probe at K = 8 with a 3-point grid: its eval split is one more dataset to generate; it scores
    the run's 2,000 eval rows at 3 points in the standard format, T = 8·5 = 40: 240,000 prompt tokens,
    4.8 s at the measured 50k/s on top of the 331.44 s of test_plan_prices_gpu_hours_from_measured_throughput."""
    gpu_card(tmp_path, probes={"k8": {"data": {"n_examples": 8}, "format": "standard", "grid": {"max_new_tokens": [1, 2, 3]}}})
    gpu = read_gpu_throughput(gpu_check_json(tmp_path / "measured.json"))
    rows, _ = plan_table(["one"], "reduced", str(tmp_path / "config"), gpu=gpu)
    assert (rows[0]["probe"], rows[0]["generate"], rows[0]["evaluate"]) == (1, 3, 1)
    assert rows[0]["gpu_hours"] == pytest.approx((331.44 + 4.8) / 3600)


def test_plan_reads_a_check_that_failed_after_measuring_what_plan_needs(tmp_path: Path) -> None:
    """e2e overran after its train and evaluate stages (gpu_check.sh keeps those figures)."""
    gpu = read_gpu_throughput(gpu_check_json(tmp_path / "partial.json", failed=("decode", "e2e")))
    assert (gpu.train_tokens_s, gpu.evaluate_tokens_s) == (100_000.0, 50_000.0)


@pytest.mark.parametrize("content, error", [
    ({"mode": "cpu-smoke"}, "bad.json: mode='cpu-smoke': must be gpu (a file written by `bash benchmarks/gpu_check.sh` "
                            "on a GPU, not --cpu-smoke)"),
    ({"figures": {"train_tokens_s": 0.0}}, "bad.json: figures.train_tokens_s=0.0: must be a positive number"),
    ({"figures": {"e2e_evaluate_prompt_tokens_s": None}},
     "bad.json: figures.e2e_evaluate_prompt_tokens_s=None: must be a positive number"),
    ({"failed": ["decode", "e2e"], "figures": {"e2e_evaluate_prompt_tokens_s": None}},
     "bad.json: figures.e2e_evaluate_prompt_tokens_s=None: must be a positive number (sections that failed: "
     "decode, e2e; rerun `bash benchmarks/gpu_check.sh`)"),
])
def test_plan_refuses_a_bad_throughput_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], content: dict, error: str) -> None:
    args = gpu_card(tmp_path)
    monkeypatch.chdir(tmp_path)
    figures = content.pop("figures", {})
    gpu_check_json(tmp_path / "bad.json", **content, **figures)
    assert cli([*args, "--throughput", "bad.json"]) == 2
    assert capsys.readouterr().err == f"cotlab plan: error: {error}\n"
    assert cli([*args, "--throughput", "missing.json"]) == 2
    assert capsys.readouterr().err == ("cotlab plan: error: --throughput='missing.json': must be an existing file "
                                       "(write it with `bash benchmarks/gpu_check.sh`)\n")
