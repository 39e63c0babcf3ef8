"""Notebook parameter checks, student copies and exercise checks."""

import json
from pathlib import Path

import pytest
import torch

from agekit import course, exercises
from agekit.losses import expected_age, revised_contrastive_loss
from agekit.metrics import cumulative_score, mae


def _namespace(**values):
    annotations = {name: type(value) for name, value in values.items()}
    return {"__annotations__": annotations, **values}


def test_parameters_accept_good_values_and_apply_environment(monkeypatch):
    ns = _namespace(fast=False, seed=3, device="auto", lr=0.1)
    monkeypatch.delenv("AGEKIT_FAST", raising=False)
    p = course.parameters(ns)
    assert (p.fast, p.seed, p.device, p.lr) == (False, 3, "auto", 0.1)
    monkeypatch.setenv("AGEKIT_FAST", "1")
    assert course.parameters(ns).fast is True
    ns["lr"] = 1  # papermill may inject an int for a float
    assert course.parameters(ns).lr == 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(seed="three"), "'seed' must be int, got 'three'"),
        (dict(seed=True), "'seed' must be int"),
        (dict(fast=1), "'fast' must be bool"),
        (dict(device="tpu"), "'device' must be one of"),
        (dict(epochs=0), "'epochs' must be positive"),
    ],
)
def test_parameters_reject_bad_values(change, message):
    ns = _namespace(fast=False, seed=0, device="auto", epochs=2)
    ns.update(change)
    with pytest.raises((TypeError, ValueError), match=message):
        course.parameters(ns, positive=["epochs"])


def _notebook():
    def code(source, tags=()):
        return {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)}, "outputs": [{"x": 1}],
                "execution_count": 4}

    return {
        "cells": [
            code("fast: bool = False", ["parameters"]),
            code("def mae(pred, true):\n    return (pred - true).abs().mean()", ["solution"]),
            code("check_mae(mae)"),
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }


def test_student_copy_replaces_solutions_only(tmp_path):
    student = course.student_copy(_notebook())
    sources = [c["source"] for c in student["cells"]]
    assert sources[0] == "fast: bool = False" and sources[2] == "check_mae(mae)"
    assert sources[1].startswith("def mae(pred, true):") and "NotImplementedError" in sources[1]
    assert "abs()" not in sources[1]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in student["cells"])
    assert student["cells"][1]["metadata"]["tags"] == ["exercise"]
    # the placeholder is valid Python that fails loudly when run
    namespace = {}
    exec(sources[1], namespace)
    with pytest.raises(NotImplementedError):
        namespace["mae"](1, 2)


def test_student_copy_drops_run_metadata():
    notebook = _notebook()
    notebook["metadata"]["papermill"] = {"duration": 3.2}
    notebook["cells"][0]["metadata"] = {"papermill": {"duration": 0.1}, "tags": ["parameters"]}
    notebook["cells"][2]["metadata"] = {"papermill": {"duration": 0.2}, "tags": [], "execution": {"x": 1}}
    student = course.student_copy(notebook)
    assert "papermill" not in student["metadata"]
    assert student["cells"][0]["metadata"] == {"tags": ["parameters"]}  # real tags stay
    assert set(student["cells"][2]["metadata"]) == {"nbgrader"}  # only what grading adds (agekit.grade)
    assert notebook["cells"][2]["metadata"]["tags"] == []  # the original is left alone


def test_stale_student_copies_are_detected(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    (source / "01_x.ipynb").write_text(json.dumps(_notebook()))
    assert course.stale_student_copies(source) == ["01_x.ipynb"]
    course.write_student_copies(source)
    assert course.stale_student_copies(source) == []
    changed = _notebook()
    changed["cells"][2]["source"] = "print('changed')"
    (source / "01_x.ipynb").write_text(json.dumps(changed))
    assert course.stale_student_copies(source) == ["01_x.ipynb"]


def test_checks_pass_the_reference_and_catch_mistakes():
    exercises.check_mae(mae)
    exercises.check_cumulative_score(cumulative_score)
    exercises.check_expected_age(expected_age)
    exercises.check_revised_contrastive_loss(revised_contrastive_loss)
    with pytest.raises(AssertionError, match="differ"):
        exercises.check_mae(lambda p, t: float((p - t).mean()))
    with pytest.raises(AssertionError, match="<= tolerance"):
        exercises.check_cumulative_score(lambda p, t, tol: float(((p - t).abs() < tol).float().mean() * 100))
    with pytest.raises(AssertionError, match="Softmax"):
        exercises.check_expected_age(lambda logits, values: torch.sigmoid(logits) @ values)
    with pytest.raises(AssertionError):
        exercises.check_revised_contrastive_loss(
            lambda e, a, m, q: revised_contrastive_loss(e, a, m + 1, q)  # margin off by one
        )
    with pytest.raises(AssertionError, match="shape"):
        exercises.check_age_weights(lambda r, p: torch.sigmoid(r * p[:, None]))  # forgot to permute


def _lesson(folder, name="00_tiny.ipynb"):
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Tiny"),
                                               nbformat.v4.new_code_cell("x = 1")])
    (folder / name).write_text(nbformat.writes(notebook), encoding="utf-8")
    return folder / name


def test_an_interrupted_lesson_keeps_the_previous_executed_copy_and_no_temporary(tmp_path, monkeypatch):
    import papermill

    lesson = _lesson(tmp_path / "notebooks")
    out = tmp_path / "out"
    out.mkdir()
    (out / lesson.name).write_text("the previous complete run", encoding="utf-8")

    def half_then_interrupted(source, output, **options):
        Path(output).write_text('{"cells": [', encoding="utf-8")  # papermill saves as it goes
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", half_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        course.run_course(out=out, notebooks=tmp_path / "notebooks", html_export=False, log=lambda text: None)
    assert (out / lesson.name).read_text(encoding="utf-8") == "the previous complete run"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_a_lesson_that_fails_in_a_cell_is_kept_as_it_ran(tmp_path, monkeypatch):
    import papermill

    lesson = _lesson(tmp_path / "notebooks")
    out = tmp_path / "out"

    executed = lesson.read_text(encoding="utf-8").replace("x = 1", "x = 1  # executed up to the error")

    def fails_in_cell_2(source, output, **options):
        Path(output).write_text(executed, encoding="utf-8")
        raise papermill.PapermillExecutionError(2, 2, "boom", "ValueError", "boom", [])

    monkeypatch.setattr(papermill, "execute_notebook", fails_in_cell_2)
    run = course.run_course(out=out, notebooks=tmp_path / "notebooks", html_export=False, log=lambda text: None)
    assert run.lessons[0].error == "cell 2: ValueError: boom"
    assert (out / lesson.name).read_text(encoding="utf-8") == executed
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
