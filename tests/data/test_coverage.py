"""Coverage metrics of a dataset (docs/data.md): TokenCoverage, majority baselines, `cotlab coverage`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_store import cli, small

from cotlab.data.coverage import in_context_majority, token_coverage
from cotlab.data.generate import Rows
from cotlab.data.store import open_dataset, write_dataset


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 3,000-row train split with special tokens (V_eff = 48 - 9 = 39)."""
    out = tmp_path_factory.mktemp("data") / "train"
    write_dataset(out, small(special_tokens=True, fixed_h=True, num_unique_h=4, n_sequences=3000), "train")
    return out


def rows_with_answers(answers) -> Rows:
    """Rows whose chain is [[y, y]] per example, from (n, K) answers."""
    chain = np.repeat(np.asarray(answers, np.int32)[..., None], 2, axis=2)
    n, K = chain.shape[:2]
    return Rows(np.arange(n), np.zeros((n, K, 1), np.int32), chain, np.zeros((n, 2, 1), np.int32))


def test_in_context_majority_ties_go_to_the_smallest_id():
    rows = rows_with_answers([[5, 3, 3, 5, 7, 3], [9, 9, 2, 2, 4, 9], [1, 1, 1, 2, 2, 2]])
    assert in_context_majority(rows).tolist() == [3, 2, 1]
    assert in_context_majority(rows_with_answers([[4], [6]])).tolist() == [-1, -1]  # K = 1: no demos


def test_token_coverage_counts_distinct_ids():
    rows = rows_with_answers([[0, 1, 1], [2, 2, 2]])
    rows.chain[0, 0, 0] = 7  # an intermediate token that is never an answer
    assert token_coverage(rows, n_usable=16) == {"cov_chain": 4 / 16, "cov_ans": 3 / 16}


def test_coverage_cli_json(written):
    out = written
    result = cli("coverage", str(out), "--n", "1000")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["n"] == 1000 and report["split"] == "train"
    assert set(report) >= {"cov_chain", "cov_ans", "answer_entropy_bits", "log2_v_eff", "V_eff",
                           "majority_answer_baseline", "in_context_majority_baseline"}
    rows = open_dataset(out).read(0, 1000)
    assert report["cov_chain"] == token_coverage(rows, 39)["cov_chain"]
    assert report["majority_answer"] == int(np.bincount(rows.chain[:, -1, -1]).argmax())  # ties: smallest id
    expected = (in_context_majority(rows) == rows.chain[:, -1, -1]).mean()
    assert report["in_context_majority_baseline"] == pytest.approx(expected)
    assert 0 < report["answer_entropy_bits"] <= report["log2_v_eff"]
    bad = cli("coverage", str(out), "--n", "5000")
    assert bad.returncode == 2 and "--n=5000" in bad.stderr and bad.stderr.count("\n") == 1
