"""Checkpoints: atomic writes, safe loading, plain scheduler and RNG state, and the NaN stop."""

import random

import numpy as np
import pytest
import torch

from agekit.config import apply_overrides, preset
from agekit.training import TrainingDiverged, train
from agekit.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_scheduler_state,
    restore_rng,
    rng_state,
    save_checkpoint,
    scheduler_state,
)
from agekit.training.methods import RAPLMethod


class Payload:
    """A class that pickles as code: such files must be refused."""

    def __init__(self):
        self.value = 1


def test_round_trip_loads_with_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3, "history": [{"val_mae": 1.5}],
             "config": {"optim": {"lr": 1e-3, "milestones": [1, 2]}}, "labels": torch.tensor([1, 2, 4])}
    path = save_checkpoint(state, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    raw = torch.load(path, weights_only=True)  # loadable without pickled code
    loaded = load_checkpoint(path)
    assert raw["format"] == loaded["format"] == "agekit-checkpoint"
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and torch.equal(loaded["labels"], state["labels"])
    assert loaded["epoch"] == 3 and loaded["history"] == state["history"] and loaded["config"] == state["config"]


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "agekit-checkpoint", "version": 1, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_foreign_or_damaged_files_are_refused(tmp_path, content):
    path = tmp_path / "x.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)  # a valid torch file, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()

    def dies_half_way(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


def _lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_multistep_scheduler_state_is_plain_and_restores(tmp_path):
    def make():
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.1)

    first = make()
    _lrs(first, 3)
    state = scheduler_state(first)
    assert state["milestones"] == [[2, 1], [4, 1]]  # the Counter became plain pairs
    save_checkpoint({"scheduler": state}, tmp_path / "s.pt")
    second = make()
    second.optimizer.param_groups[0]["lr"] = first.optimizer.param_groups[0]["lr"]
    load_scheduler_state(second, load_checkpoint(tmp_path / "s.pt")["scheduler"])
    assert _lrs(second, 3) == pytest.approx([0.1, 0.01, 0.01])
    assert _lrs(first, 3) == pytest.approx([0.1, 0.01, 0.01])


def test_rng_state_restores_every_generator(tmp_path):
    generator = torch.Generator().manual_seed(5)
    torch.rand(3, generator=generator)
    state = rng_state({"g": generator})
    assert state["generators"]["g"].dtype == torch.uint8 and state["torch"].dtype == torch.uint8
    save_checkpoint({"rng": state}, tmp_path / "r.pt")
    expected = (torch.rand(4, generator=generator), torch.rand(4), random.random(), np.random.rand())
    for _ in range(3):  # move every generator on
        torch.rand(7, generator=generator), torch.rand(7), random.random(), np.random.rand()
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"], {"g": generator})
    again = (torch.rand(4, generator=generator), torch.rand(4), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = RAPLMethod.loss
    calls = {"n": 0}

    def loss_that_breaks_in_epoch_two(self, output, ages, genders):
        total, parts = original(self, output, ages, genders)
        calls["n"] += 1
        if self.bank.references is not None and calls.setdefault("bad", calls["n"] + 1) == calls["n"]:
            parts = dict(parts, age=parts["age"] * float("nan"))
            total = total * float("nan")
        return total, parts

    monkeypatch.setattr(RAPLMethod, "loss", loss_that_breaks_in_epoch_two)
    config = apply_overrides(preset("smoke", "rapl"), ["train.epochs=3"])
    with pytest.raises(TrainingDiverged) as error:
        train(config, out_dir=tmp_path, progress=False)
    message = str(error.value)
    assert "epoch 2, step 2" in message and "age loss" in message and "last.pt" in message
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and len(last["history"]) == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()
