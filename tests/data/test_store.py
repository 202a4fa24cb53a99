"""Parquet storage (docs/data.md, "Storage"): round trips, hashes, determinism, damage, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotlab.cli import main as cli_main
from cotlab.config import ConfigError, DataConfig
from cotlab.data.generate import Rows, generate_rows
from cotlab.data.store import (PARQUET_OPTIONS, DatasetError, content_hash, data_id, is_up_to_date,
                               open_dataset, rows_to_table, write_dataset)


def small(**values) -> DataConfig:
    base = dict(vocab_size=48, n_dims=4, n_inputs=4, n_parents=2, chain_length=2, n_examples=6,
                n_sequences=2500)
    return DataConfig(**{**base, **values})


TINY = dict(vocab_size=16, n_dims=2, n_inputs=2, n_parents=1, chain_length=1, n_examples=2)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cotlab.cli", *args], capture_output=True, text=True)


def same_rows(a: Rows, b: Rows) -> bool:
    return all((getattr(a, name) is None and getattr(b, name) is None)
               or np.array_equal(getattr(a, name), getattr(b, name))
               for name in ("seq_idx", "inputs", "chain", "dag", "h_ids", "cot_u"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One small dataset with every optional column (pool ids, CoT coins)."""
    cfg = small(special_tokens=True, fixed_h=True, num_unique_h=4, n_sequences=3000)
    out = tmp_path_factory.mktemp("data") / "train"
    manifest = write_dataset(out, cfg, "train")
    return cfg, out, manifest


def test_round_trip_and_manifest(written):
    cfg, out, manifest = written
    dataset = open_dataset(out)
    assert dataset.split == "train" and dataset.n_rows == 3000 and dataset.shard_rows == [3000]
    assert dataset.config == cfg.model_copy(update={"eval_seed": 1042})
    assert same_rows(dataset.read(), generate_rows(cfg, "train", 0, 3000))
    assert same_rows(dataset.read(1234, 2345), generate_rows(cfg, "train", 1234, 2345))
    assert same_rows(dataset.read_shard(0), dataset.read())
    assert np.array_equal(dataset.embedding, np.load(out / "embedding.npy"))
    assert dataset.h_pool.shape == (4, 2, 1, 4, 4) and (dataset.read().h_ids < 4).all()
    assert manifest["format"] == "cotlab-data" and manifest["data_id"] == data_id(cfg)
    assert manifest["data_id"].startswith("V48-K6-C2-M2-d4-H4-sp__")
    assert manifest["V_eff"] == 39 and manifest["special_ids"]["pad"] == 47
    assert manifest["split_seed"] == 42 and manifest["rows_per_shard"] == 65536
    assert json.loads((out / "manifest.json").read_text()) == manifest
    schema = pq.read_schema(out / "part-00000.parquet")
    assert [f.name for f in schema] == ["seq_idx", "n_inputs", "n_parents", "chain_length", "n_examples",
                                        "dag", "h_ids", "inputs", "chain", "cot_u"]
    assert schema.field("cot_u").type.value_type == pa.uint32() and schema.field("seq_idx").type == pa.int64()
    metadata = pq.ParquetFile(out / "part-00000.parquet").metadata
    assert metadata.row_group(0).num_rows == 3000 and metadata.row_group(0).column(0).compression == "ZSTD"


def test_multi_shard_dataset_reads_across_shards(tmp_path):
    cfg = DataConfig(**TINY, n_sequences=70_000)
    write_dataset(tmp_path / "d", cfg, "train")
    dataset = open_dataset(tmp_path / "d")
    assert dataset.shard_rows == [65536, 4464] and len(dataset.shards) == 2
    assert pq.ParquetFile(dataset.shards[0]).metadata.num_row_groups == 8
    assert same_rows(dataset.read(60_000, 70_000), generate_rows(cfg, "train", 60_000, 70_000))
    assert (dataset.read_shard(1).seq_idx == np.arange(65536, 70000)).all()


def test_hash_is_over_decoded_columns_not_parquet_bytes(written):
    cfg, out, manifest = written
    table = pq.read_table(out / "part-00000.parquet")
    assert content_hash(table) == manifest["shards"][0]["content_sha256"]
    assert content_hash(rows_to_table(generate_rows(cfg, "train", 0, 3000), cfg)) == content_hash(table)
    pq.write_table(table, out.parent / "other.parquet", compression="snappy", row_group_size=1000)
    assert content_hash(pq.read_table(out.parent / "other.parquet")) == content_hash(table)


