"""Per-run summaries of learning curves, interval estimates and the two static tables.

Per-run summary [ours] (experiments.md §3), from a run's eval curve (one row per eval step):

| column | definition |
|---|---|
| acc_final | mean `answer_acc` of the last 3 evals |
| acc_max | max `answer_acc` |
| acc_auc | mean `answer_acc` over the evals after step 0 |
| baseline | the majority baseline b of the eval set (`majority_baseline`, constant over a run) |
| lift | (acc_final - b) / (1 - b); lift_max the same of acc_max |
| tau_25, tau_50 | first step whose lift (acc - b) / (1 - b) is >= 0.25 / 0.5; NaN if never |
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cotlab.model_config import model_config

SUMMARY_COLUMNS = ("acc_final", "acc_max", "acc_auc", "baseline", "lift", "lift_max", "tau_25", "tau_50")
FINAL_WINDOW = 3  # evals averaged into acc_final: damps the eval noise of a single step


def model_order(models) -> list[str]:
    """Distinct model names from shallowest to deepest: tf4 < tf8 < tf12 (smoke sizes likewise)."""
    def depth(name: str) -> tuple[int, str]:
        digits = "".join(ch for ch in str(name).rsplit("tf", 1)[-1] if ch.isdigit())
        return (int(digits) if digits else 0, str(name))
    return sorted(set(models), key=depth)


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion successes / n (NaN, NaN when n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def lift(acc: Any, baseline: Any) -> Any:
    """(acc - b) / (1 - b): 0 at the majority baseline, 1 at perfect accuracy (NaN if b is 1 or NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(acc, float) - baseline) / (1.0 - np.asarray(baseline, float))


def first_step(steps: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """The first step whose value reaches `threshold` (steps ascending), NaN if none does."""
    reached = np.flatnonzero(np.asarray(values) >= threshold - 1e-12)  # (0.6 - 0.2) / 0.8 < 0.5 in floats
    return float(steps[reached[0]]) if len(reached) else float("nan")


def run_summary(curve: pd.DataFrame) -> dict[str, float]:
    """The §3 summary of one run's curve (columns step, answer_acc, majority_baseline)."""
    curve = curve.sort_values("step")
    steps = curve["step"].to_numpy()
    acc = curve["answer_acc"].to_numpy(float)
    b = float(curve["majority_baseline"].mean()) if "majority_baseline" in curve else float("nan")
    acc_final = float(np.mean(acc[-FINAL_WINDOW:]))
    acc_max = float(np.max(acc))
    after_start = acc[steps > 0]
    lifts = lift(acc, b)
    return {
        "acc_final": acc_final,
        "acc_max": acc_max,
        "acc_auc": float(np.mean(after_start)) if len(after_start) else float("nan"),
        "baseline": b,
        "lift": float(lift(acc_final, b)),
        "lift_max": float(lift(acc_max, b)),
        "tau_25": first_step(steps, lifts, 0.25),
        "tau_50": first_step(steps, lifts, 0.5),
    }


def summarise_runs(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run_id with the §3 summary columns, from long curves (run_id, step, ...)."""
    rows = [{"run_id": run_id, **run_summary(curve)} for run_id, curve in curves.groupby("run_id", sort=True)]
    return pd.DataFrame(rows, columns=["run_id", *SUMMARY_COLUMNS])


def model_table(sizes: list[str], vocab_sizes: list[int]) -> pd.DataFrame:
    """tab_models: architecture fields and parameter counts of each named size at each V
    (`ModelConfig.num_params`, the tied embedding counted once)."""
    rows = []
    for name in sizes:
        for V in vocab_sizes:
            cfg = model_config(name, V)
            rows.append({"model": name, "vocab_size": V, "n_layer": cfg.n_layer, "d_model": cfg.d_model,
                         "n_head": cfg.n_head, "head_dim": cfg.head_dim, "n_kv_head": cfg.n_kv_head,
                         "d_ff": cfg.d_ff, "norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
                         "tied_embeddings": True, "n_params": cfg.num_params})
    return pd.DataFrame(rows)
