"""The CoT-ICL Lab generator, vectorized over sequences and deterministic (docs/data.md).

Letters: n rows (= sequences), B sequences in one compute tile, K examples per sequence, N inputs,
M parents, C chain steps, L processor layers, d embedding dim, V vocabulary, V_eff usable ids
(reserved special ids are the top V - V_eff), P pool size.

A split is a pure function of (DataConfig, split): row i comes from block i // 1024, whose draws
come from its own stream ``PCG64(SeedSequence(split_seed, spawn_key=(1, split_code, block)))``
(docs/data.md ("Seeds and random streams")). So any range of rows can be computed alone, in any
chunking, by any number of worker processes, and the first n rows do not depend on the split
size. With per-sequence shapes (paper 2: a shape field of the config is a list of choices), each
row's (N, M, C, K) comes from its block's own shape stream (spawn_key (5, split_code, block)) and
the rows of each shape from that shape's stream (spawn_key (1, split_code, block, N, M, C, K));
a single shape draws exactly as before, so its datasets are unchanged (`draw_shapes`).

Chain tokens are computed B sequences x K examples at a time with a loop over the C steps only
(docs/data.md ("The data-generating process")), in float64 (the canonical precision). On the CPU
the V_eff scores of a step are first taken in float32 and only positions whose best two scores are
closer than a proven float32 error bound are rescored in float64 (`_checked_argmax`): the tokens
are exactly those of the float64 scores (`chain_tokens(..., exact=True)`), only faster. Tiles of B
rows are aligned to fixed offsets inside each block, so every row goes through exactly the same
floating-point operations whatever the chunk size or worker count: the output is bit-for-bit
independent of both. With device="cuda" the same float64 operations run in torch on the GPU
(draws stay on the CPU, in the worker processes), on tiles of up to GPU_MAX_BLOCKS blocks' rows
gathered from consecutive tasks; a different BLAS, or another tile composition (chunk size, start
row), can only change a token where two float64 logits agree to ~1e-15. For speed give each
process one BLAS thread (`cotlab generate` does): threaded OpenBLAS on these small matmuls was
measured 5x slower on 2 cores.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import numpy as np

from cotlab.config import SHAPE_FIELDS, ConfigError, DataConfig, fail

# Rows per random-stream block (docs/data.md, "Seeds and random streams"); every block draws at full size.
BLOCK_SIZE = 1024
SPLIT_CODES = {"train": 0, "eval": 1}
SHAPE_KEY = 5  # spawn_key (5, split_code, block) of the per-sequence shapes (docs/data.md, "Seeds and random streams")
ABSENT = -1  # the value of padded entries of mixed-shape rows (no token has it)
# a CPU tile's (B, K, V_eff) float64 logits (the exact path, and the rare whole-tile fallback of
# `_checked_argmax`) stay within this; the float32 path holds only pieces of SCORE_CHUNK_BYTES
CPU_LOGITS_BYTES = 32 << 20
CPU_MAX_TILE = 64  # larger tiles gain nothing and make small chunks recompute more
GPU_LOGITS_BYTES = 4 << 30  # a GPU tile's float64 logits: at most this, or a quarter of the free memory
GPU_MAX_BLOCKS = 16  # a GPU tile spans up to this many blocks' draws (fewer launches and host syncs)
NORMAL_DRAW_BYTES = 16 << 20  # fresh weights are drawn in row pieces of at most this size
LEAKY_SLOPE = 0.5  # the authors' nn.LeakyReLU(0.5), not torch's default 0.01
CPU_FLOAT32_SCORES = True  # False: the CPU scores in float64 only (same tokens; tests, benchmarks, workers=1)
SCORE_SAFETY = 16.0  # factor on the rounding-error bounds of `_checked_argmax`
# float32 scores are taken in pieces of this many bytes of rows: few numpy calls per piece matter
# more than cache fit (default point, 1 core, 512 KiB-L2 EPYC: 2 MiB 1.09x faster than 512 KiB, 1.19x
# than 256 KiB; 4 MiB no faster)
SCORE_CHUNK_BYTES = 2 << 20


@dataclass
class Rows:
    """Generated sequences, one row each (docs/data.md, "Storage"); every array is indexed by row first.

    seq_idx (n,) int64 canonical row index; inputs (n, K, N) int32; chain (n, K, C) int32 with the
    answer of example k at chain[:, k, C-1]; dag (n, C, M) int32 node ids, ascending per step
    (node j < N is x_{j+1}, node N+c-1 is y_c); h_ids (n, C) int32 pool entry per step, or None for
    fresh processors; cot_u (n, K) uint32 CoT coins, or None without special tokens.

    Mixed shapes (`shape` (n, 4) int32 = each row's N, M, C, K; None when every row has the config's
    one shape): the arrays take the largest N, M, C, K and hold ABSENT (cot_u: 0) where a row has
    nothing. A row's K examples are the *last* K (the query is always example -1); its inputs the
    first N; its chain y_1..y_{C-1} the first C-1 columns and y_C the last (the answer is always
    chain[:, :, -1]); dag and h_ids the first C steps and the first M parents (`present_masks`).
    """

    seq_idx: np.ndarray
    inputs: np.ndarray
    chain: np.ndarray
    dag: np.ndarray
    h_ids: np.ndarray | None = None
    cot_u: np.ndarray | None = None
    shape: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.seq_idx)

    def take(self, index: slice | np.ndarray) -> Rows:
        """The rows selected by a slice, an integer index array or a boolean mask."""
        columns = (getattr(self, f.name) for f in fields(self))
        return Rows(*(None if column is None else column[index] for column in columns))

    def shapes(self) -> np.ndarray:
        """(n, 4) int64 N, M, C, K of every row (from the arrays when all rows share one shape)."""
        if self.shape is not None:
            return self.shape.astype(np.int64)
        _, K, N = self.inputs.shape
        return np.broadcast_to(np.array([N, self.dag.shape[2], self.chain.shape[2], K]), (len(self), 4))

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """Stack row sets (all with the same shapes and optional columns) in the given order."""
        if len(parts) == 1:
            return parts[0]
        return Rows(**{f.name: None if getattr(parts[0], f.name) is None
                       else np.concatenate([getattr(p, f.name) for p in parts])
                       for f in fields(Rows)})


@dataclass(frozen=True)
class Globals:
    """Objects drawn once per (config point, seed) and shared by both splits (docs/data.md, "The
    data-generating process").

    embedding (V, d) float64 = E; h_pool (P, C, L, d, d) for per_sequence pools or (P, L, d, d) for
    per_position pools, float64, or None; fixed_dag (C, M) int32, or None (fresh DAG per row).
    """

    embedding: np.ndarray
    h_pool: np.ndarray | None
    fixed_dag: np.ndarray | None


def stream(entropy: int, *spawn_key: int) -> np.random.Generator:
    """A random stream (docs/data.md, "Seeds and random streams"): ``Generator(PCG64(SeedSequence(entropy,
    spawn_key)))``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=spawn_key)))


