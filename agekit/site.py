"""The course as a web site that works without the internet: lesson pages and a landing page.

``agekit course`` writes, beside the executed notebooks, one HTML page per lesson
and ``index.html``, a landing page with every lesson's title, aim, time, status and
parameters, the date and the versions of agekit and torch. The pages load nothing
from the network: the CSS is inlined, the math is typeset by a local copy of
MathJax 2 (from the ``jupyter-server-mathjax`` package, copied into ``mathjax/``
beside the pages, with its STIX web fonts), and the parts of
nbconvert's template that fetch scripts from CDNs (require.js, the widget manager,
mermaid) are left out. Saved widget state is dropped: a widget needs a kernel, so
on the static page it shows nothing, while its plots are ordinary images.

Feedback pages of ``agekit grade`` are written the same way.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

from agekit.course import _source

MATHJAX_DIR = "mathjax"
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,agekit"
_MATHJAX_PARTS = ("MathJax.js", "LICENSE", "config/TeX-AMS-MML_HTMLorMML-full.js", "extensions", "fonts",
                  "jax/input", "jax/element", "jax/output/HTML-CSS")
# Our settings, loaded after MathJax's combined TeX configuration: the STIX web fonts of the copy (the only
# ones it ships), no menu, no messages, and the delimiters the notebooks use.
_MATHJAX_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  menuSettings: {assistiveMML: false}, showMathMenu: false, messageStyle: "none"
});
MathJax.Ajax.loadComplete("[MathJax]/config/agekit.js");
"""
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def mathjax_source() -> Path:
    """The MathJax 2 files that ship with the ``jupyter-server-mathjax`` package (a dependency of the course)."""
    try:
        import jupyter_server_mathjax
    except ImportError:  # said in one line by the command line, like a missing file
        raise FileNotFoundError("Typesetting the course's math offline needs the copy of MathJax in the "
                                "'jupyter-server-mathjax' package: pip install -e '.[course]'.") from None
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def install_mathjax(folder: Path) -> Path:
    """Copy the parts of MathJax the pages use into ``folder/mathjax`` (once); returns that folder."""
    from agekit._io import atomic_write_text

    target = Path(folder) / MATHJAX_DIR
    config = target / "config" / "agekit.js"
    if config.is_file() and config.read_text(encoding="utf-8") == _MATHJAX_CONFIG:
        return target
    source = mathjax_source()
    for part in _MATHJAX_PARTS:
        origin = source / part
        if origin.is_dir():
            shutil.copytree(origin, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / part)
    atomic_write_text(config, _MATHJAX_CONFIG)  # last: its presence says the copy is complete
    return target


def _exporter():
    import jinja2
    import nbconvert

    return nbconvert.HTMLExporter(
        template_name="lab", template_file="agekit_offline.html.j2",
        extra_loaders=[jinja2.DictLoader({"agekit_offline.html.j2": _TEMPLATE})],
        mathjax_url=MATHJAX_URL,
    )


def nav_bar(previous: tuple[str, str] | None, following: tuple[str, str] | None, index: str = "index.html") -> str:
    """Links to the previous lesson, the landing page and the next lesson: (href, title) pairs."""
    def link(entry, arrow_first):
        if entry is None:
            return "<span></span>"
        href, title = entry
        text = f"&larr; {html.escape(title)}" if arrow_first else f"{html.escape(title)} &rarr;"
        return f"<a href='{html.escape(href)}'>{text}</a>"

    return ("<nav class='agekit-nav' style='display:flex;justify-content:space-between;font-family:sans-serif;"
            "padding:8px 2em;border-bottom:1px solid #ddd'>"
            f"{link(previous, True)}<a href='{html.escape(index)}'>course index</a>{link(following, False)}</nav>")


def notebook_node(notebook: dict):
    """A notebook dict as an nbformat node (sources joined; cells a student added without ids are accepted)."""
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getattr(nbformat.validator, "MissingIDFieldWarning", UserWarning))
        return nbformat.reads(json.dumps(notebook), as_version=4)


def export_html(notebook, folder: Path, title: str | None = None, nav: str = "") -> str:
    """A notebook (dict or nbformat node) as a self-contained page for ``folder``; installs MathJax there."""
    install_mathjax(folder)
    node = notebook_node(notebook)
    node.metadata.pop("widgets", None)
    if title:
        node.metadata["title"] = title
    body, _ = _exporter().from_notebook_node(node)
    if nav:
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)
        body = body.replace("</body>", nav + "</body>", 1)
    return body


# ----------------------------------------------------------------------------- the landing page


def lesson_title(notebook: dict) -> str:
    """The first level-1 heading of a lesson."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in _source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def lesson_aim(notebook: dict) -> str:
    """The text under a lesson's "Aim" heading (up to the next heading), as plain Markdown."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        match = re.search(r"^#+\s*Aim\b[^\n]*\n(.*?)(?=^#|\Z)", _source(cell), re.MULTILINE | re.DOTALL)
        if match:
            return match.group(1).strip()
    return ""


