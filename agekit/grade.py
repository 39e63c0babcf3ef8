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

Taught in the instructor guide (``docs/instructor.md``, "How to grade").
"""

from __future__ import annotations

import ast
import contextlib
import csv
import html
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agekit._io import atomic_write_text
from agekit.course import _source
from agekit.site import install_mathjax, lesson_title, notebook_node

DEFAULT_POINTS = 1
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_OUTPUT_BYTES = 20_000_000
DEFINE_SECONDS = 120.0  # for the notebook's imports and definitions in the checking process
CHECK_SECONDS = 60.0    # for one exercise's check (a student's endless loop ends here)
COLUMNS = ("submission", "lesson", "exercise", "points", "max_points", "passed", "message", "run_status",
           "run_seconds", "notes")
_NBGRADER_SCHEMA = 3
_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.MULTILINE)


# ----------------------------------------------------------------------------- exercises in a notebook


@dataclass
class Exercise:
    """One exercise of a lesson: the function the student writes and the check that grades it."""

    function: str      # the name the student's cell defines, e.g. "mae"
    check: str         # the function of agekit.exercises that grades it, e.g. "check_mae"
    points: float      # what a pass is worth
    solution_cell: int  # index of the cell with the solution (placeholder in a student copy)
    check_cell: int    # index of the cell that calls the check


def _is_solution_cell(cell: dict) -> bool:
    metadata = cell.get("metadata", {})
    return cell.get("cell_type") == "code" and (
        "solution" in metadata.get("tags", []) or bool(metadata.get("nbgrader", {}).get("solution")))


def find_exercises(notebook: dict, name: str = "notebook", strict: bool = True) -> list[Exercise]:
    """The exercises of a solution notebook (or of a student copy), in order.

    An exercise is a code cell tagged ``solution`` (or marked as an nbgrader solution)
    defining a function, and the next code cell that passes that function to a
    ``check_*`` of :mod:`agekit.exercises`. Points come from the check cell's
    ``nbgrader.points`` (:data:`DEFAULT_POINTS` when absent). A solution cell without
    a function or a check raises ``ValueError`` when ``strict``, else it is left out.
    """
    cells = notebook.get("cells", [])
    exercises = []
    for index, cell in enumerate(cells):
        if not _is_solution_cell(cell):
            continue
        match = _DEF.search(_source(cell))
        if match is None:
            if not strict:
                continue
            raise ValueError(f"{name}: solution cell {index} defines no function; an exercise cell must start "
                             "with 'def NAME(...)'.")
        function = match.group(1)
        pattern = re.compile(rf"\b(check_\w+)\(\s*{re.escape(function)}\s*\)")
        for later in range(index + 1, len(cells)):
            if _is_solution_cell(cells[later]):
                break
            found = pattern.search(_source(cells[later])) if cells[later].get("cell_type") == "code" else None
            if found:
                points = cells[later].get("metadata", {}).get("nbgrader", {}).get("points", DEFAULT_POINTS)
                exercises.append(Exercise(function, found.group(1), points, index, later))
                break
        else:
            if not strict:
                continue
            raise ValueError(f"{name}: no cell after solution cell {index} calls a check on {function!r}; "
                             f"add e.g. 'check_...({function})' from agekit.exercises.")
    return exercises


def stamp_grading_metadata(notebook: dict, lesson: str | None = None) -> dict:
    """Write nbgrader metadata on every exercise's cells (in place, idempotent); returns the notebook.

    The solution cell becomes an nbgrader solution cell (``grade_id`` = the function's
    name), the check cell a locked autograder-test cell worth its points (kept when
    already set, so an instructor can change them in the solution notebook).
    ``lesson`` (e.g. ``"02_metrics_and_evr"``) goes to the notebook's
    ``metadata.agekit.lesson``, which tells the grader what a renamed copy is.
    """
    for exercise in find_exercises(notebook, lesson or "notebook", strict=False):
        cells = notebook["cells"]
        cells[exercise.solution_cell].setdefault("metadata", {})["nbgrader"] = {
            "grade": False, "grade_id": exercise.function, "locked": False,
            "schema_version": _NBGRADER_SCHEMA, "solution": True, "task": False,
        }
        cells[exercise.check_cell].setdefault("metadata", {})["nbgrader"] = {
            "grade": True, "grade_id": exercise.check, "locked": True, "points": exercise.points,
            "schema_version": _NBGRADER_SCHEMA, "solution": False, "task": False,
        }
    if lesson:
        notebook.setdefault("metadata", {}).setdefault("agekit", {})["lesson"] = lesson
    return notebook


def stamp_notebooks(directory: Path | None = None) -> list[Path]:
    """Stamp every lesson in ``notebooks/`` (rewritten only where something changes); returns those rewritten.

    ``python -c "import agekit.grade as g; g.stamp_notebooks()" && agekit course --student``
    stamps the solution notebooks and regenerates the student copies from them.
    """
    from agekit.course import _dump, course_notebooks

    changed = []
    for path in course_notebooks(directory):
        text = path.read_text(encoding="utf-8")
        stamped = _dump(stamp_grading_metadata(json.loads(text), lesson=path.stem))
        if stamped != text:
            atomic_write_text(path, stamped)
            changed.append(path)
    return changed


# ----------------------------------------------------------------------------- which lesson a submission is


def identify_lesson(notebook: dict, file_name: str, lessons: dict[str, dict]) -> str | None:
    """The lesson (stem of its solution notebook) a submission is a copy of, or None.

    By the copy's ``metadata.agekit.lesson``, else its first heading, else a
    leading ``NN_`` or ``NN-`` in the file name.
    """
    named = notebook.get("metadata", {}).get("agekit", {}).get("lesson")
    if named in lessons:
        return named
    title = lesson_title(notebook)
    if title:
        for stem, solution in lessons.items():
            if lesson_title(solution) == title:
                return stem
    number = re.match(r"^(\d\d)[_\- ]", Path(file_name).name)
    if number:
        for stem in lessons:
            if stem.startswith(number.group(1) + "_"):
                return stem
    return None


# ----------------------------------------------------------------------------- step 1: running the notebook


class _RunLimit:
    """Watches one notebook run: kills the kernel's process group at the deadline."""

    def __init__(self, seconds: float):
        self.seconds, self.expired, self.pid = seconds, False, None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self):
        self._timer.start()

    def cancel(self):
        self._timer.cancel()

    def _expire(self):
        self.expired = True
        _kill_group(self.pid)


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _client_class():
    """nbclient's NotebookClient, with a cap on the size of the outputs and the kernel's pid recorded."""
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        max_output_bytes = DEFAULT_MAX_OUTPUT_BYTES
        limit: _RunLimit | None = None
        kernel_env: dict | None = None
        _output_bytes = 0
        _truncated = False

        async def async_start_new_kernel(self, **kwargs):
            await super().async_start_new_kernel(env=self.kernel_env, **kwargs)
            pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
            if self.limit is not None:
                self.limit.pid = pid  # launched with start_new_session: its pid is its process group
                if self.limit.expired:
                    _kill_group(pid)

        def output(self, outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {}), default=str))
            if self._output_bytes + size > self.max_output_bytes:
                if not self._truncated:
                    self._truncated = True
                    outs.append(_stream(f"[agekit grade: output cut here; the notebook's outputs passed the "
                                        f"{self.max_output_bytes:,}-byte limit]\n"))
                return None
            self._output_bytes += size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def _stream(text: str) -> dict:
    import nbformat

    return nbformat.v4.new_output("stream", name="stderr", text=text)


