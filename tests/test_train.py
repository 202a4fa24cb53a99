"""`cotlab train` end to end, TrainConfig checks, the in-training metrics and a learnability smoke test.

The data point is the quickstart's miniature (docs/scales.md): one fixed task (fixed DAG
whose answer composes through the chain, fixed H) at V=32, learnable in seconds on a CPU.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cotlab.checkpoint import load_hf
from cotlab.cli import main as cli
from cotlab.config import ConfigError, build
from cotlab.yamlio import load
from cotlab.data.coverage import in_context_majority
from cotlab.data.loader import load_rows
from cotlab.formats import PromptConfig
from cotlab.data.store import open_dataset
from cotlab.metrics import evaluate_accuracy
from cotlab.model_config import model_config
from cotlab.train_config import TrainConfig
from conftest import generate_split

SPECIAL_POINT = ["vocab_size=32", "n_inputs=3", "n_parents=2", "chain_length=2", "n_examples=4",
                 "fixed_h=true", "special_tokens=true"]
TINY = ["model=smoke-tf4", "batch_size=16", "n_train=128", "eval_every=4", "checkpoint_every=4",
        "n_eval=48", "eval_batch_size=20", "analysis_n=8"]


def train_args(data, out, fmt: str = "cot", sets: list[str] = TINY) -> list[str]:
    args = ["train", "--data", data["train"], "--eval-data", data["eval"], "--out", str(out), "--format", fmt]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"train": generate_split(root / "train", "train", 16_000), "eval": generate_split(root / "eval", "eval", 256),
            "special_train": generate_split(root / "sp_train", "train", 256, SPECIAL_POINT),
            "special_eval": generate_split(root / "sp_eval", "eval", 64, SPECIAL_POINT)}


def test_train_cli_end_to_end(data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cotlab.cli", *train_args(data, out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The log says where the run is and how long it has left.
    assert re.search(r"step +0/8 \|.* ETA \?$", proc.stdout, re.M) and re.search(r"step +8/8 \|.* ETA 0s$", proc.stdout, re.M)

    metrics = pd.read_parquet(out / "metrics.parquet")
    required = ["step", "seqs_seen", "tokens_seen", "train_loss", "eval_loss", "answer_acc",
                "chain_acc_0", "chain_acc_1", "chain_acc_2", "chain_loss_0", "chain_loss_1", "chain_loss_2",
                "majority_baseline", "embed_sim", "parent_prec", "lr"]
    assert set(required) <= set(metrics.columns)
    assert metrics["step"].tolist() == [0, 4, 8]  # step 0, every 4 steps, the last step
    assert metrics["seqs_seen"].tolist() == [0, 64, 128]
    assert metrics["tokens_seen"].tolist() == [0, 64 * 28, 128 * 28]  # K(N+C) = 28 tokens a sequence
    assert np.isnan(metrics["train_loss"][0]) and (metrics["train_loss"][1:] > 0).all()
    assert (metrics["lr"] == 5e-5).all()
    assert np.array_equal(metrics["chain_acc_2"], metrics["answer_acc"])  # cot: the C-th token is the answer
    assert metrics[["embed_sim", "parent_prec"]].notna().all().all()

    eval_rows = load_rows(open_dataset(data["eval"]), 48)
    baseline = np.mean(in_context_majority(eval_rows) == eval_rows.chain[:, -1, -1])
    assert metrics["majority_baseline"].tolist() == pytest.approx([baseline] * 3)

    resolved = json.loads((out / "config.json").read_text())
    assert resolved["train"]["n_train"] == 128 and resolved["steps"] == 8 and resolved["precision"] == "fp32"
    model = load_hf(out / "final")
    assert model.cfg.n_layer == 1 and model.cfg.vocab_size == 32
    assert not (out / "checkpoints").exists()  # the resume checkpoint is dropped once final/ exists

    # A finished run is a no-op; the same directory with another config is refused.
    before = (out / "metrics.parquet").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "cotlab.train", *train_args(data, out)[1:]],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    assert (out / "metrics.parquet").stat().st_mtime_ns == before


def test_changed_config_is_refused(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(train_args(data, out)) == 0
    assert cli(train_args(data, out, sets=[*TINY, "lr=1e-3"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.lr" in err and "config.json" in err


def test_standard_format_columns(data, tmp_path):
    out = tmp_path / "run"
    assert cli(train_args(data, out, "standard", [*TINY, "n_train=32"])) == 0
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert "chain_acc_0" in metrics and "chain_acc_1" not in metrics
    assert np.array_equal(metrics["chain_acc_0"], metrics["answer_acc"])
    assert metrics["parent_prec"].isna().all()  # attention precision is defined on cot sequences
    assert metrics["tokens_seen"].iloc[-1] == 32 * 20  # K(N+1) = 20 tokens a sequence


def test_special_token_format_trains_and_scores(data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", data["special_train"], "--eval-data", data["special_eval"], "--out", str(out),
            "--format", "hybrid_special_token", "--set", "prompt.recipe.alpha=1"]
    for item in [*TINY, "n_train=64", "n_eval=null"]:
        args += ["--set", item]
    assert cli(args) == 0
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert {"format_acc", "answer_acc_offline", "format_acc_offline", "length_p10", "length_p50", "length_p90",
            "chain_acc_1"} <= set(metrics.columns)
    assert metrics["n_eval"].tolist() == [64, 64]
    assert ((metrics["format_acc"] >= 0) & (metrics["format_acc"] <= 1)).all()
    assert ((1 <= metrics["length_p10"]) & (metrics["length_p10"] <= metrics["length_p50"])
            & (metrics["length_p50"] <= metrics["length_p90"]) & (metrics["length_p90"] <= 2 + 5)).all()  # <= C+5
    assert (metrics["format_acc_offline"] >= metrics["format_acc"]).all()  # the offline rule checks less


def test_compile_trains_and_evaluates_like_eager(data, tmp_path, monkeypatch):
    """compile: true (the GPU scales') on the CPU: the compiled training step and the compiled,
    dynamic-shape in-training evaluation (a KV cache that grows every step) give eager's numbers."""
    compiled = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(kw) or real_compile(model, **kw))
    runs = {}
    for flag in ("false", "true"):
        out = tmp_path / f"compile_{flag}"
        args = ["train", "--data", data["special_train"], "--eval-data", data["special_eval"], "--out", str(out),
                "--format", "hybrid_special_token", "--set", "prompt.recipe.alpha=0.5"]
        for item in [*TINY, "n_train=48", "eval_every=1", "n_eval=null", f"compile={flag}"]:
            args += ["--set", item]
        assert cli(args) == 0
        runs[flag] = pd.read_parquet(out / "metrics.parquet")
    assert compiled == [{}, {"dynamic": True}]  # the training step, then the evaluation model
    eager, fused = runs["false"], runs["true"]
    assert len(eager) == 4  # steps 0..3, each evaluated: prefill, continuation and decode steps
    for column in ("answer_acc", "format_acc", "length_p50"):
        assert np.array_equal(eager[column], fused[column]), column
    for column in ("train_loss", "eval_loss", "chain_loss_0"):
        assert np.allclose(eager[column], fused[column], rtol=1e-5, equal_nan=True), column


