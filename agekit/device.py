"""Which device to train on, and in which precision.

``device="auto"`` picks CUDA when a GPU is there, then Apple's MPS, then the CPU,
so a notebook runs unchanged on a lab GPU and on a laptop. On CUDA the trainer
uses mixed precision: bfloat16 where the GPU supports it (no loss scaling
needed), otherwise float16 with a gradient scaler. The CPU and MPS run in float32,
which keeps CPU runs bitwise reproducible.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import contextlib

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """True when Apple's Metal backend is built into this torch and usable."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` -> cuda, else mps, else cpu; any other name is checked and returned.

    device: "auto", "cpu", "cuda", "cuda:1", "mps" or a ``torch.device`` -> ``torch.device``.
    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    if isinstance(device, torch.device):
        chosen = device
    else:
        name = str(device).strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            return torch.device("mps") if mps_available() else torch.device("cpu")
        try:
            chosen = torch.device(name)
        except RuntimeError:
            raise ValueError(f"device must be one of {list(DEVICE_CHOICES)} (or e.g. 'cuda:1'), got {device!r}.") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(chosen)!r} was asked for, but this torch sees no CUDA GPU; use device='auto' or 'cpu'.")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(chosen)!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s).")
    if chosen.type == "mps" and not mps_available():
        raise ValueError("device 'mps' was asked for, but Apple's MPS backend is not available; use 'auto' or 'cpu'.")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of {list(DEVICE_CHOICES)}, got {device!r}.")
    return chosen


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``device``: bfloat16 or float16 on CUDA, None (float32) elsewhere."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A mixed-precision context for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None):
    """A ``GradScaler`` when training in float16 (small gradients would underflow), else None."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """A one-line description, e.g. ``cuda (NVIDIA H100), bfloat16 autocast``."""
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    precision = "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    return f"{name}, {precision}"
