"""Benchmark: reference selection at paper scale, and the training speed of the CPU-sized IR.

1. ``select_references`` (Algorithm 1, vectorised) against a straightforward loop
   over the age labels, at the scale of AgeDB training in the paper:
   K = 200,000 samples, c = 256 channels, n = 100 labels. Both must agree.
2. Forward + backward + Adam step of the default ``IRSmall`` (with a pooled linear
   head) in images per second at 32 and 64 px, batch 64; and of IR50 at 112 px,
   batch 8, for comparison.

    python benchmarks/bench_references.py            # prints and appends to references.md
    python benchmarks/bench_references.py --no-ir50  # skip the slow IR50 timing
    python benchmarks/bench_references.py --threads 1  # one thread: steadier on a busy machine

Results are appended to ``benchmarks/references.md`` with the command, machine,
torch version and date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import torch

from agekit.models import IR50, IRSmall
from agekit.references import select_references

RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references.md")
HEADER = """# Benchmarks: reference selection and IR speed

Written by `benchmarks/bench_references.py`; each run appends a section.
Selection: `agekit.references.select_references` against a loop over the age
labels (both give the same references) at the paper's scale. Speed: forward +
backward + Adam step of the CPU preset `IRSmall` and of `IR50`, in images/s.
Wall-clock numbers depend on what else runs on the machine: the load average is
recorded with each run, and one-thread runs are steadier on a shared machine.
"""


def per_age_loop(features, pred_ages, true_ages, label_values):
    """Algorithm 1 with a Python loop over the labels (no filling of missing ages)."""
    errors = (true_ages.double() - pred_ages.double()).abs()
    chosen = []
    for label in label_values.tolist():
        index = torch.nonzero(true_ages == label).squeeze(1)
        chosen.append(index[errors[index].argmin()])  # argmin keeps the first, smallest index
    return features[torch.stack(chosen)]


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_selection(samples=200_000, channels=256, labels=100, repeats=5):
    generator = torch.Generator().manual_seed(0)
    values = torch.arange(1, labels + 1)
    true_ages = values[torch.randint(labels, (samples,), generator=generator)]
    pred_ages = true_ages + 8 * torch.randn(samples, generator=generator)
    pred_ages = pred_ages.round()  # whole-year predictions: many ties to break
    features = torch.randn(samples, channels, generator=generator)
    select_references(features, pred_ages, true_ages, values)  # warm-up
    fast, fast_refs = timed(lambda: select_references(features, pred_ages, true_ages, values), repeats)
    slow, slow_refs = timed(lambda: per_age_loop(features, pred_ages, true_ages, values), repeats)
    assert torch.equal(fast_refs, slow_refs), "vectorised and loop selections differ"
    return {"K": samples, "c": channels, "n": labels, "vectorised_s": fast, "loop_s": slow}


def bench_training_speed(model, size, batch, steps, warmup=2):
    torch.manual_seed(0)
    head = torch.nn.Linear(model.out_channels, 1)
    optimiser = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=1e-3)
    images, ages = torch.randn(batch, 3, size, size), 20 + 40 * torch.rand(batch)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        age = head(model(images).mean(dim=(2, 3))).squeeze(1)
        loss = (age - ages).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return batch * steps / (time.perf_counter() - start)


def write_record(text: str) -> None:
    """Append ``text`` to the record, writing a temporary file first."""
    old = open(RECORD).read() if os.path.exists(RECORD) else HEADER
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(RECORD), suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
    os.replace(temp, RECORD)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-ir50", action="store_true", help="skip the IR50 timing")
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to references.md")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    load_before = os.getloadavg()[0]

    selection = bench_selection()
    print(
        f"select_references K={selection['K']} c={selection['c']} n={selection['n']}: "
        f"vectorised {selection['vectorised_s'] * 1e3:.1f} ms, per-age loop {selection['loop_s'] * 1e3:.1f} ms "
        f"({selection['loop_s'] / selection['vectorised_s']:.1f}x)"
    )
    speeds = []
    for size in (32, 64):
        rate = bench_training_speed(IRSmall(), size, batch=64, steps=10)
        speeds.append(("IRSmall (1,1,2)/(16,32,64)", size, 64, rate))
        print(f"IRSmall {size} px, batch 64: {rate:.0f} images/s (forward + backward + Adam)")
    if not args.no_ir50:
        rate = bench_training_speed(IR50(), 112, batch=8, steps=2, warmup=1)
        speeds.append(("IR50", 112, 8, rate))
        print(f"IR50 112 px, batch 8: {rate:.1f} images/s (forward + backward + Adam)")

    if args.no_record:
        return
    command = "python benchmarks/bench_references.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    lines = [
        f"## {datetime.date.today().isoformat()}",
        "",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()}-core CPU ({platform.machine()}, {platform.system()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}; "
        f"load average before the run {load_before:.2f} (other processes share these cores)",
        "",
        "Reference selection (Algorithm 1), median of 5 runs, identical results:",
        "",
        "| K | c | n | vectorised `select_references` | per-age Python loop | speed-up |",
        "|---|---|---|---|---|---|",
        f"| {selection['K']:,} | {selection['c']} | {selection['n']} | {selection['vectorised_s'] * 1e3:.1f} ms "
        f"| {selection['loop_s'] * 1e3:.1f} ms | {selection['loop_s'] / selection['vectorised_s']:.1f}x |",
        "",
        "Training speed (forward + backward + Adam step, pooled linear age head):",
        "",
        "| backbone | input | batch | images/s |",
        "|---|---|---|---|",
        *[f"| {name} | {size} px | {batch} | {rate:.{0 if rate >= 10 else 1}f} |" for name, size, batch, rate in speeds],
    ]
    write_record("\n".join(lines))
    print(f"appended to {RECORD}")


if __name__ == "__main__":
    main()
