"""The course site in headless Chromium with the network blocked: math typeset, no request leaves the folder.

The site is built by ``agekit.site.write_site`` from the committed lessons (already
executed; nothing is run here), as ``agekit course`` builds it from its runs. Every
request the pages make is recorded; any that is not a local file is refused.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from agekit import course
from agekit.course import LessonRun
from agekit.site import write_site

MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$(?!\$)[^$\n]+?(?<!\\)\$", re.DOTALL)


def _math_in_markdown(path: Path) -> int:
    """How many $...$ and $$...$$ spans the lesson's Markdown cells hold (counted here, not by MathJax)."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    return sum(len(MATH.findall(cell.source)) for cell in notebook.cells if cell.cell_type == "markdown")


def _local(url: str) -> bool:
    """A file of the site, or what the browser makes up itself (MathJax probes fonts with about:blank)."""
    return url.startswith(("file://", "data:", "about:blank"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    lessons = []
    for k, path in enumerate(course.course_notebooks()):
        shutil.copy(path, out / path.name)
        lessons.append(LessonRun(path.stem, out / path.name, 10.0 + k, parameters={"fast": True}))
    index = write_site(lessons, out, fast=True)
    return index, lessons


@pytest.fixture
def offline_page(browser_context):
    """A page whose every request is recorded, and refused unless it stays on this machine."""
    page = browser_context.new_page()
    page.requests, page.js_errors = [], []

    def route(route):
        page.requests.append(route.request.url)
        if _local(route.request.url):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    yield page
    page.close()


@pytest.mark.slow
def test_every_lesson_typesets_its_math_offline(site, offline_page):
    index, lessons = site
    page = offline_page
    for lesson in lessons:
        page.goto(lesson.html.as_uri())
        page.wait_for_function(
            "() => window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending === 0 "
            "&& MathJax.Hub.queue.running === 0", timeout=120_000)
        text = "\n".join(page.locator(".jp-MarkdownOutput").all_inner_texts())
        assert "$$" not in text, f"{lesson.notebook}: raw display math left on the page"
        for command in ("\\frac", "\\hat", "\\mathbb", "\\sum", "\\text{"):
            assert command not in text, f"{lesson.notebook}: raw TeX {command} visible"
        typeset = page.locator("span.MathJax").count()
        assert typeset >= _math_in_markdown(Path(lesson.output)) > 0, lesson.notebook
        assert page.locator(".MathJax_Error, .noError").count() == 0, lesson.notebook
    outside = [url for url in page.requests if not _local(url)]
    assert outside == [], f"the pages asked the network for {outside[:5]}"
    assert any("/mathjax/config/agekit.js" in url for url in page.requests)  # the local copy was used
    assert page.js_errors == []


@pytest.mark.slow
def test_landing_page_links_the_lessons_in_order(site, offline_page):
    index, lessons = site
    page = offline_page
    page.goto(index.as_uri())
    text = page.inner_text("body")
    assert "agekit 0.1.0" in text and "torch " in text and "fast mode" in text
    assert "fast=True" in text and "11 lessons ran" in text
    titles = page.locator("table a b").all_inner_texts()
    assert len(titles) == len(lessons) and titles[0].startswith("00")
    page.click(f"text={titles[0]}")
    page.wait_for_load_state()
    assert Path(page.url).name == "00_welcome.html"
    page.locator("nav.agekit-nav").first.locator("a", has_text="→").click()
    page.wait_for_load_state()
    assert Path(page.url).name == "01_synthetic_faces.html"
    page.locator("nav.agekit-nav").first.locator("a", has_text="course index").click()
    page.wait_for_load_state()
    assert Path(page.url).name == "index.html"
    assert [url for url in page.requests if not _local(url)] == []
