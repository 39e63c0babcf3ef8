"""The ``agekit`` command line.

    agekit data synth --out DIR --n N --size S --seed K [--difficulty D] [--preview]
    agekit train --method rapl --preset cpu --out runs/rapl [--variant EVR+RAPL+GP]
                 [--config FILE] [--set key=value ...] [--epochs N] [--seed S]
                 [--data MANIFEST] [--resume] [--device auto]
    agekit eval --checkpoint runs/rapl/best.pt [--data MANIFEST] [--split test]
    agekit predict --checkpoint runs/rapl/best.pt face1.jpg face2.png
    agekit grade SUBMISSION.ipynb ... --out DIR [--timeout S] [--full] [--no-run] [--lesson NN] [--jobs N]
    agekit convert rapl-authors agedb.pt runs/authors_agedb.pt --ages-from datalists/agedb.csv

``torchrun --nproc_per_node N -m agekit train ...`` trains on N processes.

Every error the user can cause (bad value, missing file) ends in one clear line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agekit.course import add_course_command
from agekit.grade import add_grade_command


class UserError(Exception):
    """An error caused by the command's input; printed as one line."""


def _add_data_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="make or inspect data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write a synthetic aging-faces data set to disk")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=2000, help="number of faces (default 2000)")
    synth.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--difficulty", default="standard", choices=["easy", "standard", "hard"])
    synth.add_argument("--preview", action="store_true", help="also write preview.png, faces by age and gender")
    synth.set_defaults(handler=_data_synth)


def _data_synth(args) -> int:
    from agekit.data.synthetic import write_synthetic_dataset

    written = write_synthetic_dataset(
        args.out, n=args.n, image_size=args.size, seed=args.seed, difficulty=args.difficulty, preview=args.preview
    )
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0


def _add_train_commands(subparsers) -> None:
    from agekit.config import METHODS, PRESETS, VARIANTS

    train = subparsers.add_parser("train", help="train RAPL or the Siamese baseline")
    train.add_argument("--method", choices=METHODS, help="rapl (default) or siamese")
    train.add_argument("--preset", choices=PRESETS + ("auto",),
                       help="smoke | cpu | gpu (each paper's setting) | gpu_ir50 (RAPL's, for either method); "
                            "default auto: gpu when CUDA is there, else cpu")
    train.add_argument("--variant", choices=VARIANTS, help="RAPL's Table 3 row (default EVR+RAPL+GP)")
    train.add_argument("--config", help="a TOML file of settings (on top of the preset)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="change one setting, e.g. --set optim.lr=1e-4 (repeatable)")
    train.add_argument("--epochs", type=int, help="number of epochs")
    train.add_argument("--seed", type=int, help="seed of model init, shuffling and augmentation")
    train.add_argument("--data", help="manifest of a prepared data set (default: synthetic faces)")
    train.add_argument("--out", required=True, help="output folder: config.toml, last.pt, best.pt, metrics.json")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    train.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N | mps")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("eval", help="metrics of a checkpoint on a split, as JSON")
    evaluate.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a training run")
    evaluate.add_argument("--data", help="manifest of a prepared data set (default: the checkpoint's data)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=_eval)

    predict = subparsers.add_parser("predict", help="age (and gender) of face photos")
    predict.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a training run")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    predict.add_argument("--json", action="store_true", help="print one JSON object per image")
    predict.add_argument("--device", default="auto")
    predict.set_defaults(handler=_predict)


def _train_config(args):
    """The run's Config: preset, then --config, then --set, then the named options."""
    from agekit.config import (ConfigError, apply_overrides, config_from_dict, load_config, preset, resolve_preset,
                                with_epochs)
    from agekit.training.checkpoint import load_checkpoint

    out = Path(args.out)
    if args.resume and not (args.method or args.preset or args.config):
        last = out / "last.pt"
        if not last.is_file():
            raise UserError(f"Nothing to resume in {out}: there is no last.pt.")
        config = config_from_dict(load_checkpoint(last)["config"])
    else:
        file_values = {}
        if args.config:
            file_values = _read_toml(args.config)
        method = args.method or file_values.get("method", "rapl")
        name = resolve_preset(args.preset or file_values.get("preset", "auto"), args.device or "auto")
        config = preset(name, method)
        if file_values:
            config = load_config(args.config, base=config)
        config.method, config.preset = method, name
    if args.epochs is not None:
        config = with_epochs(config, args.epochs)  # the learning-rate drops move with the epochs, as in the lessons
    named = {"rapl.variant": args.variant, "train.seed": args.seed,
             "data.manifest": args.data, "train.device": args.device}
    if args.variant and config.method != "rapl":
        raise ConfigError("--variant chooses a RAPL row of Table 3; it does not apply to --method siamese.")
    config = apply_overrides(config, args.overrides)
    config = apply_overrides(config, {key: value for key, value in named.items() if value is not None})
    return config.validate()


def _read_toml(path) -> dict:
    from agekit.config import ConfigError, tomllib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}.") from None


def _train(args) -> int:
    from agekit._io import DiskFull
    from agekit.training import distributed
    from agekit.training.trainer import train

    config = _train_config(args)
    out = Path(args.out)
    if not args.resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a training run (last.pt); add --resume to continue it, or pick another --out.")
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


def _eval(args) -> int:
    from agekit.training.trainer import load_data, load_trained, predict, prediction_metrics

    result = load_trained(args.checkpoint, device=args.device)
    config = result.config
    if args.data:
        config.data.manifest = args.data
    data = load_data(config)
    dataset = data.split(args.split)
    metrics = prediction_metrics(predict(result, dataset), dataset)
    print(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "faces": len(dataset), **metrics}))
    return 0