def run_notebook(notebook: dict, workdir: Path, timeout: float, fast: bool = True,
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, kernel_name: str = "python3"):
    """Execute a notebook in ``workdir``; returns (executed notebook, status, seconds).

    status is ``"ok"``, ``"errors"`` (some cells raised; the run went on), ``"timeout"``
    (stopped at ``timeout`` seconds: the kernel's process group was killed) or
    ``"failed: ..."`` (the kernel could not run it).
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    node = notebook_node(notebook)
    if fast:
        try:
            from papermill.parameterize import parameterize_notebook

            node = parameterize_notebook(node, {"fast": True})  # beside AGEKIT_FAST=1, which forces it anyway
        except Exception:  # no parameters cell (a student may have removed its tag): the environment decides
            pass
    environment = {**os.environ, "AGEKIT_RUNS": str(workdir / "runs"), "HOME": str(workdir),
                   "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    environment["AGEKIT_FAST"] = "1" if fast else "0"
    limit = _RunLimit(timeout)
    client = _client_class()(node, timeout=max(1, int(timeout)), kernel_name=kernel_name, allow_errors=True,
                             resources={"metadata": {"path": str(workdir)}},
                             extra_arguments=["--IPKernelApp.log_level=ERROR"])
    client.max_output_bytes, client.limit, client.kernel_env = max_output_bytes, limit, environment
    start = time.perf_counter()
    limit.start()
    status = "ok"
    try:
        client.execute()
    except (DeadKernelError, CellTimeoutError, RuntimeError) as error:
        status = "timeout" if limit.expired or isinstance(error, CellTimeoutError) else f"failed: {error}"
    except Exception as error:  # a notebook the kernel cannot run at all must not stop the other submissions
        status = "timeout" if limit.expired else f"failed: {type(error).__name__}: {error}"
    finally:
        limit.cancel()
        _kill_group(limit.pid)
    seconds = time.perf_counter() - start
    if limit.expired:
        status = "timeout"
    if status == "ok" and any(output.get("output_type") == "error"
                              for cell in node.cells for output in cell.get("outputs", [])):
        status = "errors"
    return node, status, seconds


# ----------------------------------------------------------------------------- step 2: the checks


_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def definitions(source: str) -> str:
    """The imports, functions, classes and literal constants of one code cell, as Python source.

    IPython's magics and shell lines are dropped; raises SyntaxError for a cell that is not Python.
    """
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    tree = ast.parse("\n".join(lines))
    kept = []
    for node in tree.body:
        if isinstance(node, _KEEP):
            kept.append(node)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) \
                and _is_literal(node.value):
            kept.append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None \
                and _is_literal(node.value):
            kept.append(node)
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


# What the checks rely on: the package, torch's tensor functions and Python's own modules they use.
_GUARDED = ("builtins", "math", "statistics", "re", "tempfile", "pathlib", "functools", "operator", "os", "random",
            "contextlib", "torch", "torch.nn", "torch.nn.functional", "torch.linalg", "numpy", "sklearn.decomposition")


class _CheckTimeout(BaseException):
    """Raised by the alarm when one exercise's check runs past its share of the time."""


