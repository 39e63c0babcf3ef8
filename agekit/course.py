"""What course staff run: the headless course, student copies.

``agekit course`` runs the lessons of the working copy (the checkout around the
working folder, or ``--notebooks DIR``) in order with papermill, and writes the
executed copies and the offline course site (:mod:`agekit.site`) beside that
copy's ``runs/`` cache; ``agekit course --student [DIR]`` writes the student copies
(solutions replaced by placeholders, nbgrader metadata added by :mod:`agekit.grade`)
into ``notebooks/student/`` or a folder of the student's own. What a lesson itself
calls (its parameters, runs and claims) is in :mod:`agekit.lesson`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from agekit._io import atomic_write_text, staged_files
from agekit.lesson import DEVICES, fast_from_environment, notebooks_dir, parameters, runs_dir, workspace  # noqa: F401

SOLUTION_TAG = "solution"
PLACEHOLDER = (
    "# YOUR CODE HERE: replace this line and the next with your solution.\n"
    'raise NotImplementedError("Write your solution here, then run the check below.")'
)


def course_notebooks(directory: Path | None = None) -> list[Path]:
    """The lessons ``NN_name.ipynb`` in order."""
    directory = Path(directory or notebooks_dir())
    return sorted(p for p in directory.glob("*.ipynb") if re.match(r"^\d\d_", p.name))


# ----------------------------------------------------------------------------- student copies


def strip_run_metadata(notebook: dict) -> dict:
    """Drop what a headless run adds to the metadata (papermill's timings, empty tag lists); returns it."""
    notebook.get("metadata", {}).pop("papermill", None)
    for cell in notebook.get("cells", []):
        metadata = cell.get("metadata", {})
        metadata.pop("papermill", None)
        metadata.pop("execution", None)
        if metadata.get("tags") == []:
            del metadata["tags"]
    return notebook


def student_copy(notebook: dict, lesson: str | None = None) -> dict:
    """A copy of a notebook (as JSON dict) with every ``solution``-tagged cell's code replaced.

    Outputs, execution counts and run metadata are cleared, so the student runs it fresh.
    The exercise cells carry nbgrader's metadata and the notebook its ``lesson`` name
    (:func:`agekit.grade.stamp_grading_metadata`), so ``agekit grade`` and nbgrader can grade it.
    """
    from agekit.grade import stamp_grading_metadata

    result = stamp_grading_metadata(strip_run_metadata(copy.deepcopy(notebook)), lesson=lesson)
    result.get("metadata", {}).pop("widgets", None)  # saved widget state belongs to the executed copy
    for cell in result.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
                signature = [line for line in _source(cell).splitlines() if line.startswith("def ")]
                body = "\n".join(signature[:1] + ["    " + line for line in PLACEHOLDER.splitlines()] if signature else [PLACEHOLDER])
                cell["source"] = body
                cell["metadata"]["tags"] = [t for t in cell["metadata"]["tags"] if t != SOLUTION_TAG] + ["exercise"]
    return result


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _dump(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def write_student_copies(source: Path | None = None, target: Path | None = None) -> list[Path]:
    """Write ``notebooks/student/NN_name.ipynb`` for every lesson; returns the paths."""
    source = Path(source or notebooks_dir())
    target = Path(target or source / "student")
    written = []
    for path in course_notebooks(source):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        out = target / path.name
        atomic_write_text(out, _dump(student_copy(notebook, lesson=path.stem)))
        written.append(out)
    return written


def stale_student_copies(source: Path | None = None, target: Path | None = None) -> list[str]:
    """Names of lessons whose student copy is missing or differs from a fresh one."""
    source = Path(source or notebooks_dir())
    target = Path(target or source / "student")
    stale = []
    for path in course_notebooks(source):
        expected = _dump(student_copy(json.loads(path.read_text(encoding="utf-8")), lesson=path.stem))
        copy_path = target / path.name
        if not copy_path.exists() or copy_path.read_text(encoding="utf-8") != expected:
            stale.append(path.name)
    return stale


# ----------------------------------------------------------------------------- running the course


@dataclass
class LessonRun:
    """One executed notebook: where it went, how long it took, and its error if any."""

    notebook: str
    output: Path
    seconds: float
    error: str | None = None
    html: Path | None = None
    parameters: dict = field(default_factory=dict)


@dataclass
class CourseRun:
    lessons: list[LessonRun] = field(default_factory=list)
    index: Path | None = None

    @property
    def ok(self) -> bool:
        return all(lesson.error is None for lesson in self.lessons)


def _select(notebooks: list[Path], only: Sequence[str] | None) -> list[Path]:
    if not only:
        return notebooks
    chosen = []
    for token in only:
        matches = [p for p in notebooks if p.name.startswith(f"{int(token):02d}_")] if str(token).isdigit() else [
            p for p in notebooks if p.stem == token or p.name == token
        ]
        if not matches:
            names = ", ".join(p.stem for p in notebooks)
            raise ValueError(f"No notebook matches {token!r}; the lessons are: {names}.")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def run_course(
    out: str | Path | None = None,
    fast: bool = False,
    only: Sequence[str] | None = None,
    parameters: Mapping[str, object] | None = None,
    notebooks: Path | None = None,
    html_export: bool = True,
    kernel_name: str = "python3",
    log=print,
    progress: bool = False,
) -> CourseRun:
    """Execute the lessons in order with papermill and write the course site (``agekit.site``).

    notebooks: the lessons' folder (default: those of the working copy, see
    :func:`agekit.lesson.notebooks_dir`). Each executed copy goes to ``out/NN_name.ipynb``
    (and ``.html``), with a landing page ``out/index.html``; ``out`` defaults to
    ``course/`` in the same ``runs/`` folder the lessons cache their runs in, so the two
    never end up in unrelated places. The run stops at the first failing notebook and
    reports its failing cell (its copy is kept as it ran). An executed copy replaces the
    previous one only when its lesson ends, so an interrupted run keeps the last complete
    copy (``agekit._io.staged_files``). ``parameters`` are passed to every notebook that declares
    them (others are left alone). ``progress`` shows the cells done in each lesson.
    """
    import papermill

    notebooks = Path(notebooks) if notebooks is not None else notebooks_dir(installed=False)
    lessons = _select(course_notebooks(notebooks), only)
    if not lessons:
        raise ValueError(f"No lessons (NN_name.ipynb) found in {notebooks}; run agekit course inside a checkout "
                         "of the course, or give --notebooks DIR.")
    cache = runs_dir(start=notebooks)
    out = Path(out) if out is not None else cache / "course"
    out.mkdir(parents=True, exist_ok=True)
    run = CourseRun()
    saved = {name: os.environ.get(name) for name in ("AGEKIT_FAST", "AGEKIT_RUNS")}
    os.environ["AGEKIT_RUNS"] = str(cache)  # the kernels cache where this course's lessons live
    if fast:
        os.environ["AGEKIT_FAST"] = "1"
    try:
        for number, path in enumerate(lessons, 1):
            declared = set(papermill.inspect_notebook(str(path)))
            given = {k: v for k, v in dict(parameters or {}).items() if k in declared}
            if fast and "fast" in declared:
                given["fast"] = True
            target = out / path.name
            log(f"[{number}/{len(lessons)}] {path.stem} ...")
            start = time.perf_counter()
            error = None
            with staged_files(out) as files:  # papermill saves as it goes: into a temporary file
                handle, partial = files.open(path.name)
                handle.close()
                try:
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message=r"The specified file .* does not end in one of")
                        papermill.execute_notebook(
                            str(path), str(partial), parameters=given, kernel_name=kernel_name,
                            cwd=str(path.parent), log_output=False,
                            progress_bar={"desc": "    cells", "leave": False, "mininterval": 1.0,
                                          "bar_format": "{desc} {n_fmt}/{total_fmt} [{elapsed}]"} if progress
                            else False,
                            # the kernel's own start-up warnings (e.g. about its local TCP transport) would
                            # interleave with the per-lesson progress; its errors still show
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                        )
                except papermill.PapermillExecutionError as failure:  # the notebook up to its error is kept
                    error = f"cell {failure.exec_count}: {failure.ename}: {failure.evalue}"
                files.publish()
            seconds = time.perf_counter() - start
            run.lessons.append(LessonRun(path.stem, target, seconds, error, parameters=given))
            log(f"    {'FAILED ' + error if error else 'ok'} ({seconds:.0f} s)")
            if error:
                break
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    from agekit.site import write_site

    if html_export:
        log("writing the course site ...")
    run.index = write_site(run.lessons, out, fast, html_pages=html_export)
    return run


def main_course(args) -> int:
    """``agekit course`` (called from agekit.cli)."""
    notebooks = Path(args.notebooks) if args.notebooks else notebooks_dir(installed=False)
    if args.student is not None:
        target = Path(args.student) if args.student else None
        for path in write_student_copies(notebooks, target):
            print(path)
        return 0
    given = {}
    for item in args.parameter or []:
        if "=" not in item:
            raise ValueError(f"-p expects name=value, got {item!r}.")
        name, raw = item.split("=", 1)
        try:
            given[name] = json.loads(raw)
        except json.JSONDecodeError:
            given[name] = raw
    run = run_course(args.out, fast=args.fast, only=args.only, parameters=given, notebooks=notebooks,
                     progress=True)
    total = sum(lesson.seconds for lesson in run.lessons)
    print(f"runs cache: {runs_dir(start=notebooks)}")
    if not run.ok:
        failed = run.lessons[-1]
        print(f"agekit: error: {failed.notebook} failed at {failed.error}; see {failed.output}", file=sys.stderr)
        print(f"FAILED: {len(run.lessons) - 1} lesson(s) ran, {failed.notebook} failed, after {total:.0f} s; "
              f"index: {run.index}")
        return 1
    print(f"DONE: {len(run.lessons)} lesson(s) ran in {total:.0f} s ({total / 60:.1f} min); index: {run.index}")
    return 0


def add_course_command(subparsers) -> None:
    """Register ``agekit course`` on the CLI's subparsers."""
    course = subparsers.add_parser("course", help="run the course notebooks in order (papermill)")
    course.add_argument("--fast", action="store_true", help="smoke-run every notebook (sets AGEKIT_FAST=1)")
    course.add_argument("--only", nargs="+", metavar="NN", help="run only these lessons, e.g. --only 01 06")
    course.add_argument("--notebooks", metavar="DIR",
                        help="the lessons to run (default: notebooks/ of the checkout around the working folder)")
    course.add_argument("--out", help="folder for executed copies (default: runs/course beside the lessons' runs cache)")
    course.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE", help="set a notebook parameter")
    course.add_argument("--student", nargs="?", const="", metavar="DIR",
                        help="write student copies (to notebooks/student/, or to DIR to work in a folder of your "
                             "own) and exit")
    course.set_defaults(handler=main_course)