def _predict(args) -> int:
    import torch
    from PIL import UnidentifiedImageError

    from agekit.data.dataset import FaceDataset
    from agekit.data.images import ImageError
    from agekit.data.prepare import load_face
    from agekit.training.trainer import load_trained, predict

    result = load_trained(args.checkpoint, device=args.device)
    if result.config.method == "siamese" and result.gallery is None:
        raise UserError(f"{args.checkpoint} carries no kNN gallery, so the Siamese model cannot estimate ages.")
    size = result.config.data.image_size
    images = []
    for path in args.images:
        if Path(path).is_dir():
            raise UserError(f"Image {path!r} is a folder; pass image files.")
        if not Path(path).is_file():
            if Path(path).exists():
                raise UserError(f"Image {path!r} is not a regular file (a FIFO, device or socket).")
            raise FileNotFoundError(f"Image {path!r} does not exist.")
        try:
            images.append(torch.from_numpy(load_face(path, size).copy()))
        except (ImageError, UnidentifiedImageError, OSError) as error:
            raise UserError(f"Cannot read {path} as an image: {error}") from None
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


def _add_convert_commands(subparsers) -> None:
    convert = subparsers.add_parser("convert", help="turn models from other code bases into agekit checkpoints")
    convert_sub = convert.add_subparsers(dest="convert_command", required=True)
    authors = convert_sub.add_parser(
        "rapl-authors", help="a checkpoint released by the RAPL authors -> a checkpoint for agekit eval / predict")
    authors.add_argument("input", metavar="IN", help="their .pt/.pth (or .safetensors) model file")
    authors.add_argument("output", metavar="OUT", help="the agekit checkpoint to write")
    labels = authors.add_mutually_exclusive_group(required=True)
    labels.add_argument("--ages", nargs="+", metavar="AGES",
                        help="the model's age labels, increasing: numbers and ranges, e.g. 16-77 or 1,2,4-101")
    labels.add_argument("--ages-from", metavar="CSV",
                        help="a CSV with an 'age' column (their datalists/*.csv): its distinct ages")
    authors.set_defaults(handler=_convert_rapl_authors)


def _parse_ages(tokens) -> list[int]:
    """``["1,2", "4-6"]`` -> [1, 2, 4, 5, 6]."""
    ages = []
    for part in (p.strip() for token in tokens for p in token.split(",")):
        low, dash, high = part.partition("-")
        try:
            ages += list(range(int(low), int(high) + 1)) if dash else [int(part)] if part else []
        except ValueError:
            raise UserError(f"--ages takes whole numbers and ranges such as 16-77, got {part!r}.") from None
    return ages


def _ages_from_csv(path) -> list[int]:
    import csv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Age list {str(path)!r} does not exist.")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "age" not in (reader.fieldnames or []):
            raise UserError(f"{path} has no 'age' column (columns: {reader.fieldnames}).")
        try:
            return sorted({int(float(row["age"])) for row in reader})
        except ValueError as error:
            raise UserError(f"{path}: an 'age' value is not a number ({error}).") from None


def _convert_rapl_authors(args) -> int:
    from agekit.config import apply_overrides, preset
    from agekit.models.pretrained import RAPL_AUTHORS_IMAGE_SIZE, from_rapl_authors
    from agekit.normalization import SOURCE_NORMALIZATION
    from agekit.training.trainer import save_model_checkpoint

    ages = _parse_ages(args.ages) if args.ages else _ages_from_csv(args.ages_from)
    if not ages:
        raise UserError("No age labels given: pass --ages (e.g. --ages 16-77) or --ages-from CSV.")
    model = from_rapl_authors(args.input, ages)
    normalization = SOURCE_NORMALIZATION["RAPL authors"]
    config = apply_overrides(preset("gpu", "rapl"), {
        "rapl.variant": model.variant, "model.backbone": "ir50", "model.normalization": normalization,
        "data.image_size": RAPL_AUTHORS_IMAGE_SIZE,
    })
    note = f"Converted from the RAPL authors' checkpoint {Path(args.input).name} ({len(ages)} age labels)."
    path = save_model_checkpoint(model, args.output, config, normalization, [note])
    print(f"{path}: RAPL {model.variant}, IR50, {len(ages)} age labels {ages[0]}..{ages[-1]}, "
          f"{normalization} normalization, {RAPL_AUTHORS_IMAGE_SIZE} px")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agekit", description="Face-based age estimation: RAPL and a Siamese baseline.")
    from agekit import __version__

    parser.add_argument("--version", action="version", version=f"agekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(subparsers)
    _add_train_commands(subparsers)
    _add_convert_commands(subparsers)
    add_course_command(subparsers)
    add_grade_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from agekit._io import WriteError
    from agekit.training.trainer import TrainingDiverged

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (UserError, ValueError, TypeError, FileNotFoundError, PermissionError, TrainingDiverged,
            WriteError) as error:
        print(f"agekit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("agekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
