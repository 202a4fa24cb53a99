"""The papers' claims, each checked against one scale's tables: results/<scale>/tables/claims.csv.

Inputs (docs/tables.md): per card, `<card>_summary.csv` (one row per run) and `<card>_curves.csv`
(one row per run x evaluation). Each claim becomes comparisons between groups of runs of its card.

**Noise model.** Runs that differ only by `seed` form a *group*: every summary column that is not
a measurement (card, model, size, format, swept keys, data point, training size) is equal. A
group's value of a metric is the mean over its k seeds, with a 95% half-width h:
- k = 1: half the width of the run's Wilson interval (`<metric>_lo`, `<metric>_hi`; a metric
  without them, `parent_prec_final`, gets the Wilson interval at its number of trials);
- k >= 2: the larger of t(0.975, k-1) * sd / sqrt(k) across seeds and the Wilson half-width of
  the mean at k * n_eval trials (seeds may agree more closely than the eval set can tell).
A difference A - B has half-width sqrt(hA^2 + hB^2). A comparison asks whether a difference d is
positive; point estimates are never compared with `>` alone:

| result | when |
|---|---|
| held | d - h > 0: the whole interval lies above 0 |
| not held | d + h < 0: the whole interval lies below 0 |
| inconclusive | otherwise: the difference is within the noise |

A comparison is *reached* when at least one of its runs lifts >= 0.1 above the trivial baseline
at some evaluation (`lift_max`, docs/claims.md); an unreached comparison says nothing. There
is no blanket calibration rule: each comparison stands on its own runs.

**A claim's verdict** over its comparisons:

| verdict | when |
|---|---|
| not run | no comparison: the card's table is missing, or lacks the runs or a column it needs |
| not-reached | no comparison is reached |
| not held | some reached comparison is not held |
| held | every reached comparison is held |
| inconclusive | otherwise: some reached comparison is within the noise, none contradicts |

**Claim kinds**: when one comparison is held / not held (otherwise inconclusive); `>` and `<`
between noisy values mean the interval rule above, tau's noise is one evaluation interval:

| kind (claims) | held | not held |
|---|---|---|
| A > B (cot_beats_std, cot_higher, fixed_h_helps, attention ii) | A - B held | A - B not held |
| earlier (cot_earlier; tau_50 = inf if a seed never lifts 0.5) | tau cot + eval_every < std | cot > std + eval_every |
| falls along x (*_harder, positions_fall) | last < first, no pair rises | a pair rises, or last > first |
| fails (tf4_fails_large_v; b = CoT benefit) | b(tf4) not > 0, b(deeper) > 0 | b(tf4) > 0 or b(deeper) < 0 |
| barely learns (std_long_chains; reached: cot lifts) | std lift hi < 0.25 | std lift lo >= 0.25 |
| overtakes (deep_overtakes_at_m1) | ends ahead, not ahead once early | ends behind, or led all early |
| interaction (depth_few_examples) | D > 0 | D < 0 |
| tracks (sim_tracks_accuracy) | timing, jump and margin hold | timing, jump or margin fails |
| above chance (attention i, Wilson at n_attn*C*M) | prec - h > chance | prec + h < chance |
| excess CoT hurts (p2; probes table) | drop(alpha=0) - drop(largest finite alpha) held | ... not held |
| best alpha beats 0 (p2; probes table) | best alpha - alpha=0 held, widened | every alpha - alpha=0 not held |

Paper 2 reads a card's probes table (one row per run x probe setting): per model and forcing,
drop = accuracy with the most CoT demonstrations left minus with the fewest (none at k = K-1);
"widened" multiplies the half-width by z(1-0.025/m)/z(0.975) for the m alphas the best is picked from.
b = CoT benefit, acc_auc(cot) - acc_auc(std) of one model. Overtakes: acc_final of a deeper model
vs tf4 (cot, M = 1); early = the seed-mean answer_acc curves at 0 < step <= last step / 2.
D = b(deepest) - b(shallowest) at the smallest K, minus the same at the largest K. Tracks, on a
group's seed-mean curves: timing = the largest embed_sim rise lies within one evaluation of the
largest answer_acc rise; jump = it is >= 1.5x the next largest embed_sim rise (a similarity linear
in the step has none); margin = embed_sim_final >= embed_sim_chance + 0.1. Inconclusive when the
largest answer_acc rise is below answer_acc's Wilson half-width after it (no transition to track).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from scipy import stats

from cotlab.analysis.tables import lift, model_order, seed_interval, wilson_interval

HELD, NOT_HELD, INCONCLUSIVE, NOT_REACHED, NOT_RUN = "held", "not held", "inconclusive", "not-reached", "not run"
REACHED_LIFT = 0.1  # a run learned something: lift_max over the trivial baseline
LONG_CHAIN_LIFT = 0.25  # std_long_chains: "barely learns" is a final lift below this
JUMP, SIM_MARGIN = 1.5, 0.1  # sim_tracks_accuracy: a distinct jump; final similarity above chance
LARGE_V = 512  # tf4_fails_large_v
CLAIM_COLUMNS = ("claim", "card", "statement", "source", "metric", "verdict", "n_compared", "n_held",
                 "n_not_held", "n_inconclusive", "n_not_reached", "evidence", "run_ids")
# Summary columns that are measured, not set: they may differ between the seeds of one group.
MEASURES = frozenset({"run_id", "data_id", "seed", "steps", "eval_every", "majority_baseline", "global_majority_baseline",
                      "trivial_baseline", "baseline", "lift", "lift_max", "tau_25", "tau_50", "n_attn", "coverage",
                      "elapsed_s"})
MEASURE_PREFIXES = ("acc_", "answer_acc", "chain_acc_", "chain_loss_", "with_cot_", "without_cot_", "embed_",
                    "parent_", "train_loss", "eval_loss")
SHORT = {"vocab_size": "V", "chain_length": "C", "n_parents": "M", "n_examples": "K"}


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% half-width, the runs behind it, and whether any of them is reached."""

    value: float
    half: float
    run_ids: tuple[str, ...] = ()
    reached: bool = False

    def __sub__(self, other: Estimate) -> Estimate:
        return Estimate(self.value - other.value, math.hypot(self.half, other.half),
                        self.run_ids + other.run_ids, self.reached or other.reached)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.value - self.half:.3f}, {self.value + self.half:.3f}]"


