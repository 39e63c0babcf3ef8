"""The command line: help and errors without torch, "did you mean", help text, `agekit data synth`, and the
README's chain synth -> train -> eval run as written."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
from agekit.data.preview import _pick_for_grid
from agekit.data.synthetic import make_synthetic_faces

DRIVER = """
import contextlib, io, json, sys
from agekit.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps({"torch": "torch" in sys.modules, "results": results}))
"""
MY_COMMANDS = ["data synth", "train", "eval", "predict", "convert rapl-authors"]
HELP = [["--help"], ["--version"], ["train", "--help"], ["data", "synth", "--help"], ["eval", "--help"],
        ["predict", "--help"], ["convert", "rapl-authors", "--help"], ["course", "--help"], ["grade", "--help"]]
MISTAKES = [
    (["tran"], "invalid choice 'tran' (did you mean 'train'?)"),
    (["train", "--out", "x", "--epohcs", "3"], "unrecognized arguments: --epohcs 3 (did you mean '--epochs'?)"),
    (["train", "--out", "x", "--preset", "cpuu"], "invalid choice 'cpuu' (did you mean 'cpu'?)"),
    (["eval", "--checkpoint", "x.pt", "--splt", "val"], "(did you mean '--split'?)"),
    (["data", "synht", "--out", "D"], "(did you mean 'synth'?)"),
    (["train", "--out", "x", "--set", "optim.lrr=1"], "Did you mean 'optim.lr'?"),
    (["train", "--out", "x", "--epochs", "two"], "invalid int value: 'two'"),
    (["eval", "--checkpoint", "x.pt", "--bogus"], "usage: agekit eval "),
]


@pytest.fixture(scope="module")
def driven():
    """Every help and mistake above, run by the CLI in ONE fresh interpreter: (torch imported?, results)."""
    argvs = HELP + [argv for argv, _ in MISTAKES]
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["torch"], dict(zip(map(tuple, argvs), report["results"]))


def test_help_and_argument_errors_answer_without_importing_torch(driven):
    torch_loaded, results = driven
    assert not torch_loaded
    for argv in HELP:
        code, out, _ = results[tuple(argv)]
        assert code == 0 and out.startswith(("usage: agekit", "agekit ")), argv


@pytest.mark.parametrize("argv, expected", MISTAKES)
def test_argument_errors_suggest_the_nearest_name(driven, argv, expected):
    code, _, err = driven[1][tuple(argv)]
    assert code == 2 and "Traceback" not in err
    assert expected in err


def test_an_unknown_option_shows_the_usage_of_its_subcommand(driven):
    _, _, err = driven[1][("eval", "--checkpoint", "x.pt", "--bogus")]
    assert err.startswith("usage: agekit eval ") and "agekit eval: error: unrecognized arguments: --bogus" in err


def subcommands(parser=None, prefix=""):
    """{"train": parser, "data synth": parser, ...} for every (nested) command."""
    found = {}
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(subcommands(sub, prefix + name + " "))
    return found


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
    info = json.loads((out / "prepare.json").read_text())  # where the faces came from, not the temporary folder
    assert info["root"] == "agekit data synth --n 60 --size 16 --seed 2 --difficulty standard"
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


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Command line\n"):text.index("\n## ", text.index("## Command line\n") + 1)]


def readme_chain() -> str:
    (line,) = [line for line in readme_section().splitlines() if line.startswith("agekit data synth --out D ")]
    return line


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` in bash, with this interpreter's ``agekit`` first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def table_numbers(text: str) -> dict[str, float]:
    """The metric rows of `agekit eval`'s table: {"MAE": 8.68, "CS5": 30.0, ...}."""
    rows = re.findall(r"^  (\S.*?)\s+(-?\d+\.\d+) (?:years|%)$", text, flags=re.MULTILINE)
    return {name: float(number) for name, number in rows}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    command = readme_chain()
    assert command.count(" && ") == 2 and "--preset smoke" in command
    done = shell(command, folder)
    assert done.returncode == 0, done.stderr
    return folder, done


def test_the_readme_chain_runs_and_eval_prints_what_the_run_recorded(chain):
    folder, done = chain
    recorded = json.loads((folder / "R" / "metrics.json").read_text())["test"]
    shown = table_numbers(done.stdout)
    names = {"mae": "MAE", "cs5": "CS5", "rmse": "RMSE", "gender_acc": "gender accuracy"}
    assert set(shown) == {names[key] for key in recorded}
    for key, value in recorded.items():
        assert shown[names[key]] == round(value, 2), key
    as_json = shell("agekit eval --checkpoint R/best.pt --data D/manifest.csv --json", folder)
    measured = json.loads(as_json.stdout)
    assert measured["faces"] == sum(1 for line in (folder / "D" / "manifest.csv").read_text().splitlines()
                                    if line.endswith(",test"))
    for key, value in recorded.items():
        assert measured[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_predict_warns_once_per_image_that_is_not_a_face_crop(chain):
    folder, _ = chain
    Image.new("RGB", (200, 40), (120, 90, 80)).save(folder / "wide.png")
    Image.new("RGB", (24, 24), (120, 90, 80)).save(folder / "crop.png")
    done = shell("agekit predict --checkpoint R/best.pt wide.png crop.png", folder)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("agekit: warning:")]
    assert len(warnings) == 1 and "wide.png is 200x40 px, far from square" in warnings[0]
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["wide.png", "crop.png"]


def test_the_readme_lists_each_command_as_its_help_shows_it():
    section = readme_section()
    block = section[section.index("```text\n") + 8:]
    block = block[:block.index("```")]
    listed = " ".join(block.split()).replace(" agekit ", "\nagekit ").splitlines()
    commands = subcommands()
    leaves = [name for name, parser in commands.items() if not any(n.startswith(name + " ") for n in commands)]
    expected = [" ".join(commands[name].format_usage().split()).removeprefix("usage: ") for name in leaves]
    assert sorted(listed) == sorted(expected)
    assert build_parser().format_usage().startswith("usage: agekit")
