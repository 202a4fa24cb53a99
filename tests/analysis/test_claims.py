"""claims.csv verdicts on synthetic summary and curves tables whose answers are set by hand.

Noise sizes used below (95% Wilson half-widths): at n_eval = 2000 an accuracy near 0.5 is +-0.022
and a difference of two such +-0.031; at n_eval = 50 an accuracy near 0.5 is +-0.13. So 0.8 vs 0.6
at 2000 is decided, 0.62 vs 0.60 at 50 is not.
"""

import numpy as np
import pandas as pd
import pytest

from claims_tables import curve, interval, run, tables
from cotlab.analysis.claims import CLAIM_COLUMNS, CLAIMS, evaluate_claims, headline_table

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"


def claims_of(summaries: dict, curves: dict | None = None, probes: dict | None = None) -> pd.DataFrame:
    out = evaluate_claims(summaries, curves or {}, probes)
    assert out["claim"].tolist() == [c.id for c in CLAIMS]
    return out.set_index("claim")


def verdict_of(claim: str, summaries: dict, curves: dict | None = None) -> str:
    return claims_of(summaries, curves).loc[claim, "verdict"]


# Per claim: case -> (summaries, curves). The numbers of each case decide its expected verdict.

def cot_beats_std(case):
    cot, std = {HELD: (0.95, 0.75), NOT_HELD: (0.75, 0.95), INCONCLUSIVE: (0.80, 0.80)}[case]
    n = 512 if case == INCONCLUSIVE else 2000
    return tables("quickstart", [run("quickstart", "tf4", f, a, n_eval=n, vocab_size=V)
                                 for V in (32, 64) for f, a in (("cot", cot), ("standard", std))])


def cot_higher(case):
    def acc(V, m, f):
        if case == INCONCLUSIVE:  # 0.62 vs 0.60 at n_eval 50: +-0.13 each
            return 0.62 if f == "cot" else 0.60
        if case == NOT_HELD and (V, m) == (256, "tf8"):  # one reached contradiction
            return 0.5 if f == "cot" else 0.7
        return 0.8 if f == "cot" else 0.6
    n = 50 if case == INCONCLUSIVE else 2000
    return tables("fig_vocab", [run("fig_vocab", m, f, acc(V, m, f), n_eval=n, vocab_size=V)
                                for V in (64, 256) for m in ("tf4", "tf8") for f in ("cot", "standard")])


def cot_earlier(case):  # eval_every = 250: one eval interval of noise
    cot, std = {HELD: (500, 1500), NOT_HELD: (1500, 500), INCONCLUSIVE: (500, 700)}[case]
    return tables("fig_vocab", [run("fig_vocab", m, f, tau_50=t, vocab_size=64)
                                for m in ("tf4", "tf8") for f, t in (("cot", cot), ("standard", std))])


def falling_sweep(card, column, values):
    def build(case):
        accs = {HELD: (0.8, 0.6, 0.4), NOT_HELD: (0.4, 0.6, 0.8), INCONCLUSIVE: (0.5, 0.5, 0.5)}[case]
        return tables(card, [run(card, m, f, a, **{column: x}) for m in ("tf4", "tf8") for f in ("cot", "standard")
                             for x, a in zip(values, accs)])
    return build


def tf4_fails_large_v(case):
    # CoT benefit (cot - std acc_auc) at V = 512 and 1024 for tf4 / deeper models; V = 64 is not looked at.
    gain = {HELD: (0.0, 0.3), NOT_HELD: (0.3, 0.3), INCONCLUSIVE: (0.0, 0.0)}[case]
    rows = [run("fig_vocab", "tf4", "cot", 0.9, vocab_size=64), run("fig_vocab", "tf4", "standard", 0.5, vocab_size=64)]
    for V in (512, 1024):
        for m in ("tf4", "tf8", "tf12"):
            b = gain[0] if m == "tf4" else gain[1]
            rows += [run("fig_vocab", m, "cot", 0.5 + b, vocab_size=V),
                     run("fig_vocab", m, "standard", 0.5, vocab_size=V)]
    return tables("fig_vocab", rows)


