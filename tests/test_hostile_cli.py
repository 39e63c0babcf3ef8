"""`agekit train / eval / predict` under bad input and faults: one line and exit 2 (130 for Ctrl-C), nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from agekit.cli import main
from agekit.training import trainer as trainer_module
from agekit.training.checkpoint import load_checkpoint
from test_hostile_input import tmpfs

SMOKE = ["--preset", "smoke", "--no-progress"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished smoke run (RAPL) to evaluate and predict with."""
    out = tmp_path_factory.mktemp("run") / "rapl"
    assert main(["train", *SMOKE, "--out", str(out), "--epochs", "1"]) == 0
    return out


def bad_checkpoints(folder, good):
    data = good.read_bytes()
    files = {
        "text.pt": b"just some notes\n",
        "random.pt": bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)),
        "empty.pt": b"",
        "truncated.pt": data[: len(data) // 2],
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return {
        folder / "text.pt": "is not a torch file: it starts with text",
        folder / "random.pt": "is not a torch file: it starts with bytes",
        folder / "empty.pt": "is empty (0 bytes)",
        folder / "truncated.pt": "is damaged or truncated",
        good.parent: "is a folder, not a checkpoint file; it holds best.pt and last.pt",
    }


def test_every_unreadable_checkpoint_gets_one_accurate_line(capsys, tmp_path, trained):
    face = tmp_path / "face.png"
    Image.new("RGB", (20, 20), (120, 90, 80)).save(face)
    for path, message in bad_checkpoints(tmp_path, trained / "best.pt").items():
        for argv in (["eval", "--checkpoint", path], ["predict", "--checkpoint", path, face]):
            code, _, err = run(capsys, *argv)
            assert code == 2 and message in err and one_line(err), (argv, err)
            assert "pickled" not in err and "does not exist" not in err


def test_predict_rejects_folders_special_files_and_bombs_in_one_line(capsys, tmp_path, trained, monkeypatch):
    best = trained / "best.pt"
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "album").mkdir()
    Image.new("L", (80, 80)).save(tmp_path / "huge.png")
    for image, message in ((tmp_path / "album", "is a folder"), (tmp_path / "fifo.jpg", "not a regular file")):
        code, _, err = run(capsys, "predict", "--checkpoint", best, image)
        assert code == 2 and message in err and one_line(err), err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 6400 pixels > 2 x 1000: a "decompression bomb"
    code, _, err = run(capsys, "predict", "--checkpoint", best, tmp_path / "huge.png")
    assert code == 2 and "huge.png" in err and "decompression bomb" in err and one_line(err), err


def test_predict_sees_a_16_bit_png_as_it_looks(capsys, tmp_path, trained):
    """A mid-grey 16-bit PNG and its 8-bit twin give the same age (clipped to white, they would not)."""
    Image.fromarray(np.full((30, 30), 30000, np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray(np.full((30, 30), round(30000 * 255 / 65535), np.uint8)).save(tmp_path / "grey8.png")
    Image.new("L", (30, 30), 255).save(tmp_path / "white.png")
    code, out, err = run(capsys, "predict", "--checkpoint", trained / "best.pt", "--json",
                         tmp_path / "grey16.png", tmp_path / "grey8.png", tmp_path / "white.png")
    assert code == 0, err
    grey16, grey8, white = (json.loads(line)["age"] for line in out.strip().splitlines())
    assert grey16 == grey8 and grey16 != white


def test_empty_splits_name_the_setting(capsys, tmp_path):
    code, _, err = run(capsys, "train", *SMOKE, "--out", tmp_path / "x", "--set", "data.fractions=[1,0,0]")
    assert code == 2 and one_line(err) and "data.fractions=[1.0, 0.0, 0.0] leaves no faces in val and test" in err


def test_ctrl_c_during_training_says_how_to_continue(capsys, tmp_path, monkeypatch):
    original = trainer_module.Trainer._run_epoch

    def run_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_epoch)
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", *SMOKE, "--out", out)
    assert code == 130 and f"agekit train --out {out} --resume" in err and one_line(err), err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


def test_two_trainings_into_one_folder_do_not_mix(tmp_path):
    """Started together with different seeds: one trains, the other refuses; the folder holds one run."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "agekit", "train", *SMOKE, "--out", str(out), "--epochs", "1", "--seed"]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    runs = [subprocess.Popen(command + [seed], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment) for seed in ("1", "2")]
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    winner = next(r for r in results if r[0] == 0)
    loser = next(r for r in results if r[0] == 2)
    assert one_line(loser[2]) and ("in use by another training run" in loser[2] or "already holds" in loser[2])
    seed = json.loads(winner[1].strip().splitlines()[-1])  # the winner's summary
    assert seed["out"] == str(out)
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    report = json.loads((out / "metrics.json").read_text())
    assert last["config"]["train"]["seed"] == best["config"]["train"]["seed"]
    assert report["test"] == seed["test"] and sorted(os.listdir(out)) == ["best.pt", "config.toml", "last.pt",
                                                                          "metrics.csv", "metrics.json"]


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (a smoke checkpoint is 2 MiB); root only, as in CI."""
    with tmpfs(tmp_path / "small", "8m") as folder:
        yield folder


def test_a_full_disk_during_training_gives_one_line_and_keeps_the_last_good_checkpoint(capsys, small_disk):
    out = small_disk / "run"
    code, _, err = run(capsys, "train", *SMOKE, "--out", out, "--set", "train.stop_after=1")
    assert code == 0, err
    before = (out / "last.pt").read_bytes()
    (out / ".last.pt.k1ll3d.tmp").write_bytes(b"left by a killed run")
    filler = small_disk / "filler"
    with open(filler, "wb") as handle:  # leave about 100 KiB: less than one checkpoint
        handle.write(b"\0" * (os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize - 100 * 1024))
    code, _, err = run(capsys, "train", "--out", out, "--resume", "--no-progress")
    assert code == 2 and one_line(err.splitlines()[-1]) and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert f"no space left in {out}" in last and "--resume" in last
    assert (out / "last.pt").read_bytes() == before and load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    filler.unlink()
    code, _, err = run(capsys, "train", "--out", out, "--resume", "--no-progress")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["complete"]
