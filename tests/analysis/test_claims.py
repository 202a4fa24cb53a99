"""claims.csv verdicts on synthetic learning curves with known answers."""

import numpy as np
import pandas as pd
import pytest

from cotlab.aggregate import aggregate_runs
from cotlab.analysis.claims import CLAIMS, evaluate_claims

STEPS = [0, 10, 20, 30]
BASELINE = 0.2
RISING = [0.2, 0.5, 0.8, 0.9]  # lift reaches 0.875
SLOWER = [0.2, 0.3, 0.5, 0.7]
FLAT = [0.2, 0.21, 0.22, 0.2]  # never reaches lift 0.1


def card_table(runs: list[dict]) -> pd.DataFrame:
    """An aggregate table from run specs: {run values..., "acc": curve, optional extra curves}."""
    run_rows, curve_rows = [], []
    for i, spec in enumerate(runs):
        spec = dict(spec)
        acc = spec.pop("acc")
        extra = {k: spec.pop(k) for k in list(spec) if isinstance(spec[k], list)}
        data = {"vocab_size": 1024, "n_dims": 10, "n_inputs": 4, "n_parents": 2, "chain_length": 2,
                "n_examples": 40, **{k: v for k, v in spec.items() if k in ("vocab_size", "n_examples",
                                                                             "chain_length", "n_parents")}}
        run_id = f"run{i}"
        run_rows.append({"run_id": run_id, "model": spec["model"], "format": spec["format"], "seed": 42,
                         **{k: v for k, v in spec.items() if k not in ("model", "format")}, "data": data})
        for s, step in enumerate(STEPS):
            curve_rows.append({"run_id": run_id, "step": step, "answer_acc": acc[s], "majority_baseline": BASELINE,
                               **{k: v[s] for k, v in extra.items()}})
    return aggregate_runs(pd.DataFrame(run_rows), pd.DataFrame(curve_rows), None, {"kind": "curves"})


def vocab_runs(curves: dict) -> list[dict]:
    return [{"vocab_size": V, "model": m, "format": f, "acc": acc} for (V, m, f), acc in curves.items()]


def verdicts(tables: dict) -> dict[str, str]:
    claims = evaluate_claims(tables)
    assert claims["claim"].tolist() == [c.id for c in CLAIMS]
    return dict(zip(claims["claim"], claims["verdict"]))


def scaled(curve: list[float], factor: float) -> list[float]:
    return [BASELINE + factor * (a - BASELINE) for a in curve]


def test_cot_earlier_held_when_cot_leads_everywhere():
    curves = {(V, m, f): scaled(RISING if f == "cot" else SLOWER, 1.0 if V == 64 else 0.8)
              for V in (64, 256) for m in ("tf4", "tf8") for f in ("cot", "standard")}
    claims = evaluate_claims({"fig_vocab": card_table(vocab_runs(curves))}).set_index("claim")
    assert claims.loc["cot_earlier", "verdict"] == "held"
    assert claims.loc["cot_earlier", "n_compared"] == 4 and claims.loc["cot_earlier", "n_held"] == 4
    assert "tau_50 cot 20 vs std 30" in claims.loc["cot_earlier", "evidence"]
    assert claims.loc["vocab_harder", "verdict"] == "held"  # every curve is lower at V=256
    assert len(claims.loc["cot_earlier", "run_ids"].split()) == 8
    assert claims.loc["depth_few_examples", "verdict"] == "not run"


def test_one_contradicting_reached_comparison_is_not_held():
    curves = {(64, "tf4", "cot"): RISING, (64, "tf4", "standard"): SLOWER,
              (64, "tf8", "cot"): SLOWER, (64, "tf8", "standard"): RISING}
    assert verdicts({"fig_vocab": card_table(vocab_runs(curves))})["cot_earlier"] == "not held"


def test_comparisons_below_lift_0_1_are_not_reached():
    curves = {(64, m, f): FLAT for m in ("tf4", "tf8") for f in ("cot", "standard")}
    out = verdicts({"fig_vocab": card_table(vocab_runs(curves))})
    assert out["cot_earlier"] == "not-reached"
    assert out["vocab_harder"] == "not run"  # a single V: nothing to compare


