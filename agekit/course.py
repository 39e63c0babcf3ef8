"""Running the course: notebook parameters, the headless runner, student copies.

Every notebook starts with one cell tagged ``parameters`` holding typed literals::

    fast: bool = False   # a quick smoke run
    seed: int = 0        # random seed
    device: str = "auto" # "auto", "cpu", "cuda" or "mps"

and the next cell calls :func:`parameters`, which checks each value (including
the ones papermill injects) against its annotation, applies ``AGEKIT_FAST=1``,
and says clearly what is wrong.

``agekit course`` runs the notebooks in order with papermill, writes the executed
copies and the offline course site (:mod:`agekit.site`); ``agekit course --student``
writes the student copies (solutions replaced by placeholders, nbgrader metadata
added by :mod:`agekit.grade`) into ``notebooks/student/``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from agekit._io import atomic_write_text

DEVICES = ("auto", "cpu", "cuda", "mps")
SOLUTION_TAG = "solution"
PLACEHOLDER = (
    "# YOUR CODE HERE: replace this line and the next with your solution.\n"
    'raise NotImplementedError("Write your solution here, then run the check below.")'
)
_TYPES = (bool, int, float, str, list, dict)


def fast_from_environment() -> bool:
    """True when ``AGEKIT_FAST`` is set to 1/true/yes (forces every notebook's fast path)."""
    return os.environ.get("AGEKIT_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def _check_type(name: str, value, expected) -> object:
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, expected):
        return value
    raise TypeError(
        f"Parameter {name!r} must be {expected.__name__}, got {value!r} ({type(value).__name__}). "
        f"With papermill, pass e.g. -p {name} <value> with a {expected.__name__}."
    )


def parameters(
    namespace: Mapping, choices: Mapping[str, Sequence] | None = None, positive: Iterable[str] = ()
) -> SimpleNamespace:
    """Check a notebook's parameters and return them as an object.

    namespace: the notebook's ``globals()``; every name annotated in the
    ``parameters`` cell is checked against its type (papermill's injected values
    included). ``choices`` maps a name to its allowed values (``device`` always has
    ``DEVICES``); names in ``positive`` must be > 0. ``AGEKIT_FAST=1`` turns ``fast``
    on. Raises one clear ``TypeError``/``ValueError`` naming the parameter.
    """
    annotations = dict(namespace.get("__annotations__", {}))
    if not annotations:
        raise ValueError("No annotated parameters found: the 'parameters' cell must declare e.g. 'seed: int = 0'.")
    allowed = {"device": DEVICES, **dict(choices or {})}
    values = {}
    for name, expected in annotations.items():
        if name.startswith("_") or expected not in _TYPES or name not in namespace:
            continue
        value = _check_type(name, namespace[name], expected)
        if name in allowed and value not in allowed[name]:
            raise ValueError(f"Parameter {name!r} must be one of {list(allowed[name])}, got {value!r}.")
        if name in positive and not value > 0:
            raise ValueError(f"Parameter {name!r} must be positive, got {value!r}.")
        values[name] = value
    if "fast" in values and fast_from_environment():
        values["fast"] = True
    return SimpleNamespace(**values)


# ----------------------------------------------------------------------------- notebooks on disk


def runs_dir(fast: bool = False) -> Path:
    """Where lessons cache expensive results: ``runs/`` beside ``notebooks/``, or ``$AGEKIT_RUNS``.

    Fast-mode results go to ``runs/fast/`` so a smoke run never stands in for a real one.
    Later lessons load what earlier ones saved here and train only when it is missing.
    """
    root = Path(os.environ.get("AGEKIT_RUNS") or notebooks_dir().parent / "runs")
    return root / "fast" if fast else root


def notebooks_dir() -> Path:
    """The course's ``notebooks/`` folder (beside the package in a checkout)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


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
    out: str | Path = "runs/course",
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

    Each executed copy goes to ``out/NN_name.ipynb`` (and ``.html``), with a landing
    page ``out/index.html``. The run stops at the first failing notebook and reports
    its failing cell. ``parameters`` are passed to every notebook that declares them
    (others are left alone). ``progress`` shows the cells done in each lesson.
    """
    import papermill

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lessons = _select(course_notebooks(notebooks), only)
    if not lessons:
        raise ValueError(f"No notebooks found in {notebooks or notebooks_dir()}.")
    run = CourseRun()
    environment_fast = os.environ.get("AGEKIT_FAST")
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
            try:
                papermill.execute_notebook(
                    str(path), str(target), parameters=given, kernel_name=kernel_name,
                    cwd=str(path.parent), log_output=False,
                    progress_bar={"desc": "    cells", "leave": False, "mininterval": 1.0,
                                  "bar_format": "{desc} {n_fmt}/{total_fmt} [{elapsed}]"} if progress else False,
                    # the kernel's own start-up warnings (e.g. about its local TCP transport) would
                    # interleave with the per-lesson progress; its errors still show
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
            except papermill.PapermillExecutionError as failure:
                error = f"cell {failure.exec_count}: {failure.ename}: {failure.evalue}"
            seconds = time.perf_counter() - start
            run.lessons.append(LessonRun(path.stem, target, seconds, error, parameters=given))
            log(f"    {'FAILED ' + error if error else 'ok'} ({seconds:.0f} s)")
            if error:
                break
    finally:
        if environment_fast is None:
            os.environ.pop("AGEKIT_FAST", None)
        else:
            os.environ["AGEKIT_FAST"] = environment_fast
    from agekit.site import write_site

    if html_export:
        log("writing the course site ...")
    run.index = write_site(run.lessons, out, fast, html_pages=html_export)
    return run


def main_course(args) -> int:
    """``agekit course`` (called from agekit.cli)."""
    if getattr(args, "student", False):
        for path in write_student_copies():
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
    run = run_course(args.out, fast=args.fast, only=args.only, parameters=given, progress=True)
    total = sum(lesson.seconds for lesson in run.lessons)
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
    course.add_argument("--out", default="runs/course", help="folder for executed copies (default runs/course)")
    course.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE", help="set a notebook parameter")
    course.add_argument("--student", action="store_true", help="write student copies to notebooks/student/ and exit")
    course.set_defaults(handler=main_course)