@dataclass
class Comparison:
    label: str
    result: str  # held / not held / inconclusive
    run_ids: tuple[str, ...]
    reached: bool


@dataclass
class Claim:
    id: str
    card: str
    statement: str
    source: str
    metric: str
    compare: Callable[[pd.DataFrame, pd.DataFrame], list[Comparison]]  # (table, curves) -> comparisons
    table: str = "summary"
    """The card table the claim reads: `summary` (one row per run) or `probes` (paper 2's offline evaluations)."""


def outcome(diff: Estimate) -> str:
    """The comparison rule: does the difference's whole interval lie above 0, below 0, or neither?"""
    if diff.value - diff.half > 0:
        return HELD
    return NOT_HELD if diff.value + diff.half < 0 else INCONCLUSIVE  # NaN (inf - inf) -> inconclusive


def compared(label: str, result: str, *parts: Estimate) -> Comparison:
    ids = tuple(dict.fromkeys(r for p in parts for r in p.run_ids))
    return Comparison(label, result, ids, any(p.reached for p in parts))


def wilson_half(p: float, n: float) -> float:
    lo, hi = wilson_interval(p * n, int(n))
    return (hi - lo) / 2


def is_reached(runs: pd.DataFrame) -> bool:
    return bool((runs["lift_max"] >= REACHED_LIFT).any())


