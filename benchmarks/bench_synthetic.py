"""How fast the synthetic aging-faces generator draws photos, at 32, 64 and 112 pixels.

    python benchmarks/bench_synthetic.py                 # about a minute on 2 cores
    python benchmarks/bench_synthetic.py --no-record     # print only

For each image size and difficulty it times ``make_synthetic_faces`` (sampling of
people and ages, drawing, posing, background, blur, noise, quantisation: the whole
call) after one untimed warm-up call, and reports the best and the median of
``--repeats`` runs in images per second. It also times ``render_face`` at 128 px, the
call behind the age slider. Results are printed and written to benchmarks/synthetic.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from agekit.data.synthetic import make_synthetic_faces, render_face

RECORD = Path(__file__).with_name("synthetic.md")
SIZES = {32: 4096, 64: 2048, 112: 512}  # image size -> photos per timed run


def time_call(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of ``repeats`` calls, after one warm-up call."""
    fn()  # warm-up: first-call allocations and lazy imports
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPU cores visible, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (default 3)")
    parser.add_argument("--difficulties", nargs="+", default=["standard", "easy", "hard"])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the photo counts (e.g. 0.25 for a quick look)")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()],
                        help="torch thread counts to time (default: torch's own choice)")
    parser.add_argument("--note", default="", help="a sentence for the record, e.g. how the machine was shared")
    parser.add_argument("--no-record", action="store_true", help="print only, do not write benchmarks/synthetic.md")
    args = parser.parse_args(argv)

    lines = [f"repeats = {args.repeats}",
             "load average (1, 5, 15 min) before: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())]
    print("\n".join(lines))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for difficulty in args.difficulties:
            for size, n in SIZES.items():
                n = max(16, int(n * args.scale))
                wall, cpu = time_call(
                    lambda: make_synthetic_faces(n=n, image_size=size, seed=0, difficulty=difficulty), args.repeats)
                line = (f"make_synthetic_faces  {threads} thread{'s' if threads > 1 else ' '}  {difficulty:8s} "
                        f"{size:3d} px  n={n:5d}:  best {n / min(wall):6.0f} images/s, "
                        f"median {n / statistics.median(wall):6.0f} images/s, {n / min(cpu):6.0f} images per CPU-second")
                print(line)
                lines.append(line)
    ages = iter(range(1, 10_000))
    wall, _ = time_call(lambda: render_face(next(ages) % 90 + 1, 1, identity=3, image_size=128), 20)
    line = (f"render_face           easy     128 px  one face:  "
            f"best {1e3 * min(wall):.1f} ms, median {1e3 * statistics.median(wall):.1f} ms")
    lines += [line, "load average (1, 5, 15 min) after: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())]
    print("\n".join(lines[-2:]))

    if not args.no_record:
        given = [a if " " not in a else repr(a) for a in (sys.argv[1:] if argv is None else argv)]
        if args.note:   # the note is printed below the command, not inside it
            given = [a if a != repr(args.note) and a != args.note else "NOTE" for a in given]
        command = " ".join(["python benchmarks/bench_synthetic.py", *given])
        text = "\n".join([
            "# Synthetic aging faces: drawing speed",
            "",
            f"Command: `{command}`",
            f"Date: {datetime.date.today().isoformat()}",
            f"Machine: {machine()}",
            f"Versions: torch {torch.__version__}, Python {platform.python_version()}",
            "",
            "Each line times one whole `make_synthetic_faces` call (people and ages, drawing,",
            "pose, background, light, blur, noise, uint8) after an untimed warm-up; images/s is",
            "photos divided by wall-clock seconds, best and median of the repeats. Images per",
            "CPU-second divides by the process's CPU time instead (summed over its threads): it",
            "is less sensitive to other programs sharing the cores, whose load is shown.",
            *([] if not args.note else ["", args.note]),
            "",
            "## Results",
            "",
            "```",
            *lines,
            "```",
            "",
        ])
        tmp = RECORD.with_suffix(".md.tmp")
        tmp.write_text(text)
        os.replace(tmp, RECORD)
        print(f"written {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
