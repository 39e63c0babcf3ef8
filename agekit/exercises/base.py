"""What every check shares.

The wrapper that catches a student function returning None, the loop over
seeded random trials with its success line, and the comparison with the
reference.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch


def _exercise(check: Callable) -> Callable:
    """Wrap a check so that a student function returning None gets a friendly message, not a TypeError."""

    @functools.wraps(check)
    def checked(student: Callable, *args, **kwargs):
        if not callable(student):
            raise AssertionError(f"{check.__name__} expects your function itself, got {student!r}. "
                                 "Pass the name without calling it, e.g. check(my_function).")
        name = getattr(student, "__name__", "your function")

        def guarded(*a, **k):
            result = student(*a, **k)
            if result is None:
                raise AssertionError(f"{name}() returned None: it must end with a `return` of its result. "
                                     "Check that every path through it returns a value.")
            return result

        return check(guarded, *args, **kwargs)

    return checked


def _close(name: str, got, expected, atol: float = 1e-5, hint: str = "") -> None:
    got = torch.as_tensor(got)
    expected = torch.as_tensor(expected)
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}. {hint}")
    if not torch.allclose(got.double(), expected.double(), atol=atol, rtol=1e-4):
        worst = (got.double() - expected.double()).abs().max().item()
        raise AssertionError(f"{name}: values differ from the reference (largest difference {worst:.4g}). {hint}")


def _over_trials(success: str, trials: int = 5, seed: int = 0) -> Callable:
    """Make ``check(student, trials=trials)`` from the check of one trial, ``body(student, trial, g)``.

    The check runs ``body`` for trial = 0 .. trials - 1, ``g`` a generator seeded ``seed + trial``
    (the same inputs on every run), then prints ``success``; ``body`` raises AssertionError to
    fail. The check has the body's name and docstring, and ``(student, trials=trials)`` as its
    signature: students call ``check(their_function)``.
    """

    def decorate(body: Callable) -> Callable:
        def check(student: Callable, trials: int = trials) -> None:
            for trial in range(trials):
                body(student, trial, _generator(seed + trial))
            print(success)

        signature = inspect.signature(check)
        functools.update_wrapper(check, body)  # the body's name, docstring and source (the grader reads its imports)
        check.__signature__ = signature  # ... but not the body's arguments
        return _exercise(check)

    return decorate


def _matches_agekit(what: str) -> str:
    """The success line of a check that compares with agekit's own function."""
    return f"Correct: {what} matches agekit on random inputs."


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