def std_long_chains(case):
    # Largest C = 5; std lift = (acc_final - 0.1) / 0.9. 0.12 -> 0.022 +- 0.016; 0.6 -> 0.556;
    # 0.30 at n_eval 50 -> 0.222 +- 0.14, straddling 0.25.
    std = {HELD: 0.12, NOT_HELD: 0.6, INCONCLUSIVE: 0.30}[case]
    n = 50 if case == INCONCLUSIVE else 2000
    rows = [run("fig_chain", m, "cot", 0.8, n_eval=n, chain_length=C) for m in ("tf4", "tf8") for C in (3, 5)]
    rows += [run("fig_chain", m, "standard", 0.7 if C == 3 else std, n_eval=n, chain_length=C)
             for m in ("tf4", "tf8") for C in (3, 5)]
    return tables("fig_chain", rows)


FIRST_HALF_BEHIND = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.8, 0.8]  # steps 0..4000; first half: 500..2000
TF4_CURVE = [0.1, 0.3, 0.4, 0.5, 0.55, 0.6, 0.6, 0.6, 0.6]


def deep_overtakes_at_m1(case):
    deep_final = {HELD: 0.8, NOT_HELD: 0.5, INCONCLUSIVE: 0.6}[case]
    rows = [run("fig_parents", m, f, a, n_parents=M) for m, f, a, M in (
        ("tf4", "cot", 0.6, 1), ("tf8", "cot", deep_final, 1),
        ("tf4", "cot", 0.9, 2), ("tf8", "cot", 0.3, 2), ("tf4", "standard", 0.9, 1), ("tf8", "standard", 0.1, 1))]
    deep_curve = FIRST_HALF_BEHIND[:-3] + [deep_final] * 3
    curves = curve(rows[0], TF4_CURVE) + curve(rows[1], deep_curve)
    return tables("fig_parents", rows, curves)


def positions_fall(case):
    falls = {HELD: (0.9, 0.8, 0.7, 0.6, 0.5), NOT_HELD: (0.5, 0.6, 0.7, 0.8, 0.9), INCONCLUSIVE: (0.7,) * 5}[case]
    rows = [run("fig_chain_positions", m, "cot", 0.7, chain_length=5, positions=falls) for m in ("tf4", "tf8")]
    rows += [run("fig_chain_positions", "tf4", "cot", 0.7, chain_length=3, positions=(0.5, 0.6, 0.7)),  # not largest C
             run("fig_chain_positions", "tf4", "standard", 0.7, chain_length=5, positions=(0.1, 0.2, 0.3, 0.4, 0.5))]
    return tables("fig_chain_positions", rows)


def depth_few_examples(case):
    # CoT benefits b(model, K): D = (b(tf12,10) - b(tf4,10)) - (b(tf12,40) - b(tf4,40)), h ~ 0.06.
    b = {HELD: {(10, "tf12"): 0.3, (10, "tf4"): 0.0, (40, "tf12"): 0.1, (40, "tf4"): 0.1},   # D = +0.3
         NOT_HELD: {(10, "tf12"): 0.1, (10, "tf4"): 0.1, (40, "tf12"): 0.3, (40, "tf4"): 0.0},  # D = -0.3
         INCONCLUSIVE: {(10, "tf12"): 0.0, (10, "tf4"): 0.0, (40, "tf12"): 0.0, (40, "tf4"): 0.0}}[case]
    rows = []
    for K in (10, 20, 40):
        for m in ("tf4", "tf8", "tf12"):
            rows += [run("fig_examples", m, "cot", 0.5 + b.get((K, m), -0.2), n_examples=K),
                     run("fig_examples", m, "standard", 0.5, n_examples=K)]
    return tables("fig_examples", rows)


def fixed_h_helps(case):
    accs = {HELD: dict(a=0.5, b=0.4, c=0.6, e=0.8), NOT_HELD: dict(a=0.5, b=0.4, c=0.6, e=0.4),
            INCONCLUSIVE: dict(a=0.5, b=0.5, c=0.5, e=0.52)}[case]
    n = 50 if case == INCONCLUSIVE else 2000
    return tables("fig_diversity", [run("fig_diversity", m, f, a, n_eval=n, regime=r, **REGIME_FIELDS[r])
                                    for m in ("tf4", "tf8") for f in ("cot", "standard") for r, a in accs.items()])


