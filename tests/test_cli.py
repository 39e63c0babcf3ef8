"""The command line itself: help and errors without torch, "did you mean", help text, `agekit data synth`."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from agekit.cli import build_parser, main
from agekit.cli._parser import Formatter
from agekit.cli.data import png_name, preview_ages
from agekit.cli.runs import crop_warning
from agekit.config import METHODS, PRESETS, describe_preset, preset
from agekit.data.prepare import load_prepared
from agekit.data.splits import find_leakage
from agekit.data.synthetic import _pick_for_grid, make_synthetic_faces

DRIVER = """
import sys
from agekit.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(f"@@ exit={code} torch={'torch' in sys.modules}", file=sys.stderr)
"""
MY_COMMANDS = ["data synth", "train", "eval", "predict", "convert rapl-authors"]


def drive(*argv):
    """Run the CLI in a fresh interpreter: (exit status, torch imported?, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=120)
    marker = done.stderr.strip().splitlines()[-1]
    assert marker.startswith("@@ "), done.stderr
    fields = dict(item.split("=") for item in marker[3:].split())
    return int(fields["exit"]), fields["torch"] == "True", done.stdout, done.stderr


def subcommands(parser=None, prefix=""):
    """{"train": parser, "data synth": parser, ...} for every (nested) command."""
    found = {}
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(subcommands(sub, prefix + name + " "))
    return found


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["train", "--help"], ["data", "synth", "--help"], ["eval", "--help"],
    ["predict", "--help"], ["convert", "rapl-authors", "--help"], ["course", "--help"], ["grade", "--help"],
])
def test_help_answers_without_importing_torch(argv):
    code, torch_loaded, out, _ = drive(*argv)
    assert code == 0 and not torch_loaded
    assert out.startswith(("usage: agekit", "agekit "))


@pytest.mark.parametrize("argv, expected", [
    (["tran"], "invalid choice 'tran' (did you mean 'train'?)"),
    (["train", "--out", "x", "--epohcs", "3"], "unrecognized arguments: --epohcs 3 (did you mean '--epochs'?)"),
    (["train", "--out", "x", "--preset", "cpuu"], "invalid choice 'cpuu' (did you mean 'cpu'?)"),
    (["eval", "--checkpoint", "x.pt", "--splt", "val"], "(did you mean '--split'?)"),
    (["data", "synht", "--out", "D"], "(did you mean 'synth'?)"),
    (["train", "--out", "x", "--set", "optim.lrr=1"], "Did you mean 'optim.lr'?"),
    (["train", "--out", "x", "--epochs", "two"], "invalid int value: 'two'"),
])
def test_argument_errors_suggest_without_importing_torch(argv, expected):
    code, torch_loaded, _, err = drive(*argv)
    assert code == 2 and not torch_loaded and "Traceback" not in err
    assert expected in err


def test_an_unknown_option_shows_the_usage_of_its_subcommand():
    _, _, _, err = drive("eval", "--checkpoint", "x.pt", "--bogus")
    assert err.startswith("usage: agekit eval ") and "agekit eval: error: unrecognized arguments: --bogus" in err


def test_every_option_of_these_commands_has_help_that_shows_its_default():
    commands = subcommands()
    for name in MY_COMMANDS:
        parser = commands[name]
        assert parser.epilog.startswith("examples:\n") and f"\n  agekit {name} " in parser.epilog, name
        assert parser.epilog in parser.format_help()
        formatter = Formatter(prog="agekit")
        required = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in parser._actions:
            assert action.help, (name, action.dest)
            flag = isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction))
            if flag or not action.option_strings or action.required or action in required:
                continue  # flags are off unless given; required options have no default
            text = formatter._get_help_string(action)
            assert action.help and "default" in text, (name, action.option_strings)


def test_train_help_explains_every_preset_from_the_presets_themselves():
    text = subcommands()["train"].format_help()
    for name in PRESETS:
        for method in METHODS:
            assert describe_preset(name, method) in text
    cpu = preset("cpu")
    assert describe_preset("cpu") == (f"ir_small at {cpu.data.image_size} px, {cpu.data.n} synthetic faces, "
                                      f"{cpu.train.epochs} epochs, batch {cpu.train.batch_size}, adam lr 0.001")


def test_parsed_names_the_lessons_read_stay():
    args = build_parser().parse_args(["train", "--method", "rapl", "--preset", "gpu", "--variant", "EVR",
                                      "--data", "m.csv", "--set", "optim.lr=1e-6", "--out", "r"])
    assert (args.method, args.preset, args.variant, args.data, args.overrides) == ("rapl", "gpu", "EVR", "m.csv",
                                                                                   ["optim.lr=1e-6"])


