"""The workflow's job table: config validation, shared datasets and the plan each aggregate reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cotlab import jobs
from cotlab.config import ConfigError
from cotlab.layout import Layout

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"


@pytest.mark.parametrize("values,message", [
    ({"experiments": ["nope"], "scale": "smoke"}, "'nope' is not a card"),
    ({"experiments": [], "scale": "smoke"}, "experiments=[]"),
    ({"experiments": ["quickstart"], "scale": "huge"}, "scale='huge'"),
    ({"experiments": ["quickstart"], "scale": "smoke", "train_gpus": -1}, "train_gpus=-1"),
    ({"experiments": ["quickstart"], "scale": "smoke", "colour": 1}, "colour: unknown key"),
    ({"experiments": ["quickstart"], "scale": "smoke", "seeds": 0}, "seeds=0: must be a positive integer"),
    ({"experiments": ["quickstart"], "scale": "smoke", "seeds": True}, "seeds=True"),
])
def test_bad_workflow_config_fails_naming_the_field(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        jobs.workflow_config(values, CONFIG)


def test_the_aggregate_plan_names_every_file_it_reads() -> None:
    table = jobs.workflow_jobs(["quickstart", "fig_token_coverage"], "smoke", CONFIG)
    layout = Layout("smoke")
    plan = table.plan("quickstart")
    assert plan["card"]["plot"]["kind"] == "curves" and len(plan["runs"]) == 4
    run = plan["runs"][0]
    point = table.runs[run["run_id"]].data
    assert run["files"] == {"metrics": layout.metrics(run["run_id"]), **layout.evaluation(run["run_id"]),
                            "train_data": layout.data(point.data_id, "train", point.n_train)}
    coverage = table.plan("fig_token_coverage")
    assert all(set(p["files"]) == {"coverage"} for p in coverage["points"])
    assert set(table.inputs_of(coverage)) == {layout.coverage(d, n) for d, n in table.coverage}
    assert table.inputs_of(table.plan("quickstart")) == sorted({f for r in plan["runs"] for f in r["files"].values()})


def test_each_data_point_has_one_readable_id_and_both_splits() -> None:
    table = jobs.workflow_jobs(["quickstart"], "smoke", CONFIG)
    table.add_card("fig_vocab")
    smoke_ids = {r.data_id for r in table.runs.values()}
    assert all(re.fullmatch(r"[A-Za-z0-9-]+__[0-9a-f]{8}", d) for d in smoke_ids)
    assert {(d, s) for d, s, _ in table.splits} == {(d, s) for d in table.data for s in ("train", "eval")}
    assert len(table.splits) == 2 * len(table.data)


def test_coverage_sizes_are_a_log_grid_ending_at_the_split() -> None:
    assert jobs.coverage_sizes(256) == [100, 256]
    assert jobs.coverage_sizes(20_000) == [100, 1000, 10_000, 20_000]
    assert jobs.coverage_sizes(1000) == [100, 1000]


def test_a_config_dir_without_cards_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config-dir='.*missing': holds no cards"):
        jobs.workflow_config({"experiments": ["quickstart"], "scale": "smoke"}, tmp_path / "missing")
