"""Training batches: right padding into length buckets (render_train's pad and bucket, TrainLoader).

Evaluation keeps render_train's default left padding; the loader renders right-padded batches
whose T is a multiple of BUCKET or the format's longest sequence (docs/prompts.md ("Padding")).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cotlab.cli import main as cli
from cotlab.config import ConfigError, DataConfig, build
from cotlab.data.generate import Rows
from cotlab.data.loader import BUCKET, TrainLoader
from cotlab.data.prompts import IGNORE, render_train
from cotlab.data.store import open_dataset
from cotlab.formats import PromptConfig

U32 = 2**32
M = IGNORE
# docs/prompts.md's worked example B: pad 15, bos 14, eos 13, ⟨is⟩ 12, ⟨ie⟩ 11, ⟨ts⟩ 10, ⟨te⟩ 9, ⟨as⟩ 8, ⟨ae⟩ 7
WORKED_B = DataConfig(vocab_size=16, n_dims=2, n_inputs=3, n_parents=2, chain_length=3, n_examples=2,
                      activation="relu", h_num_layers=2, special_tokens=True)
HALF = build(PromptConfig, {"format": "hybrid_special_token", "recipe": {"alpha": 1.0, "scale": 0.0, "p0": 0.5}})  # r = 1/2
# Row 0: first example CoT, query standard (23 tokens); row 1: both standard (19 tokens).
ROW_COT_STD = [14, 12, 1, 3, 2, 11, 10, 1, 0, 9, 8, 4, 7, 13, 12, 0, 3, 1, 11, 8, 4, 7, 13]
LAB_COT_STD = [14] + [M] * 5 + [10, 1, 0, 9, 8, 4, 7, 13] + [M] * 5 + [8, 4, 7, 13]
ROW_STD_STD = [14, 12, 1, 3, 2, 11, 8, 4, 7, 13, 12, 0, 3, 1, 11, 8, 4, 7, 13]
LAB_STD_STD = [14] + [M] * 5 + [8, 4, 7, 13] + [M] * 5 + [8, 4, 7, 13]


def two_rows() -> Rows:
    inputs = np.array([[[1, 3, 2], [0, 3, 1]]] * 2, np.int32)
    chain = np.array([[[1, 0, 4], [4, 0, 4]]] * 2, np.int32)
    return Rows(seq_idx=np.arange(2), inputs=inputs, chain=chain, dag=np.zeros((2, 3, 1), np.int32),
                h_ids=None, cot_u=np.array([[0, U32 - 1], [U32 - 1, U32 - 1]], np.uint32))


def test_left_padding_is_the_default():
    batch = render_train(two_rows(), WORKED_B, HALF, 2)
    assert batch.input_ids.tolist() == [ROW_COT_STD, [15] * 4 + ROW_STD_STD]
    assert batch.labels.tolist() == [LAB_COT_STD, [M] * 4 + LAB_STD_STD]
    assert batch.attention_mask.sum(axis=1).tolist() == [23, 19] and not batch.attention_mask[1, :4].any()


@pytest.mark.parametrize("bucket, T", [(1, 23), (8, 24), (16, 27), (64, 27)])  # 27 = 1 + K(N+C+7), the cap
def test_right_padding_into_buckets(bucket, T):
    batch = render_train(two_rows(), WORKED_B, HALF, 2, pad="right", bucket=bucket)
    assert batch.input_ids.tolist() == [ROW_COT_STD + [15] * (T - 23), ROW_STD_STD + [15] * (T - 19)]
    assert batch.labels.tolist() == [LAB_COT_STD + [M] * (T - 23), LAB_STD_STD + [M] * (T - 19)]
    assert batch.attention_mask.tolist() == [[t < 23 for t in range(T)], [t < 19 for t in range(T)]]


def test_the_offset_shifts_the_pad_id_of_right_padding_too():
    cfg = build(PromptConfig, {**HALF.model_dump(), "offset": 100})
    batch = render_train(two_rows(), WORKED_B, cfg, 2, pad="right", bucket=8)
    assert batch.input_ids[1].tolist() == [t + 100 for t in ROW_STD_STD] + [115] * 5
    assert batch.labels[1, 19:].tolist() == [M] * 5


def test_plain_formats_are_not_padded():
    cfg = DataConfig(vocab_size=64, n_inputs=3, n_parents=2, chain_length=3, n_examples=2)
    rows = Rows(seq_idx=np.arange(1), inputs=np.array([[[1, 2, 3], [7, 8, 9]]], np.int32),
                chain=np.array([[[4, 5, 6], [10, 11, 12]]], np.int32), dag=np.zeros((1, 3, 1), np.int32),
                h_ids=None, cot_u=None)
    batch = render_train(rows, cfg, build(PromptConfig, {"format": "cot"}), 1, pad="right", bucket=64)
    assert batch.input_ids.tolist() == [list(range(1, 13))] and batch.attention_mask.all()


@pytest.mark.parametrize("kwargs, message", [
    ({"pad": "middle"}, "pad='middle': must be 'left' or 'right'"),
    ({"bucket": 0}, "bucket=0: must be a positive integer"),
    ({"bucket": 2.5}, "bucket=2.5: must be a positive integer"),
])
def test_bad_padding_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        render_train(two_rows(), WORKED_B, HALF, 2, **kwargs)


# --- the loader on a real mixed-shape hybrid dataset -----------------------------------------------

MIXED = ["vocab_size=64", "n_dims=6", "n_inputs=[3,4]", "n_parents=[3,4]", "chain_length=[3,4]",
         "n_examples=[2,5,12]", "special_tokens=true", "fixed_h=true", "num_unique_h=3",
         "h_pool_mode=per_position", "n_sequences=64"]


@pytest.fixture(scope="module")
def mixed_hybrid(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "train"
    assert cli(["generate", "--out", str(out), "--split", "train", *sum((["--set", s] for s in MIXED), [])]) == 0
    return open_dataset(out), build(PromptConfig, {"format": "hybrid_special_token", "recipe": {"alpha": 1.0}})


def test_loader_batches_take_only_bucket_lengths(mixed_hybrid):
    dataset, hybrid = mixed_hybrid
    cap = 1 + 12 * (4 + 4 + 7)  # the longest hybrid sequence of the largest shape: 181
    pad = dataset.config.special_ids()["pad"]
    loader = TrainLoader(dataset, hybrid, batch_size=2, seed=0)
    lengths = set()
    for _ in range(50):
        rows = loader._read(loader.epoch, loader.position, 2)  # the rows next_batch renders
        batch = loader.next_batch()
        mask = batch["attention_mask"]
        T, longest = mask.shape[1], int(mask.sum(axis=1).max())
        lengths.add(T)
        assert T % BUCKET == 0 or T == cap
        assert longest <= T < longest + BUCKET  # bucketing adds fewer than BUCKET columns
        assert torch.equal(mask, torch.arange(T) < mask.sum(axis=1, keepdim=True))  # right-padded
        assert (batch["input_ids"][~mask] == pad).all() and (batch["labels"][~mask] == IGNORE).all()
        left = render_train(rows, dataset.config, hybrid, dataset.n_rows)  # evaluation's rendering
        assert [ids[m].tolist() for ids, m in zip(batch["input_ids"], mask)] == \
            [ids[m].tolist() for ids, m in zip(left.input_ids, left.attention_mask)]
        assert [lab[m].tolist() for lab, m in zip(batch["labels"], mask)] == \
            [lab[m].tolist() for lab, m in zip(left.labels, left.attention_mask)]
    assert lengths == {64, 128, cap} and len(lengths) == math.ceil(cap / BUCKET)  # every bucket seen