def test_byte_identical_for_workers_and_chunk_sizes(tmp_path):
    cfg = small()
    manifests = {}
    for name, options in {"w1": dict(), "w2": dict(workers=2), "c7": dict(chunk_size=7)}.items():
        manifests[name] = write_dataset(tmp_path / name, cfg, "train", **options)
    blobs = {name: (tmp_path / name / "part-00000.parquet").read_bytes() for name in manifests}
    assert blobs["w1"] == blobs["w2"] == blobs["c7"]
    assert manifests["w1"] == manifests["w2"] == manifests["c7"]


def test_prefix_stability_seeds_and_splits(tmp_path):
    cfg = small()
    write_dataset(tmp_path / "long", cfg, "train")
    write_dataset(tmp_path / "short", small(n_sequences=1500), "train")
    write_dataset(tmp_path / "eval", small(n_sequences=1500), "eval")
    other = write_dataset(tmp_path / "seed7", small(seed=7), "train")
    long, short, evals = (open_dataset(tmp_path / name) for name in ("long", "short", "eval"))
    assert same_rows(long.read(0, 1500), short.read())
    assert long.manifest["data_id"] == short.manifest["data_id"] == evals.manifest["data_id"]
    assert other["content_sha256"] != long.manifest["content_sha256"]
    assert other["data_id"] != long.manifest["data_id"]
    embedding = "embedding.npy"
    assert (tmp_path / "eval" / embedding).read_bytes() == (tmp_path / "long" / embedding).read_bytes()
    assert not set(map(bytes, evals.read().inputs)) & set(map(bytes, long.read().inputs))
    assert evals.manifest["split_seed"] == 1042


def test_fixed_dag_in_every_row(tmp_path):
    manifest = write_dataset(tmp_path / "d", small(fixed_dag=True, dag=[[2, 0], [4, 1]]), "train")
    rows = open_dataset(tmp_path / "d").read()
    assert manifest["fixed_dag"] == [[0, 2], [1, 4]] and (rows.dag == np.array([[0, 2], [1, 4]])).all()


# --- a damaged dataset fails naming the file ----------------------------------------------------

@pytest.fixture
def copy(written, tmp_path):
    import shutil
    target = tmp_path / "copy"
    shutil.copytree(written[1], target)
    return target


def test_missing_shard(copy):
    (copy / "part-00000.parquet").unlink()
    with pytest.raises(DatasetError, match=r"copy/part-00000\.parquet: missing shard"):
        open_dataset(copy)


def test_truncated_shard(copy):
    shard = copy / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:len(shard.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=r"part-00000\.parquet: unreadable Parquet") as err:
        open_dataset(copy)
    assert "\n" not in str(err.value)


def test_corrupt_shard_bytes(copy):
    shard = copy / "part-00000.parquet"
    blob = bytearray(shard.read_bytes())
    middle = len(blob) // 2
    blob[middle:middle + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    shard.write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match=r"part-00000\.parquet: "):
        open_dataset(copy)


def test_shard_with_other_content(copy, written):
    cfg = written[0]
    rows = open_dataset(copy).read()
    rows.chain[17, 3, 1] = (rows.chain[17, 3, 1] + 1) % cfg.n_usable
    pq.write_table(rows_to_table(rows, cfg), copy / "part-00000.parquet", **PARQUET_OPTIONS)
    with pytest.raises(DatasetError, match=r"part-00000\.parquet: content hash does not match"):
        open_dataset(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(n_rows=2999), "n_rows=2999 does not match"),
    (lambda m: m["config"].update(activation="relu"), "data_id="),
    (lambda m: m["shards"][0].update(content_sha256="0" * 64), "content_sha256="),
    (lambda m: m["shards"][0].update(rows=2000), "shard row counts \\[2000\\] do not split"),
    (lambda m: m.update(format="other"), "not a cotlab-data manifest"),
    (lambda m: m.update(generator_version=0), "generator_version 0"),
    (lambda m: m.pop("shards"), "malformed"),
])
def test_manifest_mismatch(copy, edit, message):
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"copy/manifest\.json: .*" + message):
        open_dataset(copy)


def test_changed_npy_files(copy):
    np.save(copy / "h_pool.npy", np.zeros((4, 2, 1, 4, 4)))
    with pytest.raises(DatasetError, match=r"h_pool\.npy: sha256 does not match"):
        open_dataset(copy)
    (copy / "embedding.npy").unlink()
    with pytest.raises(DatasetError, match=r"embedding\.npy: missing"):
        open_dataset(copy)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset directory"):
        open_dataset(tmp_path / "nothing")
    with pytest.raises(DatasetError, match=r"manifest\.json: missing"):
        open_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable"):
        open_dataset(tmp_path)


# --- atomic writes ---------------------------------------------------------------------------

