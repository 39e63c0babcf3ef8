"""How each real face data set names its files and labels, one small parser per format.

Every parser takes the folder the user already has and returns a ``Parsed``:
the ``Record`` of each usable image (where it is, age, gender, identity, and the
data set's own split or rank when it ships one) and a ``Skip`` for each file or
annotation row it could not use, with the reason. Parsers only read names and
annotation files; decoding the pixels is the job of ``agekit.data.prepare``.

Conventions shared by all formats:

* ``gender``: 0 male, 1 female, -1 unknown (the order of the RAPL paper);
* ``identity``: a string that is the same for every photo of one person; data
  sets without identities use the photo itself (each image its own person);
* ``path``: the image's path relative to the root, with ``/`` separators.

Nothing outside the root is read. Every image path, whether found by walking
the folder or written in a data set's CSV or list file, goes through
``resolve_inside``: with every symbolic link followed it must name a regular
file inside the root, else it is skipped (``outside root``, ``not a regular
file``). Links to folders are not followed while walking. A file name that is
not valid UTF-8 is skipped (``name not UTF-8``) before anything is decoded.

Taught in ``notebooks/10_real_datasets.ipynb``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# reasons a file is skipped; the report counts them
UNPARSEABLE = "unparseable name"
BAD_ANNOTATION = "bad annotation"
MISSING = "missing file"
UNREADABLE = "unreadable image"
AGE_RANGE = "age out of range"
DUPLICATE = "duplicate"
NO_METADATA = "not in metadata"
OUTSIDE_ROOT = "outside root"
NOT_REGULAR = "not a regular file"
BAD_NAME = "name not UTF-8"

SPLIT_CODES = {"train": 0, "val": 1, "valid": 1, "test": 2}


class DatasetError(ValueError):
    """The data set as a whole cannot be read (missing root, missing list files, ...)."""


@dataclass(frozen=True)
class Record:
    """One usable image. ``split`` is the data set's own split code (-1 none), ``rank`` CACD's."""

    path: str
    source: str
    age: int
    gender: int = -1
    identity: str = ""
    split: int = -1
    rank: int = -1
    box: tuple[float, float, float, float] | None = None


class Skip(NamedTuple):
    """A file or annotation row that was left out, and why."""

    path: str
    reason: str
    detail: str = ""


class Parsed(NamedTuple):
    records: list[Record]
    skipped: list[Skip]


@dataclass(frozen=True)
class FormatSpec:
    """A data set format: its parser, the split modes it supports and a one-line layout."""

    name: str
    parse: Callable[[Path], Parsed]
    split_modes: tuple[str, ...]
    has_gender: bool
    layout: str
    file_root: bool = False  # the root may be a file (MORPH: its CSV) instead of a folder


# --- small shared helpers ---------------------------------------------------------------


def _person(name: str) -> str:
    """A person's name as a stable identity: NFC Unicode (macOS stores NFD), outer spaces trimmed."""
    return unicodedata.normalize("NFC", name).strip()