def test_calibration_turns_failed_v1024_comparisons_into_not_reached():
    curves = {(64, "tf4", "cot"): RISING, (64, "tf4", "standard"): SLOWER,
              (1024, "tf4", "cot"): FLAT, (1024, "tf4", "standard"): [0.2, 0.3, 0.4, 0.5]}
    claims = evaluate_claims({"fig_vocab": card_table(vocab_runs(curves))}).set_index("claim")
    # Without calibration, V=1024 (std 0.4 > cot 0.21, std reached) would contradict the claim.
    assert claims.loc["cot_earlier", "verdict"] == "held"
    assert claims.loc["cot_earlier", "n_not_reached"] == 1


def test_every_claim_is_not_run_without_tables():
    assert set(verdicts({}).values()) == {"not run"}


def test_quickstart_miniature_claim():
    runs = [{"vocab_size": V, "model": "tf8", "format": f, "acc": RISING if f == "cot" else SLOWER}
            for V in (32, 64) for f in ("cot", "standard")]
    assert verdicts({"quickstart": card_table(runs)})["cot_beats_std"] == "held"
    runs = [{**r, "acc": SLOWER if r["format"] == "cot" else RISING} for r in runs]
    assert verdicts({"quickstart": card_table(runs)})["cot_beats_std"] == "not held"


def test_depth_matters_with_few_examples():
    runs = [{"n_examples": K, "model": m, "format": "cot", "acc": acc} for K, m, acc in (
        (10, "tf4", SLOWER), (10, "tf12", RISING), (40, "tf4", RISING), (40, "tf12", RISING))]
    assert verdicts({"fig_examples": card_table(runs)})["depth_few_examples"] == "held"
    runs[0]["acc"] = RISING  # no gap at K=10 either
    assert verdicts({"fig_examples": card_table(runs)})["depth_few_examples"] == "not held"


def test_harder_sweeps_and_positions():
    chain = [{"chain_length": C, "model": "tf4", "format": "cot", "acc": acc,
              **{f"chain_acc_{i}": [a] * 4 for i, a in enumerate(pos)}}
             for C, acc, pos in ((3, RISING, (0.9, 0.8, 0.7)), (5, SLOWER, (0.9, 0.8, 0.8, 0.6, 0.5)))]
    parents = [{"n_parents": M, "model": "tf4", "format": "standard", "acc": acc}
               for M, acc in ((1, SLOWER), (2, RISING))]  # M=2 easier: contradicts
    out = verdicts({"fig_chain": card_table(chain), "fig_chain_positions": card_table(chain),
                    "fig_parents": card_table(parents)})
    assert out["chain_harder"] == "held"
    assert out["positions_fall"] == "held"
    assert out["parents_harder"] == "not held"


def test_diversity_similarity_and_attention():
    diversity = [{"regime": r, "model": "tf4", "format": "cot", "acc": acc, "n_parents": 2, "chain_length": 4,
                  "parent_prec": prec, "embed_sim": sim}
                 for r, acc, prec, sim in (("a", FLAT, [0.3] * 4, [0.1, 0.1, 0.1, 0.1]),
                                           ("e", RISING, [0.3, 0.5, 0.7, 0.8], [0.1, 0.3, 0.5, 0.6]))]
    table = card_table(diversity)
    out = verdicts({"fig_diversity": table, "fig_attention": table, "fig_embed_sim": table})
    assert out["fixed_h_helps"] == "held"
    assert out["attention_recovers_parents"] == "held"  # 0.8 > chance (2/4 + 2/5 + 2/6 + 2/7) / 4
    assert out["sim_tracks_accuracy"] == "held"  # regime a never reaches lift 0.1: ignored
    low = card_table([{**diversity[1], "parent_prec": [0.3] * 4, "embed_sim": [0.6, 0.5, 0.4, 0.3]}])
    out = verdicts({"fig_attention": low, "fig_embed_sim": low})
    assert out["attention_recovers_parents"] == "not held"
    assert out["sim_tracks_accuracy"] == "not held"
    assert np.isclose(low["parent_prec_chance"].iloc[0], (2 / 4 + 2 / 5 + 2 / 6 + 2 / 7) / 4)


@pytest.mark.parametrize("claim", [c.id for c in CLAIMS])
def test_every_claim_names_its_card_and_metric(claim):
    spec = next(c for c in CLAIMS if c.id == claim)
    assert spec.card.startswith(("fig_", "quickstart")) and spec.metric and spec.statement
