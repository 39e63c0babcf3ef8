"""What a run folder records: metrics.csv per epoch, the reproducibility block, the next commands."""

import csv
import json
import shutil
import subprocess

import pytest
import torch

import agekit
from agekit.config import apply_overrides, preset
from agekit.training import train
from agekit.training.runs import _git_commit, epochs_csv, next_steps

SMOKE = apply_overrides(preset("smoke", "siamese"), ["train.epochs=2"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train(SMOKE, out_dir=out, progress=False, verbose=True), out


def test_metrics_csv_holds_the_history_of_metrics_json(run):
    result, out = run
    report = json.loads((out / "metrics.json").read_text())
    with open(out / "metrics.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["history"]) == 2
    for row, record in zip(rows, report["history"]):
        assert set(row) == set(record)
        for name, value in record.items():
            assert float(row[name]) == pytest.approx(value, rel=1e-12), name  # every number, in full
    assert not list(out.glob("*.tmp*"))


def test_epochs_csv_gives_columns_that_appear_later_an_empty_cell():
    text = epochs_csv([{"epoch": 1, "loss": 2.5}, {"epoch": 2, "loss": 1.5, "loss_position": 0.25}])
    assert text.splitlines() == ["epoch,loss,loss_position", "1,2.5,", "2,1.5,0.25"]


def test_the_reproducibility_block_is_recorded_and_printed(run, capsys):
    _, out = run
    block = json.loads((out / "metrics.json").read_text())["reproducibility"]
    assert block["agekit"] == agekit.__version__ and block["torch"] == torch.__version__
    assert block["seed"] == SMOKE.train.seed and block["device"] == "cpu"
    assert block["threads"] == torch.get_num_threads()
    again = train(apply_overrides(SMOKE, ["train.epochs=1"]), progress=False, verbose=True)
    printed = capsys.readouterr().out
    assert f"Training siamese (multi-task, {SMOKE.model.backbone}) on cpu" in printed  # the method names its model
    assert f"agekit {agekit.__version__}, torch {torch.__version__}" in printed
    assert f"seed {SMOKE.train.seed}, {torch.get_num_threads()} threads, cpu" in printed
    assert again.test_metrics is not None


def test_the_git_commit_is_there_in_a_checkout_and_none_outside(tmp_path):
    assert _git_commit(tmp_path) is None  # no checkout here: no commit, no failure
    if shutil.which("git") is None:
        return
    git = ["git", "-c", "user.name=a", "-c", "user.email=a@b", "-C", str(tmp_path)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "one"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert _git_commit(tmp_path) == head and len(head) == 40
    (tmp_path / "sub").mkdir()
    assert _git_commit(tmp_path / "sub") == head  # from a folder inside the checkout
    subprocess.run(git + ["pack-refs", "--all"], check=True)  # the branch now lives in packed-refs only
    assert _git_commit(tmp_path) == head
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "two"], check=True)
    subprocess.run(git + ["checkout", "-q", "--detach"], check=True)
    second = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert second != head and _git_commit(tmp_path) == second  # a detached HEAD


def test_the_test_line_uses_the_names_and_units_of_the_epoch_lines(tmp_path, capsys):
    result = train(apply_overrides(SMOKE, ["train.epochs=1"]), out_dir=tmp_path, progress=False, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    epoch = next(line for line in lines if line.startswith("epoch 1/1"))
    test = next(line for line in lines if line.startswith("test (best epoch 1): "))
    m = result.test_metrics
    assert f"MAE {m['mae']:.2f}  CS5 {m['cs5']:.1f}%  RMSE {m['rmse']:.2f}  gender {m['gender_acc']:.1f}%" in test
    v = result.history[0]
    assert f"val MAE {v['val_mae']:.2f}  CS5 {v['val_cs5']:.1f}%  gender {v['val_gender_acc']:.1f}%" in epoch
    assert next_steps(tmp_path / "best.pt") in lines  # what to run next
    assert "agekit eval --checkpoint" in lines[-1] and "agekit predict --checkpoint" in lines[-1]


def test_next_steps_show_paths_under_the_working_folder_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a notebook's log must not hold the machine's absolute paths
    text = next_steps(tmp_path / "run" / "best.pt", str(tmp_path / "data" / "manifest.csv"))
    assert str(tmp_path) not in text
    assert "--checkpoint run/best.pt --data data/manifest.csv" in text


def test_next_steps_name_the_checkpoint_and_the_data(tmp_path):
    text = next_steps(tmp_path / "best.pt", "faces/manifest.csv")
    assert "agekit eval --checkpoint" in text and "best.pt --data faces/manifest.csv" in text
    assert "agekit predict --checkpoint" in text
