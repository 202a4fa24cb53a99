"""The papers' claims, each checked against the aggregated tables: results/tables/claims.csv.

Each claim becomes a set of comparisons between runs of one card (e.g. CoT vs standard at every V
and model). A comparison is *reached* when at least one of its runs reaches lift >= 0.1 over the
majority baseline at some eval (`lift_max`, analysis.tables); an unreached comparison says nothing
about the claim at this scale (experiments.md §5.2). The claim's verdict:

| verdict | when |
|---|---|
| held | every reached comparison agrees with the claim |
| not held | some reached comparison contradicts it |
| not-reached | there are comparisons, but none is reached |
| not run | the card's table is missing or lacks the runs the claim compares |

Calibration (§5.2): if the shallowest model's CoT run of fig_vocab at V = 1024 ends with lift <
0.1, every comparison on V = 1024 data counts as not reached, never as contradicting.

Inputs are the card tables written by `cotlab aggregate` (one row per run x eval step, with the
data fields, `model`, `format`, `run_id` and the analysis.tables summary columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from cotlab.analysis.tables import model_order

REACHED_LIFT = 0.1
CLAIM_COLUMNS = ("claim", "card", "statement", "source", "metric", "verdict", "n_compared", "n_held",
                 "n_not_reached", "evidence", "run_ids")


@dataclass
class Comparison:
    """One test of a claim: does `held` hold for these runs, and did any of them learn at all?"""

    label: str
    held: bool
    reached: bool
    run_ids: list[str] = field(default_factory=list)


@dataclass
class Claim:
    id: str
    card: str
    statement: str
    source: str
    metric: str
    compare: Callable[[pd.DataFrame], list[Comparison]]


def per_run(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (the summary columns repeat on every step row, so the first row suffices)."""
    if "step" in table:
        table = table.sort_values("step")
    return table.drop_duplicates("run_id", keep="first")


def _reached(*runs: pd.Series) -> bool:
    return any(float(r["lift_max"]) >= REACHED_LIFT for r in runs)


def _fmt(value: float) -> str:
    return "never" if value != value else f"{value:.3g}"  # NaN -> never (tau of a run that never lifts)


def _one(runs: pd.DataFrame, **equal) -> pd.Series | None:
    """The single run matching `equal` (the first seed if several), or None."""
    mask = np.ones(len(runs), bool)
    for column, value in equal.items():
        if column not in runs:
            return None
        mask &= (runs[column] == value).to_numpy()
    matched = runs[mask]
    return None if matched.empty else matched.iloc[0]


def cot_beats_std(metric: str, by: str | None) -> Callable[[pd.DataFrame], list[Comparison]]:
    """For every (by value, model): the CoT run's `metric` exceeds the standard run's."""
    def compare(table: pd.DataFrame) -> list[Comparison]:
        runs = per_run(table)
        out = []
        groups = sorted(runs[by].unique()) if by and by in runs else [None]
        for value in groups:
            for model in model_order(runs["model"]):
                where = {"model": model, **({by: value} if value is not None else {})}
                cot, std = _one(runs, format="cot", **where), _one(runs, format="standard", **where)
                if cot is None or std is None:
                    continue
                prefix = f"{by}={value} " if value is not None else ""
                out.append(Comparison(
                    f"{prefix}{model}: {metric} cot {cot[metric]:.3f} vs std {std[metric]:.3f}, "
                    f"tau_50 cot {_fmt(cot['tau_50'])} vs std {_fmt(std['tau_50'])}",
                    bool(cot[metric] > std[metric]), _reached(cot, std), [cot["run_id"], std["run_id"]]))
        return out
    return compare


def falls_with(sweep: str) -> Callable[[pd.DataFrame], list[Comparison]]:
    """For every (model, format): acc_auc does not increase from one swept value to the next larger."""
    def compare(table: pd.DataFrame) -> list[Comparison]:
        runs = per_run(table)
        if sweep not in runs:
            return []
        out = []
        for (model, fmt), group in runs.groupby(["model", "format"], sort=True):
            group = group.sort_values(sweep).drop_duplicates(sweep)
            if len(group) < 2:
                continue
            auc = group["acc_auc"].to_numpy(float)
            values = ", ".join(f"{v}: {a:.3f}" for v, a in zip(group[sweep], auc))
            out.append(Comparison(f"{model} {fmt}: acc_auc by {sweep} {values}",
                                  bool(np.all(np.diff(auc) <= 0)), _reached(*[r for _, r in group.iterrows()]),
                                  group["run_id"].tolist()))
        return out
    return compare