def estimate(runs: pd.DataFrame, metric: str, trials: Callable | None = None) -> Estimate:
    """A group's mean of `metric` over its seeds with the noise model's half-width; `trials` gives
    each run's number of trials (default n_eval)."""
    ids, reached = tuple(runs["run_id"]), is_reached(runs)
    runs = runs.dropna(subset=[metric])
    values, k = runs[metric].to_numpy(float), len(runs)
    n = (runs["n_eval"] if trials is None else trials(runs)).to_numpy(float)
    if k == 0:
        return Estimate(math.nan, math.nan, ids, reached)
    mean = float(values.mean())
    if k >= 2:
        lo, hi = seed_interval(values)
        half = max((hi - lo) / 2, wilson_half(mean, n.sum()))
    elif f"{metric}_lo" in runs:
        half = float(runs[f"{metric}_hi"].iloc[0] - runs[f"{metric}_lo"].iloc[0]) / 2
    else:
        half = wilson_half(mean, n[0])
    return Estimate(mean, half, ids, reached)


def tau_estimate(runs: pd.DataFrame, metric: str) -> Estimate:
    """Mean first step reaching the lift (inf if any seed never does); its noise is one eval interval."""
    tau = runs[metric].to_numpy(float)
    value = math.inf if np.isnan(tau).any() else float(tau.mean())
    return Estimate(value, float(runs["eval_every"].max()), tuple(runs["run_id"]), is_reached(runs))


