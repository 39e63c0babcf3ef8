"""Step 2 of grading, inside the checking process: a notebook's definitions, then the package's checks.

:func:`definitions` keeps the imports, functions, classes and literal
constants of a code cell. :func:`_check_child` is the process that
:func:`agekit.grade.run_checks` starts: it runs those definitions, then each
exercise's check from :mod:`agekit.exercises` under a time limit, and puts back
whatever the student's code changed in ``agekit``, ``torch`` or Python's own
modules (:func:`_snapshot`, :func:`_restore`).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import signal
import sys
import types
import warnings


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
