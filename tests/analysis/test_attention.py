"""Query attention maps on hand-made attention with known answers."""

import numpy as np
import pytest

from cotlab.analysis.attention import chance_precision, figure_map, parent_matrix, query_maps
from cotlab.config import DataConfig


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
