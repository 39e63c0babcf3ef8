"""The GPU paths in one short run: both papers' presets, NCCL under torchrun, and training speed.

On a machine with one CUDA device and agekit installed (nothing else, no data and
no weights needed), from the repository root:

    python benchmarks/gpu_check.py            # under 5 minutes; writes benchmarks/gpu.md

It checks, on synthetic faces:

1. training: a few hundred optimiser steps of RAPL's ``gpu`` preset (IR50, 112 px,
   batch 64, Adam 1e-5) and of the Siamese paper preset (``gpu``: Inception V3,
   227 px, batch 128, Adadelta), each in bf16 autocast (float16 where bf16 is
   missing) with channels_last, as the presets run; the data set is made smaller
   and the run shorter so that it takes seconds, every other setting is the
   preset's. A check passes when no loss or metric is NaN or infinite and the
   loss of the last epoch is below that of the first (for RAPL its age term: the
   position term joins from epoch 2);
2. ``torchrun --nproc_per_node 1`` starts this script as a worker that joins an
   NCCL process group, all-gathers and all-reduces through agekit's distributed
   functions (gather_cat, all_reduce_sum), and trains the ``smoke`` preset on the
   GPU with the group in place;
3. training throughput (forward, loss, backward and optimiser step, images per
   second) of IR50 at 112 px (RAPLNet, batch 64, Adam) and Inception V3 at 227 px
   (SiameseNet, batch 128, Adadelta), with and without ``channels_last`` and
   ``torch.compile``; the first steps (with compilation) are timed apart. The
   compiled rows come last and are skipped once ``--budget`` seconds (210) have
   passed, so the whole check stays under five minutes.

The record (machine, versions, every number, PASS/FAIL) goes to benchmarks/gpu.md;
the exit status is 1 when a check failed. No pretrained weights are loaded (the
machine cannot download any), so the training checks start from random weights.

    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu.md   # CPU, tiny, ~1 minute: the script starts

The dry run goes through the same steps on the CPU with tiny sizes, gloo instead
of NCCL and without torch.compile; its record says it is not a GPU measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from agekit.config import apply_overrides, preset
from agekit.device import amp_dtype, autocast, describe
from agekit.training import train

RECORD = Path(__file__).with_name("gpu.md")

# (method, preset, overrides): the presets' own settings, on fewer faces for fewer steps
TRAINING = {
    "gpu": [
        ("rapl", "gpu", {"data.n": 2000, "train.epochs": 12}),  # 1200 train faces / 64 = 18 steps x 12 = 216
        ("siamese", "gpu", {"data.n": 1500, "train.epochs": 30}),  # 900 / 128 = 7 steps x 30 = 210
    ],
    "dry": [
        ("rapl", "gpu", {"data.n": 40, "data.image_size": 16, "train.batch_size": 8, "train.eval_batch_size": 16,
                         "train.epochs": 2}),
        ("siamese", "gpu", {"data.n": 24, "data.image_size": 75, "train.batch_size": 4, "train.eval_batch_size": 8,
                            "train.epochs": 2, "siamese.k": 3}),
    ],
}
# (name, backbone, image size, batch): the papers' sizes; dry: the smallest that run
THROUGHPUT = {
    "gpu": [("IR50 (RAPLNet)", "ir50", 112, 64), ("Inception V3 (SiameseNet)", "inception_v3", 227, 128)],
    "dry": [("IR50 (RAPLNet)", "ir50", 16, 2), ("Inception V3 (SiameseNet)", "inception_v3", 75, 2)],
}
STEPS = {"gpu": (5, 20), "dry": (1, 1)}  # (warm-up steps, timed steps) per throughput row


# ----------------------------------------------------------------------------- 1. training


def training_check(method: str, preset_name: str, overrides: dict, device: str, dry: bool = False) -> dict:
    """Train a preset briefly; report losses, steps, the validation MAE and PASS/FAIL.

    A dry run's two tiny epochs need not lower the loss: there only finite numbers count.
    """
    config = apply_overrides(preset(preset_name, method), {**overrides, "train.device": device})
    started = time.perf_counter()
    row = {"method": method, "preset": preset_name, "backbone": config.model.backbone,
           "image_size": config.data.image_size, "batch": config.train.batch_size,
           "optimizer": config.optim.name, "epochs": config.train.epochs}
    try:
        result = train(config, progress=False, verbose=False)
    except Exception as error:  # reported in the record, not raised: the other checks still run
        return {**row, "passed": False, "error": f"{type(error).__name__}: {error}",
                "seconds": time.perf_counter() - started}
    history = result.history
    key = "loss_age" if method == "rapl" else "loss"
    numbers = [v for h in history for v in h.values() if isinstance(v, float)]
    finite = all(math.isfinite(v) for v in numbers) and all(math.isfinite(v) for v in result.test_metrics.values())
    steps = sum(-(-h["train_images"] // config.train.batch_size) for h in history)
    first, last = history[0][key], history[-1][key]
    return {**row, "steps": steps, "loss_key": key, "first_loss": first, "last_loss": last,
            "val_mae": history[-1]["val_mae"], "test_mae": result.test_metrics["mae"], "finite": finite,
            "falls": last < first, "passed": finite and (dry or last < first), "seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------- 2. torchrun


def torchrun_check(dry: bool) -> dict:
    """Start this script under ``torchrun --nproc_per_node 1`` as a worker; read what it reports."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "worker.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                   str(Path(__file__).resolve()), "--torchrun-worker", str(report)] + (["--dry-run"] if dry else [])
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=240)
        row = {"command": "torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py --torchrun-worker ...",
               "returncode": done.returncode, "seconds": time.perf_counter() - started}
        if report.is_file():
            row.update(json.loads(report.read_text()))
        else:
            row["error"] = (done.stderr or done.stdout).strip().splitlines()[-5:]
    expected = "gloo" if dry else "nccl"
    row["passed"] = done.returncode == 0 and row.get("backend") == expected and row.get("collectives_ok", False)
    return row