def shown_name(name: str) -> str:
    """A path for reports: bytes that are not UTF-8 (kept by Python as surrogates) shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resolve_inside(root, path) -> tuple[str | None, str, str]:
    """Where ``path`` may be read: ``(real path, "", "")``, or ``(None, reason, detail)`` when it must not be.

    ``path`` (absolute, or relative to the working folder) is followed through
    every symbolic link; it must end inside ``root`` (itself resolved) and be a
    regular file. ``../`` escapes, absolute paths elsewhere and links out of the
    root give ``OUTSIDE_ROOT``; FIFOs, devices, sockets and folders give
    ``NOT_REGULAR``; a path to nothing gives ``MISSING``.
    """
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    try:
        inside = os.path.commonpath([real_root, real]) == real_root
    except ValueError:  # another drive (Windows)
        inside = False
    if not inside:
        return None, OUTSIDE_ROOT, f"resolves to {shown_name(real)}, outside {shown_name(real_root)}"
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return None, MISSING, "no such file"
    if not stat.S_ISREG(mode):
        return None, NOT_REGULAR, "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
    return real, "", ""


def find_inside(root: Path, bases: Sequence[Path], name: str) -> tuple[Path | None, str | None, str, str]:
    """Look up a path read from an annotation file: ``(base / name, real path, "", "")`` for the first base
    where ``resolve_inside`` accepts it, else ``(None, None, reason, detail)``.

    Every format that reads image paths from a CSV or list file calls this, so no
    such path is read outside ``root``. Bases outside the root are ignored; the
    reason is ``MISSING`` unless some candidate exists but is refused.
    """
    refused = None
    for base in dict.fromkeys(bases):
        if resolve_inside(root, base)[1] == OUTSIDE_ROOT:
            continue
        real, reason, detail = resolve_inside(root, base / name)
        if real is not None:
            return base / name, real, "", ""
        if reason != MISSING and refused is None:
            refused = (reason, f"{name!r} {detail}")
    if refused is None and Path(name).is_absolute():
        refused = (OUTSIDE_ROOT, f"{name!r} is an absolute path")
    return (None, None, *(refused or (MISSING, "no such file")))


def _image_files(root: Path) -> tuple[list[tuple[str, str]], list[Skip]]:
    """(relative posix path, real path) of every usable image under ``root``, sorted, and the files skipped.

    Links to folders are not followed (one pointing out of the root is reported).
    """
    found, skipped = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        real_folder = os.path.realpath(folder)  # the walk follows no links below the root, so this stays inside
        for name in dirs:
            link = os.path.join(folder, name)
            if os.path.islink(link) and resolve_inside(root, link)[1] == OUTSIDE_ROOT:
                rel = Path(os.path.relpath(link, root)).as_posix()
                skipped.append(Skip(shown_name(rel), OUTSIDE_ROOT, "a link to a folder outside the root"))
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES):
                link = os.path.join(folder, name)
                rel = Path(os.path.relpath(link, root)).as_posix()
                if not _utf8(rel):
                    skipped.append(Skip(shown_name(rel), BAD_NAME, "rename it to valid UTF-8 to keep it"))
                    continue
                try:
                    mode = os.lstat(link).st_mode
                except OSError:
                    continue  # removed while walking
                if stat.S_ISREG(mode):  # the common case, without resolving every path again
                    found.append((rel, os.path.join(real_folder, name)))
                    continue
                source, reason, detail = resolve_inside(root, link)
                if source is None:
                    skipped.append(Skip(rel, reason, detail))
                else:
                    found.append((rel, source))
    found.sort()
    return found, skipped


def _from_file_names(root: Path, parse_name: Callable[[str], dict | None], layout: str) -> Parsed:
    """Parse formats whose labels live in the file path; ``parse_name(rel)`` gives Record fields or None."""
    files, skipped = _image_files(root)
    records = []
    for rel, source in files:
        fields = parse_name(rel)
        if fields is None:
            skipped.append(Skip(rel, UNPARSEABLE, f"expected {layout}"))
        else:
            records.append(Record(path=rel, source=source, **fields))
    return Parsed(records, skipped)


def _float(text) -> float | None:
    """'3.5' -> 3.5; empty, NaN, infinite or not a number -> None."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _whole_number(text) -> int | None:
    """'38', '38.0' -> 38; anything else (empty, NaN, 38.5, 'abc') -> None."""
    value = _float(text)
    return int(value) if value is not None and value.is_integer() else None


def _gender_letter(text) -> int:
    """'M'/'male' -> 0, 'F'/'female' -> 1, anything else -> -1 (unknown)."""
    value = str(text).strip().lower()
    return {"m": 0, "male": 0, "f": 1, "female": 1}.get(value, -1)


def read_text(path: Path) -> str:
    """An annotation file or manifest as text: it must be a regular file in UTF-8 (a BOM is fine)."""
    if not path.is_file():
        raise DatasetError(f"{path} is not a regular file; pass the data set's own annotation file.")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8) and run again."
        ) from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV as dicts with lower-case, trimmed column names (a UTF-8 BOM is fine)."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if reader.fieldnames is None:
        raise DatasetError(f"{path} is empty; expected a header row.")
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
    return list(reader)


def _relative(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


# --- file-name formats ------------------------------------------------------------------

_AGEDB = re.compile(r"^(?P<id>\d+)_(?P<name>.+)_(?P<age>\d+)_(?P<gender>[mfMF])$")


def parse_agedb(root: Path) -> Parsed:
    """AgeDB: ``{image_id}_{Name}_{age}_{m|f}.jpg``.

    The leading number counts images, not people; the identity is the name, read
    as everything between the image id (from the left) and age and gender (from
    the right), so names with spaces, underscores or accents parse.
    """

    def parse(rel: str) -> dict | None:
        match = _AGEDB.match(Path(rel).stem)
        if match is None or not _person(match["name"]):
            return None
        gender = 0 if match["gender"].lower() == "m" else 1
        return {"age": int(match["age"]), "gender": gender, "identity": _person(match["name"])}

    return _from_file_names(root, parse, "{image_id}_{Name}_{age}_{m|f}.jpg")


_AFAD_FILE = re.compile(r"^(?P<person>\d+)-(?P<k>\d+)$")
_AFAD_GENDER = {"111": 0, "112": 1}


def parse_afad(root: Path) -> Parsed:
    """AFAD-Full: ``<age>/<111 male | 112 female>/<person_id>-<k>.jpg``; identity = person id."""

    def parse(rel: str) -> dict | None:
        parts = rel.split("/")
        if len(parts) < 3 or not parts[-3].isdigit() or parts[-2] not in _AFAD_GENDER:
            return None
        match = _AFAD_FILE.match(Path(parts[-1]).stem)
        if match is None:
            return None
        return {"age": int(parts[-3]), "gender": _AFAD_GENDER[parts[-2]], "identity": match["person"]}

    return _from_file_names(root, parse, "<age>/<111|112>/<person_id>-<k>.jpg")


_CACD = re.compile(r"^(?P<age>\d+)_(?P<name>.+)_(?P<counter>\d+)$")
CACD_META = "celebrity2000_meta.mat"


def _cacd_ranks(root: Path) -> dict[str, int] | None:
    """{celebrity name: rank} from ``celebrity2000_meta.mat`` next to (or above) the images, if present."""
    candidates = [root / CACD_META, root.parent / CACD_META]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    try:
        import scipy.io
    except ImportError:
        raise DatasetError(
            f"Reading {path.name} needs scipy (it comes with scikit-learn): pip install scipy."
        ) from None
    try:
        meta = scipy.io.loadmat(path, squeeze_me=True)
    except NotImplementedError:
        raise DatasetError(
            f"{path} is a MATLAB v7.3 (HDF5) file; use the small celebrity2000_meta.mat of the CACD release."
        ) from None
    except Exception as error:  # scipy raises several kinds for a damaged file
        raise DatasetError(f"Cannot read {path}: {error}") from None
    if "celebrityData" not in meta:
        found = sorted(k for k in meta if not k.startswith("__"))
        raise DatasetError(f"{path} has no 'celebrityData' struct (found {found}).")
    data = meta["celebrityData"]
    try:
        names = [str(n) for n in np.atleast_1d(data["name"].item())]
        ranks = [int(r) for r in np.atleast_1d(data["rank"].item())]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path}: celebrityData needs fields 'name' and 'rank' ({error}).") from None
    return {_cacd_key(name): rank for name, rank in zip(names, ranks)}


