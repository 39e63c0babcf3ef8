"""The trainer's overhead: training images per second of agekit's loop against a bare PyTorch loop.

Both loops train the same RAPL model (EVR+RAPL+GP, small IR, 32 px, the ``cpu``
preset) on the same batches in the same order, with the same augmentation:

* bare: slice uint8 batch -> to_float -> BatchAugment -> normalize -> forward ->
  rapl_loss -> backward -> Adam step; nothing else;
* trainer: ``agekit.training.train`` (loss parts and running MAE per step, the NaN
  check, the reference bank, the history), timed by its own ``train_seconds``
  (the training pass only; validation is timed apart).

Epoch 1 runs without references; later epochs run the position branch, so both
loops are timed on epochs >= 2 with references present, each epoch on its own.
Runs alternate (trainer, bare, trainer, ...); the fastest and the median epoch are
reported, since other work on the machine slows some epochs down.

    python benchmarks/bench_trainer.py               # a few minutes on 2 cores
    python benchmarks/bench_trainer.py --repeats 1 --n 800 --no-record   # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from agekit.config import apply_overrides, preset
from agekit.data import BatchAugment, normalize, to_float
from agekit.models import RAPLNet, rapl_loss
from agekit.training import train
from agekit.training.trainer import load_data

RECORD = Path(__file__).with_name("trainer.md")


def bare_loop(config, data, epochs: int) -> list[float]:
    """Images per second of each epoch >= 2 of a minimal loop over the same batches."""
    torch.manual_seed(config.train.seed)
    labels = data.age_labels
    model = RAPLNet.from_variant(config.rapl.variant, labels, backbone=config.model.backbone)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    shuffle = torch.Generator().manual_seed(config.train.seed)
    augment_generator = torch.Generator().manual_seed(config.train.seed + 1)
    augment = BatchAugment()
    references = torch.randn(len(labels), model.num_channels)
    dataset, batch_size = data.train, config.train.batch_size
    speeds = []
    model.train()
    for epoch in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(dataset), generator=shuffle)
        for index in order.split(batch_size):
            if len(index) < 2:
                continue
            batch = dataset.batch(index)
            images = normalize(augment(to_float(batch.images), augment_generator))
            output = model(images, references=references if epoch else None)
            positions = labels.to_positions(batch.ages) if epoch else None
            loss, _ = rapl_loss(output, batch.ages, batch.genders, positions)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if epoch:
            speeds.append(len(dataset) / (time.perf_counter() - started))
    return speeds


def trainer_loop(config, data, progress: bool) -> list[float]:
    """Images per second of each epoch >= 2 of ``agekit.training.train`` (its training pass only)."""
    result = train(config, data=data, progress=progress, verbose=False)
    return [h["train_images"] / h["train_seconds"] for h in result.history[1:]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic faces (60 %% train)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not timed)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parse_common(parser, argv)

    config = apply_overrides(preset("cpu", "rapl"), {"data.n": args.n, "train.epochs": args.epochs,
                                                     "train.device": "cpu", "optim.milestones": []})
    data = load_data(config)
    speeds = {"bare loop": [], "trainer, progress=False": [], "trainer, progress=True": []}
    bare_loop(config, data, 2)  # warm-up (first-call costs of the kernels)
    for repeat in range(args.repeats):
        speeds["trainer, progress=False"] += trainer_loop(config, data, progress=False)
        speeds["bare loop"] += bare_loop(config, data, args.epochs)
        speeds["trainer, progress=True"] += trainer_loop(config, data, progress=True)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {max(v):.0f} img/s" for k, v in speeds.items()), flush=True)
    best = {name: max(values) for name, values in speeds.items()}
    median = {name: statistics.median(values) for name, values in speeds.items()}
    rows = [f"| {name} | {best[name]:.0f} | {best[name] / best['bare loop']:.2f} | {median[name]:.0f} | "
            f"{median[name] / median['bare loop']:.2f} |" for name in speeds]
    table = "\n".join(["| loop | images/s, fastest epoch | vs bare | images/s, median epoch | vs bare |",
                       "| --- | ---: | ---: | ---: | ---: |", *rows])
    print(table)
    if not args.no_record:
        record("Trainer overhead", "bench_trainer.py", argv,
               f"RAPL EVR+RAPL+GP, ir_small at 32 px, batch 64, {len(data.train)} training faces, "
               f"epochs 2-{args.epochs} of each run timed one by one, {args.repeats} alternating repeats; the "
               "fastest epoch is the least disturbed by other work on the machine.", table)


def parse_common(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Add --threads and --no-record, parse, and apply the thread count (shared by the trainer benchmarks)."""
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/trainer.md")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def record(title: str, script: str, argv, description: str, table: str) -> None:
    """Append a dated section (command, machine, torch version, table) to benchmarks/trainer.md."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    section = (
        f"\n## {title}, {datetime.date.today().isoformat()}\n\n"
        f"`{command.strip()}` on a 2-core CPU ({platform.machine()}, {torch.get_num_threads()} torch threads), "
        f"torch {torch.__version__}, Python {platform.python_version()}. {description}\n\n{table}\n"
    )
    with open(RECORD, "a", encoding="utf-8") as handle:
        handle.write(section)
    print(f"appended to {RECORD}")


if __name__ == "__main__":
    main()
