"""Checks of a `cotlab generate` job before any work: what it would replace, and whether it fits.

A job replaces only a dataset of its own data point and split (same data_id and split, any row
count) unless --force. Its size is estimated from the config and checked: the memory it holds at
once against --max-memory (default: this machine's RAM), the disk it needs at least against the
free space where it writes. The estimates are there to refuse a job that cannot finish (a typo
such as n_dims=40960, a pool of a million 4096 x 4096 processors, n_sequences=10**12), not to size
jobs precisely:

- memory: E and the processor pool in every process (the workers and the parent); the draws of
  every task in flight (1, or 2 per worker: whole-block DAG keys and inputs, chunk-size rows of
  processor weights, a CPU tile's gathered parent embeddings; with per-sequence shapes one shape's
  whole-block draws at a time, and the rows kept of them); with --device cuda, the draws of one GPU
  tile in the parent (`generate.gpu_tile_rows`, and their joined copy); a shard of rows being
  written (about three copies);
- disk, a lower bound: input tokens are uniform, so no compression stores one in fewer than
  log2(V_eff) bits; plus E and the pool in float64. The old dataset at --out is removed only
  after the new one is complete, so it is not counted as free.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from cotlab.config import SHAPE_FIELDS, ConfigError, DataConfig, clip, data_id, short
from cotlab.data.generate import BLOCK_SIZE, gpu_tile_rows, tile_rows
from cotlab.atomic import existing_parent
from cotlab.data.store import ROWS_PER_SHARD, cotlab_manifest

GIB = 2**30


def size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:,.1f} GiB" if n_bytes >= GIB / 10 else f"{n_bytes / 2**20:,.1f} MiB"


def check_replaces_only_itself(out: Path, cfg: DataConfig, split: str) -> None:
    """Refuse to replace a cotlab dataset of another data point or split at `out` (no --force)."""
    manifest = cotlab_manifest(out)
    if manifest is None:
        return
    theirs, ours = (manifest.get("data_id"), manifest.get("split")), (data_id(cfg), split)
    if theirs != ours:
        raise ConfigError(f"--out={short(str(out))}: holds another cotlab dataset ({clip(str(theirs[0]))} "
                          f"{clip(str(theirs[1]))}), not {ours[0]} {ours[1]}; --force replaces it")


def _pool_floats(cfg: DataConfig) -> int:
    entry = (cfg.largest("chain_length") if cfg.h_pool_mode == "per_sequence" else 1) * cfg.h_num_layers * cfg.n_dims**2
    return (cfg.pool_size or 0) * entry


def memory_terms(cfg: DataConfig, chunk_size: int, workers: int, device: str = "cpu") -> dict[str, int]:
    """Estimated bytes held at once, by what holds them (see the module docstring)."""
    V, d, L = cfg.vocab_size, cfg.n_dims, cfg.h_num_layers
    K, N, M, C = cfg.padded_dims
    drawn = C * (N + C - 1) + K * N  # floats of one row's DAG keys and inputs
    if cfg.mixed_shapes:  # one shape at a time draws a whole block; its rows are kept (generate._mixed_block)
        largest = cfg.model_copy(update={name: cfg.largest(name) for name in SHAPE_FIELDS})
        task = 8 * (2 * BLOCK_SIZE * (drawn + C * L * d * d) + tile_rows(largest, "cpu") * K * M * d)
    else:
        task = 8 * (BLOCK_SIZE * drawn + min(chunk_size, BLOCK_SIZE) * C * L * d * d
                    + tile_rows(cfg, "cpu") * K * M * d)
    row = 4 * (K * (N + C + 1) + C * (M + 1) + 4) + 8
    terms = {"E (vocab_size x n_dims)": (workers + 1) * 8 * V * d,
             "the H pool (num_unique_h, chain_length, h_num_layers, n_dims)": (workers + 1) * 8 * _pool_floats(cfg),
             "the draws of tasks in flight (n_examples, n_inputs, chain_length, h_num_layers, n_dims, "
             "--chunk-size, --workers)": (1 if workers == 1 else 2 * workers) * task,
             "a shard of rows (n_examples, n_inputs, chain_length)": 3 * ROWS_PER_SHARD * row}
    if device != "cpu" and not cfg.mixed_shapes:  # mixed shapes are computed on the CPU
        rows = gpu_tile_rows(cfg, None) + BLOCK_SIZE  # a group of tasks passes the tile by < one task
        terms["a GPU tile's draws (n_examples, n_inputs, chain_length, h_num_layers, n_dims, --device)"] = (
            2 * 8 * rows * (drawn + C * L * d * d))  # the tasks' draws and their joined copy
    return terms


def disk_lower_bound(cfg: DataConfig) -> int:
    """Bytes the split needs at least on disk (see the module docstring)."""
    tokens = cfg.n_sequences * min(cfg.choices("n_examples")) * min(cfg.choices("n_inputs")) * math.log2(cfg.n_usable) / 8
    return int(tokens) + 8 * (cfg.vocab_size * cfg.n_dims + _pool_floats(cfg))


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(out: Path, cfg: DataConfig, chunk_size: int, workers: int, max_memory_gib: float | None,
               device: str = "cpu") -> None:
    """Refuse a job whose memory estimate exceeds the cap or whose disk lower bound the free space."""
    terms = memory_terms(cfg, chunk_size, workers, device)
    need = sum(terms.values())
    cap = physical_memory() if max_memory_gib is None else max_memory_gib * GIB
    if cap is not None and need > cap:
        what = "--max-memory" if max_memory_gib is not None else "this machine's memory (--max-memory)"
        raise ConfigError(f"the job needs about {size(need)} of memory, mostly for "
                          f"{max(terms, key=terms.get)}: over {what} of {size(cap)}")
    disk = disk_lower_bound(cfg)
    parent = existing_parent(Path(out))
    free = shutil.disk_usage(parent).free
    if disk > free:
        raise ConfigError(f"n_sequences={cfg.n_sequences}: the split needs at least {size(disk)} of disk, "
                          f"{size(free)} are free under {short(str(parent))}")
