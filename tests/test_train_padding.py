"""step_loss on right-padded batches (no attention mask) trains exactly what the left-padded masked
computation does, less the "pad predicts ⟨bos⟩" term (docs/training.md ("Padding")); a left-padded
batch is refused."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from cotlab.config import build
from cotlab.data.generate import generate_rows
from cotlab.data.loader import BUCKET
from cotlab.data.prompts import IGNORE, render_train
from cotlab.config import DataConfig
from cotlab.formats import PromptConfig
from cotlab.model import Transformer
from cotlab.model_config import model_config
from cotlab.train import step_loss

MIXED = dict(vocab_size=64, n_dims=6, n_inputs=[3, 4], n_parents=[3, 4], chain_length=[3, 4],
             n_examples=[2, 5], special_tokens=True, fixed_h=True, num_unique_h=3,
             h_pool_mode="per_position", n_sequences=64)
HYBRID = build(PromptConfig, {"format": "hybrid_special_token", "recipe": {"alpha": 1.0}})


def tensors(batch) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.from_numpy(batch.input_ids), "labels": torch.from_numpy(batch.labels),
            "attention_mask": torch.from_numpy(batch.attention_mask)}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    cfg = build(DataConfig, MIXED)
    rows = generate_rows(cfg, "train", 0, 8)
    model = Transformer(model_config("smoke-tf4", cfg.vocab_size))
    model.init_weights(0)
    return cfg, rows, model


def grads(model: Transformer) -> dict[str, torch.Tensor]:
    out = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def test_right_padded_unmasked_equals_left_padded_masked(setup):
    cfg, rows, model = setup
    right = tensors(render_train(rows, cfg, HYBRID, 64, pad="right", bucket=BUCKET))
    left = tensors(render_train(rows, cfg, HYBRID, 64))  # evaluation's rendering
    lengths = left["attention_mask"].sum(axis=1)
    assert len(set(lengths.tolist())) > 2  # rows of many lengths
    assert right["input_ids"].shape[1] == 1 + 5 * (4 + 4 + 7) > int(lengths.max())  # the cap, past every row

    _, ce_right, counts = step_loss(model, right, 1, torch.device("cpu"), contextlib.nullcontext())
    ce_right.backward()
    grad_right = grads(model)

    logits_left = model(left["input_ids"], left["attention_mask"])  # (B, T, V), masked, positions from 0
    labels = left["labels"].clone()
    first = (~left["attention_mask"]).sum(axis=1)  # (B,) column of each row's ⟨bos⟩
    padded = first > 0
    assert (labels[padded, first[padded]] != IGNORE).all()  # ⟨bos⟩ labels itself ...
    labels[torch.arange(len(first)), first] = IGNORE  # ... and only a padded row scores it: drop that term
    labels = labels[:, 1:]  # (B, T-1)
    ce_left = F.cross_entropy(logits_left[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE, reduction="sum")
    ce_left.backward()
    grad_left = grads(model)

    assert counts.tolist() == [int((labels != IGNORE).sum()), int(lengths.sum())]
    assert int((left["labels"][:, 1:] != IGNORE).sum()) == int(counts[0]) + int(padded.sum())  # the dropped terms
    torch.testing.assert_close(ce_right, ce_left, rtol=1e-5, atol=1e-4)
    for name, grad in grad_right.items():
        torch.testing.assert_close(grad, grad_left[name], rtol=1e-4, atol=1e-6, msg=name)
        assert grad.abs().max() > 1e-5, name  # a gradient that actually flows


def test_step_loss_refuses_a_left_padded_batch(setup):
    cfg, rows, model = setup
    left = tensors(render_train(rows, cfg, HYBRID, 64))
    assert not left["attention_mask"].all()
    with pytest.raises(ValueError, match="needs right-padded batches"):
        step_loss(model, left, 1, torch.device("cpu"), contextlib.nullcontext())
