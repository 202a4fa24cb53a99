"""Embedding similarity and attention-to-parent precision on hand-made inputs with known answers."""

import numpy as np
import pytest
import torch

from cotlab.analysis.attention import chance_precision, figure_map, parent_matrix, query_maps
from cotlab.analysis.model_analysis import analyse_model
from cotlab.analysis.similarity import chance_similarity, embedding_similarity
from cotlab.config import DataConfig
from cotlab.data.generate import Rows


# ---------------------------------------------------------------- embedding similarity

def test_similarity_is_one_for_a_rotated_scaled_padded_copy():
    rng = np.random.default_rng(0)
    V, d, D = 64, 10, 48
    E = rng.standard_normal((V, d))
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    mixing = np.linalg.qr(rng.standard_normal((D, D)))[0]  # rotate the padded hidden space too
    E_model = np.concatenate([3.5 * E @ rotation, np.zeros((V, D - d))], axis=1) @ mixing  # (V, D)
    sim, cosines = embedding_similarity(E, E_model.astype(np.float32))
    assert sim == pytest.approx(1.0, abs=1e-5)
    assert cosines.shape == (d,)
    np.testing.assert_allclose(cosines, 1.0, atol=1e-5)


def test_similarity_of_an_unrelated_matrix_is_near_chance():
    rng = np.random.default_rng(1)
    V, d, D = 512, 10, 64
    sims = [embedding_similarity(rng.standard_normal((V, d)), rng.standard_normal((V, D)))[0]
            for _ in range(5)]
    chance = chance_similarity(V, d)  # 0.0195
    assert chance == d / V
    assert 0.0 < np.mean(sims) < 3 * chance


def test_similarity_rejects_mismatched_vocabularies():
    with pytest.raises(ValueError, match="same V"):
        embedding_similarity(np.ones((8, 2)), np.ones((9, 4)))


# ---------------------------------------------------------------- attention-to-parent precision

N, M, C, K = 4, 2, 3, 2
DAG = np.array([[0, 2], [1, 4], [3, 5]])  # y1 <- x1, x3; y2 <- x2, y1; y3 <- x4, y2
CFG = DataConfig(vocab_size=64, n_inputs=N, n_parents=M, chain_length=C, n_examples=K)
T = K * (N + C)
QUERY = T - (N + C)  # offset 0 of the query example


def attention_with(weights_per_step: list[dict[int, float]], batch: int = 2) -> np.ndarray:
    """(B, T, T) attention whose row predicting y_c puts weights_per_step[c-1] on query offsets
    and the remaining mass on token 0 (an earlier example, cut off by the restriction)."""
    attn = np.zeros((batch, T, T))
    attn[:, :, 0] = 1.0
    for c, weights in enumerate(weights_per_step, start=1):
        row = QUERY + N + c - 2
        attn[:, row, 0] = 1.0 - sum(weights.values())
        for offset, w in weights.items():
            attn[:, row, QUERY + offset] = w
    return attn


class GivenAttention(torch.nn.Module):
    """A 'model' with a given token embedding whose last-layer attention is `attn` (B, T, T), whatever
    the input: what `analyse_model` reads of a Transformer."""

    def __init__(self, attn: np.ndarray, embedding: np.ndarray):
        super().__init__()
        self.attn = torch.as_tensor(attn)
        self.tok_embeddings = torch.nn.Embedding.from_pretrained(torch.as_tensor(embedding, dtype=torch.float32))

    def last_layer_attention(self, input_ids, attention_mask):
        assert input_ids.shape == self.attn.shape[:2]  # the cot rendering: T = K (N + C)
        return self.attn


def analyse(attn: np.ndarray, fmt: str = "cot", offset: int = 0):
    """analyse_model on B rows with the DAG above, a model whose embedding rows offset.. hold a
    rotated, zero-padded copy of the data embedding (so embed_sim = 1), and attention `attn`."""
    B, V, d = len(attn), CFG.vocab_size, CFG.n_dims
    rng = np.random.default_rng(0)
    data_embedding = rng.standard_normal((V, d))  # (V, d)
    embedding = rng.standard_normal((offset + V, 3 * d))  # (offset + V, D)
    embedding[offset:] = np.concatenate([data_embedding @ np.linalg.qr(rng.standard_normal((d, d)))[0],
                                         np.zeros((V, 2 * d))], axis=1)
    rows = Rows(seq_idx=np.arange(B), inputs=np.ones((B, K, N), np.int32), chain=np.ones((B, K, C), np.int32),
                dag=np.stack([DAG] * B).astype(np.int32))
    return analyse_model(GivenAttention(attn, embedding), data_embedding, rows, CFG, fmt, offset=offset,
                         n_attn=B, batch_size=B, device="cpu")


