"""The course notebooks: structure, student copies, and papermill parameters.

nbval runs every lesson in fast mode as part of the same pytest run (see the
``addopts`` in pyproject.toml); these tests check what nbval does not.
"""

import functools
import json
import re
from pathlib import Path

import papermill
import pytest

from agekit import course

NOTEBOOKS = course.course_notebooks()
EXPECTED = [
    "00_welcome", "01_synthetic_faces", "02_metrics_and_evr", "03_backbone_ir50", "04_reference_selection",
    "05_age_reweighting", "06_rapl_training", "07_siamese_metric_learning", "08_embeddings", "09_ablations",
    "10_real_datasets",
]
SECTIONS = ["Aim", "Theory", "Practice", "Exercises", "Discussion", "References"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_lessons_are_named_and_ordered_as_planned():
    names = [p.stem for p in NOTEBOOKS]
    assert names == EXPECTED, f"the course is the eleven planned lessons in order; found {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_follows_the_template(path):
    notebook = _load(path)
    cells = notebook["cells"]
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in cells if c["cell_type"] == "code"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert tagged[0] is code[0], "the parameters cell is the first code cell"
    params = _source(tagged[0])
    for line in ("fast: bool = ", "seed: int = ", 'device: str = "auto"'):
        assert line in params, f"parameters cell lacks {line!r}"
    for line in params.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.match(r"^\w+: (bool|int|float|str) = .+#", line), f"untyped or uncommented parameter: {line!r}"
    declared = papermill.inspect_notebook(str(path))
    names = [line.split(":")[0] for line in params.splitlines() if re.match(r"^\w+:", line)]
    assert sorted(declared) == sorted(names), "papermill must parse every parameter (no '=' in comments)"
    assert "parameters(globals()" in _source(code[1]), "the cell after the parameters validates them"
    headings = [line[3:].strip() for c in cells if c["cell_type"] == "markdown"
                for line in _source(c).splitlines() if line.startswith("## ")]
    found = [h for h in headings if h in SECTIONS]
    assert found == SECTIONS, f"sections in order {SECTIONS}, found {found}"
    assert any("NBVAL_CHECK_OUTPUT" in _source(c) for c in code), "no cell is checked by nbval"
    assert any("solution" in c.get("metadata", {}).get("tags", []) for c in code), "no exercise solution cell"
    for cell in code:
        assert not re.search(r"^\s*[!%]pip ", _source(cell), re.M), "no pip installs inside lessons"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_clean(path):
    notebook = _load(path)
    assert path.stat().st_size < 3_000_000, "keep committed notebooks small"
    executed = [c for c in notebook["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert executed, "lessons are committed with the outputs of a full run"
    text = json.dumps([c["outputs"] for c in executed])
    for prefix in ("/work/", "/home/", "/root/", "/tmp/", "/Users/", "C:\\\\"):
        assert prefix not in text, f"absolute path {prefix!r} in the outputs"
    errors = [o for c in executed for o in c["outputs"] if o.get("output_type") == "error"]
    assert not errors, "a committed lesson shows an error"
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in notebook["cells"])


def test_student_copies_are_in_sync():
    stale = course.stale_student_copies()
    assert sorted(p.name for p in (NOTEBOOKS[0].parent / "student").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert not stale, f"regenerate with 'agekit course --student': {stale}"
    for path in NOTEBOOKS:
        student = _load(path.parent / "student" / path.name)
        for cell in student["cells"]:
            assert "solution" not in cell.get("metadata", {}).get("tags", [])


@functools.cache
def _package_functions() -> frozenset[str]:
    """Every public function and class the package defines at module level (read once per test run)."""
    import ast

    names = set()
    for path in (Path(course.__file__).parent).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                  and not node.name.startswith("_")}
    return frozenset(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lessons_define_nothing_the_package_has(path):
    """The package is the one home of what lessons need: a lesson calls it instead of writing its own copy
    (an exercise's solution cell re-implementing a package function is the intended exception)."""
    package = _package_functions()
    for cell in _load(path)["cells"]:
        if cell["cell_type"] != "code" or "solution" in cell.get("metadata", {}).get("tags", []):
            continue
        defined = set(re.findall(r"^\s*(?:def|class) (\w+)", _source(cell), re.M))
        assert not defined & package, f"{path.stem} defines {sorted(defined & package)}, which agekit has"
        assert not defined & {"run_name", "shown"}, f"{path.stem} defines {sorted(defined)}: use agekit.lesson"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_claims_held_in_a_full_run(path):
    """Committed lessons were executed in full mode, and every claim in their code held in that run."""
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]

    def printed(cell) -> str:
        return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")

    assert "full mode:" in printed(code[1]), "the validation cell's banner shows the mode it was executed in"
    for cell in code:
        calls = len(re.findall(r"\bclaim\(", _source(cell)))
        text = printed(cell)
        assert "claim not checked" not in text, f"{path.stem} was committed with fast-mode claims"
        held = text.count("claim holds: ")
        assert held >= calls, (f"{path.stem}: a cell with {calls} claim(s) printed {held} 'claim holds' lines:\n"
                               + _source(cell)[:300])