class Oracle(torch.nn.Module):
    """A 'model' that knows every eval row: its logits put all mass on the next target token."""

    def __init__(self, cfg, answers: dict[tuple[int, ...], list[int]], wrong_last: bool = False):
        super().__init__()
        self.cfg, self.answers, self.wrong_last = cfg, answers, wrong_last
        self.tok_embeddings = torch.nn.Embedding(cfg.vocab_size, 8)

    def forward(self, input_ids, attention_mask=None, cache=None):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.cfg.vocab_size)
        if cache is None:  # teacher forcing: irrelevant here
            return logits
        if cache is not getattr(self, "cache", None):  # prefill (a new cache): remember each row's prompt
            self.cache, self.prompts, self.emitted = cache, [tuple(row.tolist()) for row in input_ids], [0] * B
        elif T > 1:  # the teacher-forced target after the prompt (eval_loss's one pass): irrelevant here
            return logits
        for b in range(B):
            target = self.answers[self.prompts[b]]
            i = self.emitted[b]
            token = target[i] + (1 if self.wrong_last and i == len(target) - 1 else 0)
            logits[b, -1, token % self.cfg.vocab_size] = 30.0
            self.emitted[b] += 1
        return logits


def test_metrics_of_an_oracle(data):
    from cotlab.data.prompts import render_eval

    dataset = open_dataset(data["eval"])
    rows, data_cfg = load_rows(dataset, 40), dataset.config
    prompt_cfg = PromptConfig(format="cot")
    batch = render_eval(rows, data_cfg, prompt_cfg, 40, data_cfg.split_seed("eval"))
    answers = {tuple(p.tolist()): t.tolist() for p, t in zip(batch.prompt_ids, batch.target)}
    cfg = model_config("smoke-tf4", data_cfg.vocab_size)
    for wrong_last, expected in ((False, 1.0), (True, 0.0)):
        scores = evaluate_accuracy(Oracle(cfg, answers, wrong_last), rows, data_cfg, prompt_cfg,
                                   batch_size=7, device="cpu")
        assert scores["answer_acc"] == scores["chain_acc_2"] == expected
        assert scores["chain_acc_0"] == scores["chain_acc_1"] == 1.0  # scored position by position
        assert scores["chain_loss_0"] == pytest.approx(0.0, abs=1e-3)
        assert scores["n"] == 40


