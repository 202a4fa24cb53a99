"""cotlab.checkpoint.Checkpointer: a checkpoint holds the state at `save` while training goes on, one
write at a time, and a failed write is an error of the run."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import cotlab.checkpoint as checkpoint
from cotlab.checkpoint import (Checkpointer, CheckpointError, TrainState, checkpoint_damage, checkpoint_dir,
                               load_checkpoint)
from cotlab.model import Transformer
from cotlab.model_config import model_config

CPU = torch.device("cpu")


def model_and_optimizer(seed: int = 0) -> tuple[Transformer, torch.optim.AdamW]:
    model = Transformer(model_config("smoke-tf4", 32))
    model.init_weights(seed)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def train_step(model: Transformer, optimizer: torch.optim.Optimizer) -> None:
    """One AdamW step on random tokens: changes every weight and moment in place."""
    ids = torch.randint(0, 32, (2, 6))
    optimizer.zero_grad()
    model(ids).logsumexp(-1).mean().backward()
    optimizer.step()


def snapshot(model: Transformer, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    moments = {(index, name): value.clone() for index, per_param in optimizer.state_dict()["state"].items()
               for name, value in per_param.items()}
    return {name: value.clone() for name, value in model.state_dict().items()}, moments


def assert_checkpoint_holds(out, step: int, expected: tuple[dict, dict]) -> None:
    path = checkpoint_dir(out, step)
    assert checkpoint_damage(path) is None
    model, optimizer = model_and_optimizer(seed=1)
    train_step(model, optimizer)  # moments to overwrite
    state = load_checkpoint(path, model, optimizer, 0, CPU)
    assert state.step == step
    weights, moments = snapshot(model, optimizer)
    assert weights.keys() == expected[0].keys() and moments.keys() == expected[1].keys()
    assert all(weights[k].equal(expected[0][k]) for k in weights)
    assert all(moments[k].equal(expected[1][k]) for k in moments)


def test_a_checkpoint_holds_the_state_at_save_while_training_goes_on(tmp_path, monkeypatch):
    """The writer starts only after the next step has changed the live weights in place."""
    torch.manual_seed(0)
    model, optimizer = model_and_optimizer()
    train_step(model, optimizer)
    expected = snapshot(model, optimizer)
    write, stepped = checkpoint.write_checkpoint, threading.Event()

    def after_the_next_step(*args):
        stepped.wait()
        write(*args)

    monkeypatch.setattr(checkpoint, "write_checkpoint", after_the_next_step)
    with Checkpointer(tmp_path, model, optimizer, 0, 1, CPU) as saver:
        saver.save(TrainState(step=3, tokens_seen=7, metrics=[{"step": 0, "answer_acc": 0.5}]))
        after_save = torch.rand(4)  # the draw a resumed run makes first
        train_step(model, optimizer)
        stepped.set()
    assert not snapshot(model, optimizer)[0]["norm.weight"].equal(expected[0]["norm.weight"])
    assert_checkpoint_holds(tmp_path, 3, expected)
    assert torch.rand(4).equal(after_save)  # load_checkpoint restored the RNG state of the save
    state = TrainState(**checkpoint.read_json(checkpoint_dir(tmp_path, 3) / "train_state.json"))
    assert state == TrainState(step=3, tokens_seen=7, metrics=[{"step": 0, "answer_acc": 0.5}])


def test_the_next_save_waits_for_the_write_in_flight(tmp_path, monkeypatch):
    """The host buffers are reused: save 2 must not refill them before write 1 has read them.
    Write 1 is held until well after save 2 was called, so a save that did not wait would put step
    2's weights into step-1."""
    torch.manual_seed(0)
    model, optimizer = model_and_optimizer()
    write, second_save, release = checkpoint.write_checkpoint, threading.Event(), threading.Event()

    def held(out, step, *rest):
        if step == 1:
            release.wait()
        write(out, step, *rest)

    def releaser():
        second_save.wait()
        time.sleep(0.2)  # time for a save that does not wait to overwrite the buffers
        release.set()

    monkeypatch.setattr(checkpoint, "write_checkpoint", held)
    threading.Thread(target=releaser, daemon=True).start()
    expected = {}
    with Checkpointer(tmp_path, model, optimizer, 0, 1, CPU) as saver:
        for step in (1, 2):
            train_step(model, optimizer)
            expected[step] = snapshot(model, optimizer)
            if step == 2:
                second_save.set()
            saver.save(TrainState(step=step))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1", "step-2"]
    for step in (1, 2):
        assert_checkpoint_holds(tmp_path, step, expected[step])


def test_a_failed_write_is_a_one_line_error_at_the_next_save_or_close(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    model, optimizer = model_and_optimizer()
    train_step(model, optimizer)
    monkeypatch.setattr(checkpoint, "save_file", full)
    message = rf"^{tmp_path / 'checkpoints' / 'step-4'}: cannot be written \(.*No space left on device\)$"

    saver = Checkpointer(tmp_path, model, optimizer, 0, 1, CPU)
    saver.save(TrainState(step=4))
    with pytest.raises(CheckpointError, match=message):
        saver.save(TrainState(step=8))
    saver.close()
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no temporary directory left

    with pytest.raises(CheckpointError, match=message):
        with Checkpointer(tmp_path, model, optimizer, 0, 1, CPU) as saver:
            saver.save(TrainState(step=4))
    with pytest.raises(KeyError, match="the run's own error"):  # an error in flight wins over the writer's
        with Checkpointer(tmp_path, model, optimizer, 0, 1, CPU) as saver:
            saver.save(TrainState(step=4))
            raise KeyError("the run's own error")
