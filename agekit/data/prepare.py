"""Prepare a real face data set: parse -> check, decode, resize -> split -> manifest + image store.

``prepare("agedb", root, out)`` reads the folder a user already has (nothing is
downloaded) and writes, in ``out``:

* ``images.u8`` + ``images.json``: every usable face as uint8 ``[N, 3, S, S]`` in
  one memory-mapped file (``agekit.data.store``);
* ``manifest.csv``: one row per image, ``index,path,age,gender,identity,split``
  (``index`` = row in the store; gender 0 male, 1 female, empty when unknown);
* ``skipped.csv``: ``path,reason,detail`` for every file that was left out;
* ``prepare.json``: what was done (format, size, split, seed, counts).

Faces are made square without cutting anything: a square of the longer side is
centred on the image (or on the annotated face box), the area outside the photo
is filled with black, and the square is resized to ``S x S`` (bilinear, with
Pillow's antialiasing when shrinking).

Every file is written under a temporary name first and renamed into place at the
end, ``manifest.csv`` last (``agekit._io.staged_files``); an older manifest is removed just before, so a run
that stops early (an error, Ctrl-C, a full disk) never leaves a manifest next to
a store it does not describe, and removes its temporary files. A run holds
``out``'s lock (``agekit._io.folder_lock``): a second preparation into the same
folder is refused, and temporary files that killed runs left there are deleted.
Free space is checked before decoding.

``load_prepared(manifest)`` (``agekit.data.prepared``, also importable from
here) reads the result back for training.

Taught in ``notebooks/10_real_datasets.ipynb``.
"""

from __future__ import annotations

import collections
import csv
import datetime
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from agekit import _checks
from agekit._io import DiskFull, folder_lock, remove_stale_temps, staged_files
from agekit.data.formats import (
    AGE_RANGE,
    DUPLICATE,
    NO_METADATA,
    UNREADABLE,
    DatasetError,
    Record,
    Skip,
    get_format,
    shown_name,
)
from agekit.data.images import ImageError, open_rgb
from agekit.data.prepared import (  # noqa: F401  (the reading half, re-exported for existing imports)
    INFO_NAME,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    SKIPPED_NAME,
    PreparedData,
    load_prepared,
)
from agekit.data.splits import SPLIT_NAMES, find_leakage, identity_split
from agekit.data.store import DATA_NAME, META_NAME, StoreWriter

SPLIT_MODES = ("identity", "rank", "predefined")
DEFAULT_AGE_RANGE = (0, 120)
VAL_FRACTION = 0.1  # predefined splits without a val part: this share of train, at random (seeded)
CACD_RANK_SPLIT = ((2, 1), (5, 2))  # rank <= 2 -> val, rank <= 5 -> test, else train


# --- one face: decode, square, resize --------------------------------------------------


def square_region(width: int, height: int, box: Sequence[float] | None = None) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the square to cut: side = the longer side, centred.

    Without a box the square is centred on the whole image (black pads the short
    side, ``(side - width) // 2`` pixels on the left/top); with a face box
    ``(x_min, y_min, x_max, y_max)`` it is centred on the box.

    Taught in ``notebooks/10_real_datasets.ipynb``.
    """
    if box is None:
        side = max(width, height)
        left, top = -((side - width) // 2), -((side - height) // 2)
    else:
        x_min, y_min, x_max, y_max = box
        side = max(1, round(max(x_max - x_min, y_max - y_min)))
        left, top = round((x_min + x_max - side) / 2), round((y_min + y_max - side) / 2)
    return left, top, left + side, top + side


def load_face(source, image_size: int, box: Sequence[float] | None = None) -> np.ndarray:
    """Decode an image file (path or binary file object) to uint8 [3, S, S], square and resized.

    Taught in ``notebooks/10_real_datasets.ipynb``.
    """
    image = open_rgb(source)  # as it looks: upright, every mode as RGB, first frame; ImageError if unreadable
    region = square_region(image.width, image.height, box)
    if region != (0, 0, image.width, image.height):
        image = image.crop(region)  # Pillow fills the part outside the photo with black
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


def _read_regular(path: str) -> bytes:
    """The bytes of a regular file; a FIFO, device or socket is refused without blocking on it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)")
        return handle.read()


def _decode(record: Record, image_size: int) -> tuple[str | None, np.ndarray | None, str]:
    """(content digest, image [3, S, S] or None, error message or '') for one record."""
    try:
        data = _read_regular(record.source)
    except OSError as error:
        return None, None, f"cannot read the file: {error.strerror or error}"
    digest = hashlib.blake2b(data, digest_size=16)
    if record.box is not None:
        digest.update(repr(record.box).encode())
    try:
        return digest.hexdigest(), load_face(io.BytesIO(data), image_size, record.box), ""
    except ImageError as error:
        return digest.hexdigest(), None, str(error)


