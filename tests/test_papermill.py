"""Running lessons headless with papermill, as course staff do.

One lesson is executed with injected parameters and its output must show that
they took effect; a badly typed parameter must stop the lesson at the
validation cell with one clear error; ``agekit course`` must run lessons in
order, write an index, and stop at the first failure.
"""

import json
from pathlib import Path

import papermill
import pytest
import torch

from agekit import course

LESSONS = {p.stem: p for p in course.course_notebooks()}


def _outputs(notebook: Path) -> list[str]:
    """The text each code cell printed, in order (one string per cell)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    texts = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        text = ""
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text += "".join(output["text"])
        texts.append(text)
    return texts


def test_injected_parameters_take_effect(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEKIT_RUNS", str(tmp_path / "runs"))
    target = tmp_path / "01.ipynb"
    papermill.execute_notebook(
        str(LESSONS["01_synthetic_faces"]), str(target), kernel_name="python3", progress_bar=False,
        parameters={"seed": 5, "n_faces": 240, "image_size": 32}, cwd=str(LESSONS["01_synthetic_faces"].parent),
    )
    cells = json.loads(target.read_text(encoding="utf-8"))["cells"]
    injected = [c for c in cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(injected) == 1
    # The validation cell reports what the lesson will use: the injected values, not the defaults (4000, 64, 0).
    printed = "\n".join(_outputs(target))
    assert "240 faces of 32 px, seed 5" in printed
    assert "4000 faces" not in printed


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")


@pytest.mark.parametrize("lesson, name, value, error, words", [
    ("00_welcome", "seed", "three", "TypeError", ["'seed'", "int", "'three'"]),
    ("00_welcome", "fast", "yes", "TypeError", ["'fast'", "True or False"]),
    ("00_welcome", "device", "gpu", "ValueError", ["'device'", "'gpu'", "cuda"]),
    pytest.param("00_welcome", "device", "cuda", "ValueError", ["'device'", "no CUDA GPU"], marks=NO_CUDA),
    ("00_welcome", "foo", 1, "ValueError", ["no parameter 'foo'", "fast (bool), seed (int), device (str)"]),
    ("02_metrics_and_evr", "epoch", 5, "ValueError", ["no parameter 'epoch'", "Did you mean 'epochs'?"]),
])
def test_bad_parameter_stops_at_the_validation_cell(tmp_path, lesson, name, value, error, words):
    """A mistyped value, a device the machine lacks or a name the lesson does not have stops the
    validation cell (papermill itself only warns about unknown names and runs on)."""
    target = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(
            str(LESSONS[lesson]), str(target), kernel_name="python3", progress_bar=False,
            parameters={name: value}, cwd=str(LESSONS[lesson].parent),
        )
    assert failure.value.ename == error
    for word in words:
        assert word in failure.value.evalue
    # It stops at the cell right after the parameters: nothing after it ran.
    cells = [c for c in json.loads(target.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    ran = [i for i, c in enumerate(cells) if c.get("execution_count")]
    assert ran[-1] == 2, "parameters (0), injected parameters (1), validation (2), then stop"


def test_course_runs_in_order_writes_an_index_and_stops_on_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEKIT_RUNS", str(tmp_path / "runs"))
    log = []
    good = course.run_course(tmp_path / "good", fast=True, only=["00"], log=log.append)
    assert good.ok and [lesson.notebook for lesson in good.lessons] == ["00_welcome"]
    assert (tmp_path / "good" / "00_welcome.ipynb").is_file()
    index = good.index.read_text(encoding="utf-8")
    assert "00_welcome" in index and "fast mode" in index and "failed:" not in index

    # A parameter 00 declares with a bad type: the run stops there and 03 never starts.
    bad = course.run_course(tmp_path / "bad", fast=True, only=["03", "00"], parameters={"seed": "three"},
                            log=log.append)
    assert not bad.ok
    assert [lesson.notebook for lesson in bad.lessons] == ["00_welcome"]
    assert "TypeError" in bad.lessons[0].error and "'seed'" in bad.lessons[0].error
    assert "failed: cell" in bad.index.read_text(encoding="utf-8")
    assert not (tmp_path / "bad" / "03_backbone_ir50.ipynb").exists()
    assert any("FAILED" in line for line in log)


def test_course_rejects_an_unknown_lesson(tmp_path):
    with pytest.raises(ValueError, match="No notebook matches '42'"):
        course.run_course(tmp_path, fast=True, only=["42"])
