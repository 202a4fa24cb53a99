"""The config machinery and DataConfig: bad values fail in one line naming field, value and what is allowed; ids; torch-free imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cotlab.config import ConfigError, DataConfig, data_id, load, parse_sets, set_items

BAD = [
    (["n_parents=5"], "n_parents=5: must be <= n_inputs (4)"),
    (["vocab_size=10", "special_tokens=true"],
     "vocab_size=10: must be >= 11 (9 reserved special ids + 2 usable)"),
    (["vocab_size=1"], "vocab_size=1: must be >= 2"),
    (["activation=gelu"], "activation='gelu': Input should be 'leaky_relu', 'relu', 'silu' or 'identity'"),
    (["foo=1"], "foo: unknown key; allowed keys are vocab_size, n_dims"),
    (["n_inputs=0"], "n_inputs=0: must be a positive integer"),
    (["n_dims=-3"], "n_dims=-3: must be a positive integer"),
    (["chain_length=0"], "chain_length=0: must be a positive integer"),
    (["n_examples=0"], "n_examples=0: must be a positive integer"),
    (["h_num_layers=0"], "h_num_layers=0: must be a positive integer"),
    (["n_sequences=0"], "n_sequences=0: must be a positive integer"),
    (["n_sequences=1.5"], "n_sequences=1.5: Input should be a valid integer"),
    (["vocab_size=abc"], "vocab_size='abc': Input should be a valid integer"),
    (["special_tokens=maybe"], "special_tokens='maybe': Input should be a valid boolean"),
    (["data_init_range=0"], "data_init_range=0.0: must be a positive finite number"),
    (["data_init_range=.inf"], "data_init_range=inf: must be a positive finite number"),
    (["h_pool_mode=global"], "h_pool_mode='global': Input should be 'per_sequence' or 'per_position'"),
    (["num_unique_h=5"], "num_unique_h=5: needs fixed_h=true"),
    (["fixed_h=true", "num_unique_h=0"], "num_unique_h=0: must be a positive integer"),
    (["dag=[[0,1],[1,2]]"], "dag=[[0, 1], [1, 2]]: needs fixed_dag=true"),
    (["fixed_dag=true", "dag=[[0,1,2,3]]"], "dag=[[0, 1, 2, 3]]: must hold chain_length=2 parent lists"),
    (["fixed_dag=true", "n_parents=2", "dag=[[0,0],[1,2]]"],
     "step 0 must list n_parents=2 distinct node ids"),
    (["fixed_dag=true", "n_parents=2", "dag=[[0,1],[1,5]]"], "step 1 parents must lie in 0..4"),
    (["fixed_dag=true", "dag=5"], "dag=5: Input should be a valid list"),
    (["novalue"], "--set 'novalue': must look like KEY=VALUE"),
]


@pytest.mark.parametrize("sets, message", BAD, ids=[" ".join(sets) for sets, _ in BAD])
def test_bad_data_config(sets, message):
    with pytest.raises(ConfigError) as err:
        load(DataConfig, sets=sets)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("sets, message", [
    (["seed=-1"], "seed=-1: must be a non-negative integer"),
    (["eval_seed=-5"], "eval_seed=-5: must be a non-negative integer"),
])
def test_negative_seeds(sets, message):
    with pytest.raises(ConfigError, match=message):
        load(DataConfig, sets=sets)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(DataConfig, tmp_path / "none.yaml")


@pytest.mark.parametrize("args, message", [
    (["--set", "n_parents=5"], "n_parents=5: must be <= n_inputs (4)"),
    (["--set", "activation=tanh"], "activation='tanh': Input should be"),
    (["--set", "colour=red"], "colour: unknown key"),
    (["--set", "seed=-1"], "seed=-1: must be a non-negative integer"),
    (["--workers", "0"], "workers=0: must be a positive integer"),
    (["--chunk-size", "0"], "chunk_size=0: must be a positive integer"),
    (["--config", "missing.yaml"], "config file 'missing.yaml': not found"),
])
def test_cli_rejects_before_any_work(tmp_path, args, message):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "cotlab.cli", "generate", "--out", str(out), "--split",
                             "train", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stderr.startswith("cotlab generate: error: ")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp directory


def test_cli_refuses_a_directory_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = subprocess.run([sys.executable, "-m", "cotlab.cli", "generate", "--out", str(tmp_path),
                             "--split", "eval"], capture_output=True, text=True)
    assert result.returncode == 2 and "is not a cotlab dataset" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_configs_and_cards_import_without_torch() -> None:
    """The workflow plans (and validates every run) without importing torch."""
    modules = "cotlab.config, cotlab.formats, cotlab.model_config, cotlab.train_config, cotlab.card_schema, " \
              "cotlab.cards, cotlab.jobs, cotlab.layout, cotlab.plan"
    code = f"import sys, {modules}; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_set_items_read_back_unchanged() -> None:
    values = {"lr": 5e-5, "betas": [0.9, 0.999], "prompt": {"format": "cot", "recipe": {"alpha": float("inf")}},
              "n_eval": None, "name": "two words", "flag": True, "big": 1e6}
    assert parse_sets(set_items(values)) == values


def test_one_data_id_names_the_point_whatever_the_split_size() -> None:
    small, large = DataConfig(vocab_size=64, n_sequences=10), DataConfig(vocab_size=64, n_sequences=10_000)
    assert data_id(small) == data_id(large)
    assert data_id(small).startswith("V64-K40-C2__")
    assert data_id(DataConfig(vocab_size=64, eval_seed=1042)) == data_id(small)  # the default, spelled out
    assert data_id(DataConfig(vocab_size=64, eval_seed=7)) != data_id(small)