def _snapshot() -> dict:
    """Every function, class and module held by the guarded modules, and torch.Tensor's own attributes."""
    import torch

    owners = [module for name, module in list(sys.modules.items())
              if module is not None and (name in _GUARDED or name.split(".")[0] == "agekit")]
    state = {"classes": {torch.Tensor: set(vars(torch.Tensor))}, "values": {}}
    with warnings.catch_warnings():  # touching deprecated attributes (torch.distributed.reduce_op) warns
        warnings.simplefilter("ignore")
        for owner in owners + [torch.Tensor]:
            for key, value in list(vars(owner).items()):
                if callable(value) or isinstance(value, types.ModuleType):
                    state["values"][(id(owner), key)] = (owner, value, *_code_of(value))
    return state


def _code_of(value) -> tuple:
    """A Python function's code and defaults (what an in-place change would replace); (None, None) otherwise."""
    if isinstance(value, types.FunctionType):
        return value.__code__, value.__defaults__
    return None, None


def _restore(state: dict) -> list[str]:
    """Put back whatever changed since :func:`_snapshot`; returns the names changed."""
    changed = []
    for (_, key), (owner, value, code, defaults) in state["values"].items():
        now = vars(owner).get(key, None)
        if now is value and (code is None or (value.__code__ is code and value.__defaults__ is defaults)):
            continue
        changed.append(f"{getattr(owner, '__name__', owner)}.{key}")
        try:
            if code is not None:
                value.__code__, value.__defaults__ = code, defaults
            if now is not value:
                setattr(owner, key, value)
        except (AttributeError, TypeError):
            pass
    for cls, keys in state["classes"].items():  # a method added to torch.Tensor hides the C one
        for key in set(vars(cls)) - keys:
            changed.append(f"{cls.__module__}.{cls.__name__}.{key}")
            with contextlib.suppress(AttributeError, TypeError):
                delattr(cls, key)
    return sorted(set(changed))


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters."""

    def __init__(self, limit: int = 4000):
        self.parts, self.size, self.limit = [], 0, limit

    def write(self, text):
        if self.size < self.limit:
            self.parts.append(text[: self.limit - self.size])
            self.size += len(self.parts[-1])
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _check_child() -> None:
    """The checking process: reads its job as JSON on stdin, writes one result line per exercise."""
    job = json.loads(sys.stdin.read())
    nonce = job["nonce"]
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # whatever the student's code prints goes nowhere
    os.dup2(quiet, 2)

    def report(**entry):
        results.write(f"{nonce} {json.dumps(entry)}\n")
        results.flush()

    try:
        _check_all(job, report)
    except Exception as error:  # the grader's own failure: say so instead of grading nothing silently
        import traceback

        report(notes=[f"the checks could not run: {type(error).__name__}: {error}",
                      traceback.format_exc(limit=3)[-1500:]])
    results.close()


def _check_all(job: dict, report) -> None:
    """Run the notebook's definitions, then each exercise's check; ``report`` receives the results."""
    import importlib
    import inspect

    import agekit.exercises as exercises

    checks = {}
    for exercise in job["exercises"]:
        check = getattr(exercises, exercise["check"], None)
        checks[exercise["check"]] = check
        if check is not None:  # import what the check imports, so that it is guarded too
            for module in re.findall(r"^\s*(?:from|import)\s+([\w.]+)", inspect.getsource(check), re.MULTILINE):
                with contextlib.suppress(ImportError):
                    importlib.import_module(module)
    state = _snapshot()
    namespace = {"__name__": "__main__"}
    notes = []
    sink = _CappedText()

    def alarm(signum, frame):
        raise _CheckTimeout()

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, job["define_seconds"])
    try:
        for number, source in job["cells"]:
            try:
                code = compile(definitions(source), f"<cell {number}>", "exec")
            except SyntaxError as error:
                notes.append(f"cell {number} is not valid Python ({error.msg}, line {error.lineno})")
                continue
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    exec(code, namespace)
            except Exception as error:
                notes.append(f"cell {number} raised {type(error).__name__}: {error}")
    except _CheckTimeout:
        notes.append("the notebook's definitions ran past their time limit")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    changed = _restore(state)
    if changed:
        notes.append("the notebook changed " + ", ".join(changed[:5]) + " (put back before checking)")
    report(notes=notes)
    for exercise in job["exercises"]:
        function, check = namespace.get(exercise["function"]), checks[exercise["check"]]
        passed, message = False, ""
        if check is None:
            message = f"agekit.exercises has no {exercise['check']}; update agekit"
        elif not callable(function):
            message = (f"no function {exercise['function']!r} is defined; keep the exercise cell's "
                       f"'def {exercise['function']}(...)' line")
        else:
            sink = _CappedText()
            signal.setitimer(signal.ITIMER_REAL, job["check_seconds"])
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
                    check(function)
                passed, message = True, sink.getvalue().strip().splitlines()[-1:] or ["passed"]
                message = message[0]
            except _CheckTimeout:
                message = f"the check did not finish within {job['check_seconds']:.0f} s (an endless loop?)"
            except NotImplementedError:
                message = "not attempted: the exercise cell still raises NotImplementedError"
            except AssertionError as error:
                message = str(error) or "the check failed"
            except Exception as error:
                message = f"{type(error).__name__}: {error}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            changed = _restore(state)
            if changed:
                passed = False
                message = ("not accepted: the function changed " + ", ".join(changed[:5]) +
                           " while it was checked")
        report(function=exercise["function"], passed=passed, message=message[:2000])


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
            [sys.executable, "-c", "from agekit.grade import _check_child; _check_child()"],
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
