"""``agekit train``, ``agekit eval`` and ``agekit predict``: make a run, measure it, use it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agekit.cli._parser import UserError, add_command

TRAIN_EXAMPLES = (
    "agekit data synth --out D --n 240 --size 24",
    "agekit train --data D/manifest.csv --preset smoke --out R",
    "agekit train --method siamese --preset cpu --out runs/siamese --epochs 5",
    "agekit train --preset gpu --data runs/data/agedb/manifest.csv --set model.pretrained=ir50.pth --out runs/agedb",
    "agekit train --out R --resume                 # continue a stopped run",
)
EVAL_EXAMPLES = (
    "agekit eval --checkpoint R/best.pt --data D/manifest.csv",
    "agekit eval --checkpoint R/best.pt --split val --json",
)
PREDICT_EXAMPLES = (
    "agekit predict --checkpoint R/best.pt D/faces/*.png",
    "agekit predict --checkpoint R/best.pt me.jpg --json",
)
# the metrics runs record, with the names and units of the training log
METRIC_NAMES = {"mae": ("MAE", "years"), "cs5": ("CS5", "%"), "rmse": ("RMSE", "years"),
                "gender_acc": ("gender accuracy", "%"), "confidence5": ("confidence CS5", "%")}
NOT_SQUARE = 1.5  # predict warns above this ratio of the longer to the shorter side
TOO_LARGE = 4  # ... and when the longer side exceeds this many times the training size


def _presets_text() -> str:
    """The presets, read from ``agekit.config`` (their values and what each is for)."""
    from agekit.config import METHODS, PRESET_USES, PRESETS, allowed_keys, describe_preset

    lines = ["presets (--preset; auto = gpu when CUDA is there, else cpu):"]
    for name in PRESETS:
        lines.append(f"  {name:9s} {PRESET_USES[name]}")
        described: dict[str, list[str]] = {}
        for method in METHODS:  # methods with the same values share a line
            described.setdefault(describe_preset(name, method), []).append(method)
        lines += [f"  {'':9s}   {' and '.join(methods)}: {text}" for text, methods in described.items()]
    lines.append("settings (--set KEY=VALUE, or a --config TOML file with these sections):")
    sections: dict[str, list[str]] = {}
    for key in allowed_keys():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(name)
    lines += [f"  [{section}] {', '.join(names)}" if section else f"  {', '.join(names)}"
              for section, names in sections.items()]
    return "\n".join(lines)


def add_run_commands(subparsers) -> None:
    """Register ``train``, ``eval`` and ``predict``."""
    from agekit.config import METHODS, PRESETS, VARIANTS

    train = add_command(subparsers, "train", "train RAPL or the Siamese baseline", TRAIN_EXAMPLES)
    train.description = "Train RAPL or the Siamese baseline.\n\n" + _presets_text()
    train.add_argument("--method", choices=METHODS, help="rapl or siamese (default: the --config file's, else rapl)")
    train.add_argument("--preset", choices=PRESETS + ("auto",),
                       help="where the settings start, see above (default: the --config file's, else auto)")
    train.add_argument("--variant", choices=VARIANTS, help="RAPL's Table 3 row (default: EVR+RAPL+GP)")
    train.add_argument("--config", metavar="FILE", help="a TOML file of settings on top of the preset (default: none)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="change one setting, e.g. --set optim.lr=1e-4; repeatable (default: none)")
    train.add_argument("--epochs", type=int, metavar="N",
                       help="number of epochs; the lr drops move with it (default: the preset's)")
    train.add_argument("--seed", type=int, metavar="S",
                       help="seed of model init, shuffling and augmentation (default: the --config file's, else 0)")
    train.add_argument("--data", metavar="MANIFEST",
                       help="manifest.csv of a prepared data set (default: synthetic faces drawn for the run)")
    train.add_argument("--out", required=True, metavar="DIR",
                       help="output folder: config.toml, last.pt, best.pt, metrics.json")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    train.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: auto, CUDA then MPS then CPU)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)

    evaluate = add_command(subparsers, "eval", "metrics of a checkpoint on a split, as a table", EVAL_EXAMPLES)
    evaluate.add_argument("--checkpoint", required=True, metavar="FILE", help="best.pt or last.pt of a training run")
    evaluate.add_argument("--data", metavar="MANIFEST", help="manifest.csv of a prepared data set "
                          "(default: the data the checkpoint was trained on)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"], help="which part")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    evaluate.set_defaults(handler=_eval)

    predict = add_command(subparsers, "predict", "age (and gender) of face photos", PREDICT_EXAMPLES,
                          "Age (and gender) of face photos: one square crop of one face each, as in training.")
    predict.add_argument("--checkpoint", required=True, metavar="FILE", help="best.pt or last.pt of a training run")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    predict.add_argument("--json", action="store_true", help="print one JSON object per image")
    predict.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    predict.set_defaults(handler=_predict)


def train_config(args):
    """The run's Config: the preset, the --config file (read once), then --epochs, --set and the named options.

    ``auto`` is resolved by ``agekit.config.resolve_preset``, the rule the lessons use.
    """
    from agekit.config import (ConfigError, apply_overrides, config_from_dict, parse_override, preset, read_toml,
                               resolve_preset, with_epochs)

    overrides = dict(parse_override(text) for text in args.overrides)  # a mistyped key fails before torch loads
    if args.resume and not (args.method or args.preset or args.config):
        from agekit.training.checkpoint import load_checkpoint

        last = Path(args.out) / "last.pt"
        if not last.is_file():
            raise UserError(f"Nothing to resume in {args.out}: there is no last.pt.")
        config = config_from_dict(load_checkpoint(last)["config"])
    else:
        values = read_toml(args.config) if args.config else {}
        method = args.method or values.pop("method", "rapl")
        chosen = args.preset or values.pop("preset", "auto")
        values.pop("method", None), values.pop("preset", None)  # the options win over the file
        train = values.get("train")
        device = args.device or (train.get("device", "auto") if isinstance(train, dict) else "auto")
        config = config_from_dict(values, base=preset(resolve_preset(chosen, device), method))
    if args.epochs is not None:
        config = with_epochs(config, args.epochs)  # the learning-rate drops move with the epochs, as in the lessons
    if args.variant and config.method != "rapl":
        raise ConfigError("--variant chooses a RAPL row of Table 3; it does not apply to --method siamese.")
    named = {"rapl.variant": args.variant, "train.seed": args.seed, "data.manifest": args.data,
             "train.device": args.device}
    overrides.update({key: value for key, value in named.items() if value is not None})
    return apply_overrides(config, overrides).validate()


def _train(args) -> int:
    from agekit._io import DiskFull

    config = train_config(args)  # settings are checked before torch is imported
    from agekit.training import distributed
    from agekit.training.trainer import train

    out = Path(args.out)
    if not args.resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a training run (last.pt); add --resume to continue it, "
                        "or pick another --out.")
    try:
        result = train(config, out_dir=out, progress=not args.no_progress, resume=args.resume, verbose=True)
    except (KeyboardInterrupt, DiskFull) as error:
        if not (out / "last.pt").is_file():
            raise
        stopped = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
        print(f"agekit: {stopped}; last.pt keeps the last finished epoch: continue with "
              f"agekit train --out {out} --resume", file=sys.stderr)
        return 130 if isinstance(error, KeyboardInterrupt) else 2
    finally:
        distributed.shutdown()
    if distributed.from_environment().is_main:
        if result.test_metrics is None:
            print(f"stopped after epoch {len(result.history)} of {config.train.epochs}; continue with --resume")
        else:
            print(json.dumps({"test": result.test_metrics, "best_epoch": result.best_epoch, "out": str(out)}))
    return 0


def metrics_table(metrics: dict, title: str) -> str:
    """``{"mae": 5.1, ...}`` as aligned lines ``MAE  5.10 years``, under ``title``."""
    rows = [(METRIC_NAMES.get(key, (key, ""))[0], f"{value:.2f}", METRIC_NAMES.get(key, (key, ""))[1])
            for key, value in metrics.items()]
    width = max(len(name) for name, _, _ in rows)
    digits = max(len(number) for _, number, _ in rows)
    lines = [f"  {name:<{width}}  {number:>{digits}} {unit}".rstrip() for name, number, unit in rows]
    return "\n".join([title] + lines)


def _eval(args) -> int:
    from agekit.training.trainer import load_data, load_trained, predict, prediction_metrics

    result = load_trained(args.checkpoint, device=args.device)
    config = result.config
    if args.data:
        config.data.manifest = args.data
    dataset = load_data(config).split(args.split)
    metrics = prediction_metrics(predict(result, dataset), dataset)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "faces": len(dataset), **metrics}))
    else:
        data = config.data.manifest or f"synthetic faces (n={config.data.n}, seed {config.data.seed})"
        print(metrics_table(metrics, f"{args.checkpoint} on the {args.split} split of {data}: {len(dataset)} faces"))
    return 0


def crop_warning(path, width: int, height: int, image_size: int) -> str:
    """Why an image of ``width`` x ``height`` px does not look like one face crop for a model trained at
    ``image_size`` px, or ``""`` when it does."""
    longer, shorter = max(width, height), max(1, min(width, height))
    problems = []
    if longer / shorter > NOT_SQUARE:
        problems.append("far from square (it is padded to a square, so the face ends up small)")
    if longer > TOO_LARGE * image_size:
        problems.append(f"far larger than the {image_size} px faces the model was trained on")
    if not problems:
        return ""
    return (f"agekit: warning: {path} is {width}x{height} px, {' and '.join(problems)}; "
            "crop it to one face for a meaningful age")


def _read_face(path, size: int):
    """One image as uint8 [3, size, size], with a warning on stderr when it does not look like a face crop."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from agekit.data.images import ImageError
    from agekit.data.prepare import load_face

    if Path(path).is_dir():
        raise UserError(f"Image {path!r} is a folder; pass image files.")
    if not Path(path).is_file():
        if Path(path).exists():
            raise UserError(f"Image {path!r} is not a regular file (a FIFO, device or socket).")
        raise FileNotFoundError(f"Image {path!r} does not exist.")
    try:
        face = torch.from_numpy(load_face(path, size).copy())
        with Image.open(path) as image:  # reads the header only
            warning = crop_warning(path, *image.size, size)
    except (ImageError, UnidentifiedImageError, OSError) as error:
        raise UserError(f"Cannot read {path} as an image: {error}") from None
    if warning:
        print(warning, file=sys.stderr)
    return face


def _predict(args) -> int:
    import torch

    from agekit.data.dataset import FaceDataset
    from agekit.training.trainer import load_trained, predict

    result = load_trained(args.checkpoint, device=args.device)
    if result.config.method == "siamese" and result.gallery is None:
        raise UserError(f"{args.checkpoint} carries no kNN gallery, so the Siamese model cannot estimate ages.")
    images = [_read_face(path, result.config.data.image_size) for path in args.images]
    dataset = FaceDataset(torch.stack(images), torch.zeros(len(images), dtype=torch.int64))
    predictions = predict(result, dataset)
    for i, path in enumerate(args.images):
        row = {"image": path, "age": round(float(predictions["age"][i]), 2)}
        if "gender" in predictions:
            row["gender"] = "female" if int(predictions["gender"][i]) == 1 else "male"
        if "female_prob" in predictions:
            row["female_prob"] = round(float(predictions["female_prob"][i]), 3)
        if args.json:
            print(json.dumps(row))
        else:
            gender = f", {row['gender']}" if "gender" in row else ""
            print(f"{path}: age {row['age']:.1f}{gender}")
    return 0
