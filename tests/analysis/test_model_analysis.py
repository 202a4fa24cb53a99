"""`analyse_model`, the one model analysis of training and evaluation: embedding similarity and
attention-to-parent precision of a stub model whose attention and embedding are given."""

import numpy as np
import pytest
import torch
from test_attention import CFG, DAG, C, K, N, attention_with

from cotlab.analysis.attention import parent_matrix
from cotlab.analysis.model_analysis import analyse_model
from cotlab.data.generate import Rows


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
