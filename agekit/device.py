"""Which device to train on, and in which precision.

``device="auto"`` picks CUDA when a GPU is there, then Apple's MPS, then the CPU,
so a notebook runs unchanged on a lab GPU and on a laptop. On CUDA the trainer
uses mixed precision: bfloat16 where the GPU supports it (no loss scaling
needed), otherwise float16 with a gradient scaler. The CPU and MPS run in float32,
which keeps CPU runs bitwise reproducible. On the CPU and CUDA images and
convolution weights are held channels-last; evaluation runs in
``torch.inference_mode``; and :func:`configure_threads` sets torch's CPU threads
by one rule (the user's choice, else the usable cores, at most two).

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import contextlib
import os

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


# ----------------------------------------------------------------------------- CPU threads and layout

# Threads the kit uses on the CPU when nobody chose: the cores this process may run on, at most
# this many. Measured in benchmarks/trainer.md ("threads"): on 2 idle cores a cpu-preset step
# is faster on 2 threads than on 1; beyond the cores it may run on, threads only wait on each other.
MAX_DEFAULT_THREADS = 2
THREAD_VARIABLES = ("AGEKIT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # the first one set wins
# torch's own default count (its inter-op pool has the same default and programs rarely change it)
_threads = {"torch_default": torch.get_num_interop_threads(), "set": None, "program": False}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. under ``taskset`` or a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity masks
        return max(1, os.cpu_count() or 1)


def _threads_from_environment() -> int | None:
    for name in THREAD_VARIABLES:
        text = os.environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a whole number of threads; set it to e.g. 1 or 2, "
                             "or unset it to let agekit choose.") from None
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1 thread; unset it to let agekit choose.")
        return value
    return None


def default_threads() -> int:
    """The kit's choice when nobody chose: the usable cores, at most :data:`MAX_DEFAULT_THREADS`."""
    return min(usable_cores(), MAX_DEFAULT_THREADS)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads by the kit's one rule, and return the count in use.

    In order: ``threads`` when given (later calls without one keep it); else a count the
    program set itself with ``torch.set_num_threads`` (one that differs from the count this
    function last set); else ``$AGEKIT_THREADS``, ``$OMP_NUM_THREADS`` or ``$MKL_NUM_THREADS``
    when set (torch read the last two at start-up); else a count that differs from torch's
    own default (set before agekit looked); else :func:`default_threads`. Never more than
    :func:`usable_cores` unless asked explicitly. Training, the lessons and the command line
    call it; it is cheap to call again.
    """
    current = torch.get_num_threads()
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads!r}.")
        chosen, _threads["program"] = int(threads), True  # later calls without a count keep it
    elif _threads["program"] or (_threads["set"] is not None and current != _threads["set"]):
        chosen, _threads["program"] = current, True  # the program chose (torch.set_num_threads): it stays
    else:
        chosen = _threads_from_environment()
        if chosen is None and _threads["set"] is None and current != _threads["torch_default"]:
            chosen, _threads["program"] = current, True  # set before agekit was imported
        if chosen is None:
            chosen = default_threads()
    if torch.get_num_threads() != chosen:
        torch.set_num_threads(chosen)
    _threads["set"] = chosen
    return chosen


def use_channels_last(device: torch.device, enabled: bool = True) -> bool:
    """Whether to hold images and convolution weights channels-last (NHWC) on ``device``.

    On CUDA it feeds the tensor cores; on the CPU oneDNN's convolutions run faster in it
    (a cpu-preset training step, benchmarks/trainer.md). MPS keeps the default layout.
    """
    return enabled and device.type in ("cuda", "cpu")


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """``model`` on ``device``, its convolution weights channels-last when ``channels_last``."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def evaluation():
    """The context for evaluation and prediction: ``torch.inference_mode`` (no autograd bookkeeping at all,
    cheaper than ``no_grad``); its outputs must not feed a later backward pass."""
    return torch.inference_mode()
