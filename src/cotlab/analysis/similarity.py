"""Embedding similarity between the data embedding E and a model's token embedding (card fig_embed_sim).

The paper reports an "alignment of the left singular bases" without a formula; ours (docs/reproduce.md, fig_embed_sim): U_d = the d left singular vectors of E_data (V, d), U_t = the top-d left
singular vectors of the uncentred model embedding E_model (V, D), and

    sim = ||U_dᵀ U_t||_F² / d  in [0, 1],

the mean squared cosine of the d principal angles between the two column spaces. Both bases live in
R^V (one coordinate per token id), so the score is invariant to any rotation or scaling of the
model's hidden space. A random d-dimensional subspace scores d/V in expectation (chance).
"""

from __future__ import annotations

import numpy as np


def embedding_similarity(data_embedding: np.ndarray, model_embedding: np.ndarray) -> tuple[float, np.ndarray]:
    """Alignment of the token-space column spaces of E_data and the model embedding.

    data_embedding: (V, d) E of the data generator; model_embedding: (V, D) token embedding of the
    model (any float dtype, numpy or a CPU torch tensor), D >= d. Computed in float64.
    Returns (sim, cosines): sim float in [0, 1]; cosines (d,) float64, the cosines of the principal
    angles in descending order (sim = mean(cosines²)).
    """
    E_data = np.asarray(data_embedding, dtype=np.float64)
    E_model = np.asarray(model_embedding, dtype=np.float64)
    if E_data.ndim != 2 or E_model.ndim != 2 or E_data.shape[0] != E_model.shape[0]:
        raise ValueError(f"embeddings must be (V, d) and (V, D) with the same V, got "
                         f"{E_data.shape} and {E_model.shape}")
    d = E_data.shape[1]
    if E_model.shape[1] < d:
        raise ValueError(f"the model embedding has D={E_model.shape[1]} < d={d} columns")
    U_data = np.linalg.svd(E_data, full_matrices=False)[0]  # (V, d)
    U_model = np.linalg.svd(E_model, full_matrices=False)[0][:, :d]  # (V, d), top-d directions
    cosines = np.linalg.svd(U_data.T @ U_model, compute_uv=False)  # (d,)
    cosines = np.clip(cosines, 0.0, 1.0)  # round-off can push a cosine to 1 + 1e-16
    return float(np.mean(cosines**2)), cosines


def chance_similarity(vocab_size: int, n_dims: int) -> float:
    """Expected sim of a uniformly random d-dimensional subspace of R^V: d / V."""
    return n_dims / vocab_size
