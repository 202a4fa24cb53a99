"""Prompt rendering (docs/prompts.md): worked vectors, a naive per-row oracle, the recipe, edits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cotlab.config import ConfigError, DataConfig, build
from cotlab.yamlio import load
from cotlab.data.generate import Rows
from cotlab.formats import PromptConfig, RecipeConfig
from cotlab.data.prompts import (IGNORE, cot_examples, recipe_probability, recipe_slot,
                                 render_eval, render_train)

U32 = 2**32


def make_rows(inputs, chain, cot_u=None, seq_idx=None) -> Rows:
    """Rows from nested lists: inputs (n, K, N), chain (n, K, C), coins (n, K)."""
    inputs = np.asarray(inputs, np.int32)
    chain = np.asarray(chain, np.int32)
    n, _, C = chain.shape
    dag = np.zeros((n, C, 1), np.int32)  # rendering never reads the DAG
    return Rows(seq_idx=np.arange(n, dtype=np.int64) if seq_idx is None else np.asarray(seq_idx, np.int64),
                inputs=inputs, chain=chain, dag=dag, h_ids=None,
                cot_u=None if cot_u is None else np.asarray(cot_u, np.uint32))


def random_rows(rng, n, K, N, C, v_eff, coins=False, first=0) -> Rows:
    return make_rows(rng.integers(0, v_eff, (n, K, N)), rng.integers(0, v_eff, (n, K, C)),
                     rng.integers(0, U32, (n, K), dtype=np.uint32) if coins else None,
                     np.arange(first, first + n))


def prompt(**values) -> PromptConfig:
    return build(PromptConfig, values)


def unpad(ids, mask):
    return [list(map(int, row[m])) for row, m in zip(ids, mask)]


# --- worked vectors (docs/prompts.md ("A worked example")) --------------------------------------

REF = dict(inputs=[[[1, 2, 3], [7, 8, 9]]], chain=[[[4, 5, 6], [10, 11, 12]]])
REF_CFG = DataConfig(vocab_size=64, n_inputs=3, n_parents=2, chain_length=3, n_examples=2)
M = -100


@pytest.mark.parametrize("fmt, ids, labels, eval_prompt, target", [
    ("standard", [1, 2, 3, 6, 7, 8, 9, 12], [M, M, M, 6, M, M, M, 12], [1, 2, 3, 6, 7, 8, 9], [12]),
    ("cot", list(range(1, 13)), [M, M, M, 4, 5, 6, M, M, M, 10, 11, 12], list(range(1, 10)), [10, 11, 12]),
])
def test_reference_unit_vectors(fmt, ids, labels, eval_prompt, target):
    rows = make_rows(**REF)
    train = render_train(rows, REF_CFG, prompt(format=fmt), 1)
    assert train.input_ids.tolist() == [ids] and train.labels.tolist() == [labels]
    assert train.attention_mask.all() and train.input_ids.dtype == np.int64
    ev = render_eval(rows, REF_CFG, prompt(format=fmt), 1, eval_seed=0)
    assert ev.prompt_ids.tolist() == [eval_prompt] and ev.prompt_mask.all()
    assert ev.target.tolist() == [target] and ev.target[0, ev.answer_pos[0]] == 12


def test_readme_example_single_example():
    cfg = DataConfig(vocab_size=1024, n_inputs=4, n_parents=2, chain_length=3, n_examples=1)
    rows = make_rows([[[556, 197, 1002, 867]]], [[[240, 466, 217]]])
    train = render_train(rows, cfg, prompt(format="cot"), 1)
    assert train.input_ids.tolist() == [[556, 197, 1002, 867, 240, 466, 217]]
    assert train.labels.tolist() == [[M, M, M, M, 240, 466, 217]]
    ev = render_eval(rows, cfg, prompt(format="cot"), 1, eval_seed=0)
    assert ev.prompt_ids.tolist() == [[556, 197, 1002, 867]]
    assert ev.target.tolist() == [[240, 466, 217]] and ev.answer_pos.tolist() == [2]


@pytest.mark.parametrize("fmt, ids, labels, eval_prompt, target", [
    ("standard", [1, 3, 5, 0, 1, 2], [M, M, 5, M, M, 2], [1, 3, 5, 0, 1], [2]),
    ("cot", [1, 3, 4, 5, 0, 1, 0, 2], [M, M, 4, 5, M, M, 0, 2], [1, 3, 4, 5, 0, 1], [0, 2]),
])
def test_worked_example_a(fmt, ids, labels, eval_prompt, target):
    cfg = DataConfig(vocab_size=8, n_dims=2, n_inputs=2, n_parents=2, chain_length=2, n_examples=2)
    rows = make_rows([[[1, 3], [0, 1]]], [[[4, 5], [0, 2]]])
    train = render_train(rows, cfg, prompt(format=fmt), 1)
    assert train.input_ids.tolist() == [ids] and train.labels.tolist() == [labels]
    ev = render_eval(rows, cfg, prompt(format=fmt), 1, eval_seed=0)
    assert ev.prompt_ids.tolist() == [eval_prompt] and ev.target.tolist() == [target]


def test_cot_special_token_vector():
    cfg = REF_CFG.model_copy(update={"special_tokens": True})
    s = cfg.special_ids()
    bos, eos, is_, ie, ts, te, as_, ae = (s[k] for k in ("bos", "eos", "input_start", "input_end",
                                                         "think_start", "think_end", "answer_start",
                                                         "answer_end"))
    rows = make_rows(**REF)
    train = render_train(rows, cfg, prompt(format="cot_special_token"), 1)
    ids = [bos, is_, 1, 2, 3, ie, ts, 4, 5, te, as_, 6, ae, eos, is_, 7, 8, 9, ie, ts, 10, 11, te, as_, 12, ae, eos]
    assert train.input_ids.tolist() == [ids]
    context = {1, 2, 3, 4, 5, 14, 15, 16, 17, 18}  # ⟨is⟩ x ⟨ie⟩ of both examples
    assert train.labels.tolist() == [[M if i in context else t for i, t in enumerate(ids)]]
    ev = render_eval(rows, cfg, prompt(format="cot_special_token"), 1, eval_seed=0)
    assert ev.prompt_ids.tolist() == [ids[:19]]
    assert ev.target.tolist() == [[ts, 10, 11, te, as_, 12, ae, eos]]
    assert ev.answer_pos.tolist() == [5] and ev.target[0, -3] == 12


WORKED_B = DataConfig(vocab_size=16, n_dims=2, n_inputs=3, n_parents=2, chain_length=3, n_examples=2,
                      activation="relu", h_num_layers=2, special_tokens=True)


def test_worked_example_b_hybrid():
    assert WORKED_B.special_ids() == dict(pad=15, bos=14, eos=13, input_start=12, input_end=11,
                                          think_start=10, think_end=9, answer_start=8, answer_end=7)
    # coins: example 1 is CoT (0 < 2^31), the query is standard (2^32-1 >= 2^31) at r = 0.5, i.e. in
    # recipe slot 1 of 2; the row holding that slot is found through the data seed's permutation
    seq_idx = int(np.flatnonzero(recipe_slot(np.arange(2), 2, WORKED_B.seed) == 1)[0])
    rows = make_rows([[[1, 3, 2], [0, 3, 1]]], [[[1, 0, 4], [4, 0, 4]]], cot_u=[[0, U32 - 1]], seq_idx=[seq_idx])
    cfg = prompt(format="hybrid_special_token", recipe={"alpha": 1.0})  # r = 1/2 at slot 1 of 2
    assert cot_examples(rows, cfg, 2, WORKED_B.seed).tolist() == [[True, False]]
    train = render_train(rows, WORKED_B, cfg, 2)
    assert train.input_ids.tolist() == [[14, 12, 1, 3, 2, 11, 10, 1, 0, 9, 8, 4, 7, 13, 12, 0, 3, 1, 11, 8, 4, 7, 13]]
    assert train.labels.tolist() == [[14] + [M] * 5 + [10, 1, 0, 9, 8, 4, 7, 13] + [M] * 5 + [8, 4, 7, 13]]
    ev = render_eval(rows, WORKED_B, cfg, 2, eval_seed=0)
    assert ev.prompt_ids.tolist() == [[14, 12, 1, 3, 2, 11, 10, 1, 0, 9, 8, 4, 7, 13, 12, 0, 3, 1, 11]]
    assert ev.target.tolist() == [[8, 4, 7, 13]] and ev.answer_pos.tolist() == [1]


# --- a naive per-row oracle written from docs/prompts.md ("The five formats") ---------------------

def oracle_example(x, y, cot, s, drop=False):
    head = [s["input_start"], *x, s["input_end"]]
    think = [s["think_start"], *y[:-1], s["think_end"]] if cot and not drop else []
    return head, think + [s["answer_start"], y[-1], s["answer_end"], s["eos"]]


def oracle_train(x, y, cot, s):
    ids, labels = [s["bos"]], [s["bos"]]
    for k in range(len(x)):
        head, rest = oracle_example(list(x[k]), list(y[k]), cot[k], s)
        ids += head + rest
        labels += [IGNORE] * len(head) + rest
    return ids, labels


def oracle_eval(x, y, cot, s, dropped=(), force=None):
    K = len(x)
    ids = [s["bos"]]
    for k in range(K - 1):
        head, rest = oracle_example(list(x[k]), list(y[k]), cot[k], s, drop=k in dropped)
        ids += head + rest
    head, rest = oracle_example(list(x[-1]), list(y[-1]), cot[-1] if force is None else force == "think", s)
    ids += head
    if force is not None:
        ids.append(rest.pop(0))
    return ids, rest


@pytest.mark.parametrize("fmt", ["standard_special_token", "cot_special_token", "hybrid_special_token"])
def test_special_formats_match_naive_oracle(fmt):
    cfg = DataConfig(vocab_size=40, n_inputs=3, n_parents=2, chain_length=2, n_examples=5, special_tokens=True)
    s = cfg.special_ids()
    rows = random_rows(np.random.default_rng(0), 32, 5, 3, 2, cfg.n_usable, coins=True)
    pcfg = prompt(format=fmt, recipe={"alpha": 1.0} if fmt.startswith("hybrid") else None)
    cot = cot_examples(rows, pcfg, 32, cfg.seed)
    train = render_train(rows, cfg, pcfg, 32)
    ev = render_eval(rows, cfg, pcfg, 32, eval_seed=0)
    for i in range(32):
        ids, labels = oracle_train(rows.inputs[i], rows.chain[i], cot[i], s)
        pad = train.input_ids.shape[1] - len(ids)  # left padding
        assert train.input_ids[i].tolist() == [s["pad"]] * pad + ids
        assert train.labels[i].tolist() == [IGNORE] * pad + labels
        assert train.attention_mask[i].tolist() == [False] * pad + [True] * len(ids)
        prompt_ids, target = oracle_eval(rows.inputs[i], rows.chain[i], cot[i], s)
        pad = ev.prompt_ids.shape[1] - len(prompt_ids)
        assert ev.prompt_ids[i].tolist() == [s["pad"]] * pad + prompt_ids
        assert ev.prompt_mask[i].tolist() == [False] * pad + [True] * len(prompt_ids)
        assert ev.target[i].tolist() == target + [IGNORE] * (ev.target.shape[1] - len(target))
        assert ev.target[i, ev.answer_pos[i]] == rows.chain[i, -1, -1] and ev.answer_pos[i] == len(target) - 3
    if fmt.startswith("hybrid"):
        assert 0 < cot.mean() < 1 and len(set(train.attention_mask.sum(1).tolist())) > 1


# --- every format from the same rows; the hybrid's CoT examples ---------------------------------

def test_standard_and_cot_from_the_same_rows_and_label_counts():
    K, N, C = 6, 4, 3
    cfg = DataConfig(vocab_size=50, n_inputs=N, n_parents=2, chain_length=C, n_examples=K)
    rows = random_rows(np.random.default_rng(1), 16, K, N, C, cfg.n_usable)
    std = render_train(rows, cfg, prompt(format="standard"), 16)
    cot = render_train(rows, cfg, prompt(format="cot"), 16)
    assert ((std.labels != IGNORE).sum(1) == K).all() and ((cot.labels != IGNORE).sum(1) == K * C).all()
    assert std.input_ids.shape == (16, K * (N + 1)) and cot.input_ids.shape == (16, K * (N + C))
    keep = np.tile(np.r_[np.ones(N, bool), np.zeros(C - 1, bool), True], K)  # drop y_1..y_{C-1}
    assert (cot.input_ids[:, keep] == std.input_ids).all() and (cot.labels[:, keep] == std.labels).all()

    special = cfg.model_copy(update={"special_tokens": True})
    rows = random_rows(np.random.default_rng(1), 16, K, N, C, special.n_usable)
    std = render_train(rows, special, prompt(format="standard_special_token"), 16)
    cot = render_train(rows, special, prompt(format="cot_special_token"), 16)
    assert ((std.labels != IGNORE).sum(1) == 1 + 4 * K).all()
    assert ((cot.labels != IGNORE).sum(1) == 1 + (C + 5) * K).all()


def hybrid_batch(alpha, n=400, K=10, **kwargs):
    cfg = DataConfig(vocab_size=30, n_inputs=2, n_parents=2, chain_length=2, n_examples=K, special_tokens=True)
    rows = random_rows(np.random.default_rng(2), n, K, 2, 2, cfg.n_usable, coins=True)
    pcfg = prompt(format="hybrid_special_token", recipe={"alpha": alpha, **kwargs})
    return cfg, rows, pcfg, render_train(rows, cfg, pcfg, n)


def test_hybrid_recipe_extremes_and_cot_share():
    cfg, _, _, never = hybrid_batch(math.inf)
    assert not (never.input_ids == cfg.special_ids()["think_start"]).any()
    cfg, _, _, always = hybrid_batch(0.0)
    assert ((always.input_ids == cfg.special_ids()["think_start"]).sum(1) == 10).all()

    cfg, rows, pcfg, batch = hybrid_batch(1.0)
    spans = (batch.input_ids == cfg.special_ids()["think_start"]).sum()
    p = recipe_probability(recipe_slot(rows.seq_idx, 400, cfg.seed), 400, pcfg.recipe).mean()  # ≈ 0.5
    trials = 400 * 10
    half_width = 4 * math.sqrt(trials * p * (1 - p))  # ±4σ binomial interval, ~1/16,000 false alarms
    assert abs(spans - trials * p) < half_width
    think = (batch.input_ids == cfg.special_ids()["think_start"]).sum(1)
    assert (cot_examples(rows, pcfg, 400, cfg.seed).sum(1) == think).all()


def test_cot_threshold_and_nested_sets():
    recipe = {"alpha": 0.0, "scale": 0.0}
    rows = make_rows(np.zeros((1, 4, 1)), np.zeros((1, 4, 1)), cot_u=[[2**31 - 1, 2**31, 0, U32 - 1]])
    half = prompt(format="hybrid_special_token", recipe={**recipe, "p0": 0.5})
    assert cot_examples(rows, half, 1, 0).tolist() == [[True, False, True, False]]
    one = prompt(format="hybrid_special_token", recipe={**recipe, "p0": 1.0})
    assert cot_examples(rows, one, 1, 0).all()  # threshold 2^32: even the largest coin is CoT
    zero = prompt(format="hybrid_special_token", recipe={**recipe, "p0": 0.0})
    assert not cot_examples(rows, zero, 1, 0).any()
    # CoT sets are nested across alpha (smaller alpha -> larger r -> superset): the recipe's
    # permutation of the rows does not depend on the recipe (tests/data/test_recipe_order.py)
    cfg, rows, _, _ = hybrid_batch(1.0)
    sets = [cot_examples(rows, prompt(format="hybrid_special_token", recipe={"alpha": a}), 400, cfg.seed)
            for a in (0.0, 0.5, 1.0, 2.0, math.inf)]
    for bigger, smaller in zip(sets, sets[1:]):
        assert (smaller <= bigger).all()


def test_hybrid_needs_coins():
    cfg = WORKED_B
    rows = make_rows([[[1, 3, 2], [0, 3, 1]]], [[[1, 0, 4], [4, 0, 4]]])
    with pytest.raises(ConfigError, match="cot_u"):
        render_train(rows, cfg, prompt(format="hybrid_special_token", recipe={"alpha": 1.0}), 1)


DROP_CFG = DataConfig(vocab_size=40, n_inputs=2, n_parents=2, chain_length=3, n_examples=6, special_tokens=True)


def drop_eval(k, strategy, rows=None, fmt="cot_special_token", eval_seed=7, **extra):
    rows = rows if rows is not None else random_rows(np.random.default_rng(3), 20, 6, 2, 3, 31, coins=True)
    pcfg = prompt(format=fmt, drop_k=k, drop_strategy=strategy, **extra)
    return rows, render_eval(rows, DROP_CFG, pcfg, len(rows.seq_idx) + 100, eval_seed=eval_seed)


def dropped_demos(rows, ev):
    """Recover which demos have no think span by scanning each unpadded prompt (5 demos)."""
    s = DROP_CFG.special_ids()
    out = []
    for ids in unpad(ev.prompt_ids, ev.prompt_mask):
        demos = []
        for k, start in enumerate(i for i, t in enumerate(ids) if t == s["input_start"]):
            if k < 5:
                demos.append(ids[start + 4] != s["think_start"])  # ⟨is⟩ x1 x2 ⟨ie⟩ then ⟨ts⟩ or ⟨as⟩
        out.append({k for k, dropped in enumerate(demos) if dropped})
    return out


@pytest.mark.parametrize("strategy, expected", [("first_k", {0, 1}), ("last_k", {3, 4})])
def test_drop_k_first_and_last(strategy, expected):
    rows, full = drop_eval(0, strategy)
    rows, ev = drop_eval(2, strategy, rows)
    s = DROP_CFG.special_ids()
    spans = lambda batch: (batch.prompt_ids == s["think_start"]).sum(1)  # noqa: E731
    assert (spans(full) - spans(ev) == 2).all() and (spans(ev) == 3).all()
    assert all(d == expected for d in dropped_demos(rows, ev))
    assert (ev.target == full.target).all()
    # each affected demo reads exactly as its standard form
    std = render_eval(rows, DROP_CFG, prompt(format="standard_special_token"), 120, eval_seed=7)
    assert all(len(a) - len(b) == 3 * (DROP_CFG.chain_length + 1) for a, b in zip(unpad(ev.prompt_ids, ev.prompt_mask),
                                                                   unpad(std.prompt_ids, std.prompt_mask)))


def test_drop_k_random_is_keyed_nested_and_batch_independent():
    rows, _ = drop_eval(0, "random")
    previous = [set()] * 20
    for k in range(1, 6):
        _, ev = drop_eval(k, "random", rows)
        dropped = dropped_demos(rows, ev)
        assert all(len(d) == k and prev < d for d, prev in zip(dropped, previous))
        previous = dropped
    _, ev2 = drop_eval(2, "random", rows)
    sub = rows.take(slice(5, 9))
    _, part = drop_eval(2, "random", sub)
    assert dropped_demos(sub, part) == dropped_demos(rows, ev2)[5:9]
    _, other_seed = drop_eval(2, "random", rows, eval_seed=8)
    assert dropped_demos(rows, other_seed) != dropped_demos(rows, ev2)


def test_drop_k_above_spans_raises():
    rows = make_rows(np.ones((1, 6, 2)), np.ones((1, 6, 3)), cot_u=[[0, U32 - 1, U32 - 1, 0, U32 - 1, 0]])
    # r = 0.5: demos 0 and 3 are CoT, so k = 2 works and k = 3 does not
    kwargs = dict(fmt="hybrid_special_token", recipe={"alpha": 0.0, "scale": 0.0, "p0": 0.5})
    without_span = lambda k: dropped_demos(rows, drop_eval(k, "last_k", rows, **kwargs)[1])  # noqa: E731
    assert without_span(0) == [{1, 2, 4}] and without_span(1) == [{1, 2, 3, 4}]
    assert without_span(2) == [{0, 1, 2, 3, 4}]
    with pytest.raises(ConfigError, match=r"drop_k=3: .*has 2"):
        drop_eval(3, "last_k", rows, **kwargs)


@pytest.mark.parametrize("fmt", ["standard", "cot", "cot_special_token", "hybrid_special_token"])
def test_offset_shifts_ids_and_keeps_ignore(fmt):
    special = fmt.endswith("special_token")
    cfg = DataConfig(vocab_size=40, n_inputs=2, n_parents=2, chain_length=3, n_examples=4, special_tokens=special)
    rows = random_rows(np.random.default_rng(4), 8, 4, 2, 3, cfg.n_usable, coins=special)
    recipe = {"alpha": 1.0} if fmt.startswith("hybrid") else None
    base_t = render_train(rows, cfg, prompt(format=fmt, recipe=recipe), 8)
    base_e = render_eval(rows, cfg, prompt(format=fmt, recipe=recipe), 8, 0)
    t = render_train(rows, cfg, prompt(format=fmt, recipe=recipe, offset=1000), 8)
    e = render_eval(rows, cfg, prompt(format=fmt, recipe=recipe, offset=1000), 8, 0)
    assert (t.input_ids == base_t.input_ids + 1000).all() and (t.attention_mask == base_t.attention_mask).all()
    assert ((t.labels == IGNORE) == (base_t.labels == IGNORE)).all() and (base_t.labels == IGNORE).any()
    assert (t.labels[t.labels != IGNORE] == base_t.labels[base_t.labels != IGNORE] + 1000).all()
    assert (e.prompt_ids == base_e.prompt_ids + 1000).all()
    assert ((e.target == IGNORE) == (base_e.target == IGNORE)).all()
    assert (e.target[e.target != IGNORE] == base_e.target[base_e.target != IGNORE] + 1000).all()


@pytest.mark.parametrize("force", ["think", "answer"])
@pytest.mark.parametrize("fmt", ["standard_special_token", "cot_special_token", "hybrid_special_token"])
def test_force_appends_the_token_and_trims_the_target(fmt, force):
    cfg = DataConfig(vocab_size=40, n_inputs=3, n_parents=2, chain_length=2, n_examples=5, special_tokens=True)
    s = cfg.special_ids()
    rows = random_rows(np.random.default_rng(5), 16, 5, 3, 2, cfg.n_usable, coins=True)
    pcfg = prompt(format=fmt, force=force, recipe={"alpha": 1.0} if fmt.startswith("hybrid") else None)
    ev = render_eval(rows, cfg, pcfg, 16, 0)
    base = render_eval(rows, cfg, prompt(format=fmt, recipe=pcfg.recipe), 16, 0)
    forced = s["think_start"] if force == "think" else s["answer_start"]
    assert (ev.prompt_ids[:, -1] == forced).all()
    assert unpad(ev.prompt_ids, ev.prompt_mask) == [p + [forced] for p in unpad(base.prompt_ids, base.prompt_mask)]
    y = rows.chain[:, -1]
    expected = [list(map(int, r[:-1])) + [s["think_end"], s["answer_start"]] if force == "think" else []
                for r in y]
    expected = [e + [int(r[-1]), s["answer_end"], s["eos"]] for e, r in zip(expected, y)]
    assert [list(row[row != IGNORE]) for row in ev.target] == expected
    assert (ev.target[np.arange(16), ev.answer_pos] == y[:, -1]).all()


# --- the recipe and the prompt config --------------------------------------------------------------

def test_recipe_values():
    recipe = lambda **kw: build(RecipeConfig, kw)  # noqa: E731
    idx = np.arange(10)
    assert (recipe_probability(idx, 10, recipe(alpha=0.0)) == 1).all()  # 0**0 = 1 included
    assert (recipe_probability(idx, 10, recipe(alpha=math.inf)) == 0).all()  # x**inf = 0 for x < 1
    assert recipe_probability(np.array([5]), 10, recipe(alpha=1.0)).tolist() == [0.5]
    assert recipe_probability(np.array([1]), 10, recipe(alpha=1.0, scale=10.0, p0=0.5, p1=0.9)).tolist() == [0.9]
    r = recipe_probability(np.arange(100_000), 100_000, recipe(alpha=2.0))
    assert r.dtype == np.float64 and abs(r.mean() - 1 / 3) < 1e-4


def test_recipe_alpha_inf_from_yaml(tmp_path):
    file = tmp_path / "prompt.yaml"
    file.write_text("format: hybrid_special_token\nrecipe:\n  alpha: .inf\n")
    cfg = load(PromptConfig, file)
    assert cfg.recipe.alpha == math.inf and cfg.recipe.p1 == 1.0
    assert build(PromptConfig, cfg.to_dict()) == cfg


@pytest.mark.parametrize("values, message", [
    ({"format": "chat"}, "format='chat'"),
    ({"format": "hybrid_special_token"}, "recipe=None: hybrid_special_token needs a recipe"),
    ({"format": "cot", "recipe": {"alpha": 1.0}}, "only format=hybrid_special_token uses a recipe"),
    ({"format": "hybrid_special_token", "recipe": {"alpha": 1.0, "p0": 0.8, "p1": 0.2}},
     "recipe.p0=0.8: must be <= p1=0.2"),
    ({"format": "hybrid_special_token", "recipe": {"alpha": -1.0}}, "recipe.alpha=-1.0: must be >= 0"),
    ({"format": "hybrid_special_token", "recipe": {"alpha": 1.0, "p1": 1.5}}, "recipe.p1=1.5: must lie in [0, 1]"),
    ({"format": "hybrid_special_token", "recipe": {"alpha": 1.0, "scale": -1.0}}, "recipe.scale=-1.0"),
    ({"format": "hybrid_special_token", "recipe": {"alpha": 1.0, "beta": 1.0}}, "recipe.beta: unknown key"),
    ({"format": "cot_special_token", "drop_k": -1}, "drop_k=-1: must be >= 0"),
    ({"format": "cot", "drop_k": 1}, "drop_k=1: needs a format with think spans"),
    ({"format": "standard_special_token", "drop_k": 1}, "drop_k=1: needs a format with think spans"),
    ({"format": "cot_special_token", "drop_strategy": "middle"}, "drop_strategy='middle'"),
    ({"format": "standard", "force": "think"}, "force='think': needs a special-token format"),
    ({"format": "cot_special_token", "force": "both"}, "force='both'"),
    ({"format": "cot", "offset": -3}, "offset=-3: must be >= 0"),
])
def test_bad_prompt_config(values, message):
    with pytest.raises(ConfigError) as err:
        build(PromptConfig, values)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("values, data, message", [
    ({"format": "cot"}, {"special_tokens": True}, "format='cot': needs special_tokens=false"),
    ({"format": "standard"}, {"special_tokens": True}, "format='standard': needs special_tokens=false"),
    ({"format": "cot_special_token"}, {}, "format='cot_special_token': needs special_tokens=true"),
    ({"format": "hybrid_special_token", "recipe": {"alpha": 1.0}}, {}, "needs special_tokens=true"),
    ({"format": "cot_special_token", "drop_k": 4}, {"special_tokens": True, "n_examples": 4},
     "drop_k=4: must be <= n_examples-1=3"),
])
def test_prompt_config_against_data_config(values, data, message):
    with pytest.raises(ConfigError) as err:
        build(PromptConfig, values).check(DataConfig(**data))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fmt, special", [("standard", False), ("cot", False), ("standard_special_token", True),
                                          ("cot_special_token", True)])
def test_good_prompt_config_passes_check(fmt, special):
    build(PromptConfig, {"format": fmt}).check(DataConfig(special_tokens=special))
    edits = {"drop_k": 39, "force": "answer", "offset": 5} if fmt == "cot_special_token" else {}
    build(PromptConfig, {"format": fmt, **edits}).check(DataConfig(special_tokens=special))
