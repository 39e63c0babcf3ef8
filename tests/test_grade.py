"""``agekit grade`` on real student copies: solved, unsolved, partly solved, hanging, raising at import, tampering.

The submissions are built from the committed lessons: the student copy
(``agekit.course.student_copy``), with some exercise cells given the solution
notebook's code, a wrong answer, or cells a student might add. Lessons 00 and 02
are used because their fast mode runs quickest.
"""

from __future__ import annotations

import ast
import copy
import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agekit import course, grade
from agekit.cli import main

LESSON_00, LESSON_02 = "00_welcome", "02_metrics_and_evr"


def _solution(lesson: str) -> dict:
    return json.loads((course.notebooks_dir() / f"{lesson}.ipynb").read_text(encoding="utf-8"))


def _student(lesson: str, solved=(), answers=None) -> dict:
    """The student copy of a lesson; exercises named in ``solved`` get the solution, ``answers`` maps others to code."""
    solution = _solution(lesson)
    student = course.student_copy(solution, lesson=lesson)
    for exercise in grade.find_exercises(solution):
        if exercise.function in solved:
            student["cells"][exercise.solution_cell]["source"] = copy.deepcopy(
                solution["cells"][exercise.solution_cell]["source"])
        if exercise.function in (answers or {}):
            student["cells"][exercise.solution_cell]["source"] = answers[exercise.function]
    return student


def _code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": f"added-{abs(hash(source)) % 10**8}",
            "metadata": {}, "outputs": [], "source": source}


def _insert_after_parameters(notebook: dict, *cells: dict) -> dict:
    where = next(i for i, c in enumerate(notebook["cells"]) if "parameters" in c["metadata"].get("tags", []))
    notebook["cells"][where + 1:where + 1] = list(cells)
    return notebook


def _write(folder: Path, name: str, notebook: dict) -> str:
    path = folder / name
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return str(path)


def _rows(out: Path) -> dict:
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_submission = {}
    for row in rows:
        by_submission.setdefault(Path(row["submission"]).name, {})[row["exercise"]] = row
    return by_submission


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


