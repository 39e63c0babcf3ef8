"""What every face data set format shares: records, skip reasons, and reading paths, names and CSV files safely.

A parser returns a :class:`Parsed`: a :class:`Record` for each usable image and
a :class:`Skip` (with one of the reasons below) for each file or row it could
not use. :func:`resolve_inside` and :func:`find_inside` keep every path inside
the data set's root; :func:`read_text` reads an annotation file whatever its
encoding. The conventions are in :mod:`agekit.data.formats`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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