# The data fields the aggregator writes beside `regime` (config/experiments/fig_diversity.yaml): they
# follow the regime, so a comparison across regimes must not split on them.
REGIME_FIELDS = {"a": dict(fixed_dag=False, fixed_h=False, num_unique_h=None),
                 "b": dict(fixed_dag=True, fixed_h=False, num_unique_h=None),
                 "c": dict(fixed_dag=False, fixed_h=True, num_unique_h=100),
                 "e": dict(fixed_dag=False, fixed_h=True, num_unique_h=None)}


JUMP_ACC = [0.1, 0.1, 0.12, 0.12, 0.8, 0.85, 0.9, 0.9, 0.9]  # largest rise by step 2000
JUMP_SIM = [0.02, 0.02, 0.03, 0.03, 0.4, 0.45, 0.5, 0.5, 0.5]  # jump 0.37 by step 2000, next rise 0.05
NOISY_ACC = [0.30, 0.33, 0.31, 0.35, 0.32, 0.34, 0.33, 0.36, 0.34]  # rises <= 0.04; +-0.13 at n_eval 50


def similarity(acc, sim, n_eval=2000, final=None, chance=10 / 64):
    rows = [run("fig_embed_sim", "tf4", "cot", acc[-1], n_eval=n_eval, vocab_size=64,
                embed_sim_final=sim[-1] if final is None else final, embed_sim_chance=chance)]
    return tables("fig_embed_sim", rows, curve(rows[0], acc, sim))


def sim_tracks_accuracy(case):
    if case == INCONCLUSIVE:
        return similarity(NOISY_ACC, JUMP_SIM, n_eval=50)
    if case == NOT_HELD:  # the similarity jumps by step 3500, three evals after the accuracy
        return similarity(JUMP_ACC, [0.02] * 7 + [0.4, 0.5])
    return similarity(JUMP_ACC, JUMP_SIM)  # final 0.5 vs chance 0.156


def attention_recovers_parents(case):
    # n_attn 256 x C 4 x M 2 = 2048 trials: +-0.02; n_attn 1 -> 8 trials: +-0.3.
    prec = {HELD: dict(a=0.4, b=0.35, e=0.8), NOT_HELD: dict(a=0.4, b=0.35, e=0.25),
            INCONCLUSIVE: dict(a=0.45, b=0.45, e=0.5)}[case]
    n_attn = 1 if case == INCONCLUSIVE else 256
    rows = [run("fig_attention", m, "cot", 0.6, regime=r, chain_length=4, n_parents=2, n_attn=n_attn,
                parent_prec_final=p, parent_prec_chance=0.4 if case == INCONCLUSIVE else 0.35, **REGIME_FIELDS[r])
            for m in ("tf4", "tf8") for r, p in prec.items()]
    rows += [run("fig_attention", "tf4", "standard", 0.6, regime="e", chain_length=4, n_parents=2,
                 **REGIME_FIELDS["e"])]
    return tables("fig_attention", rows)


def probe_rows(accs: dict, n_eval: int = 2000, seeds=(0,)) -> pd.DataFrame:
    """A p2_fig_alpha_dropk probes table: accs maps (alpha name, CoT demos left) -> accuracy, for two
    forcings of one model; every run reached (lift_max 0.5)."""
    rows = []
    for force in ("free", "think"):
        for (alpha, demos), acc in accs.items():
            for seed in seeds:
                lo, hi = interval(acc, n_eval)
                rows.append({"run_id": f"hyb-a{alpha}-s{seed}", "model": "tf4", "size": "tf4",
                             "format": "hybrid_special_token", "seed": seed, "alpha": alpha, "probe": "dropk",
                             "scored_format": "cot_special_token", "force": force, "drop_strategy": "random",
                             "cot_demos": demos, "answer_acc": acc, "answer_acc_lo": lo, "answer_acc_hi": hi,
                             "n_eval": n_eval, "lift_max": 0.5})
    return pd.DataFrame(rows)


