"""The course's widgets in a real browser: JupyterLab, headless Chromium, a student's clicks.

Each test opens a lesson (outputs cleared), runs all cells from the Run menu,
checks that every code cell ran and none shows an error, then drags a slider
of the lesson's widget and checks that the picture it draws changes. The
screenshots go to $AGEKIT_E2E_OUT (default runs/e2e).
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen
RUN_TIMEOUT_S = 600  # the slowest lesson in fast mode takes well under a minute alone; CI machines are shared


def _clear_outputs(path: Path) -> int:
    """Strip outputs and execution counts so that everything checked comes from this run; returns the code cells."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for cell in code:
        cell["outputs"], cell["execution_count"] = [], None
    notebook["metadata"].pop("widgets", None)
    path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return len(code)


def _wait_for_steady_kernel(page, seconds: float = 3.0, timeout: float = 120.0) -> None:
    """Wait until the kernel has been idle for `seconds` in a row.

    A freshly opened notebook can connect, drop and reconnect its kernel while
    the server starts it; cells queued during that moment are lost.
    """
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
        if status == "idle":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= seconds:
                return
        else:
            idle_since = None
        time.sleep(0.25)
    raise AssertionError(f"the kernel was not idle within {timeout:.0f} s (status {status!r})")


def _open_and_run_all(page, base: str, token: str, folder: Path, name: str, screenshots: Path):
    """Open the lesson, wait for its kernel, run all cells, wait until every code cell has run."""
    n_code = _clear_outputs(folder / name)
    # A workspace of its own, reset: only this lesson open, whatever the other test left behind.
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?token={token}&reset")
    page.wait_for_selector(f"{PANEL} .jp-Cell", timeout=120_000)
    _wait_for_steady_kernel(page)
    page.click(".lm-MenuBar-item:has-text('Run')")
    page.click(".lm-Menu-item:has-text('Run All Cells')")
    # Wait until every code cell shows its execution count; stop early if the run halted on an error
    # (the kernel is idle again while cells still wait): the error checks that follow then say which.
    started, deadline = False, time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        prompts = [p.strip() for p in page.locator(f"{PANEL} .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]
        if len(prompts) == n_code and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            break
        busy = any("*" in p for p in prompts)
        started = started or busy
        status = page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
        if started and not busy and status == "idle":
            break
        time.sleep(1)
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    stem = Path(name).stem
    page.screenshot(path=str(screenshots / f"{stem}_after_run_all.png"))
    return stem


def _assert_no_errors(page, folder: Path, name: str) -> None:
    """No error in the browser (traceback or broken widget) nor in the notebook JupyterLab saves."""
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    tracebacks = [text for text in stderr if "Traceback" in text or re.search(r"^\w+(Error|Exception):", text, re.M)]
    assert not tracebacks, f"a cell of {name} shows an error:\n{tracebacks[0][:2000]}"
    broken = page.locator(".jp-OutputArea-output:has-text('Error displaying widget')").count()
    assert broken == 0, f"{broken} widget(s) of {name} failed to display"
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
    saved = json.loads((folder / name).read_text(encoding="utf-8"))
    errors = [o for c in saved["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{name} saved an error output: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    unrun = [i for i, c in enumerate(saved["cells"]) if c["cell_type"] == "code" and not c.get("execution_count")]
    assert not unrun, f"cells {unrun} of {name} did not run"


def _picture(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("L"), dtype=np.float32)


def _drag_slider(page, slider, fraction: float) -> None:
    """Drag the slider's handle by `fraction` of the track's width, as a student would with the mouse."""
    handle = slider.locator(".noUi-handle")
    track = slider.locator(".noUi-base").bounding_box()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + fraction * track["width"], y, steps=12)
    page.mouse.up()


def _drag_and_compare(page, widget, slider_index: int, fraction: float, screenshots: Path, stem: str):
    """Drag one slider of `widget`; return (readout before, after, mean pixel change of its image)."""
    widget.scroll_into_view_if_needed()
    image = widget.locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=60_000)
    slider = widget.locator(".widget-slider").nth(slider_index)
    readout = slider.locator(".widget-readout")
    before_value, before_src = readout.inner_text().strip(), image.get_attribute("src")
    before = _picture(image)
    widget.screenshot(path=str(screenshots / f"{stem}_widget_before.png"))
    _drag_slider(page, slider, fraction)
    page.wait_for_function("([img, old]) => img.src !== old && img.complete && img.naturalWidth > 0",
                           arg=[image.element_handle(), before_src], timeout=60_000)
    after_value = readout.inner_text().strip()
    after = _picture(image)
    widget.screenshot(path=str(screenshots / f"{stem}_widget_after.png"))
    page.screenshot(path=str(screenshots / f"{stem}_page_after_drag.png"))
    assert not page.js_errors, f"JavaScript errors in the page: {page.js_errors[:3]}"
    assert before.shape == after.shape
    return before_value, after_value, float(np.abs(after - before).mean())


@pytest.fixture()
def page(browser_context):
    page = browser_context.new_page()
    page.js_errors = []  # uncaught exceptions in the page: a widget that breaks in JavaScript shows up here
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    yield page
    page.close()


def _lesson_widget(page, jupyterlab, screenshots: Path, name: str, css_class: str):
    """Run the whole lesson in JupyterLab, check it is free of errors, and return its one widget."""
    base, token, folder = jupyterlab
    stem = _open_and_run_all(page, base, token, folder, name, screenshots)
    _assert_no_errors(page, folder, name)
    widget = page.locator(f".{css_class}")
    assert widget.count() == 1, f"{name} shows one {css_class}"
    labels = [text.strip() for text in widget.locator(".widget-slider .widget-label").all_inner_texts()]
    return widget, stem, labels


def test_face_explorer_redraws_when_the_age_slider_moves(page, jupyterlab, screenshots):
    widget, stem, labels = _lesson_widget(page, jupyterlab, screenshots, "01_synthetic_faces.ipynb",
                                          "agekit-face-explorer")
    assert labels == ["age", "person"], labels
    before, after, change = _drag_and_compare(page, widget, 0, 0.35, screenshots, stem)
    assert int(after) > int(before) + 10, f"dragging right makes the face older: {before} -> {after}"
    assert change > 2.0, f"the face image hardly changed (mean pixel change {change:.2f} of 255)"


def test_loss_explorer_redraws_when_the_margin_moves(page, jupyterlab, screenshots):
    widget, stem, labels = _lesson_widget(page, jupyterlab, screenshots, "07_siamese_metric_learning.ipynb",
                                          "agekit-loss-explorer")
    assert labels == ["Q", "margin"], labels
    before, after, change = _drag_and_compare(page, widget, 1, 0.4, screenshots, stem)
    assert int(after) > int(before), f"dragging right widens the margin: {before} -> {after}"
    assert change > 0.5, f"the loss plot hardly changed (mean pixel change {change:.2f} of 255)"
