"""Per-run summaries of learning curves and the model table, on numbers computed by hand."""

import math

import pandas as pd
import pytest

from cotlab.analysis.tables import model_table, run_summary, seed_interval, wilson_interval

STEPS = [0, 10, 20, 30]


def test_run_summary_matches_the_definitions():
    curve = pd.DataFrame({"step": STEPS, "answer_acc": [0.1, 0.3, 0.6, 0.9], "majority_baseline": 0.2,
                          "global_majority_baseline": 0.1, "n_eval": 100})
    s = run_summary(curve)
    assert s["acc_final"] == pytest.approx(0.6)
    assert s["acc_max"] == pytest.approx(0.9)
    assert s["acc_auc"] == pytest.approx(0.6)
    assert s["lift"] == pytest.approx(0.5)
    assert s["lift_max"] == pytest.approx(0.875)
    assert (s["tau_25"], s["tau_50"]) == (20.0, 20.0)
    assert s["trivial_baseline"] == 0.2 and (s["steps"], s["eval_every"]) == (30, 10)
    assert (s["acc_final_lo"], s["acc_final_hi"]) == pytest.approx(wilson_interval(60, 100))
    std = pd.DataFrame({"step": STEPS, "answer_acc": [0.1, 0.2, 0.3, 0.4], "majority_baseline": 0.2,
                        "global_majority_baseline": 0.1, "n_eval": 100})
    s = run_summary(std)
    assert s["tau_25"] == 30.0 and math.isnan(s["tau_50"])
    s = run_summary(std.assign(global_majority_baseline=0.3))  # the larger trivial accuracy is the baseline
    assert s["trivial_baseline"] == 0.3 and s["lift"] == pytest.approx(0.0) and math.isnan(s["tau_25"])


def test_seed_interval_is_the_t_interval_of_the_mean():
    assert seed_interval([0.5]) == (0.5, 0.5)
    lo, hi = seed_interval([0.4, 0.6])  # sd 0.1414, t(0.975, 1) = 12.706
    assert (lo, hi) == pytest.approx((0.5 - 12.7062 * 0.1, 0.5 + 12.7062 * 0.1), abs=1e-4)


def test_model_table_counts_parameters():
    table = model_table(["tf4", "smoke-tf8"], [64, 1024])
    counts = dict(zip(zip(table["model"], table["vocab_size"]), table["n_params"]))
    assert counts["tf4", 64] == 243_419_136  # docs/models.md
    assert counts["tf4", 1024] == 245_385_216
    assert counts["smoke-tf8", 64] == 127_296
