"""Grading students' notebooks: ``agekit grade SUBMISSION... --out DIR``.

A submission is a student's copy of a lesson as handed in (any file name, extra
cells, outputs, broken cells). Each one is graded in two steps, both in
processes of their own, in a temporary working folder that is deleted afterwards:

1. **Run.** The notebook is executed top to bottom, headless (nbclient), in fast
   mode unless told otherwise, with errors allowed, a time limit for the whole
   notebook (at the limit the kernel's process group is killed) and a cap on the
   size of its outputs. The executed copy becomes the student's feedback page.
2. **Check.** A fresh Python process runs the imports, functions, classes and
   literal constants of every code cell (nothing else: no training, no check
   cells), then calls the package's own checks (``agekit.exercises``) on the
   exercise functions. The checks are taken from the package before any of the
   student's code runs; whatever that code changes in ``agekit``, ``torch`` or
   Python's own modules is put back, and an exercise whose check saw such a
   change fails. Editing, deleting or redefining the check cells changes nothing.

Which exercises a lesson has, which function each one asks for, which check
grades it and how many points it is worth live in the solution notebooks' cell
metadata, in nbgrader's format (:func:`stamp_grading_metadata`), so the student
copies carry it too and a lab that uses nbgrader can import the course.

The points, the runs and the feedback pages are written to ``DIR``:
``grades.csv`` (one row per submission and exercise), ``feedback/NAME.html`` and
``executed/NAME.ipynb``. A student's notebook cannot change another student's
grade: each runs alone, and nothing of one run is visible to the next.

This module grades submissions and writes the results; the steps live in
:mod:`agekit.grading` (``exercises``: finding a lesson's exercises and stamping
their metadata; ``run``: step 1; ``checks``: the checking process of step 2).
Every name they define that was importable from here still is.

Taught in the instructor guide (``docs/instructor.md``, "How to grade").
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agekit._io import atomic_write_text
from agekit.course import _source
from agekit.grading.checks import definitions  # noqa: F401  (re-exported)
from agekit.grading.exercises import (  # noqa: F401  (re-exported)
    DEFAULT_POINTS,
    Exercise,
    find_exercises,
    identify_lesson,
    stamp_grading_metadata,
    stamp_notebooks,
)
from agekit.grading.run import DEFAULT_MAX_OUTPUT_BYTES, _kill_group, run_notebook
from agekit.site import install_mathjax

DEFAULT_TIMEOUT_S = 300.0
DEFINE_SECONDS = 120.0  # for the notebook's imports and definitions in the checking process
CHECK_SECONDS = 60.0    # for one exercise's check (a student's endless loop ends here)
COLUMNS = ("submission", "lesson", "exercise", "points", "max_points", "passed", "message", "run_status",
           "run_seconds", "notes")


# ----------------------------------------------------------------------------- step 2: starting the checks


def run_checks(notebook: dict, exercises: Sequence[Exercise], workdir: Path) -> tuple[list, dict]:
    """Step 2 in a fresh process in ``workdir``: returns (notes, {function: (passed, message)})."""
    nonce = secrets.token_hex(16)
    cells = [(i, _source(c)) for i, c in enumerate(notebook.get("cells", [])) if c.get("cell_type") == "code"]
    job = {"nonce": nonce, "cells": cells, "define_seconds": DEFINE_SECONDS, "check_seconds": CHECK_SECONDS,
           "exercises": [{"function": e.function, "check": e.check} for e in exercises]}
    timeout = DEFINE_SECONDS + CHECK_SECONDS * len(exercises) + 30
    environment = {**os.environ, "AGEKIT_RUNS": str(workdir / "runs"), "HOME": str(workdir), "MPLBACKEND": "Agg",
                   "AGEKIT_FAST": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    output = workdir / ".agekit-checks.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", "from agekit.grading.checks import _check_child; _check_child()"],
            stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.DEVNULL, cwd=workdir, env=environment,
            start_new_session=True)
        try:
            process.communicate(json.dumps(job).encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_group(process.pid)
            process.wait()
    notes, verdicts = [], {}
    with open(output, "rb") as handle:
        text = handle.read(4_000_000).decode("utf-8", "replace")
    for line in text.splitlines():
        if not line.startswith(nonce + " "):
            continue
        try:
            entry = json.loads(line[len(nonce) + 1:])
        except json.JSONDecodeError:
            continue
        if "notes" in entry:
            notes = entry["notes"]
        elif entry.get("function") in {e.function for e in exercises}:
            verdicts[entry["function"]] = (bool(entry["passed"]), str(entry["message"]))
    if process.returncode not in (0, None) and len(verdicts) < len(exercises):
        notes.append("the checking process stopped early (time limit, or the notebook's code ended it)")
    return notes, verdicts


# ----------------------------------------------------------------------------- grading submissions


@dataclass
class Grade:
    """One submission's result."""

    submission: str
    lesson: str | None
    rows: list[dict] = field(default_factory=list)
    run_status: str = ""
    run_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    feedback: Path | None = None

    @property
    def points(self) -> float:
        return sum(row["points"] for row in self.rows)

    @property
    def max_points(self) -> float:
        return sum(row["max_points"] for row in self.rows)


