"""Per-sequence shapes (paper 2): choice lists for N, M, C, K drawn per row, stored per row, rendered
per row (docs/data.md ("Per-sequence shapes"))."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from cotlab.config import ConfigError, DataConfig, build, data_id, other_tasks
from cotlab.data.coverage import in_context_majority
from cotlab.data.generate import (ABSENT, BLOCK_SIZE, chain_tokens, draw_rows, generate_rows, global_objects,
                                  present_masks)
from cotlab.data.prompts import render_eval, render_train
from cotlab.data.store import open_dataset, rows_to_table, table_to_rows
from cotlab.formats import PromptConfig

MIXED = dict(vocab_size=64, n_dims=6, n_inputs=[3, 4], n_parents=[3, 4], chain_length=[3, 4],
             n_examples=[5, 8], special_tokens=True, fixed_h=True, num_unique_h=3,
             h_pool_mode="per_position", n_sequences=2 * BLOCK_SIZE)


@pytest.fixture(scope="module")
def mixed():
    cfg = build(DataConfig, MIXED)
    return cfg, generate_rows(cfg, "train", 0, 2 * BLOCK_SIZE)


def own(rows, i: int):
    """Row i as its own arrays: inputs (K_i, N_i), chain (K_i, C_i), dag (C_i, M_i), h_ids (C_i,), cot_u (K_i,)."""
    N, M, C, K = (int(v) for v in rows.shape[i])
    chain = rows.chain[i, -K:]
    return (rows.inputs[i, -K:, :N], np.concatenate([chain[:, :C - 1], chain[:, -1:]], axis=1),
            rows.dag[i, :C, :M], None if rows.h_ids is None else rows.h_ids[i, :C], rows.cot_u[i, -K:])


def test_every_shape_is_drawn_uniformly_with_m_at_most_n(mixed):
    _, rows = mixed
    N, M, C, K = rows.shape.T
    assert set(N) == {3, 4} and set(C) == {3, 4} and set(K) == {5, 8} and (M <= N).all()
    # M = min(M, N) with N, M uniform on {3, 4}: P(M = 3) = 3/4 (paper 2's alpha sweep)
    assert abs((M == 3).mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / len(M))
    for values in (N, C, K):
        assert abs((values == values.max()).mean() - 0.5) < 4 * np.sqrt(0.25 / len(values))


def test_padding_sits_exactly_where_a_row_has_no_entry(mixed):
    _, rows = mixed
    masks = present_masks(rows.shape, 8, 4, 4, 4)
    for name, mask in (("inputs", "inputs"), ("chain", "chain"), ("dag", "dag"), ("h_ids", "steps")):
        assert np.array_equal(getattr(rows, name) != ABSENT, masks[mask]), name


def test_each_row_is_the_generating_process_of_its_own_shape(mixed):
    """Chain tokens recomputed from the row's own E, processors, DAG and inputs (float64 argmax)."""
    cfg, rows = mixed
    glob = global_objects(cfg)
    for i in range(0, len(rows), 97):
        inputs, chain, dag, h_ids, _ = own(rows, i)
        weights = glob.h_pool[h_ids][None]  # (1, C_i, L, d, d)
        expected = chain_tokens(glob.embedding, weights, dag[None], inputs[None], cfg.activation,
                                cfg.n_usable, exact=True)[0]
        assert np.array_equal(chain, expected), i
        assert all(0 <= p < inputs.shape[1] + c for c, parents in enumerate(dag) for p in parents)


@pytest.mark.parametrize("processors", [
    {"fixed_h": True, "num_unique_h": 4, "h_pool_mode": "per_sequence"},  # an entry: processors for the largest C
    {"fixed_h": False, "num_unique_h": None},  # fresh: drawn from the row's shape stream
])
def test_other_processors_and_a_single_example_row(processors):
    """Per-sequence pools with mixed C use an entry's first C processors; fresh processors come from
    the row's own shape stream; K = 1 rows (no demonstration) have no in-context majority."""
    cfg = build(DataConfig, {**MIXED, **processors, "chain_length": [1, 3], "n_examples": [1, 4]})
    rows = generate_rows(cfg, "train", 0, BLOCK_SIZE)
    glob = global_objects(cfg)
    for i in range(0, BLOCK_SIZE, 61):
        N, M, C, K = (int(v) for v in rows.shape[i])
        inputs, chain, dag, h_ids, _ = own(rows, i)
        if cfg.pool_size is not None:
            weights = glob.h_pool[h_ids[0]][None, :C]  # (1, C, L, d, d)
        else:
            one = cfg.model_copy(update={"n_inputs": N, "n_parents": M, "chain_length": C, "n_examples": K})
            weights = draw_rows(one, "train", 0, 0, BLOCK_SIZE, glob, shape_key=(N, M, C, K)).weights[i][None]
        expected = chain_tokens(glob.embedding, weights, dag[None], inputs[None], cfg.activation,
                                cfg.n_usable, exact=True)[0]
        assert np.array_equal(chain, expected), i
    single = rows.shape[:, 3] == 1
    assert single.any() and (in_context_majority(rows)[single] == -1).all()


