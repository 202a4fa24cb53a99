"""The verdict cache of open_dataset (.verified.json, docs/data.md "Storage"): skips re-hashing an
unchanged dataset, never hides a changed shard, survives garbage and read-only directories."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time

import pytest

from cotlab.config import DataConfig
from cotlab.data import store
from cotlab.data.store import VERIFIED_FILE, DatasetError, open_dataset, write_dataset

TINY = dict(vocab_size=16, n_dims=2, n_inputs=2, n_parents=1, chain_length=1, n_examples=2)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """Two shards, written once per module."""
    out = tmp_path_factory.mktemp("cache") / "train"
    write_dataset(out, DataConfig(**TINY, n_sequences=70_000), "train")
    return out


def age(directory, seconds: float = 600) -> None:
    """Backdate every shard's mtime, as for a dataset generated a while ago (RACY_NS)."""
    then = time.time_ns() - int(seconds * 1e9)
    for shard in directory.glob("part-*.parquet"):
        os.utime(shard, ns=(then, then))


@pytest.fixture
def data(original, tmp_path):
    target = tmp_path / "train"
    shutil.copytree(original, target)
    age(target)
    return target


@pytest.fixture
def hashed(monkeypatch):
    """Shards whose content hash open_dataset computed, in order."""
    calls = []
    content_hash = store.content_hash

    def counting(table):
        calls.append(table.num_rows)
        return content_hash(table)

    monkeypatch.setattr(store, "content_hash", counting)
    return calls