def _solution_lessons(notebooks: Path | None) -> dict[str, dict]:
    from agekit.course import course_notebooks

    lessons = {}
    for path in course_notebooks(notebooks):
        lessons[path.stem] = stamp_grading_metadata(json.loads(path.read_text(encoding="utf-8")), lesson=path.stem)
    return lessons


def _safe_name(path: Path, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "submission"
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}_{k}", k + 1
    taken.add(name)
    return name


def grade_submission(path: Path, lessons: dict[str, dict], timeout: float = DEFAULT_TIMEOUT_S, fast: bool = True,
                     run: bool = True, lesson: str | None = None,
                     max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> tuple[Grade, dict | None]:
    """Grade one submission; returns its Grade and the executed notebook (None when it was not run)."""
    path = Path(path)
    grade = Grade(str(path), None)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
            raise ValueError("it has no list of cells")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        grade.notes.append(f"cannot read {path.name} as a notebook: {error}")
        grade.run_status = "unreadable"
        return grade, None
    grade.lesson = lesson or identify_lesson(notebook, path.name, lessons)
    if grade.lesson is None:
        grade.notes.append(f"cannot tell which lesson {path.name} is; name it NN_... or pass --lesson NN")
        grade.run_status = "unknown lesson"
        return grade, None
    exercises = find_exercises(lessons[grade.lesson], grade.lesson)
    run_dir = Path(tempfile.mkdtemp(prefix="agekit-grade-"))
    checks_dir = Path(tempfile.mkdtemp(prefix="agekit-checks-"))  # each step in a folder of its own
    executed = None
    try:
        (run_dir / "runs").mkdir()
        with ThreadPoolExecutor(1) as pool:  # the two steps are independent: check while the notebook runs
            checking = pool.submit(run_checks, notebook, exercises, checks_dir)
            if run:
                executed, grade.run_status, grade.run_seconds = run_notebook(
                    notebook, run_dir, timeout, fast=fast, max_output_bytes=max_output_bytes)
            else:
                grade.run_status = "not run"
            notes, verdicts = checking.result()
        grade.notes.extend(notes)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(checks_dir, ignore_errors=True)
    for exercise in exercises:
        passed, message = verdicts.get(exercise.function, (False, "no result: the checks were stopped before it"))
        if not passed and notes:
            message = f"{message} [notebook: {'; '.join(notes)}]"
        grade.rows.append({"exercise": exercise.function, "points": exercise.points if passed else 0,
                           "max_points": exercise.points, "passed": passed, "message": message})
    return grade, executed


def grade(submissions: Sequence[str | Path], out: str | Path, timeout: float = DEFAULT_TIMEOUT_S,
          fast: bool = True, run: bool = True, lesson: str | None = None, notebooks: Path | None = None,
          max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, jobs: int = 1, log=print) -> list[Grade]:
    """Grade every submission; writes ``out/grades.csv``, ``out/feedback/*.html``, ``out/executed/*.ipynb``.

    ``jobs`` submissions are graded at the same time (each in its own processes and folders).
    """
    from agekit.course import _dump, _select, course_notebooks

    if not submissions:
        raise ValueError("Give at least one submitted notebook to grade.")
    if timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {timeout}.")
    missing = [str(s) for s in submissions if not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(f"Submission {missing[0]!r} does not exist.")
    lessons = _solution_lessons(notebooks)
    if lesson is not None:
        lesson = _select(course_notebooks(notebooks), [lesson])[0].stem
    out = Path(out).resolve()
    for submission in submissions:
        if out in Path(submission).resolve().parents:
            raise ValueError(f"{submission} lies inside --out {out}; put the output elsewhere.")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number >= 1, got {jobs!r}.")
    taken: set[str] = set()
    names = [_safe_name(Path(submission), taken) for submission in submissions]
    install_mathjax(out / "feedback")  # once, before the pages are written side by side

    def one(number: int, submission, name: str) -> Grade:
        result, executed = grade_submission(Path(submission), lessons, timeout=timeout, fast=fast, run=run,
                                            lesson=lesson, max_output_bytes=max_output_bytes)
        if executed is not None:
            atomic_write_text(out / "executed" / f"{name}.ipynb", _dump(dict(executed)))
        result.feedback = write_feedback(result, executed, out / "feedback" / f"{name}.html")
        log(f"[{number}/{len(submissions)}] {submission}: {result.points:g}/{result.max_points:g} points "
            f"(run: {result.run_status}, {result.run_seconds:.0f} s)")
        return result

    with ThreadPoolExecutor(jobs) as pool:
        grades = list(pool.map(one, range(1, len(submissions) + 1), submissions, names))
    write_grades_csv(grades, out / "grades.csv")
    return grades


def write_grades_csv(grades: Sequence[Grade], path: Path) -> Path:
    """One row per submission and exercise (one row with the reason for a submission that could not be graded)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in grades:
        common = {"submission": result.submission, "lesson": result.lesson or "", "run_status": result.run_status,
                  "run_seconds": f"{result.run_seconds:.1f}", "notes": "; ".join(result.notes)}
        if not result.rows:
            writer.writerow({**common, "exercise": "", "points": 0, "max_points": 0, "passed": False,
                             "message": "not graded: " + "; ".join(result.notes)})
        for row in result.rows:
            writer.writerow({**common, **row, "points": f"{row['points']:g}", "max_points": f"{row['max_points']:g}"})
    return atomic_write_text(path, buffer.getvalue())


def write_feedback(result: Grade, executed: dict | None, path: Path) -> Path:
    """A page for the student: points per exercise with the check's message, then their notebook as it ran."""
    rows = "".join(
        f"<tr class='{'pass' if row['passed'] else 'fail'}'><td>{html.escape(row['exercise'])}</td>"
        f"<td>{row['points']:g} / {row['max_points']:g}</td><td>{'passed' if row['passed'] else 'not passed'}</td>"
        f"<td>{html.escape(row['message'])}</td></tr>" for row in result.rows)
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in result.notes)
    run = {"ok": "ran to the end", "errors": "ran to the end; some cells raised errors (shown below)",
           "timeout": "stopped at the time limit", "not run": "not run (only the checks ran)"}.get(
        result.run_status, result.run_status)
    summary = (
        f"<section class='agekit-grade'><h1>Feedback: {html.escape(Path(result.submission).name)}</h1>"
        f"<p>Lesson: <b>{html.escape(result.lesson or 'unknown')}</b>. Points: <b>{result.points:g} / "
        f"{result.max_points:g}</b>. The notebook {html.escape(run)} in {result.run_seconds:.0f} s.</p>"
        f"<table><tr><th>exercise</th><th>points</th><th>result</th><th>message</th></tr>{rows}</table>"
        + (f"<p>Notes:</p><ul>{notes}</ul>" if notes else "") +
        "<p>Points come from agekit's own checks run on the functions your notebook defines; "
        "below is your notebook as it ran.</p></section>")
    style = ("<style>.agekit-grade{font-family:sans-serif;margin:1em 2em}.agekit-grade td,.agekit-grade th"
             "{padding:4px 10px;text-align:left;vertical-align:top}.agekit-grade .pass td:nth-child(3)"
             "{color:#1b7f3b}.agekit-grade .fail td:nth-child(3){color:#b00020}</style>")
    if executed is None:
        page = f"<!doctype html><html><head><meta charset='utf-8'><title>Feedback</title>{style}</head>" \
               f"<body>{summary}</body></html>\n"
        return atomic_write_text(path, page)
    from agekit.site import export_html

    body = export_html(executed, path.parent, title=f"Feedback: {Path(result.submission).name}")
    page = body.replace("<body", style + "<body", 1)
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + summary, page, count=1)
    return atomic_write_text(path, page)