def torchrun_worker(report: Path, dry: bool) -> None:
    """Inside torchrun: join the process group, use agekit's collectives, train the smoke preset."""
    import torch.distributed as dist

    from agekit.training import distributed

    device = torch.device("cpu") if dry else torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("gloo" if dry else "nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    x = torch.arange(6.0, device=device).view(3, 2) + rank
    gathered = distributed.gather_cat(x)  # all_gather of lengths and padded pieces
    total = distributed.all_reduce_sum(torch.ones(3, device=device))
    collectives_ok = torch.equal(gathered.cpu(), torch.cat([torch.arange(6.0).view(3, 2) + r for r in range(world)]))
    collectives_ok = collectives_ok and torch.equal(total.cpu(), torch.full((3,), float(world)))
    config = apply_overrides(preset("smoke", "rapl"), {"train.device": device.type, "train.epochs": 2,
                                                         **({"data.n": 80} if dry else {})})
    result = train(config, progress=False, verbose=False)  # every step's loss sums go through all_reduce
    if rank == 0:
        report.write_text(json.dumps({
            "backend": dist.get_backend(), "world_size": world, "device": str(device),
            "collectives_ok": bool(collectives_ok), "smoke_test_mae": result.test_metrics["mae"],
        }))
    dist.destroy_process_group()


# ----------------------------------------------------------------------------- 3. throughput


def _model_and_loss(backbone: str):
    """A method's model and a function (model, images, ages, genders) -> loss, with its optimiser's name."""
    from agekit.models import RAPLNet, rapl_loss
    from agekit.models.siamese import SiameseNet, siamese_loss

    if backbone == "ir50":
        model = RAPLNet.from_variant("EVR+GP", torch.arange(16, 78), backbone="ir50")
        return model, (lambda m, x, ages, genders: rapl_loss(m(x), ages, genders)[0]), "adam"
    model = SiameseNet("inception_v3")
    return model, (lambda m, x, ages, genders: siamese_loss(m(x), ages, genders, margin=3)[0]), "adadelta"


def throughput(backbone: str, size: int, batch: int, device: torch.device, channels_last: bool, compiled: bool,
               warmup: int, steps: int) -> dict:
    """Training images per second of one configuration (after ``warmup`` untimed steps)."""
    from agekit.training.trainer import make_optimizer

    torch.manual_seed(0)
    model, loss_fn, optimizer_name = _model_and_loss(backbone)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    settings = preset("gpu", "siamese" if optimizer_name == "adadelta" else "rapl").optim
    optimizer = make_optimizer(model.parameters(), settings)
    forward = torch.compile(model) if compiled else model
    dtype = amp_dtype(device)
    images = torch.rand(batch, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    ages = torch.randint(16, 78, (batch,), device=device)
    genders = torch.randint(0, 2, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = loss_fn(forward, images, ages, genders)
        loss.float().backward()
        optimizer.step()
        return loss

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    started = time.perf_counter()
    for _ in range(warmup):
        loss = step()
    synchronize()
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    synchronize()
    seconds = time.perf_counter() - started
    return {"images_per_s": steps * batch / seconds, "warmup_s": warm, "finite": bool(torch.isfinite(loss))}


# ----------------------------------------------------------------------------- record


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def write_record(path: Path, dry: bool, device: torch.device, trainings: list, run: dict, speeds: list,
                 seconds: float, command: str) -> bool:
    from agekit._io import atomic_write_text

    passed = all(t["passed"] for t in trainings) and run["passed"] and all(s.get("finite", True) for s in speeds)
    title = "# GPU check" + (" (DRY RUN on the CPU: not a GPU measurement)" if dry else "")
    lines = [
        title, "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Device: {describe(device, amp_dtype(device))}  ",
        f"Versions: torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}  ",
        f"Overall: **{'PASS' if passed else 'FAIL'}** in {seconds:.0f} s", "",
        "## 1. Training the presets on synthetic faces (random initial weights)", "",
    ]
    rows = []
    for t in trainings:
        if "error" in t:
            rows.append([f"{t['method']} {t['preset']}", t["backbone"], t["image_size"], t["batch"], t["optimizer"],
                         "-", "-", "-", "-", f"{t['seconds']:.0f}", f"FAIL: {t['error'][:200]}"])
            continue
        rows.append([f"{t['method']} {t['preset']}", t["backbone"], t["image_size"], t["batch"], t["optimizer"],
                     f"{t['steps']} ({t['epochs']} epochs)", f"{t['loss_key']} {t['first_loss']:.4g} -> "
                     f"{t['last_loss']:.4g}", f"{t['val_mae']:.2f}", f"{t['test_mae']:.2f}", f"{t['seconds']:.0f}",
                     "PASS" if t["passed"] else f"FAIL (finite {t['finite']}, falls {t['falls']})"])
    lines += _table(["run", "backbone", "px", "batch", "optimiser", "steps", "loss, epoch 1 -> last",
                     "val MAE", "test MAE", "s", "result"], rows)
    lines += ["", "## 2. torchrun --nproc_per_node 1", ""]
    detail = {k: v for k, v in run.items() if k not in ("passed", "command")}
    lines += [f"`{run['command']}`: {'PASS' if run['passed'] else 'FAIL'}  ", f"{json.dumps(detail)}", ""]
    lines += ["## 3. Training throughput (forward, loss, backward, optimiser step)", ""]
    rows = [[s["name"], s["size"], s["batch"], s["channels_last"], s["compile"],
             f"{s['images_per_s']:.0f}" if "images_per_s" in s else "-",
             f"{s['warmup_s']:.1f}" if "warmup_s" in s else "-", s.get("note", "")] for s in speeds]
    lines += _table(["model", "px", "batch", "channels_last", "torch.compile", "images/s",
                     "first steps, s (with compilation)", "note"], rows)
    atomic_write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}: {'PASS' if passed else 'FAIL'}")
    return passed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, gloo, no torch.compile")
    parser.add_argument("--out", default=str(RECORD), help="the record to write (default benchmarks/gpu.md)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--budget", type=float, default=210.0,
                        help="seconds after which the remaining torch.compile rows are skipped (default 210)")
    parser.add_argument("--torchrun-worker", metavar="REPORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torchrun_worker:
        torchrun_worker(Path(args.torchrun_worker), args.dry_run)
        return 0
    mode = "dry" if args.dry_run else "gpu"
    if mode == "gpu" and not torch.cuda.is_available():
        print("gpu_check: error: this torch sees no CUDA device; run it on a GPU machine, or use --dry-run "
              "to try it on the CPU.", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    command = "python benchmarks/gpu_check.py" + (" --dry-run" if args.dry_run else "") + \
              (" --skip-compile" if args.skip_compile else "") + \
              (f" --budget {args.budget:g}" if args.budget != parser.get_default("budget") else "")
    started = time.perf_counter()

    trainings = []
    for method, name, overrides in TRAINING[mode]:
        trainings.append(training_check(method, name, overrides, device.type, args.dry_run))
        print(f"training {method} {name}: {'PASS' if trainings[-1]['passed'] else 'FAIL'}", flush=True)
    run = torchrun_check(args.dry_run)
    print(f"torchrun: {'PASS' if run['passed'] else 'FAIL'} ({run.get('backend')})", flush=True)

    speeds = []
    warmup, steps = STEPS[mode]
    # eager rows first, then the compiled ones (compilation takes the longest), within the time budget
    for compiled in (False, True):
        for label, backbone, size, batch in THROUGHPUT[mode]:
            for channels_last in (False, True):
                row = {"name": label, "size": size, "batch": batch, "channels_last": channels_last,
                       "compile": compiled}
                if compiled and (args.dry_run or args.skip_compile):
                    row["note"] = "skipped (dry run)" if args.dry_run else "skipped (--skip-compile)"
                elif compiled and time.perf_counter() - started > args.budget:
                    row["note"] = f"skipped (past the {args.budget:.0f} s budget; --budget to change it)"
                else:
                    try:
                        row.update(throughput(backbone, size, batch, device, channels_last, compiled, warmup, steps))
                    except Exception as error:  # e.g. a compiler missing: record it, go on
                        row["note"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
                speeds.append(row)
                print(f"{label} {size} px, channels_last {channels_last}, compile {compiled}: "
                      f"{row.get('images_per_s', float('nan')):.0f} images/s {row.get('note', '')}", flush=True)
    passed = write_record(Path(args.out), args.dry_run, device, trainings, run, speeds,
                          time.perf_counter() - started, command)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
