"""`cotlab coverage DIR [--n N]`: the data metrics of a split as one JSON object (docs/data.md).

    cotlab coverage results/data/<data_id>/train --n 10000

Over the first n rows of the split (default: all):
- cov_chain = |{y_{s,k,c}}| / V_eff and cov_ans = |{y_{s,k,C}}| / V_eff (TokenCoverage, ours);
- answer_entropy_bits: entropy of the answers y_{s,k,C} of all K examples (every example's answer
  has the same distribution; K times more samples than the queries alone), next to log2_v_eff;
- majority_answer: the most frequent query answer y_{s,K,C} (ties: smallest id) and
  majority_answer_baseline, its share of the queries. On a train directory this is the in-sample
  max share, an upper bound of the paper's baseline (v* from train scored on eval queries);
- in_context_majority_baseline: predict the most frequent answer among the K-1 demos (ties:
  smallest id), scored on the query (null when K = 1: there are no demos);
- unique_answer_ratio: mean over sequences of |distinct y_C among the K examples| / K.
Rows are read shard by shard, so memory does not grow with n.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from cotlab.config import ConfigError
from cotlab.data.generate import ABSENT, Rows
from cotlab.data.store import Dataset, open_dataset

MAJORITY_COUNT_CELLS = 1 << 22  # rows x V counts per piece in in_context_majority (32 MB of int64)


def token_coverage(rows: Rows, n_usable: int) -> dict[str, float]:
    """{"cov_chain", "cov_ans"}: shares of the V_eff usable ids that occur as a chain token / answer
    (the padding of mixed-shape rows excluded)."""
    answers = rows.chain[:, :, -1]
    return {"cov_chain": np.unique(rows.chain[rows.chain != ABSENT]).size / n_usable,
            "cov_ans": np.unique(answers[answers != ABSENT]).size / n_usable}


def in_context_majority(rows: Rows) -> np.ndarray:
    """(n,) int64: per row, the most frequent answer among the K-1 demos, ties to the smallest id;
    -1 when K = 1 (no demos)."""
    answers = rows.chain[:, :-1, -1].astype(np.int64)  # (n, K-1) demo answers (ABSENT: no such demo)
    n, demos = answers.shape
    if demos == 0:
        return np.full(n, -1, np.int64)
    width = int(answers.max(initial=0)) + 1
    predictions = np.empty(n, np.int64)
    step = max(1, MAJORITY_COUNT_CELLS // width)
    for a in range(0, n, step):
        piece = answers[a:a + step]  # (b, K-1)
        b = len(piece)
        keys = (np.arange(b)[:, None] * width + np.maximum(piece, 0)).ravel()
        counts = np.bincount(keys, weights=(piece >= 0).ravel(), minlength=b * width).reshape(b, width)
        predictions[a:a + b] = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), -1)  # ties -> smallest id
    return predictions


def coverage_report(dataset: Dataset, n: int | None = None) -> dict[str, object]:
    """The JSON object of `cotlab coverage` over the first n rows (default all), streamed by shard."""
    n = dataset.n_rows if n is None else n
    if not 1 <= n <= dataset.n_rows:
        raise ConfigError(f"--n={n}: must be between 1 and the {dataset.n_rows} rows of {dataset.path}")
    V_eff = dataset.config.n_usable
    chain_seen = np.zeros(V_eff, bool)
    answer_counts = np.zeros(V_eff, np.int64)  # all examples' answers
    query_counts = np.zeros(V_eff, np.int64)
    in_context_hits = 0
    unique_answers = 0.0
    n_examples = 0
    start = 0
    for rows_in_shard in dataset.shard_rows:
        stop = min(start + rows_in_shard, n)
        if start >= stop:
            break
        rows = dataset.read(start, stop)
        chain_seen[np.unique(rows.chain[rows.chain != ABSENT])] = True
        answers = rows.chain[:, :, -1]  # (b, K), ABSENT where a mixed-shape row has fewer examples
        answer_counts += np.bincount(answers[answers != ABSENT], minlength=V_eff)
        query_counts += np.bincount(answers[:, -1], minlength=V_eff)
        in_context_hits += int((in_context_majority(rows) == answers[:, -1]).sum())
        ordered = np.sort(answers, axis=1)  # ABSENT sorts first and counts as one value
        unique_answers += float((1 + (np.diff(ordered, axis=1) != 0).sum(axis=1) - (ordered[:, 0] == ABSENT)).sum())
        n_examples += int((answers != ABSENT).sum())
        start = stop
    K = dataset.config.largest("n_examples")
    shares = answer_counts[answer_counts > 0] / answer_counts.sum()
    return {
        "path": str(dataset.path),
        "split": dataset.split,
        "n": n,
        "V_eff": V_eff,
        "cov_chain": int(chain_seen.sum()) / V_eff,
        "cov_ans": int((answer_counts > 0).sum()) / V_eff,
        "answer_entropy_bits": float(-(shares * np.log2(shares)).sum()),
        "log2_v_eff": math.log2(V_eff),
        "majority_answer": int(query_counts.argmax()),
        "majority_answer_baseline": float(query_counts.max() / n),
        "in_context_majority_baseline": in_context_hits / n if K > 1 else None,
        "unique_answer_ratio": unique_answers / n_examples,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("dir", metavar="DIR", help="a split directory written by `cotlab generate`")
    parser.add_argument("--n", type=int, default=None, metavar="N",
                        help="use the first N rows (default: the whole split)")


def main(args: argparse.Namespace) -> int:
    report = coverage_report(open_dataset(args.dir), args.n)
    print(json.dumps(report, indent=2))
    return 0