def excess_cot_hurts(case):
    # drop from 39 to 0 CoT demos: alpha=0 vs alpha=2 (the largest finite alpha; inf is ignored)
    accs = {HELD: {("0", 39): 0.8, ("0", 0): 0.3, ("2", 39): 0.7, ("2", 0): 0.6},         # D = 0.5 - 0.1
            NOT_HELD: {("0", 39): 0.8, ("0", 0): 0.7, ("2", 39): 0.8, ("2", 0): 0.3},     # D = 0.1 - 0.5
            INCONCLUSIVE: {("0", 39): 0.6, ("0", 0): 0.5, ("2", 39): 0.6, ("2", 0): 0.52}}[case]
    accs = {**accs, ("inf", 39): 0.1, ("inf", 0): 0.9}  # would contradict if alpha=inf were compared
    return {}, {}, {"p2_fig_alpha_dropk": probe_rows(accs, n_eval=50 if case == INCONCLUSIVE else 2000)}


def best_alpha_beats_zero(case):
    at_zero = {HELD: dict(zip(ALPHAS, (0.3, 0.35, 0.6, 0.35, 0.32))),
               NOT_HELD: dict(zip(ALPHAS, (0.7, 0.4, 0.45, 0.3, 0.35))),
               # 0.58 vs 0.5 at n=2000 is decided alone (+-0.031), not after widening for the best of 4
               INCONCLUSIVE: dict(zip(ALPHAS, (0.5, 0.47, 0.535, 0.49, 0.5)))}[case]
    accs = {**{(a, 0): v for a, v in at_zero.items()}, **{(a, 39): 0.9 for a in ALPHAS}}
    return {}, {}, {"p2_fig_alpha_dropk": probe_rows(accs)}


ALPHAS = ("0", "0.5", "1", "2", "inf")


BUILDERS = {
    "cot_beats_std": cot_beats_std, "cot_higher": cot_higher, "cot_earlier": cot_earlier,
    "vocab_harder": falling_sweep("fig_vocab", "vocab_size", (64, 256, 1024)),
    "tf4_fails_large_v": tf4_fails_large_v,
    "chain_harder": falling_sweep("fig_chain", "chain_length", (3, 4, 5)),
    "std_long_chains": std_long_chains,
    "parents_harder": falling_sweep("fig_parents", "n_parents", (1, 2, 3)),
    "deep_overtakes_at_m1": deep_overtakes_at_m1, "positions_fall": positions_fall,
    "depth_few_examples": depth_few_examples, "fixed_h_helps": fixed_h_helps,
    "sim_tracks_accuracy": sim_tracks_accuracy, "attention_recovers_parents": attention_recovers_parents,
    "p2_excess_cot_hurts": excess_cot_hurts, "p2_best_alpha_beats_zero": best_alpha_beats_zero,
}


def test_every_claim_has_cases():
    assert set(BUILDERS) == {c.id for c in CLAIMS}


@pytest.mark.parametrize("case", [HELD, NOT_HELD, INCONCLUSIVE])
@pytest.mark.parametrize("claim", list(BUILDERS))
def test_claim_verdict(claim, case):
    out = claims_of(*BUILDERS[claim](case)).loc[claim]
    assert out["verdict"] == case, out["evidence"]
    assert out["n_compared"] == out["n_held"] + out["n_not_held"] + out["n_inconclusive"] + out["n_not_reached"]


def test_output_columns_and_cards():
    out = evaluate_claims({}, {})
    assert list(out.columns) == list(CLAIM_COLUMNS)
    assert out["card"].tolist() == [c.card for c in CLAIMS]
    assert all(c.statement and c.metric and c.source.startswith("[") for c in CLAIMS)


def test_missing_card_is_not_run():
    assert set(evaluate_claims({}, {})["verdict"]) == {"not run"}
    out = claims_of(*cot_beats_std(HELD))
    assert out.loc["cot_beats_std", "verdict"] == HELD
    assert (out.drop("cot_beats_std")["verdict"] == "not run").all()


def test_missing_column_is_not_run_and_named():
    summaries, _ = fixed_h_helps(HELD)
    out = claims_of({"fig_diversity": summaries["fig_diversity"].drop(columns="regime")}).loc["fixed_h_helps"]
    assert out["verdict"] == "not run" and "regime" in out["evidence"]


def test_runs_that_never_lift_are_not_reached():
    # acc 0.12 over baseline 0.1: lift 0.022 < 0.1 everywhere, though cot 0.12 vs std 0.05 would be "held".
    rows = [run("fig_vocab", m, f, 0.12 if f == "cot" else 0.05, vocab_size=V)
            for V in (64, 256) for m in ("tf4", "tf8") for f in ("cot", "standard")]
    out = claims_of(*tables("fig_vocab", rows)).loc["cot_higher"]
    assert out["verdict"] == "not-reached"
    assert out["n_compared"] == out["n_not_reached"] == 4 and out["n_held"] == 0
    assert out["evidence"].count("-> not-reached") == 4


