"""agekit.lesson: parameters, settings, run names, the run cache, claims and where the course lives."""

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from agekit import exercises, lesson
from agekit.cli import main
from agekit.config import ConfigError, preset, resolve_preset, with_epochs
from agekit.references import select_references

REPO = Path(__file__).resolve().parent.parent


def _namespace(injected: dict | None = None, **values):
    """A kernel's globals after the parameters cell and, optionally, papermill's injected cell."""
    namespace = {"__annotations__": {name: type(value) for name, value in values.items()}, **values}
    history = ["", "".join(f"{k}: {type(v).__name__} = {v!r}  # ...\n" for k, v in values.items())]
    if injected is not None:
        history.append("# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items()))
        namespace.update(injected)
    namespace["In"] = history + ["from agekit import lesson\nP = lesson.parameters(globals())"]
    return namespace


# ----------------------------------------------------------------------------- parameters


def test_an_injected_name_the_lesson_lacks_is_refused_and_the_parameters_are_listed():
    ns = _namespace(injected={"epoch": 5}, fast=False, seed=0, device="auto", epochs=0)
    with pytest.raises(ValueError) as error:
        lesson.parameters(ns)
    message = str(error.value)
    assert "'epoch'" in message and "Did you mean 'epochs'?" in message
    assert "fast (bool), seed (int), device (str), epochs (int)" in message
    with pytest.raises(ValueError, match="no parameter 'foo'"):
        lesson.parameters(_namespace(injected={"foo": 1}, fast=False, seed=0, device="auto"))


def test_injected_names_the_lesson_declares_are_accepted():
    ns = _namespace(injected={"seed": 4}, fast=False, seed=0, device="auto")
    assert lesson.parameters(ns).seed == 4


def test_bool_hint_says_true_or_false():
    with pytest.raises(TypeError, match="pass True or False"):
        lesson.parameters(_namespace(fast=False, seed=0, device="auto") | {"fast": "yes"})


def test_a_device_this_machine_lacks_stops_at_the_parameters(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="Parameter 'device'.*no CUDA GPU"):
        lesson.parameters(_namespace(fast=False, seed=0, device="cuda"))


def test_ranges_and_choices(monkeypatch):
    monkeypatch.delenv("AGEKIT_FAST", raising=False)
    with pytest.raises(ValueError, match="'epochs' must not be negative"):
        lesson.parameters(_namespace(fast=False, seed=0, device="auto", epochs=-1), non_negative=["epochs"])
    with pytest.raises(ValueError, match="'preset_name' must be one of"):
        lesson.parameters(_namespace(fast=False, seed=0, device="auto", preset_name="big"))
    assert lesson.parameters(_namespace(fast=False, seed=0, device="auto", epochs=0), non_negative=["epochs"]).epochs == 0


def test_fast_mode_is_announced_once_and_claims_are_then_not_checked(monkeypatch, capsys):
    monkeypatch.setenv("AGEKIT_FAST", "1")
    assert lesson.parameters(_namespace(fast=False, seed=0, device="auto")).fast is True
    lesson.claim(False, "the age-only network finds gender")  # not raised: a smoke test
    printed = capsys.readouterr().out
    assert printed.count("FAST MODE") == 1 and "not checked" in printed
    assert "claim not checked (fast mode, smoke test): the age-only network finds gender" in printed


def test_full_mode_claims_fail_the_cell_when_false(monkeypatch, capsys):
    monkeypatch.delenv("AGEKIT_FAST", raising=False)
    lesson.parameters(_namespace(fast=False, seed=0, device="auto"))
    lesson.claim(3 < 4, "three is less than four")
    assert "claim holds: three is less than four" in capsys.readouterr().out
    with pytest.raises(lesson.ClaimError, match="four is less than three"):
        lesson.claim(4 < 3, "four is less than three")


def test_claims_are_reported_not_enforced_when_papermill_changed_a_parameter(monkeypatch, capsys):
    monkeypatch.delenv("AGEKIT_FAST", raising=False)
    lesson.parameters(_namespace(injected={"seed": 0}, fast=False, seed=0, device="auto"))
    with pytest.raises(lesson.ClaimError):  # the default value injected again: still the default run
        lesson.claim(False, "a claim of the default run")
    lesson.parameters(_namespace(injected={"seed": 3}, fast=False, seed=0, device="auto"))
    lesson.claim(False, "a claim of the default run")
    printed = capsys.readouterr().out
    assert "Parameters changed from the lesson's defaults (seed)" in printed
    assert "claim does not hold with these parameters (the text describes the default run): a claim" in printed


# ----------------------------------------------------------------------------- settings


def test_presets_resolve_one_way(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_preset("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset("auto", "auto") == "gpu"
    assert resolve_preset("cpu") == "cpu"
    with pytest.raises(ConfigError, match="preset must be one of"):
        resolve_preset("cpuu")


def test_with_epochs_moves_the_learning_rate_drops_to_the_same_places():
    cpu = preset("cpu")  # 8 epochs, drops after 5 and 7
    assert with_epochs(cpu, 5).optim.milestones == [3, 4]            # round(25/8), round(35/8)
    assert with_epochs(cpu, 30).optim.milestones == [19, 26]         # round(150/8), round(210/8)
    assert with_epochs(cpu, 2).optim.milestones == [1]               # round(10/8) = 1; round(14/8) = 2 is not < 2
    assert with_epochs(cpu, 1).optim.milestones == []                 # no drop before the only epoch ends
    assert with_epochs(cpu, 8).optim.milestones == cpu.optim.milestones
    assert cpu.train.epochs == 8, "the preset itself is left alone"


def test_settings_follow_the_parameters(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    full = lesson.settings(SimpleNamespace(fast=False, seed=2, device="cpu", epochs=5), "rapl",
                           {"rapl.variant": "EVR"})
    assert (full.preset, full.train.epochs, full.optim.milestones) == ("cpu", 5, [3, 4])
    assert (full.data.seed, full.train.seed, full.train.device, full.rapl.variant) == (2, 2, "cpu", "EVR")
    default = lesson.settings(SimpleNamespace(fast=False, seed=0, device="auto", epochs=0), "siamese")
    assert (default.preset, default.train.epochs) == ("cpu", preset("cpu", "siamese").train.epochs)
    fast = lesson.settings(SimpleNamespace(fast=True, seed=0, device="auto", epochs=9), "rapl", fast_epochs=3)
    assert (fast.preset, fast.train.epochs) == ("smoke", 3)
    assert lesson.settings(SimpleNamespace(fast=True, seed=0, device="auto"), "rapl").train.epochs == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lesson.settings(SimpleNamespace(fast=False, seed=0, device="cpu", preset_name="gpu")).preset == "gpu"
    on_ir50 = lesson.settings(SimpleNamespace(fast=False, seed=0, device="auto", preset_name="auto"), "siamese",
                              gpu="gpu_ir50")
    assert (on_ir50.preset, on_ir50.model.backbone) == ("gpu_ir50", "ir50")
    paper = lesson.settings(SimpleNamespace(fast=False, seed=0, device="auto", preset_name="auto"), "siamese")
    assert (paper.preset, paper.model.backbone, paper.optim.name) == ("gpu", "inception_v3", "adadelta")


def test_run_names_come_from_the_settings(tmp_path):
    P = SimpleNamespace(fast=False, seed=0, device="cpu", epochs=0)
    evr = lesson.settings(P, "rapl", {"rapl.variant": "EVR"})
    assert lesson.run_name(evr) == "rapl_EVR_cpu_seed0"
    # Another lesson asking for the same run by another route gets the same folder ...
    same = lesson.settings(SimpleNamespace(fast=False, seed=0, device="auto"), "rapl",
                           {"rapl.variant": "EVR", "optim.milestones": [5, 7], "train.eval_batch_size": 64})
    assert lesson.run_name(same) == lesson.run_name(evr)
    # ... and every setting that changes what is learnt changes the name.
    short = lesson.settings(SimpleNamespace(fast=False, seed=1, device="cpu", epochs=5), "rapl",
                            {"rapl.variant": "EVR+RAPL+GP", "rapl.lam": 0.5})
    assert lesson.run_name(short) == "rapl_EVR+RAPL+GP_cpu_seed1_lam0.5_milestones3-4_epochs5"
    siamese = lesson.settings(P, "siamese", {"siamese.gender": False, "siamese.margin": 2.0, "rapl.mu": 3.0})
    assert lesson.run_name(siamese) == "siamese_nogender_cpu_seed0_margin2", "RAPL's settings do not name a Siamese run"
    one, two = tmp_path / "one" / "agedb", tmp_path / "two" / "agedb"
    for folder, rows in ((one, "index,path\n0,a.jpg\n"), (two, "index,path\n0,a.jpg\n")):
        folder.mkdir(parents=True)
        (folder / "manifest.csv").write_text(rows)
    on = [lesson.run_name(lesson.settings(P, "rapl", {"data.manifest": str(f / "manifest.csv")})) for f in (one, two)]
    assert on[0] == on[1] and on[0].startswith("rapl_EVR+RAPL+GP_cpu_seed0_data-agedb-"), "same data, same name"
    (two / "manifest.csv").write_text("index,path\n0,b.jpg\n")
    assert lesson.run_name(lesson.settings(P, "rapl", {"data.manifest": str(two / "manifest.csv")})) != on[0]
    names = {lesson.run_name(lesson.settings(P, "rapl", {"rapl.variant": v}))
             for v in ("FC", "EVR", "EVR+GP", "EVR+RAPL", "EVR+RAPL+GP")}
    assert len(names) == 5


def test_trained_trains_once_and_then_reuses_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AGEKIT_RUNS", str(tmp_path))
    config = lesson.settings(SimpleNamespace(fast=True, seed=0, device="cpu"), "rapl", {"rapl.variant": "EVR"})
    first = lesson.trained(config, verbose=False)
    folder = tmp_path / "fast" / "rapl_EVR_smoke_seed0"
    assert (folder / "best.pt").is_file() and "trained (" in capsys.readouterr().out
    stamp = (folder / "best.pt").stat().st_mtime_ns
    again = lesson.trained(config)
    assert "loaded (trained earlier)" in capsys.readouterr().out
    assert (folder / "best.pt").stat().st_mtime_ns == stamp, "a finished run is not trained again"
    assert again.test_metrics == first.test_metrics and again.best_epoch == first.best_epoch
    assert again.data is not None and len(again.data.test) == len(first.data.test)


# ----------------------------------------------------------------------------- where the course lives


def _course_tree(root: Path) -> Path:
    (root / "notebooks" / "student").mkdir(parents=True)
    for name in ("00_welcome.ipynb", "01_synthetic_faces.ipynb"):
        shutil.copy(REPO / "notebooks" / name, root / "notebooks" / name)
    return root


def test_the_workspace_is_found_from_where_the_user_works(tmp_path):
    checkout = _course_tree(tmp_path / "checkout")
    assert lesson.workspace(checkout / "notebooks") == checkout.resolve()
    assert lesson.workspace(checkout / "notebooks" / "student") == checkout.resolve()
    assert lesson.notebooks_dir(checkout) == (checkout / "notebooks").resolve()
    own = tmp_path / "my-lessons"
    own.mkdir()
    shutil.copy(REPO / "notebooks" / "00_welcome.ipynb", own / "00_welcome.ipynb")
    assert lesson.workspace(own) == own.resolve() and lesson.notebooks_dir(own) == own.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert lesson.workspace(elsewhere) == elsewhere.resolve()
    # a notebook run on its own (the grader's folder) still finds the course's lessons; the course runner does not
    assert lesson.notebooks_dir(elsewhere) == (REPO / "notebooks").resolve()
    assert lesson.notebooks_dir(elsewhere, installed=False) == elsewhere.resolve()
    assert lesson.runs_dir(True, start=checkout / "notebooks") == (checkout / "runs" / "fast").resolve()


def _agekit(capsys, monkeypatch, cwd: Path, *argv: str) -> tuple[int, str, str]:
    """``agekit ARGV`` run from ``cwd`` (in this process, as the console script calls it): code, stdout, stderr."""
    monkeypatch.chdir(cwd)
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_two_checkouts_sharing_one_environment_keep_their_lessons_and_caches_apart(tmp_path, monkeypatch, capsys):
    """One installed agekit, two working copies: each course run and student copy stays in its own copy."""
    a, b = _course_tree(tmp_path / "a"), _course_tree(tmp_path / "b")
    monkeypatch.delenv("AGEKIT_RUNS", raising=False)
    monkeypatch.setenv("AGEKIT_FAST", "1")
    before = {p: p.stat().st_mtime_ns for p in (REPO / "notebooks" / "student").glob("*.ipynb")}
    code, _, err = _agekit(capsys, monkeypatch, a / "notebooks", "course", "--student")
    assert code == 0, err
    assert sorted(p.name for p in (a / "notebooks" / "student").iterdir()) == ["00_welcome.ipynb",
                                                                              "01_synthetic_faces.ipynb"]
    assert not any((b / "notebooks" / "student").iterdir())
    own = tmp_path / "student-own"
    code, _, err = _agekit(capsys, monkeypatch, b, "course", "--student", str(own))
    assert code == 0, err
    assert (own / "00_welcome.ipynb").is_file()
    code, out, err = _agekit(capsys, monkeypatch, b, "course", "--fast", "--only", "00")
    assert code == 0, out + err
    assert (b / "runs" / "course" / "00_welcome.ipynb").is_file()
    assert not (a / "runs").exists(), "checkout a's folder is untouched by b's course"
    assert {p: p.stat().st_mtime_ns for p in (REPO / "notebooks" / "student").glob("*.ipynb")} == before
    assert lesson.runs_dir(start=b) == (b / "runs").resolve()


def test_course_without_lessons_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AGEKIT_RUNS", raising=False)
    code, _, err = _agekit(capsys, monkeypatch, tmp_path, "course", "--fast")
    assert code == 2
    assert "No lessons" in err and "--notebooks" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- exercise checks


def test_a_check_explains_a_function_that_returns_nothing():
    def mae(pred, true):
        (pred - true).abs().mean()  # forgot the return

    with pytest.raises(AssertionError, match=r"mae\(\) returned None: it must end with a `return`"):
        exercises.check_mae(mae)


def test_reference_check_refuses_last_face_wins_ties():
    def last_wins(features, pred, true, values):
        error = (pred - true.float()).abs()
        rows = []
        for value in values.tolist():
            index = torch.nonzero(true == value).flatten()
            best = error[index]
            rows.append(features[index[torch.nonzero(best == best.min()).flatten()[-1]]])
        return torch.stack(rows)

    def first_wins(features, pred, true, values):
        return select_references(features, pred, true, values)

    exercises.check_select_references(first_wins)
    with pytest.raises(AssertionError, match="first such face"):
        exercises.check_select_references(last_wins)