def _decode_all(records, writer: StoreWriter, skipped: list, image_size: int, workers: int, progress: bool):
    """Decode in threads (Pillow releases the GIL while decoding), store rows in order; return kept records.

    A file whose bytes (and face box) equal an earlier kept file's is a duplicate.
    """
    kept, seen = [], {}
    window = 16 * workers  # decodes in flight ahead of the record being stored
    upcoming = iter(records)
    pending = collections.deque()
    pool = ThreadPoolExecutor(max_workers=workers)
    with tqdm(total=len(records), desc="decoding", unit="img", disable=not progress, file=sys.stderr) as bar:
        try:
            for record in records:
                for following in upcoming:
                    pending.append(pool.submit(_decode, following, image_size))
                    if len(pending) >= window:
                        break
                digest, image, error = pending.popleft().result()
                if error:
                    skipped.append(Skip(record.path, UNREADABLE, error))
                elif digest in seen:
                    skipped.append(Skip(record.path, DUPLICATE, f"same image as {seen[digest]}"))
                else:
                    seen[digest] = record.path
                    writer.write(len(kept), image)
                    kept.append(record)
                bar.update()
        finally:  # on Ctrl-C or an error, do not wait for decodes still in flight
            pool.shutdown(wait=False, cancel_futures=True)
    return kept


# --- splits ------------------------------------------------------------------------------


def _assign_splits(records: list[Record], mode: str, seed: int) -> torch.Tensor:
    """Split codes int64 [N] (0 train, 1 val, 2 test) for ``mode``; see ``prepare``."""
    if mode == "identity":
        ages = torch.tensor([r.age for r in records], dtype=torch.int64)
        return identity_split(ages, [r.identity for r in records], fractions=(0.6, 0.2, 0.2), seed=seed)
    if mode == "rank":
        ranks = torch.tensor([r.rank for r in records], dtype=torch.int64)
        codes = torch.zeros_like(ranks)
        for highest_rank, code in reversed(CACD_RANK_SPLIT):
            codes[ranks <= highest_rank] = code
        return codes
    codes = torch.tensor([r.split for r in records], dtype=torch.int64)
    if not bool((codes == 1).any()):
        # the data set ships train/test only: carve val out of train at random (seeded)
        train = torch.nonzero(codes == 0).flatten()
        generator = torch.Generator().manual_seed(int(seed))
        chosen = train[torch.randperm(len(train), generator=generator)[: round(VAL_FRACTION * len(train))]]
        codes[chosen] = 1
    return codes


def _warn_leakage(identities: list[str], codes: torch.Tensor) -> dict[str, list[str]]:
    leaks = find_leakage(identities, codes)
    if leaks:
        shown = "; ".join(f"{name} ({', '.join(splits)})" for name, splits in list(leaks.items())[:10])
        more = f" and {len(leaks) - 10} more" if len(leaks) > 10 else ""
        warnings.warn(
            f"{len(leaks)} identities appear in more than one split: {shown}{more}. Test scores will be "
            "optimistic; use --split identity for an identity-disjoint split.",
            stacklevel=3,
        )
    return leaks


# --- writing -------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows, errors: str = "strict"):
    """A writer of ``header`` and ``rows`` as UTF-8 CSV into a binary file (for ``StagedFiles.write``)."""

    def write(handle) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", errors=errors, newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()  # the caller closes the file

    return write


def _manifest_rows(records: list[Record], codes: torch.Tensor):
    for index, (record, code) in enumerate(zip(records, codes.tolist())):
        gender = "" if record.gender < 0 else record.gender
        yield index, record.path, record.age, gender, record.identity, SPLIT_NAMES[code]


@dataclass
class PrepareSummary:
    """What ``prepare`` did: where, how many images per split, how many skipped per reason."""

    out: Path
    images: int
    splits: dict[str, int]
    skipped: dict[str, int]
    leakage: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        splits = ", ".join(f"{name} {count}" for name, count in self.splits.items())
        text = f"prepared {self.images} images ({splits}) in {self.out}"
        if self.skipped:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
            text += f"\nskipped {sum(self.skipped.values())} files: {reasons} (see {self.out / SKIPPED_NAME})"
        return text


def _check_root(root: Path, spec) -> None:
    if not root.exists():
        raise DatasetError(f"root {str(root)!r} does not exist; pass the folder that holds the data set.")
    if not root.is_dir() and not (spec.file_root and root.is_file()):
        what = "a file" if root.is_file() else "not a folder"
        raise DatasetError(f"root {str(root)!r} is {what}; pass the folder that holds the {spec.name} images.")
    if not os.access(root, os.R_OK) or (root.is_dir() and not os.access(root, os.X_OK)):
        raise DatasetError(f"root {str(root)!r} is not readable; check its permissions.")


