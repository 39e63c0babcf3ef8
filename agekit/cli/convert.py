"""``agekit convert rapl-authors``: the RAPL authors' released models as agekit checkpoints."""

from __future__ import annotations

from pathlib import Path

from agekit.cli._parser import UserError, add_command

CONVERT_EXAMPLES = (
    "agekit convert rapl-authors agedb.pt runs/authors_agedb.pt --ages-from datalists/agedb.csv",
    "agekit convert rapl-authors afad.pth runs/authors_afad.pt --ages 15-72",
)


def add_convert_commands(subparsers) -> None:
    """Register ``agekit convert rapl-authors``."""
    convert = add_command(subparsers, "convert", "turn models from other code bases into agekit checkpoints")
    convert_sub = convert.add_subparsers(dest="convert_command", required=True, metavar="FORMAT")
    authors = add_command(convert_sub, "rapl-authors",
                          "a checkpoint released by the RAPL authors -> a checkpoint for agekit eval / predict",
                          CONVERT_EXAMPLES)
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
