"""Checkpoints that survive a kill at any moment and load without running pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it: a file that would need to
import and run arbitrary Python (a pickled class) is refused, which protects a
student who loads a checkpoint found on the internet.

Writing goes through a temporary file in the same folder, then ``os.replace``:
the rename is atomic, so an interrupted save leaves the previous checkpoint
whole. ``last.pt`` holds everything needed to continue exactly where training
stopped: model, optimiser, scheduler, the method's state (RAPL's reference bank,
the Siamese gallery), the random generators, epoch, history and configuration.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from agekit._io import atomic_write, load_torch

FORMAT = "agekit-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, unsafe or from an incompatible run."""


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename).

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    state = {"format": FORMAT, "version": VERSION, **state}
    return atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; refuse pickled code and foreign files.

    Returns the state dict written by :func:`save_checkpoint`.
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    path = Path(path)
    state = load_torch(path, map_location, CheckpointError, "Only load checkpoints written by agekit.")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an agekit checkpoint (no '{FORMAT}' marker).")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; this agekit reads {VERSION}.")
    return state


# ----------------------------------------------------------------------------- plain state


def scheduler_state(scheduler) -> dict:
    """The scheduler's state with MultiStepLR's ``milestones`` Counter as plain [[epoch, count], ...]."""
    state = dict(scheduler.state_dict())
    if isinstance(state.get("milestones"), Counter):
        state["milestones"] = [[int(k), int(v)] for k, v in sorted(state["milestones"].items())]
    return state


def load_scheduler_state(scheduler, state: dict) -> None:
    """Inverse of :func:`scheduler_state`."""
    state = dict(state)
    if isinstance(state.get("milestones"), list):
        state["milestones"] = Counter({int(k): int(v) for k, v in state["milestones"]})
    scheduler.load_state_dict(state)


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """Every random state of this process as tensors and plain values.

    generators: the trainer's own ``torch.Generator`` objects by name (shuffling,
    augmentation); their states are uint8 tensors, as are torch's global ones.
    """
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict, generators: dict[str, torch.Generator]) -> None:
    """Put back what :func:`rng_state` saved."""
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    torch.set_rng_state(state["torch"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