# ----------------------------------------------------------------------------- command line


def main_grade(args) -> int:
    """``agekit grade`` (called from agekit.cli)."""
    grades = grade(args.submissions, args.out, timeout=args.timeout, fast=not args.full, run=not args.no_run,
                   lesson=args.lesson, max_output_bytes=int(args.max_output_mb * 1_000_000), jobs=args.jobs)
    total = sum(g.points for g in grades)
    possible = sum(g.max_points for g in grades)
    print(f"graded {len(grades)} submission(s): {total:g} of {possible:g} points; "
          f"grades: {Path(args.out) / 'grades.csv'}, feedback pages: {Path(args.out) / 'feedback'}")
    return 0


def add_grade_command(subparsers) -> None:
    """Register ``agekit grade`` on the CLI's subparsers."""
    command = subparsers.add_parser("grade", help="grade students' notebooks with the package's checks")
    command.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="students' .ipynb files, as handed in")
    command.add_argument("--out", required=True, help="folder for grades.csv, feedback/ and executed/")
    command.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                         help=f"seconds each notebook may run (default {DEFAULT_TIMEOUT_S:.0f})")
    command.add_argument("--full", action="store_true", help="run the notebooks in full mode (default: fast mode)")
    command.add_argument("--no-run", action="store_true",
                         help="do not run the notebooks; only check their exercise functions")
    command.add_argument("--lesson", metavar="NN", help="grade every submission as this lesson (default: detected)")
    command.add_argument("--max-output-mb", type=float, default=DEFAULT_MAX_OUTPUT_BYTES / 1e6,
                         help="outputs kept per notebook, in MB (default 20)")
    command.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time (default 1)")
    command.set_defaults(handler=main_grade)
