"""TrainLoader: seeded epochs, exactly-once visits, rank slices, exact resume; load_rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cotlab.cli import main as cli
from cotlab.config import ConfigError, DataConfig, build
from cotlab.data.generate import Rows
from cotlab.data.loader import TrainLoader, load_rows
from cotlab.data.prompts import render_train
from cotlab.formats import PromptConfig
from cotlab.data.store import open_dataset

STANDARD = build(PromptConfig, {"format": "standard"})


class ShardedRows:
    """An in-memory Dataset (store.py's interface) with uneven shards; counts shard reads.

    Row i has inputs[0, 0] = i, so a standard-format batch names its rows in column 0.
    """

    def __init__(self, shard_rows=(16, 16, 16, 2)):
        self.shard_rows = list(shard_rows)
        self.n_rows = sum(shard_rows)
        self.config = DataConfig(vocab_size=1024, n_inputs=2, n_parents=1, chain_length=1, n_examples=2,
                                 n_sequences=self.n_rows)
        self.split = "train"
        self.shards = [f"part-{i:05d}.parquet" for i in range(len(shard_rows))]
        self.shard_reads = 0
        rng = np.random.default_rng(0)
        inputs = rng.integers(0, 1000, (self.n_rows, 2, 2)).astype(np.int32)
        inputs[:, 0, 0] = np.arange(self.n_rows)
        self.rows = Rows(seq_idx=np.arange(self.n_rows, dtype=np.int64), inputs=inputs,
                         chain=rng.integers(0, 1000, (self.n_rows, 2, 1)).astype(np.int32),
                         dag=np.zeros((self.n_rows, 1, 1), np.int32), h_ids=None, cot_u=None)

    def read(self, start, stop):
        return self.rows.take(slice(start, stop))

    def read_shard(self, i):
        self.shard_reads += 1
        start = sum(self.shard_rows[:i])
        return self.read(start, start + self.shard_rows[i])


def row_ids(loader, n_batches):
    """Row index of every row of the next n_batches batches, in order."""
    return [row for _ in range(n_batches) for row in loader.next_batch()["input_ids"][:, 0].tolist()]


def test_batches_are_cpu_tensors_of_the_rendered_rows():
    data = ShardedRows()
    batch = TrainLoader(data, STANDARD, batch_size=5, seed=1).next_batch()
    assert batch["input_ids"].dtype == torch.int64 and batch["labels"].dtype == torch.int64
    assert batch["attention_mask"].dtype == torch.bool and batch["input_ids"].device.type == "cpu"
    expected = render_train(data.read(0, data.n_rows), data.config, STANDARD, data.n_rows)
    rows = batch["input_ids"][:, 0].numpy()
    assert (batch["input_ids"].numpy() == expected.input_ids[rows]).all()
    assert (batch["labels"].numpy() == expected.labels[rows]).all()


def test_every_row_once_per_epoch_in_shard_blocks_and_seeded():
    data = ShardedRows()
    loader = TrainLoader(data, STANDARD, batch_size=5, seed=3)
    epochs = [row_ids(loader, 10) for _ in range(3)]  # 50 rows = 10 batches of 5
    assert loader.state_dict() == {"epoch": 3, "position": 0}
    assert data.shard_reads == 3 * 4  # one read per shard per epoch: memory bounded by one shard
    shard_of = np.repeat(np.arange(4), data.shard_rows)
    for order in epochs:
        assert sorted(order) == list(range(50))
        blocks = [shard for i, shard in enumerate(shard_of[order]) if i == 0 or shard != shard_of[order[i - 1]]]
        assert sorted(blocks) == [0, 1, 2, 3]  # each shard is one contiguous block
    assert len({tuple(order) for order in epochs}) == 3  # a new permutation every epoch
    assert row_ids(TrainLoader(data, STANDARD, batch_size=5, seed=3), 30) == sum(epochs, [])
    assert row_ids(TrainLoader(data, STANDARD, batch_size=5, seed=4), 10) != epochs[0]


def test_batches_run_across_the_epoch_boundary():
    data = ShardedRows()
    stream = row_ids(TrainLoader(data, STANDARD, batch_size=7, seed=0), 15)  # 105 rows: 2 epochs + 5
    assert sorted(stream[:50]) == sorted(stream[50:100]) == list(range(50))
    assert stream[100:] == row_ids(TrainLoader(data, STANDARD, batch_size=50, seed=0), 3)[100:105]


def test_two_ranks_concatenate_to_the_single_rank_batch():
    data = ShardedRows()
    whole = TrainLoader(data, STANDARD, batch_size=6, seed=5)
    ranks = [TrainLoader(data, STANDARD, batch_size=6, seed=5, rank=r, world_size=2) for r in range(2)]
    for _ in range(20):  # crosses shard and epoch boundaries
        expected = whole.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        for key in expected:
            assert torch.equal(torch.cat([part[key] for part in parts]), expected[key])
        assert ranks[0].state_dict() == ranks[1].state_dict() == whole.state_dict()


@pytest.mark.parametrize("stop_after", [3, 7, 8])  # mid-epoch, just before and after the boundary
def test_resume_equals_uninterrupted(stop_after):
    data = ShardedRows()
    uninterrupted = row_ids(TrainLoader(data, STANDARD, batch_size=7, seed=9), 16)
    first = TrainLoader(data, STANDARD, batch_size=7, seed=9)
    head = row_ids(first, stop_after)
    state = first.state_dict()
    assert all(type(value) is int for value in state.values())
    resumed = TrainLoader(data, STANDARD, batch_size=7, seed=9)
    resumed.load_state_dict(dict(state))
    assert head + row_ids(resumed, 16 - stop_after) == uninterrupted


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 5, "world_size": 2}, "batch_size=5: must be divisible by world_size=2"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": 4, "world_size": 2, "rank": 2}, "rank=2: must lie in 0..1"),
    ({"batch_size": 4, "seed": -1}, "seed=-1"),
])
def test_bad_loader_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainLoader(ShardedRows(), STANDARD, **{"seed": 0, **kwargs})


def test_bad_state_and_format():
    loader = TrainLoader(ShardedRows(), STANDARD, batch_size=4, seed=0)
    with pytest.raises(ConfigError, match="position=50"):
        loader.load_state_dict({"epoch": 0, "position": 50})
    with pytest.raises(ConfigError, match="format='cot_special_token': needs special_tokens=true"):
        TrainLoader(ShardedRows(), build(PromptConfig, {"format": "cot_special_token"}), batch_size=4, seed=0)


# --- a real dataset written by `cotlab generate` ------------------------------------------------

def generate(tmp_path, *sets):
    out = tmp_path / "train"
    assert cli(["generate", "--out", str(out), "--split", "train", "--set", "n_sequences=24",
                "--set", "vocab_size=64", "--set", "n_examples=4", "--set", "n_inputs=3",
                "--set", "n_parents=2", "--set", "chain_length=2", *sum((["--set", s] for s in sets), [])]) == 0
    return open_dataset(out)


def test_real_dataset_epoch_and_load_rows(tmp_path):
    dataset = generate(tmp_path)
    epoch = TrainLoader(dataset, STANDARD, batch_size=dataset.n_rows, seed=0).next_batch()
    everything = render_train(dataset.read(0, dataset.n_rows), dataset.config, STANDARD, dataset.n_rows)
    assert sorted(map(tuple, epoch["input_ids"].tolist())) == sorted(map(tuple, everything.input_ids.tolist()))

    rows = load_rows(dataset, 10)
    assert rows.seq_idx.tolist() == list(range(10)) and rows.inputs.shape == (10, 4, 3)
    with pytest.raises(ConfigError, match="n=25: must lie in 1..24"):
        load_rows(dataset, 25)


def test_real_hybrid_dataset_pads_and_resumes(tmp_path):
    dataset = generate(tmp_path, "special_tokens=true")
    hybrid = build(PromptConfig, {"format": "hybrid_special_token", "recipe": {"alpha": 1.0}})
    pad = dataset.config.special_ids()["pad"]
    loader = TrainLoader(dataset, hybrid, batch_size=8, seed=2, rank=1, world_size=2)
    batches = [loader.next_batch() for _ in range(5)]  # 40 rows: crosses the epoch boundary at 24
    for batch in batches:
        mask = batch["attention_mask"]
        assert torch.equal(mask, torch.arange(mask.shape[1]) < mask.sum(axis=1, keepdim=True))  # right-padded
        assert (batch["input_ids"][~mask] == pad).all() and (batch["labels"][~mask] == -100).all()
        assert mask.shape[1] == 1 + 4 * (3 + 2 + 7)  # the format's longest sequence caps the 64 bucket
    assert any((~batch["attention_mask"]).any() for batch in batches)  # lengths did differ
    resumed = TrainLoader(dataset, hybrid, batch_size=8, seed=2, rank=1, world_size=2)
    replay = TrainLoader(dataset, hybrid, batch_size=8, seed=2, rank=1, world_size=2)
    for _ in range(2):
        replay.next_batch()
    resumed.load_state_dict(replay.state_dict())
    for expected in batches[2:]:
        got = resumed.next_batch()
        assert all(torch.equal(got[key], expected[key]) for key in expected)
