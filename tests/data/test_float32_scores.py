"""The float32 scores with a float64 recheck (generate._checked_argmax) give exactly the float64 tokens."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from cotlab.config import DataConfig
from cotlab.data import generate
from cotlab.data.generate import chain_tokens, dag_from_keys, generate_rows

ACTIVATIONS = ("leaky_relu", "relu", "silu", "identity")


@pytest.fixture
def calls(monkeypatch):
    """Counts of float32-scored positions, positions rescored in float64 and whole-tile fallbacks."""
    counts = {"positions": 0, "rechecked": 0, "tile_fallbacks": 0}

    def spy(name, key, size):
        original = getattr(generate, name)

        def wrapper(*args):
            counts[key] += size(args)
            return original(*args)
        monkeypatch.setattr(generate, name, wrapper)

    spy("_checked_argmax", "positions", lambda args: len(args[0]))
    spy("_recheck", "rechecked", lambda args: len(args[1]))
    spy("_tile_argmax", "tile_fallbacks", lambda args: 1)
    return counts


def both_paths(monkeypatch, cfg: DataConfig, n: int) -> tuple[generate.Rows, generate.Rows]:
    fast = generate_rows(cfg, "train", 0, n)
    monkeypatch.setattr(generate, "CPU_FLOAT32_SCORES", False)  # workers=1: this process computes
    reference = generate_rows(cfg, "train", 0, n)
    monkeypatch.setattr(generate, "CPU_FLOAT32_SCORES", True)
    return fast, reference


POINTS = {
    "default-V1024": dict(n_examples=20),
    "relu-V1024-special": dict(activation="relu", special_tokens=True, n_examples=20),
    "silu-V1024-L3-pool": dict(activation="silu", h_num_layers=3, fixed_h=True, num_unique_h=4,
                               n_examples=20),
    "identity-V1024-L3": dict(activation="identity", h_num_layers=3, n_examples=20, chain_length=3,
                              n_parents=3),
    "leaky-V16-L3-per_position": dict(vocab_size=16, n_dims=4, h_num_layers=3, fixed_h=True,
                                      num_unique_h=3, h_pool_mode="per_position", n_examples=8),
    "relu-V64-L3": dict(vocab_size=64, n_dims=6, activation="relu", h_num_layers=3, n_examples=8),
    "silu-V48-special-fixed": dict(vocab_size=48, n_dims=4, activation="silu", special_tokens=True,
                                   fixed_dag=True, fixed_h=True, chain_length=4, n_parents=2),
    "leaky-V256-d2": dict(vocab_size=256, n_dims=2, n_examples=10),
}


@pytest.mark.parametrize("point", POINTS)
def test_float32_with_recheck_equals_float64(monkeypatch, calls, point):
    cfg = DataConfig(**POINTS[point])
    fast, reference = both_paths(monkeypatch, cfg, 3000)
    assert np.array_equal(fast.chain, reference.chain)
    assert calls["positions"] >= 3000 * cfg.n_examples * cfg.chain_length  # the fast path ran
    if cfg.n_usable >= 1000:
        assert calls["rechecked"] > 0  # near-ties occur at this size and were rescored


@pytest.mark.parametrize("d", [1, 2, 10])
@pytest.mark.parametrize("M", [1, 4, 8, 12, 33])
def test_parents_mean_is_numpys_mean_bit_for_bit(d, M):
    """The reference arithmetic is numpy's mean of the gathered (B, K, M, d) parents; for d = 1 it adds
    pairwise, which cancellation between +-2^53 tells apart from adding in order."""
    rng = np.random.default_rng(M * 100 + d)
    E = rng.standard_normal((64, d)) * rng.choice([1.0, 2.0**53, 1e-8], (64, 1))
    E[:2] = [[2.0**53], [-(2.0**53)]]
    parents = rng.integers(0, 64, (3, M, 7))
    parents[:, :4] = [[0], [5], [1], [6]][:M]
    expected = E[np.ascontiguousarray(parents.transpose(0, 2, 1))].mean(axis=2)  # C-ordered ids, as gathered before
    assert np.array_equal(generate._parents_mean(E, parents), expected)


def test_near_duplicate_embeddings_are_rescored_exactly(calls):
    """Many ids whose scores agree to ~1e-9 relative: float32 cannot order them, the recheck must."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 6))
    E = np.concatenate([base, base + 1e-9 * rng.standard_normal((40, 6)), base[:8]])  # + exact copies
    for activation, L in itertools.product(ACTIVATIONS, (1, 3)):
        W = rng.standard_normal((16, 3, L, 6, 6))
        dag = dag_from_keys(rng.random((16, 3, 4 + 2)), 2)
        inputs = rng.integers(0, 88, (16, 12, 4))
        fast = chain_tokens(E, W, dag, inputs, activation, 88)
        assert np.array_equal(fast, chain_tokens(E, W, dag, inputs, activation, 88, exact=True)), activation
    assert calls["rechecked"] > 1000 and calls["tile_fallbacks"] > 0  # exact copies tie in float64 too


