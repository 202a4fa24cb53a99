"""Embedding similarity on hand-made embeddings with known answers."""

import numpy as np
import pytest

from cotlab.analysis.similarity import chance_similarity, embedding_similarity


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