def prepare(
    format: str,
    root,
    out,
    image_size: int = 112,
    split: str = "identity",
    seed: int = 0,
    age_range: tuple[int, int] = DEFAULT_AGE_RANGE,
    workers: int | None = None,
    progress: bool = True,
    verbose: bool = True,
    source: str | None = None,
) -> PrepareSummary:
    """Turn the data set at ``root`` into a manifest and an image store in ``out``.

    ``source``, when given, is what ``prepare.json`` records as the data's origin instead of
    ``root`` (for data written to a temporary folder, e.g. by ``agekit data synth``).

    format: a name in ``agekit.data.formats.FORMATS``; image_size: S of the stored
    [N, 3, S, S] faces; split: ``identity`` (identity-disjoint, age-stratified
    60/20/20 via ``identity_split``), ``rank`` (CACD: celebrity rank 1-2 val,
    3-5 test, the rest train) or ``predefined`` (the data set's own split; when
    it has no val part, ``VAL_FRACTION`` of train is drawn at random with
    ``seed``); age_range: inclusive whole years kept. Files that cannot be used
    are listed in ``skipped.csv`` and never stop the run; an empty result raises
    ``DatasetError``.

    Taught in ``notebooks/10_real_datasets.ipynb``.
    """
    spec = get_format(format)
    _checks.choice("split", split, SPLIT_MODES)
    if split not in spec.split_modes:
        raise ValueError(
            f"split {split!r} does not apply to the {format} format; it supports {list(spec.split_modes)}."
        )
    image_size = _checks.positive_int("image_size", image_size)
    low, high = _checks.age_range("age_range", age_range)
    workers = _checks.positive_int("workers", workers if workers is not None else min(8, os.cpu_count() or 1))
    root, out = Path(root), Path(out)
    _check_root(root, spec)

    try:
        records, skipped = spec.parse(root)
    except PermissionError as error:
        raise DatasetError(f"cannot read {error.filename}: permission denied.") from None
    skipped = list(skipped)
    in_range = []
    for record in records:
        if low <= record.age <= high:
            in_range.append(record)
        else:
            skipped.append(Skip(record.path, AGE_RANGE, f"age {record.age} outside [{low}, {high}]"))
    records = in_range
    if split == "rank":
        if records and all(r.rank < 0 for r in records):
            raise DatasetError(
                f"split 'rank' needs celebrity2000_meta.mat (with the celebrities' ranks) in {root} or its parent."
            )
        skipped += [Skip(r.path, NO_METADATA, f"{r.identity!r} has no rank in the .mat") for r in records if r.rank < 0]
        records = [r for r in records if r.rank >= 0]
    if not records:
        raise DatasetError(_empty_message(format, root, skipped))

    with folder_lock(out, "preparation"):
        remove_stale_temps(out, (DATA_NAME, META_NAME, MANIFEST_NAME, SKIPPED_NAME, INFO_NAME))
        origin = source if source is not None else shown_name(str(root.resolve()))
        summary = _prepare_locked(format, root, out, records, skipped, image_size, split, seed, (low, high), workers,
                                  progress, origin)
    if verbose:
        print(summary.describe(), file=sys.stderr)
    return summary


def _check_space(out: Path, needed: int, images: int, image_size: int) -> None:
    free = shutil.disk_usage(out).free
    if free < needed:
        raise DiskFull(
            errno.ENOSPC, f"{out} has {free / 2**20:.1f} MiB free but the image store of {images} faces at "
            f"{image_size} px needs up to {needed / 2**20:.1f} MiB; free some space or choose another --out"
        )


def _prepare_locked(format, root, out, records, skipped, image_size, split, seed, age_range, workers, progress,
                    origin):
    """The writing half of ``prepare``, run while holding ``out``'s lock."""
    low, high = age_range
    needed = len(records) * 3 * image_size * image_size + 2**20 + 200 * len(records)  # store, JSON, CSV rows
    _check_space(out, needed, len(records), image_size)
    with staged_files(out, needed) as files:
        writer = StoreWriter(out, len(records), image_size, files)
        kept = _decode_all(records, writer, skipped, image_size, workers, progress)
        if not kept:
            raise DatasetError(_empty_message(format, root, skipped))
        codes = _assign_splits(kept, split, seed)
        leaks = _warn_leakage([r.identity for r in kept], codes)
        writer.finish(len(kept))

        skipped.sort(key=lambda s: (s.path, s.reason))
        counts = dict(collections.Counter(s.reason for s in skipped))
        summary = PrepareSummary(
            out, len(kept), {name: int((codes == i).sum()) for i, name in enumerate(SPLIT_NAMES)}, counts, leaks
        )
        files.write(SKIPPED_NAME, _csv(("path", "reason", "detail"), skipped, errors="backslashreplace"))
        info = {
            "format": format, "root": origin, "image_size": image_size, "split": split,
            "seed": seed, "age_range": [low, high], "images": len(kept), "splits": summary.splits,
            "skipped": counts,
            "square": "longer side, centred on the image or face box, black padding; bilinear resize",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        files.write_text(INFO_NAME, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        files.write(MANIFEST_NAME, _csv(MANIFEST_COLUMNS, _manifest_rows(kept, codes)))
        files.publish(remove_first=(MANIFEST_NAME,))  # the old manifest goes first, the new one comes last
    return summary


def _empty_message(format: str, root: Path, skipped: list[Skip]) -> str:
    counts = collections.Counter(s.reason for s in skipped)
    if not counts:
        return f"No {format} images found under {root}; check --root and --format."
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
    example = skipped[0]
    return (
        f"No usable {format} images under {root}: all {len(skipped)} files were skipped ({reasons}); "
        f"e.g. {example.path}: {example.reason} {example.detail}".rstrip()
    )