def test_choice_order_does_not_matter():
    a, b = (build(DataConfig, {**MIXED, "chain_length": c}) for c in ([4, 3], [3, 4]))
    assert a == b and data_id(a) == data_id(b) and a.chain_length == [3, 4]


def test_other_shapes_must_share_the_runs_processors():
    pool = {**MIXED, "h_pool_mode": "per_sequence"}
    run = build(DataConfig, pool)
    assert other_tasks(run, build(DataConfig, {**pool, "chain_length": 4, "n_examples": 40})) is None  # same largest C
    assert "per_sequence H pool" in other_tasks(run, build(DataConfig, {**pool, "chain_length": 5}))
    per_position = build(DataConfig, MIXED)
    assert other_tasks(per_position, build(DataConfig, {**MIXED, "chain_length": 5})) is None


def test_rows_do_not_depend_on_chunks_or_workers(mixed):
    cfg, rows = mixed
    part = generate_rows(cfg, "train", 700, 1500, chunk_size=100)
    for name in ("seq_idx", "inputs", "chain", "dag", "h_ids", "cot_u", "shape"):
        assert np.array_equal(getattr(rows, name)[700:1500], getattr(part, name)), name


def test_single_choice_is_the_value_and_keeps_the_old_streams():
    one = build(DataConfig, {**MIXED, "n_inputs": [4], "n_parents": [4], "chain_length": [3], "n_examples": [8]})
    plain = build(DataConfig, {**MIXED, "n_inputs": 4, "n_parents": 4, "chain_length": 3, "n_examples": 8})
    assert one == plain and data_id(one) == data_id(plain) and not one.mixed_shapes
    assert generate_rows(one, "eval", 0, 50).shape is None


def test_store_keeps_each_rows_own_lists(mixed):
    cfg, rows = mixed
    table = rows_to_table(rows.take(slice(0, 300)), cfg)
    N, M, C, K = (np.asarray(table.column(name)) for name in ("n_inputs", "n_parents", "chain_length", "n_examples"))
    assert np.array_equal(np.stack([N, M, C, K], axis=1), rows.shape[:300])
    lengths = {name: np.array([len(v) for v in table.column(name).to_pylist()])
               for name in ("inputs", "chain", "dag", "h_ids", "cot_u")}
    assert np.array_equal(lengths["inputs"], K * N) and np.array_equal(lengths["chain"], K * C)
    assert np.array_equal(lengths["dag"], C * M) and np.array_equal(lengths["h_ids"], C)
    assert np.array_equal(lengths["cot_u"], K)
    first = table.slice(0, 1).to_pylist()[0]
    inputs, chain, dag, h_ids, cot_u = own(rows, 0)
    assert first["inputs"] == inputs.ravel().tolist() and first["chain"] == chain.ravel().tolist()
    assert first["dag"] == dag.ravel().tolist() and first["cot_u"] == cot_u.tolist()
    back = table_to_rows(table, cfg)
    for name in ("seq_idx", "inputs", "chain", "dag", "h_ids", "cot_u", "shape"):
        assert np.array_equal(getattr(back, name), getattr(rows, name)[:300]), name


