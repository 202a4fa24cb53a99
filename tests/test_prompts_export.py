"""`cotlab prompts` and final/generation_config.json: a model trained by cotlab, run in Hugging Face
transformers on the exported prompts by the README's own snippet, is right on exactly the rows
where `cotlab evaluate` scores it right.

Two tiny runs of the quickstart's fixed task trained for a few steps (a plain `cot` run and a
`cot_special_token` run, so that some generations are right and some are not), every format
scored on 40 eval rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cotlab import metrics
from cotlab.checkpoint import generation_config, load_hf
from cotlab.cli import main as cli
from cotlab.config import ConfigError, DataConfig
from cotlab.data.store import open_dataset
from cotlab.evaluate import scored_formats
from cotlab.formats import PromptConfig
from cotlab.prompts_export import format_name, read_metadata
from cotlab.yamlio import parse_sets
from conftest import FIXED_TASK, generate_split

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
SPECIAL_POINT = [*FIXED_TASK, "special_tokens=true"]
TRAIN = ["model=smoke-tf4", "lr=3e-3", "eval_every=1000", "n_eval=40", "analysis_n=0"]
# Long enough that some answers are right; the special-token run so short that only some
# generations end well-formed (the ⟨eos⟩ cut of the README's snippet matters).
STEPS = {"plain": ["batch_size=32", "n_train=1024"], "special": ["batch_size=16", "n_train=256"]}
N = 40  # eval rows exported and scored

# (run, format, --set prompt options): the trained format, the other pure one (cross-format), and
# special-token prompts the evaluation can also be asked for (hybrid, drop-k, unforced).
CASES = [
    ("plain", "cot", []),
    ("plain", "standard", []),
    ("special", "cot_special_token", []),
    ("special", "standard_special_token", []),
    ("special", "hybrid_special_token", ["recipe.alpha=1"]),
    ("special", "cotsp", ["drop_k=2", "drop_strategy=random"]),
    ("special", "cot_special_token", ["force=null"]),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, str]]:
    """{plain, special} -> eval split, run directory and trained format, trained by `cotlab train`."""
    root = tmp_path_factory.mktemp("prompts")
    out = {}
    for name, point, fmt in (("plain", FIXED_TASK, "cot"), ("special", SPECIAL_POINT, "cot_special_token")):
        train = generate_split(root / f"{name}_train", "train", 1024, point)
        evals = generate_split(root / f"{name}_eval", "eval", 48, point)
        args = ["train", "--data", train, "--eval-data", evals, "--out", str(root / name), "--format", fmt]
        assert cli([*args, *(item for s in [*TRAIN, *STEPS[name]] for item in ("--set", s))]) == 0
        out[name] = {"eval": evals, "run": str(root / name), "format": fmt}
    return out


def readme_snippet(run_dir: str, prompts: Path) -> str:
    """The README's transformers example, pointed at `run_dir` and `prompts`."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- hf-example -->", 1)[1].split("<!-- /hf-example -->", 1)[0]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    for old, new in (('"results/smoke/runs/<run_id>"', repr(run_dir)), ('"prompts.parquet"', repr(str(prompts)))):
        assert old in code
        code = code.replace(old, new)
    return code


def cotlab_scores(run: dict[str, str], fmt: str, sets: list[str], monkeypatch):
    """What `cotlab evaluate` computes on the first N rows for `fmt`: per-row scores, and the
    prompts (unpadded) and budgets it hands to the decoder."""
    dataset = open_dataset(run["eval"])
    config = json.loads((Path(run["run"]) / "config.json").read_text())
    overrides = {"offset": config["train"]["prompt"]["offset"], **parse_sets(sets)}  # as evaluate does
    [(prompt_cfg, _)] = scored_formats(run["format"], dataset.config, overrides, [format_name(fmt)])
    fed, budgets, real = [], set(), metrics.prefill_and_decode

    def spy(model, prompt_ids, prompt_mask=None, max_new_tokens=1, stop_id=None, **kwargs):
        mask = torch.ones_like(prompt_ids, dtype=torch.bool) if prompt_mask is None else prompt_mask
        fed.extend(ids[keep].tolist() for ids, keep in zip(prompt_ids, mask))
        budgets.add(max_new_tokens)
        return real(model, prompt_ids, prompt_mask, max_new_tokens, stop_id, **kwargs)

    monkeypatch.setattr(metrics, "prefill_and_decode", spy)
    model = load_hf(Path(run["run"]) / "final").eval()
    scores = metrics.score_rows(model, dataset.read(0, N), dataset.config, prompt_cfg, batch_size=16, device="cpu")
    return scores, fed, budgets


@pytest.mark.parametrize("name, fmt, sets", CASES, ids=[f"{c[1]}{'+' if c[2] else ''}{'+'.join(c[2])}" for c in CASES])
def test_transformers_on_exported_prompts_scores_like_cotlab(runs, tmp_path, monkeypatch, capsys, name, fmt, sets):
    run = runs[name]
    out = tmp_path / "prompts.parquet"
    args = ["prompts", run["eval"], "--format", fmt, "--n", str(N), "--out", str(out)]
    assert cli([*args, *(item for s in sets for item in ("--set", s))]) == 0
    table = pq.read_table(out).to_pydict()
    assert list(table) == ["row", "prompt_ids", "target_ids", "answer", "answer_pos", "answer_suffix",
                           "max_new_tokens"]
    assert table["row"] == list(range(N))
    for target, pos, answer, suffix in zip(table["target_ids"], table["answer_pos"], table["answer"],
                                           table["answer_suffix"]):
        assert target[pos] == answer and target[-len(suffix):] == suffix

    scores, fed, budgets = cotlab_scores(run, fmt, sets, monkeypatch)
    assert table["prompt_ids"] == fed  # exactly what evaluation decodes from, forced token included
    assert set(table["max_new_tokens"]) == budgets
    dataset = open_dataset(run["eval"])
    assert [row[-1] for row in table["target_ids"]] == (
        [int(dataset.config.special_ids()["eos"])] * N if dataset.config.special_tokens
        else dataset.read(0, N).chain[:, -1, -1].tolist())

    capsys.readouterr()
    namespace: dict = {}
    exec(compile(readme_snippet(run["run"], out), "README.md", "exec"), namespace)
    assert namespace["correct"] == scores.answer.tolist()  # row for row
    assert f"answer_acc {scores.answer.mean():.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["plain", "special"])
