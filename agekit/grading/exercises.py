"""Which exercises a lesson has: finding them in a notebook, stamping nbgrader's metadata, naming a submission's lesson.

An exercise is a solution cell defining a function and the next code cell
that passes it to a check of :mod:`agekit.exercises`. The solution notebooks
carry this in nbgrader's cell metadata (:func:`stamp_grading_metadata`), so
student copies carry it too. Part of ``agekit grade`` (:mod:`agekit.grade`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from agekit._io import atomic_write_text
from agekit.course import _source
from agekit.site import lesson_title

DEFAULT_POINTS = 1
_NBGRADER_SCHEMA = 3
_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.MULTILINE)


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