def dag_from_keys(keys: np.ndarray, n_parents: int) -> np.ndarray:
    """(n, C, N+C-1) float64 keys -> (n, C, M) int32 DAG.

    pa(c) (0-based step c) is the M nodes of 0..N+c-1 with the smallest keys, stored ascending:
    the smallest M of i.i.d. uniform keys are a uniformly random M-subset (the DAG of docs/data.md
    ("The data-generating process")).
    """
    n, C, width = keys.shape
    N = width - C + 1
    dag = np.empty((n, C, n_parents), np.int32)
    for c in range(C):
        smallest = np.argsort(keys[:, c, :N + c], axis=1, kind="stable")[:, :n_parents]
        dag[:, c] = np.sort(smallest, axis=1)
    return dag


def global_objects(cfg: DataConfig) -> Globals:
    """E, the H pool and the fixed DAG from the base seed: spawn keys (0, 0..2) of docs/data.md
    ("Seeds and random streams")."""
    V, d, N, M, L = cfg.vocab_size, cfg.n_dims, cfg.n_inputs, cfg.n_parents, cfg.h_num_layers
    C = cfg.largest("chain_length")  # a per_sequence pool entry serves every chain length (first C)
    embedding = cfg.data_init_range * stream(cfg.seed, 0, 0).standard_normal((V, d))  # (V, d)
    h_pool = None
    if cfg.pool_size is not None:
        entry = (C, L, d, d) if cfg.h_pool_mode == "per_sequence" else (L, d, d)
        h_pool = stream(cfg.seed, 0, 1).standard_normal((cfg.pool_size, *entry))
    fixed_dag = None
    if cfg.dag is not None:
        fixed_dag = np.sort(np.asarray(cfg.dag, np.int32), axis=1)  # (C, M)
    elif cfg.fixed_dag:
        fixed_dag = dag_from_keys(stream(cfg.seed, 0, 2).random((1, C, N + C - 1)), M)[0]
    return Globals(embedding, h_pool, fixed_dag)


@functools.lru_cache(maxsize=4)
def _cached_globals(cfg_json: str) -> Globals:
    # worker processes rebuild E and the pool once instead of receiving them with every task
    return global_objects(DataConfig.model_validate_json(cfg_json))


