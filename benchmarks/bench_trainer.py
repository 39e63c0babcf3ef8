"""The trainer's CPU speed: a whole epoch of agekit's trainer against a bare PyTorch loop, threads and layout.

Three measurements, in one process, contenders alternating:

1. step: one cpu-preset training step (RAPL EVR+RAPL+GP, ir_small, 32 px, batch 64:
   forward, loss, backward, Adam) on 1 and on 2 threads, contiguous and
   channels-last, and one evaluation batch under ``no_grad`` and ``inference_mode``.
   This is the measurement behind ``agekit.device``'s defaults.
2. epoch: whole runs (every epoch's training, validation, Algorithm 1 and
   checkpoints, then the test) of ``agekit.training.train`` against a bare loop
   doing the same work: the same model, data, batches, augmentation, optimiser,
   schedule, the method's own hooks (RAPL's reference bank and Algorithm 1), a
   validation pass per epoch and a ``torch.save`` of the state per improving epoch.
   Both finish with the same test MAE (checked). Paired ratios bare / trainer per
   repeat; the target is >= 0.95.
3. scale: the trainer's time per epoch against the number of training faces
   (``benchmarks/trainer.png``), with a straight line through the origin fitted.

    python benchmarks/bench_trainer.py                 # about 3 minutes on 2 idle cores
    python benchmarks/bench_trainer.py --repeats 1 --n 600 --no-record   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from agekit.config import apply_overrides, preset
from agekit.data.augment import augmentation
from agekit.device import MAX_DEFAULT_THREADS, configure_threads, default_threads, evaluation, prepare_model, usable_cores
from agekit.metrics import summarize
from agekit.training import train
from agekit.training.methods import make_method
from agekit.training.trainer import load_data, make_optimizer, prepare_images, seed_everything

HERE = Path(__file__).parent
RECORD, PLOT = HERE / "trainer.md", HERE / "trainer.png"


# ----------------------------------------------------------------------------- 1. one step


def step_times(config, data, threads: int, channels_last: bool, steps: int) -> tuple[float, float, torch.Tensor]:
    """(seconds per training step, seconds per evaluation batch, the first step's loss parts) on ``threads``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    method = make_method(config, data.age_labels, torch.device("cpu"))
    model = prepare_model(method.build_model(), torch.device("cpu"), channels_last)
    optimizer = make_optimizer(model.parameters(), config.optim)
    batch = data.train.batch(torch.arange(config.train.batch_size))
    images = prepare_images(batch.images, channels_last=channels_last)
    references = torch.randn(len(data.age_labels), model.num_channels)
    first = None
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        output = model(images, references=references)
        total, _ = method.loss(output, batch.ages, batch.genders)
        first = total.detach() if first is None else first
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    train_step = (time.perf_counter() - started) / steps
    model.eval()
    started = time.perf_counter()
    with evaluation():
        for _ in range(steps):
            model(images, references=references)
    return train_step, (time.perf_counter() - started) / steps, first


def eval_context_times(config, data, threads: int, steps: int) -> dict:
    """Seconds per evaluation batch (eval batch size) under no_grad and under inference_mode, alternating."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = prepare_model(make_method(config, data.age_labels, torch.device("cpu")).build_model(),
                          torch.device("cpu"), True).eval()
    images = prepare_images(data.val.batch(torch.arange(min(len(data.val), config.train.eval_batch_size))).images,
                            channels_last=True)
    times, outputs = {"no_grad": [], "inference_mode": []}, {}
    for _ in range(steps):
        for name, context in (("no_grad", torch.no_grad), ("inference_mode", evaluation)):
            started = time.perf_counter()
            with context():
                outputs[name] = model(images).age
            times[name].append(time.perf_counter() - started)
    assert torch.equal(outputs["no_grad"], outputs["inference_mode"]), "no_grad and inference_mode disagree"
    return times


def bench_steps(config, data, repeats: int, steps: int) -> str:
    cases = [(t, c) for t in (1, 2) for c in (False, True)]
    times = {case: [] for case in cases}
    evals = {case: [] for case in cases}
    losses = {}
    step_times(config, data, 1, True, 2)  # warm-up: first-call costs of the kernels
    for _ in range(repeats):
        for case in cases:
            train_step, eval_batch, loss = step_times(config, data, *case, steps)
            times[case].append(train_step)
            evals[case].append(eval_batch)
            losses[case] = loss
    same = all(torch.allclose(loss, losses[cases[0]], rtol=1e-4) for loss in losses.values())
    base = statistics.median(times[(1, False)])
    rows = [f"| {t} | {'channels-last' if c else 'contiguous'} | {1000 * min(times[(t, c)]):.0f} | "
            f"{1000 * statistics.median(times[(t, c)]):.0f} | {base / statistics.median(times[(t, c)]):.2f} | "
            f"{1000 * statistics.median(evals[(t, c)]):.1f} |" for t, c in cases]
    contexts = eval_context_times(config, data, 1, max(3, repeats * 3))
    table = "\n".join([
        f"| threads | layout | ms per training step, min | median | speed-up vs 1 thread contiguous | "
        f"ms per forward (eval), median |", "| ---: | --- | ---: | ---: | ---: | ---: |", *rows,
        "", "| evaluation context (1 thread, eval batch) | ms per batch, min | median |", "| --- | ---: | ---: |",
        *[f"| {name} | {1000 * min(v):.1f} | {1000 * statistics.median(v):.1f} |" for name, v in contexts.items()]])
    fastest = min(cases, key=lambda case: statistics.median(times[case]))
    layout = statistics.median(times[(fastest[0], False)]) / statistics.median(times[(fastest[0], True)])
    verdict = (f"Fastest: {fastest[0]} thread(s), {'channels-last' if fastest[1] else 'contiguous'}; agekit's rule "
               f"uses {default_threads()} thread(s) on this machine ({usable_cores()} usable cores, at most "
               f"{MAX_DEFAULT_THREADS}): {'consistent' if default_threads() == fastest[0] else 'NOT consistent'} "
               f"with this measurement. Channels-last makes a step {layout:.2f}x as fast at {fastest[0]} thread(s).")
    return (table + f"\n\nSame loss in every case (rtol 1e-4): {same}; no_grad and inference_mode give equal "
            f"outputs.\n\n{verdict}")


# ----------------------------------------------------------------------------- 2. a whole run


def bare_run(config, data, out_dir: Path) -> float:
    """The same work as ``train(config, out_dir=...)`` in a plain loop; returns the best model's test MAE."""
    device = torch.device("cpu")
    seed_everything(config.train.seed)
    method = make_method(config, data.age_labels, device)
    torch.manual_seed(config.train.seed)
    model = prepare_model(method.build_model(), device, config.train.channels_last)
    optimizer = make_optimizer(model.parameters(), config.optim)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.optim.milestones, config.optim.gamma)
    shuffle = torch.Generator().manual_seed(config.train.seed)
    augment_generator = torch.Generator().manual_seed(config.train.seed + 1)
    augment = augmentation(config.data.augmentation)
    size, batch_size, train_set = config.data.image_size, config.train.batch_size, data.train
    layout = config.train.channels_last

    def outputs(dataset):
        model.eval()
        parts = []
        with evaluation():
            for start in range(0, len(dataset), config.train.eval_batch_size):
                batch = dataset.batch(torch.arange(start, min(start + config.train.eval_batch_size, len(dataset))))
                parts.append(method.outputs(model, prepare_images(batch.images, size, channels_last=layout)))
        model.train()
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def predict(dataset):
        return method.finish(outputs(dataset))

    def training_outputs():  # what the method may predict from (Siamese: its kNN gallery)
        return outputs(train_set), train_set.ages, train_set.genders

    best, best_state = float("inf"), None
    for epoch in range(config.train.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=shuffle)
        for index in order.split(batch_size):
            if len(index) < 2:
                continue
            batch = train_set.batch(index)
            images = prepare_images(batch.images, size, augment, augment_generator, channels_last=layout)
            output = method.forward(model, images)
            total, _ = method.loss(output, batch.ages, batch.genders)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            method.after_batch(output, batch.ages)
        method.prepare_evaluation(training_outputs, True)
        val_mae = summarize(predict(data.val)["age"], data.val.ages)["mae"]
        method.end_epoch(val_mae, lambda x: x)
        scheduler.step()
        if val_mae < best:
            best = val_mae
            best_state = {"model": copy.deepcopy(model.state_dict()), "eval": copy.deepcopy(method.eval_state())}
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "method": method.state_dict()}, out_dir / "best.pt")
    model.load_state_dict(best_state["model"])
    method.load_eval_state(best_state["eval"])
    method.prepare_evaluation(training_outputs, False)
    return summarize(predict(data.test)["age"], data.test.ages)["mae"]


