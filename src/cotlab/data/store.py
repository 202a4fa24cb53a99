"""One split of a data point on disk (docs/data.md ("Storage")): Parquet shards + manifest.json.

Layout of a split directory DIR:
    manifest.json       written last; without it the directory is not a dataset
    embedding.npy       E, (V, d) float64 (identical in the train and eval directories)
    h_pool.npy          the processor pool, when the config has one
    part-00000.parquet  65,536 rows per shard in canonical row order, one row per sequence

Writes are atomic: everything goes into the sibling DIR.tmp-<pid>, the manifest last, and the
finished directory is renamed to DIR, so a killed run (or an OS error: no space, no permission)
never leaves a DIR that loads. Rerunning `cotlab generate` removes temp directories of dead runs.
An existing complete DIR with the same data_id, split and row count is left alone (nothing to do);
`write_dataset` replaces any other cotlab dataset at DIR (`cotlab generate` one of the same data_id
and split, others with --force); a DIR that is not a cotlab dataset is refused.

Hashes are over the decoded columns, not the Parquet bytes (docs/data.md ("Storage")): a shard's
content_sha256 is SHA-256 over its columns in schema order, each as the int64 list offsets (list
columns only, starting at 0) then the little-endian values; the dataset content_sha256 is SHA-256
over the concatenated hex digests of its shards, in order. `open_dataset` verifies all of them.

A successful verification is remembered in DIR/.verified.json (written atomically, skipped when DIR
is read-only): the SHA-256 of the manifest's content and every shard's (size, mtime_ns, inode).
A later open trusts it, without re-hashing, only when all of these match exactly and every shard
was last modified RACY_NS before that verification began; anything else (a changed, replaced or
touched shard, another manifest, a garbled cache file) re-hashes everything and refreshes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import cotlab
from cotlab.atomic import check_creatable, remove_stale_temps, replace_dir, write_atomic
from cotlab.config import (GENERATOR_VERSION, SHAPE_FIELDS, ConfigError, DataConfig, build, data_id, read_json,
                           clip, resolved_data, short)
from cotlab.data.generate import (ABSENT, BLOCK_SIZE, Rows, check_run_options, empty_rows,
                                  global_objects, iter_rows, present_masks)

FORMAT = "cotlab-data"
SCHEMA_VERSION = 1
ROWS_PER_SHARD = 65_536
ROW_GROUP_ROWS = 8_192
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, row_group_size=ROW_GROUP_ROWS)
VERIFIED_FILE = ".verified.json"  # the cached verdict of open_dataset (module docstring)
VERIFIED_FORMAT = "cotlab-verified"
# A shard modified less than this before a verification began may have changed again within the same
# mtime tick (1-2 s on some network filesystems) after it was read; such a verdict is not trusted.
# Also covers clock skew between this machine and the file server.
RACY_NS = 5_000_000_000


class DatasetError(ConfigError):
    """A dataset directory that is missing, incomplete or does not match its manifest; the one-line
    message starts with the offending file."""


def arrow_schema(cfg: DataConfig) -> pa.Schema:
    """The shard schema of docs/data.md ("Storage") (cot_u only with special tokens)."""
    columns = [("seq_idx", pa.int64()), ("n_inputs", pa.int32()), ("n_parents", pa.int32()),
               ("chain_length", pa.int32()), ("n_examples", pa.int32()), ("dag", pa.list_(pa.int32())),
               ("h_ids", pa.list_(pa.int32())), ("inputs", pa.list_(pa.int32())),
               ("chain", pa.list_(pa.int32()))]
    if cfg.special_tokens:
        columns.append(("cot_u", pa.list_(pa.uint32())))
    return pa.schema([pa.field(name, kind, nullable=False) for name, kind in columns])


def rows_to_table(rows: Rows, cfg: DataConfig) -> pa.Table:
    """Rows -> Arrow table in the shard schema; every list is one row's own array flattened C-order
    (mixed shapes: only its present entries, `present_masks`)."""
    n = len(rows)
    shapes = rows.shapes()  # (n, 4) N, M, C, K
    masks = present_masks(shapes, *cfg.padded_dims) if rows.shape is not None else {}

    def as_list(values: np.ndarray | None, kind: pa.DataType, mask: str) -> pa.Array:
        if values is None:
            return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], kind))
        present = masks.get(mask)
        flat = values.reshape(-1) if present is None else values[present]
        widths = np.full(n, int(np.prod(values.shape[1:]))) if present is None else present.reshape(n, -1).sum(axis=1)
        offsets = pa.array(np.concatenate([[0], np.cumsum(widths)]).astype(np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(flat, kind))

    arrays = [pa.array(rows.seq_idx, pa.int64()), *(pa.array(shapes[:, i].astype(np.int32)) for i in range(4)),
              as_list(rows.dag, pa.int32(), "dag"), as_list(rows.h_ids, pa.int32(), "steps"),
              as_list(rows.inputs, pa.int32(), "inputs"), as_list(rows.chain, pa.int32(), "chain")]
    if cfg.special_tokens:
        arrays.append(as_list(rows.cot_u, pa.uint32(), "examples"))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(cfg))


def table_to_rows(table: pa.Table, cfg: DataConfig) -> Rows:
    """Arrow table in the shard schema -> Rows with (n, K, N)-style shapes (writable copies); mixed
    shapes are padded to the largest (`Rows`)."""
    n = table.num_rows
    K, N, M, C = cfg.padded_dims

    def values(name: str, *shape: int) -> np.ndarray:
        chunks = table.column(name).chunks
        flat = [np.asarray(chunk.flatten() if shape else chunk) for chunk in chunks]
        if not cfg.mixed_shapes or not shape:
            return np.concatenate(flat).reshape(n, *shape) if flat else np.zeros((0, *shape), np.int32)
        out = np.full((n, *shape), 0 if name == "cot_u" else ABSENT,
                      np.uint32 if name == "cot_u" else np.int32)
        out[masks[MASK_OF[name]]] = np.concatenate(flat) if flat else []
        return out

    shape = None
    if cfg.mixed_shapes:
        shape = np.stack([values(name) for name in SHAPE_FIELDS], axis=1).astype(np.int32)  # (n, 4)
        masks = present_masks(shape, K, N, M, C)
    return Rows(seq_idx=values("seq_idx").astype(np.int64, copy=False),
                inputs=values("inputs", K, N), chain=values("chain", K, C), dag=values("dag", C, M),
                h_ids=None if cfg.pool_size is None else values("h_ids", C),
                cot_u=values("cot_u", K) if cfg.special_tokens else None, shape=shape)


MASK_OF = {"inputs": "inputs", "chain": "chain", "dag": "dag", "h_ids": "steps", "cot_u": "examples"}
"""The `present_masks` entry of each list column."""


def content_hash(table: pa.Table) -> str:
    """SHA-256 of a shard's decoded columns (see the module docstring), independent of encoding."""
    digest = hashlib.sha256()
    for column in table.columns:
        chunks = column.chunks
        if pa.types.is_list(column.type):
            base = 0  # offsets run on across chunks, as if the column were one array
            digest.update(np.zeros(1, "<i8"))
            for chunk in chunks:
                offsets = np.asarray(chunk.offsets).astype("<i8")
                digest.update(offsets[1:] - offsets[0] + base)
                base += int(offsets[-1] - offsets[0])
            chunks = [chunk.flatten() for chunk in chunks]
        for chunk in chunks:
            array = np.asarray(chunk)
            digest.update(np.ascontiguousarray(array, array.dtype.newbyteorder("<")))
    return digest.hexdigest()