def _inline_markdown(text: str) -> str:
    """Just enough Markdown for an aim: escaping, `code`, **bold**, *italic*, list items as lines."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![*\w])\*([^*\n]+)\*(?!\w)", r"<i>\1</i>", text)
    text = re.sub(r"^\s*[-*]\s+", "&bull; ", text, flags=re.MULTILINE)
    return text.replace("\n", "<br>")


def landing_page(lessons: Sequence[dict], fast: bool, date: str, versions: dict[str, str]) -> str:
    """The course's ``index.html``.

    lessons: one dict per lesson run, in order, with ``name``, ``title``, ``aim``,
    ``seconds``, ``error`` (None when it ran), ``page`` (the HTML file or None),
    ``notebook`` (the executed .ipynb) and ``parameters`` (what it was given).
    """
    rows = []
    for number, lesson in enumerate(lessons):
        page = lesson.get("page") or lesson["notebook"]
        status = "<span class='ok'>ran</span>" if lesson.get("error") is None else \
            f"<span class='failed'>failed: {html.escape(str(lesson['error']))}</span>"
        parameters = ", ".join(f"{html.escape(str(k))}={html.escape(repr(v))}"
                               for k, v in sorted(lesson.get("parameters", {}).items())) or "defaults"
        rows.append(
            f"<tr><td>{html.escape(lesson['name'][:2])}</td>"
            f"<td><a href='{html.escape(page)}'><b>{html.escape(lesson.get('title') or lesson['name'])}</b></a>"
            f"<div class='aim'>{_inline_markdown(lesson.get('aim', ''))}</div></td>"
            f"<td>{_duration(lesson['seconds'])}</td><td>{status}</td><td><code>{parameters}</code></td>"
            f"<td><a href='{html.escape(lesson['notebook'])}'>.ipynb</a></td></tr>")
    total = sum(lesson["seconds"] for lesson in lessons)
    failed = [lesson for lesson in lessons if lesson.get("error") is not None]
    state = f"{len(lessons)} lessons ran" if not failed else f"stopped at {html.escape(failed[0]['name'])}"
    mode = "fast mode: a smoke test, its numbers are not the lessons' results" if fast else "full mode"
    shown = ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in versions.items())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>agekit course</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<script src='{MATHJAX_URL}'></script>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}td,th{padding:6px 12px;text-align:left;"
        "vertical-align:top;border-bottom:1px solid #eee}.aim{color:#444;font-size:90%;margin-top:4px}"
        ".ok{color:#1b7f3b}.failed{color:#b00020}code{font-size:85%}</style></head><body>"
        "<h1>agekit: face-based age estimation, the course</h1>"
        f"<p>{state} in {_duration(total)} ({mode}), on {html.escape(date)}, with {shown}.</p>"
        "<table><tr><th>#</th><th>lesson and aim</th><th>time</th><th>status</th><th>parameters</th>"
        f"<th>notebook</th></tr>{''.join(rows)}</table></body></html>\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def write_site(lessons: Sequence, out: Path, fast: bool, html_pages: bool = True) -> Path:
    """Write a page per executed lesson (with previous / next links) and the landing page; returns ``index.html``.

    lessons: ``agekit.course.LessonRun`` records in course order; each one's ``html``
    is set to its page.
    """
    import datetime
    import platform

    import torch

    import agekit
    from agekit._io import atomic_write_text

    out = Path(out)
    install_mathjax(out)
    present = [lesson for lesson in lessons if Path(lesson.output).exists()]
    notebooks = {lesson.notebook: json.loads(Path(lesson.output).read_text(encoding="utf-8")) for lesson in present}
    titles = {name: lesson_title(nb) or name for name, nb in notebooks.items()}
    if html_pages:
        for k, lesson in enumerate(present):
            previous = present[k - 1] if k > 0 else None
            following = present[k + 1] if k + 1 < len(present) else None
            nav = nav_bar((f"{previous.notebook}.html", titles[previous.notebook]) if previous else None,
                          (f"{following.notebook}.html", titles[following.notebook]) if following else None)
            page = Path(lesson.output).with_suffix(".html")
            atomic_write_text(page, export_html(notebooks[lesson.notebook], page.parent,
                                                title=titles[lesson.notebook], nav=nav))
            lesson.html = page
    entries = [{"name": lesson.notebook, "title": titles.get(lesson.notebook, lesson.notebook),
                "aim": lesson_aim(notebooks[lesson.notebook]) if lesson.notebook in notebooks else "",
                "seconds": lesson.seconds, "error": lesson.error, "parameters": dict(lesson.parameters),
                "page": lesson.html.name if lesson.html else None, "notebook": Path(lesson.output).name}
               for lesson in lessons]
    versions = {"agekit": agekit.__version__, "torch": torch.__version__, "Python": platform.python_version()}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return atomic_write_text(out / "index.html", landing_page(entries, fast, date, versions))