def test_precision_is_one_when_attention_marks_exactly_the_parents():
    attn = attention_with([{0: 0.3, 2: 0.3}, {1: 0.2, 4: 0.2}, {3: 0.45, 5: 0.45}])
    row, arrays = analyse(attn, offset=3)
    assert row["parent_prec"] == 1.0
    assert row["parent_mass"] == pytest.approx(1.0)
    assert row["parent_chance"] == pytest.approx((2 / 4 + 2 / 5 + 2 / 6) / 3)
    assert row["embed_sim"] == pytest.approx(1.0)
    assert [row[f"embed_cos_{i}"] for i in range(CFG.n_dims)] == pytest.approx(arrays["cosines"].tolist())
    assert arrays["maps"].shape == (2, C, N + C - 1) and arrays["dag"].tolist() == [DAG.tolist()] * 2
    np.testing.assert_allclose(arrays["map"], arrays["maps"][0])  # a fresh DAG per row: sequence 0
    assert arrays["adjacency"].tolist() == parent_matrix(DAG, N).tolist()


def test_precision_of_a_map_marking_non_parents_is_the_exact_share_of_hits():
    attn = attention_with([
        {1: 0.4, 3: 0.4, 0: 0.1, 2: 0.1},  # top-2 = {1, 3}: no parent -> 0; parent mass 0.2
        {1: 0.5, 0: 0.3, 4: 0.2},  # top-2 = {1, 0}: one parent -> 0.5; mass 0.7
        {3: 0.5, 5: 0.25, 2: 0.25},  # tie 5 vs 2 -> earlier column 2: one parent -> 0.5; mass 0.75
    ])
    row, _ = analyse(attn)
    assert row["parent_prec"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert row["parent_mass"] == pytest.approx((0.2 + 0.7 + 0.75) / 3)


def test_precision_is_nan_for_formats_without_a_visible_chain():
    attn = attention_with([{0: 1.0}, {0: 1.0}, {0: 1.0}])
    row, arrays = analyse(attn, "standard")
    assert all(np.isnan(row[key]) for key in ("parent_prec", "parent_mass", "parent_chance"))
    assert row["embed_sim"] == pytest.approx(1.0)  # defined for every format
    assert arrays["maps"].shape == (0, C, N + C - 1) and arrays["dag"].shape[0] == 0
    assert np.isnan(arrays["map"]).all() and not arrays["adjacency"].any()


def test_query_maps_renormalise_and_hide_future_columns():
    attn = attention_with([{0: 0.3, 2: 0.1}, {1: 0.2, 4: 0.2}, {3: 0.45, 5: 0.45}])
    maps = query_maps(attn, CFG)  # (B, C, N + C - 1)
    assert maps.shape == (2, C, N + C - 1)
    np.testing.assert_allclose(maps[0, 0], [0.75, 0, 0.25, 0, np.nan, np.nan])
    np.testing.assert_allclose(maps[0, 1, :5], [0, 0.5, 0, 0, 0.5])
    assert np.isnan(maps[0, 1, 5])
    np.testing.assert_allclose(np.nansum(maps, axis=2), 1.0)
    assert chance_precision(CFG) == pytest.approx((2 / 4 + 2 / 5 + 2 / 6) / 3)


def test_figure_map_averages_only_under_a_fixed_dag():
    maps = np.stack([np.full((C, N + C - 1), 0.2), np.full((C, N + C - 1), 0.6)])
    dags = np.stack([DAG, DAG])
    fresh, adjacency = figure_map(maps, dags, CFG)
    fixed, _ = figure_map(maps, dags, CFG.model_copy(update={"fixed_dag": True}))
    np.testing.assert_allclose(fresh, 0.2)
    np.testing.assert_allclose(fixed, 0.4)
    assert adjacency.tolist() == parent_matrix(DAG, N).tolist()
    assert adjacency.sum() == C * M and adjacency[2, 5] and not adjacency[0, 1]