def test_a_config_file_is_read_once_and_named_options_win(tmp_path, monkeypatch, capsys):
    import agekit.config as config_module

    path = tmp_path / "c.toml"
    path.write_text('method = "siamese"\npreset = "smoke"\n[optim]\nlr = 0.5\n[train]\nseed = 4\n', encoding="utf-8")
    reads = []
    original = config_module.read_toml
    monkeypatch.setattr(config_module, "read_toml", lambda p: reads.append(p) or original(p))
    from agekit.cli.runs import train_config

    args = build_parser().parse_args(["train", "--config", str(path), "--seed", "7", "--set", "optim.gamma=0.5",
                                      "--epochs", "4", "--out", str(tmp_path / "r")])
    config = train_config(args)
    assert len(reads) == 1
    assert (config.method, config.preset, config.optim.lr, config.optim.gamma) == ("siamese", "smoke", 0.5, 0.5)
    assert (config.train.seed, config.train.epochs, config.data.n) == (7, 4, preset("smoke").data.n)
    path.write_text('preset = "fast"\n', encoding="utf-8")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert "preset must be one of" in capsys.readouterr().err


def test_crop_warning():
    assert crop_warning("a.png", 30, 40, 24) == ""
    assert crop_warning("a.png", 112, 112, 112) == ""
    assert "far from square" in crop_warning("wide.png", 100, 30, 24)
    tall = crop_warning("tall.jpg", 30, 100, 112)
    assert "far from square" in tall and "larger" not in tall and tall.startswith("agekit: warning: tall.jpg is 30x100")
    big = crop_warning("photo.jpg", 4000, 3000, 112)
    assert "far larger than the 112 px faces" in big and "square" not in big


def test_synth_writes_the_prepared_format_with_the_faces_pixels(tmp_path, capsys):
    out = tmp_path / "D"
    assert main(["data", "synth", "--out", str(out), "--n", "60", "--size", "16", "--seed", "2", "--png"]) == 0
    faces = make_synthetic_faces(n=60, image_size=16, seed=2)
    data = load_prepared(out / "manifest.csv")
    order = torch.tensor([int(path.split("_")[0]) for path in data.paths])  # the face number in each file name
    assert sorted(order.tolist()) == list(range(60))
    assert torch.equal(data.store.read_all(), faces.images[order])
    assert torch.equal(data.ages, faces.ages[order]) and torch.equal(data.genders, faces.genders[order])
    assert data.identities == [f"person{int(p):04d}" for p in faces.identities[order]]
    assert find_leakage(data.identities, data.split) == {}
    assert set(data.split.tolist()) == {0, 1, 2}
    for k in (0, 37):
        png = out / "faces" / png_name(k, int(faces.identities[k]), int(faces.ages[k]), int(faces.genders[k]))
        pixels = torch.from_numpy(np.array(Image.open(png))).permute(2, 0, 1)
        assert torch.equal(pixels, faces.images[k])
    assert "manifest: " in capsys.readouterr().out


def test_png_names_follow_the_agedb_layout():
    assert png_name(7, 3, 41, 1) == "00007_person0003_41_f.png"
    assert png_name(12, 250, 5, 0) == "00012_person0250_5_m.png"


@pytest.mark.parametrize("n", [30, 400])
def test_preview_columns_show_faces_of_the_age_they_are_labelled_with(n):
    faces = make_synthetic_faces(n=n, image_size=16, seed=1)
    ages = preview_ages(faces.ages, faces.genders)
    assert ages == sorted(set(ages)) and len(ages) <= 8
    index, _ = _pick_for_grid(faces, ages, 2)  # the faces face_grid puts in each column
    shown = faces.ages[index]  # [rows, columns]
    assert torch.equal(shown, torch.tensor(ages).expand_as(shown))
    if n == 400:
        assert len(ages) == 8


def test_synth_preview_is_written(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "D"), "--n", "80", "--size", "16", "--preview"]) == 0
    faces = make_synthetic_faces(n=80, image_size=16, seed=0)
    columns = len(preview_ages(faces.ages, faces.genders))
    assert columns >= 2
    assert Image.open(tmp_path / "D" / "preview.png").size == (90 + columns * 18, 22 + 4 * 18)  # labels + tiles
    assert "preview: " in capsys.readouterr().out