def dataset_hash(shard_hashes: list[str]) -> str:
    return hashlib.sha256("".join(shard_hashes).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _shards(pieces: Iterator[Rows]) -> Iterator[Rows]:
    """Regroup consecutive row pieces into shards of ROWS_PER_SHARD rows (the last may be short)."""
    buffer: list[Rows] = []
    held = 0
    for piece in pieces:
        buffer.append(piece)
        held += len(piece)
        while held >= ROWS_PER_SHARD:
            rows = Rows.concat(buffer)
            yield rows.take(slice(0, ROWS_PER_SHARD))
            rest = rows.take(slice(ROWS_PER_SHARD, None))
            buffer, held = [rest], len(rest)
    if held:
        yield Rows.concat(buffer)


def check_out_dir(out: Path) -> None:
    """Refuse, before any work, an `out` that cannot become a dataset directory: one holding the working
    directory, one that cannot be created (below a file, /proc, no permission), or not a cotlab dataset."""
    out, where = Path(out), f"--out={short(str(out))}"
    if out.name in ("", ".", "..") or Path.cwd().is_relative_to(out.resolve()):
        raise ConfigError(f"{where}: is or holds the working directory, which the finished dataset "
                          "would replace; name a directory for it (e.g. --out data/train)")
    check_creatable(where, out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{where}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and cotlab_manifest(out) is None:
        raise ConfigError(f"{where}: exists and is not a cotlab dataset (no cotlab "
                          "manifest.json); remove it or choose another directory")


def cotlab_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the cotlab dataset at `path` (complete or not, unverified), or None."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        return manifest if manifest.get("format") == FORMAT else None
    except (OSError, ValueError, AttributeError):
        return None


def is_up_to_date(out: Path, cfg: DataConfig, split: str) -> bool:
    """True when `out` holds a complete, verified dataset of exactly this config and split."""
    if not (out / "manifest.json").is_file():
        return False
    try:
        dataset = open_dataset(out)
    except DatasetError:
        return False
    return (dataset.split == split and dataset.manifest["data_id"] == data_id(cfg)
            and dataset.n_rows == cfg.n_sequences)


def write_dataset(out: str | Path, cfg: DataConfig, split: str, *, chunk_size: int = 1024,
                  device: str = "cpu", workers: int = 1,
                  progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Generate `split` of `cfg` (cfg.n_sequences rows) into the directory `out`, atomically.

    `progress(n)` is called after every n rows generated. Returns the manifest.
    """
    out = Path(out)
    split_seed = cfg.split_seed(split)
    check_run_options(chunk_size, device, workers)
    check_out_dir(out)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        manifest = _write_split(tmp, cfg, split, split_seed, chunk_size, device, workers, progress)
        replace_dir(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # ENOSPC, EACCES, EROFS, ...: nothing half-written is left
            reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"--out={short(str(out))}: cannot write {exc.filename or tmp}: "
                              f"{clip(reason)}") from None
        raise
    return manifest


def _write_split(tmp: Path, cfg: DataConfig, split: str, split_seed: int, chunk_size: int, device: str,
                 workers: int, progress: Callable[[int], Any] | None) -> dict[str, Any]:
    """Everything of write_dataset inside the temp directory; manifest.json last."""
    glob = global_objects(cfg)
    files = {"embedding": _save_npy(tmp / "embedding.npy", glob.embedding)}
    if glob.h_pool is not None:
        files["h_pool"] = _save_npy(tmp / "h_pool.npy", glob.h_pool)
    pieces = iter_rows(cfg, split, 0, cfg.n_sequences, chunk_size=chunk_size, device=device,
                       workers=workers)
    if progress is not None:
        pieces = (_report(piece, progress) for piece in pieces)
    shards = []
    # Parquet encoding and hashing (both release the GIL) overlap the next shard's generation in one
    # writer thread; at most two shards wait for it, so memory stays within preflight's three shards.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future] = deque()
        for i, rows in enumerate(_shards(pieces)):
            if len(pending) == 2:
                shards.append(pending.popleft().result())
            pending.append(writer.submit(_write_shard, tmp, i, rows, cfg))
        shards.extend(future.result() for future in pending)

    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "generator_version": GENERATOR_VERSION,
        "versions": {"cotlab": cotlab.__version__, "numpy": np.__version__, "pyarrow": pa.__version__},
        "data_id": data_id(cfg),
        "split": split,
        "seed": cfg.seed,
        "split_seed": split_seed,
        "n_rows": cfg.n_sequences,
        "block_size": BLOCK_SIZE,
        "rows_per_shard": ROWS_PER_SHARD,
        "V_eff": cfg.n_usable,
        "special_ids": cfg.special_ids(),
        "fixed_dag": None if glob.fixed_dag is None else glob.fixed_dag.tolist(),
        "config": resolved_data(cfg),
        "files": files,
        "shards": shards,
        "content_sha256": dataset_hash([s["content_sha256"] for s in shards]),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_shard(tmp: Path, i: int, rows: Rows, cfg: DataConfig) -> dict[str, Any]:
    """Shard i of a split: its Parquet file in tmp and its manifest entry."""
    table = rows_to_table(rows, cfg)
    pq.write_table(table, tmp / shard_name(i), **PARQUET_OPTIONS)
    return {"file": shard_name(i), "rows": len(rows), "content_sha256": content_hash(table)}


def _report(piece: Rows, progress: Callable[[int], Any]) -> Rows:
    progress(len(piece))
    return piece


def _save_npy(path: Path, array: np.ndarray) -> dict[str, str]:
    np.save(path, array, allow_pickle=False)
    return {"file": path.name, "sha256": file_sha256(path)}


class Dataset:
    """A verified split directory. Rows are read lazily, shard by shard (row groups of 8,192)."""

    def __init__(self, path: Path, manifest: dict[str, Any], config: DataConfig, embedding: np.ndarray,
                 h_pool: np.ndarray | None):
        self.path = path
        self.manifest = manifest
        self.config = config
        self.split: str = manifest["split"]
        self.n_rows: int = manifest["n_rows"]
        self.embedding = embedding  # (V, d) float64
        self.h_pool = h_pool
        self.shards = [path / shard["file"] for shard in manifest["shards"]]
        self.shard_rows: list[int] = [shard["rows"] for shard in manifest["shards"]]
        self._first_row = np.concatenate([[0], np.cumsum(self.shard_rows)])

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, split={self.split!r}, n_rows={self.n_rows})"

    def read_shard(self, i: int) -> Rows:
        """All rows of shard i."""
        return table_to_rows(pq.read_table(self.shards[i]), self.config)

    def read(self, start: int = 0, stop: int | None = None) -> Rows:
        """Rows [start, stop) in canonical order, reading only the row groups that hold them."""
        stop = self.n_rows if stop is None else stop
        if not 0 <= start <= stop <= self.n_rows:
            raise ValueError(f"rows [{start}, {stop}) outside the {self.n_rows} rows of {self.path}")
        parts = []
        for i in range(len(self.shards)):
            lo = max(start, self._first_row[i]) - self._first_row[i]
            hi = min(stop, self._first_row[i + 1]) - self._first_row[i]
            if lo >= hi:
                continue
            groups = list(range(lo // ROW_GROUP_ROWS, -(-hi // ROW_GROUP_ROWS)))
            table = pq.ParquetFile(self.shards[i]).read_row_groups(groups)
            first = groups[0] * ROW_GROUP_ROWS
            parts.append(table_to_rows(table.slice(lo - first, hi - lo), self.config))
        return Rows.concat(parts) if parts else empty_rows(self.config)


def _load_npy(path: Path, expected: dict[str, str] | None, shape: tuple[int, ...]) -> np.ndarray:
    if expected is None or expected.get("file") != path.name:
        raise DatasetError(f"{path.parent / 'manifest.json'}: no entry for {path.name}")
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    if file_sha256(path) != expected.get("sha256"):
        raise DatasetError(f"{path}: sha256 does not match the manifest (file changed or corrupt)")
    array = np.load(path, allow_pickle=False)
    if array.shape != shape or array.dtype != np.float64:
        raise DatasetError(f"{path}: holds {array.dtype} {array.shape}, expected float64 {shape}")
    return array


def open_dataset(path: str | Path, *, verify: bool = True, cache: bool = True) -> Dataset:
    """Open a split directory, checking the manifest, the .npy files and (verify=True) every shard:
    present, readable, the right schema and row count, and the recorded content hash. Any problem
    raises DatasetError naming the file. verify=False skips re-hashing the shards. With cache=True
    a verdict in .verified.json that still matches every shard's (size, mtime_ns, inode) replaces
    the re-hashing, and a full verification writes one (module docstring); cache=False always
    re-hashes and leaves the cache file alone."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset directory")
    if not manifest_path.is_file():
        raise DatasetError(f"{manifest_path}: missing; {path} is not a complete dataset "
                           "(interrupted `cotlab generate`? rerun it)")
    manifest = read_json(manifest_path, DatasetError)
    cfg = _check_manifest(manifest, manifest_path)
    C, L, d = cfg.largest("chain_length"), cfg.h_num_layers, cfg.n_dims
    embedding = _load_npy(path / "embedding.npy", manifest["files"].get("embedding"), (cfg.vocab_size, d))
    h_pool = None
    if cfg.pool_size is not None:
        entry = (C, L, d, d) if cfg.h_pool_mode == "per_sequence" else (L, d, d)
        h_pool = _load_npy(path / "h_pool.npy", manifest["files"].get("h_pool"), (cfg.pool_size, *entry))
    started = time.time_ns()
    keys = [_shard_key(path / shard["file"], shard["rows"]) for shard in manifest["shards"]]
    if verify:
        record = _verified_record(manifest, keys, started)
        if not (cache and _trusted(path / VERIFIED_FILE, record)):
            _verify_shards(path, manifest, cfg)
            if cache and [_shard_key(path / s["file"], s["rows"]) for s in manifest["shards"]] == keys:
                _write_verified(path / VERIFIED_FILE, record)
    return Dataset(path, manifest, cfg, embedding, h_pool)


def _shard_key(file: Path, rows: int) -> dict[str, Any]:
    """What the verdict cache compares for a shard; DatasetError when the shard is missing."""
    try:
        info = file.stat()
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise DatasetError(f"{file}: missing shard ({rows} rows listed in the manifest)")
    return {"file": file.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "inode": info.st_ino}


def _verified_record(manifest: dict[str, Any], keys: list[dict[str, Any]], started: int) -> dict[str, Any]:
    content = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return {"format": VERIFIED_FORMAT, "manifest_sha256": hashlib.sha256(content).hexdigest(),
            "content_sha256": manifest["content_sha256"], "verified_at_ns": started, "shards": keys}


def _trusted(cache_path: Path, record: dict[str, Any]) -> bool:
    """True when the cache file holds a verdict for exactly this manifest and these shard keys, taken
    long enough after every shard's last modification (RACY_NS). Garbage of any kind is False."""
    try:
        cached = json.loads(cache_path.read_bytes())
        if not isinstance(cached, dict) or set(cached) != set(record):
            return False
        verified_at = cached["verified_at_ns"]
        if type(verified_at) is not int:
            return False
        same = all(cached[key] == record[key] for key in record if key != "verified_at_ns")
        return same and all(key["mtime_ns"] <= verified_at - RACY_NS for key in record["shards"])
    except (OSError, ValueError, RecursionError):
        return False


def _write_verified(cache_path: Path, record: dict[str, Any]) -> None:
    """Best effort: a read-only or full directory just gets no cache."""
    try:
        write_atomic(cache_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    except OSError:
        pass


def _verify_shards(path: Path, manifest: dict[str, Any], cfg: DataConfig) -> None:
    """Read every shard: readable Parquet, the schema of this config, the listed rows and content hash."""
    schema = arrow_schema(cfg)
    for shard in manifest["shards"]:
        file = path / shard["file"]
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"{file}: unreadable Parquet (truncated or corrupt): {reason}") from None
        if not table.schema.equals(schema):
            raise DatasetError(f"{file}: schema differs from the one for this config")
        if table.num_rows != shard["rows"]:
            raise DatasetError(f"{file}: holds {table.num_rows} rows, the manifest lists {shard['rows']}")
        if content_hash(table) != shard["content_sha256"]:
            raise DatasetError(f"{file}: content hash does not match the manifest (corrupt or replaced)")


def _check_manifest(manifest: Any, manifest_path: Path) -> DataConfig:
    """Internal consistency of a manifest; returns its DataConfig."""
    def bad(what: str) -> DatasetError:
        return DatasetError(f"{manifest_path}: {what}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise bad(f"schema_version {manifest.get('schema_version')!r}; this cotlab reads {SCHEMA_VERSION}")
    if manifest.get("generator_version") != GENERATOR_VERSION:
        raise bad(f"made by generator_version {manifest.get('generator_version')!r}; this cotlab "
                  f"generates version {GENERATOR_VERSION}: regenerate the dataset")
    try:
        cfg = build(DataConfig, manifest["config"])
        shards = manifest["shards"]
        shard_rows = [shard["rows"] for shard in shards]
        checks = {
            "data_id": data_id(cfg),
            "split_seed": cfg.split_seed(manifest["split"]),
            "n_rows": cfg.n_sequences,
            "V_eff": cfg.n_usable,
            "seed": cfg.seed,
            "content_sha256": dataset_hash([shard["content_sha256"] for shard in shards]),
        }
        files = manifest["files"]
    except (KeyError, TypeError, ConfigError) as exc:
        raise bad(f"malformed ({type(exc).__name__}: {exc})") from None
    for key, expected in checks.items():
        if manifest.get(key) != expected:
            raise bad(f"{key}={manifest.get(key)!r} does not match its data/config (expected {expected!r})")
    if not isinstance(files, dict):
        raise bad("malformed files entry")
    n = cfg.n_sequences
    if shard_rows != [min(ROWS_PER_SHARD, n - first) for first in range(0, n, ROWS_PER_SHARD)]:
        raise bad(f"shard row counts {shard_rows} do not split n_rows={n} into shards of {ROWS_PER_SHARD}")
    if [shard.get("file") for shard in shards] != [shard_name(i) for i in range(len(shards))]:
        raise bad("shard file names are not part-00000.parquet, part-00001.parquet, ...")
    return cfg