@pytest.mark.parametrize(("fmt", "force"), [("cot_special_token", None), ("cot_special_token", "think"),
                                           ("standard_special_token", None),
                                           ("standard_special_token", "answer")])
def test_special_token_oracle_scores_one_with_and_without_forcing(data, fmt, force):
    """A model that emits exactly the target is right in every special-token format, including
    "answer directly", where the forced ⟨as⟩ is in the prompt and the output is y_C ⟨ae⟩ ⟨eos⟩."""
    from cotlab.data.prompts import render_eval

    dataset = open_dataset(data["special_eval"])
    rows, data_cfg = load_rows(dataset, 24), dataset.config
    prompt_cfg = PromptConfig(format=fmt, force=force)
    batch = render_eval(rows, data_cfg, prompt_cfg, 24, data_cfg.split_seed("eval"))
    answers = {tuple(p[m].tolist()): [t for t in target.tolist() if t != -100]
               for p, m, target in zip(batch.prompt_ids, batch.prompt_mask, batch.target)}

    class PaddedOracle(Oracle):
        """Prompts arrive left-padded: rows are looked up by their real tokens; after its target
        (ending in ⟨eos⟩) it repeats the last token, as decoding runs to the fixed budget."""

        def forward(self, input_ids, attention_mask=None, cache=None):
            B, T = input_ids.shape
            logits = torch.zeros(B, T, self.cfg.vocab_size)
            if cache is None:
                return logits
            if cache is not getattr(self, "cache", None):  # prefill
                mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask
                self.prompts = [tuple(row[m].tolist()) for row, m in zip(input_ids, mask)]
                self.cache, self.emitted = cache, [0] * B
            elif T > 1:  # the teacher-forced target (eval_loss)
                return logits
            for b in range(B):
                target = self.answers[self.prompts[b]]
                logits[b, -1, target[min(self.emitted[b], len(target) - 1)]] = 30.0
                self.emitted[b] += 1
            return logits

    cfg = model_config("smoke-tf4", data_cfg.vocab_size)
    scores = evaluate_accuracy(PaddedOracle(cfg, answers), rows, data_cfg, prompt_cfg,
                               batch_size=8, device="cpu")
    assert scores["answer_acc"] == scores["format_acc"] == 1.0, scores