def bench_runs(config, data, repeats: int) -> tuple[str, list[float]]:
    times = {"bare loop": [], "trainer": []}
    maes = {"bare loop": [], "trainer": []}
    with tempfile.TemporaryDirectory() as folder:
        warm = apply_overrides(config, {"train.epochs": 1, "optim.milestones": []})  # first-call costs of both
        train(warm, data=data, progress=False)
        (Path(folder) / "warm").mkdir()
        bare_run(warm, data, Path(folder) / "warm")
        for repeat in range(repeats):
            for name in (("trainer", "bare loop") if repeat % 2 == 0 else ("bare loop", "trainer")):
                out = Path(folder) / f"{name.replace(' ', '_')}{repeat}"
                out.mkdir()
                started = time.perf_counter()
                if name == "trainer":
                    mae = train(config, data=data, out_dir=out, progress=False).test_metrics["mae"]
                else:
                    mae = bare_run(config, data, out)
                times[name].append(time.perf_counter() - started)
                maes[name].append(mae)
            print(f"  repeat {repeat + 1}: trainer {times['trainer'][-1]:.1f} s, bare {times['bare loop'][-1]:.1f} s",
                  flush=True)
    ratios = [b / t for b, t in zip(times["bare loop"], times["trainer"])]
    same = all(abs(a - b) < 1e-4 for a, b in zip(maes["trainer"], maes["bare loop"]))
    epochs = config.train.epochs
    rows = [f"| {name} | {min(v) / epochs:.2f} | {statistics.median(v) / epochs:.2f} | {maes[name][0]:.4f} |"
            for name, v in times.items()]
    table = "\n".join([
        "| loop | s per epoch (whole run / epochs), min | median | test MAE |", "| --- | ---: | ---: | ---: |", *rows,
        "", f"Paired ratios bare / trainer per repeat: {', '.join(f'{r:.3f}' for r in ratios)}; "
            f"min {min(ratios):.3f}, median {statistics.median(ratios):.3f}. Same test MAE (within 1e-4): {same}."])
    return table, ratios


