"""Per-run summaries of learning curves, interval estimates and the model table (docs/tables.md).

Per-run summary [ours] (docs/evaluation.md), from a run's eval curve (one row per eval step):

| column | definition |
|---|---|
| acc_final | mean `answer_acc` of the last 3 evals, with a 95% Wilson interval at n_eval |
| acc_auc | mean `answer_acc` over the evals after step 0, with a 95% Wilson interval at n_eval |
| acc_max | max `answer_acc` |
| trivial_baseline | b = the larger of the in-context and the global majority baseline of the eval set |
| lift | (acc_final - b) / (1 - b); lift_max the same of acc_max |
| tau_25, tau_50 | first step whose lift (acc - b) / (1 - b) is >= 0.25 / 0.5; NaN if never |
| chain_acc_<i>_final | mean `chain_acc_<i>` of the last 3 evals, with its interval |
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cotlab.model_config import model_config

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


def seed_interval(values: Any) -> tuple[float, float]:
    """95% t interval of the mean of replicate values (seeds): mean ± t_{0.975, k-1} · sd / √k;
    (mean, mean) for a single value."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean - half, mean + half


def lift(acc: Any, baseline: Any) -> Any:
    """(acc - b) / (1 - b): 0 at the trivial baseline, 1 at perfect accuracy (NaN if b is 1 or NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(acc, float) - baseline) / (1.0 - np.asarray(baseline, float))


def first_step(steps: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """The first step whose value reaches `threshold` (steps ascending), NaN if none does."""
    reached = np.flatnonzero(np.asarray(values) >= threshold - 1e-12)  # (0.6 - 0.2) / 0.8 < 0.5 in floats
    return float(steps[reached[0]]) if len(reached) else float("nan")


def interval_columns(name: str, value: float, n: int) -> dict[str, float]:
    """{name: value, name_lo, name_hi}: a share with its 95% Wilson interval at n trials."""
    lo, hi = wilson_interval(value * n, n) if value == value else (float("nan"), float("nan"))
    return {name: value, f"{name}_lo": lo, f"{name}_hi": hi}


def final_mean(curve: pd.DataFrame, column: str) -> float:
    """Mean of `column` over the last FINAL_WINDOW evals of a step-sorted curve."""
    return float(curve[column].tail(FINAL_WINDOW).mean())


def run_summary(curve: pd.DataFrame) -> dict[str, float]:
    """The summary of one run's curve (columns step, answer_acc, n_eval, the two majority baselines,
    chain_acc_<i>); see the module docstring."""
    curve = curve.sort_values("step")
    steps = curve["step"].to_numpy()
    acc = curve["answer_acc"].to_numpy(float)
    n_eval = int(curve["n_eval"].iloc[-1])
    baselines = {name: float(curve[name].mean()) if name in curve else float("nan")
                 for name in ("majority_baseline", "global_majority_baseline")}
    b = float(np.nanmax(list(baselines.values()))) if any(v == v for v in baselines.values()) else float("nan")
    acc_final, acc_max = final_mean(curve, "answer_acc"), float(np.max(acc))
    after_start = acc[steps > 0]
    lifts = lift(acc, b)
    summary = {
        "steps": int(steps[-1]), "eval_every": int(np.diff(steps).min()) if len(steps) > 1 else 0,
        **interval_columns("acc_final", acc_final, n_eval),
        **interval_columns("acc_auc", float(np.mean(after_start)) if len(after_start) else float("nan"), n_eval),
        "acc_max": acc_max, **baselines, "trivial_baseline": b,
        "lift": float(lift(acc_final, b)), "lift_max": float(lift(acc_max, b)),
        "tau_25": first_step(steps, lifts, 0.25), "tau_50": first_step(steps, lifts, 0.5),
    }
    for column in sorted(c for c in curve if c.startswith("chain_acc_")):
        summary.update(interval_columns(f"{column}_final", final_mean(curve, column), n_eval))
    return summary


def summarise_runs(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run_id with the summary columns, from long curves (run_id, step, ...)."""
    return pd.DataFrame([{"run_id": run_id, **run_summary(curve)}
                         for run_id, curve in curves.groupby("run_id", sort=True)])


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
