"""`cotlab generate` refuses, before any work, a job that cannot fit: its memory estimate over
--max-memory (default: the machine's RAM), its disk lower bound over the free space."""

from __future__ import annotations

import time

import pytest

from cotlab.cli import main as cli
from cotlab.config import DataConfig
from cotlab.data.preflight import GIB, disk_lower_bound, memory_terms
from cotlab.data.store import write_dataset


def generate(out, *args: str) -> int:
    return cli(["generate", "--out", str(out), "--split", "train", *args])


@pytest.mark.parametrize("args, message", [
    (["--set", "n_sequences=1000000000000"], "n_sequences=1000000000000: the split needs at least "),
    (["--set", "n_dims=4096", "--set", "fixed_h=true", "--set", "num_unique_h=1000000"],
     "mostly for the H pool (num_unique_h, "),
    (["--set", "n_examples=10000", "--set", "n_inputs=1000", "--set", "chain_length=1000"],
     "mostly for a shard of rows (n_examples, n_inputs, chain_length)"),
    (["--set", "n_dims=4096", "--set", "h_num_layers=64"], "mostly for the draws of tasks in flight ("),
    (["--max-memory", "0.001"], "over --max-memory of 1.0 MiB"),
])
def test_a_job_that_cannot_fit_fails_at_once(tmp_path, capsys, args, message):
    start = time.perf_counter()
    assert generate(tmp_path / "d", *args) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - start < 10
    assert err.startswith("cotlab generate: error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_max_memory_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        generate(tmp_path / "d", "--max-memory", "-1")
    assert exit_.value.code == 2 and "argument --max-memory: '-1' is not a positive number" in capsys.readouterr().err


def test_the_paper_points_fit_a_laptop():
    for cfg in (DataConfig(), DataConfig(vocab_size=1024, n_examples=40, chain_length=5, n_dims=50),
                DataConfig(fixed_h=True, num_unique_h=100, n_sequences=3_200_000)):
        assert sum(memory_terms(cfg, 1024, 4).values()) < 2 * GIB
        assert disk_lower_bound(cfg) < 2 * GIB


def test_the_disk_estimate_is_a_lower_bound(tmp_path):
    for cfg in (DataConfig(vocab_size=1024, n_sequences=5000), DataConfig(vocab_size=16, n_examples=2,
                                                                           n_sequences=3000, fixed_h=True,
                                                                           num_unique_h=50)):
        out = tmp_path / str(cfg.vocab_size)
        write_dataset(out, cfg, "train")
        assert sum(p.stat().st_size for p in out.iterdir()) >= disk_lower_bound(cfg)


def test_per_sequence_shapes_cost_one_shape_at_a_time():
    """A mixed-shape task draws one shape's block at a time: its estimate follows the largest shape,
    not the number of shapes (2 choices per field are 16 shapes)."""
    many = DataConfig(special_tokens=True, n_inputs=[3, 4], n_parents=[2, 3], chain_length=[3, 4], n_examples=[8, 16])
    few = DataConfig(special_tokens=True, n_inputs=[2, 4], n_parents=3, chain_length=[2, 4], n_examples=16)
    key = next(k for k in memory_terms(many, 1024, 1) if k.startswith("the draws of tasks"))
    assert memory_terms(many, 1024, 1)[key] == memory_terms(few, 1024, 1)[key]


def test_a_gpu_job_counts_the_draws_of_one_gpu_tile():
    cfg = DataConfig(n_dims=100, chain_length=2)
    cpu, gpu = memory_terms(cfg, 1024, 2), memory_terms(cfg, 1024, 2, "cuda")
    extra = set(gpu) - set(cpu)
    assert len(extra) == 1 and {k: gpu[k] for k in cpu} == cpu
    # a tile: 4 GiB of float64 scores and weights, 8 * (40 * 1024 + 2 * 100 * 100) bytes a row -> 8,806 rows;
    # a group of tasks may pass it by up to one block; draws and their joined copy
    assert gpu[extra.pop()] == 2 * 8 * (8806 + 1024) * (2 * (4 + 1) + 40 * 4 + 2 * 1 * 100 * 100)  # ~3.2 GB