def groups(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per group of runs that differ only by seed: its identity columns and `runs`."""
    keys = [c for c in runs.columns if c not in MEASURES and not c.startswith(MEASURE_PREFIXES)]
    rows = [{**dict(zip(keys, key)), "runs": group} for key, group in runs.groupby(keys, dropna=False, sort=True)]
    return pd.DataFrame(rows, columns=[*keys, "runs"])


def estimates(runs: pd.DataFrame, metric: str, trials: Callable | None = None) -> pd.DataFrame:
    """groups(runs) with `est`, each group's Estimate of `metric`."""
    table = groups(runs)
    one = (lambda g: tau_estimate(g, metric)) if metric.startswith("tau_") else (lambda g: estimate(g, metric, trials))
    table["est"] = [one(g) for g in table["runs"]]
    return table


def num(value) -> str:
    """A setting or step as written: 64, not 64.0; a tau of inf (never reached) as `never`."""
    if isinstance(value, float):
        return "never" if math.isinf(value) else f"{value:g}"
    return str(value)


def contexts(table: pd.DataFrame, along: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """Sub-tables of groups that differ only in the `along` columns (shallow models first), each
    with a label prefix naming the model and the other columns that vary in the table.

    A column that follows the `along` columns (one value per value of them, e.g. fig_diversity's
    fixed_h and num_unique_h per regime) is part of what is compared, not a context."""
    keys = [c for c in table.columns if c not in ("runs", "est", "size", *along)]  # size follows model
    if along:
        per_value = table.groupby(along, dropna=False)
        keys = [c for c in keys if table[c].nunique(dropna=False) <= 1
                or per_value[c].nunique(dropna=False).max() > 1]
    shown = [c for c in keys if c not in ("card", "scale")
             and (c == "model" or table[c].nunique(dropna=False) > 1)]
    shown.sort(key=lambda c: {"model": 1, "format": 2}.get(c, 0))
    rank = {m: i for i, m in enumerate(model_order(table["model"]))}
    items = [(dict(zip(keys, key)), sub) for key, sub in table.groupby(keys, dropna=False, sort=True)]
    for where, sub in sorted(items, key=lambda item: rank.get(item[0].get("model"), 0)):
        label = " ".join({"standard": "std"}.get(where[c], str(where[c])) if c in ("model", "format")
                         else f"{SHORT.get(c, c)}={num(where[c])}" for c in shown)
        yield (f"{label}: " if label else ""), sub


def by_value(sub: pd.DataFrame, column: str) -> dict:
    return dict(zip(sub[column], sub["est"]))


def pairs(table: pd.DataFrame, column: str, a, b) -> Iterator[tuple[str, Estimate, Estimate]]:
    """(label prefix, A, B) for each context of `table` that has both `column` = a and = b."""
    for prefix, sub in contexts(table, [column]):
        est = by_value(sub, column)
        if {a, b} <= est.keys():
            yield prefix, est[a], est[b]


def benefits(table: pd.DataFrame, keys: list[str]) -> dict:
    """The CoT benefit, the cot - standard Estimate, for each value of `keys` with both formats."""
    out = {}
    for key, sub in table.groupby(keys, sort=True):
        est = by_value(sub, "format")
        if {"cot", "standard"} <= est.keys():
            out[key[0] if len(keys) == 1 else key] = est["cot"] - est["standard"]
    return out


def falling(label: str, points: list[tuple]) -> Comparison:
    """Falls along x: last below first, and no consecutive pair rises (points: (x, Estimate))."""
    ests = [e for _, e in points]
    rises = any(outcome(b - a) == HELD for a, b in zip(ests, ests[1:]))
    ends = outcome(ests[0] - ests[-1])
    result = NOT_HELD if rises or ends == NOT_HELD else ends
    return compared(label + ", ".join(f"{num(x)}: {e}" for x, e in points), result, *ests)


def mean_curve(curves: pd.DataFrame, run_ids, columns: list[str]) -> pd.DataFrame:
    """The seeds' mean of `columns` at each evaluation step."""
    return curves[curves["run_id"].isin(list(run_ids))].groupby("step")[columns].mean().sort_index()


def cot_above_std(metric: str):
    def compare(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
        return [compared(f"{prefix}{metric} cot {cot} vs std {std}", outcome(cot - std), cot, std)
                for prefix, cot, std in pairs(estimates(runs, metric), "format", "cot", "standard")]
    return compare


def cot_earlier(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    out = []
    for prefix, cot, std in pairs(estimates(runs, "tau_50"), "format", "cot", "standard"):
        gain = replace(std - cot, half=max(cot.half, std.half))  # one eval interval, not two
        out.append(compared(f"{prefix}tau_50 cot {num(cot.value)} vs std {num(std.value)} "
                            f"(+-{num(gain.half)} steps)", outcome(gain), gain))
    return out


def falls_along(column: str):
    def compare(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
        out = []
        for prefix, sub in contexts(estimates(runs.dropna(subset=[column]), "acc_auc"), [column]):
            if sub[column].nunique() >= 2:
                sub = sub.sort_values(column)
                out.append(falling(f"{prefix}acc_auc by {SHORT.get(column, column)} ",
                                   list(zip(sub[column], sub["est"]))))
        return out
    return compare


def positions_fall(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    C = int(runs["chain_length"].max())
    cot = groups(runs[(runs["chain_length"] == C) & (runs["format"] == "cot")])
    return [falling(f"{prefix}C={C} chain_acc_i_final by i ",
                    [(i, estimate(sub["runs"].iloc[0], f"chain_acc_{i}_final")) for i in range(C)])
            for prefix, sub in contexts(cot, [])]


def tf4_fails_large_v(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    out = []
    for prefix, sub in contexts(estimates(runs[runs["vocab_size"] >= LARGE_V], "acc_auc"), ["model", "format"]):
        gain = benefits(sub, ["model"])
        if len(gain) < 2:
            continue
        shallow, *deep = model_order(gain)
        first, rest = outcome(gain[shallow]), [outcome(gain[m]) for m in deep]
        result = (NOT_HELD if first == HELD or NOT_HELD in rest
                  else HELD if all(r == HELD for r in rest) else INCONCLUSIVE)
        label = ", ".join(f"{m} {gain[m]}" for m in (shallow, *deep))
        out.append(compared(f"{prefix}CoT benefit in acc_auc {label}", result, *gain.values()))
    return out


def std_long_chains(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    longest = runs[runs["chain_length"] == runs["chain_length"].max()]
    out = []
    for prefix, cot, std in pairs(estimates(longest, "acc_final"), "format", "cot", "standard"):
        b = float(longest.loc[longest["run_id"].isin(std.run_ids), "trivial_baseline"].mean())
        lo, mid, hi = (float(lift(a, b)) for a in (std.value - std.half, std.value, std.value + std.half))
        result = HELD if hi < LONG_CHAIN_LIFT else NOT_HELD if lo >= LONG_CHAIN_LIFT else INCONCLUSIVE
        out.append(Comparison(f"{prefix}std lift of acc_final {mid:.3f} [{lo:.3f}, {hi:.3f}] vs {LONG_CHAIN_LIFT}",
                              result, std.run_ids, cot.reached))  # reached: the setting is learnable
    return out


def deep_overtakes_at_m1(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    one = runs[(runs["n_parents"] == 1) & (runs["format"] == "cot")]
    out = []
    for prefix, sub in contexts(estimates(one, "acc_final"), ["model"]):
        est = by_value(sub, "model")
        shallow, *deep = model_order(est)
        for m in deep:
            end = est[m] - est[shallow]
            acc = [mean_curve(curves, est[x].run_ids, ["answer_acc"])["answer_acc"] for x in (m, shallow)]
            gap = (acc[0] - acc[1]).dropna()
            early = gap[(gap.index > 0) & (gap.index <= gap.index.max() / 2)] if len(gap) else gap
            behind, result = int((early <= 0).sum()), outcome(end)
            if result == HELD and not behind:
                result = NOT_HELD if len(early) else INCONCLUSIVE  # led throughout: no overtaking
            out.append(compared(f"{prefix}acc_final {m} - {shallow} {end}, not ahead at {behind}/{len(early)} "
                                "first-half evals", result, end))
    return out


def depth_few_examples(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    out = []
    for prefix, sub in contexts(estimates(runs, "acc_auc"), ["n_examples", "model", "format"]):
        gain = benefits(sub, ["n_examples", "model"])
        ks, models = sorted({k for k, _ in gain}), model_order({m for _, m in gain})
        if len(ks) < 2 or len(models) < 2:
            continue
        (few, many), (shallow, deep) = (ks[0], ks[-1]), (models[0], models[-1])
        if any((k, m) not in gain for k in (few, many) for m in (shallow, deep)):
            continue
        gap = {k: gain[k, deep] - gain[k, shallow] for k in (few, many)}
        diff = gap[few] - gap[many]
        out.append(compared(f"{prefix}CoT benefit {deep} - {shallow}: K={num(few)} {gap[few]} vs "
                            f"K={num(many)} {gap[many]}", outcome(diff), diff))
    return out


def regime_beats(metric: str, trials: Callable | None = None):
    """Regime e (one fixed H) beats a (fresh H and DAG) and b (fixed DAG, fresh H)."""
    def compare(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
        table = estimates(runs, metric, trials)
        return [compared(f"{prefix}{metric} e {e} vs {other} {o}", outcome(e - o), e, o)
                for other in ("a", "b") for prefix, e, o in pairs(table, "regime", "e", other)]
    return compare


def attention_trials(runs: pd.DataFrame) -> pd.Series:
    return runs["n_attn"] * runs["chain_length"] * runs["n_parents"]  # one top-M choice per chain token


def attention_recovers_parents(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    cot = runs[runs["format"] == "cot"]
    prec = estimates(cot, "parent_prec_final", attention_trials)
    out = []
    for prefix, sub in contexts(prec[prec["regime"] == "e"], []):
        p, chance = sub["est"].iloc[0], float(sub["runs"].iloc[0]["parent_prec_chance"].mean())
        out.append(compared(f"{prefix}parent_prec_final {p} vs chance {chance:.3f}",
                            outcome(p - Estimate(chance, 0.0)), p))
    return out + regime_beats("parent_prec_final", attention_trials)(cot, curves)


def sim_tracks_accuracy(runs: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    """Timing, jump and margin (module docstring) per group of runs."""
    columns = ["answer_acc", "answer_acc_lo", "answer_acc_hi", "embed_sim"]
    out = []
    for prefix, sub in contexts(groups(runs), []):
        group = sub["runs"].iloc[0]
        curve = mean_curve(curves, group["run_id"], columns).dropna()
        if len(curve) < 3:
            continue
        acc_rise, sim_rise = np.diff(curve["answer_acc"]), np.diff(curve["embed_sim"])
        i, j = int(np.argmax(acc_rise)), int(np.argmax(sim_rise))
        noise = float(curve["answer_acc_hi"].iloc[i + 1] - curve["answer_acc_lo"].iloc[i + 1]) / 2
        top, second = sim_rise[j], np.sort(sim_rise)[-2]
        margin = float(group["embed_sim_final"].mean() - group["embed_sim_chance"].mean())
        tracks = abs(i - j) <= 1 and top > 0 and top >= JUMP * second and margin >= SIM_MARGIN
        result = INCONCLUSIVE if acc_rise[i] < noise else HELD if tracks else NOT_HELD
        out.append(Comparison(
            f"{prefix}largest answer_acc rise {acc_rise[i]:+.3f} (noise {noise:.3f}) by step "
            f"{num(curve.index[i + 1])}, embed_sim {top:+.3f} (next {second:+.3f}) by step {num(curve.index[j + 1])}, "
            f"final sim - chance {margin:.3f}", result, tuple(group["run_id"]), is_reached(group)))
    return out


# ----------------------------------------------------------------------------- paper 2 (probes tables)

P2_METRIC = "answer_acc"  # the probes' accuracy (the offline scoring rule, which a forced ⟨as⟩ needs)
P2_GROUP = ("model", "size", "format", "alpha", "probe", "scored_format", "force", "drop_strategy", "cot_demos")


def alpha_estimates(probes: pd.DataFrame) -> pd.DataFrame:
    """Seed means of P2_METRIC per (model, force, α, CoT demonstrations left): one row each, with `est`
    and a numeric `alpha_value` (the card's α variants are named "0", "0.5", ..., "inf")."""
    keys = [c for c in P2_GROUP if c in probes]
    rows = [{**dict(zip(keys, key)), "est": estimate(group, P2_METRIC)}
            for key, group in probes.groupby(keys, dropna=False, sort=True)]
    table = pd.DataFrame(rows, columns=[*keys, "est"])
    return table.assign(alpha_value=pd.to_numeric(table["alpha"].astype(str)))


def scarce_contexts(probes: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(label prefix, estimates at the fewest CoT demonstrations, at the most) per model and forcing."""
    table = alpha_estimates(probes)
    for (model, force), sub in table.groupby(["model", "force"], sort=False):
        few, many = sub["cot_demos"].min(), sub["cot_demos"].max()
        yield f"{model} force={force}: ", sub[sub["cot_demos"] == few], sub[sub["cot_demos"] == many]


def excess_cot_hurts(probes: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    """α = 0 (every example CoT) loses more accuracy than the largest finite α (the least CoT that still
    has some) when the CoT demonstrations go from the most to none: D = drop(α=0) - drop(α_max) > 0."""
    out = []
    for prefix, scarce, plenty in scarce_contexts(probes):
        finite = sorted(a for a in scarce["alpha_value"] if 0 < a < math.inf)
        if 0.0 not in set(scarce["alpha_value"]) or not finite or scarce["cot_demos"].iloc[0] == plenty["cot_demos"].iloc[0]:
            continue
        at = {name: (by_value(plenty, "alpha_value")[a], by_value(scarce, "alpha_value")[a])
              for name, a in (("zero", 0.0), ("least", finite[-1]))}
        drops = {name: many - few for name, (many, few) in at.items()}
        diff = drops["zero"] - drops["least"]
        out.append(compared(f"{prefix}accuracy lost from {num(plenty['cot_demos'].iloc[0])} to "
                            f"{num(scarce['cot_demos'].iloc[0])} CoT demos: alpha=0 {drops['zero']} vs "
                            f"alpha={finite[-1]:g} {drops['least']}", outcome(diff), diff))
    return out


def best_alpha_beats_zero(probes: pd.DataFrame, curves: pd.DataFrame) -> list[Comparison]:
    """With no CoT demonstration left, the best α > 0 beats α = 0. The best is picked from the same
    estimates, so each difference's half-width is widened Bonferroni-style for the m α compared
    (z_{1-0.025/m} / z_{0.975}): held when the best one's widened interval lies above 0, not held when
    every α's lies below."""
    out = []
    for prefix, scarce, _ in scarce_contexts(probes):
        est = by_value(scarce, "alpha_value")
        if 0.0 not in est or len(est) < 2:
            continue
        widen = stats.norm.ppf(1 - 0.025 / (len(est) - 1)) / stats.norm.ppf(0.975)
        diffs = {a: est[a] - est[0.0] for a in est if a != 0.0}
        diffs = {a: replace(d, half=d.half * widen) for a, d in diffs.items()}
        best = max(diffs, key=lambda a: diffs[a].value)
        results = {a: outcome(d) for a, d in diffs.items()}
        result = (HELD if results[best] == HELD else NOT_HELD if set(results.values()) == {NOT_HELD}
                  else INCONCLUSIVE)
        gain = est[best].value / est[0.0].value - 1 if est[0.0].value > 0 else math.inf
        out.append(compared(f"{prefix}{num(scarce['cot_demos'].iloc[0])} CoT demos: best alpha={best:g} "
                            f"{est[best]} vs alpha=0 {est[0.0]}, difference {diffs[best]} (Bonferroni over "
                            f"{len(diffs)}), relative gain {gain:+.2f}", result, *diffs.values()))
    return out


def headline_table(probes: pd.DataFrame) -> pd.DataFrame:
    """p2_tab_headline: per model and forcing, with no CoT demonstration left, the best α and
    acc(α*) / acc(α=0) - 1, with each accuracy's 95% interval (seed mean; Wilson for one seed)."""
    rows = []
    for prefix, scarce, _ in scarce_contexts(probes):
        est = by_value(scarce, "alpha_value")
        if 0.0 not in est:
            continue
        best = max(est, key=lambda a: est[a].value)
        first = scarce.iloc[0]
        rows.append({"model": first["model"], "size": first.get("size", first["model"]), "force": first["force"],
                     "cot_demos": first["cot_demos"], "best_alpha": best,
                     "acc_best": est[best].value, "acc_best_lo": est[best].value - est[best].half,
                     "acc_best_hi": est[best].value + est[best].half, "acc_alpha0": est[0.0].value,
                     "acc_alpha0_lo": est[0.0].value - est[0.0].half, "acc_alpha0_hi": est[0.0].value + est[0.0].half,
                     "relative_gain": est[best].value / est[0.0].value - 1 if est[0.0].value > 0 else math.inf,
                     "n_alpha": len(est)})
    return pd.DataFrame(rows)


CLAIMS = (
    Claim("cot_beats_std", "quickstart", "On one fixed compositional task learned in the weights, CoT ends above "
          "standard", "[ours]", "acc_final cot - std", cot_above_std("acc_final")),
    Claim("cot_higher", "fig_vocab", "CoT reaches a higher accuracy than standard, for every V and model", "[paper]",
          "acc_auc cot - std", cot_above_std("acc_auc")),
    Claim("cot_earlier", "fig_vocab", "CoT makes the accuracy transition earlier, for every V and model", "[paper]",
          "tau_50 std - cot, noise one eval interval", cot_earlier),
    Claim("vocab_harder", "fig_vocab", "A larger vocabulary is harder", "[code README]",
          "acc_auc falls with V", falls_along("vocab_size")),
    Claim("tf4_fails_large_v", "fig_vocab", "At V >= 512 TF-4 fails to exploit CoT while deeper models succeed",
          "[3rd]", "CoT benefit (acc_auc cot - std) per model", tf4_fails_large_v),
    Claim("chain_harder", "fig_chain", "Longer chains are harder", "[3rd]", "acc_auc falls with C",
          falls_along("chain_length")),
    Claim("std_long_chains", "fig_chain", "Standard models barely learn long chains", "[3rd]",
          f"std lift of acc_final < {LONG_CHAIN_LIFT} at the largest C", std_long_chains),
    Claim("parents_harder", "fig_parents", "Denser DAGs (more parents) are harder", "[3rd]", "acc_auc falls with M",
          falls_along("n_parents")),
    Claim("deep_overtakes_at_m1", "fig_parents", "At M=1, deeper CoT models overtake TF-4 late in training", "[3rd]",
          "acc_final deeper - tf4, and not ahead early (answer_acc curves)", deep_overtakes_at_m1),
    Claim("positions_fall", "fig_chain_positions", "Accuracy falls along the chain", "[3rd]",
          "chain_acc_i_final falls with i at the largest C (cot)", positions_fall),
    Claim("depth_few_examples", "fig_examples", "Depth matters for using CoT with few examples; more examples "
          "let shallow models catch up", "[paper]", "CoT benefit deepest - shallowest, smallest K - largest K",
          depth_few_examples),
    Claim("fixed_h_helps", "fig_diversity", "Limiting H diversity helps: one fixed H beats fresh H (with fresh or "
          "fixed DAG)", "[paper]", "acc_auc regime e - a and e - b", regime_beats("acc_auc")),
    Claim("sim_tracks_accuracy", "fig_embed_sim", "Embedding similarity jumps at the accuracy transition", "[3rd]",
          "largest embed_sim rise vs largest answer_acc rise; final sim vs chance", sim_tracks_accuracy),
    Claim("attention_recovers_parents", "fig_attention", "Attention recovers the parents under fixed H", "[3rd]",
          "parent_prec_final vs chance (regime e), e - a and e - b (cot)", attention_recovers_parents),
    Claim("p2_excess_cot_hurts", "p2_fig_alpha_dropk", "Excess CoT in meta-training hurts when test-time CoT is "
          "scarce: all-CoT training (alpha=0) loses more accuracy than the least-CoT recipe as the CoT "
          "demonstrations are dropped", "[paper 2]", f"{P2_METRIC} lost from the most to no CoT demos, alpha=0 - "
          "largest finite alpha", excess_cot_hurts, table="probes"),
    Claim("p2_best_alpha_beats_zero", "p2_fig_alpha_dropk", "With no CoT demonstration left, the best recipe "
          "(alpha > 0) beats all-CoT training (alpha=0)", "[paper 2]", f"{P2_METRIC} best alpha - alpha=0 at "
          "no CoT demos, Bonferroni-widened", best_alpha_beats_zero, table="probes"),
)


def verdict(comparisons: list[Comparison]) -> str:
    results = {c.result for c in comparisons if c.reached}
    if not results:
        return NOT_REACHED if comparisons else NOT_RUN
    return NOT_HELD if NOT_HELD in results else HELD if results == {HELD} else INCONCLUSIVE


def evaluate_claims(summaries: dict[str, pd.DataFrame], curves: dict[str, pd.DataFrame],
                    probes: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """claims.csv from each card's summary, curves and (paper 2) probes tables (card id -> table); a
    card without the table a claim reads makes it "not run", as does a table that lacks a column."""
    rows = []
    for claim in CLAIMS:
        summary, note = (summaries if claim.table == "summary" else probes or {}).get(claim.card), ""
        curve = curves.get(claim.card, pd.DataFrame(columns=["run_id", "step"]))
        try:
            comparisons = [] if summary is None or summary.empty else claim.compare(summary, curve)
        except KeyError as err:
            comparisons, note = [], f"{claim.card} tables lack column {err}"
        reached = [c.result for c in comparisons if c.reached]
        rows.append({
            "claim": claim.id, "card": claim.card, "statement": claim.statement, "source": claim.source,
            "metric": claim.metric, "verdict": verdict(comparisons), "n_compared": len(comparisons),
            "n_held": reached.count(HELD), "n_not_held": reached.count(NOT_HELD),
            "n_inconclusive": reached.count(INCONCLUSIVE), "n_not_reached": len(comparisons) - len(reached),
            "evidence": "; ".join(f"{c.label} -> {c.result if c.reached else NOT_REACHED}"
                                  for c in comparisons) or note,
            "run_ids": " ".join(dict.fromkeys(r for c in comparisons for r in c.run_ids)),
        })
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