def depth_few_examples(table: pd.DataFrame) -> list[Comparison]:
    """CoT at the smallest K: the deepest model beats the shallowest, by more than at the largest K."""
    runs = per_run(table)
    runs = runs[runs["format"] == "cot"] if "format" in runs else runs
    if "n_examples" not in runs or runs["n_examples"].nunique() < 2:
        return []
    models = model_order(runs["model"])
    if len(models) < 2:
        return []
    shallow, deep = models[0], models[-1]
    ks = sorted(runs["n_examples"].unique())
    k_small, k_large = ks[0], ks[-1]
    pairs = {k: (_one(runs, model=shallow, n_examples=k), _one(runs, model=deep, n_examples=k))
             for k in (k_small, k_large)}
    if any(run is None for pair in pairs.values() for run in pair):
        return []
    gap = {k: float(d["acc_auc"] - s["acc_auc"]) for k, (s, d) in pairs.items()}
    return [Comparison(
        f"cot acc_auc gap {deep} - {shallow}: K={k_small} {gap[k_small]:+.3f}, K={k_large} {gap[k_large]:+.3f}",
        gap[k_small] > 0 and gap[k_small] > gap[k_large], _reached(*pairs[k_small]),
        [r["run_id"] for pair in pairs.values() for r in pair])]


FIXED_H, FRESH = "e", "a"  # fig_diversity regimes: one fixed H set / fresh H and DAG


def fixed_h_helps(table: pd.DataFrame) -> list[Comparison]:
    """Regime (e) one fixed H set beats regime (a) fresh H and DAG, for every model (CoT runs)."""
    runs = per_run(table)
    if "regime" not in runs:
        return []
    out = []
    for model in model_order(runs["model"]):
        for fmt in sorted(runs["format"].unique()):
            fixed, fresh = (_one(runs, model=model, format=fmt, regime=r) for r in (FIXED_H, FRESH))
            if fixed is None or fresh is None:
                continue
            out.append(Comparison(
                f"{model} {fmt}: acc_auc fixed H {fixed['acc_auc']:.3f} vs fresh H {fresh['acc_auc']:.3f}",
                bool(fixed["acc_auc"] > fresh["acc_auc"]), _reached(fixed, fresh), [fixed["run_id"], fresh["run_id"]]))
    return out


def positions_fall(table: pd.DataFrame) -> list[Comparison]:
    """At the largest C, the CoT runs' final chain_acc_i does not rise along the chain."""
    if "chain_length" not in table:
        return []
    C = int(table["chain_length"].max())
    columns = [f"chain_acc_{i}" for i in range(C)]
    if any(c not in table for c in columns):
        return []
    out = []
    cot = table[(table["chain_length"] == C) & (table["format"] == "cot")]
    for run_id, curve in cot.groupby("run_id", sort=True):
        final = curve.sort_values("step")[columns].tail(3).mean().to_numpy(float)  # as acc_final
        run = curve.iloc[0]
        out.append(Comparison(f"{run['model']} C={C}: final chain_acc " + ", ".join(f"{a:.3f}" for a in final),
                              bool(np.all(np.diff(final) <= 0)), _reached(run), [run_id]))
    return out


def sim_tracks_accuracy(table: pd.DataFrame) -> list[Comparison]:
    """Per run, embed_sim rises with answer_acc: Spearman rho over the evals >= 0.5."""
    if "embed_sim" not in table:
        return []
    out = []
    for run_id, curve in table.groupby("run_id", sort=True):
        curve = curve.dropna(subset=["embed_sim", "answer_acc"])
        if len(curve) < 3:
            continue
        rho = curve["embed_sim"].rank().corr(curve["answer_acc"].rank())
        run = curve.iloc[0]
        out.append(Comparison(f"{run['model']} {run['format']} V={run.get('vocab_size')}: rho {rho:.2f}",
                              bool(rho >= 0.5), _reached(run), [run_id]))
    return out


def attention_recovers_parents(table: pd.DataFrame) -> list[Comparison]:
    """Under one fixed H set, the final parent_prec of CoT runs lies above chance."""
    if "parent_prec" not in table or "regime" not in table:
        return []
    out = []
    fixed = table[(table["regime"] == FIXED_H) & (table["format"] == "cot")]
    for run_id, curve in fixed.groupby("run_id", sort=True):
        curve = curve.dropna(subset=["parent_prec"]).sort_values("step")
        if curve.empty:
            continue
        final, chance = float(curve["parent_prec"].iloc[-1]), float(curve["parent_prec_chance"].iloc[-1])
        run = curve.iloc[0]
        out.append(Comparison(f"{run['model']}: final parent_prec {final:.3f} vs chance {chance:.3f}",
                              final > chance, _reached(run), [run_id]))
    return out