def test_unreached_contradiction_is_ignored_but_reached_one_counts():
    rows = [run("fig_vocab", "tf4", "cot", 0.8, vocab_size=64),
            run("fig_vocab", "tf4", "standard", 0.6, vocab_size=64),
            run("fig_vocab", "tf4", "cot", 0.11, vocab_size=1024),  # lift 0.011: never learned
            run("fig_vocab", "tf4", "standard", 0.15, vocab_size=1024)]  # lift 0.056
    out = claims_of(*tables("fig_vocab", rows)).loc["cot_higher"]
    assert (out["verdict"], out["n_held"], out["n_not_reached"]) == (HELD, 1, 1)
    rows[2]["lift_max"] = 0.2  # now reached: 0.11 vs 0.15 at n 2000 (+-0.02) contradicts
    assert verdict_of("cot_higher", *tables("fig_vocab", rows)) == NOT_HELD


def test_evidence_shows_values_with_intervals():
    rows = [run("fig_vocab", "tf4", "cot", 0.8, vocab_size=64), run("fig_vocab", "tf4", "standard", 0.7, vocab_size=64),
            run("fig_vocab", "tf8", "cot", 0.8, vocab_size=64), run("fig_vocab", "tf8", "standard", 0.7, vocab_size=64)]
    lo, hi = interval(0.8, 2000)
    slo, shi = interval(0.7, 2000)
    evidence = claims_of(*tables("fig_vocab", rows)).loc["cot_higher", "evidence"]
    half, shalf = (hi - lo) / 2, (shi - slo) / 2
    assert evidence.startswith(f"tf4: acc_auc cot 0.800 [{0.8 - half:.3f}, {0.8 + half:.3f}] vs std 0.700 "
                               f"[{0.7 - shalf:.3f}, {0.7 + shalf:.3f}] -> held; tf8: ")
    rows.append(run("fig_vocab", "tf4", "cot", 0.8, vocab_size=256))
    rows.append(run("fig_vocab", "tf4", "standard", 0.7, vocab_size=256))
    assert "V=256 tf4: acc_auc cot 0.800" in claims_of(*tables("fig_vocab", rows)).loc["cot_higher", "evidence"]


def test_swapping_format_labels_flips_quickstart():
    summaries, _ = cot_beats_std(HELD)
    assert verdict_of("cot_beats_std", summaries) == HELD
    swapped = summaries["quickstart"].assign(format=summaries["quickstart"]["format"].map(
        {"cot": "standard", "standard": "cot"}))
    assert verdict_of("cot_beats_std", {"quickstart": swapped}) == NOT_HELD


def test_one_permille_at_n_eval_512_is_inconclusive():
    # 0.951 vs 0.950 at n = 512: each +-0.019; a strict `>` on point estimates would call it held.
    rows = [run("quickstart", "tf4", "cot", 0.951, n_eval=512, vocab_size=64),
            run("quickstart", "tf4", "standard", 0.950, n_eval=512, vocab_size=64)]
    out = claims_of(*tables("quickstart", rows)).loc["cot_beats_std"]
    assert (out["verdict"], out["n_inconclusive"]) == (INCONCLUSIVE, 1)


def two_seed_vocab(cot_seeds, std_seeds):  # one seed per value listed
    rows = [run("fig_vocab", "tf4", f, a, seed=s, vocab_size=64)
            for f, seeds in (("cot", cot_seeds), ("standard", std_seeds)) for s, a in enumerate(seeds)]
    return tables("fig_vocab", rows)


