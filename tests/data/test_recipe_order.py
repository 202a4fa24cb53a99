"""The CoT-Recipe is a shuffled recipe, not a curriculum (docs/prompts.md ("CoT-Recipe (hybrid format)")).

The recipe's probabilities are laid out over slots 0..n-1 of a split and row i takes slot pi(i), a
keyed permutation (`recipe_slot`). Training visits one 65,536-row shard at a time, so with the
identity pi (x = row index / n) the CoT share seen in training would sit still for a shard and then
jump. Here the loader's real order over a 200,000-row split (batch 64, 3,125 steps) is cut into 100
windows of ~1% of the steps each, and every window's CoT share must lie within noise of the epoch's.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from cotlab.config import ConfigError, DataConfig, build
from cotlab.data.generate import Rows
from cotlab.data.loader import TrainLoader
from cotlab.data.prompts import cot_examples, recipe_probability, recipe_slot
from cotlab.formats import PromptConfig

N_ROWS = 200_000
SHARD = 65_536  # the store's rows per shard
BATCH = 64
K = 4  # examples per row: the CoT share counts examples, as training sees them
WINDOWS = 100  # ~1% of an epoch's steps each
DATA_SEED = 42
# Family-wise 99.9%: two-sided Bonferroni over the 100 windows (z ≈ 4.42).
Z = NormalDist().inv_cdf(1 - 0.001 / (2 * WINDOWS))


class RecipeSplit:
    """An in-memory train split in 65,536-row shards with CoT coins (store.Dataset's interface)."""

    def __init__(self, n_rows=N_ROWS, seed=DATA_SEED):
        self.shard_rows = [SHARD] * (n_rows // SHARD) + ([n_rows % SHARD] if n_rows % SHARD else [])
        self.n_rows = n_rows
        self.split = "train"
        self.config = DataConfig(vocab_size=64, n_inputs=1, n_parents=1, chain_length=1, n_examples=K,
                                 special_tokens=True, n_sequences=n_rows, seed=seed)
        coins = np.random.default_rng(7).integers(0, 2**32, (n_rows, K), dtype=np.uint32)
        zeros = np.zeros((n_rows, K, 1), np.int32)
        self.rows = Rows(seq_idx=np.arange(n_rows, dtype=np.int64), inputs=zeros, chain=zeros,
                         dag=np.zeros((n_rows, 1, 1), np.int32), h_ids=None, cot_u=coins)

    def read(self, start, stop):
        return self.rows.take(slice(start, stop))

    def read_shard(self, i):
        start = sum(self.shard_rows[:i])
        return self.read(start, start + self.shard_rows[i])


def hybrid(alpha, **kwargs) -> PromptConfig:
    return build(PromptConfig, {"format": "hybrid_special_token", "recipe": {"alpha": alpha, **kwargs}})


@pytest.fixture(scope="module")
def split():
    return RecipeSplit()


@pytest.fixture(scope="module")
def epoch_rows(split) -> Rows:
    """One epoch of the training loader's stream (loader seed 0), in the order batches are drawn."""
    loader = TrainLoader(split, hybrid(1.0), batch_size=BATCH, seed=0)
    rows = loader._read(0, 0, split.n_rows)  # the rows of next_batch() after next_batch(), concatenated
    assert sorted(rows.seq_idx.tolist()[:5]) != list(range(5))  # shuffled, not row order
    first = loader.next_batch()  # the stream is what next_batch renders
    think = split.config.special_ids()["think_start"]
    counts = cot_examples(rows.take(slice(0, BATCH)), hybrid(1.0), split.n_rows, DATA_SEED).sum(1)
    assert (first["input_ids"] == think).sum(1).tolist() == counts.tolist()
    return rows


def window_shares(cot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, K) bool in training order -> CoT share and rows of each ~1% window of the steps."""
    steps = np.array_split(np.arange(math.ceil(len(cot) / BATCH)), WINDOWS)
    bounds = [(s[0] * BATCH, min((s[-1] + 1) * BATCH, len(cot))) for s in steps]
    return (np.array([cot[a:b].mean() for a, b in bounds]), np.array([b - a for a, b in bounds]))


def noise_bound(r: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Z standard deviations of a window's CoT share when its rows are drawn at random from the split.

    A row's K examples share its r, so the count per row has variance K·p(1-p) + K(K-1)·Var(r)
    (p = mean r): the binomial variance plus the spread of r between rows.
    """
    p, spread = r.mean(), r.var()
    return Z * np.sqrt((K * p * (1 - p) + K * (K - 1) * spread) / (rows * K**2))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_cot_share_is_flat_over_training_steps(split, epoch_rows, alpha):
    cfg = hybrid(alpha)
    cot = cot_examples(epoch_rows, cfg, split.n_rows, DATA_SEED)  # (n, K) in training order
    r = recipe_probability(np.arange(split.n_rows), split.n_rows, cfg.recipe)  # the paper's recipe over slots
    # The overall share: 1/(alpha+1) (docs/prompts.md), up to the coins' noise and the 1/n of the slots' grid.
    share = cot.mean()
    coin_sd = math.sqrt((r * (1 - r)).sum() * K) / (K * split.n_rows)
    assert abs(share - 1 / (alpha + 1)) < Z * coin_sd + 1 / split.n_rows
    shares, rows = window_shares(cot)
    bound = noise_bound(r, rows)
    assert (np.abs(shares - share) < bound).all(), np.abs(shares - share).max()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_the_unshuffled_recipe_fails_the_same_check(split, epoch_rows, alpha):
    """x = row index / n (no permutation) is a block curriculum: the check above can fail."""
    cfg = hybrid(alpha)
    r_rows = recipe_probability(epoch_rows.seq_idx, split.n_rows, cfg.recipe)  # old: slot = row index
    cot = epoch_rows.cot_u.astype(np.float64) < np.floor(r_rows * 2.0**32)[:, None]
    share = cot.mean()
    assert abs(share - 1 / (alpha + 1)) < 0.01  # the same overall share ...
    r = recipe_probability(np.arange(split.n_rows), split.n_rows, cfg.recipe)
    shares, rows = window_shares(cot)
    excess = np.abs(shares - share) / noise_bound(r, rows)
    assert excess.max() > 5  # ... but some windows are far outside the noise (one shard at a time)
    # in plain row order, the first 1% of the rows is nearly all standard
    first = cot[np.argsort(epoch_rows.seq_idx)][: split.n_rows // WINDOWS].mean()
    assert share - first > 5 * noise_bound(r, np.array([split.n_rows // WINDOWS]))[0]


def test_the_split_keeps_the_recipe_probabilities(split):
    """pi is a bijection: the multiset of r over the rows is the paper's, so count and marginal are kept."""
    n = split.n_rows
    slots = recipe_slot(np.arange(n), n, DATA_SEED)
    assert (np.sort(slots) == np.arange(n)).all()
    recipe = hybrid(0.5, scale=0.8, p0=0.1, p1=0.7).recipe
    assert (np.sort(recipe_probability(slots, n, recipe)) == np.sort(recipe_probability(np.arange(n), n, recipe))).all()
    # every shard holds a random-looking sample of the slots: the whole range of x, mean 1/2 within noise
    for start in range(0, n, SHARD):
        x = slots[start: start + SHARD] / n
        assert abs(x.mean() - 0.5) < Z * math.sqrt(1 / (12 * len(x))) and x.min() < 0.01 and x.max() > 0.99


def test_cot_sets_stay_nested_across_recipes(split, epoch_rows):
    """pi does not depend on the recipe: a row's CoT examples under the smaller r are a subset."""
    alphas = [cot_examples(epoch_rows, hybrid(a), split.n_rows, DATA_SEED) for a in (0.0, 0.5, 1.0, 2.0, math.inf)]
    for bigger, smaller in zip(alphas, alphas[1:]):  # r falls with alpha at every x
        assert (smaller <= bigger).all() and smaller.sum() < bigger.sum()
    others = [cot_examples(epoch_rows, cfg, split.n_rows, DATA_SEED)
              for cfg in (hybrid(1.0, scale=0.5, p0=0.1), hybrid(2.0, p1=0.2), hybrid(0.0, scale=0.0, p0=0.3))]
    for a in alphas + others:  # any two recipes: per row, one CoT set contains the other
        for b in others:
            assert ((a <= b).all(1) | (b <= a).all(1)).all()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 1000, 65_536, 65_537])
def test_recipe_slot_is_a_keyed_bijection(n):
    idx = np.arange(n)
    slots = recipe_slot(idx, n, 3)
    assert slots.dtype == np.int64 and sorted(slots.tolist()) == list(range(n))
    assert (recipe_slot(idx, n, 3) == slots).all()  # deterministic
    part = idx[n // 3: n // 3 + 7][::-1]  # any subset, any order: the same slots (batch independent)
    assert (recipe_slot(part, n, 3) == slots[part]).all()
    if n >= 16:
        assert (recipe_slot(idx, n, 4) != slots).any()  # another data seed, another order
        assert (slots != idx).mean() > 0.5


def test_recipe_slot_refuses_indices_outside_the_split():
    with pytest.raises(ConfigError, match="n_rows=10"):
        recipe_slot(np.array([10]), 10, 0)
    with pytest.raises(ConfigError, match="n_rows=0"):
        recipe_slot(np.array([], np.int64), 0, 0)