CLAIMS = (
    Claim("cot_beats_std", "quickstart", "CoT beats standard on the quickstart task (miniature of C1)",
          "[ours]", "acc_final cot vs std", cot_beats_std("acc_final", "vocab_size")),
    Claim("cot_earlier", "fig_vocab", "CoT makes the accuracy transition earlier and higher, for every V and model",
          "[paper]", "acc_auc cot vs std (tau_50 shown)", cot_beats_std("acc_auc", "vocab_size")),
    Claim("vocab_harder", "fig_vocab", "A larger vocabulary is harder", "[code README]",
          "acc_auc non-increasing in V", falls_with("vocab_size")),
    Claim("depth_few_examples", "fig_examples",
          "Depth matters for using CoT with few examples; more examples let shallow models catch up",
          "[paper]", "cot acc_auc gap deepest - shallowest, smallest vs largest K", depth_few_examples),
    Claim("chain_harder", "fig_chain", "Longer chains are harder", "[3rd]", "acc_auc non-increasing in C",
          falls_with("chain_length")),
    Claim("parents_harder", "fig_parents", "Denser DAGs (more parents) are harder", "[3rd]",
          "acc_auc non-increasing in M", falls_with("n_parents")),
    Claim("positions_fall", "fig_chain_positions", "Accuracy falls along the chain", "[3rd]",
          "final chain_acc_i non-increasing in i at the largest C", positions_fall),
    Claim("fixed_h_helps", "fig_diversity", "Limiting H diversity helps: one fixed H beats fresh H and DAG",
          "[paper]", "acc_auc regime (e) vs (a)", fixed_h_helps),
    Claim("sim_tracks_accuracy", "fig_embed_sim", "Embedding similarity rises with accuracy", "[3rd]",
          "Spearman rho(embed_sim, answer_acc) >= 0.5 per run", sim_tracks_accuracy),
    Claim("attention_recovers_parents", "fig_attention", "Attention recovers the parents under fixed H", "[3rd]",
          "final parent_prec > chance, regime (e) CoT runs", attention_recovers_parents),
)


def calibration_fails(tables: dict[str, pd.DataFrame]) -> bool:
    """True when fig_vocab's shallowest CoT run at V = 1024 ends below lift 0.1 (§5.2)."""
    vocab = tables.get("fig_vocab")
    if vocab is None or "vocab_size" not in vocab:
        return False
    runs = per_run(vocab)
    runs = runs[(runs["vocab_size"] == 1024) & (runs["format"] == "cot")]
    if runs.empty:
        return False
    shallow = runs[runs["model"] == model_order(runs["model"])[0]]
    return bool((shallow["lift"] < REACHED_LIFT).all())


def verdict(comparisons: list[Comparison]) -> str:
    reached = [c for c in comparisons if c.reached]
    if not comparisons:
        return "not run"
    if not reached:
        return "not-reached"
    return "held" if all(c.held for c in reached) else "not held"


def evaluate_claims(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """claims.csv from the card tables that exist ({card id: table}; missing cards -> not run)."""
    uncalibrated = calibration_fails(tables)
    rows = []
    for claim in CLAIMS:
        table = tables.get(claim.card)
        comparisons = [] if table is None or table.empty else claim.compare(table)
        if uncalibrated and table is not None and "vocab_size" in table:
            large_v = set(table.loc[table["vocab_size"] == 1024, "run_id"])
            for c in comparisons:
                if large_v.intersection(c.run_ids):
                    c.reached = False
        rows.append({
            "claim": claim.id, "card": claim.card, "statement": claim.statement, "source": claim.source,
            "metric": claim.metric, "verdict": verdict(comparisons), "n_compared": len(comparisons),
            "n_held": sum(c.held and c.reached for c in comparisons),
            "n_not_reached": sum(not c.reached for c in comparisons),
            "evidence": "; ".join(c.label + ("" if c.reached else " (not reached)") for c in comparisons),
            "run_ids": " ".join(dict.fromkeys(r for c in comparisons for r in c.run_ids)),
        })
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
