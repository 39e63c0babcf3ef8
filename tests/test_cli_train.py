"""The `agekit train / eval / predict` command line at the smoke preset."""

import argparse
import json
import runpy
import subprocess
import sys

import pytest
import torch
from PIL import Image

from agekit.cli import main
from agekit.config import config_from_dict, load_config, preset
from agekit.data.store import StoreWriter
from agekit.training.checkpoint import load_checkpoint
from agekit.training.trainer import load_data


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "face.png"
    pixels = torch.linspace(0, 255, 40 * 30 * 3).reshape(40, 30, 3).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path)  # not square and not the model's size
    return path


@pytest.mark.parametrize("method", ["rapl", "siamese"])
def test_train_eval_predict_contract(capsys, tmp_path, face_png, method):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--method", method, "--preset", "smoke", "--out", out, "--no-progress",
                            "--seed", 3, "--set", "optim.lr=2e-3")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"config.toml", "last.pt", "best.pt", "metrics.json", "metrics.csv"}
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["test"]) >= {"mae", "cs5", "rmse", "gender_acc"} and len(report["history"]) == 2
    assert json.loads(stdout.strip().splitlines()[-1])["test"] == report["test"]
    config = load_config(out / "config.toml")
    assert (config.method, config.train.seed, config.optim.lr) == (method, 3, 2e-3)
    assert config_from_dict(load_checkpoint(out / "last.pt")["config"]) == config

    code, stdout, err = run(capsys, "eval", "--checkpoint", out / "best.pt", "--device", "cpu", "--json")
    assert code == 0, err
    metrics = json.loads(stdout)
    assert metrics["split"] == "test" and metrics["mae"] == pytest.approx(report["test"]["mae"], rel=1e-9)

    code, stdout, err = run(capsys, "predict", "--checkpoint", out / "best.pt", face_png, face_png, "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in stdout.strip().splitlines()]
    assert len(rows) == 2 and rows[0] == rows[1] and 0 < rows[0]["age"] < 120
    assert rows[0]["gender"] in ("male", "female")


def write_manifest(directory, data):
    """A prepared data set in the manifest layout, made from the smoke faces, without genders, at 32 px."""
    directory.mkdir()
    sets = [(name, data.split(name)) for name in ("train", "val", "test")]
    images = torch.cat([d.images for _, d in sets])
    images = torch.nn.functional.interpolate(images.float(), size=32, mode="bilinear").round().to(torch.uint8)
    writer = StoreWriter(directory, len(images), 32)
    for row, image in enumerate(images):
        writer.write(row, image.numpy())
    for temporary, final in writer.finish(len(images)):
        temporary.replace(final)
    lines = ["index,path,age,gender,identity,split"]
    for name, d in sets:
        lines += [f"{len(lines) - 1},face{len(lines)}.jpg,{int(age)},,p{int(person)},{name}"
                  for age, person in zip(d.ages, d.identities)]
    (directory / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory / "manifest.csv"


def test_prepared_data_reach_the_trainer_as_one_splits_object(tmp_path):
    from agekit.data.prepare import load_prepared
    from agekit.training.data import DataSplits, as_splits, data_fingerprint

    smoke = load_data(preset("smoke"))
    manifest = write_manifest(tmp_path / "prepared", smoke)
    config = preset("smoke")
    config.data.manifest = str(manifest)
    from_config, given = load_data(config), DataSplits.of(load_prepared(manifest))
    assert type(from_config) is type(given) is DataSplits and as_splits(given) is given
    for name in ("train", "val", "test"):
        assert torch.equal(from_config.split(name).ages, smoke.split(name).ages)  # the manifest's own split
        assert torch.equal(from_config.split(name).images[:], given.split(name).images[:])
    assert torch.equal(given.age_labels.values, torch.unique(smoke.train.ages))
    assert data_fingerprint(from_config) == data_fingerprint(given)


def test_prepared_data_without_gender(capsys, tmp_path):
    manifest = write_manifest(tmp_path / "prepared", load_data(preset("smoke")))
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--preset", "smoke", "--data", manifest, "--out", out, "--no-progress",
                            "--epochs", 1)
    assert code == 0, err
    assert "no gender labels" in stdout + err and "EVR+RAPL+GP -> EVR+RAPL" in stdout + err
    config = load_config(out / "config.toml")
    assert config.rapl.variant == "EVR+RAPL" and config.data.manifest == str(manifest)
    report = json.loads((out / "metrics.json").read_text())
    assert "gender_acc" not in report["test"]
    code, stdout, err = run(capsys, "eval", "--checkpoint", out / "best.pt", "--data", manifest, "--split", "val",
                            "--json")
    assert code == 0, err
    metrics = json.loads(stdout)
    assert metrics["faces"] == len(load_data(config).val)
    assert metrics["mae"] == pytest.approx(report["history"][0]["val_mae"], rel=1e-9)


def test_interrupted_cli_run_resumes(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--method", "rapl", "--preset", "smoke", "--out", out, "--no-progress", "--variant", "EVR+GP"]
    code, stdout, err = run(capsys, *args, "--set", "train.stop_after=1")
    assert code == 0 and "--resume" in stdout and load_checkpoint(out / "last.pt")["epoch"] == 1
    code, _, err = run(capsys, *args)
    assert code == 2 and "--resume" in err  # an existing run is not overwritten
    code, _, err = run(capsys, "train", "--out", out, "--resume", "--no-progress")
    assert code == 0, err
    report = json.loads((out / "metrics.json").read_text())
    assert report["complete"] and [h["epoch"] for h in report["history"]] == [1, 2]
    code, _, err = run(capsys, "train", "--out", out, "--resume", "--set", "optim.gamma=0.5")
    assert code == 2 and "optim.gamma" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "smoke", "--set", "optim.lrr=1"], "Unknown setting 'optim.lrr'"),
    (["train", "--preset", "smoke", "--set", "train.epochs=two"], "'train.epochs' must be a whole number"),
    (["train", "--preset", "smoke", "--config", "missing.toml"], "missing.toml"),
    (["train", "--preset", "smoke", "--method", "siamese", "--variant", "EVR"], "--variant"),
    (["train", "--preset", "smoke", "--data", "no/manifest.csv"], "manifest"),
    (["train", "--resume"], "no last.pt"),
    (["eval", "--checkpoint", "missing.pt"], "missing.pt"),
])
def test_user_errors_are_one_line(capsys, tmp_path, argv, message):
    if "--out" not in argv and argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "x")]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unsafe_and_foreign_checkpoints_are_refused(capsys, tmp_path, face_png):
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "agekit-checkpoint", "version": 1, "config": argparse.Namespace(lr=1)}, pickled)
    code, _, err = run(capsys, "eval", "--checkpoint", pickled)
    assert code == 2 and "pickled" in err and len(err.strip().splitlines()) == 1
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    code, _, err = run(capsys, "predict", "--checkpoint", foreign, face_png)
    assert code == 2 and "not an agekit checkpoint" in err


def test_python_dash_m_entry_point_reports_errors_without_traceback(tmp_path, monkeypatch, capsys):
    """``python -m agekit`` runs agekit/__main__.py; run here as Python would (a fresh process: see the --version test)."""
    monkeypatch.setattr(sys, "argv", ["agekit", "train", "--preset", "smoke", "--out", str(tmp_path), "--set", "nope=1"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("agekit", run_name="__main__", alter_sys=True)
    stderr = capsys.readouterr().err
    assert done.value.code == 2
    assert stderr.startswith("agekit: error: Unknown setting 'nope'") and "Traceback" not in stderr


def test_version_is_the_package_version():
    import agekit

    done = subprocess.run([sys.executable, "-m", "agekit", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"agekit {agekit.__version__}"
