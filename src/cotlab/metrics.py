"""Eval-set scoring: KV-cache decoding, scored per row and reduced as in docs/evaluation.md.

`score_rows` renders each eval row's prompt (K-1 demonstrations + the query's inputs) in the
run's format and decodes it as `DecodeConfig` says: by default greedily, C tokens for cot, 1 for
standard; for the special-token formats up to the longest form of the query's rest (C+5 tokens,
one fewer when a token is forced), stopping at ⟨eos⟩; or up to `max_new_tokens`; or, with a
temperature, `n_samples` sampled generations whose parsed answers vote. It keeps every row's
outcome (`RowScores`); `reduce_scores` turns them into:

- `answer_acc`: plain formats: the token generated at `answer_pos` equals y_C. Special-token
  formats, paper 2's training rule: the generation up to its first ⟨eos⟩ must end in
  ⟨as⟩ y ⟨ae⟩ ⟨eos⟩ (y ⟨ae⟩ ⟨eos⟩ when ⟨as⟩ was forced), and y must equal y_C. `format_acc` is the
  share of generations with that ending. `answer_acc_offline` / `format_acc_offline`: paper 2's
  offline rule, at least 3 tokens ending in y ⟨ae⟩ ⟨eos⟩, no ⟨as⟩ check. A generation without ⟨eos⟩
  within the budget is invalid under both. `length_p10` / `length_p50` / `length_p90`: (lower)
  percentiles of the generated length, ⟨eos⟩ included.
- With n_samples > 1 a row's answer is the majority vote of its samples' answers (`majority_vote`;
  under each rule, only that rule's valid samples vote), and the format and length metrics count
  every sample.
- `chain_acc_{i}` / `chain_loss_{i}`: position by position and unconditional on earlier tokens:
  the token generated where the target holds its i-th chain token, and the CE of that step's
  logits against it (the first sample when sampling). Columns: C for cot-like formats (i = C-1 is
  y_C), one (`chain_acc_0`, the answer) for standard ones. A row whose target has fewer chain
  tokens (a standard-form query in hybrid, or force=answer) fills the last columns; a column no
  row reaches is NaN, and a position past a budget shorter than the target is wrong (its loss NaN).
- `eval_loss`: teacher-forced CE over every labelled position of the same rows' training rendering
  (`render_train`: the demonstrations' labels and the query's target), token-weighted. It is
  computed in the same pass as the decoding (`score_rows`, "One pass").
- `global_majority_baseline`: always answering the eval set's most frequent y_C (its share).
- `majority_baseline`: the in-context majority (the most frequent y_C among the K-1
  demonstrations, ties to the smallest id) scored on the query (docs/data.md); NaN when K = 1.

`evaluate_accuracy` (the trainer's eval) shards the rows across ranks (rank r takes rows r, r+W,
...) and all-reduces the sums once, so any world size gives the single-process values (up to float
summation order). `cotlab.evaluate` uses the per-row scores for conditional accuracies.

Letters: n rows, B rows per batch, S samples per row, K examples, C chain tokens, P chain columns,
Tp prompt length, Tt target length, T sequence length, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cotlab.config import DataConfig
from cotlab.data.coverage import in_context_majority
from cotlab.data.prompts import IGNORE, render_train
from cotlab.decode import prefill_and_decode
from cotlab.formats import DecodeConfig, PromptConfig, max_new_tokens
from cotlab.prompts_export import eval_prompts

if TYPE_CHECKING:
    from cotlab.data.generate import Rows
    from cotlab.data.prompts import EvalBatch, TrainBatch
    from cotlab.decode import Decoded
    from cotlab.data.store import Dataset
    from cotlab.model import Transformer


@dataclass
class RowScores:
    """Per-row outcome of decoding one format (numpy, n rows, S samples per row, P chain columns)."""

    answer: np.ndarray  # (n,) bool: the (voted) answer equals y_C; special formats: training rule
    answer_offline: np.ndarray  # (n,) bool: the same under the offline rule (plain formats: = answer)
    valid: np.ndarray  # (n, S) bool: special formats: well-formed under the training rule; plain: True
    valid_offline: np.ndarray  # (n, S) bool: well-formed under the offline rule
    gen_len: np.ndarray  # (n, S) int64: tokens generated up to the first ⟨eos⟩ included (at most budget)
    chain: np.ndarray  # (n, P) bool: the token generated at chain column i is right (first sample)
    present: np.ndarray  # (n, P) bool: the row's target has chain column i
    chain_loss: np.ndarray  # (n, P) float64: CE of the step at chain column i (0 where absent)
    ce: np.ndarray  # (n,) float64: teacher-forced CE summed over the row's labelled positions
    ce_tokens: np.ndarray  # (n,) int64: labelled positions of the row
    majority: np.ndarray  # (n,) bool: the in-context majority equals y_C (False when K = 1)
    answer_id: np.ndarray  # (n,) int64: y_C, for the global-majority baseline
    budget: int  # max_new_tokens decoded: gen_len lies in 0..budget


def by_column(value: torch.Tensor, column: torch.Tensor, P: int) -> torch.Tensor:
    """Sum per-position values (B, Tt) into chain columns: column (B, Tt) int64 in 0..P, P = dropped.

    Returns (B, P) float64; each row has at most one position per kept column.
    """
    binned = torch.zeros(value.size(0), P + 1, dtype=torch.float64, device=value.device)
    return binned.scatter_add_(1, column, value.double())[:, :P]


def one_pass_labels(prompt: EvalBatch, seq: TrainBatch) -> np.ndarray | None:
    """The training rendering's labels laid over each row's eval prompt followed by its target.

    prompt: `eval_prompts` (prompt (B, Tp) left-padded, target (B, Tt) right-padded with -100);
    seq: `render_train(..., pad="right")` of the same rows, (B, T). Returns None unless every row's
    training sequence is exactly its prompt's real tokens followed by its target's (true for the
    plain formats and for each special-token format under its own forcing; not under drop_k, nor
    when `force` goes against a query's trained form). Otherwise labels (B, Tp+Tt) int64: column c
    holds the label of the training token at combined column c (prompt columns, then target
    columns), -100 off the real tokens and on each row's first real token: nothing predicts that one.
    """
    B, Tp = prompt.prompt_ids.shape
    T = seq.input_ids.shape[1]
    real = np.concatenate([prompt.prompt_mask, prompt.target != IGNORE], axis=1)  # (B, Tp+Tt)
    ids = np.concatenate([prompt.prompt_ids, prompt.target], axis=1)  # (B, Tp+Tt)
    n_prompt, n_seq = prompt.prompt_mask.sum(axis=1), seq.attention_mask.sum(axis=1)  # (B,)
    if not np.array_equal(n_seq, real.sum(axis=1)):
        return None
    first = Tp - n_prompt  # (B,) combined column of each row's first real token
    source = np.clip(np.arange(real.shape[1])[None] - first[:, None], 0, T - 1)  # (B, Tp+Tt) train column
    if not np.array_equal(np.take_along_axis(seq.input_ids, source, axis=1)[real], ids[real]):
        return None
    labels = np.where(real, np.take_along_axis(seq.labels, source, axis=1), IGNORE)
    labels[np.arange(B), first] = IGNORE
    return labels


@torch.no_grad()
def score_rows(model: Transformer, rows: Rows, data_cfg: DataConfig, prompt_cfg: PromptConfig, *,
               batch_size: int, device: torch.device | str, n_rows: int | None = None,
               one_pass: bool = True, decode: DecodeConfig = DecodeConfig()) -> RowScores:
    """Decode every row's eval prompt and score it (module docstring); one host copy at the end.

    n_rows: size of the eval set the rows belong to (the recipe's index range); default len(rows).
    decode: budget, temperature, samples and seed (checked against the data and format first).
    Chain column i is the i-th chain token of the target (delimiters skipped, right-aligned so the
    answer is the last column), compared with the token generated at the same target position.
    Precision follows the caller's autocast context. Sampling draws from one torch.Generator seeded
    with decode.seed on `device`, batch after batch: the same seed, batch size and device repeat.

    One pass. `eval_loss` is the teacher-forced CE over every labelled position of the training
    rendering: the demonstrations' labels, which lie in the eval prompt, and the query's target,
    which decoding generates but not necessarily right, so the decoding steps cannot score it. When
    the training sequence is the prompt followed by the target (`one_pass_labels`), one forward per
    batch does both: the prefill's logits score the prompt part (its last slot scores the target's
    first token), one teacher-forced forward of target[:, :-1] into the cache scores the rest of
    the target, then the cache is rewound to the prompt and decoding continues
    (`cotlab.decode.prefill_and_decode`). Per row that is Tp + (Tt-1) + (n_new-1) positions instead
    of Tp + (n_new-1) for decoding plus T = Tp + Tt for a separate forward of the training
    rendering (about half: the prompt goes through the model once). The decoded tokens and their
    logits are bit-identical to plain `greedy_decode`; the loss sums the same positions with the
    same labels, equal up to float rounding (the prompt's logits come from a shorter forward).
    Reusing the greedy steps where a row's generation happens to equal its target would save at
    most Tt-1 positions on those rows only, so the target is always teacher-forced.
    When some row of a batch is not its prompt + target (drop_k, a `force` against the query's
    trained form), or with `one_pass=False` (the reference), the batch is scored in two passes:
    decoding, then a separate forward of the training rendering.
    """
    decode.check(data_cfg, prompt_cfg)
    device = torch.device(device)
    n_rows = len(rows.seq_idx) if n_rows is None else n_rows
    P = prompt_cfg.spec.chain_columns(data_cfg.largest("chain_length"))
    n_new = max_new_tokens(data_cfg, prompt_cfg, decode.max_new_tokens)
    S = decode.n_samples
    generator = torch.Generator(device).manual_seed(decode.seed) if decode.sampled else None
    special = {name: i + prompt_cfg.offset for name, i in data_cfg.special_ids().items()}
    special_ids = torch.tensor(sorted(special.values()), dtype=torch.long, device=device)
    shapes = {"answer": (torch.bool, ()), "answer_offline": (torch.bool, ()), "valid": (torch.bool, (S,)),
              "valid_offline": (torch.bool, (S,)), "gen_len": (torch.int64, (S,)), "chain": (torch.bool, (P,)),
              "present": (torch.bool, (P,)), "chain_loss": (torch.float64, (P,)), "ce": (torch.float64, ()),
              "ce_tokens": (torch.int64, ())}
    # Each column starts with an empty piece, so that a rank without rows returns empty arrays.
    parts = {name: [torch.zeros((0, *shape), dtype=dtype, device=device)] for name, (dtype, shape) in shapes.items()}
    for start in range(0, len(rows.seq_idx), batch_size):
        batch = rows.take(slice(start, start + batch_size))
        B = len(batch.seq_idx)

        # Decoding from the eval prompt (and the teacher-forced loss, in one pass if possible).
        prompt = eval_prompts(batch, data_cfg, prompt_cfg, n_rows)  # what `cotlab prompts` exports
        seq = render_train(batch, data_cfg, prompt_cfg, n_rows, pad="right")  # what eval_loss scores, as training
        layout = one_pass_labels(prompt, seq) if one_pass else None
        prompt_ids = torch.from_numpy(prompt.prompt_ids).to(device)  # (B, Tp)
        prompt_mask = None if prompt.prompt_mask.all() else torch.from_numpy(prompt.prompt_mask).to(device)
        target = torch.from_numpy(prompt.target).to(device)  # (B, Tt), -100 past each row's end
        answer_pos = torch.from_numpy(prompt.answer_pos).to(device)  # (B,)
        # One pass: target[:, :-1] teacher-forced after the prompt (-100 past a row's end fed as 0, never scored).
        continuation = None if layout is None else target[:, :-1].clamp(min=0)  # (B, Tt-1)
        decoded = prefill_and_decode(model, prompt_ids, prompt_mask, n_new, stop_id=special.get("eos"),
                                     continuation=continuation, temperature=decode.temperature,
                                     n_samples=S, generator=generator, min_steps=min(target.size(1), n_new))
        tokens, logits = decoded.tokens, decoded.logits  # (B·S, n), (B·S, n, V)
        if layout is None:
            del decoded  # free the prefill's logits before the second forward
            ce, ce_tokens = teacher_forced_ce(model, seq, device)  # (B,), (B,)
        else:
            ce, ce_tokens = one_pass_ce(decoded, layout, device)  # (B,), (B,)
        y_answer = target[torch.arange(B, device=device), answer_pos]  # (B,) y_C
        if prompt_cfg.special:
            said, valid, valid_offline, gen_len = parse_special(tokens, special, prompt_cfg.force == "answer")
        else:
            said = tokens.gather(1, answer_pos.repeat_interleave(S)[:, None])[:, 0]  # (B·S,)
            valid = valid_offline = torch.ones_like(said, dtype=torch.bool)
            gen_len = torch.full_like(said, n_new)
        V = logits.size(-1)
        answer = majority_vote(said.view(B, S), valid.view(B, S), V) == y_answer  # (B,)
        answer_offline = majority_vote(said.view(B, S), valid_offline.view(B, S), V) == y_answer

        # Chain positions of the first sample: every target token except delimiters; a row's k-th of
        # m fills column P - m + k, so the answer is always the last column.
        Tt = target.size(1)
        first, first_logits = tokens[::S], logits[::S]  # (B, n), (B, n, V)
        if Tt > n_new:  # a budget shorter than the target: positions past it were not generated
            first = F.pad(first, (0, Tt - n_new), value=-1)
            first_logits = F.pad(first_logits, (0, 0, 0, Tt - n_new), value=float("nan"))
        is_chain = (target != IGNORE) & ~torch.isin(target, special_ids)  # (B, Tt)
        column = P - is_chain.sum(dim=1, keepdim=True) + is_chain.cumsum(dim=1) - 1  # (B, Tt)
        column = torch.where(is_chain, column, P)  # P = a discard bin
        correct = (first[:, :Tt] == target) & is_chain  # (B, Tt)
        step_loss = F.cross_entropy(first_logits[:, :Tt].float().transpose(1, 2), target.clamp(min=0),
                                    reduction="none")  # (B, Tt)

        scored = {"answer": answer, "answer_offline": answer_offline, "valid": valid.view(B, S),
                  "valid_offline": valid_offline.view(B, S), "gen_len": gen_len.view(B, S),
                  "chain": by_column(correct, column, P) > 0, "present": by_column(is_chain, column, P) > 0,
                  "chain_loss": by_column(torch.where(is_chain, step_loss, 0.0), column, P),
                  "ce": ce, "ce_tokens": ce_tokens}
        for name, value in scored.items():
            parts[name].append(value)
    host = {name: torch.cat(values).cpu().numpy() for name, values in parts.items()}
    answer_id = rows.chain[:, -1, -1].astype(np.int64)  # (n,) y_C
    majority = in_context_majority(rows) == answer_id  # (n,) all False when K = 1
    return RowScores(majority=majority, answer_id=answer_id, budget=n_new, **host)


def parse_special(tokens: torch.Tensor, special: dict[str, int], answer_forced: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read special-token generations (R, n) up to their first ⟨eos⟩ under paper 2's two rules.

    Returns (R,) each: the answer token (at -3, counting ⟨eos⟩ as -1), valid under the training rule
    (⟨eos⟩ found, ⟨ae⟩ at -2 and ⟨as⟩ at -4 unless it was forced into the prompt), valid under the
    offline rule (⟨eos⟩ found, at least 3 tokens, ⟨ae⟩ at -2), and the length (⟨eos⟩ included, n
    without one).
    """
    R, n = tokens.shape
    rows = torch.arange(R, device=tokens.device)
    is_eos = tokens == special["eos"]  # (R, n)
    found = is_eos.any(dim=1)
    stop = torch.where(found, is_eos.int().argmax(dim=1), n)  # (R,) first ⟨eos⟩

    def back(k: int) -> torch.Tensor:  # (R,) the token k places before ⟨eos⟩ (garbage where stop < k)
        return tokens[rows, (stop - k).clamp(min=0)]

    valid_offline = found & (stop >= 2) & (back(1) == special["answer_end"])
    valid = valid_offline
    if not answer_forced:  # a forced ⟨as⟩ is in the prompt (docs/evaluation.md)
        valid = valid & (stop >= 3) & (back(3) == special["answer_start"])
    return back(2), valid, valid_offline, (stop + 1).clamp(max=n)


def majority_vote(answers: torch.Tensor, valid: torch.Tensor, V: int) -> torch.Tensor:
    """(B, S) answer tokens and (B, S) bool valid -> (B,) int64: the most frequent valid answer of
    each row, ties to the smallest id, -1 when no sample is valid (wrong whatever y_C is)."""
    counts = torch.zeros(answers.size(0), V, dtype=torch.long, device=answers.device)  # (B, V)
    counts.scatter_add_(1, answers.clamp(0, V - 1), valid.long())
    voted = counts.argmax(dim=1)  # the first maximum: the smallest id
    return torch.where(counts.max(dim=1).values > 0, voted, -1)


def teacher_forced_ce(model: Transformer, seq: TrainBatch, device: torch.device
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row CE sum (B,) float64 and labelled positions (B,) int64 of a separate forward of `seq`
    (right-padded: padding only follows a row's tokens, so the causal forward needs no mask, as in training)."""
    input_ids = torch.from_numpy(seq.input_ids).to(device)  # (B, T)
    labels = torch.from_numpy(seq.labels[:, 1:]).to(device)  # (B, T-1): next-token targets
    out = model(input_ids)[:, :-1].float()  # (B, T-1, V)
    ce = F.cross_entropy(out.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")  # (B, T-1)
    return ce.double().sum(dim=1), (labels != IGNORE).sum(dim=1)


def one_pass_ce(decoded: Decoded, labels_np: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`teacher_forced_ce` from the logits of `prefill_and_decode` (`score_rows`, "One pass"): the
    logits of combined column c (prompt slots, then the continuation target[:, :-1]) score the label
    of column c+1 of `one_pass_labels`."""
    Tp = decoded.prompt_logits.size(1)
    labels = torch.from_numpy(labels_np[:, 1:]).to(device)  # (B, Tp+Tt-1): next-token targets
    ce = F.cross_entropy(decoded.prompt_logits.float().transpose(1, 2), labels[:, :Tp], ignore_index=IGNORE,
                         reduction="none").double().sum(dim=1)  # (B,)
    if decoded.continuation_logits is not None:
        ce += F.cross_entropy(decoded.continuation_logits.float().transpose(1, 2), labels[:, Tp:],
                              ignore_index=IGNORE, reduction="none").double().sum(dim=1)
    return ce, (labels != IGNORE).sum(dim=1)


def reduce_scores(scores: RowScores, data_cfg: DataConfig, prompt_cfg: PromptConfig, *,
                  device: torch.device | str = "cpu", world_size: int = 1) -> dict[str, float]:
    """Metrics (module docstring) of per-row scores, summed over ranks when world_size > 1.

    Every rank must call it with its own rows (one all_reduce of float64 sums on `device`).
    Returns plain floats: n, answer_acc, eval_loss, chain_acc_i, chain_loss_i, majority_baseline,
    global_majority_baseline (+ format_acc, answer_acc_offline, format_acc_offline, length_p10,
    length_p50, length_p90 for special-token formats).
    """
    sums = {"n": [len(scores.answer)], "answer": [scores.answer.sum()], "valid": [scores.valid.sum()],
            "answer_offline": [scores.answer_offline.sum()], "valid_offline": [scores.valid_offline.sum()],
            "generations": [scores.valid.size], "majority": [scores.majority.sum()], "ce": [scores.ce.sum()],
            "ce_tokens": [scores.ce_tokens.sum()],
            "chain_correct": scores.chain.sum(axis=0), "chain_count": scores.present.sum(axis=0),
            "chain_loss": scores.chain_loss.sum(axis=0),
            "gen_len": np.bincount(scores.gen_len.ravel(), minlength=scores.budget + 1),  # lengths 0..budget
            "answers": np.bincount(scores.answer_id, minlength=data_cfg.vocab_size)}  # histogram of y_C
    flat = torch.from_numpy(np.concatenate([np.asarray(v, np.float64) for v in sums.values()])).to(device)
    if world_size > 1:
        dist.all_reduce(flat)
    host, total, start = flat.cpu().numpy(), {}, 0
    for name, value in sums.items():
        total[name], start = host[start:start + len(value)], start + len(value)

    n, generations = float(total["n"][0]), float(total["generations"][0])
    with np.errstate(invalid="ignore", divide="ignore"):
        result = {"n": n, "answer_acc": total["answer"][0] / n,
                  "eval_loss": total["ce"][0] / total["ce_tokens"][0]}
        for i, count in enumerate(total["chain_count"]):
            result[f"chain_acc_{i}"] = total["chain_correct"][i] / count if count else float("nan")
            result[f"chain_loss_{i}"] = total["chain_loss"][i] / count if count else float("nan")
        result["majority_baseline"] = (total["majority"][0] / n if data_cfg.largest("n_examples") > 1
                                       else float("nan"))
        result["global_majority_baseline"] = total["answers"].max() / n
        if prompt_cfg.special:
            result["format_acc"] = total["valid"][0] / generations
            result["answer_acc_offline"] = total["answer_offline"][0] / n
            result["format_acc_offline"] = total["valid_offline"][0] / generations
            cumulative = np.cumsum(total["gen_len"])  # generations of length <= L, L = 0..budget
            for q in (10, 50, 90):  # the smallest length that q% of the generations do not exceed
                result[f"length_p{q}"] = float(np.searchsorted(cumulative, cumulative[-1] * q / 100))
    return {name: float(value) for name, value in result.items()}


def evaluate_accuracy(model: Transformer, rows: Rows | Dataset, data_cfg: DataConfig,
                      prompt_cfg: PromptConfig, *, batch_size: int, device: torch.device | str,
                      rank: int = 0, world_size: int = 1, decode: DecodeConfig = DecodeConfig()) -> dict[str, float]:
    """Score `model` on the eval rows, this rank's share of them; every rank must call it.

    rows: the eval set (row index = recipe index, n_rows = its length), or a Dataset (all rows).
    Returns `reduce_scores`'s metrics of the whole set.
    """
    if hasattr(rows, "read"):
        rows = rows.read(0, rows.n_rows)
    n_rows = len(rows.seq_idx)
    shard = rows.take(np.arange(rank, n_rows, world_size))
    scores = score_rows(model, shard, data_cfg, prompt_cfg, batch_size=batch_size, device=device, n_rows=n_rows,
                        decode=decode)
    return reduce_scores(scores, data_cfg, prompt_cfg, device=device, world_size=world_size)
