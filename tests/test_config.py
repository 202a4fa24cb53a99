"""The config machinery and DataConfig: bad values fail in one line naming field, value and what is allowed; ids; torch-free imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cotlab.config import MAX_ECHO, SEED_MAX, ConfigError, DataConfig, build, check_seed, data_id, short
from cotlab.yamlio import load, parse_sets, set_items

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
    (["seed=-1"], "seed=-1: must be an integer seed in [0, 4294967295]"),
    (["eval_seed=-5"], "eval_seed=-5: must be an integer seed in [0, 4294967295]"),
    (["seed=4294967296", "eval_seed=0"], "seed=4294967296: must be an integer seed in [0, 4294967295]"),
    (["eval_seed=4294967296"], "eval_seed=4294967296: must be an integer seed in [0, 4294967295]"),
    (["seed=4294967000"], "seed=4294967000: must be <= 4294966295 when eval_seed is null"),
])
def test_seeds_out_of_range(sets, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(DataConfig, sets=sets)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(DataConfig, tmp_path / "none.yaml")


@pytest.mark.parametrize("args, message", [
    (["--set", "n_parents=5"], "n_parents=5: must be <= n_inputs (4)"),
    (["--set", "activation=tanh"], "activation='tanh': Input should be"),
    (["--set", "colour=red"], "colour: unknown key"),
    (["--set", "seed=-1"], "seed=-1: must be an integer seed in [0, 4294967295]"),
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


# --- YAML safety, bounded messages, caps -----------------------------------------------------

# 9 levels of 9 aliases: 1 KB of YAML, 9**9 = 387 million list entries once expanded
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{key}: &{key} [{', '.join(['*' + prev] * 9)}]\n" for prev, key in zip("abcdefgh", "bcdefghi")) + "dag: *i\n"

BAD_YAML = [  # (file content, what the one-line error says after "config file '<path>'")
    (BILLION_LAUGHS, "line 1: invalid YAML: anchors and aliases (&name, *name) are not allowed"),
    ("vocab_size: 64\nfoo: *nowhere\n", "line 2: invalid YAML: anchors and aliases"),
    ("seed: 1\nn_dims: 4\nseed: 2\n", "line 3: invalid YAML: duplicate key 'seed'"),
    ("prompt:\n  format: cot\n  format: standard\n", "line 3: invalid YAML: duplicate key 'format'"),
    ("vocab_size: [64\nn_dims: 4\n", "invalid YAML: "),
    ("vocab_size: !!python/object/apply:os.system ['true']\n", "invalid YAML: tags are not allowed"),
    ("vocab_size: !!int 64\n", "invalid YAML: tags are not allowed"),
    (b"vocab_size: 64\nactivation: r\xe9lu\n", "line 2: not UTF-8 text (byte 0xe9)"),
    ("dag: " + "[" * 20_000 + "]" * 20_000 + "\n", "invalid YAML: "),
    ("vocab_size: " + "9" * 5000 + "\n", "invalid YAML: "),
    ("vocab_size: 64\n---\nn_dims: 4\n", "invalid YAML: "),
    ("- vocab_size: 64\n", "must hold a mapping of keys to values"),
]


@pytest.mark.parametrize("content, message", BAD_YAML, ids=range(len(BAD_YAML)))
def test_bad_yaml_file_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "point.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as err:
        load(DataConfig, path)
    text = str(err.value)
    assert text.startswith(f"config file {str(path)!r}") and message in text, text
    assert "\n" not in text and len(text) < 400


def test_echoed_values_are_short():
    """A huge value is echoed shortened (reprlib-style), however the check that rejects it is reached."""
    huge = list(range(100_000))
    for sets in (["dag=" + json.dumps([huge])],  # fail() in a section check
                 ["fixed_dag=true", "dag=" + json.dumps(huge)],  # pydantic's type error, via build()
                 ["activation=" + "x" * 1_000_000], ["x" * 100_000 + "=1"], ["fixed_h=true", "num_unique_h=" + "9" * 1000]):
        with pytest.raises(ConfigError) as err:
            load(DataConfig, sets=sets)
        assert len(str(err.value)) < 600 and "\n" not in str(err.value), str(err.value)[:300]
    assert len(short(huge)) <= MAX_ECHO and short("a\nb") == "'a\\nb'"
    with pytest.raises(ConfigError, match=r"^dag=\[\[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]\]: needs fixed_dag=true$"):
        build(DataConfig, {"dag": [huge]})


CAPS = [("vocab_size", 2**20), ("n_dims", 4096), ("n_inputs", 1000), ("chain_length", 1000),
        ("n_examples", 10_000), ("h_num_layers", 1000), ("num_unique_h", 1_000_000), ("n_sequences", 2**40)]


@pytest.mark.parametrize("field, cap", CAPS)
def test_sizes_are_capped(field, cap):
    extra = {"fixed_h": True} if field == "num_unique_h" else {}
    DataConfig(**{field: cap, **extra})  # the cap itself is allowed (validation allocates nothing)
    with pytest.raises(ConfigError, match=re.escape(f"{field}={cap + 1}: must be between 1 and {cap}")):
        build(DataConfig, {field: cap + 1, **extra})


def test_one_seed_range_for_every_command():
    assert SEED_MAX == 2**32 - 1
    for ok in (0, SEED_MAX, None):
        check_seed("seed", ok)
    for bad in (-1, SEED_MAX + 1, 10**30):
        with pytest.raises(ConfigError, match=re.escape(f"seed={bad}: must be an integer seed in [0, {SEED_MAX}]")):
            check_seed("seed", bad)
    assert DataConfig(seed=SEED_MAX, eval_seed=0).split_seed("eval") == 0
    assert DataConfig(seed=SEED_MAX - 1000).split_seed("eval") == SEED_MAX


@pytest.mark.parametrize("sets, message", [
    (["vocab_size=64", "vocab_size.x=3"], "--set 'vocab_size.x=3': vocab_size is already set to 64, which has no keys"),
    (["prompt.format=cot", "prompt.format.x=1"], "prompt.format is already set to 'cot'"),
    (["a..b=1"], "--set 'a..b=1': must look like KEY=VALUE"),
    ([".a=1"], "--set '.a=1': must look like KEY=VALUE"),
    (["=1"], "--set '=1': must look like KEY=VALUE"),
    (["dag=[1"], "--set 'dag=[1': the value: invalid YAML: "),
    (["dag=&a [1]"], "--set 'dag=&a [1]': the value: invalid YAML: anchors and aliases"),
    (["vocab_size=!!python/name:os.system"], "the value: invalid YAML: tags are not allowed"),
    (["dag={a: 1, a: 2}"], "the value: invalid YAML: duplicate key 'a'"),
])
def test_bad_set_items(sets, message):
    with pytest.raises(ConfigError) as err:
        parse_sets(sets)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_missing_field_is_named_without_echoing_the_mapping():
    from cotlab.card_schema import WorkflowConfig

    with pytest.raises(ConfigError, match=r"^experiments: required, but not given$"):
        build(WorkflowConfig, {"scale": "smoke"})
