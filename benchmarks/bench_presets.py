"""What the ``cpu`` preset reaches on synthetic faces: every RAPL variant and the Siamese baseline.

For each seed, the synthetic faces (seed s) are split by identity and every
configuration is trained with the ``cpu`` preset (training seed s), exactly as
``notebooks/09_ablations.ipynb`` trains its grid:

* RAPL, the five rows of the paper's Table 3: FC, EVR, EVR+GP, EVR+RAPL, EVR+RAPL+GP;
* Siamese, with and without the gender embedding;

and compared with the simplest estimator, predicting the median training age
for every test face. Reported: per run its test MAE, its ratio to that seed's
median baseline and its wall time; then test MAE and CS(5) (mean +/- std over
seeds). Runs go through ``agekit.lesson.trained``: the same folder names
(``lesson.run_name``) in the same ``runs/`` cache (``$AGEKIT_RUNS``) as the lessons,
so after ``agekit course`` the table is read from the course's runs in seconds,
and a run this script trains is reused by the course. A reused run's time is the
training time it recorded (its epochs, without start-up and test).

    python benchmarks/bench_presets.py                         # the full table (7 x 3 runs)
    python benchmarks/bench_presets.py --seeds 0 --epochs 2 --only FC siamese --no-record   # a quick check
    python benchmarks/bench_presets.py --set data.n=6000 train.epochs=10 --only FC   # try other settings
    python benchmarks/bench_presets.py --only EVR+RAPL+GP --augmentation agekit rapl_authors   # augmentations
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench_trainer import parse_common, record  # the sibling script (benchmarks/ is on sys.path as a script)

from agekit import lesson
from agekit.config import VARIANTS, apply_overrides, preset, with_epochs
from agekit.training import finished_run
from agekit.training.trainer import load_data

RUNS = [("rapl", v) for v in VARIANTS] + [("siamese", "multi-task"), ("siamese", "age only")]


def configuration(method: str, name: str, seed: int, epochs: int | None, n: int | None,
                  augmentation: str = "agekit", changes=()):
    """The lesson 09 configuration of one run (``lesson.settings`` with the cpu preset), plus ``changes``."""
    config = with_epochs(preset("cpu", method), epochs) if epochs is not None else preset("cpu", method)
    overrides = {"train.seed": seed, "data.seed": seed, "data.augmentation": augmentation}
    if method == "rapl":
        overrides["rapl.variant"] = name
    else:
        overrides["siamese.gender"] = name == "multi-task"
    if n is not None:
        overrides["data.n"] = n
    return apply_overrides(apply_overrides(config, overrides), list(changes)).validate()


def median_baseline(data) -> float:
    """Test MAE of predicting the median training age for everyone."""
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
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="settings changed from the cpu preset (e.g. data.n=6000 train.epochs=10)")
    parser.add_argument("--augmentation", nargs="+", default=["agekit"],
                        help="data.augmentation settings to train each run with (default agekit)")
    args = parse_common(parser, argv)
    load = os.getloadavg()

    runs = [(m, v, a) for m, v in RUNS for a in args.augmentation
            if not args.only or v in args.only or m in args.only]
    results = {run: {"mae": [], "cs5": [], "seconds": [], "ratio": []} for run in runs}
    baselines = []
    started_all = time.perf_counter()
    for seed in args.seeds:
        data = load_data(configuration("rapl", "EVR", seed, args.epochs, args.n, changes=args.set))
        baselines.append(median_baseline(data))
        print(f"seed {seed}: median-age baseline MAE {baselines[-1]:.2f}", flush=True)
        for method, name, augmentation in runs:
            config = configuration(method, name, seed, args.epochs, args.n, augmentation, args.set)
            reused = finished_run(lesson.run_folder(config))
            started = time.perf_counter()
            result = lesson.trained(config, data=data, verbose=False)
            seconds = (sum(h.get("seconds", 0.0) for h in result.history) if reused
                       else time.perf_counter() - started)
            mae = result.test_metrics["mae"]
            for key, value in (("mae", mae), ("cs5", result.test_metrics["cs5"]), ("seconds", seconds),
                               ("ratio", mae / baselines[-1])):
                results[(method, name, augmentation)][key].append(value)
            print(f"  {method} {name} ({augmentation} augmentation): test MAE {mae:.2f}, "
                  f"MAE / median {mae / baselines[-1]:.3f}, CS5 {result.test_metrics['cs5']:.1f} %, "
                  f"{seconds:.1f} s{' (reused)' if reused else ''}", flush=True)
    total = time.perf_counter() - started_all

    baseline = statistics.mean(baselines)
    lines = ["| method | variant | augmentation | test MAE | CS(5) % | MAE / median baseline | worst seed's ratio | "
             "wall time per run (s) |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
             f"| median age | - | - | {mean_std(baselines)} | - | 1.00 | - | - |"]
    for (method, name, augmentation), r in results.items():
        ratio = statistics.mean(r["mae"]) / baseline
        lines.append(f"| {method} | {name} | {augmentation} | {mean_std(r['mae'])} | {mean_std(r['cs5'])} | "
                     f"{ratio:.2f} | {max(r['ratio']):.3f} | {statistics.mean(r['seconds']):.1f} |")
    rapl = [ratio for (method, _, _), r in results.items() if method == "rapl" for ratio in r["ratio"]]
    seconds = sum(sum(r["seconds"]) for r in results.values())
    lines += ["", f"Per run (test MAE / that seed's median baseline): " + "; ".join(
        f"{name} {', '.join(f'{x:.3f}' for x in r['ratio'])}" for (_, name, _), r in results.items()),
        "", f"RAPL variants at <= 0.5x the median baseline on every seed: "
        f"{'met' if rapl and max(rapl) <= 0.5 else 'NOT met'} (worst {max(rapl, default=float('nan')):.3f}). "
        f"The grid's runs took {seconds / 60:.1f} min of training ({total / 60:.1f} min of this script); "
        f"lesson 09's target is <= 5 min."]
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        config = configuration("rapl", "EVR", args.seeds[0], args.epochs, args.n, changes=args.set)
        record("cpu preset on synthetic faces", "bench_presets.py", argv,
               f"{config.data.n} faces at {config.data.image_size} px, {config.model.backbone}, "
               f"{config.train.epochs} epochs, batch {config.train.batch_size}, Adam lr {config.optim.lr:g}; "
               f"seeds {args.seeds} (data and training), mean ± std over seeds; load average (1 min) {load[0]:.1f} before, "
               f"{os.getloadavg()[0]:.1f} after.", table)

if __name__ == "__main__":
    main()
