"""Training loader: seeded epochs over a stored split, rendered batches as CPU torch tensors.

Epoch e visits every row exactly once. Its order comes from two keyed numpy streams, so any
(epoch, position) can be recomputed without replaying earlier epochs:
- shard order: Generator(PCG64(SeedSequence(seed, spawn_key=(3, e)))).permutation(n_shards);
- rows within shard s: Generator(PCG64(SeedSequence(seed, spawn_key=(3, e, s)))).permutation(rows_s).
(Spawn keys 0-2 belong to the generator and the eval-time edits, 4 to the CoT-Recipe's permutation:
docs/data.md ("Seeds and random streams").) The shards hold rows in row order, so the order is
shuffled within one shard at a time; the CoT-Recipe does not rise with the row index (its slots are
permuted over the split, cotlab.data.prompts.recipe_slot), so the CoT share stays flat over training.
Only one shard is held in memory. The stream of rows runs on across epoch boundaries, so a batch
may end one epoch and start the next and no row is ever dropped.

Batches are rendered right-padded into length buckets (`render_train(pad="right", bucket=BUCKET)`):
special-token rows differ in length, and with the padding after each row's last token a causal
model needs no attention mask (real tokens never attend to later columns, and positions 0..T-1 are
each row's own), while T takes only the values BUCKET, 2·BUCKET, ... and the format's longest
sequence, so torch.compile sees a few shapes. Plain formats have rows of one length and no padding.

Distributed: every rank walks the same global stream; of each global batch of `batch_size` rows,
rank r renders rows [r*b, (r+1)*b), b = batch_size // world_size. The state is the pair
(epoch, position) of the next global row, identical on every rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from cotlab.config import fail
from cotlab.data.generate import Rows
from cotlab.data.prompts import render_train
from cotlab.formats import PromptConfig

if TYPE_CHECKING:
    from cotlab.data.store import Dataset

LOADER_KEY = 3  # spawn-key prefix of the loader's streams
BUCKET = 64  # training batches are padded to a multiple of this many tokens (or the longest possible)


class TrainLoader:
    """Endless seeded batches of `dataset` rendered with `prompt_cfg` (module docstring)."""

    def __init__(self, dataset: Dataset, prompt_cfg: PromptConfig, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        prompt_cfg.check(dataset.config)
        if batch_size < 1:
            fail("batch_size", batch_size, "must be a positive integer")
        if world_size < 1:
            fail("world_size", world_size, "must be a positive integer")
        if batch_size % world_size:
            fail("batch_size", batch_size, f"must be divisible by world_size={world_size}")
        if not 0 <= rank < world_size:
            fail("rank", rank, f"must lie in 0..{world_size - 1}")
        if seed < 0:
            fail("seed", seed, "must be >= 0")
        if dataset.n_rows < 1:
            fail("dataset", str(getattr(dataset, "path", dataset)), "holds no rows")
        self.dataset = dataset
        self.prompt_cfg = prompt_cfg
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # index of the next global row within the epoch's order
        self._shard_sizes = np.asarray(dataset.shard_rows, np.int64)
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None  # (epoch, shard order, starts)
        self._shard: tuple[int, int, Rows] | None = None  # (epoch, shard, its rows in epoch order)

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's share of the next global batch: input_ids, labels (B, T) int64, attention_mask (B, T) bool.

        Right-padded (pad id, label -100, mask False) to T = a multiple of BUCKET or the format's
        longest sequence (module docstring).
        """
        b = self.batch_size // self.world_size
        epoch, position = self._advance(self.epoch, self.position, self.rank * b)
        rows = self._read(epoch, position, b)
        self.epoch, self.position = self._advance(self.epoch, self.position, self.batch_size)
        batch = render_train(rows, self.dataset.config, self.prompt_cfg, self.dataset.n_rows,
                             pad="right", bucket=BUCKET)
        return {"input_ids": torch.from_numpy(batch.input_ids),
                "labels": torch.from_numpy(batch.labels),
                "attention_mask": torch.from_numpy(batch.attention_mask)}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0:
            fail("epoch", epoch, "must be >= 0")
        if not 0 <= position < self.dataset.n_rows:
            fail("position", position, f"must lie in 0..{self.dataset.n_rows - 1} (rows of the dataset)")
        self.epoch, self.position = epoch, position

    def _advance(self, epoch: int, position: int, n: int) -> tuple[int, int]:
        epoch_delta, position = divmod(position + n, self.dataset.n_rows)
        return epoch + epoch_delta, position

    def _read(self, epoch: int, position: int, n: int) -> Rows:
        """n rows of the stream starting at (epoch, position), crossing shards and epochs as needed."""
        parts = []
        while n > 0:
            _, order, starts = self._epoch_plan(epoch)
            slot = int(np.searchsorted(starts, position, side="right")) - 1  # shard slot holding `position`
            offset = position - int(starts[slot])
            take = min(n, int(self._shard_sizes[order[slot]]) - offset)
            parts.append(self._shard_rows(epoch, int(order[slot])).take(slice(offset, offset + take)))
            n -= take
            epoch, position = self._advance(epoch, position, take)
        return Rows.concat(parts)

    def _epoch_plan(self, epoch: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(epoch, shard order (S,), first stream position of each slot (S,))."""
        if self._plan is None or self._plan[0] != epoch:
            order = _rng(self.seed, LOADER_KEY, epoch).permutation(len(self._shard_sizes))
            starts = np.concatenate([[0], np.cumsum(self._shard_sizes[order])[:-1]])
            self._plan = (epoch, order, starts)
        return self._plan

    def _shard_rows(self, epoch: int, shard: int) -> Rows:
        """Shard `shard` permuted for `epoch`; only the latest one is kept (memory: one shard)."""
        if self._shard is None or self._shard[:2] != (epoch, shard):
            self._shard = None  # release the previous shard before reading the next
            rows = self.dataset.read_shard(shard)
            permutation = _rng(self.seed, LOADER_KEY, epoch, shard).permutation(len(rows.seq_idx))
            self._shard = (epoch, shard, rows.take(permutation))
        return self._shard[2]


def load_rows(dataset: Dataset, n: int) -> Rows:
    """The first n rows in canonical order (the eval set of a run: recipe index = row, n_rows = n)."""
    if not 1 <= n <= dataset.n_rows:
        fail("n", n, f"must lie in 1..{dataset.n_rows} (rows of the {dataset.split} split)")
    return dataset.read(0, n)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))

