"""Attention-to-parent precision and the query's attention map (card fig_attention, docs/reproduce.md).

Definition [ours]. Teacher-force the full cot sequence and take the last layer's attention,
averaged over heads. For each chain token y_c of the query example (the last example), take the row
of the position that *predicts* y_c: x_N for c = 1, y_{c-1} otherwise. Restrict it to the example's
own x_1..x_N, y_1..y_{c-1} and renormalise. Then

- parent_prec = |top-M columns ∩ pa(y_c)| / M, averaged over c and sequences;
- parent_mass = the renormalised mass on the true parents, averaged the same way;
- parent_chance = the mean over c of M / (N + c - 1) (a uniformly random choice of M columns).

Within an example the DAG node id equals the token's offset (node j < N is x_{j+1} at offset j,
node N+c-1 is y_c at offset N+c-1), so the row predicting y_c sits at offset N+c-2 and its allowed
columns are offsets 0..N+c-2. Only the paper-1 `cot` format has y_{c-1} in the prompt at a fixed
offset (`Format.parent_attention`); `cotlab.analysis.model_analysis` reports NaN for every other
trained format (std sequences carry no intermediate chain tokens to attend to). Ties in the top-M go
to the earlier column.

Letters: B sequences, T tokens, N inputs, M parents, C chain tokens, S = N + C - 1 map columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from cotlab.config import DataConfig
from cotlab.data.prompts import render_train
from cotlab.formats import PromptConfig

if TYPE_CHECKING:
    from cotlab.data.generate import Rows


def query_maps(attn: np.ndarray | torch.Tensor, data_cfg: DataConfig) -> np.ndarray:
    """The query example's renormalised attention rows: (B, T, T) -> (B, C, S) float64.

    attn[b, t] is the distribution of query position t over key positions (rows sum to 1 over
    the causal prefix). The query example occupies the last N + C positions of every sequence
    (true for left-padded batches too). Entry [b, c-1, j] is the share of the row predicting y_c
    on offset j; columns j > N + c - 2 (tokens y_c.. not yet visible) are NaN.
    """
    attn = torch.as_tensor(attn).detach().to("cpu", torch.float64).numpy()
    N, C = data_cfg.n_inputs, data_cfg.chain_length
    B, T, _ = attn.shape
    start = T - (N + C)  # offset 0 of the query example
    S = N + C - 1
    maps = np.full((B, C, S), np.nan)
    for c in range(1, C + 1):
        width = N + c - 1  # x_1..x_N, y_1..y_{c-1}
        row = attn[:, start + width - 1, start: start + width]  # (B, width), from x_N or y_{c-1}
        total = row.sum(axis=1, keepdims=True)
        maps[:, c - 1, :width] = row / np.where(total > 0, total, 1.0)
    return maps


def parent_matrix(dag: np.ndarray, n_inputs: int) -> np.ndarray:
    """True adjacency of one DAG: (C, M) node ids -> (C, S) bool, True where the column is a parent."""
    C = dag.shape[0]
    adjacency = np.zeros((C, n_inputs + C - 1), bool)
    np.put_along_axis(adjacency, np.asarray(dag, np.int64), True, axis=1)
    return adjacency


def parent_chance(n_inputs: int, n_parents: int, chain_length: int) -> float:
    """Expected parent_prec of M columns picked uniformly: mean over c of M / (N + c - 1)."""
    return float(np.mean([n_parents / (n_inputs + c - 1) for c in range(1, chain_length + 1)]))


def chance_precision(data_cfg: DataConfig) -> float:
    """parent_chance of a data point."""
    return parent_chance(data_cfg.n_inputs, data_cfg.n_parents, data_cfg.chain_length)


def scores_from_maps(maps: np.ndarray, dag: np.ndarray, data_cfg: DataConfig) -> dict[str, float]:
    """parent_prec, parent_mass and parent_chance from (B, C, S) maps and the rows' (B, C, M) DAGs."""
    M = data_cfg.n_parents
    is_parent = np.stack([parent_matrix(g, data_cfg.n_inputs) for g in np.asarray(dag)])  # (B, C, S)
    ranked = np.argsort(-np.nan_to_num(maps, nan=-np.inf), axis=2, kind="stable")[:, :, :M]  # (B, C, M)
    hits = np.take_along_axis(is_parent, ranked, axis=2).sum(axis=2)  # (B, C)
    mass = np.where(is_parent, np.nan_to_num(maps), 0.0).sum(axis=2)  # (B, C)
    return {"parent_prec": float(np.mean(hits / M)), "parent_mass": float(np.mean(mass)),
            "parent_chance": chance_precision(data_cfg)}


def figure_map(maps: np.ndarray, dag: np.ndarray, data_cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The C x S map drawn in fig_attention and the adjacency it is compared with.

    maps: (B, C, S), dag: (B, C, M). Under a fixed DAG every sequence shares one adjacency and the
    map is the mean over sequences; otherwise sequence 0 alone (a mean over different DAGs would
    blur the structure). Returns ((C, S) float64 with NaN on invisible cells, (C, S) bool).
    """
    if data_cfg.fixed_dag:
        return np.mean(maps, axis=0), parent_matrix(dag[0], data_cfg.n_inputs)
    return maps[0], parent_matrix(dag[0], data_cfg.n_inputs)


@torch.no_grad()
def model_query_maps(model: torch.nn.Module, rows: Rows, data_cfg: DataConfig, *, batch_size: int,
                     device: str | torch.device = "cpu", offset: int = 0) -> np.ndarray:
    """Teacher-force rows in the cot format and return their query maps: (n, C, S) float64.

    Needs `model.last_layer_attention(input_ids, attention_mask) -> (B, T, T)` (cotlab.model).
    `offset` is the prompt offset the model was trained with (ids shifted into its vocabulary).
    Only the (B, C, S) slices are kept, so memory stays at one batch of (B, T, T).
    """
    prompt_cfg = PromptConfig(format="cot", offset=offset)
    maps = []
    for start in range(0, len(rows.seq_idx), batch_size):
        batch = rows.take(slice(start, start + batch_size))
        tokens = render_train(batch, data_cfg, prompt_cfg, n_rows=len(rows.seq_idx))
        ids = torch.as_tensor(tokens.input_ids, device=device)
        mask = torch.as_tensor(tokens.attention_mask, device=device)
        maps.append(query_maps(model.last_layer_attention(ids, mask), data_cfg))
    return np.concatenate(maps) if maps else np.zeros((0, data_cfg.chain_length,
                                                       data_cfg.n_inputs + data_cfg.chain_length - 1))
