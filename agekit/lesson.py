"""What every lesson calls: its parameters, its training settings, its runs, its claims.

A lesson's first code cell holds typed literals (tagged ``parameters``)::

    fast: bool = False          # quick smoke run (setting AGEKIT_FAST to 1 forces it)
    seed: int = 0               # seed of the faces, their split, the model and the shuffling
    device: str = "auto"        # "auto", "cpu", "cuda" or "mps"
    preset_name: str = "auto"   # "auto" (gpu on CUDA, else cpu), "cpu" or "gpu"
    epochs: int = 0             # training epochs (0: the preset's own number)

and the next cell is two lines::

    from agekit import lesson
    P = lesson.parameters(globals())

:func:`parameters` checks every value (papermill's injected ones too, and names
papermill was given that the lesson does not have), and says once whether the
numbers below are checked (full mode) or only a smoke test (fast mode). Then::

    config = lesson.settings(P, "rapl", {"rapl.variant": "EVR"})   # preset, epochs, seed, device
    result = lesson.trained(config)          # runs/rapl_EVR_cpu_seed0/: trained once, reused after
    lesson.claim(result.test_metrics["mae"] < baseline, "EVR beats the median baseline")

A run's folder is named after its settings (:func:`run_name`), so two lessons that
train the same thing share one run and no lesson writes a run name by hand.
Where lessons find their notebooks and their ``runs/`` follows where the user works
(:func:`workspace`), not where agekit is installed.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

from agekit.config import (
    METHODS,
    PRESETS,
    Config,
    apply_overrides,
    config_to_dict,
    preset,
    resolve_preset,
    with_epochs,
)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRESET_NAMES = ("auto",) + tuple(name for name in PRESETS if name != "smoke")
_TYPES = (bool, int, float, str, list, dict)
_LESSON = re.compile(r"^\d\d_.+\.ipynb$")
_state = {"fast": False}


class ClaimError(AssertionError):
    """A sentence of a lesson that its own numbers do not bear out."""


# ----------------------------------------------------------------------------- parameters


def fast_from_environment() -> bool:
    """True when ``AGEKIT_FAST`` is set to 1/true/yes (forces every lesson's fast path)."""
    return os.environ.get("AGEKIT_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def _hint(name: str, expected: type) -> str:
    if expected is bool:
        return f"pass True or False (papermill: -p {name} True)"
    example = {int: "3", float: "0.5", str: "text"}.get(expected, "<value>")
    return f"pass a {expected.__name__} (papermill: -p {name} {example})"


def _check_type(name: str, value, expected) -> object:
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise TypeError(f"Parameter {name!r} must be {expected.__name__}, got {value!r} ({type(value).__name__}): "
                        f"{_hint(name, expected)}.")
    return value


def _assignments(source: str, annotated: bool) -> dict:
    """``name: value`` of the literal (annotated or plain) assignments in a cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found = {}
    for node in tree.body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) and annotated else (
            node.targets if isinstance(node, ast.Assign) and not annotated else [])
        for target in targets:
            if isinstance(target, ast.Name) and node.value is not None:
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    found[target.id] = None
    return found


def _injected(namespace: Mapping) -> tuple[dict, dict]:
    """(papermill's injected values, the parameters cell's defaults), read from a kernel's history.

    Papermill's injected cell begins with ``# Parameters``; the parameters cell is the
    last cell before it that annotates names. Outside a papermill run both are empty.
    """
    history = namespace.get("In")
    if not isinstance(history, list):
        return {}, {}
    for at in range(len(history) - 1, -1, -1):
        source = history[at]
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            defaults = next((found for earlier in reversed(history[:at]) if isinstance(earlier, str)
                             and (found := _assignments(earlier, annotated=True))), {})
            return _assignments(source, annotated=False), defaults
    return {}, {}


def _describe(annotations: Mapping[str, type]) -> str:
    return ", ".join(f"{name} ({kind.__name__})" for name, kind in annotations.items())


def parameters(namespace: Mapping, choices: Mapping[str, Sequence] | None = None,
               positive: Iterable[str] = (), non_negative: Iterable[str] = ()) -> SimpleNamespace:
    """Check a lesson's parameters and return them as an object; announce the mode once.

    namespace: the notebook's ``globals()``. Every name annotated in the ``parameters``
    cell is checked against its type (papermill's injected values included); a name
    papermill injected that the lesson does not declare is an error that lists the
    lesson's parameters (papermill itself only warns). ``choices`` maps a name to its
    allowed values (``device`` and ``preset_name`` have theirs already); names in
    ``positive`` must be > 0, in ``non_negative`` >= 0. ``device`` must exist on this
    machine. ``AGEKIT_FAST=1`` turns ``fast`` on. Raises one clear ``TypeError`` or
    ``ValueError`` naming the parameter.
    """
    annotations = {name: kind for name, kind in dict(namespace.get("__annotations__", {})).items()
                   if not name.startswith("_") and kind in _TYPES}
    if not annotations:
        raise ValueError("No annotated parameters found: the 'parameters' cell must declare e.g. 'seed: int = 0'.")
    injected, defaults = _injected(namespace)
    for name in injected:
        if name not in annotations:
            close = difflib.get_close_matches(name, list(annotations), n=1)
            guess = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"This lesson has no parameter {name!r}.{guess} Its parameters are: "
                             f"{_describe(annotations)}.")
    allowed = {"device": DEVICES, "preset_name": PRESET_NAMES, **dict(choices or {})}
    values = {}
    for name, expected in annotations.items():
        if name not in namespace:
            continue
        value = _check_type(name, namespace[name], expected)
        if name in allowed and value not in allowed[name]:
            raise ValueError(f"Parameter {name!r} must be one of {list(allowed[name])}, got {value!r}.")
        if name in positive and not value > 0:
            raise ValueError(f"Parameter {name!r} must be positive, got {value!r}.")
        if name in non_negative and value < 0:
            raise ValueError(f"Parameter {name!r} must not be negative, got {value!r}.")
        values[name] = value
    if "device" in values:
        from agekit.device import resolve_device

        try:
            resolve_device(values["device"])
        except ValueError as error:
            raise ValueError(f"Parameter 'device': {error}") from None
    if "fast" in values and fast_from_environment():
        values["fast"] = True
    _state["fast"] = bool(values.get("fast", False))
    _state["changed"] = sorted(name for name, value in injected.items()
                               if name != "fast" and name in defaults and value != defaults[name])
    if _state["fast"]:
        print("FAST MODE: a smoke test on a few hundred tiny faces. It shows that every cell runs; its numbers "
              "are not the lesson's, and the claims in the text are not checked against them.")
    else:
        import torch

        from agekit.device import configure_threads

        print("full mode: every result the text states is checked in code beside it (a cell fails if one does "
              f"not hold); torch {torch.__version__}, {configure_threads()} CPU thread(s).")
        if _state["changed"]:
            print(f"Parameters changed from the lesson's defaults ({', '.join(_state['changed'])}): the text describes "
                  "the default run, so its claims are reported below, not enforced.")
    return SimpleNamespace(**values)


# ----------------------------------------------------------------------------- claims


def claim(holds, statement: str) -> None:
    """State in code what the prose beside it says about this run's results.

    Full mode: a claim that does not hold raises :class:`ClaimError`, so re-executing a
    lesson catches text that no longer matches its outputs; one that holds prints
    ``claim holds: ...``. Fast mode: prints that the claim is not checked (the numbers of a
    smoke test say nothing). A papermill run with parameters changed from the lesson's
    defaults reports a claim that does not hold instead of failing: the text describes
    the default run.
    """
    if _state["fast"]:
        print(f"claim not checked (fast mode, smoke test): {statement}")
    elif bool(holds):
        print(f"claim holds: {statement}")
    elif _state.get("changed"):
        print(f"claim does not hold with these parameters (the text describes the default run): {statement}")
    else:
        raise ClaimError(f"The lesson says: {statement!r}, but this run's numbers do not bear it out. "
                         "Re-read the text beside this cell against the outputs above it (if you changed the "
                         "lesson's parameters, the text describes the default run).")


# ----------------------------------------------------------------------------- where the course lives


def _lessons_in(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(_LESSON.match(p.name) for p in folder.iterdir())
    except OSError:
        return False


def workspace(start=None) -> Path:
    """The folder the course is worked in, found from ``start`` (default: the working folder).

    The nearest folder at or above ``start`` that holds ``notebooks/`` with lessons (a
    checkout); else the nearest that holds lessons itself (a folder of student copies);
    else ``start``. A kernel runs in its notebook's folder, so each checkout or copy
    finds its own workspace, whichever environment agekit is installed in.
    """
    start = Path(start or Path.cwd()).resolve()
    chain = [start, *start.parents]
    for folder in chain:
        if _lessons_in(folder / "notebooks"):
            return folder
    for folder in chain:
        if _lessons_in(folder):
            return folder
    return start


def notebooks_dir(start=None, installed: bool = True) -> Path:
    """The lessons of the workspace: its ``notebooks/`` folder, or the workspace itself for student copies.

    With no lessons around ``start`` (a notebook run on its own in some folder, as the grader
    does), the course's own lessons beside the installed package when it has them
    (``installed=False``: the workspace regardless, for what must follow the working copy).
    """
    root = workspace(start)
    if _lessons_in(root / "notebooks"):
        return root / "notebooks"
    own = Path(__file__).resolve().parent.parent / "notebooks"
    return own if installed and not _lessons_in(root) and _lessons_in(own) else root


def runs_dir(fast: bool = False, start=None) -> Path:
    """Where lessons cache what they train: ``$AGEKIT_RUNS``, else ``runs/`` in the workspace.

    Fast-mode results go to ``runs/fast/`` so a smoke run never stands in for a real one.
    """
    root = Path(os.environ.get("AGEKIT_RUNS") or workspace(start) / "runs")
    return root / "fast" if fast else root


def shown(path) -> str:
    """A path as the lessons print it: relative to the workspace (no absolute paths in outputs)."""
    path, root = Path(path).resolve(), workspace()
    return os.path.relpath(path, root) if path.is_relative_to(root) else path.name


# ----------------------------------------------------------------------------- settings and runs


def settings(P: SimpleNamespace, method: str = "rapl", overrides: Mapping | None = None,
             fast_epochs: int | None = None, gpu: str = "gpu") -> Config:
    """The training config of a lesson's parameters: one rule for every lesson.

    Preset: ``smoke`` in fast mode; else ``P.preset_name`` ("auto": ``gpu`` on CUDA, else cpu;
    a lesson without that parameter uses "auto"; a lesson that compares the Siamese baseline
    with RAPL on one backbone passes ``gpu="gpu_ir50"``). Epochs: ``P.epochs`` when the lesson has
    it and it is > 0 (0: the preset's number), with the learning-rate drops moved to the
    same places (:func:`agekit.config.with_epochs`); in fast mode ``fast_epochs`` or the
    smoke preset's. Seed: ``P.seed`` seeds the faces, their split and the training. Device:
    ``P.device``. ``overrides`` (``{"rapl.variant": "EVR"}``) come last.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")
    device = getattr(P, "device", "auto")
    name = "smoke" if P.fast else resolve_preset(getattr(P, "preset_name", "auto"), device, gpu)
    config = preset(name, method)
    epochs = fast_epochs if P.fast else getattr(P, "epochs", 0)
    if epochs:
        config = with_epochs(config, epochs)
    seed = getattr(P, "seed", 0)
    config = apply_overrides(config, {"data.seed": seed, "train.seed": seed, "train.device": device})
    return apply_overrides(config, dict(overrides or {})).validate()


# Settings that do not change what a run learns, or that the name already says.
_UNNAMED = {"preset", "method", "rapl.variant", "siamese.gender", "data.seed", "train.seed", "train.device",
            "train.stop_after", "train.eval_batch_size"}
_SHORT = {"train.epochs": "epochs", "optim.milestones": "milestones", "optim.lr": "lr", "data.n": "n",
          "data.image_size": "px", "siamese.margin": "margin", "rapl.lam": "lam", "rapl.mu": "mu",
          "data.manifest": "data-"}


def _flat(config: Config) -> dict:
    flat = {}
    for section, values in config_to_dict(config).items():
        if isinstance(values, dict):
            flat.update({f"{section}.{key}": value for key, value in values.items()})
        else:
            flat[section] = values
    return flat


def _token(value) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_token(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value))


def run_name(config: Config) -> str:
    """The folder name of a run, derived from its settings alone.

    ``<method>_<variant or gender>_<preset>_seed<seed>``, then every setting that differs
    from the preset, e.g. ``rapl_EVR_cpu_seed0``, ``siamese_nogender_cpu_seed1``,
    ``rapl_EVR+RAPL+GP_cpu_seed0_epochs5_milestones3-4``. Settings of the other method
    and the device do not enter the name.
    """
    what = config.rapl.variant if config.method == "rapl" else ("gender" if config.siamese.gender else "nogender")
    name = f"{config.method}_{what}_{config.preset}_seed{config.train.seed}"
    if config.data.seed != config.train.seed:
        name += f"_dataseed{config.data.seed}"
    other = "siamese." if config.method == "rapl" else "rapl."
    ours, base = _flat(config), _flat(preset(config.preset, config.method))
    for key, value in ours.items():
        if key in _UNNAMED or key.startswith(other) or value == base.get(key):
            continue
        if key == "data.manifest" and value:
            value = _manifest_token(Path(value))
        name += f"_{_SHORT.get(key, key.replace('.', '-'))}{_token(value)}"
    return name


def _manifest_token(manifest: Path) -> str:
    """A prepared data set in a run name: its folder's name and a hash of its manifest's bytes.

    The same data give the same name in every checkout; other data (a new preparation) another.
    """
    import hashlib

    try:
        digest = hashlib.sha1(manifest.read_bytes()).hexdigest()[:8]
    except OSError:  # not there (yet): the trainer will say so; name it by its path meanwhile
        digest = hashlib.sha1(str(manifest.resolve()).encode()).hexdigest()[:8]
    return f"{_token(manifest.resolve().parent.name)}-{digest}"


def run_folder(config: Config) -> Path:
    """``runs/<run_name>`` (``runs/fast/...`` for the smoke preset)."""
    return runs_dir(fast=config.preset == "smoke") / run_name(config)


def trained(config: Config, data=None, verbose: bool = True):
    """The finished run of ``config``: trained into :func:`run_folder` once, reused after.

    A finished run there is reloaded (its saved test metrics kept when the data are the
    same); a stopped one is continued; one with other settings or data is trained again.
    ``data`` defaults to ``load_data(config)``; it is attached to the result. Prints
    one line saying which happened and where.
    """
    from agekit.training import load_data, train_or_resume

    folder = run_folder(config)
    data = load_data(config) if data is None else data
    result, how = train_or_resume(config, folder, data=data, verbose=verbose and not _finished(folder))
    seconds = sum(row.get("seconds", 0.0) for row in result.history)
    if how == "resumed" and _finished(folder):
        print(f"{shown(folder)}/: loaded (trained earlier)")
    else:
        print(f"{shown(folder)}/: {how} ({seconds:.0f} s of training, measured in this run)")
    return result


def _finished(folder: Path) -> bool:
    from agekit.training import finished_run

    return finished_run(folder)


# ----------------------------------------------------------------------------- display


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]):
    """Show rows as a Markdown table in the notebook (returns the Markdown text)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    text = "\n".join(lines)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside Jupyter: plain text
        print(text)
    else:
        display(Markdown(text))
    return text


def mean_pm_std(values: Sequence[float], digits: int = 2, sign: str = "") -> str:
    """``"7.14 ± 0.36"``: the mean and the sample standard deviation (n - 1) of a few numbers."""
    import statistics

    values = [float(v) for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{sign}.{digits}f} ± {spread:.{digits}f}"