def test_the_comparison_is_not_vacuous(runs, monkeypatch, name):
    """Over a run's cases some rows are right and some wrong, and, with special tokens, some
    generations end well-formed and some do not: equal scores above are not all-False or all-True."""
    scores = [cotlab_scores(runs[name], fmt, sets, monkeypatch)[0] for run, fmt, sets in CASES if run == name]
    answer = np.concatenate([s.answer for s in scores])
    assert answer.any() and not answer.all()
    if name == "special":
        valid = np.concatenate([s.valid for s in scores])
        assert valid.any() and not valid.all()


def test_the_readme_accuracy_is_cotlab_evaluates(runs, tmp_path, capsys):
    """The snippet's answer_acc equals the one `cotlab evaluate` writes, for each default format."""
    run = runs["plain"]
    scores = tmp_path / "eval.parquet"
    assert cli(["evaluate", run["run"], "--eval-data", run["eval"], "--out", str(scores), "--n", str(N),
                "--n-attn", "4"]) == 0
    written = dict(zip(*pq.read_table(scores, columns=["format", "answer_acc"]).to_pydict().values()))
    for fmt, acc in written.items():
        out = tmp_path / f"{fmt}.parquet"
        assert cli(["prompts", run["eval"], "--format", fmt, "--n", str(N), "--out", str(out)]) == 0
        namespace: dict = {}
        exec(compile(readme_snippet(run["run"], out), "README.md", "exec"), namespace)
        assert sum(namespace["correct"]) / N == acc


def test_final_holds_a_generation_config_that_transformers_reads(runs):
    special = transformers.GenerationConfig.from_pretrained(Path(runs["special"]["run"]) / "final")
    assert (special.bos_token_id, special.eos_token_id, special.pad_token_id) == (30, 29, 31)  # V-2, V-3, V-1
    assert special.do_sample is False and special.num_beams == 1
    assert special.max_new_tokens == 3 + 4  # C + 5 with ⟨ts⟩ forced, as cotlab evaluate decodes
    plain = json.loads((Path(runs["plain"]["run"]) / "final" / "generation_config.json").read_text())
    assert plain == {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None, "do_sample": False,
                     "num_beams": 1, "max_new_tokens": 3}  # C; no special ids to invent
    model = transformers.LlamaForCausalLM.from_pretrained(Path(runs["special"]["run"]) / "final")
    assert model.generation_config.eos_token_id == 29


def test_the_file_metadata_names_the_special_ids(runs, tmp_path):
    out = tmp_path / "p.parquet"
    assert cli(["prompts", runs["special"]["eval"], "--format", "stdsp", "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert (meta["bos_token_id"], meta["eos_token_id"], meta["pad_token_id"]) == (30, 29, 31)
    assert meta["format"] == "standard_special_token" and meta["prompt"]["force"] == "answer" and meta["n"] == 48
    assert meta["data_id"] == open_dataset(runs["special"]["eval"]).manifest["data_id"]
    assert pq.read_metadata(out).num_rows == 48  # --n defaults to the whole split


@pytest.mark.parametrize("fmt, budget, recipe", [("standard", 1, None), ("cot", 3, None),
                                                  ("standard_special_token", 7, None),
                                                  ("cot_special_token", 7, None),
                                                  ("hybrid_special_token", 8, {"alpha": 1.0})])
def test_generation_config_per_format_with_an_offset(fmt, budget, recipe):
    special = fmt.endswith("special_token")
    data_cfg = DataConfig(vocab_size=64, chain_length=3, special_tokens=special)
    cfg = generation_config(data_cfg, PromptConfig(format=fmt, offset=100, recipe=recipe))
    ids = (164 - 2, 164 - 3, 164 - 1) if special else (None, None, None)  # bos, eos, pad, shifted by the offset
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == ids
    assert cfg["max_new_tokens"] == budget and cfg["do_sample"] is False
    run_budget = generation_config(data_cfg, PromptConfig(format=fmt, offset=100, recipe=recipe), 100)
    assert run_budget == {**cfg, "max_new_tokens": 100}  # a run's eval_max_new_tokens (paper 2) is kept


def test_a_model_saved_outside_a_run_directory_gets_no_generation_config(tmp_path):
    from cotlab.checkpoint import save_hf
    from cotlab.model import Transformer
    from cotlab.model_config import model_config

    directory = save_hf(Transformer(model_config("smoke-tf4", 32)), tmp_path / "final")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]


def test_format_slugs_are_accepted_and_unknown_names_refused():
    assert [format_name(s) for s in ("std", "cot", "cotsp", "hyb", "standard")] == [
        "standard", "cot", "cot_special_token", "hybrid_special_token", "standard"]
    with pytest.raises(ConfigError, match=r"^--format='cots': must be a format \(standard, cot"):
        format_name("cots")
