"""Face data sets labelled in annotation files: MORPH (CSV), MegaAge-Asian (list files), IMDB-Clean (CSVs).

Each parser reads the annotation rows and finds each row's image inside the
root (``find_inside``); a row that names no usable image is skipped with a
reason. Registered in :data:`agekit.data.formats.FORMATS`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from agekit.data.formats.common import (
    BAD_ANNOTATION,
    MISSING,
    SPLIT_CODES,
    DatasetError,
    Parsed,
    Record,
    Skip,
    _float,
    _gender_letter,
    _image_files,
    _read_csv,
    _relative,
    _whole_number,
    find_inside,
    read_text,
    resolve_inside,
)


def _find_morph_csv(root: Path) -> Path:
    if root.is_file():
        return root
    for pattern in ("*.csv", "**/*.csv"):
        found = []
        for path in sorted(root.glob(pattern)):
            if resolve_inside(root, path)[0] is None:
                continue
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
                header = {h.strip().lower() for h in next(csv.reader(handle), [])}
            if {"id_num", "age"} <= header and ({"photo", "picture_num"} & header):
                found.append(path)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listed = ", ".join(str(p) for p in found)
            raise DatasetError(f"Several MORPH annotation CSVs under {root}: {listed}. Pass one of them as --root.")
    raise DatasetError(
        f"No MORPH annotation CSV (columns id_num, picture_num, age, ...) under {root}. "
        "Pass the folder holding morph_2008_nonCommercial.csv, or the CSV itself."
    )


_MORPH_NAME = re.compile(r"^(?P<id>\d+)_(?P<picture>\d+)")


def parse_morph(root: Path) -> Parsed:
    """MORPH (Album 2): one CSV ``id_num, picture_num, dob, doa, race, gender, facial_hair, age, ..., photo``.

    The academic release's CSV has a ``photo`` column holding the image path
    relative to the CSV's folder (``Album2/000001_00M21.JPG``); that column is
    used when present. Without it (or when that file is missing) the image is
    found by its name, which starts with ``{id_num}_{picture_num}`` (zero padding
    ignored), e.g. ``000001_00M21.JPG`` or ``1_0.JPG``. Gender M/F; identity = id_num.
    """
    csv_path = _find_morph_csv(root)
    base = csv_path.parent
    top = root if root.is_dir() else base
    rows = _read_csv(csv_path)
    by_key = None  # {(id, picture): source}, built on first need

    def locate(row: dict[str, str]) -> tuple[str | None, str | None, str, str]:
        """(path as named, real path, "", "") of the row's image, or (None, None, reason, detail)."""
        nonlocal by_key
        photo = (row.get("photo") or "").strip().replace("\\", "/")
        if photo:
            named, real, reason, detail = find_inside(top, [base], photo)
            if real is not None:
                return str(named), real, "", ""
            if reason != MISSING:
                return None, None, reason, f"photo {detail}"
        person, picture = _whole_number(row.get("id_num", "")), _whole_number(row.get("picture_num", ""))
        if person is None or picture is None:
            return None, None, MISSING, ""
        if by_key is None:
            by_key = {}
            for rel, real in _image_files(base)[0]:
                match = _MORPH_NAME.match(Path(rel).stem)
                if match:
                    by_key.setdefault((int(match["id"]), int(match["picture"])), (str(base / rel), real))
        named, real = by_key.get((person, picture), (None, None))
        return named, real, "" if real else MISSING, ""

    records, skipped = [], []
    for line, row in enumerate(rows, start=2):
        label = (row.get("photo") or "").strip() or f"{csv_path.name}:{line}"
        person, age = _whole_number(row.get("id_num", "")), _whole_number(row.get("age", ""))
        if person is None or age is None:
            skipped.append(Skip(label, BAD_ANNOTATION, f"line {line}: id_num or age is not a whole number"))
            continue
        named, source, reason, detail = locate(row)
        if source is None:
            detail = detail or f"no image for id {person}, picture {row.get('picture_num')}"
            skipped.append(Skip(label, reason, f"line {line}: {detail}"))
            continue
        gender = _gender_letter(row.get("gender", ""))
        records.append(Record(path=_relative(named, top), source=source, age=age, gender=gender, identity=str(person)))
    return Parsed(records, skipped)


