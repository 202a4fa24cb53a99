"""Cards at a scale: every card expands at every scale into valid configs, ids are shared where the
paper shares runs, and the scale layers apply in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import STAGE1
from cotlab import card_schema, cards
from cotlab.config import DataConfig, build

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"



def test_every_stage1_card_and_the_quickstart_exist() -> None:
    assert set(STAGE1) | {"quickstart"} <= set(cards.card_ids(CONFIG))


@pytest.mark.parametrize("scale", card_schema.SCALES)
def test_every_card_expands_at_every_scale(scale: str) -> None:
    seen: dict[str, tuple] = {}
    for exp_id in cards.card_ids(CONFIG):
        card = cards.load_card(exp_id, CONFIG)
        runs = cards.expand(exp_id, scale, CONFIG)
        points = cards.points(exp_id, scale, CONFIG)
        assert bool(runs) == (card.kind == "runs"), exp_id
        assert bool(points) == (card.kind != "runs"), exp_id
        cards.check_runs(runs)  # TrainConfig, and the prompt format against the data point
        for point in [r.data for r in runs] + [p.data for p in points]:
            for split in cards.SPLITS:
                build(DataConfig, point.split_config(split))  # schema and dataclasses cannot drift
        for run in runs:  # one id, one config: ids shared across cards mean identical runs
            assert seen.setdefault(run.run_id, (run.data, run.train)) == (run.data, run.train)
            assert run.train["n_train"] >= run.train["batch_size"]
        assert len({r.run_id for r in runs}) == len(runs), exp_id
        cards.resolve_card(exp_id, scale, CONFIG)


def test_ids_are_readable_and_leave_out_what_a_stage_does_not_read() -> None:
    runs = cards.expand("quickstart", "smoke", CONFIG)
    assert {r.run_id.split("__")[0] for r in runs} == {
        f"V{v}-K8-C3-M2-fixdag-fixH-smoke-tf8-{f}" for v in (32, 64) for f in ("std", "cot")}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+__[0-9a-f]{8}", r.run_id) for r in runs)
    by_point = {}
    for run in runs:  # std and cot of one point read one dataset
        by_point.setdefault(run.values["vocab_size"], set()).add(run.data_id)
    assert all(len(ids) == 1 for ids in by_point.values()) and len(by_point) == 2


def test_runs_shared_between_cards() -> None:
    ids = {c: {r.run_id for r in cards.expand(c, "paper", CONFIG)} for c in
           ("fig_vocab", "fig_examples", "fig_parents", "fig_diversity", "fig_activation", "fig_dims",
            "fig_embed_sim", "fig_chain", "fig_chain_positions")}
    assert len(ids["fig_vocab"] & ids["fig_examples"]) == 6  # V=1024 is K=40: 3 models x 2 formats
    assert len(ids["fig_parents"] & ids["fig_diversity"]) == 6  # M=2 is regime c
    assert len(ids["fig_vocab"] & ids["fig_activation"] & ids["fig_dims"]) == 6  # V=64, leaky_relu, d=10
    assert ids["fig_embed_sim"] == ids["fig_vocab"]
    positions = cards.expand("fig_chain_positions", "paper", CONFIG)
    assert {r.run_id for r in positions} < ids["fig_chain"] and {r.format for r in positions} == {"cot"}
    assert {r.experiment for r in positions} == {"fig_chain_positions"} and {r.source for r in positions} == {"fig_chain"}


def test_scale_layers_and_cadence() -> None:
    chain = cards.expand("fig_chain", "paper", CONFIG)[0]
    assert (chain.train["batch_size"], chain.train["eval_every"], chain.train["n_train"]) == (32, 1000, 3_200_000)
    smoke = cards.expand("fig_chain", "smoke", CONFIG)[0]  # the scale's batch overrides the card's
    assert (smoke.train["batch_size"], smoke.train["model"], smoke.data.data["vocab_size"]) == (16, "smoke-tf4", 64)
    quick = cards.expand("quickstart", "smoke", CONFIG)[0]  # the card's per-scale values win
    assert (quick.train["n_train"], quick.train["batch_size"], quick.train["eval_every"]) == (51200, 64, 100)
    assert {r.model for r in cards.expand("fig_diversity", "reduced", CONFIG)} == {"tf4", "tf8"}
    regimes = {r.values["regime"] for r in cards.expand("fig_diversity", "smoke", CONFIG)}
    assert regimes == {"a", "b", "e"}
    coverage = cards.points("fig_token_coverage", "paper", CONFIG)
    assert len(coverage) == 5 * 4 * 5 * 3 and {p.data.n_train for p in coverage} == {3_200_000}


def test_seeds_replicate_runs_over_model_init_and_data_order() -> None:
    one = cards.expand("quickstart", "smoke", CONFIG)
    three = cards.expand("quickstart", "smoke", CONFIG, seeds=3)
    assert len(three) == 3 * len(one) and {r.run_id for r in one} < {r.run_id for r in three}
    assert sorted({(r.replicate, r.seed, r.data.data["seed"]) for r in three}) == [(0, 42, 42), (1, 43, 42), (2, 44, 42)]
    assert len({r.data_id for r in three}) == len({r.data_id for r in one})  # same data: reseed_data is off
    coverage = cards.points("fig_token_coverage", "paper", CONFIG)  # seeds: 3 with reseed_data: E redrawn
    assert sorted({p.seed for p in coverage}) == [42, 43, 44]
    assert cards.resolve_card("fig_token_coverage", "smoke", CONFIG)["seeds"] == 1  # the card's smoke value
    reused = cards.expand("fig_embed_sim", "smoke", CONFIG, seeds=2)  # a reusing card takes every replicate
    assert {r.replicate for r in reused} == {0, 1}