# ----------------------------------------------------------------------------- 3. scale


def bench_scale(config, sizes: list[int], repeats: int) -> tuple[str, list, list]:
    faces, seconds = [], []
    for n in sizes:
        scaled = apply_overrides(config, {"data.n": n, "train.epochs": 1, "optim.milestones": []})
        data = load_data(scaled)
        runs = [train(scaled, data=data, progress=False).history[0]["seconds"] for _ in range(repeats)]
        faces.append(len(data.train))
        seconds.append(min(runs))
        print(f"  {n} faces ({len(data.train)} training): {min(runs):.2f} s per epoch", flush=True)
    slope = sum(f * s for f, s in zip(faces, seconds)) / sum(f * f for f in faces)  # seconds per face, through 0
    worst = max(abs(s - slope * f) / s for f, s in zip(faces, seconds))
    rows = [f"| {n} | {f} | {s:.2f} | {1000 * s / f:.2f} |" for n, f, s in zip(sizes, faces, seconds)]
    table = "\n".join(["| data.n | training faces | s per epoch (min) | ms per training face |",
                       "| ---: | ---: | ---: | ---: |", *rows, "",
                       f"A line through the origin, {1000 * slope:.2f} ms per training face, is within "
                       f"{100 * worst:.0f} % of every point."])
    return table, faces, seconds