def test_learns_a_fixed_task_far_above_the_majority_baseline(data, tmp_path):
    out = tmp_path / "run"
    sets = ["model=smoke-tf8", "lr=3e-3", "n_train=16000", "eval_every=250", "n_eval=256", "analysis_n=0"]
    assert cli(train_args(data, out, "cot", sets)) == 0
    last = pd.read_parquet(out / "metrics.parquet").iloc[-1]
    assert last["step"] == 250
    assert last["answer_acc"] > last["majority_baseline"] + 0.3, last.to_dict()
    assert last["eval_loss"] < 1.5


@pytest.mark.parametrize(("sets", "field"), [
    (["lrr=1"], "lrr"),  # unknown key
    (["batch_size=abc"], "batch_size"),  # wrong type
    (["lr=-1"], "lr"),
    (["betas=[0.9]"], "betas"),
    (["model=tf99"], "model"),
    (["precision=fp16"], "precision"),
    (["n_train=8"], "n_train"),  # fewer sequences than one batch
    (["n_eval=100000"], "n_eval"),  # more than the eval split holds
    (["eval_every=0"], "eval_every"),
    (["prompt.recipe.alpha=1"], "recipe"),  # a recipe without the hybrid format
    (["prompt.format=cot_special_token"], "format"),  # special tokens are off in this data
    (["prompt.offset=1000000000"], "prompt.offset"),  # an embedding of 10^9 rows cannot be built
    (["collective_timeout_s=0"], "collective_timeout_s"),
    (["checkpoint_every=0"], "checkpoint_every"),
    (["checkpoint_interval_s=0"], "checkpoint_interval_s"),
    (["checkpoint_interval_s=.nan"], "checkpoint_interval_s"),
])
def test_bad_config_is_one_named_line_and_writes_nothing(data, tmp_path, capsys, sets, field):
    out = tmp_path / "run"
    args = ["train", "--data", data["train"], "--eval-data", data["eval"], "--out", str(out)]
    for item in [*TINY, *sets]:
        args += ["--set", item]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not out.exists()


@pytest.mark.parametrize(("swap", "extra", "field"), [
    ("eval", [], "--eval-data"),  # the train split passed as eval data
    ("train", [], "--data"),  # the eval split passed as training data
    (None, ["--nproc", "2", "--set", "batch_size=15"], "batch_size"),  # not divisible by the ranks
    ("missing", [], "missing"),
])
def test_bad_inputs_are_one_named_line(data, tmp_path, capsys, swap, extra, field):
    out = tmp_path / "run"
    train, evals = data["train"], data["eval"]
    if swap == "eval":
        evals = train
    elif swap == "train":
        train = evals
    elif swap == "missing":
        train = str(tmp_path / "missing")
    args = ["train", "--data", train, "--eval-data", evals, "--out", str(out), *extra]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not out.exists()


def test_train_config_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay) == (5e-5, [0.9, 0.999], 1e-8, 0.01)
    assert (cfg.batch_size, cfg.eval_every, cfg.seed, cfg.precision, cfg.compile) == (64, 500, 42, "auto", False)
    assert load(TrainConfig, sets=["lr=5e-5"]).lr == 5e-5  # YAML 1.1 would read 5e-5 as a string
    with pytest.raises(ConfigError, match="n_train"):
        build(TrainConfig, {"n_train": 10, "batch_size": 64})



def test_rerun_with_other_threads_resumes_instead_of_refusing(data, tmp_path):
    """Snakemake caps a job's threads at --cores, so a rerun may differ in threads (and eval batch)."""
    out = tmp_path / "run"
    assert cli(train_args(data, out)) == 0
    assert cli(train_args(data, out, sets=[*TINY, "threads=2", "eval_batch_size=7"])) == 0
    assert cli(train_args(data, out, sets=[*TINY, "lr=0.5"])) == 2  # a result-changing value still refuses


def test_config_json_is_written_only_once_the_model_is_built(data, tmp_path, monkeypatch):
    """A run that dies building its model leaves no config.json to refuse the corrected rerun."""
    import cotlab.train

    out = tmp_path / "run"

    def cannot_build(*args, **kwargs):
        raise MemoryError("the model does not fit")

    with monkeypatch.context() as patch:
        patch.setattr(cotlab.train, "Transformer", cannot_build)
        with pytest.raises(MemoryError):
            cli(train_args(data, out, sets=[*TINY, "lr=1e-3"]))
    assert not (out / "config.json").exists()
    assert cli(train_args(data, out)) == 0  # corrected (another lr): not refused


