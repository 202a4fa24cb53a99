"""Experiment cards and scales: every card expands at every scale into valid configs, ids are shared
where the paper shares runs, the schemas and the pydantic models agree, and `cotlab plan` matches the
budget of experiments.md §5.1."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from cotlab import experiments
from cotlab.cli import main as cli
from cotlab.config import ConfigError, DataConfig, build, parse_sets
from cotlab.plan import plan_table

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
SCHEMAS = REPO / "workflow" / "schemas"
STAGE1 = ["fig_teaser", "tab_models", "fig_token_coverage", "fig_vocab", "fig_embed_sim", "fig_losses",
          "fig_examples", "fig_chain", "fig_chain_positions", "fig_parents", "fig_diversity", "fig_attention",
          "fig_activation", "fig_dims", "tab_hparams"]


def schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / f"{name}.schema.yaml").read_text())


def test_every_stage1_card_and_the_quickstart_exist() -> None:
    assert set(STAGE1) | {"quickstart"} <= set(experiments.card_ids(CONFIG))


@pytest.mark.parametrize("scale", experiments.SCALES)
def test_every_card_expands_at_every_scale(scale: str) -> None:
    seen: dict[str, tuple] = {}
    for exp_id in experiments.card_ids(CONFIG):
        card = experiments.load_card(exp_id, CONFIG)
        runs = experiments.expand(exp_id, scale, CONFIG)
        points = experiments.points(exp_id, scale, CONFIG)
        assert bool(runs) == (card["kind"] == "runs"), exp_id
        assert bool(points) == (card["kind"] != "runs"), exp_id
        experiments.check_runs(runs)  # TrainConfig, and the prompt format against the data point
        for point in [r.data for r in runs] + [p.data for p in points]:
            for split in experiments.SPLITS:
                build(DataConfig, point.split_config(split))  # schema and dataclasses cannot drift
        for run in runs:  # one id, one config: ids shared across cards mean identical runs
            assert seen.setdefault(run.run_id, (run.data, run.train)) == (run.data, run.train)
            assert run.train["n_train"] >= run.train["batch_size"]
        assert len({r.run_id for r in runs}) == len(runs), exp_id
        experiments.resolve_card(exp_id, scale, CONFIG)


def test_ids_are_readable_and_leave_out_what_a_stage_does_not_read() -> None:
    runs = experiments.expand("quickstart", "smoke", CONFIG)
    assert {r.run_id.split("__")[0] for r in runs} == {
        f"V{v}-K8-C3-M2-fixdag-fixH-smoke-tf8-{f}" for v in (32, 64) for f in ("std", "cot")}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+__[0-9a-f]{8}", r.run_id) for r in runs)
    by_point = {}
    for run in runs:  # std and cot of one point read one dataset
        by_point.setdefault(run.values["vocab_size"], set()).add(run.data_id)
    assert all(len(ids) == 1 for ids in by_point.values()) and len(by_point) == 2


def test_runs_shared_between_cards() -> None:
    ids = {c: {r.run_id for r in experiments.expand(c, "paper", CONFIG)} for c in
           ("fig_vocab", "fig_examples", "fig_parents", "fig_diversity", "fig_activation", "fig_dims",
            "fig_embed_sim", "fig_chain", "fig_chain_positions")}
    assert len(ids["fig_vocab"] & ids["fig_examples"]) == 6  # V=1024 is K=40: 3 models x 2 formats
    assert len(ids["fig_parents"] & ids["fig_diversity"]) == 6  # M=2 is regime c
    assert len(ids["fig_vocab"] & ids["fig_activation"] & ids["fig_dims"]) == 6  # V=64, leaky_relu, d=10
    assert ids["fig_embed_sim"] == ids["fig_vocab"]
    positions = experiments.expand("fig_chain_positions", "paper", CONFIG)
    assert {r.run_id for r in positions} < ids["fig_chain"] and {r.format for r in positions} == {"cot"}
    assert {r.experiment for r in positions} == {"fig_chain_positions"} and {r.source for r in positions} == {"fig_chain"}


def test_scale_layers_and_cadence() -> None:
    chain = experiments.expand("fig_chain", "paper", CONFIG)[0]
    assert (chain.train["batch_size"], chain.train["eval_every"], chain.train["n_train"]) == (32, 1000, 3_200_000)
    smoke = experiments.expand("fig_chain", "smoke", CONFIG)[0]  # the scale's batch overrides the card's
    assert (smoke.train["batch_size"], smoke.train["model"], smoke.data.data["vocab_size"]) == (16, "smoke-tf4", 64)
    quick = experiments.expand("quickstart", "smoke", CONFIG)[0]  # the card's per-scale values win
    assert (quick.train["n_train"], quick.train["batch_size"], quick.train["eval_every"]) == (51200, 64, 100)
    assert {r.model for r in experiments.expand("fig_diversity", "reduced", CONFIG)} == {"tf4", "tf8"}
    regimes = {r.values["regime"] for r in experiments.expand("fig_diversity", "smoke", CONFIG)}
    assert regimes == {"a", "b", "e"}
    coverage = experiments.points("fig_token_coverage", "paper", CONFIG)
    assert len(coverage) == 5 * 4 * 5 * 3 and {p.data.n_train for p in coverage} == {3_200_000}


def test_schemas_list_the_cards_and_scales() -> None:
    props = schema("config")["properties"]
    assert sorted(props["experiments"]["items"]["enum"]) == experiments.card_ids(CONFIG)
    assert props["scale"]["enum"] == list(experiments.SCALES) == list(experiments.load_scales(CONFIG))
    assert set(props) == set(experiments.WorkflowConfig.model_fields)


def test_schemas_mirror_the_pydantic_models() -> None:
    card, scales = schema("card"), schema("scales")
    assert set(card["properties"]) == set(experiments.Card.model_fields)
    assert set(card["$defs"]["layer"]["properties"]) == set(experiments.Layer.model_fields)
    assert set(card["properties"]["scales"]["additionalProperties"]["properties"]) == set(
        experiments.Override.model_fields)
    assert set(card["properties"]["plot"]["properties"]) == set(experiments.PlotSpec.model_fields)
    assert set(scales["additionalProperties"]["properties"]) == set(experiments.Scale.model_fields)
    assert set(scales["$defs"]["rule"]["properties"]) == set(experiments.RuleResources.model_fields)
    for exp_id in experiments.card_ids(CONFIG):
        jsonschema.validate(yaml.safe_load((CONFIG / "experiments" / f"{exp_id}.yaml").read_text()), card)
    jsonschema.validate(yaml.safe_load((CONFIG / "scales.yaml").read_text()), scales)


BAD_CARDS = [  # (card, text the one-line error must contain)
    ({"title": "t", "colour": 1}, "colour: unknown key"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "sweep": {"vocab_size": []}}, "sweep.vocab_size=[]"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "sweep": {"vocab": [64]}}, "sweep.vocab: unknown key"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "base": {"data": {"n_parents": 5}}}, "n_parents=5"),
    ({"title": "t", "models": ["tf5"], "formats": ["cot"]}, "models.0='tf5'"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "scales": {"huge": {}}}, "scales.huge"),
    ({"title": "t", "models": ["tf4"]}, "models/formats"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "base": {"train": {"lr": -1.0}}}, "train.lr=-1.0"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot_special_token"]}, "format='cot_special_token'"),
]


@pytest.mark.parametrize("card,message", BAD_CARDS)
def test_bad_card_fails_naming_the_field(tmp_path: Path, card: dict, message: str) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "scales.yaml").write_text((CONFIG / "scales.yaml").read_text())
    (tmp_path / "experiments" / "bad.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        experiments.check_runs(experiments.expand("bad", "smoke", tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("values,message", [
    ({"experiments": ["nope"], "scale": "smoke"}, "'nope' is not a card"),
    ({"experiments": [], "scale": "smoke"}, "experiments=[]"),
    ({"experiments": ["quickstart"], "scale": "huge"}, "scale='huge'"),
    ({"experiments": ["quickstart"], "scale": "smoke", "train_gpus": -1}, "train_gpus=-1"),
    ({"experiments": ["quickstart"], "scale": "smoke", "colour": 1}, "colour: unknown key"),
])
def test_bad_workflow_config_fails_naming_the_field(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        experiments.workflow_config(values, CONFIG)


def test_set_args_read_back_unchanged() -> None:
    run = experiments.expand("quickstart", "smoke", CONFIG)[0]
    for values in (run.train, run.data.split_config("train"), {"recipe": {"alpha": float("inf")}, "lr": 5e-5}):
        assert parse_sets(experiments.set_args(values)) == values


def test_plan_matches_the_reduced_budget() -> None:
    rows, gpus = plan_table(STAGE1, "reduced", str(CONFIG))
    by = {r["experiment"]: r for r in rows}
    assert gpus == 1
    # experiments.md §5.1: fig_vocab 18 runs, 1.01B tokens, 2.03 h; stage 1 about 5.9 H100-hours
    assert (by["fig_vocab"]["train"], round(by["fig_vocab"]["train_tokens"] / 1e9, 2)) == (18, 1.01)
    assert by["fig_vocab"]["gpu_hours"] == pytest.approx(2.03, abs=0.01)
    assert by["total"]["gpu_hours"] == pytest.approx(5.9, abs=0.3)
    paper, _ = plan_table(STAGE1, "paper", str(CONFIG))
    assert paper[-1]["train"] == 150  # and about 107B tokens, 210 H100-hours
    assert paper[-1]["train_tokens"] / 1e9 == pytest.approx(107, rel=0.05)
    assert paper[-1]["gpu_hours"] == pytest.approx(210, rel=0.1)


def test_plan_cli_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(CONFIG),
                "--scale", "reduced", "--set", "experiments=[fig_vocab,fig_examples]"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fig_vocab\s+6\s+18\s+18\s+0\s+1\s+1,013\.8\s+2\.03$", out, re.M), out
    assert re.search(r"^total\s+", out, re.M)
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(CONFIG),
                "--set", "scale=huge"]) == 2
    assert "scale='huge'" in capsys.readouterr().err