@pytest.mark.parametrize("fmt, options", [
    ("cot_special_token", {}), ("standard_special_token", {}), ("hybrid_special_token", {}),
    ("cot_special_token", {"drop_k": 2, "drop_strategy": "random"}),
    ("cot_special_token", {"drop_k": 3, "drop_strategy": "last_k", "force": "answer"}),
    ("cot_special_token", {"drop_k": 4, "drop_strategy": "first_k"}),
    ("hybrid_special_token", {"force": "think"}),
])
def test_a_mixed_batch_renders_each_row_as_its_own_shape(mixed, fmt, options):
    """Rendering a batch of mixed rows = rendering each row alone in a config of its one shape."""
    cfg, rows = mixed
    batch = rows.take(np.arange(0, 2 * BLOCK_SIZE, 41))
    n_rows = 2 * BLOCK_SIZE
    recipe = {"recipe": {"alpha": 1.0}} if fmt == "hybrid_special_token" else {}
    train_cfg = build(PromptConfig, {"format": fmt, **recipe})
    eval_cfg = build(PromptConfig, {"format": fmt, **recipe, **options})
    train, evaluated = render_train(batch, cfg, train_cfg, n_rows), render_eval(batch, cfg, eval_cfg, n_rows, 7)
    for b in range(len(batch.seq_idx)):
        N, M, C, K = (int(v) for v in batch.shape[b])
        one_cfg = cfg.model_copy(update={"n_inputs": N, "n_parents": M, "chain_length": C, "n_examples": K})
        inputs, chain, dag, h_ids, cot_u = own(batch, b)
        single = type(batch)(batch.seq_idx[b:b + 1], inputs[None], chain[None], dag[None], h_ids[None], cot_u[None])
        alone = render_train(single, one_cfg, train_cfg, n_rows)
        mask = train.attention_mask[b]
        assert train.input_ids[b][mask].tolist() == alone.input_ids[0].tolist()
        assert train.labels[b][mask].tolist() == alone.labels[0].tolist()
        alone_eval = render_eval(single, one_cfg, eval_cfg, n_rows, 7)
        assert evaluated.prompt_ids[b][evaluated.prompt_mask[b]].tolist() == alone_eval.prompt_ids[0].tolist()
        target = evaluated.target[b][evaluated.target[b] != -100].tolist()
        assert target == alone_eval.target[0][alone_eval.target[0] != -100].tolist()
        assert evaluated.answer_pos[b] == alone_eval.answer_pos[0]


@pytest.mark.parametrize("values, message", [
    ({"chain_length": []}, "chain_length=[]: a choice list needs at least one value"),
    ({"chain_length": [0, 3]}, "chain_length=[0, 3]: every choice must be between 1 and 1000"),
    ({"n_examples": [8, 8]}, "n_examples=[8, 8]: a choice list takes each value once"),
    ({"n_inputs": [2, 3], "n_parents": [4, 5]}, "n_parents=[4, 5]: must be <= n_inputs ([2, 3]) in at least one choice"),
    ({"special_tokens": False}, "n_inputs=[3, 4]: per-sequence shapes need special_tokens=true"),
    ({"fixed_dag": True}, "n_inputs=[3, 4]: per-sequence shapes cannot share one fixed DAG"),
    ({"n_examples": [1, "x"]}, "n_examples"),
])
def test_bad_choice_lists_fail_naming_the_field(values, message):
    with pytest.raises(ConfigError) as err:
        build(DataConfig, {**MIXED, **values})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_drop_k_must_leave_the_fewest_demonstrations(mixed):
    cfg, _ = mixed
    with pytest.raises(ConfigError, match=r"drop_k=5: must be <= n_examples-1=4"):
        build(PromptConfig, {"format": "cot_special_token", "drop_k": 5}).check(cfg)


def test_cli_writes_rows_of_every_shape(tmp_path):
    out = tmp_path / "train"
    sets = ["chain_length=[3,4]", "n_inputs=[3,4]", "n_parents=[3,4]", "special_tokens=true",
            "vocab_size=64", "n_examples=6", "n_sequences=600"]
    proc = subprocess.run([sys.executable, "-m", "cotlab.cli", "generate", "--out", str(out), "--split", "train",
                           *(arg for s in sets for arg in ("--set", s))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(next(out.glob("part-*.parquet")))
    pairs = set(zip(table.column("n_inputs").to_pylist(), table.column("chain_length").to_pylist()))
    assert pairs == {(3, 3), (3, 4), (4, 3), (4, 4)}
    dataset = open_dataset(out)
    assert dataset.config.chain_length == [3, 4] and dataset.read(0, 600).shape.shape == (600, 4)
