"""In-training evaluation: greedy KV-cache decoding on the eval set, scored as in experiments.md §3.

`evaluate_accuracy` renders each eval row's prompt (K-1 demonstrations + the query's inputs) in
the run's format and decodes greedily: C tokens for cot, 1 for standard; for the special-token
formats up to the longest form of the query's rest (C+5 tokens, one fewer when a token is forced),
stopping at ⟨eos⟩. It scores:

- `answer_acc`: plain formats: the token generated at `answer_pos` equals y_C. Special-token
  formats (experiments.md §6): the generation up to its first ⟨eos⟩ must end in
  ⟨as⟩ y ⟨ae⟩ ⟨eos⟩, and y must equal y_C. `format_acc` is the share with that ending and
  `gen_len_p50` the (lower) median generated length, ⟨eos⟩ included.
- `chain_acc_{i}` / `chain_loss_{i}`: position by position and unconditional on earlier tokens:
  the token generated where the target holds its i-th chain token, and the CE of that step's
  logits against it. Columns: C for cot-like formats (i = C-1 is y_C), one (`chain_acc_0`, the
  answer) for standard ones. A row whose target has fewer chain tokens (a standard-form query in
  hybrid, or force=answer) fills the last columns; a column no row reaches is NaN.
- `eval_loss`: teacher-forced CE over every labelled position of the same rows, token-weighted.
- `majority_baseline`: the in-context majority (the most frequent y_C among the K-1
  demonstrations, ties to the smallest id) scored on the query (data.md §5); NaN when K = 1.

Rows are sharded across ranks (rank r takes rows r, r+W, ...) and every metric is a ratio of sums
all-reduced once, so any world size gives the single-process values (up to float summation order).

Letters: B rows, K examples, C chain tokens, Tp prompt length, Tt target length, n generated
tokens, T sequence length, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cotlab.config import DataConfig
from cotlab.data.coverage import in_context_majority
from cotlab.data.prompts import IGNORE, PromptConfig, render_eval, render_train
from cotlab.decode import greedy_decode

if TYPE_CHECKING:
    from cotlab.data.generate import Rows
    from cotlab.data.store import Dataset
    from cotlab.model import Transformer

STANDARD_FORMATS = ("standard", "standard_special_token")  # one scored chain position: y_C


def chain_columns(data_cfg: DataConfig, prompt_cfg: PromptConfig) -> int:
    """How many chain_acc_i / chain_loss_i columns a format reports: 1 (standard) or C."""
    return 1 if prompt_cfg.format in STANDARD_FORMATS else data_cfg.chain_length


def max_new_tokens(data_cfg: DataConfig, prompt_cfg: PromptConfig) -> int:
    """Decoding budget: C (cot), 1 (standard), C+5 minus a forced token (special-token formats)."""
    if not prompt_cfg.special:
        return chain_columns(data_cfg, prompt_cfg)
    return data_cfg.chain_length + 5 - (prompt_cfg.force is not None)


def sum_across_ranks(values: dict[str, torch.Tensor], world_size: int) -> dict[str, np.ndarray]:
    """All-reduce (sum) named float64 tensors of one device in a single collective -> host arrays."""
    flat = torch.cat([v.reshape(-1) for v in values.values()])
    if world_size > 1:
        dist.all_reduce(flat)
    host = flat.cpu().numpy()
    out, start = {}, 0
    for name, v in values.items():
        out[name] = host[start:start + v.numel()]
        start += v.numel()
    return out


@torch.no_grad()
def evaluate_accuracy(model: Transformer, rows: Rows | Dataset, data_cfg: DataConfig,
                      prompt_cfg: PromptConfig, *, batch_size: int, device: torch.device | str,
                      rank: int = 0, world_size: int = 1) -> dict[str, float]:
    """Score `model` on the eval rows (module docstring); every rank must call it (one all_reduce).

    rows: the eval set (row index = recipe index, n_rows = its length), or a Dataset (all rows).
    Precision follows the caller's autocast context. Returns plain floats: n, answer_acc,
    chain_acc_i, chain_loss_i, eval_loss, majority_baseline (+ format_acc, gen_len_p50 for
    special-token formats).
    """
    if hasattr(rows, "read"):
        rows = rows.read(0, rows.n_rows)
    device = torch.device(device)
    n_rows = len(rows.seq_idx)
    eval_seed = data_cfg.split_seed("eval")
    n_columns = chain_columns(data_cfg, prompt_cfg)
    n_new = max_new_tokens(data_cfg, prompt_cfg)
    special = {name: i + prompt_cfg.offset for name, i in data_cfg.special_ids().items()}
    special_ids = torch.tensor(sorted(special.values()), dtype=torch.long, device=device)

    def zeros(size: int = 1) -> torch.Tensor:
        return torch.zeros(size, dtype=torch.float64, device=device)

    sums = {"n": zeros(), "answer": zeros(), "valid": zeros(), "majority": zeros(), "ce": zeros(),
            "ce_tokens": zeros(), "chain_correct": zeros(n_columns), "chain_count": zeros(n_columns),
            "chain_loss": zeros(n_columns), "gen_len": zeros(n_new + 1)}  # gen_len: histogram 0..n
    shard = rows.take(np.arange(rank, n_rows, world_size))
    for start in range(0, len(shard.seq_idx), batch_size):
        batch = shard.take(slice(start, start + batch_size))
        B = len(batch.seq_idx)
        sums["n"] += B

        # Greedy decoding from the eval prompt.
        prompt = render_eval(batch, data_cfg, prompt_cfg, n_rows, eval_seed)
        prompt_ids = torch.from_numpy(prompt.prompt_ids).to(device)  # (B, Tp)
        prompt_mask = None if prompt.prompt_mask.all() else torch.from_numpy(prompt.prompt_mask).to(device)
        target = torch.from_numpy(prompt.target).to(device)  # (B, Tt), -100 past each row's end
        answer_pos = torch.from_numpy(prompt.answer_pos).to(device)  # (B,)
        tokens, logits = greedy_decode(model, prompt_ids, prompt_mask, n_new,
                                       stop_id=special.get("eos"))  # (B, n), (B, n, V)
        rows_b = torch.arange(B, device=device)
        y_answer = target[rows_b, answer_pos]  # (B,) y_C
        if prompt_cfg.special:
            is_eos = tokens == special["eos"]  # (B, n)
            stop = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), n_new)  # (B,) first ⟨eos⟩
            ends_right = ((stop >= 3) & (stop < n_new)
                          & (tokens[rows_b, (stop - 1).clamp(min=0)] == special["answer_end"])
                          & (tokens[rows_b, (stop - 3).clamp(min=0)] == special["answer_start"]))
            answer = tokens[rows_b, (stop - 2).clamp(min=0)]
            sums["answer"] += (ends_right & (answer == y_answer)).sum()
            sums["valid"] += ends_right.sum()
            sums["gen_len"] += torch.bincount((stop + 1).clamp(max=n_new), minlength=n_new + 1)
        else:
            sums["answer"] += (tokens[rows_b, answer_pos] == y_answer).sum()

        # Chain positions: every target token except delimiters; a row's k-th of m fills column
        # n_columns - m + k, so the answer is always the last column.
        Tt = target.size(1)
        is_chain = (target != IGNORE) & ~torch.isin(target, special_ids)  # (B, Tt)
        column = n_columns - is_chain.sum(dim=1, keepdim=True) + is_chain.cumsum(dim=1) - 1  # (B, Tt)
        column = torch.where(is_chain, column, n_columns)  # n_columns = a discard bin
        step_logits = logits[:, :Tt].float()  # (B, Tt, V)
        correct = (tokens[:, :Tt] == target) & is_chain  # (B, Tt)
        step_loss = F.cross_entropy(step_logits.transpose(1, 2), target.clamp(min=0), reduction="none")  # (B, Tt)
        for name, value in (("chain_correct", correct), ("chain_count", is_chain),
                            ("chain_loss", torch.where(is_chain, step_loss, 0.0))):
            binned = torch.zeros(n_columns + 1, dtype=torch.float64, device=device)
            sums[name] += binned.index_add_(0, column.reshape(-1), value.reshape(-1).double())[:n_columns]

        # Teacher-forced loss over every labelled position of the training rendering.
        seq = render_train(batch, data_cfg, prompt_cfg, n_rows)
        input_ids = torch.from_numpy(seq.input_ids).to(device)  # (B, T)
        mask = None if seq.attention_mask.all() else torch.from_numpy(seq.attention_mask).to(device)
        labels = torch.from_numpy(seq.labels[:, 1:]).to(device)  # (B, T-1): next-token targets
        out = model(input_ids, mask)[:, :-1].float()  # (B, T-1, V)
        sums["ce"] += F.cross_entropy(out.transpose(1, 2), labels, ignore_index=IGNORE, reduction="sum")
        sums["ce_tokens"] += (labels != IGNORE).sum()

        if data_cfg.n_examples > 1:
            sums["majority"] += int((in_context_majority(batch) == batch.chain[:, -1, -1]).sum())

    total = sum_across_ranks(sums, world_size)
    n = float(total["n"][0])
    with np.errstate(invalid="ignore", divide="ignore"):
        result = {"n": n, "answer_acc": total["answer"][0] / n,
                  "eval_loss": total["ce"][0] / total["ce_tokens"][0]}
        for i in range(n_columns):
            count = total["chain_count"][i]
            result[f"chain_acc_{i}"] = total["chain_correct"][i] / count if count else float("nan")
            result[f"chain_loss_{i}"] = total["chain_loss"][i] / count if count else float("nan")
        result["majority_baseline"] = total["majority"][0] / n if data_cfg.n_examples > 1 else float("nan")
        if prompt_cfg.special:
            result["format_acc"] = total["valid"][0] / n
            cumulative = np.cumsum(total["gen_len"])
            result["gen_len_p50"] = float(np.searchsorted(cumulative, n / 2))
    return {name: float(value) for name, value in result.items()}