def crafted_near_tie():
    """y1: scores 1 (id 0) and 1 + 1e-9 (id 1) tie in float32; y2 reads y1 and answers 2 if y1 = 1,
    0 (h = 0) if y1 = 0."""
    E = np.array([[1, 0, 0], [1, 0, 2e-9], [0, 0, 0.9], [0, 1, 0.5]])
    W = np.zeros((1, 2, 1, 3, 3))
    W[0, 0, 0] = [[0, 1, 0], [0, 0, 0], [0, 0, 1]]  # h1 = W E[3] = (1, 0, 0.5)
    W[0, 1, 0] = np.diag([0, 0, 1e10])  # h2 = (0, 0, 1e10 E[y1][2])
    dag = np.array([[[0], [1]]])  # y1 <- x1, y2 <- y1
    inputs = np.array([[[3]]])
    return E, W, dag, inputs


def test_crafted_near_tie_float32_alone_is_wrong_and_the_recheck_fixes_it(monkeypatch, calls):
    E, W, dag, inputs = crafted_near_tie()
    h1 = W[0, 0, 0] @ E[3]
    assert E @ h1 @ [-1, 1, 0, 0] == pytest.approx(1e-9, rel=1e-3)  # a float64 near-tie
    assert np.argmax(E.astype(np.float32) @ h1.astype(np.float32)) == 0  # float32 picks the wrong id
    expected = chain_tokens(E, W, dag, inputs, "identity", 4, exact=True)
    assert expected.tolist() == [[[1, 2]]]
    assert chain_tokens(E, W, dag, inputs, "identity", 4).tolist() == [[[1, 2]]]
    assert calls["rechecked"] == 1 and calls["tile_fallbacks"] == 0  # y1 rescored, y2 is clear
    monkeypatch.setattr(generate, "SCORE_SAFETY", 0.0)  # no margin: trust float32 alone
    assert chain_tokens(E, W, dag, inputs, "identity", 4).tolist() == [[[0, 0]]]  # and y2 inherits it


def test_zero_hidden_state_and_exact_ties(calls):
    E = np.array([[1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # ids 1 and 2 identical
    W = np.broadcast_to(np.eye(2), (1, 1, 1, 2, 2))
    dag = np.array([[[0]]])
    inputs = np.array([[[0], [3]]])
    for activation in ACTIVATIONS:
        fast = chain_tokens(E, W, dag, inputs, activation, 4)
        assert np.array_equal(fast, chain_tokens(E, W, dag, inputs, activation, 4, exact=True))
        assert fast[0, 0, 0] == 1  # h = E[0]: ids 1 and 2 tie exactly, the smallest wins
    E[0] = [-1.0, -1.0]  # relu makes h = 0: every score is 0 and id 0 answers
    assert chain_tokens(E, W, dag, inputs, "relu", 4)[0, 0, 0] == 0
    assert calls["tile_fallbacks"] > 0


def test_extreme_magnitudes_and_non_finite_values(calls):
    """Tiny, huge or non-finite h: outside the range of the bounds, these go to the float64 tile."""
    rng = np.random.default_rng(3)
    E = rng.standard_normal((30, 4))
    for scale in (1e-310, 1e-300, 1e-30, 1e30, 1e150, 1e200, 1e300):
        W = scale * rng.standard_normal((4, 2, 1, 4, 4))
        dag = dag_from_keys(rng.random((4, 2, 3 + 1)), 2)
        inputs = rng.integers(0, 30, (4, 9, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fast = chain_tokens(E, W, dag, inputs, "leaky_relu", 30)
        assert np.array_equal(fast, chain_tokens(E, W, dag, inputs, "leaky_relu", 30, exact=True)), scale
    assert calls["tile_fallbacks"] >= 2  # 1e-310 and 1e200 at least
    W[0, 0, 0, 0, 0] = np.inf
    W[1, 1, 0, 0, 0] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        for activation in ACTIVATIONS:
            assert np.array_equal(chain_tokens(E, W, dag, inputs, activation, 30),
                                  chain_tokens(E, W, dag, inputs, activation, 30, exact=True))
    E[5, 1] = np.inf  # a non-finite E: the float64 path throughout
    with np.errstate(invalid="ignore", over="ignore"):
        assert np.array_equal(chain_tokens(E, W, dag, inputs, "relu", 30),
                              chain_tokens(E, W, dag, inputs, "relu", 30, exact=True))
