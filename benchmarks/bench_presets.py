"""What the ``cpu`` preset reaches on synthetic faces: every RAPL variant and the Siamese baseline.

For each seed, the synthetic faces (seed s) are split by identity and every
configuration is trained with the ``cpu`` preset (training seed s):

* RAPL, the five rows of the paper's Table 3: FC, EVR, EVR+GP, EVR+RAPL, EVR+RAPL+GP;
* Siamese, with and without the gender embedding;

and compared with the simplest estimator, predicting the median training age
for every test face. Reported: test MAE and CS(5) (mean +/- std over seeds) and
the wall time of one training run.

    python benchmarks/bench_presets.py                         # the full table (7 x 3 runs)
    python benchmarks/bench_presets.py --seeds 0 --epochs 2 --only FC siamese --no-record   # a quick check
    python benchmarks/bench_presets.py --only EVR+RAPL+GP --augmentation agekit rapl_authors   # augmentations
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_trainer import parse_common, record  # the sibling script (benchmarks/ is on sys.path as a script)

from agekit.config import VARIANTS, apply_overrides, preset
from agekit.training import train
from agekit.training.trainer import load_data

RUNS = [("rapl", v) for v in VARIANTS] + [("siamese", "multi-task"), ("siamese", "age only")]


def configuration(method: str, name: str, seed: int, epochs: int | None, n: int | None,
                  augmentation: str = "agekit"):
    config = preset("cpu", method)
    overrides = {"train.seed": seed, "data.seed": seed, "train.device": "cpu", "data.augmentation": augmentation}
    if method == "rapl":
        overrides["rapl.variant"] = name
    else:
        overrides["siamese.gender"] = name == "multi-task"
    if epochs is not None:
        overrides["train.epochs"] = epochs
        overrides["optim.milestones"] = [m for m in config.optim.milestones if m < epochs]
    if n is not None:
        overrides["data.n"] = n
    return apply_overrides(config, overrides)


def median_baseline(config) -> float:
    """Test MAE of predicting the median training age for everyone."""
    data = load_data(config)
    median = data.train.ages.float().median()
    return float((data.test.ages.float() - median).abs().mean())


def mean_std(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="fewer epochs than the preset (a quick check)")
    parser.add_argument("--n", type=int, help="fewer faces than the preset (a quick check)")
    parser.add_argument("--only", nargs="+", help="run only these names (e.g. FC EVR+RAPL+GP siamese)")
    parser.add_argument("--augmentation", nargs="+", default=["agekit"],
                        help="data.augmentation settings to train each run with (default agekit)")
    args = parse_common(parser, argv)

    runs = [(m, v, a) for m, v in RUNS for a in args.augmentation
            if not args.only or v in args.only or m in args.only]
    results = {run: {"mae": [], "cs5": [], "seconds": []} for run in runs}
    baselines = []
    for seed in args.seeds:
        baselines.append(median_baseline(configuration("rapl", "EVR", seed, args.epochs, args.n)))
        print(f"seed {seed}: median-age baseline MAE {baselines[-1]:.2f}", flush=True)
        for method, name, augmentation in runs:
            config = configuration(method, name, seed, args.epochs, args.n, augmentation)
            started = time.perf_counter()
            result = train(config, progress=False)
            seconds = time.perf_counter() - started
            for key, value in (("mae", result.test_metrics["mae"]), ("cs5", result.test_metrics["cs5"]),
                               ("seconds", seconds)):
                results[(method, name, augmentation)][key].append(value)
            print(f"  {method} {name} ({augmentation} augmentation): test MAE {result.test_metrics['mae']:.2f}, "
                  f"CS5 {result.test_metrics['cs5']:.1f} %, {seconds:.0f} s", flush=True)

    baseline = statistics.mean(baselines)
    lines = ["| method | variant | augmentation | test MAE | CS(5) % | MAE / median baseline | wall time per run (s) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |",
             f"| median age | - | - | {mean_std(baselines)} | - | 1.00 | - |"]
    for (method, name, augmentation), r in results.items():
        ratio = statistics.mean(r["mae"]) / baseline
        lines.append(f"| {method} | {name} | {augmentation} | {mean_std(r['mae'])} | {mean_std(r['cs5'])} | "
                     f"{ratio:.2f} | {statistics.mean(r['seconds']):.0f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        config = configuration("rapl", "EVR", args.seeds[0], args.epochs, args.n)
        record("cpu preset on synthetic faces", "bench_presets.py", argv,
               f"{config.data.n} faces at {config.data.image_size} px, {config.model.backbone}, "
               f"{config.train.epochs} epochs, batch {config.train.batch_size}, Adam lr {config.optim.lr:g}; "
               f"seeds {args.seeds} (data and training), mean ± std over seeds.", table)

if __name__ == "__main__":
    main()