def activation_fn(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """sigma of docs/data.md ("The data-generating process") as an elementwise numpy function (float64)."""
    if name == "leaky_relu":
        return lambda z: np.maximum(z, LEAKY_SLOPE * z)  # slope < 1: bit for bit where(z >= 0, z, slope z)
    if name == "relu":
        return lambda z: np.maximum(z, 0.0)
    if name == "silu":
        def silu(z: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore"):  # exp(-z) = inf for z << 0 gives z / inf = -0.0
                return z / (1.0 + np.exp(-z))
        return silu
    if name == "identity":
        return lambda z: z
    raise ConfigError(f"activation={name!r}: must be one of leaky_relu, relu, silu, identity")


def chain_tokens(embedding: np.ndarray, weights: np.ndarray, dag: np.ndarray, inputs: np.ndarray,
                 activation: str, n_usable: int, *, exact: bool = False,
                 scoring: Scoring | None = None) -> np.ndarray:
    """The map (E, H, DAG, inputs) -> chain tokens of docs/data.md ("The data-generating process"),
    batched over rows and examples.

    embedding (V, d) float64; weights (B, C, L, d, d) float64 with weights[b, c, l] = W_{c,l+1}
    acting on column vectors (z = W e); dag (B, C, M) node ids; inputs (B, K, N) token ids;
    -> (B, K, C) int64. Ids >= n_usable (the reserved special ids, always the top of the
    vocabulary) are never chosen, which is the same as masking their logits to -inf; ties go to
    the smallest id.

    h is always computed in float64. exact=True takes the argmax of the float64 logits (the
    reference); exact=False (default) scores in float32 and rescores near-ties in float64
    (`_checked_argmax`), giving the same tokens: each step's recheck is done before the next step
    reads the token. `scoring`, `float32_scoring(embedding, n_usable)` computed once, saves
    preparing E again for every tile.
    """
    B, K, N = inputs.shape
    C, L, d = weights.shape[1], weights.shape[2], embedding.shape[1]
    M = dag.shape[2]
    if (dag >= N + np.arange(C)[:, None]).any():
        raise ValueError("chain_tokens: a parent of step c must be a node below N + c")
    sigma = activation_fn(activation)
    candidates = embedding[:n_usable].T  # (d, V_eff)
    if not exact and scoring is None:
        scoring = float32_scoring(embedding, n_usable)
    exact = exact or scoring is None
    # the nodes' tokens: inputs, then y_1..y_C as they are computed; a node's K tokens are contiguous
    nodes = np.empty((B, N + C, K), np.int64)
    nodes[:, :N] = inputs.transpose(0, 2, 1)
    rows = np.arange(B)[:, None]
    for c in range(C):
        parents = nodes[rows, dag[:, c]]  # (B, M, K) token ids
        if L == 1:  # H_c is linear: average first, then one matmul (M times fewer flops)
            z = _parents_mean(embedding, parents) @ weights[:, c, 0].transpose(0, 2, 1)  # (B, K, d)
        else:
            x = embedding.take(parents.transpose(0, 2, 1), axis=0).reshape(B, K * M, d)  # example-major
            for layer in range(L):
                x = x @ weights[:, c, layer].transpose(0, 2, 1)  # (B, K*M, d)
                if layer < L - 1:
                    x = sigma(x)
            z = x.reshape(B, K, M, d).mean(axis=2)  # (B, K, d)
        h = sigma(z).reshape(B * K, d)
        if exact:
            nodes[:, N + c] = (h @ candidates).argmax(axis=1).reshape(B, K)  # (B*K, V_eff) logits
        else:
            nodes[:, N + c] = _checked_argmax(h, candidates, scoring).reshape(B, K)
    return nodes[:, N:].transpose(0, 2, 1)


def _parents_mean(embedding: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """embedding (V, d), parents (B, M, K) ids -> (B, K, d), the mean of each example's parent
    embeddings, bit for bit `embedding[parents.transpose(0, 2, 1)].mean(axis=2)` (the reference
    arithmetic). For d > 1 numpy adds that strided parent axis in order, so the parents are gathered
    and added one at a time (~7x faster at the default point); for d = 1 the axis is contiguous and numpy adds
    it pairwise (M >= 8), so the mean itself is taken."""
    M = parents.shape[1]
    if embedding.shape[1] == 1:
        return embedding.take(parents.transpose(0, 2, 1), axis=0).mean(axis=2)
    total = embedding.take(parents[:, 0], axis=0)
    for m in range(1, M):
        total += embedding.take(parents[:, m], axis=0)
    total /= M
    return total


@dataclass(frozen=True)
class Scoring:
    """E prepared for `_checked_argmax`: candidates32 (d, V_eff) float32 = E[:V_eff].T 2^-k with
    max_v |E_v| 2^-k in [0.5, 1), e_max = max_v |E_v| (2-norms, float64), and scores, the (rows, V_eff)
    float32 buffer of one piece's scores (SCORE_CHUNK_BYTES), reused: a fresh one per piece would
    page-fault (2-5x slower). So one Scoring serves one thread at a time."""

    candidates32: np.ndarray
    e_max: float
    scores: np.ndarray


def float32_scoring(embedding: np.ndarray, n_usable: int) -> Scoring | None:
    """The Scoring of E, or None when the float32 bounds do not apply (a non-finite E, or max_v |E_v|
    outside [2^-500, 2^500]): then only the float64 path is used."""
    candidates = embedding[:n_usable].T
    if not np.isfinite(candidates).all():
        return None
    e_max = float(np.sqrt(np.square(candidates).sum(axis=0)).max())
    if not 2.0**-500 <= e_max <= 2.0**500:
        return None
    _, shift = np.frexp(e_max)
    rows = max(1, SCORE_CHUNK_BYTES // (4 * n_usable))
    return Scoring(np.ascontiguousarray(np.ldexp(candidates, -shift), np.float32), e_max,
                   np.empty((rows, n_usable), np.float32))


def _top_two(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, V) -> (first argmax per row, best score - second best score); scores is overwritten."""
    best = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    top = scores[rows, best]
    scores[rows, best] = -np.inf
    return best, top - scores.max(axis=1)  # inf when V = 1


def _checked_argmax(h: np.ndarray, candidates: np.ndarray, scoring: Scoring) -> np.ndarray:
    """``np.matmul(h, candidates, out=logits).argmax(axis=1)`` (the float64 path), via float32 scores.

    h (n, d) float64; candidates (d, V_eff) float64 = E[:V_eff].T; scoring its float32 form.
    -> (n,) int64, equal to the float64 path's argmax (ties to the smallest id) row for row.

    Why this is exact. Let u = 2^-24 and w = 2^-53 be the float32 and float64 unit roundoffs and
    s_v = <h, E_v> the exact score. A d-term dot product summed in any order, with or without FMA,
    has |fl(sum a_i b_i) - sum a_i b_i| <= gamma_d sum |a_i b_i| with gamma_d = d u / (1 - d u)
    (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1), and
    sum |h_i E_vi| <= |h| |E_v| (Cauchy-Schwarz).
    1. float32 filter. E is scaled by an exact power of two, Es = 2^-k E with max_v |Es_v| in
       [0.5, 1). For a row whose largest |h_i| lies in [2^-60, 2^60] (checked through |h|, as
       largest |h_i| lies in [|h| / sqrt(d), |h|]) nothing overflows and float32
       underflow costs at most ~d 2^-149 absolute, negligible next to the bound below (>= 2^-80).
       Rounding h and Es to float32 costs 2u relative per product and the float32 dot product
       gamma_d more, so the float32 score t_v has |t_v - 2^-k s_v| <= (d + 2) u |h| |Es_v|
       (1 + O(d u)). The float64 path's own score s'_v has |s'_v - s_v| <= gamma_d(w) |h| |E_v|,
       i.e. d w |h| |Es_v| (1 + O(d w)) after scaling (e_max in [2^-500, 2^500], so the float64
       products neither overflow nor underflow for these rows). With |Es_v| < 1: if t_b - t_v >
       2 ((d + 2) u + d w) |h| for the float32 argmax b and every v != b, then s'_b > s'_v for
       every v != b, so the float64 path picks b as well, by a strict margin (its tie rule cannot
       intervene). Every position whose float32 gap (best minus second best) is below that bound
       times SCORE_SAFETY (16: room for the O(d u) terms, the rounding of the gap itself and
       blocked BLAS summation) is rechecked.
    2. float64 recheck, in this step (before step c+1 reads the token): the flagged rows' scores
       are recomputed in float64 (maybe by another BLAS kernel than the tile's matmul, so summed in
       another order). That score and the float64 path's are both within gamma_d(w) |h| |E_v| of
       s_v, so a float64 gap above 4 d w |h| e_max (times SCORE_SAFETY, plus d 2^-1000 for
       underflow) decides the float64 path's argmax too.
    3. Anything left (exact float64 ties such as duplicated rows of E or hand-made integer
       examples; rows whose |h| does not place largest |h_i| in [2^-60, 2^60]; NaN or inf) is
       computed exactly as the float64 path does: the whole tile's float64 matmul, then argmax, so
       ties go to the smallest id bit for bit.
    A row of h that is all zeros (relu can give that) has every float64 score exactly +-0, so the
    float64 path answers id 0; it is answered directly.
    """
    n, d = h.shape
    scores = scoring.scores
    chunk = len(scores)
    with np.errstate(over="ignore", invalid="ignore"):  # rows that are not ordinary: rechecked
        norm = np.sqrt(np.einsum("ij,ij->i", h, h))  # (n,) |h|: inf or NaN for huge or non-finite rows
        # largest |h_i| in [2^-60, 2^60], with room for the rounding of norm (False for NaN, inf, 0)
        ordinary = (norm >= 2.0**-59 * np.sqrt(d)) & (norm <= 2.0**59)
        h32 = h.astype(np.float32)
        bound = SCORE_SAFETY * 2 * ((d + 2) * 2.0**-24 + d * 2.0**-53) * norm
        best, gap = np.empty(n, np.int64), np.empty(n, np.float32)
        for a in range(0, n, chunk):  # pieces of SCORE_CHUNK_BYTES
            b = min(a + chunk, n)
            np.matmul(h32[a:b], scoring.candidates32, out=scores[:b - a])
            best[a:b], gap[a:b] = _top_two(scores[:b - a])
        unsure = ~(ordinary & (gap >= bound))
        small = np.flatnonzero(norm == 0)  # all zeros, or tiny entries whose squares underflow
        zero = small[~h[small].any(axis=1)]
        best[zero] = 0  # all float64 scores are +-0: the smallest id
        unsure[zero] = False
        unsure = np.flatnonzero(unsure)
    if unsure.size:
        best[unsure] = _recheck(h, unsure, candidates, scoring.e_max, ordinary[unsure])
    return best


def _recheck(h: np.ndarray, unsure: np.ndarray, candidates: np.ndarray, e_max: float,
             ordinary: np.ndarray) -> np.ndarray:
    """Steps 2 and 3 of `_checked_argmax` for the rows `unsure` of h: their float64-path argmax."""
    d = h.shape[1]
    rows = h[unsure]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf rows: not ordinary
        best, gap = _top_two(rows @ candidates)  # (u, V_eff) float64
        h_norm = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        bound64 = SCORE_SAFETY * (4 * d * 2.0**-53 * h_norm * e_max + d * 2.0**-1000)
        sure = ordinary & (gap > bound64)
    if not sure.all():  # a float64 near-tie: the float64 path's own operation, on the whole tile
        best[~sure] = _tile_argmax(h, unsure[~sure], candidates)
    return best


def _tile_argmax(h: np.ndarray, rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Step 3 of `_checked_argmax`: the float64 path itself (the tile's matmul), argmax of `rows` only."""
    return (h @ candidates)[rows].argmax(axis=1)


def chain_tokens_torch(embedding, weights, dag, inputs, activation: str, n_usable: int):
    """torch twin of :func:`chain_tokens` for ``--device cuda``: same shapes, float64 tensors on one
    device, -> (B, K, C) int64 tensor. It runs the same float64 operations; a different BLAS can only
    change a token where two logits agree to ~1e-15 relative (exact ties, e.g. relu's h = 0, still
    resolve to the smallest id)."""
    import torch

    B, K, N = inputs.shape
    C, L, d = weights.shape[1], weights.shape[2], embedding.shape[1]
    M = dag.shape[2]
    sigma = {"leaky_relu": lambda z: torch.where(z >= 0, z, LEAKY_SLOPE * z),
             "relu": lambda z: torch.clamp_min(z, 0.0),
             "silu": lambda z: z / (1.0 + torch.exp(-z)),
             "identity": lambda z: z}[activation]
    candidates = embedding[:n_usable].T  # (d, V_eff)
    tokens = torch.empty((B, K, N + C), dtype=torch.int64, device=inputs.device)
    tokens[..., :N] = inputs
    for c in range(C):
        parents = dag[:, None, c, :].expand(B, K, M).long()
        x = embedding[torch.gather(tokens, 2, parents)]  # (B, K, M, d)
        if L == 1:
            z = (x.sum(dim=2) / M) @ weights[:, c, 0].transpose(1, 2)  # (B, K, d)
        else:
            x = x.reshape(B, K * M, d)
            for layer in range(L):
                x = x @ weights[:, c, layer].transpose(1, 2)  # (B, K*M, d)
                if layer < L - 1:
                    x = sigma(x)
            z = x.reshape(B, K, M, d).sum(dim=2) / M  # (B, K, d)
        logits = sigma(z).reshape(B * K, d) @ candidates  # (B*K, V_eff)
        tokens[..., N + c] = logits.argmax(dim=1).reshape(B, K)
    return tokens[..., N:]


@dataclass
class Draws:
    """The random draws of n rows inside one block (chain not yet computed), plus their processor
    weights (n, C, L, d, d) float64, drawn fresh or gathered from the pool."""

    rows: Rows  # chain is zeros until computed
    weights: np.ndarray


def _normal_rows(rng: np.random.Generator, row_shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of ``rng.standard_normal((BLOCK_SIZE, *row_shape))``, drawn in pieces.

    numpy's normals use whole 64-bit outputs with no carried state, so consecutive smaller draws
    give the same numbers as one big draw (tests check this); this bounds memory for large d, L, C.
    """
    per_row = int(np.prod(row_shape))
    piece = max(1, NORMAL_DRAW_BYTES // (8 * per_row))
    kept = np.empty((hi - lo, *row_shape))
    for first in range(0, BLOCK_SIZE, piece):
        last = min(first + piece, BLOCK_SIZE)
        values = rng.standard_normal((last - first, *row_shape))
        a, b = max(first, lo), min(last, hi)
        if a < b:
            kept[a - lo:b - lo] = values[a - first:b - first]
    return kept


def draw_rows(cfg: DataConfig, split: str, block: int, lo: int, hi: int, glob: Globals,
              shape_key: tuple[int, ...] = ()) -> Draws:
    """Rows [lo, hi) of block `block` of `split`, in the draw order of the block's stream (docs/data.md
    ("Seeds and random streams")): DAG keys, token processors (fresh weights or pool indices),
    inputs, CoT coins (special tokens only). `cfg` has one shape; `shape_key` (N, M, C, K) extends
    the stream's spawn key for one shape of a mixed-shape config."""
    N, M, C, K, L, d = (cfg.n_inputs, cfg.n_parents, cfg.chain_length, cfg.n_examples,
                        cfg.h_num_layers, cfg.n_dims)
    n = hi - lo
    rng = stream(cfg.split_seed(split), 1, SPLIT_CODES[split], block, *shape_key)
    if glob.fixed_dag is None:
        dag = dag_from_keys(rng.random((BLOCK_SIZE, C, N + C - 1))[lo:hi], M)  # (n, C, M)
    else:
        dag = np.broadcast_to(glob.fixed_dag, (n, C, M)).copy()
    h_ids = None
    if glob.h_pool is None:
        weights = _normal_rows(rng, (C, L, d, d), lo, hi)  # (n, C, L, d, d)
    elif cfg.h_pool_mode == "per_sequence":  # v1: an entry is a list of C processors
        entry = rng.integers(0, cfg.pool_size, BLOCK_SIZE)[lo:hi]  # (n,)
        weights = glob.h_pool[entry][:, :C]  # (n, C, L, d, d); a mixed-shape pool holds the largest C
        h_ids = np.repeat(entry[:, None], C, axis=1).astype(np.int32)
    else:  # v2: every step draws its own single processor
        h_ids = rng.integers(0, cfg.pool_size, (BLOCK_SIZE, C))[lo:hi].astype(np.int32)  # (n, C)
        weights = glob.h_pool[h_ids]  # (n, C, L, d, d)
    inputs = rng.integers(0, cfg.n_usable, (BLOCK_SIZE, K, N))[lo:hi].astype(np.int32)
    cot_u = None
    if cfg.special_tokens:
        cot_u = rng.integers(0, 2**32, (BLOCK_SIZE, K), dtype=np.uint32)[lo:hi]
    seq_idx = np.arange(block * BLOCK_SIZE + lo, block * BLOCK_SIZE + hi, dtype=np.int64)
    rows = Rows(seq_idx, inputs, np.zeros((n, K, C), np.int32), dag, h_ids, cot_u)
    return Draws(rows, weights)


def draw_shapes(cfg: DataConfig, split: str, block: int) -> np.ndarray:
    """The (N, M, C, K) of every row of a block of a mixed-shape config: (BLOCK_SIZE, 4) int32.

    Each field is drawn uniformly from its choices, in the order N, M, C, K (one BLOCK_SIZE draw
    each, single choices included), from the block's shape stream; then M = min(M, N).
    """
    rng = stream(cfg.split_seed(split), SHAPE_KEY, SPLIT_CODES[split], block)
    N, M, C, K = (np.asarray(cfg.choices(name))[rng.integers(0, len(cfg.choices(name)), BLOCK_SIZE)]
                  for name in SHAPE_FIELDS)
    return np.stack([N, np.minimum(M, N), C, K], axis=1).astype(np.int32)


def present_masks(shape: np.ndarray, K: int, N: int, M: int, C: int) -> dict[str, np.ndarray]:
    """Where each row's own entries lie in padded arrays (the layout of `Rows`), from its (N, M, C, K).

    shape (n, 4) -> examples (n, K), inputs (n, K, N), chain (n, K, C), steps (n, C) (dag rows and
    h_ids), dag (n, C, M) bool. Boolean indexing with a mask lists a row's entries in C order, which
    is the order of the row's own (K_i, N_i)-style arrays.
    """
    n_inputs, n_parents, chain_length, n_examples = (shape[:, i, None] for i in range(4))  # (n, 1) each
    examples = np.arange(K) >= K - n_examples  # (n, K): the last K_i
    column = np.arange(C)
    chain_column = (column < chain_length - 1) | (column == C - 1)  # (n, C): y_1..y_{C_i-1}, then y_C last
    steps = column < chain_length  # (n, C)
    return {"examples": examples,
            "inputs": examples[:, :, None] & (np.arange(N) < n_inputs)[:, None, :],
            "chain": examples[:, :, None] & chain_column[:, None, :],
            "steps": steps,
            "dag": steps[:, :, None] & (np.arange(M) < n_parents)[:, None, :]}


def _mixed_block(cfg: DataConfig, split: str, block: int, glob: Globals) -> Rows:
    """All BLOCK_SIZE rows of a block of a mixed-shape config, computed on the CPU and padded (`Rows`).

    The rows of each shape come from that shape's own draws of the whole block (spawn key extended by
    (N, M, C, K)), of which the block's rows of that shape are kept: every shape costs one block of
    draws, and whole blocks make the tokens independent of the chunking.
    """
    shape = draw_shapes(cfg, split, block)  # (BLOCK_SIZE, 4)
    K = cfg.padded_dims[0]
    rows = _padded_rows(cfg, BLOCK_SIZE, shape)
    rows.seq_idx[:] = np.arange(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE)
    for values in np.unique(shape, axis=0):
        n_inputs, n_parents, chain_length, n_examples = (int(v) for v in values)
        one = cfg.model_copy(update={"n_inputs": n_inputs, "n_parents": n_parents,
                                     "chain_length": chain_length, "n_examples": n_examples})
        which = np.flatnonzero((shape == values).all(axis=1))
        draws = draw_rows(one, split, block, 0, BLOCK_SIZE, glob, shape_key=tuple(int(v) for v in values))
        part = Draws(draws.rows.take(which), draws.weights[which])
        _compute_cpu(one, part, glob)
        first = K - n_examples  # the row's examples are the last n_examples
        rows.inputs[which, first:, :n_inputs] = part.rows.inputs
        rows.chain[which, first:, :chain_length - 1] = part.rows.chain[:, :, :-1]
        rows.chain[which, first:, -1] = part.rows.chain[:, :, -1]
        rows.dag[which, :chain_length, :n_parents] = part.rows.dag
        if rows.h_ids is not None:
            rows.h_ids[which, :chain_length] = part.rows.h_ids
        if rows.cot_u is not None:
            rows.cot_u[which, first:] = part.rows.cot_u
        del draws, part  # before the next shape draws: one shape's draws at a time (preflight counts that)
    return rows


def _padded_rows(cfg: DataConfig, n: int, shape: np.ndarray) -> Rows:
    """n rows of a mixed-shape config, every entry ABSENT (cot_u 0), with the given (n, 4) shapes."""
    K, N, M, C = cfg.padded_dims
    return Rows(np.zeros(n, np.int64), np.full((n, K, N), ABSENT, np.int32), np.full((n, K, C), ABSENT, np.int32),
                np.full((n, C, M), ABSENT, np.int32),
                None if cfg.pool_size is None else np.full((n, C), ABSENT, np.int32),
                np.zeros((n, K), np.uint32) if cfg.special_tokens else None, shape.astype(np.int32))


def tile_rows(cfg: DataConfig, device: str) -> int:
    """Sequences per compute tile: the (B, K, V_eff) float64 logits stay within the device budget.
    Mixed shapes are computed a whole block at a time (`_mixed_block`). A GPU tile may span several
    blocks (`_gpu_tiles`)."""
    if cfg.mixed_shapes:
        return BLOCK_SIZE
    if device == "cpu":
        return int(np.clip(CPU_LOGITS_BYTES // (8 * cfg.n_examples * cfg.n_usable), 1, CPU_MAX_TILE))
    import torch

    return gpu_tile_rows(cfg, torch.cuda.mem_get_info(device)[0])  # device: "cuda" or "cuda:<i>" (check_run_options)


def gpu_tile_rows(cfg: DataConfig, free_bytes: int | None) -> int:
    """Sequences per GPU tile: its float64 scores and processor weights within GPU_LOGITS_BYTES and a
    quarter of the device's free memory (None: unknown, the preflight's bound)."""
    budget = GPU_LOGITS_BYTES if free_bytes is None else min(GPU_LOGITS_BYTES, free_bytes // 4)
    row_bytes = 8 * (cfg.n_examples * cfg.n_usable + cfg.chain_length * cfg.h_num_layers * cfg.n_dims**2)
    return int(np.clip(budget // row_bytes, 1, GPU_MAX_BLOCKS * BLOCK_SIZE))


def _compute_cpu(cfg: DataConfig, draws: Draws, glob: Globals) -> None:
    rows, size = draws.rows, tile_rows(cfg, "cpu")
    scoring = float32_scoring(glob.embedding, cfg.n_usable) if CPU_FLOAT32_SCORES else None
    for a in range(0, len(rows), size):
        tile = slice(a, a + size)
        rows.chain[tile] = chain_tokens(glob.embedding, draws.weights[tile], rows.dag[tile],
                                        rows.inputs[tile], cfg.activation, cfg.n_usable,
                                        exact=scoring is None, scoring=scoring)


def _compute_torch(cfg: DataConfig, draws: Draws, glob: Globals, device: str, size: int) -> None:
    """The chain of `draws` (rows of one or more tasks), computed in torch on `device`, `size` rows a tile."""
    import torch

    def on_device(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    rows = draws.rows
    embedding = on_device(glob.embedding)
    for a in range(0, len(rows), size):
        tile = slice(a, a + size)
        chain = chain_tokens_torch(embedding, on_device(draws.weights[tile]), on_device(rows.dag[tile]),
                                   on_device(rows.inputs[tile]).long(), cfg.activation, cfg.n_usable)
        rows.chain[tile] = chain.cpu().numpy()


def _gpu_tiles(cfg: DataConfig, results: Iterator[tuple[int, int, Draws]], glob: Globals, device: str
               ) -> Iterator[Rows]:
    """(offset, n, draws) of consecutive tasks -> each task's n rows from `offset`, in order: the draws
    of as many tasks as fill one GPU tile are computed together (one launch sequence, one copy back)."""
    size = tile_rows(cfg, device)
    group: list[tuple[int, int, Draws]] = []
    for item in itertools.chain(results, [None]):
        if item is not None:
            group.append(item)
        if group and (item is None or sum(len(draws.rows) for _, _, draws in group) >= size):
            pieces = _computed_group(cfg, group, glob, device, size)
            group = []  # the draws are freed before the pieces are consumed: at most 2 tiles of draws at once
            yield from pieces


def _computed_group(cfg: DataConfig, group: list[tuple[int, int, Draws]], glob: Globals, device: str,
                    size: int) -> list[Rows]:
    """The tasks' draws of `group` computed together in tiles of `size` rows -> each task's n rows from `offset`."""
    joined = Draws(Rows.concat([draws.rows for _, _, draws in group]),
                   np.concatenate([draws.weights for _, _, draws in group]))
    _compute_torch(cfg, joined, glob, device, size)
    starts = np.cumsum([0] + [len(draws.rows) for _, _, draws in group])
    return [joined.rows.take(slice(first + offset, first + offset + n))
            for first, (offset, n, _) in zip(starts, group)]


def _task(cfg_json: str, split: str, block: int, lo: int, hi: int, compute: bool) -> Rows | Draws:
    """One unit of work: rows [lo, hi) of a block, widened to whole CPU tiles, computed on the CPU
    (compute=True, returns Rows) or only drawn (returns Draws for a GPU in the parent process)."""
    cfg = DataConfig.model_validate_json(cfg_json)
    glob = _cached_globals(cfg_json)
    if cfg.mixed_shapes:  # always on the CPU: each shape's few rows are small matmuls
        return _mixed_block(cfg, split, block, glob).take(slice(lo, hi))
    draws = draw_rows(cfg, split, block, lo, hi, glob)
    if not compute:
        return draws
    _compute_cpu(cfg, draws, glob)
    return draws.rows


def _tasks(start: int, stop: int, chunk_size: int, tile: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(block, lo, hi, offset, n): each chunk of n <= chunk_size rows inside one block, widened to
    [lo, hi) of whole tiles at fixed in-block offsets; the chunk starts at `offset` in that range."""
    for block in range(start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)):
        first = max(start, block * BLOCK_SIZE) - block * BLOCK_SIZE
        end = min(stop, (block + 1) * BLOCK_SIZE) - block * BLOCK_SIZE
        for lo in range(first, end, chunk_size):
            hi = min(lo + chunk_size, end)
            wide_lo, wide_hi = lo - lo % tile, min(BLOCK_SIZE, -(-hi // tile) * tile)
            yield block, wide_lo, wide_hi, lo - wide_lo, hi - lo


@contextlib.contextmanager
def _single_threaded_blas():
    """Worker processes read these at start-up: one BLAS thread each, the processes are the parallelism."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def _run(calls: Iterator[tuple], workers: int) -> Iterator[Rows | Draws]:
    """`_task(*args)` for each args in order; with workers > 1 in spawned processes, at most
    2 * workers tasks in flight so memory stays bounded by the chunk size."""
    if workers == 1:
        for args in calls:
            yield _task(*args)
        return
    with _single_threaded_blas():
        pool = multiprocessing.get_context("spawn").Pool(workers)
    with pool:
        pending = deque(pool.apply_async(_task, args) for args in itertools.islice(calls, 2 * workers))
        while pending:
            result = pending.popleft().get()
            pending.extend(pool.apply_async(_task, args) for args in itertools.islice(calls, 1))
            yield result


def check_run_options(chunk_size: int, device: str, workers: int) -> None:
    """One-line ConfigErrors for bad generation options (before any work)."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        fail("chunk_size", chunk_size, "must be a positive integer (rows per task)")
    if not isinstance(workers, int) or workers < 1:
        fail("workers", workers, "must be a positive integer (processes)")
    if device != "cpu" and not device.startswith("cuda"):
        fail("device", device, "must be cpu or cuda")
    if device.startswith("cuda"):
        try:
            import torch
        except ImportError:
            fail("device", device, "needs torch, which is not installed; use --device cpu")
        if not torch.cuda.is_available():
            fail("device", device, "CUDA is not available on this machine; use --device cpu")


def iter_rows(cfg: DataConfig, split: str, start: int, stop: int, *, chunk_size: int = 1024,
              device: str = "cpu", workers: int = 1) -> Iterator[Rows]:
    """Rows [start, stop) of `split` as consecutive pieces of at most chunk_size rows (never more
    than one 1,024-row block), in row order. Memory is bounded by the chunk size on the CPU; with a
    CUDA device the workers only draw and the parent computes tiles of up to GPU_MAX_BLOCKS blocks
    of draws on the GPU (`_gpu_tiles`). Arguments are checked here, before any work; the rows are
    produced as the iterator is consumed."""
    cfg.split_seed(split)  # rejects an unknown split
    check_run_options(chunk_size, device, workers)
    if not 0 <= start <= stop:
        raise ConfigError(f"rows [{start}, {stop}): need 0 <= start <= stop")
    return _iter_rows(cfg, split, start, stop, chunk_size, device, workers)


def _iter_rows(cfg: DataConfig, split: str, start: int, stop: int, chunk_size: int, device: str,
               workers: int) -> Iterator[Rows]:
    if cfg.mixed_shapes:  # a task computes its whole block (`_mixed_block`): smaller chunks would repeat it
        chunk_size = BLOCK_SIZE
    on_gpu = device != "cpu" and not cfg.mixed_shapes  # mixed shapes: always on the CPU (`_task`)
    tile = 1 if on_gpu else tile_rows(cfg, "cpu")  # GPU tasks draw only their rows; `_gpu_tiles` groups them
    plan, tasks = itertools.tee(_tasks(start, stop, chunk_size, tile))  # lazy
    workers = min(workers, max(1, -(-(stop - start) // chunk_size)))  # <= the number of tasks
    cfg_json = cfg.model_dump_json()
    calls = ((cfg_json, split, block, lo, hi, not on_gpu) for block, lo, hi, _, _ in tasks)
    results = ((offset, n, result) for (_, _, _, offset, n), result in zip(plan, _run(calls, workers)))
    if on_gpu:
        yield from _gpu_tiles(cfg, results, _cached_globals(cfg_json), device)
        return
    for offset, n, rows in results:
        yield rows.take(slice(offset, offset + n))


def generate_rows(cfg: DataConfig, split: str, start: int, stop: int, *, chunk_size: int = 1024,
                  device: str = "cpu", workers: int = 1) -> Rows:
    """Rows [start, stop) of `split` (canonical row order); a pure function of (cfg, split): the
    same for any chunk_size and workers (and, up to float64 near-ties, device). `stop` may exceed
    cfg.n_sequences: rows do not depend on the split size (prefix stability)."""
    parts = list(iter_rows(cfg, split, start, stop, chunk_size=chunk_size, device=device,
                           workers=workers))
    return Rows.concat(parts) if parts else empty_rows(cfg)


def empty_rows(cfg: DataConfig) -> Rows:
    """Zero rows with the shapes and optional columns of `cfg`."""
    if cfg.mixed_shapes:
        return _padded_rows(cfg, 0, np.zeros((0, 4), np.int32))
    K, N, C, M = cfg.n_examples, cfg.n_inputs, cfg.chain_length, cfg.n_parents
    return Rows(np.zeros(0, np.int64), np.zeros((0, K, N), np.int32), np.zeros((0, K, C), np.int32),
                np.zeros((0, C, M), np.int32), None if cfg.pool_size is None else np.zeros((0, C), np.int32),
                np.zeros((0, K), np.uint32) if cfg.special_tokens else None)