def test_seeds_are_averaged_and_their_spread_counts():
    # Seed 0 alone: 0.85 vs 0.70 at n 2000 is held.
    assert verdict_of("cot_higher", *two_seed_vocab([0.85], [0.70])) == HELD
    # Both seeds: cot mean 0.725, sd 0.177, t(0.975, 1) = 12.7 -> +-1.59; std mean 0.70 -> inconclusive.
    out = claims_of(*two_seed_vocab([0.85, 0.60], [0.70, 0.70])).loc["cot_higher"]
    assert out["verdict"] == INCONCLUSIVE and out["n_compared"] == 1
    assert "cot 0.725" in out["evidence"] and len(out["run_ids"].split()) == 4
    # Consistent seeds: 0.81 +- 0.127 vs 0.61 +- 0.127 (sd 0.014): d = 0.2 > h = 0.18 -> held.
    out = claims_of(*two_seed_vocab([0.80, 0.82], [0.60, 0.62])).loc["cot_higher"]
    assert out["verdict"] == HELD and "cot 0.810" in out["evidence"] and "std 0.610" in out["evidence"]


def test_two_seeds_use_t_with_one_degree_of_freedom():
    # cot 0.80, 0.84 vs std 0.60, 0.64: d = 0.2; sd 0.028 each. t(0.975, 1) = 12.71 -> h = 0.254 each,
    # 0.36 combined: inconclusive. (A normal 1.96 or t(2) = 4.30 would give h < 0.2: held.)
    assert verdict_of("cot_higher", *two_seed_vocab([0.80, 0.84], [0.60, 0.64])) == INCONCLUSIVE
    # Three seeds, t(0.975, 2) = 4.30: 0.80, 0.82, 0.84 vs 0.60, 0.62, 0.64 -> h = 0.05 each: held.
    assert verdict_of("cot_higher", *two_seed_vocab([0.80, 0.82, 0.84], [0.60, 0.62, 0.64])) == HELD


def test_identical_seeds_keep_the_wilson_width_at_k_n_eval():
    # Two identical seeds: sd = 0, so the Wilson width at 2 x 512 trials (+-0.013) still applies.
    rows = [run("quickstart", "tf4", f, a, seed=s, n_eval=512, vocab_size=64)
            for s in (0, 1) for f, a in (("cot", 0.951), ("standard", 0.950))]
    assert verdict_of("cot_beats_std", *tables("quickstart", rows)) == INCONCLUSIVE


@pytest.mark.parametrize("cot, std, expected", [
    (500.0, np.nan, HELD),          # std never reaches lift 0.5
    (np.nan, np.nan, INCONCLUSIVE),  # neither does
    (np.nan, 500.0, NOT_HELD),
    (500.0, 750.0, INCONCLUSIVE),    # exactly one eval interval apart: not beyond it
    (500.0, 751.0, HELD),
])
def test_cot_earlier_with_runs_that_never_reach(cot, std, expected):
    rows = [run("fig_vocab", "tf4", "cot", tau_50=cot, vocab_size=64),
            run("fig_vocab", "tf4", "standard", tau_50=std, vocab_size=64)]
    assert verdict_of("cot_earlier", *tables("fig_vocab", rows)) == expected


def test_tau_of_a_group_is_never_if_one_seed_never_reaches():
    rows = [run("fig_vocab", "tf4", "cot", tau_50=t, seed=s, vocab_size=64) for s, t in enumerate((500.0, np.nan))]
    rows += [run("fig_vocab", "tf4", "standard", tau_50=1000.0, seed=s, vocab_size=64) for s in (0, 1)]
    out = claims_of(*tables("fig_vocab", rows)).loc["cot_earlier"]
    assert out["verdict"] == NOT_HELD and "cot never vs std 1000" in out["evidence"]


@pytest.mark.parametrize("accs, expected", [
    ((0.8, 0.5, 0.7), NOT_HELD),     # ends lower, but 0.5 -> 0.7 rises significantly
    ((0.8, 0.6, 0.6), HELD),         # a flat step is no rise
    ((0.80, 0.80, 0.79), INCONCLUSIVE),  # saturated: a drop of 0.01 is within +-0.025
])
def test_falling_rule_details(accs, expected):
    rows = [run("fig_vocab", "tf4", "cot", a, vocab_size=V) for V, a in zip((64, 256, 1024), accs)]
    assert verdict_of("vocab_harder", *tables("fig_vocab", rows)) == expected


