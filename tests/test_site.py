"""``agekit course``'s site: lesson pages with local MathJax and previous / next links, the landing page.

Runs two tiny lessons written here (a real kernel, papermill), not the course.
"""

from __future__ import annotations

import json
import re

import torch

import agekit
from agekit import course, site
from agekit.cli import main


def _lesson(title: str, aim: str, body: str) -> dict:
    markdown = {"cell_type": "markdown", "id": "intro", "metadata": {},
                "source": f"# {title}\n\nTime: ~5 min\n\n## Aim\n\n{aim}\n\n$$a = \\frac{{b}}{{c}}$$\n"}
    parameters = {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "outputs": [],
                  "execution_count": None, "source": "seed: int = 0  # a seed"}
    code = {"cell_type": "code", "id": "work", "metadata": {}, "outputs": [], "execution_count": None, "source": body}
    return {"cells": [markdown, parameters, code], "metadata": {"kernelspec": {"name": "python3",
            "display_name": "Python 3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def _course(tmp_path, second_body="print(seed * 2)"):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "01_alpha.ipynb").write_text(json.dumps(_lesson(
        "01 · Alpha", "- add two numbers, $a + b$;\n- print `them`.", "print(seed + 1)")), encoding="utf-8")
    (folder / "02_beta.ipynb").write_text(json.dumps(_lesson(
        "02 · Beta", "- double a number.", second_body)), encoding="utf-8")
    return folder


def test_course_site_has_landing_page_pages_and_links(tmp_path, monkeypatch, capsys):
    folder = _course(tmp_path)
    out = tmp_path / "site"
    assert main(["course", "--notebooks", str(folder), "--out", str(out), "-p", "seed=3"]) == 0
    captured = capsys.readouterr()
    final = captured.out.strip().splitlines()[-1]
    assert re.fullmatch(r"DONE: 2 lesson\(s\) ran in \d+ s \(\d+\.\d min\); index: .*index\.html", final), final
    assert re.search(r"cells \d/4 \[", captured.err)  # progress: cells done of 4 (3 + papermill's parameters)
    index = (out / "index.html").read_text(encoding="utf-8")
    for expected in ("01 · Alpha", "02 · Beta", "add two numbers, $a + b$", "<code>them</code>", "seed=3",
                     f"agekit {agekit.__version__}", f"torch {torch.__version__}", "2 lessons ran", "full mode",
                     "href='01_alpha.html'", "href='02_beta.ipynb'"):
        assert expected in index, expected
    first, second = ((out / name).read_text(encoding="utf-8") for name in ("01_alpha.html", "02_beta.html"))
    assert "href='02_beta.html'" in first and "href='01_alpha.html'" not in first
    assert "href='01_alpha.html'" in second and "href='02_beta.html'" not in second
    assert "href='index.html'" in first and "href='index.html'" in second
    for page in (index, first, second):
        sources = re.findall(r"<(?:script|link|img)[^>]*?(?:src|href)=['\"]([^'\"]+)", page)
        assert sources and all(not s.startswith(("http:", "https:", "//")) for s in sources), sources
        assert site.MATHJAX_URL in page
    assert (out / "mathjax" / "MathJax.js").is_file() and (out / "mathjax" / "config" / "agekit.js").is_file()
    executed = json.loads((out / "02_beta.ipynb").read_text(encoding="utf-8"))
    assert "".join(executed["cells"][-1]["outputs"][0]["text"]) == "6\n"  # the parameter reached the lesson


def test_failed_lesson_shows_on_landing_page_and_final_line(tmp_path, monkeypatch, capsys):
    folder = _course(tmp_path, second_body="raise ValueError('broken on purpose')")
    out = tmp_path / "site"
    assert main(["course", "--notebooks", str(folder), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1].startswith("FAILED: 1 lesson(s) ran, 02_beta failed, after ")
    assert "02_beta failed at cell" in captured.err and "ValueError" in captured.err
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "stopped at 02_beta" in index and "failed: cell" in index and "broken on purpose" in index


def test_aim_and_title_are_read_from_the_lessons():
    for path in course.course_notebooks():
        notebook = json.loads(path.read_text(encoding="utf-8"))
        assert site.lesson_title(notebook).startswith(path.stem[:2] + " · ")
        assert site.lesson_aim(notebook).startswith("By the end of this lesson you will be able to")
