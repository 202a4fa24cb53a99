"""TrainConfig.eval_max_new_tokens: the in-training eval's decoding budget reaches the scoring."""

from __future__ import annotations

import pandas as pd
import pytest

import cotlab.train
from cotlab.cli import main as cli
from cotlab.config import ConfigError, build
from cotlab.train_config import TrainConfig
from conftest import generate_split

POINT = ["vocab_size=32", "n_inputs=3", "n_parents=2", "chain_length=2", "n_examples=4", "fixed_h=true",
         "special_tokens=true"]
SETS = ["model=smoke-tf4", "batch_size=16", "n_train=16", "n_eval=16", "analysis_n=0", "prompt.recipe.alpha=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return generate_split(root / "train", "train", 16, POINT), generate_split(root / "eval", "eval", 16, POINT)


def train(data, out, *sets: str) -> int:
    args = ["train", "--data", data[0], "--eval-data", data[1], "--out", str(out), "--format", "hybrid_special_token"]
    for item in [*SETS, *sets]:
        args += ["--set", item]
    return cli(args)


def test_the_budget_is_passed_to_every_eval(data, tmp_path, monkeypatch):
    budgets = []
    scorer = cotlab.train.evaluate_accuracy

    def spy(*args, decode, **kwargs):
        budgets.append(decode.max_new_tokens)
        return scorer(*args, decode=decode, **kwargs)

    monkeypatch.setattr(cotlab.train, "evaluate_accuracy", spy)
    assert train(data, tmp_path / "default") == 0
    assert train(data, tmp_path / "long", "eval_max_new_tokens=20") == 0
    assert budgets == [None, None, 20, 20]  # step 0 and the last step of each run
    metrics = pd.read_parquet(tmp_path / "long" / "metrics.parquet")
    assert (metrics["length_p90"] <= 20).all() and (pd.read_parquet(tmp_path / "default" / "metrics.parquet")
                                                     ["length_p90"] <= 2 + 5).all()


def test_bad_budgets_are_named(data, tmp_path, capsys):
    with pytest.raises(ConfigError, match="^eval_max_new_tokens=0: must be null or an integer in"):
        build(TrainConfig, {"eval_max_new_tokens": 0})
    assert train(data, tmp_path / "short", "eval_max_new_tokens=3") == 2  # unforced: ⟨as⟩ y ⟨ae⟩ ⟨eos⟩
    err = capsys.readouterr().err.strip()
    assert err.endswith("max_new_tokens=3: must be >= 4, the shortest well-formed generation of hybrid_special_token")
    assert err.endswith("eval_max_new_tokens=3: must be >= 4, the shortest well-formed generation of hybrid_special_token")
    assert not (tmp_path / "short").exists()  # refused before any work: no config.json to block a fixed rerun