def flip_a_byte(shard) -> None:
    blob = bytearray(shard.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    shard.write_bytes(bytes(blob))


def test_second_open_does_not_hash(data, hashed):
    assert not (data / VERIFIED_FILE).exists()
    first = open_dataset(data)
    assert hashed == [65536, 4464] and (data / VERIFIED_FILE).is_file()
    record = json.loads((data / VERIFIED_FILE).read_text())
    assert record["content_sha256"] == first.manifest["content_sha256"]
    assert [s["file"] for s in record["shards"]] == ["part-00000.parquet", "part-00001.parquet"]
    second = open_dataset(data)
    assert hashed == [65536, 4464]  # nothing re-hashed
    assert second.read(65_530, 65_540).seq_idx.tolist() == list(range(65_530, 65_540))
    open_dataset(data, cache=False)  # always re-hashes, on request
    assert len(hashed) == 4


def test_a_verdict_taken_right_after_writing_is_not_trusted(original, tmp_path, hashed):
    """A shard changed again within its mtime tick after it was read would keep its key (RACY_NS)."""
    fresh = tmp_path / "fresh"
    shutil.copytree(original, fresh)
    for shard in fresh.glob("part-*.parquet"):
        os.utime(shard)  # just written
    open_dataset(fresh)
    open_dataset(fresh)
    assert len(hashed) == 4  # both opens hashed
    age(fresh)
    open_dataset(fresh)
    open_dataset(fresh)
    assert len(hashed) == 6  # the first open after that wrote a trusted verdict


def test_a_changed_byte_is_detected(data, hashed):
    open_dataset(data)
    flip_a_byte(data / "part-00001.parquet")  # the write moves mtime
    with pytest.raises(DatasetError, match=r"part-00001\.parquet: "):
        open_dataset(data)


def test_changed_keys_rehash_and_refresh(data, hashed):
    open_dataset(data)
    age(data, seconds=300)  # touched to another time, same bytes
    open_dataset(data)
    assert len(hashed) == 4
    open_dataset(data)
    assert len(hashed) == 4  # refreshed
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["versions"]["numpy"] = "0.0"  # another manifest (still a valid one)
    (data / "manifest.json").write_text(json.dumps(manifest))
    open_dataset(data)
    assert len(hashed) == 6


def test_a_replaced_shard_with_the_old_size_and_mtime_is_detected(data):
    open_dataset(data)
    shard = data / "part-00000.parquet"
    info = shard.stat()
    replacement = data / "replacement"
    shutil.copyfile(shard, replacement)
    flip_a_byte(replacement)
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(replacement, shard)  # same size and mtime, another inode
    assert (shard.stat().st_size, shard.stat().st_mtime_ns) == (info.st_size, info.st_mtime_ns)
    with pytest.raises(DatasetError, match=r"part-00000\.parquet: "):
        open_dataset(data)


def test_an_in_place_edit_that_restores_the_mtime_needs_cache_false(data):
    """The documented limit: same size, mtime and inode is trusted; cache=False still re-hashes."""
    open_dataset(data)
    shard = data / "part-00000.parquet"
    info = shard.stat()
    flip_a_byte(shard)
    os.utime(shard, ns=(info.st_atime_ns, info.st_mtime_ns))
    open_dataset(data)
    with pytest.raises(DatasetError, match=r"part-00000\.parquet: "):
        open_dataset(data, cache=False)


def garbage(data) -> list[bytes]:
    record = json.loads((data / VERIFIED_FILE).read_text())
    wrong_size = json.loads(json.dumps(record))
    wrong_size["shards"][0]["size"] += 1
    wrong_manifest = {**record, "manifest_sha256": "0" * 64}
    float_time = {**record, "verified_at_ns": float(record["verified_at_ns"])}
    string_time = {**record, "verified_at_ns": str(record["verified_at_ns"])}
    extra_key = {**record, "note": 1}
    missing_key = {k: v for k, v in record.items() if k != "shards"}
    shards_not_a_list = {**record, "shards": {"file": "part-00000.parquet"}}
    return [b"", b"\x00\xff\xfe garbage", b"{", b"[]", b"null", b'"text"', b"{}", b"[" * 100_000,
            *(json.dumps(r).encode() for r in (wrong_size, wrong_manifest, float_time, string_time,
                                               extra_key, missing_key, shards_not_a_list))]


def test_garbage_cache_files_are_ignored_and_replaced(data, hashed):
    open_dataset(data)
    for i, blob in enumerate(garbage(data)):
        (data / VERIFIED_FILE).write_bytes(blob)
        open_dataset(data)
        assert len(hashed) == 2 * (i + 2), blob[:40]  # re-hashed...
        open_dataset(data)
        assert len(hashed) == 2 * (i + 2), blob[:40]  # ...and the verdict refreshed


def test_a_garbage_verdict_never_hides_a_damaged_shard(data):
    open_dataset(data)
    good = (data / VERIFIED_FILE).read_bytes()
    flip_a_byte(data / "part-00000.parquet")
    for blob in [good, *garbage(data)]:
        (data / VERIFIED_FILE).write_bytes(blob)
        with pytest.raises(DatasetError, match=r"part-00000\.parquet: "):
            open_dataset(data)


def test_a_cache_path_that_is_a_directory(data, hashed):
    (data / VERIFIED_FILE).mkdir()
    open_dataset(data)
    open_dataset(data)
    assert len(hashed) == 4 and (data / VERIFIED_FILE).is_dir()


@pytest.mark.parametrize("how", ["chmod", "erofs"])
def test_read_only_directory_still_verifies(data, hashed, monkeypatch, how):
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        data.chmod(0o555)
    else:
        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(data / VERIFIED_FILE))
        monkeypatch.setattr(store, "write_atomic", read_only)
    try:
        before = sorted(p.name for p in data.iterdir())
        assert open_dataset(data).n_rows == 70_000
        assert open_dataset(data).n_rows == 70_000
        assert len(hashed) == 4  # no cache, every open verifies
        assert sorted(p.name for p in data.iterdir()) == before  # nothing written, no temp file
        if how == "erofs":
            flip_a_byte(data / "part-00001.parquet")
            with pytest.raises(DatasetError, match=r"part-00001\.parquet: "):
                open_dataset(data)
    finally:
        data.chmod(0o755)


def test_verify_false_and_cache_false_write_nothing(data, hashed):
    open_dataset(data, verify=False)
    open_dataset(data, cache=False)
    assert not (data / VERIFIED_FILE).exists() and len(hashed) == 2


def test_regenerating_drops_the_verdict(tmp_path):
    out = tmp_path / "d"
    write_dataset(out, DataConfig(**TINY, n_sequences=100), "train")
    age(out)
    open_dataset(out)
    assert (out / VERIFIED_FILE).is_file()
    write_dataset(out, DataConfig(**TINY, n_sequences=200), "train")
    assert not (out / VERIFIED_FILE).exists() and open_dataset(out).n_rows == 200
