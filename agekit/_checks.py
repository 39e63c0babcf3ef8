"""Argument checks shared by every public entry point.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the
argument, shows the offending value and says what to do, so a student reading
the traceback knows what to change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def probability(name: str, value) -> float:
    """Return ``value`` as a float in [0, 1], or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number between 0 and 1, got {value!r}.")
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"{name} must lie between 0 and 1, got {value}.")
    return value


def choice(name: str, value, options: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``options``, else raise listing them."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}.")
    return value


def age_range(name: str, value) -> tuple[int, int]:
    """Check an inclusive (low, high) range of whole ages."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (youngest, oldest), got {value!r}.") from None
    low = positive_int(f"{name}[0]", low, minimum=0)
    high = positive_int(f"{name}[1]", high, minimum=0)
    if high < low:
        raise ValueError(f"{name} is reversed or empty: {value!r}; give (youngest, oldest) with youngest <= oldest.")
    return low, high


def as_tensor(name: str, value, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Turn a tensor, array or list into a tensor, refusing strings and None."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a tensor, array or list of numbers, got {value!r}.")
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return tensor if dtype is None else tensor.to(dtype)


def vector(name: str, value, dtype: torch.dtype | None = None, allow_empty: bool = False) -> torch.Tensor:
    """A 1-D tensor without NaN or infinite entries."""
    tensor = as_tensor(name, value, dtype)
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}.")
    if not allow_empty and tensor.numel() == 0:
        raise ValueError(f"{name} is empty; it needs at least one value.")
    if tensor.is_floating_point() and not torch.isfinite(tensor.sum()) and not torch.isfinite(tensor).all():
        bad = tensor[~torch.isfinite(tensor)][:3].tolist()
        raise ValueError(f"{name} contains NaN or infinite values (e.g. {bad}); remove or fix them.")
    return tensor


def same_length(**tensors) -> int:
    """Check that all given sequences have the same first dimension; return it."""
    lengths = {name: len(t) for name, t in tensors.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"Lengths do not match: {shown}. Pass one entry per sample.")
    return next(iter(lengths.values()))


def matrix(name: str, value, columns: int | None = None) -> torch.Tensor:
    """A 2-D floating tensor, optionally with a fixed number of columns."""
    tensor = as_tensor(name, value)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D [rows, columns], got shape {tuple(tensor.shape)}.")
    if columns is not None and tensor.shape[1] != columns:
        raise ValueError(f"{name} must have {columns} columns, got shape {tuple(tensor.shape)}.")
    return tensor