WRONG_CS = "def cumulative_score(pred, true, tolerance):\n    return float(((pred - true).abs() < tolerance).double().mean() * 100)\n"
TAMPERED = (
    "import agekit.exercises as ex\n"
    "import torch\n"
    "ex.check_share_in_range = lambda f: print('Correct')\n"                       # a statement: never run by the grader
    "def share_in_range(ages, low, high, _=setattr(ex, '_close', lambda *a, **k: None)):\n"  # changes at definition
    "    torch.allclose = lambda *a, **k: True\n"                                  # ... and while it is checked
    "    return 50.0\n"
)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade five kinds of submission in one call, and a hanging one with a short limit."""
    folder = tmp_path_factory.mktemp("submissions")
    pid_file = folder / "hang.pids"
    submissions = [
        _write(folder, "alice 00.ipynb", _student(LESSON_00, solved=["share_in_range"])),
        _write(folder, "bob.ipynb", _student(LESSON_00)),
        _write(folder, "carol.ipynb", _student(LESSON_02, solved=["mae"], answers={"cumulative_score": WRONG_CS})),
        _write(folder, "dave.ipynb", _insert_after_parameters(
            _student(LESSON_00, solved=["share_in_range"]), _code("import agekit.no_such_module"))),
        _write(folder, "eve.ipynb", _insert_after_parameters(
            _student(LESSON_00, answers={"share_in_range": TAMPERED}),
            _code("import pathlib, shutil\nfor p in pathlib.Path('.').iterdir():\n"
                  "    shutil.rmtree(p) if p.is_dir() else p.unlink()\nprint('x' * 3_000_000)"))),
    ]
    out = tmp_path_factory.mktemp("grades")
    hang = _insert_after_parameters(
        _student(LESSON_00, solved=["share_in_range"]),
        _code(f"import os, subprocess, time\nchild = subprocess.Popen(['sleep', '600'])\n"
              f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\ntime.sleep(600)"))
    hang_out = tmp_path_factory.mktemp("grades_hang")
    # The hanging run mostly waits for its limit: it is graded beside the five, not after them.
    with ThreadPoolExecutor(1) as pool:
        hanging = pool.submit(grade.grade, [_write(folder, "mallory.ipynb", hang)], hang_out, timeout=20,
                              log=lambda *a: None)
        results = grade.grade(submissions, out, timeout=300, max_output_bytes=1_000_000, jobs=2, log=lambda *a: None)
        hang_results = hanging.result()
    return {"out": out, "rows": _rows(out), "results": results, "hang_out": hang_out,
            "hang_rows": _rows(hang_out), "hang": hang_results[0], "pids": pid_file}


@pytest.mark.slow
def test_solved_copy_gets_full_marks(graded):
    row = graded["rows"]["alice 00.ipynb"]["share_in_range"]
    assert (row["lesson"], row["points"], row["max_points"], row["passed"]) == (LESSON_00, "1", "1", "True")
    assert row["message"].startswith("Correct") and row["run_status"] == "ok"
    assert list(graded["rows"]["alice 00.ipynb"]) == ["share_in_range"]
    assert set(csv.DictReader(open(graded["out"] / "grades.csv")).fieldnames) >= {
        "submission", "lesson", "exercise", "points", "max_points", "passed", "message", "run_seconds"}


@pytest.mark.slow
def test_unsolved_copy_gets_zero_without_crashing(graded):
    row = graded["rows"]["bob.ipynb"]["share_in_range"]
    assert (row["points"], row["passed"]) == ("0", "False")
    assert "not attempted" in row["message"]
    assert row["run_status"] == "errors"  # its check cell raised when it ran; the run still went to the end


@pytest.mark.slow
def test_partly_solved_copy_gets_points_for_what_is_right_and_the_checks_hint(graded):
    rows = graded["rows"]["carol.ipynb"]
    assert list(rows) == ["mae", "cumulative_score", "expected_age"]
    assert [rows[e]["points"] for e in rows] == ["1", "0", "0"]
    assert "Count errors <= tolerance (not <)" in rows["cumulative_score"]["message"]  # the check's own hint
    assert "not attempted" in rows["expected_age"]["message"]
    assert graded["results"][2].points == 1 and graded["results"][2].max_points == 3


@pytest.mark.slow
def test_notebook_raising_at_import_is_graded_on_its_definitions(graded):
    row = graded["rows"]["dave.ipynb"]["share_in_range"]
    assert row["points"] == "1" and row["run_status"] == "errors"
    assert "ModuleNotFoundError" in row["notes"] and "agekit.no_such_module" in row["notes"]
    executed = json.loads(next((graded["out"] / "executed").glob("dave*.ipynb")).read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "ModuleNotFoundError"


@pytest.mark.slow
def test_edited_checks_and_monkeypatching_gain_nothing(graded):
    row = graded["rows"]["eve.ipynb"]["share_in_range"]
    assert (row["points"], row["passed"]) == ("0", "False")
    assert "torch.allclose" in row["message"]                       # changed while checked: not accepted
    assert "agekit.exercises._close" in row["notes"]                 # changed at definition: put back
    # ... and the others are graded as if it were not there
    assert graded["rows"]["alice 00.ipynb"]["share_in_range"]["points"] == "1"


@pytest.mark.slow
def test_deleting_files_and_printing_megabytes_stay_in_the_submission(graded):
    out = graded["out"]
    names = sorted(p.name for p in (out / "feedback").glob("*.html"))
    assert names == ["alice_00.html", "bob.html", "carol.html", "dave.html", "eve.html"]
    assert sorted(p.name for p in (out / "executed").glob("*.ipynb")) == [n.replace(".html", ".ipynb") for n in names]
    executed = (out / "executed" / "eve.ipynb").read_text(encoding="utf-8")
    assert "output cut here" in executed and len(executed) < 2_000_000
    assert all(Path(s).is_file() for s in (r.submission for r in graded["results"]))


@pytest.mark.slow
def test_hanging_notebook_is_stopped_at_its_limit_with_its_processes(graded):
    result = graded["hang"]
    assert result.run_status == "timeout"
    kernel, child = (int(v) for v in graded["pids"].read_text().split())
    assert not _alive(kernel) and not _alive(child)  # the kernel's whole process group was killed
    row = graded["hang_rows"]["mallory.ipynb"]["share_in_range"]
    assert row["run_status"] == "timeout" and row["points"] == "1"  # its definitions are still checked
    page = (graded["hang_out"] / "feedback" / "mallory.html").read_text(encoding="utf-8")
    assert "stopped at the time limit" in page


@pytest.mark.slow
def test_feedback_page_shows_points_and_messages(graded):
    page = (graded["out"] / "feedback" / "carol.html").read_text(encoding="utf-8")
    assert "1 / 3" in page and "Count errors &lt;= tolerance (not &lt;)" in page
    assert "http://" not in page.split("<body", 1)[1].split("</section>")[0]


def test_a_failed_import_costs_what_depends_on_it(tmp_path):
    """Checks only (no run): a solution that needs a name from a cell that raised fails with that error."""
    student = _student(LESSON_02, solved=["mae", "cumulative_score", "expected_age"])
    for cell in student["cells"]:
        if cell["cell_type"] == "code" and "import torch" in course._source(cell):
            cell["source"] = "import agekit.no_such_module\n" + course._source(cell)
    path = _write(tmp_path, "02_frank.ipynb", student)
    [result] = grade.grade([path], tmp_path / "out", run=False, log=lambda *a: None)
    verdicts = {row["exercise"]: (row["passed"], row["message"]) for row in result.rows}
    assert verdicts["mae"][0] and verdicts["cumulative_score"][0]
    assert not verdicts["expected_age"][0] and "name 'torch' is not defined" in verdicts["expected_age"][1]
    assert result.run_status == "not run"


def test_points_come_from_the_solution_notebooks_metadata(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    solution = grade.stamp_grading_metadata(_solution(LESSON_00), lesson=LESSON_00)
    [exercise] = grade.find_exercises(solution)
    solution["cells"][exercise.check_cell]["metadata"]["nbgrader"]["points"] = 3
    (source / f"{LESSON_00}.ipynb").write_text(json.dumps(solution), encoding="utf-8")
    submission = _write(tmp_path, "renamed.ipynb", _student(LESSON_00, solved=["share_in_range"]))
    [result] = grade.grade([submission], tmp_path / "out", run=False, notebooks=source, log=lambda *a: None)
    assert (result.lesson, result.points, result.max_points) == (LESSON_00, 3, 3)


def test_stamping_is_idempotent_and_keeps_points(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    for lesson in (LESSON_00, LESSON_02):
        bare = _solution(lesson)  # the committed lessons are stamped already: start from unstamped copies
        bare.get("metadata", {}).pop("agekit", None)
        for cell in bare["cells"]:
            cell.get("metadata", {}).pop("nbgrader", None)
        (source / f"{lesson}.ipynb").write_text(course._dump(bare), encoding="utf-8")
    assert [p.stem for p in grade.stamp_notebooks(source)] == [LESSON_00, LESSON_02]
    assert grade.stamp_notebooks(source) == []
    stamped = json.loads((source / f"{LESSON_02}.ipynb").read_text(encoding="utf-8"))
    exercises = grade.find_exercises(stamped)
    assert [(e.function, e.check, e.points) for e in exercises] == [
        ("mae", "check_mae", 1), ("cumulative_score", "check_cumulative_score", 1),
        ("expected_age", "check_expected_age", 1)]
    assert stamped["metadata"]["agekit"]["lesson"] == LESSON_02
    # the student copy of an unstamped and of a stamped solution notebook is the same
    assert course.student_copy(stamped, lesson=LESSON_02) == course.student_copy(_solution(LESSON_02), lesson=LESSON_02)


def test_student_copies_pass_nbgraders_metadata_validator(tmp_path):
    nbgrader_format = pytest.importorskip("nbgrader.nbgraderformat")
    import nbformat

    written = course.write_student_copies(course.notebooks_dir(), tmp_path)
    assert len(written) == 11
    for path in written:
        notebook = nbformat.read(str(path), as_version=4)
        nbgrader_format.MetadataValidator().validate_nb(notebook)  # raises on a malformed cell
        graded = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
        solutions = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")]
        expected = grade.find_exercises(_solution(path.stem))
        assert len(graded) == len(solutions) == len(expected) >= 1, path.name
        assert [c.metadata.nbgrader.grade_id for c in solutions] == [e.function for e in expected]
        assert all("NotImplementedError" in c.source for c in solutions)


def test_lesson_is_found_by_metadata_title_or_file_name():
    lessons = {name: _solution(name) for name in (LESSON_00, LESSON_02)}
    student = _student(LESSON_02)
    assert grade.identify_lesson(student, "anything.ipynb", lessons) == LESSON_02
    del student["metadata"]["agekit"]
    assert grade.identify_lesson(student, "anything.ipynb", lessons) == LESSON_02  # by its title
    student["cells"] = [c for c in student["cells"] if c["cell_type"] == "code"]
    assert grade.identify_lesson(student, "00_mine.ipynb", lessons) == LESSON_00
    assert grade.identify_lesson(student, "mine.ipynb", lessons) is None


def test_definitions_keep_imports_functions_and_literals_only():
    source = "%matplotlib inline\nimport math\nx = 3\ny = f(2)\nprint('hi')\ndef g():\n    return x\nclass A:\n    pass\n"
    kept = grade.definitions(source)
    expected = "import math\nx = 3\ndef g():\n    return x\nclass A:\n    pass\n"
    assert ast.dump(ast.parse(kept)) == ast.dump(ast.parse(expected))


def test_cli_grades_and_reports_bad_input_in_one_line(tmp_path, capsys):
    missing = tmp_path / "nothing.ipynb"
    assert main(["grade", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    assert main(["grade", str(broken), "--out", str(tmp_path / "out"), "--no-run"]) == 0
    with open(tmp_path / "out" / "grades.csv", newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["run_status"] == "unreadable" and row["points"] == "0" and "cannot read" in row["message"]
    assert "graded 1 submission(s): 0 of 0 points" in capsys.readouterr().out


def test_endless_loop_in_an_exercise_function_is_stopped_by_its_check_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "CHECK_SECONDS", 1.0)
    endless = "def share_in_range(ages, low, high):\n    while True:\n        pass\n"
    path = _write(tmp_path, "00_loop.ipynb", _student(LESSON_00, answers={"share_in_range": endless}))
    [result] = grade.grade([path], tmp_path / "out", run=False, log=lambda *a: None)
    [row] = result.rows
    assert not row["passed"] and "did not finish within 1 s" in row["message"]
