"""Synthetic `<card>_summary.csv` / `<card>_curves.csv` tables (docs/tables.md) for the claims tests.

Every number is set by hand in the tests; this module only adds what the aggregator would write
beside it: Wilson intervals at n_eval, lift_max, and the identity columns.
"""

from __future__ import annotations

import itertools

import pandas as pd

from cotlab.analysis.tables import wilson_interval

BASELINE = 0.1  # trivial baseline of every synthetic run
EVERY = 500  # curve evaluation interval (steps 0, 500, ..., 4000)
_ids = itertools.count()


def interval(p: float, n: int) -> tuple[float, float]:
    return wilson_interval(p * n, n)


def run(card: str, model: str = "tf4", fmt: str = "cot", acc: float = 0.5, *, n_eval: int = 2000, seed: int = 0,
        lift_max: float | None = None, tau_50: float = 1000.0, positions=(), **fields) -> dict:
    """One summary row. acc_final = acc_auc = `acc` unless given in `fields`; `positions` are the
    chain_acc_<i>_final; every accuracy gets its Wilson interval at n_eval. lift_max defaults to the
    lift of the best accuracy given (so any run above 0.19 is reached)."""
    accs = {"acc_final": fields.pop("acc_final", acc), "acc_auc": fields.pop("acc_auc", acc),
            **{f"chain_acc_{i}_final": a for i, a in enumerate(positions)}}
    row = {"run_id": f"{card}-{model}-{fmt}-{next(_ids)}", "card": card, "scale": "reduced", "model": model,
           "size": model, "format": fmt, "seed": seed, "n_eval": n_eval, "steps": 4000, "eval_every": 250,
           "majority_baseline": BASELINE, "global_majority_baseline": 0.05, "trivial_baseline": BASELINE,
           "tau_50": tau_50}
    for name, value in accs.items():
        row[name] = value
        row[f"{name}_lo"], row[f"{name}_hi"] = interval(value, n_eval)
    best = max(accs["acc_final"], accs["acc_auc"])
    row["lift_max"] = (best - BASELINE) / (1 - BASELINE) if lift_max is None else lift_max
    return {**row, **fields}


def curve(row: dict, answer_acc, embed_sim=None) -> list[dict]:
    """Curve rows of one summary row, at steps 0, EVERY, 2 EVERY, ..."""
    rows = []
    for i, acc in enumerate(answer_acc):
        lo, hi = interval(acc, row["n_eval"])
        rows.append({"run_id": row["run_id"], "card": row["card"], "model": row["model"], "format": row["format"],
                     "seed": row["seed"], "step": i * EVERY, "answer_acc": acc, "answer_acc_lo": lo,
                     "answer_acc_hi": hi, **({} if embed_sim is None else {"embed_sim": embed_sim[i]})})
    return rows


def tables(card: str, rows: list[dict], curves: list[dict] | None = None) -> tuple[dict, dict]:
    """(summaries, curves) arguments of evaluate_claims for one card."""
    return {card: pd.DataFrame(rows)}, ({card: pd.DataFrame(curves)} if curves else {})
