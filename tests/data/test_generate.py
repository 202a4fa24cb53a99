"""The generator against docs/data.md: worked examples, a naive loop, its properties and its random streams."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from cotlab.config import DataConfig
from cotlab.data import generate
from cotlab.data.coverage import coverage_report
from cotlab.data.generate import (BLOCK_SIZE, chain_tokens, dag_from_keys, draw_rows, generate_rows,
                                  global_objects, stream)
from cotlab.data.store import open_dataset

ACTIVATIONS = ("leaky_relu", "relu", "silu", "identity")


def small(**values) -> DataConfig:
    base = dict(vocab_size=48, n_dims=4, n_inputs=4, n_parents=2, chain_length=2, n_examples=6,
                n_sequences=2500)
    return DataConfig(**{**base, **values})


def naive_chain(E, W, dag, inputs, activation, n_usable):
    """docs/data.md ("The data-generating process") literally, one sequence: W (C, L, d, d), dag (C, M),
    inputs (K, N) -> (K, C)."""
    sigma = {"leaky_relu": lambda z: np.where(z >= 0, z, 0.5 * z), "relu": lambda z: np.maximum(z, 0),
             "silu": lambda z: z / (1 + np.exp(-z)), "identity": lambda z: z}[activation]
    C, L = W.shape[:2]
    chains = []
    for x in inputs:
        tokens = list(x)
        for c in range(C):
            processed = []
            for p in dag[c]:
                e = E[tokens[p]]
                for layer in range(L):
                    e = W[c, layer] @ e
                    if layer < L - 1:
                        e = sigma(e)
                processed.append(e)
            h = sigma(sum(processed) / len(processed))
            tokens.append(int(np.argmax(E[:n_usable] @ h)))
        chains.append(tokens[len(x):])
    return np.array(chains)


# --- worked examples, by hand -----------------------------------------------------------------

E_A = np.array([[2, 0], [1, 2], [-1, 2], [-2, 0], [-1, -2], [1, -2], [0, 1], [1, 0]], float)
W_A = np.array([[[[1, 0], [0, -1]]], [[[0, -1], [1, 0]]]], float)[None]  # (1, C=2, L=1, 2, 2)
DAG_A = np.array([[[0, 1], [1, 2]]])
INPUTS_A = np.array([[[1, 3], [0, 1]]])


def test_worked_example_a():
    chain = chain_tokens(E_A, W_A, DAG_A, INPUTS_A, "leaky_relu", n_usable=8)
    assert chain.tolist() == [[[4, 5], [0, 2]]]


def test_worked_example_a_relu_zero_hidden_state_gives_id_0():
    # y1 of example 1 has z = (-0.5, -1): relu makes h = 0, all logits tie at 0, and id 0 wins
    chain = chain_tokens(E_A, W_A, DAG_A, INPUTS_A, "relu", n_usable=8)
    assert chain[0, 0, 0] == 0


def test_worked_example_b_reserved_ids_are_skipped():
    E = np.array([[3, 0], [0, 3], [-3, 0], [0, -3], [2, 2], [-2, -2], [1, -1],
                  [0, 0], [1, 1], [-1, 0], [0, 5], [0, -1], [-1, 1], [1, -1], [-2, 1], [1, -2]], float)
    A, B = [[1, -1], [1, 1]], [[1, 0], [-1, 1]]
    W = np.broadcast_to(np.array([A, B], float), (1, 3, 2, 2, 2))  # one processor for every step
    dag = np.array([[[0, 2], [1, 3], [3, 4]]])  # stored ascending: y2 <- {x2, y1}, y3 <- {y1, y2}
    inputs = np.array([[[1, 3, 2], [0, 3, 1]]])
    chain = chain_tokens(E, W, dag, inputs, "relu", n_usable=7)  # ids 7..15 are the special tokens
    assert chain.tolist() == [[[1, 0, 4], [4, 0, 4]]]
    unmasked = chain_tokens(E, W, dag, inputs, "relu", n_usable=16)
    assert unmasked[0, 0, 0] == 10  # the raw argmax is <ts>


# --- batched = naive ---------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batched_equals_naive_loop(activation):
    rng = np.random.default_rng(5)
    V, n_usable, d, N, K, B = 48, 40, 5, 4, 4, 3
    E = rng.standard_normal((V, d))
    for L, C, M in itertools.product((1, 2, 3), range(1, 6), range(1, N + 1)):
        W = rng.standard_normal((B, C, L, d, d))
        dag = dag_from_keys(rng.random((B, C, N + C - 1)), M)
        inputs = rng.integers(0, n_usable, (B, K, N))
        batched = chain_tokens(E, W, dag, inputs, activation, n_usable)
        for b in range(B):
            naive = naive_chain(E, W[b], dag[b], inputs[b], activation, n_usable)
            assert (batched[b] == naive).all(), (activation, L, C, M, b)


@pytest.mark.parametrize("mode", ["per_sequence", "per_position"])
def test_pool_rows_match_naive_loop_on_pool_weights(mode):
    cfg = small(fixed_h=True, num_unique_h=3, h_pool_mode=mode, h_num_layers=2, chain_length=3,
                special_tokens=True, vocab_size=30)
    glob = global_objects(cfg)
    rows = generate_rows(cfg, "train", 1000, 1040)
    assert rows.h_ids.shape == (40, 3) and (rows.h_ids < 3).all() and (rows.h_ids >= 0).all()
    for i in range(len(rows)):
        if mode == "per_sequence":
            assert (rows.h_ids[i] == rows.h_ids[i, 0]).all()
            W = glob.h_pool[rows.h_ids[i, 0]]  # (C, L, d, d): one list of C processors
        else:
            W = glob.h_pool[rows.h_ids[i]]  # (C, L, d, d): one processor per step
        naive = naive_chain(glob.embedding, W, rows.dag[i], rows.inputs[i], cfg.activation, cfg.n_usable)
        assert (rows.chain[i] == naive).all()


def test_torch_kernel_matches_numpy_in_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    V, d, N, K, B = 40, 5, 4, 5, 6
    E = rng.standard_normal((V, d))
    for activation, L, C in itertools.product(ACTIVATIONS, (1, 3), (1, 4)):
        W = rng.standard_normal((B, C, L, d, d))
        dag = dag_from_keys(rng.random((B, C, N + C - 1)), 2)
        inputs = rng.integers(0, 31, (B, K, N))
        expected = chain_tokens(E, W, dag, inputs, activation, 31)
        got = generate.chain_tokens_torch(*map(torch.from_numpy, (E, W, dag, inputs)), activation, 31)
        assert (got.numpy() == expected).all()


@pytest.mark.parametrize(("gpu_tile", "chunk_size"), [(700, 1024), (5000, 300), (1, 1024)])
def test_gpu_code_path_with_torch_on_the_cpu(monkeypatch, gpu_tile, chunk_size):
    """The --device cuda path (tasks only draw; the parent computes tiles that span several tasks),
    pointed at the CPU: the same rows as the CPU path, for tiles smaller than, within and across tasks."""
    pytest.importorskip("torch")
    compute_torch, tile_rows = generate._compute_torch, generate.tile_rows
    computed = []
    monkeypatch.setattr(generate, "_compute_torch", lambda cfg, draws, glob, device, size:
                        computed.append(len(draws.rows)) or compute_torch(cfg, draws, glob, "cpu", size))
    monkeypatch.setattr(generate, "tile_rows", lambda cfg, device: gpu_tile if device == "cuda"
                        else tile_rows(cfg, device))
    cfg = small(h_num_layers=2, special_tokens=True, vocab_size=30)
    expected = generate_rows(cfg, "eval", 500, 2100)
    for workers in (1, 2):
        computed.clear()
        pieces = list(generate._iter_rows(cfg, "eval", 500, 2100, chunk_size, "cuda", workers))
        rows = generate.Rows.concat(pieces)
        for name in ("seq_idx", "inputs", "chain", "dag", "cot_u"):
            assert np.array_equal(getattr(rows, name), getattr(expected, name)), name
        assert sum(computed) == 1600  # every row drawn and computed once
        if gpu_tile == 5000:
            assert computed == [1600]  # one tile across all six tasks


# --- the random streams of docs/data.md ("Seeds and random streams") -----------------------------------

def test_rows_follow_the_documented_streams():
    cfg = small(special_tokens=True, vocab_size=40, h_num_layers=2)
    C, N, K, L, d = cfg.chain_length, cfg.n_inputs, cfg.n_examples, cfg.h_num_layers, cfg.n_dims
    E = cfg.data_init_range * np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(cfg.seed, spawn_key=(0, 0)))).standard_normal((cfg.vocab_size, d))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(cfg.seed + 1000, spawn_key=(1, 1, 2))))
    keys = rng.random((BLOCK_SIZE, C, N + C - 1))
    W = rng.standard_normal((BLOCK_SIZE, C, L, d, d))
    inputs = rng.integers(0, cfg.n_usable, (BLOCK_SIZE, K, N))
    cot_u = rng.integers(0, 2**32, (BLOCK_SIZE, K), dtype=np.uint32)
    rows = generate_rows(cfg, "eval", 2 * BLOCK_SIZE, 3 * BLOCK_SIZE)
    assert np.array_equal(global_objects(cfg).embedding, E)
    assert (rows.seq_idx == np.arange(2 * BLOCK_SIZE, 3 * BLOCK_SIZE)).all()
    assert (rows.inputs == inputs).all() and (rows.cot_u == cot_u).all()
    for c in range(C):  # pa(c): the M smallest keys among nodes 0..N+c-1, ascending
        expected = np.sort(np.argsort(keys[:, c, :N + c], axis=1)[:, :cfg.n_parents], axis=1)
        assert (rows.dag[:, c] == expected).all()
    assert (rows.chain == chain_tokens(E, W, rows.dag, inputs, cfg.activation, cfg.n_usable)).all()


# sha256 (first 16 hex digits) of the int32 chain tokens of train rows [0, 2048), as generated by the
# release that introduced this test: a faster computation must give the same datasets
PINNED_CHAINS = {
    "default": ({}, "eb3fbee4651fc6e8"),
    "silu-L2-M8": (dict(activation="silu", h_num_layers=2, n_inputs=10, n_parents=8, chain_length=3),
                   "038a9cacf26b162b"),
    "relu-special-pool": (dict(activation="relu", special_tokens=True, fixed_h=True, num_unique_h=16),
                          "f1e4620b7aa00d23"),
    "identity-per_position-M1": (dict(activation="identity", n_parents=1, fixed_h=True, num_unique_h=4,
                                      h_pool_mode="per_position"), "7be1d55de075800d"),
    "leaky-M12": (dict(n_inputs=12, n_parents=12, n_examples=16), "fd07da123172434b"),
}


@pytest.mark.parametrize("point", PINNED_CHAINS)
def test_chain_tokens_are_pinned(point):
    fields, digest = PINNED_CHAINS[point]
    rows = generate_rows(DataConfig(**fields), "train", 0, 2048)
    assert hashlib.sha256(np.ascontiguousarray(rows.chain, np.int32).tobytes()).hexdigest()[:16] == digest


def test_piecewise_normal_draws_equal_one_draw(monkeypatch):
    monkeypatch.setattr(generate, "NORMAL_DRAW_BYTES", 8 * 2 * 9 * 37)  # pieces of 37 rows
    whole, pieces = stream(3, 1, 0, 0), stream(3, 1, 0, 0)
    expected = whole.standard_normal((BLOCK_SIZE, 2, 1, 3, 3))[100:300]
    got = generate._normal_rows(pieces, (2, 1, 3, 3), 100, 300)
    assert np.array_equal(got, expected)
    assert np.array_equal(whole.integers(0, 50, 99), pieces.integers(0, 50, 99))  # same state after


# --- ranges, locality, invariances -------------------------------------------------------------

@pytest.mark.parametrize("values", [dict(), dict(special_tokens=True, vocab_size=30),
                                    dict(n_parents=4, chain_length=5, activation="relu"),
                                    dict(n_parents=1, chain_length=1, activation="silu")])
def test_ranges(values):
    cfg = small(**values)
    rows = generate_rows(cfg, "train", 0, 1500)
    N, C, M = cfg.n_inputs, cfg.chain_length, cfg.n_parents
    assert rows.inputs.shape == (1500, cfg.n_examples, N) and rows.chain.shape == (1500, cfg.n_examples, C)
    assert rows.dag.shape == (1500, C, M) and rows.inputs.dtype == rows.chain.dtype == np.int32
    for tokens in (rows.inputs, rows.chain):
        assert tokens.min() >= 0 and tokens.max() < cfg.n_usable  # never a reserved id
    assert (np.diff(rows.dag, axis=2) > 0).all()  # M distinct parents, ascending
    assert (rows.dag >= 0).all() and (rows.dag < N + np.arange(C)[:, None]).all()
    assert rows.h_ids is None
    assert (rows.cot_u is not None) == cfg.special_tokens
    if cfg.special_tokens:
        assert rows.cot_u.dtype == np.uint32


def random_problem(seed, V=32, d=4, N=4, K=50, C=3, L=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((V, d)), rng.standard_normal((1, C, L, d, d)), rng.integers(0, V, (1, K, N)))


def test_locality_non_ancestors_never_matter():
    E, W, inputs = random_problem(1)
    dag = np.array([[[0, 2], [1, 3], [4, 5]]])  # y1 <- {x1, x3}, y2 <- {x2, x4}, y3 <- {y1, y2}
    base = chain_tokens(E, W, dag, inputs, "leaky_relu", 32)
    for node in range(4):
        changed = inputs.copy()
        changed[..., node] = (changed[..., node] + 7) % 32
        chain = chain_tokens(E, W, dag, changed, "leaky_relu", 32)
        step_of_unrelated = 1 if node in (0, 2) else 0  # y2 ignores x1, x3; y1 ignores x2, x4
        assert (chain[..., step_of_unrelated] == base[..., step_of_unrelated]).all()
    assert (base[..., 1] != chain_tokens(E, W, dag, (inputs + 5) % 32, "leaky_relu", 32)[..., 1]).any()


def test_parent_order_does_not_matter():
    E, W, inputs = random_problem(2, L=2)
    dag = np.array([[[0, 1, 3], [1, 2, 4], [0, 4, 5]]])
    reversed_dag = dag[..., ::-1].copy()
    for activation in ACTIVATIONS:
        assert (chain_tokens(E, W, dag, inputs, activation, 32)
                == chain_tokens(E, W, reversed_dag, inputs, activation, 32)).all()


def test_identity_is_linear():
    E, W, inputs = random_problem(3, L=1)
    dag = np.array([[[0, 1], [2, 4], [3, 5]]])
    chain = chain_tokens(E, W, dag, inputs, "identity", 32)
    tokens = np.concatenate([inputs[0], chain[0]], axis=1)  # (K, N+C)
    for c in range(3):
        mean = E[tokens[:, dag[0, c]]].mean(axis=1)  # (K, d)
        assert (chain[0, :, c] == np.argmax(mean @ W[0, c, 0].T @ E.T, axis=1)).all()
    deep = np.random.default_rng(4).standard_normal((1, 3, 3, 4, 4))
    product = (deep[:, :, 2] @ deep[:, :, 1] @ deep[:, :, 0])[:, :, None]  # H_c = W3 W2 W1
    assert (chain_tokens(E, deep, dag, inputs, "identity", 32)
            == chain_tokens(E, product, dag, inputs, "identity", 32)).all()


@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "identity"])
def test_positive_rescaling_changes_nothing(activation):
    E, W, inputs = random_problem(5, L=2)
    dag = np.array([[[0, 3], [1, 4], [2, 5]]])
    base = chain_tokens(E, W, dag, inputs, activation, 32)
    assert (chain_tokens(3.7 * E, W, dag, inputs, activation, 32) == base).all()
    assert (chain_tokens(E, 0.01 * W, dag, inputs, activation, 32) == base).all()


def test_an_embedding_inside_the_hull_never_appears():
    E, W, inputs = random_problem(6, K=400)
    E[3] = 0.5 * (E[1] + E[2])  # strictly inside a segment: at best tied with id 1 or 2
    dag = np.array([[[0, 3], [1, 4], [2, 5]]])
    chain = chain_tokens(E, W, dag, inputs, "leaky_relu", 32)
    assert 3 not in chain and len(np.unique(chain)) > 5


# --- chi-square: uniform draws -----------------------------------------------------------------

def chi2_ok(counts) -> bool:
    counts = np.asarray(counts, float)
    try:
        from scipy.stats import chisquare
    except ImportError:  # loose hand-made test: mean + 6 sd of the chi-square statistic
        expected = counts.sum() / len(counts)
        df = len(counts) - 1
        return ((counts - expected) ** 2 / expected).sum() < df + 6 * np.sqrt(2 * df)
    return chisquare(counts).pvalue > 1e-4


def test_dag_inputs_and_pool_indices_are_uniform():
    cfg = small(vocab_size=16, n_examples=8, fixed_h=True, num_unique_h=5, h_pool_mode="per_position")
    rows = generate_rows(cfg, "train", 0, 4096)
    for c, n_nodes in ((0, 4), (1, 5)):  # 6 and 10 possible parent pairs
        pairs = {pair: i for i, pair in enumerate(itertools.combinations(range(n_nodes), 2))}
        codes = [pairs[tuple(p)] for p in rows.dag[:, c].tolist()]
        assert chi2_ok(np.bincount(codes, minlength=len(pairs)))
    assert chi2_ok(np.bincount(rows.inputs.ravel(), minlength=16))
    assert chi2_ok(np.bincount(rows.h_ids.ravel(), minlength=5))


# --- coverage ----------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_coverage_at_v1024(tmp_path, activation):
    out = tmp_path / activation
    subprocess.run([sys.executable, "-m", "cotlab.cli", "generate", "--out", str(out), "--split", "train",
                    "--set", "n_sequences=10000", "--set", f"activation={activation}"], check=True,
                   capture_output=True)
    report = json.loads(subprocess.run([sys.executable, "-m", "cotlab.cli", "coverage", str(out)],
                                       check=True, capture_output=True, text=True).stdout)
    assert report["n"] == 10_000 and report["split"] == "train" and report["V_eff"] == 1024
    if activation == "relu":
        assert report["cov_chain"] < 0.25
    else:
        assert report["cov_chain"] > 0.5
    assert report["cov_ans"] <= report["cov_chain"]
    dataset = open_dataset(out)
    growing = [coverage_report(dataset, n)["cov_chain"] for n in (10, 100, 1000, 10_000)]
    assert growing == sorted(growing) and growing[-1] == report["cov_chain"]


# --- determinism -------------------------------------------------------------------------------

def test_rows_do_not_depend_on_chunking_or_workers():
    cfg = small(h_num_layers=2)
    reference = generate_rows(cfg, "train", 0, 2500)
    for start, stop, chunk_size, workers in ((0, 2500, 7, 1), (0, 2500, 1024, 2), (700, 2100, 300, 1),
                                             (1023, 1025, 1, 1)):
        rows = generate_rows(cfg, "train", start, stop, chunk_size=chunk_size, workers=workers)
        for name in ("seq_idx", "inputs", "chain", "dag"):
            assert np.array_equal(getattr(rows, name), getattr(reference, name)[start:stop]), name


def test_splits_and_seeds_differ():
    cfg = small()
    train, evals = generate_rows(cfg, "train", 0, 500), generate_rows(cfg, "eval", 0, 500)
    other_seed = generate_rows(small(seed=7), "train", 0, 500)
    shared = set(map(bytes, train.inputs)) & set(map(bytes, evals.inputs))
    assert not shared
    assert not np.array_equal(train.inputs, other_seed.inputs)
    assert np.array_equal(global_objects(cfg).embedding, global_objects(small(n_sequences=9)).embedding)
    assert not np.array_equal(global_objects(cfg).embedding, global_objects(small(seed=7)).embedding)


def test_fixed_dag_is_shared_and_explicit_dag_is_sorted():
    drawn = generate_rows(small(fixed_dag=True), "train", 0, 300)
    assert (drawn.dag == drawn.dag[0]).all()
    explicit = small(fixed_dag=True, dag=[[3, 1], [4, 0]])
    rows = generate_rows(explicit, "eval", 0, 300)
    assert (rows.dag == np.array([[1, 3], [0, 4]])).all()


def test_bad_run_options_are_one_line_errors():
    from cotlab.config import ConfigError
    cfg = small()
    for kwargs, message in ((dict(chunk_size=0), "chunk_size=0"), (dict(workers=0), "workers=0"),
                            (dict(device="tpu"), "device='tpu'")):
        with pytest.raises(ConfigError, match=message):
            generate_rows(cfg, "train", 0, 10, **kwargs)
    with pytest.raises(ConfigError, match="split='test'"):
        generate_rows(cfg, "test", 0, 10)
    assert len(generate_rows(cfg, "train", 5, 5)) == 0
    assert draw_rows(cfg, "train", 0, 0, 3, global_objects(cfg)).weights.shape == (3, 2, 1, 4, 4)


def test_the_task_plan_is_lazy():
    """Rows of a huge range start at once: the plan is not a list of 10**12 / 64 tasks built first
    (which took minutes and then ran out of memory)."""
    pieces = generate.iter_rows(small(), "train", 0, 10**12, chunk_size=64, workers=2)
    first = next(pieces)
    pieces.close()
    assert len(first) == 64 and (first.seq_idx == np.arange(64)).all()
    tail = list(generate.iter_rows(small(), "eval", 10**12 - 100, 10**12, chunk_size=64))
    assert [len(p) for p in tail] == [64, 36] and tail[-1].seq_idx[-1] == 10**12 - 1