def plot_scale(faces, seconds, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slope = sum(f * s for f, s in zip(faces, seconds)) / sum(f * f for f in faces)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(faces, seconds, "o", label="trainer, one epoch (training + validation, min over repeats)")
    ax.plot([0, max(faces)], [0, slope * max(faces)], "--", label=f"linear: {1000 * slope:.2f} ms per face")
    ax.set_xlabel("training faces")
    ax.set_ylabel("seconds per epoch")
    ax.set_title("cpu preset: time per epoch against the training faces")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- the record


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic faces of the run comparison (60 %% train)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run of the comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="training steps per step measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000], help="data.n of the scale plot")
    args = parse_common(parser, argv)
    load = os.getloadavg()
    threads = torch.get_num_threads()

    config = apply_overrides(preset("cpu", "rapl"), {"train.device": "cpu", "rapl.variant": "EVR+RAPL+GP"})
    data = load_data(config)
    print("1. one training step", flush=True)
    steps = bench_steps(config, data, args.repeats, args.steps)
    torch.set_num_threads(threads)
    print(steps)
    print("2. whole runs, trainer vs bare loop", flush=True)
    run_config = apply_overrides(config, {"data.n": args.n, "train.epochs": args.epochs, "optim.milestones": [2]})
    runs, ratios = bench_runs(run_config, load_data(run_config), args.repeats)
    print(runs)
    print("3. an epoch against the data size", flush=True)
    scale, faces, seconds = bench_scale(config, args.sizes, args.repeats)
    print(scale)
    after = os.getloadavg()
    met = statistics.median(ratios) >= 0.95
    verdict = (f"Target (bare / trainer >= 0.95, paired): {'met' if met else 'NOT met'} "
               f"(median {statistics.median(ratios):.3f}, min {min(ratios):.3f}).")
    print(verdict)
    if not args.no_record:
        plot_scale(faces, seconds, PLOT)
        record("Trainer speed on the CPU", "bench_trainer.py", argv,
               f"Load average (1 min) {load[0]:.1f} before, {after[0]:.1f} after. cpu preset, RAPL EVR+RAPL+GP, "
               f"ir_small at 32 px, batch 64, Adam.",
               f"### 1. One training step\n\n{steps}\n\n### 2. Whole runs: "
               f"{args.n} faces, {args.epochs} epochs, {args.repeats} alternating repeats, checkpoints written\n\n"
               f"{runs}\n\n{verdict}\n\n### 3. An epoch against the data size (`benchmarks/trainer.png`)\n\n{scale}",
               threads)


def parse_common(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Add --threads and --no-record, parse, and apply the kit's thread rule (shared by the trainer benchmarks)."""
    parser.add_argument("--threads", type=int, help="torch threads (default: agekit's rule, agekit.device)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/trainer.md")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    configure_threads(args.threads)
    return args


def record(title: str, script: str, argv, description: str, table: str, threads: int | None = None) -> None:
    """Append a dated section (command, machine, load, threads, torch version, table) to benchmarks/trainer.md."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    section = (
        f"\n## {title}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
        f"`{command.strip()}` on {machine()}, {threads or torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}. {description}\n\n{table}\n"
    )
    with open(RECORD, "a", encoding="utf-8") as handle:
        handle.write(section)
    print(f"appended to {RECORD}")


if __name__ == "__main__":
    main()
