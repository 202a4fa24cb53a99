"""The analyses of one model, as training logs them (metrics.parquet) and `cotlab evaluate` writes them.

One function so that the in-training curve and the final evaluation are the same numbers: embedding
similarity (`similarity`) and attention-to-parent precision (`attention`).

Letters: A attention rows, C chain tokens, M parents, S = N + C - 1 map columns, V vocabulary,
D model width, d data embedding width.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from cotlab.analysis.attention import figure_map, model_query_maps, scores_from_maps
from cotlab.analysis.similarity import embedding_similarity
from cotlab.config import DataConfig
from cotlab.formats import FORMATS

if TYPE_CHECKING:
    from cotlab.data.generate import Rows


def analyse_model(model: torch.nn.Module, data_embedding: np.ndarray, rows: Rows, data_cfg: DataConfig,
                  trained_format: str, *, offset: int, n_attn: int, batch_size: int,
                  device: torch.device | str) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Embedding similarity and attention-to-parent precision of `model` on the first n_attn `rows`.

    data_embedding (V, d) is the data generator's E; `offset` and `trained_format` are the prompt
    offset and format the model was trained with. Attention is defined for models trained in a
    format with `parent_attention` (plain cot) only; otherwise the parent values are NaN and the
    maps empty. Precision follows the caller's autocast context.

    Returns the row {embed_sim, embed_cos_i, parent_prec, parent_mass, parent_chance} and the arrays
    of `<stem>.attention.npz`: maps (A, C, S) query attention maps, map (C, S) the figure's map,
    adjacency (C, S) bool, dag (A, C, M), cosines (d,).
    """
    V, C = data_cfg.vocab_size, data_cfg.largest("chain_length")  # parent attention needs one shape (plain cot)
    S = data_cfg.largest("n_inputs") + C - 1
    embedding = model.tok_embeddings.weight.detach()[offset:offset + V].float().cpu().numpy()  # (V, D)
    sim, cosines = embedding_similarity(data_embedding, embedding)
    row = {"embed_sim": sim, **{f"embed_cos_{i}": float(c) for i, c in enumerate(cosines)}}
    attn_rows = rows.take(slice(0, n_attn))
    if FORMATS[trained_format].parent_attention and n_attn > 0:
        maps = model_query_maps(model, attn_rows, data_cfg, batch_size=batch_size, device=device,
                                offset=offset)  # (A, C, S)
        row.update(scores_from_maps(maps, attn_rows.dag, data_cfg))
        shown, adjacency = figure_map(maps, attn_rows.dag, data_cfg)
    else:
        maps = np.zeros((0, C, S))
        row.update(parent_prec=math.nan, parent_mass=math.nan, parent_chance=math.nan)
        shown, adjacency = np.full((C, S), np.nan), np.zeros((C, S), bool)
    arrays = {"maps": maps, "map": shown, "adjacency": adjacency, "dag": np.asarray(attn_rows.dag[: len(maps)]),
              "cosines": cosines}
    return row, arrays
