"""Shared by the side-by-side benchmarks: alternate timing, the machine header, the scale plot.

Contenders run in turn (A, B, A, B, ...) in one process, so a change in machine load
touches all of them alike; each record states its command, machine, load, threads,
versions and date, and reports min and median over the repeats.
"""

from __future__ import annotations

import datetime
import io
import os
import platform
import sys
import time
from collections.abc import Callable

import torch

from agekit._io import atomic_write


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may run on (what ``nproc`` prints)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def alternate(contenders: dict[str, Callable[[], object]], repeats: int) -> tuple[dict, dict]:
    """Call each contender once per round, ``repeats`` rounds -> (seconds per name, last result per name)."""
    times = {name: [] for name in contenders}
    results = {}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    return times, results


def header(title: str, load_before: tuple, load_after: tuple, threads: int, versions: str) -> list[str]:
    """The record's opening lines: command, machine, load, threads, versions, date."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    return [
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, {cores()} cores (`nproc`), {platform.system()} {platform.release()}",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}",
        f"- threads: {threads} for every contender",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}{versions}",
        "",
    ]


def save_figure(figure, path) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda out: out.write(buffer.getvalue()))


def growth(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) against log(size): 1.0 is linear growth, 2.0 quadratic."""
    import math

    xs, ys = [math.log(x) for x in sizes], [math.log(y) for y in seconds]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