def _megaage_base(root: Path) -> Path:
    for base in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        if resolve_inside(root, base / "list" / "train_name.txt")[0] is not None:
            return base
    raise DatasetError(
        f"No list/train_name.txt under {root}; MegaAge-Asian needs train/, test/ and "
        "list/{train,test}_{name,age}.txt."
    )


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise DatasetError(f"{path} is missing; MegaAge-Asian needs list/{{train,test}}_{{name,age}}.txt.")
    lines = [line.strip() for line in read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def parse_megaage_asian(root: Path) -> Parsed:
    """MegaAge-Asian: ``train/``, ``test/`` and line-aligned ``list/{train,test}_{name,age}.txt``.

    The shipped split is train/test (codes 0 and 2). No gender, no identity (each
    image its own).
    """
    base = _megaage_base(root)
    records, skipped = [], []
    for part, code in (("train", 0), ("test", 2)):
        names = _read_lines(base / "list" / f"{part}_name.txt")
        ages = _read_lines(base / "list" / f"{part}_age.txt")
        if len(names) != len(ages):
            raise DatasetError(
                f"list/{part}_name.txt has {len(names)} lines but list/{part}_age.txt has {len(ages)}; "
                "they must be line-aligned."
            )
        for line, (name, age_text) in enumerate(zip(names, ages), start=1):
            rel = _relative(str(base / part / name), root)
            age = _whole_number(age_text)
            if age is None:
                skipped.append(Skip(rel, BAD_ANNOTATION, f"list/{part}_age.txt line {line}: {age_text!r}"))
                continue
            _, source, reason, detail = find_inside(root, [base / part], name)
            if source is None:
                skipped.append(Skip(rel, reason, f"listed in list/{part}_name.txt line {line}: {detail}"))
            else:
                records.append(Record(path=rel, source=source, age=age, identity=rel, split=code))
    return Parsed(records, skipped)


_IMDB_CSV = re.compile(r"^imdb_(?P<split>train|valid|test)(?P<rest>.*)\.csv$")


_IMDB_PERSON = re.compile(r"nm\d+")


def _imdb_csvs(root: Path) -> dict[str, Path]:
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("imdb_*.csv")):
        match = _IMDB_CSV.match(path.name)
        if match and resolve_inside(root, path)[0] is not None:
            found.setdefault(match["split"], []).append(path)
    if not found:
        raise DatasetError(f"No imdb_{{train,valid,test}}*.csv under {root}; IMDB-Clean ships them in csvs/.")
    chosen = {}
    for split, paths in found.items():
        preferred = [p for p in paths if p.name == f"imdb_{split}_new.csv"]
        if len(paths) > 1 and len(preferred) != 1:
            raise DatasetError(f"Several CSVs for the {split} split: {', '.join(map(str, paths))}; keep one.")
        chosen[split] = preferred[0] if preferred else paths[0]
    return chosen


def parse_imdb_clean(root: Path) -> Parsed:
    """IMDB-Clean: ``imdb_{train,valid,test}*.csv`` with ``filename, age, gender, x_min, y_min, x_max, y_max``.

    Gender M/F; the face box is kept for cropping; identity is the IMDb person
    id ``nm...`` in the file name. Images are looked up under ``data/imdb/`` (the
    release's layout), then the root, then the CSV's folder. The CSV names give
    the predefined split (``imdb_*_new.csv`` wins over other variants).
    """
    records, skipped = [], []
    for split, csv_path in sorted(_imdb_csvs(root).items()):
        bases = [csv_path.parent.parent / "data" / "imdb", root / "data" / "imdb", root / "imdb", root, csv_path.parent]
        for line, row in enumerate(_read_csv(csv_path), start=2):
            name = (row.get("filename") or "").strip().replace("\\", "/")
            label = name or f"{csv_path.name}:{line}"
            age = _whole_number(row.get("age", ""))
            box = [_float(row.get(k)) for k in ("x_min", "y_min", "x_max", "y_max")]
            person = _IMDB_PERSON.search(name)
            if age is None or person is None or None in box or box[2] <= box[0] or box[3] <= box[1]:
                skipped.append(Skip(label, BAD_ANNOTATION, f"{csv_path.name} line {line}: age, nm id or box unusable"))
                continue
            named, source, reason, detail = find_inside(root, bases, name)
            if source is None:
                skipped.append(Skip(label, reason, f"{csv_path.name} line {line}: {detail}"))
                continue
            records.append(
                Record(
                    path=_relative(str(named), root), source=source, age=age,
                    gender=_gender_letter(row.get("gender", "")), identity=person.group(0),
                    split=SPLIT_CODES[split], box=tuple(box),
                )
            )
    return Parsed(records, skipped)