def test_tf4_fails_needs_every_deeper_model_to_benefit():
    summaries, _ = tf4_fails_large_v(HELD)
    table = summaries["fig_vocab"]
    table.loc[(table["model"] == "tf12") & (table["format"] == "cot"), "acc_auc"] = 0.5  # tf12 gains 0: unclear
    assert verdict_of("tf4_fails_large_v", summaries) == INCONCLUSIVE
    table.loc[(table["model"] == "tf12") & (table["format"] == "cot"), "acc_auc"] = 0.3  # tf12 loses: contradicts
    assert verdict_of("tf4_fails_large_v", summaries) == NOT_HELD


def test_std_long_chains_is_reached_only_through_the_cot_run():
    summaries, _ = std_long_chains(HELD)
    table = summaries["fig_chain"]
    table.loc[table["format"] == "cot", "lift_max"] = 0.05  # the long-chain setting is not learnable at all
    table.loc[table["format"] == "standard", "lift_max"] = 0.3  # the std runs' own lift does not count
    out = claims_of(summaries).loc["std_long_chains"]
    assert out["verdict"] == "not-reached" and out["n_not_reached"] == 2


def test_claim_on_curves_without_a_curves_table_is_not_run():
    summaries, _ = deep_overtakes_at_m1(HELD)
    out = claims_of(summaries).loc["deep_overtakes_at_m1"]
    assert out["verdict"] == "not run" and "answer_acc" in out["evidence"]


def test_deep_model_that_always_led_did_not_overtake():
    summaries, _ = deep_overtakes_at_m1(HELD)
    rows = summaries["fig_parents"].to_dict("records")
    # Ahead at every first-half evaluation (equal only at step 0, which does not count).
    ahead = [0.1, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.8, 0.8]
    curves = {"fig_parents": pd.DataFrame(curve(rows[0], TF4_CURVE) + curve(rows[1], ahead))}
    assert verdict_of("deep_overtakes_at_m1", summaries, curves) == NOT_HELD


def test_similarity_linear_in_the_step_is_never_held():
    linear = list(np.linspace(0.02, 0.5, len(JUMP_ACC)))
    assert verdict_of("sim_tracks_accuracy", *similarity(JUMP_ACC, linear)) == NOT_HELD
    assert verdict_of("sim_tracks_accuracy", *similarity(NOISY_ACC, linear, n_eval=50)) == INCONCLUSIVE


def test_similarity_must_end_above_chance_by_a_margin():
    # Jumps with the accuracy, but ends at 0.2 against chance 0.156: margin 0.044 < 0.1.
    sim = [0.02, 0.02, 0.03, 0.03, 0.15, 0.17, 0.2, 0.2, 0.2]
    assert verdict_of("sim_tracks_accuracy", *similarity(JUMP_ACC, sim)) == NOT_HELD
    assert verdict_of("sim_tracks_accuracy", *similarity(JUMP_ACC, sim, chance=0.05)) == HELD


def test_attention_counts_both_parts():
    out = claims_of(*attention_recovers_parents(HELD)).loc["attention_recovers_parents"]
    assert out["n_compared"] == 2 + 4  # above chance per model; e vs a and e vs b per model
    summaries, _ = attention_recovers_parents(HELD)
    table = summaries["fig_attention"]
    table.loc[table["regime"] == "a", "parent_prec_final"] = 0.9  # fresh H beats fixed H: contradicts (ii)
    assert verdict_of("attention_recovers_parents", summaries) == NOT_HELD


def test_headline_table_names_the_best_alpha_and_its_gain():
    _, _, probes = best_alpha_beats_zero(HELD)
    table = headline_table(probes["p2_fig_alpha_dropk"]).set_index("force")
    assert list(table.index) == ["free", "think"]
    row = table.loc["free"]
    assert row["best_alpha"] == 1.0 and row["cot_demos"] == 0 and row["n_alpha"] == 5
    assert row["acc_best"] == pytest.approx(0.6) and row["acc_alpha0"] == pytest.approx(0.3)
    assert row["relative_gain"] == pytest.approx(1.0)
    assert row["acc_best_lo"] < 0.6 < row["acc_best_hi"]


def test_p2_claims_read_the_probes_table_not_the_summary():
    _, _, probes = excess_cot_hurts(HELD)
    out = claims_of({"p2_fig_alpha_dropk": probes["p2_fig_alpha_dropk"]}, {}, {})  # a summary is no probes table
    assert out.loc["p2_excess_cot_hurts", "verdict"] == "not run"
