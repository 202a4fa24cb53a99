"""Prompt rendering: raw rows -> token ids, labels and eval prompts (docs/prompts.md).

Pure, vectorized functions of (rows, format, recipe, n_rows): no Python loop over rows except the
keyed permutation of `drop_strategy: random`. Letters: B rows, K examples (the query included),
N inputs, C chain tokens, L tokens of one special-token example, T / Tp / Tt sequence lengths.

Formats:
- `standard` / `cot` (paper 1, special tokens off): examples concatenated, no delimiters, every
  row the same length; labels are the ids with each example's inputs set to -100.
- `standard_special_token` / `cot_special_token` / `hybrid_special_token` (paper 2): ⟨bos⟩ then
  examples ⟨is⟩ x ⟨ie⟩ [⟨ts⟩ y_1..y_{C-1} ⟨te⟩] ⟨as⟩ y_C ⟨ae⟩ ⟨eos⟩, the bracketed think span present
  in CoT examples only; hybrid draws each example's form from its stored coin `cot_u` and the
  CoT-Recipe, evaluated at the row's slot in a keyed permutation of the split (`recipe_slot`).
  Rows differ in length, so batches are padded with the pad id: on the left by default (evaluation),
  on the right into fixed-length buckets for training (`render_train`'s pad and bucket). Mixed-shape
  rows (paper 2's per-sequence N, M, C, K) are rendered the same way: their padded entries are simply
  not kept.

Every format is rendered from the full CoT layout and a boolean keep-mask, then packed: standard
examples and dropped demonstrations simply lose their think span.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cotlab.config import ConfigError, DataConfig, fail
from cotlab.data.generate import Rows, present_masks
from cotlab.formats import PromptConfig, RecipeConfig

IGNORE = -100  # label / target value that the loss and the scorer skip
DROP_KEY = 2  # spawn_key (2, seq_idx) of drop_strategy=random (0 = global objects, 1 = row blocks)
RECIPE_KEY = 4  # spawn_key (4,) of the CoT-Recipe's permutation (3 = the training loader)
RECIPE_ROUNDS = 6  # Feistel rounds of that permutation


@dataclass
class TrainBatch:
    """Teacher-forced sequences, padded (left or right) when lengths differ (numpy)."""

    input_ids: np.ndarray  # (B, T) int64
    labels: np.ndarray  # (B, T) int64, -100 on inputs, delimiters before the answer part, padding
    attention_mask: np.ndarray  # (B, T) bool, False on padding


@dataclass
class EvalBatch:
    """Eval prompts and what the model should generate after them (numpy)."""

    prompt_ids: np.ndarray  # (B, Tp) int64, left-padded with the pad id
    prompt_mask: np.ndarray  # (B, Tp) bool, False on padding
    target: np.ndarray  # (B, Tt) int64, right-padded with -100
    answer_pos: np.ndarray  # (B,) int64, index of y_C in target


def recipe_probability(idx: np.ndarray, n: int, recipe: RecipeConfig) -> np.ndarray:
    """r_CoT = min(scale·(idx/n)^alpha + p0, p1) in float64 with IEEE pow (0^0 = 1, x^inf = 0 for x < 1).

    idx: (B,) integer recipe slots (`recipe_slot` of the row indices) of a split with n rows -> (B,) float64.
    """
    x = np.asarray(idx, dtype=np.float64) / float(n)
    return np.minimum(recipe.scale * np.power(x, recipe.alpha) + recipe.p0, recipe.p1)


def recipe_slot(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """pi(idx): a keyed pseudo-random permutation of 0..n-1, evaluated per row (docs/prompts.md
    ("CoT-Recipe (hybrid format)")).

    The recipe is laid out over slots 0..n-1 and row idx takes slot pi(idx), so a split's CoT rows
    are the recipe's (same slots, same probabilities) but scattered over the row order instead of
    rising with it. pi is a balanced Feistel network of RECIPE_ROUNDS rounds on 2h bits (4^h >= n,
    h >= 1) restricted to 0..n-1 by cycle walking; its round keys are
    SeedSequence(seed, spawn_key=(4,)).generate_state(RECIPE_ROUNDS, uint64), seed = the data seed.
    Pure in (idx, n, seed): batching and row order do not matter. idx: (B,) ints in [0, n) -> (B,) int64.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if n < 1:
        fail("n_rows", n, "must be >= 1")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        fail("n_rows", n, f"must exceed every row index, all >= 0 (got {int(idx.min())}..{int(idx.max())})")
    half = max(1, ((n - 1).bit_length() + 1) // 2)  # bits per Feistel half
    keys = _recipe_keys(seed)
    slot = _feistel(idx.astype(np.uint64), half, keys)
    outside = np.flatnonzero(slot >= n)
    while outside.size:  # cycle walking: re-encrypt until the value lies in 0..n-1 (expected < 4 passes)
        slot[outside] = _feistel(slot[outside], half, keys)
        outside = outside[slot[outside] >= n]
    return slot.astype(np.int64)


@lru_cache(maxsize=64)
def _recipe_keys(seed: int) -> tuple[int, ...]:
    state = np.random.SeedSequence(seed, spawn_key=(RECIPE_KEY,)).generate_state(RECIPE_ROUNDS, np.uint64)
    return tuple(int(k) for k in state)


def _feistel(value: np.ndarray, half: int, keys: tuple[int, ...]) -> np.ndarray:
    """One pass of the Feistel network on 2·half-bit values: (B,) uint64 -> (B,) uint64, a bijection."""
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    left, right = value >> shift, value & mask
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2^64 by design
        for key in keys:  # round function: splitmix64's finalizer of (right + key)
            z = right + np.uint64(key)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            left, right = right, left ^ (z & mask)
    return (left << shift) | right


def cot_examples(rows: Rows, prompt_cfg: PromptConfig, n_rows: int, seed: int) -> np.ndarray:
    """Which examples are rendered in CoT form: (B, K) bool.

    Hybrid: example k of row i is CoT iff cot_u[i, k] < min(2^32, floor(r_CoT(pi(seq_idx_i))·2^32)),
    pi = recipe_slot keyed by `seed` (the data seed) (docs/prompts.md ("CoT-Recipe (hybrid format)")).
    pi does not depend on the recipe, so the CoT sets are nested across recipes.
    Other formats: all or none (seed unused).
    """
    shape = rows.inputs.shape[:2]
    if not prompt_cfg.spec.mixed:
        return np.full(shape, prompt_cfg.spec.with_cot) & _present_examples(rows)
    if rows.cot_u is None:
        raise ConfigError(f"format={prompt_cfg.format!r}: rows carry no cot_u coins "
                          "(generate the data with special_tokens=true)")
    if len(rows.seq_idx) and int(rows.seq_idx.max()) >= n_rows:
        fail("n_rows", n_rows, f"must exceed every seq_idx (max {int(rows.seq_idx.max())})")
    r = recipe_probability(recipe_slot(rows.seq_idx, n_rows, seed), n_rows, prompt_cfg.recipe)  # (B,)
    threshold = np.minimum(2.0**32, np.floor(r * 2.0**32))  # exact in float64
    return (rows.cot_u.astype(np.float64) < threshold[:, None]) & _present_examples(rows)


def render_train(rows: Rows, data_cfg: DataConfig, prompt_cfg: PromptConfig, n_rows: int,
                 pad: str = "left", bucket: int = 1) -> TrainBatch:
    """Full sequences for teacher forcing: (B, T) ids, labels and mask (docs/prompts.md ("Labels")).

    n_rows is the size of the split the rows come from (the recipe's n; the hybrid's permutation
    of it is keyed by data_cfg.seed). drop_k and force are eval-only and ignored here; offset applies.
    Special-token rows of different lengths are padded on the `pad` side ("left": evaluation's
    rendering, "right": training's), and T = the longest row rounded up to a multiple of `bucket`,
    capped at the longest sequence the format can have (`Format.sequence_length`). Plain formats
    have rows of one length: neither option changes them.
    """
    if pad not in ("left", "right"):
        fail("pad", pad, "must be 'left' or 'right'")
    if not isinstance(bucket, (int, np.integer)) or bucket < 1:
        fail("bucket", bucket, "must be a positive integer")
    prompt_cfg.check(data_cfg)
    _check_rows(rows, data_cfg)
    if not prompt_cfg.special:
        ids, labels = _plain_examples(rows, prompt_cfg.spec.with_cot)  # (B, K, S) each
        B, K, S = ids.shape
        ids, labels = ids.reshape(B, K * S), labels.reshape(B, K * S)  # (B, T)
        return _offset_train(TrainBatch(ids, labels, np.ones(ids.shape, bool)), prompt_cfg.offset)

    special = data_cfg.special_ids()
    ids = _special_examples(rows, special)  # (B, K, L)
    B, K, L = ids.shape
    N = rows.inputs.shape[2]
    labels = ids.copy()
    labels[:, :, : N + 2] = IGNORE  # ⟨is⟩ x ⟨ie⟩ is context; from ⟨ts⟩/⟨as⟩ on everything is a target
    keep = _keep_spans(~cot_examples(rows, prompt_cfg, n_rows, data_cfg.seed), N, rows.chain.shape[2])  # (B, K, L)
    keep &= _present_layout(rows)

    bos = np.full((B, 1), special["bos"], np.int64)
    ids = np.concatenate([bos, ids.reshape(B, K * L)], axis=1)  # (B, 1 + K*L); ⟨bos⟩ labels itself
    labels = np.concatenate([bos, labels.reshape(B, K * L)], axis=1)
    keep = np.concatenate([np.ones((B, 1), bool), keep.reshape(B, K * L)], axis=1)
    longest = int(keep.sum(axis=1).max()) if B else 0
    cap = prompt_cfg.spec.sequence_length(K, N, rows.chain.shape[2])  # rows carry the largest shape
    T = min(-(-longest // bucket) * bucket, cap)  # a few fixed lengths: one compiled shape each
    input_ids, mask = _pack(ids, keep, special["pad"], left=pad == "left", length=T)  # (B, T)
    labels, _ = _pack(labels, keep, IGNORE, left=pad == "left", length=T)
    return _offset_train(TrainBatch(input_ids, labels, mask), prompt_cfg.offset)


def render_eval(rows: Rows, data_cfg: DataConfig, prompt_cfg: PromptConfig, n_rows: int,
                eval_seed: int) -> EvalBatch:
    """Eval prompts = K-1 demonstrations + the query's inputs; target = the rest of the query.

    standard: target [y_C]; cot: [y_1..y_C]; special formats (docs/prompts.md, "Eval prompts"):
    ⟨bos⟩, the demos (each in its own form, drop_k spans deleted), the query's ⟨is⟩ x ⟨ie⟩ and the
    forced token if any; target = the rest of the query in the form its own coin (or `force`) sets,
    y_C at target[-3].
    eval_seed keys drop_strategy=random: demo order = Generator(PCG64(SeedSequence(eval_seed,
    spawn_key=(2, seq_idx)))).permutation(K-1), and the first k CoT demos in that order lose their
    span, so dropped sets grow with k.
    """
    prompt_cfg.check(data_cfg)
    _check_rows(rows, data_cfg)
    B, K, N = rows.inputs.shape
    C = rows.chain.shape[2]
    if not prompt_cfg.special:
        ids, _ = _plain_examples(rows, prompt_cfg.spec.with_cot)  # (B, K, S)
        S = ids.shape[2]
        prompt = ids.reshape(B, K * S)[:, : S * (K - 1) + N]  # (B, Tp)
        cot = prompt_cfg.spec.with_cot
        target = rows.chain[:, K - 1, :] if cot else rows.chain[:, K - 1, -1:]  # (B, Tt)
        answer_pos = np.full(B, C - 1 if cot else 0, np.int64)
        batch = EvalBatch(prompt.astype(np.int64), np.ones(prompt.shape, bool),
                          target.astype(np.int64), answer_pos)
        return _offset_eval(batch, prompt_cfg.offset)

    special = data_cfg.special_ids()
    examples = _special_examples(rows, special)  # (B, K, L)
    L = examples.shape[2]
    cot = cot_examples(rows, prompt_cfg, n_rows, data_cfg.seed)  # (B, K)
    drop = _dropped_demos(rows, cot[:, : K - 1], prompt_cfg, eval_seed)  # (B, K-1)
    present = _present_layout(rows)  # (B, K, L)
    demo_keep = _keep_spans(~cot[:, : K - 1] | drop, N, C) & present[:, : K - 1]  # (B, K-1, L)

    forced = {"think": "think_start", "answer": "answer_start", None: "pad"}[prompt_cfg.force]  # pad: not kept
    prompt = np.concatenate([
        np.full((B, 1), special["bos"], np.int64),
        examples[:, : K - 1].reshape(B, (K - 1) * L),
        examples[:, K - 1, : N + 2],  # the query's ⟨is⟩ x ⟨ie⟩
        np.full((B, 1), special[forced], np.int64),
    ], axis=1)  # (B, 1 + (K-1)*L + N + 3)
    prompt_keep = np.concatenate([
        np.ones((B, 1), bool), demo_keep.reshape(B, (K - 1) * L), present[:, K - 1, : N + 2],
        np.full((B, 1), prompt_cfg.force is not None),
    ], axis=1)
    prompt_ids, prompt_mask = _pack(prompt, prompt_keep, special["pad"], left=True)

    # The query's rest: ⟨ts⟩ y_1..y_{C-1} ⟨te⟩ ⟨as⟩ y_C ⟨ae⟩ ⟨eos⟩, C+5 tokens.
    rest = examples[:, K - 1, N + 2:]  # (B, C+5)
    if prompt_cfg.force == "think":  # ⟨ts⟩ is already in the prompt
        query_cot = np.ones(B, bool)
    elif prompt_cfg.force == "answer":  # the think span is skipped; ⟨as⟩ is in the prompt
        query_cot = np.zeros(B, bool)
    else:
        query_cot = cot[:, K - 1]
    target_keep = _keep_spans(~query_cot[:, None], N, C)[:, 0, N + 2:] & present[:, K - 1, N + 2:]  # (B, C+5)
    if prompt_cfg.force is not None:  # drop the forced token from the target: the first kept one
        target_keep[np.arange(B), np.argmax(target_keep, axis=1)] = False
    target, target_mask = _pack(rest, target_keep, IGNORE, left=False)  # (B, Tt)
    answer_pos = target_mask.sum(axis=1) - 3
    return _offset_eval(EvalBatch(prompt_ids, prompt_mask, target, answer_pos.astype(np.int64)),
                        prompt_cfg.offset)


def _check_rows(rows: Rows, data_cfg: DataConfig) -> None:
    K, N, _, C = data_cfg.padded_dims
    if rows.inputs.shape[1:] != (K, N) or rows.chain.shape[1:] != (K, C):
        raise ConfigError(f"rows: inputs {rows.inputs.shape} / chain {rows.chain.shape} do not match "
                          f"the data config (n_examples={K}, n_inputs={N}, chain_length={C})")


def _plain_examples(rows: Rows, with_cot: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paper-1 examples x_1..x_N [y_1..y_{C-1}] y_C: ids and labels, (B, K, S) int64 each."""
    chain = rows.chain if with_cot else rows.chain[:, :, -1:]
    ids = np.concatenate([rows.inputs, chain], axis=2).astype(np.int64)  # (B, K, N + C or N + 1)
    labels = ids.copy()
    labels[:, :, : rows.inputs.shape[2]] = IGNORE
    return ids, labels


def _special_examples(rows: Rows, special: dict[str, int]) -> np.ndarray:
    """Every example in CoT layout ⟨is⟩ x ⟨ie⟩ ⟨ts⟩ y_1..y_{C-1} ⟨te⟩ ⟨as⟩ y_C ⟨ae⟩ ⟨eos⟩: (B, K, L) int64.

    L = N + C + 7; the think span ⟨ts⟩..⟨te⟩ occupies positions N+2 .. N+C+2.
    """
    B, K, _ = rows.inputs.shape

    def token(name: str) -> np.ndarray:
        return np.full((B, K, 1), special[name], np.int64)

    return np.concatenate([
        token("input_start"), rows.inputs.astype(np.int64), token("input_end"),
        token("think_start"), rows.chain[:, :, :-1].astype(np.int64), token("think_end"),
        token("answer_start"), rows.chain[:, :, -1:].astype(np.int64), token("answer_end"), token("eos"),
    ], axis=2)


def _present_examples(rows: Rows) -> np.ndarray:
    """(B, K) bool: the examples a row has (mixed shapes: its last K_i; otherwise all)."""
    B, K = rows.inputs.shape[:2]
    if rows.shape is None:
        return np.ones((B, K), bool)
    return np.arange(K) >= K - rows.shape[:, 3:4]


def _present_layout(rows: Rows) -> np.ndarray:
    """(B, K, L) bool: the positions of the CoT layout (`_special_examples`) a row's own shape has.

    All of them for rows of one shape; for mixed shapes the padded inputs and think tokens and whole
    absent examples are dropped (the answer and the delimiters stay wherever the example exists).
    """
    B, K, N = rows.inputs.shape
    C = rows.chain.shape[2]
    keep = np.ones((B, K, N + C + 7), bool)
    if rows.shape is None:
        return keep
    masks = present_masks(rows.shape, K, N, rows.dag.shape[2], C)
    keep[:, :, 1: N + 1] = masks["inputs"]
    keep[:, :, N + 3: N + C + 2] = masks["chain"][:, :, :-1]  # y_1..y_{C_i-1}; padding after them
    return keep & masks["examples"][:, :, None]


def _keep_spans(no_span: np.ndarray, n_inputs: int, chain_length: int) -> np.ndarray:
    """Keep-mask of CoT layouts: (B, E) bool "this example has no think span" -> (B, E, L) bool.

    The span ⟨ts⟩ y_1..y_{C-1} ⟨te⟩ occupies positions N+2 .. N+C+2 of L = N+C+7.
    """
    N, C = n_inputs, chain_length
    keep = np.ones(no_span.shape + (N + C + 7,), bool)
    keep[..., N + 2: N + C + 3] = ~no_span[..., None]
    return keep


def _pack(values: np.ndarray, keep: np.ndarray, pad_value: int, left: bool, length: int | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Move each row's kept entries together: (B, S) values + (B, S) bool -> (B, T) int64, (B, T) bool.

    T = `length` if given (at least the longest row), else the longest row; shorter rows are padded
    with pad_value on the left (left=True) or right.
    """
    lengths = keep.sum(axis=1)  # (B,)
    T = length if length is not None else int(lengths.max()) if len(lengths) else 0
    slot = np.cumsum(keep, axis=1) - 1  # (B, S): index of each kept entry among its row's kept ones
    if left:
        slot += (T - lengths)[:, None]
    row, col = np.nonzero(keep)
    out = np.full((len(values), T), pad_value, np.int64)
    mask = np.zeros((len(values), T), bool)
    out[row, slot[row, col]] = values[row, col]
    mask[row, slot[row, col]] = True
    return out, mask


def _dropped_demos(rows: Rows, demo_cot: np.ndarray, prompt_cfg: PromptConfig, eval_seed: int) -> np.ndarray:
    """Which demonstrations lose their think span under drop_k: (B, K-1) bool, k per row.

    Each strategy ranks the demos (first_k: by position, last_k: nearest the query first, random:
    keyed permutation); the k best-ranked CoT demos are dropped. Fewer than k CoT demos raises.
    """
    k = prompt_cfg.drop_k
    B, D = demo_cot.shape
    drop = np.zeros((B, D), bool)
    if k == 0:
        return drop
    n_spans = demo_cot.sum(axis=1)  # (B,)
    if (n_spans < k).any():
        i = int(np.argmax(n_spans < k))
        fail("drop_k", k, f"must be <= the number of think spans in the eval prompt "
             f"(row seq_idx={int(rows.seq_idx[i])} has {int(n_spans[i])})")
    if prompt_cfg.drop_strategy == "first_k":
        rank = np.broadcast_to(np.arange(D), (B, D))
    elif prompt_cfg.drop_strategy == "last_k":
        rank = np.broadcast_to(np.arange(D)[::-1], (B, D))
    else:
        rank = np.full((B, D), D, np.int64)
        n_demos = _present_examples(rows)[:, :D].sum(axis=1)  # (B,) K_i - 1: a row's demos are its last ones
        for i, seq_idx in enumerate(rows.seq_idx):  # keyed by row, so independent of batching
            own = int(n_demos[i])
            order = np.random.Generator(np.random.PCG64(
                np.random.SeedSequence(eval_seed, spawn_key=(DROP_KEY, int(seq_idx))))).permutation(own)
            rank[i, D - own + order] = np.arange(own)
    rank = np.where(demo_cot, rank, D)  # standard demos have no span: rank them last
    chosen = np.argsort(rank, axis=1, kind="stable")[:, :k]  # (B, k)
    np.put_along_axis(drop, chosen, True, axis=1)
    return drop


def _offset_train(batch: TrainBatch, offset: int) -> TrainBatch:
    if offset:
        batch.input_ids += offset
        batch.labels[batch.labels != IGNORE] += offset
    return batch


def _offset_eval(batch: EvalBatch, offset: int) -> EvalBatch:
    if offset:
        batch.prompt_ids += offset
        batch.target[batch.target != IGNORE] += offset
    return batch
