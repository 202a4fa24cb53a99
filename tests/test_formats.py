"""The table of prompt formats: every fact agrees with what the renderer and the scorer do."""

from __future__ import annotations

import numpy as np
import pytest

from cotlab.config import DataConfig
from cotlab.data.generate import generate_rows
from cotlab.data.prompts import render_eval, render_train
from cotlab.formats import FORMATS, PromptConfig, evaluated_formats

K, N, C = 5, 3, 3


def prompt(name: str) -> PromptConfig:
    recipe = {"recipe": {"alpha": 1.0}} if FORMATS[name].mixed else {}
    return PromptConfig(format=name, **recipe)


def data(name: str) -> DataConfig:
    return DataConfig(vocab_size=48, n_inputs=N, n_parents=2, chain_length=C, n_examples=K, n_sequences=8,
                      special_tokens=FORMATS[name].special)


@pytest.mark.parametrize("name", list(FORMATS))
def test_sequence_length_is_the_rendered_length(name: str) -> None:
    cfg = data(name)
    rows = generate_rows(cfg, "train", 0, 8)
    batch = render_train(rows, cfg, prompt(name), n_rows=len(rows))
    expected = FORMATS[name].sequence_length(K, N, C)
    if FORMATS[name].mixed:  # an upper bound, reached only when every example is in CoT form
        assert batch.input_ids.shape[1] <= expected
        assert render_train(rows, cfg, PromptConfig(format=name, recipe={"alpha": 0.0}), len(rows)).input_ids.shape[1] == expected
    else:
        assert batch.input_ids.shape[1] == expected


@pytest.mark.parametrize("name", list(FORMATS))
def test_chain_columns_and_cot_match_the_eval_target(name: str) -> None:
    cfg = data(name)
    rows = generate_rows(cfg, "eval", 0, 8)
    spec = FORMATS[name]
    force = {"force": "think"} if spec.mixed else {}  # a mixed query may go either way: force CoT
    batch = render_eval(rows, cfg, prompt(name).model_copy(update=force), n_rows=len(rows), eval_seed=1)
    chain = [t for t in batch.target[0] if t >= 0 and t not in cfg.special_ids().values()]
    assert len(chain) == spec.chain_columns(C) == (C if spec.with_cot or spec.mixed else 1)


def test_the_evaluated_formats_put_cot_first_and_leave_out_the_mixed_one() -> None:
    assert evaluated_formats(False) == ["cot", "standard"]
    assert evaluated_formats(True) == ["cot_special_token", "standard_special_token"]
    assert [FORMATS[f].eval_force for f in evaluated_formats(True)] == ["think", "answer"]


def test_slugs_are_unique_and_only_plain_cot_has_parent_attention() -> None:
    assert len({f.slug for f in FORMATS.values()}) == len(FORMATS)
    assert [n for n, f in FORMATS.items() if f.parent_attention] == ["cot"]
    assert [n for n, f in FORMATS.items() if f.think_spans] == ["cot_special_token", "hybrid_special_token"]
    assert np.all([f.special == n.endswith("_special_token") for n, f in FORMATS.items()])