def test_final_without_config_json_is_not_done(data, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)  # e.g. copied in, or left by another tool
    assert cli(train_args(data, out)) == 0
    assert "nothing to do" not in capsys.readouterr().out
    assert (out / "config.json").is_file() and load_hf(out / "final").cfg.vocab_size == 32


def test_unreadable_run_config_is_one_named_line(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for text in ('{"train": {"lr": 1', "[]"):
        (out / "config.json").write_text(text)
        assert cli(train_args(data, out)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{out / 'config.json'}:" in err, err


def test_data_id_must_match_both_manifests(data, tmp_path, capsys):
    out = tmp_path / "run"
    expected = open_dataset(data["train"]).manifest["data_id"]
    other = open_dataset(data["special_train"]).manifest["data_id"]
    assert cli([*train_args(data, out), "--data-id", other]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data=" in err and expected in err and other in err, err
    assert not out.exists()
    assert cli([*train_args(data, out), "--data-id", expected]) == 0


def test_a_diverging_run_stops_naming_the_step(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(train_args(data, out, sets=[*TINY, "lr=1e30"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(r"cotlab train: error: train_loss became (nan|inf) at step \d+ \(lr=1e\+30\)", err), err


def test_a_nan_loss_stops_the_run_before_it_is_recorded(data, tmp_path, capsys, monkeypatch):
    import cotlab.train

    calls = itertools.count(1)

    def poisoned(*args, **kwargs):
        loss, ce_sum, counts = step_loss(*args, **kwargs)
        return (loss * math.nan if next(calls) == 3 else loss), ce_sum, counts

    step_loss = cotlab.train.step_loss
    monkeypatch.setattr(cotlab.train, "step_loss", poisoned)
    out = tmp_path / "run"
    assert cli(train_args(data, out)) == 2
    assert capsys.readouterr().err.strip() == "cotlab train: error: train_loss became nan at step 3 (lr=5e-05)"
    assert pd.read_parquet(out / "metrics.parquet")["step"].tolist() == [0]  # step 4's eval never ran
    assert not (out / "checkpoints").exists() and not (out / "final").exists()


def test_tensorboard_logger_writes_the_metrics_of_every_evaluation(data, tmp_path):
    """--set logger=tensorboard: the scalars in RUN_DIR/tensorboard are metrics.parquet's rows, step for
    step; without it no event file is written. A rerun with it resumes (the logger changes no result)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain, logged = tmp_path / "plain", tmp_path / "logged"
    assert cli(train_args(data, plain)) == 0
    assert not (plain / "tensorboard").exists()
    assert cli(train_args(data, logged, sets=[*TINY, "logger=tensorboard"])) == 0
    events = EventAccumulator(str(logged / "tensorboard")).Reload()
    metrics = pd.read_parquet(logged / "metrics.parquet")
    for name in ("answer_acc", "eval_loss", "majority_baseline"):
        scalars = events.Scalars(name)
        assert [s.step for s in scalars] == metrics["step"].tolist()
        assert [s.value for s in scalars] == pytest.approx(metrics[name].tolist(), rel=1e-6)
    assert pd.read_parquet(plain / "metrics.parquet")["answer_acc"].tolist() == metrics["answer_acc"].tolist()


def test_cotlab_logger_environment_turns_the_logger_on_and_is_checked(data, tmp_path, monkeypatch, capsys):
    """The workflow's switch (COTLAB_LOGGER=tensorboard snakemake ...): no param changes, so no rerun."""
    monkeypatch.setenv("COTLAB_LOGGER", "tensorboard")
    assert cli(train_args(data, tmp_path / "run")) == 0
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    monkeypatch.setenv("COTLAB_LOGGER", "wandb")
    assert cli(train_args(data, tmp_path / "other")) == 2
    assert "logger='wandb'" in capsys.readouterr().err and not (tmp_path / "other").exists()
