"""CPU time of the command line's answers (help, an argument error) against ``python -c "import torch"``.

    python benchmarks/bench_cli.py              # 7 repeats, about a minute on 2 busy cores
    python benchmarks/bench_cli.py --repeats 3 --no-record

Each contender runs as a fresh process, one after the other in every repeat
(alternately), all with ``OMP_NUM_THREADS=1``; its CPU time is the user + system
time the child used (``resource.getrusage(RUSAGE_CHILDREN)`` before and after).
Every answer is checked: the help text equals ``build_parser().format_help()``,
the mistyped setting gets its "did you mean" and exit status 2, and torch imports.
The target (issue: "answers at once"): ``agekit --help`` takes less than a quarter
of the CPU time of importing torch. Results go to benchmarks/cli.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

RECORD = Path(__file__).with_name("cli.md")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "100"}


def agekit_command() -> list[str]:
    """The installed ``agekit`` script beside this interpreter (else ``python -m agekit``)."""
    script = Path(sys.executable).with_name("agekit")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "agekit"]


def contenders() -> dict[str, tuple[list[str], callable]]:
    """{label: (command, check(completed process) -> error text or "")}."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ["COLUMNS"] = ENV["COLUMNS"]
    from agekit.cli import build_parser

    help_text = build_parser().format_help()
    agekit = agekit_command()

    def help_ok(done):
        return "" if done.returncode == 0 and done.stdout == help_text else f"help differs: {done.stderr[-300:]}"

    def error_ok(done):
        good = done.returncode == 2 and "Did you mean 'optim.lr'?" in done.stderr and "Traceback" not in done.stderr
        return "" if good else f"unexpected answer: {done.returncode} {done.stderr[-300:]}"

    def torch_ok(done):
        return "" if done.returncode == 0 and done.stdout.strip() else f"torch did not import: {done.stderr[-300:]}"

    return {
        "`agekit --help`": (agekit + ["--help"], help_ok),
        "`agekit train --out x --set optim.lrr=1` (an argument error)":
            (agekit + ["train", "--out", "x", "--set", "optim.lrr=1"], error_ok),
        "`python -c \"import torch\"`": ([sys.executable, "-c", "import torch; print(torch.__version__)"], torch_ok),
    }


def cpu_seconds(command: list[str], check) -> float:
    """User + system CPU seconds of one run of ``command`` (a child process), after checking its answer."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    problem = check(done)
    if problem:
        raise SystemExit(f"{' '.join(command)}: {problem}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each contender (default 7)")
    parser.add_argument("--no-record", action="store_true", help=f"print only; do not write {RECORD.name}")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")

    import torch  # only for the version in the record, after the children have their own clean start

    runs = contenders()
    load_before = os.getloadavg()
    times = {label: [] for label in runs}
    for repeat in range(args.repeats):
        for label, (command, check) in runs.items():  # alternately, so a busy spell hits all contenders
            times[label].append(cpu_seconds(command, check))
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{t[-1]:.2f} s" for t in times.values()))
    load_after = os.getloadavg()

    labels = list(runs)
    help_label, torch_label = labels[0], labels[-1]
    stats = {label: (min(t), statistics.median(t)) for label, t in times.items()}
    ratio_min = stats[help_label][0] / stats[torch_label][0]
    ratio_median = stats[help_label][1] / stats[torch_label][1]
    met = ratio_min < 0.25 and ratio_median < 0.25
    command = "python benchmarks/bench_cli.py" + (f" --repeats {args.repeats}" if args.repeats != 7 else "")
    lines = [
        "# Command line: CPU time before the first answer",
        "",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPUs (`nproc` {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"{platform.system()}, Python {platform.python_version()}, torch {torch.__version__}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; load average (1, 5, 15 min) "
        f"before {', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in load_after)}",
        f"- threads: OMP_NUM_THREADS=1 for every contender; {args.repeats} repeats, the contenders alternating; "
        "CPU time = user + system of the child process (`getrusage(RUSAGE_CHILDREN)`)",
        f"- answers checked: the help text equals `build_parser().format_help()`, the argument error says "
        f"\"Did you mean 'optim.lr'?\" with exit status 2, torch imports",
        "",
        "| contender | min CPU s | median CPU s | share of `import torch` (min / median) |",
        "|---|---|---|---|",
    ]
    for label in labels:
        low, mid = stats[label]
        lines.append(f"| {label} | {low:.3f} | {mid:.3f} | "
                     f"{low / stats[torch_label][0]:.0%} / {mid / stats[torch_label][1]:.0%} |")
    lines += [
        "",
        f"Target: `agekit --help` under a quarter of the CPU time of `python -c \"import torch\"`. "
        f"{'Met' if met else 'Not met'}: {ratio_min:.0%} of it by the minimum, {ratio_median:.0%} by the median.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        from agekit._io import atomic_write_text

        atomic_write_text(RECORD, text)
        print(f"wrote {RECORD}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