def test_replace_refuse_and_clean_stale_temps(tmp_path):
    out = tmp_path / "d"
    write_dataset(out, small(n_sequences=100), "train")
    assert is_up_to_date(out, small(n_sequences=100), "train")
    assert not is_up_to_date(out, small(n_sequences=101), "train")
    stale = tmp_path / "d.tmp-999999999"  # a pid that cannot be running
    stale.mkdir()
    write_dataset(out, small(n_sequences=200, activation="relu"), "train")
    assert open_dataset(out).n_rows == 200 and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a cotlab dataset"):
        write_dataset(foreign, small(n_sequences=100), "train")
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_sigkill_mid_generation_leaves_nothing_that_loads(tmp_path):
    out = tmp_path / "train"
    command = [sys.executable, "-m", "cotlab.cli", "generate", "--out", str(out), "--split", "train",
               "--set", "vocab_size=128", "--set", "n_examples=20", "--set", "n_sequences=160000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_shard = tmp_path / f"train.tmp-{process.pid}" / "part-00000.parquet"
    while not first_shard.exists():  # one of three shards written: well inside the run
        assert process.poll() is None, "generate ended before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    with pytest.raises(DatasetError):
        open_dataset(out)
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert open_dataset(out).n_rows == 160_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # the killed run's temp dir is gone


def test_cli_is_a_no_op_when_up_to_date(tmp_path):
    args = ["generate", "--out", str(tmp_path / "d"), "--split", "eval", "--set", "n_sequences=50"]
    assert cli(*args).returncode == 0
    mtime = os.stat(tmp_path / "d" / "manifest.json").st_mtime_ns
    again = cli(*args)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert os.stat(tmp_path / "d" / "manifest.json").st_mtime_ns == mtime


# --- what --out may be; OS errors while writing ------------------------------------------------

@pytest.mark.parametrize("out, message", [
    ("afile/x", "afile' is not a directory"),
    ("afile", "exists and is not a directory"),
    ("/proc/x", "cannot create a directory in '/proc'"),
    ("/sys/x", "cannot create a directory in '/sys'"),
    (".", "is or holds the working directory"),
    ("..", "is or holds the working directory"),
    ("{cwd}", "is or holds the working directory"),
])
def test_out_that_cannot_become_a_dataset(tmp_path, monkeypatch, out, message):
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(ConfigError) as err:
        write_dataset(Path(out.format(cwd=work)), small(n_sequences=10), "train")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"--out={out.format(cwd=work)!r}: ")
    assert [p.name for p in tmp_path.iterdir()] == ["work"]  # nothing written, not even a temp directory
    assert [p.name for p in work.iterdir()] == ["afile"]


@pytest.mark.parametrize("target, error", [
    ("cotlab.data.store.pq.write_table", OSError(errno.ENOSPC, "No space left on device", "part-00000.parquet")),
    ("cotlab.data.store.np.save", PermissionError(errno.EACCES, "Permission denied", "embedding.npy")),
])
def test_os_error_while_writing_leaves_nothing_half_written(tmp_path, monkeypatch, target, error):
    out = tmp_path / "d"
    write_dataset(out, small(n_sequences=100), "train")
    before = open_dataset(out).manifest

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(target, broken)
    with pytest.raises(ConfigError) as err:
        write_dataset(out, small(n_sequences=200), "train")
    assert str(err.value) == f"--out={str(out)!r}: cannot write {error.filename}: {error.strerror}"
    assert [p.name for p in tmp_path.iterdir()] == ["d"] and open_dataset(out).manifest == before


def test_cli_replaces_only_a_dataset_of_its_own_point_and_split(tmp_path, capsys):
    out = tmp_path / "d"

    def generate(split: str, *sets: str) -> int:
        args = ["generate", "--out", str(out), "--split", split, "--set", "vocab_size=16", "--set", "n_examples=2"]
        return cli_main([*args, *(item for s in sets for item in ("--set", s))])

    assert generate("train", "n_sequences=20") == 0
    first = open_dataset(out).manifest["data_id"]
    assert generate("train", "n_sequences=30") == 0 and open_dataset(out).n_rows == 30  # resized: replaced
    capsys.readouterr()
    other = data_id(DataConfig(vocab_size=16, n_examples=2, seed=7))
    for split, sets, ours in (("train", ["seed=7"], f"{other} train"), ("eval", [], f"{first} eval")):
        assert generate(split, *sets) == 2
        err = capsys.readouterr().err
        assert err == (f"cotlab generate: error: --out={str(out)!r}: holds another cotlab dataset "
                       f"({first} train), not {ours}; --force replaces it\n")
        assert open_dataset(out).manifest["data_id"] == first
    assert cli_main(["generate", "--out", str(out), "--split", "train", "--set", "vocab_size=16", "--set",
                     "n_examples=2", "--set", "seed=7", "--force"]) == 0
    assert open_dataset(out).manifest["data_id"] == other