def _cacd_key(name: str) -> str:
    """Names match whether written with spaces or underscores."""
    return _person(name).replace(" ", "_").casefold()


def parse_cacd(root: Path) -> Parsed:
    """CACD: ``<age>_<Name_Parts>_<nnnn>.jpg``; age first, counter last, name between.

    Names may hold further ``_`` and ``.`` (``45_Harry_Connick_Jr._0002.jpg``).
    No gender. When ``celebrity2000_meta.mat`` is present, each record gets the
    celebrity's rank (used by the ``rank`` split); names not in it keep rank -1.
    """
    ranks = _cacd_ranks(root)

    def parse(rel: str) -> dict | None:
        match = _CACD.match(Path(rel).stem)
        if match is None or not _person(match["name"]):
            return None
        name = _person(match["name"])
        rank = -1 if ranks is None else ranks.get(_cacd_key(name), -1)
        return {"age": int(match["age"]), "identity": name, "rank": rank}

    return _from_file_names(root, parse, "<age>_<Name>_<nnnn>.jpg")


_UTK = re.compile(r"^(?P<age>\d+)_(?P<gender>[01])_(?P<race>[0-4])_(?P<time>\d+)$")
_UTK_CHIP = ".chip.jpg"


def parse_utkface(root: Path) -> Parsed:
    """UTKFace: ``[age]_[gender]_[race]_[datetime].jpg`` (or ``.jpg.chip.jpg``).

    Names with a missing race or an empty gender (a few exist in the release)
    are skipped. There are no identities: each photo is its own, and the aligned
    ``.chip.jpg`` and the original of one photo share it, so they never straddle
    splits.
    """

    def parse(rel: str) -> dict | None:
        name = rel.rsplit("/", 1)[-1]
        if name.lower().endswith(_UTK_CHIP):
            name = name[: -len(_UTK_CHIP)]
        stem = Path(name).stem
        match = _UTK.match(stem)
        if match is None:
            return None
        return {"age": int(match["age"]), "gender": int(match["gender"]), "identity": stem}

    return _from_file_names(root, parse, "[age]_[gender 0|1]_[race 0-4]_[datetime].jpg")


# --- annotation-file formats ------------------------------------------------------------


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


# --- the registry -----------------------------------------------------------------------

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("agedb", parse_agedb, ("identity",), True, "{image_id}_{Name}_{age}_{m|f}.jpg"),
        FormatSpec("afad", parse_afad, ("identity",), True, "<age>/<111|112>/<person_id>-<k>.jpg"),
        FormatSpec(
            "cacd", parse_cacd, ("identity", "rank"), False, "<age>_<Name>_<nnnn>.jpg [+ celebrity2000_meta.mat]"
        ),
        FormatSpec("utkface", parse_utkface, ("identity",), True, "[age]_[gender]_[race]_[datetime].jpg[.chip.jpg]"),
        FormatSpec(
            "morph", parse_morph, ("identity",), True, "CSV id_num,picture_num,...,gender,...,age[,photo] + images",
            file_root=True,
        ),
        FormatSpec(
            "megaage_asian", parse_megaage_asian, ("identity", "predefined"), False,
            "train/, test/, list/{train,test}_{name,age}.txt",
        ),
        FormatSpec(
            "imdb_clean", parse_imdb_clean, ("identity", "predefined"), True,
            "csvs/imdb_{train,valid,test}_new.csv + data/imdb/<filename>",
        ),
    )
}


def get_format(name: str) -> FormatSpec:
    """The FormatSpec called ``name``, or a ValueError listing the known formats."""
    if name not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {name!r}.")
    return FORMATS[name]
