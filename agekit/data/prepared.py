"""A prepared data set on disk: its file names and columns, and reading it back for training.

``agekit.data.prepare`` writes a folder of ``manifest.csv`` (one row per image,
``index,path,age,gender,identity,split``), the image store it indexes
(``agekit.data.store``), ``skipped.csv`` and ``prepare.json``;
:func:`load_prepared` reads the manifest and the store back as
:class:`PreparedData`, checking that they match.

Taught in ``notebooks/10_real_datasets.ipynb``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agekit import _checks
from agekit.data.dataset import FaceDataset, Labelled
from agekit.data.formats import read_text
from agekit.data.splits import SPLIT_NAMES
from agekit.data.store import ImageStore

MANIFEST_NAME = "manifest.csv"
SKIPPED_NAME = "skipped.csv"
INFO_NAME = "prepare.json"
MANIFEST_COLUMNS = ("index", "path", "age", "gender", "identity", "split")


@dataclass
class PreparedData(Labelled):
    """A prepared data set, aligned with the manifest rows.

    store: ImageStore, row i = manifest row i (uint8 [N, 3, S, S]); ages int64 [N];
    genders int64 [N] (-1 unknown); identities: N strings; split: int64 [N]
    codes (0 train, 1 val, 2 test); paths: N source paths.

    Taught in ``notebooks/10_real_datasets.ipynb``.
    """

    store: ImageStore
    ages: torch.Tensor
    genders: torch.Tensor
    identities: list[str]
    split: torch.Tensor
    paths: list[str]

    @property
    def image_size(self) -> int:
        return self.store.image_size

    def identity_codes(self) -> torch.Tensor:
        """int64 [N]: identities as numbers 0..k-1 in order of first appearance."""
        table: dict[str, int] = {}
        return torch.tensor([table.setdefault(i, len(table)) for i in self.identities], dtype=torch.int64)

    def subset(self, split_name: str) -> FaceDataset:
        """The ``train``, ``val`` or ``test`` part as a FaceDataset whose images stay in the store.

        Taught in ``notebooks/10_real_datasets.ipynb``.
        """
        _checks.choice("split_name", split_name, SPLIT_NAMES)
        rows = torch.nonzero(self.split == SPLIT_NAMES.index(split_name)).flatten()
        if len(rows) == 0:
            raise ValueError(f"The {split_name!r} split of this data set is empty.")
        codes = self.identity_codes()[rows]
        return FaceDataset(self.store.take(rows), self.ages[rows], self.genders[rows], codes)


def load_prepared(manifest_path) -> PreparedData:
    """Read ``manifest.csv`` (or its folder) and the image store next to it.

    Taught in ``notebooks/10_real_datasets.ipynb``.
    """
    path = Path(manifest_path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"No manifest at {str(path)!r}. Run data_scripts/prepare.py first; a run that stopped early leaves none."
        )
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [c for c in MANIFEST_COLUMNS[1:] if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; expected {list(MANIFEST_COLUMNS)}.")
    rows = list(reader)
    if not rows:
        raise ValueError(f"{path} has no rows.")
    store = ImageStore.open(path.parent)
    try:
        index = np.array([int(r["index"]) for r in rows] if "index" in rows[0] else range(len(rows)), dtype=np.int64)
        ages = torch.tensor([int(r["age"]) for r in rows], dtype=torch.int64)
        genders = torch.tensor([int(r["gender"]) if r["gender"] != "" else -1 for r in rows], dtype=torch.int64)
        split = torch.tensor([SPLIT_NAMES.index(r["split"]) for r in rows], dtype=torch.int64)
    except ValueError as error:
        raise ValueError(f"{path} has a malformed row ({error}); prepare the data set again.") from None
    if "index" not in rows[0] and len(rows) != len(store):
        raise ValueError(f"{path} has {len(rows)} rows but the store has {len(store)} images; they do not match.")
    if index.min() < 0 or index.max() >= len(store):
        raise ValueError(
            f"{path} refers to store row {int(index.max())} but the store in {path.parent} holds {len(store)} "
            "images; the store does not match this manifest. Prepare the data set again."
        )
    if bool(((genders < -1) | (genders > 1)).any()):
        raise ValueError(f"{path}: gender must be 0, 1 or empty.")
    aligned = store if np.array_equal(index, np.arange(len(store))) else store.take(torch.from_numpy(index))
    return PreparedData(
        aligned, ages, genders, [r["identity"] for r in rows], split, [r["path"] for r in rows]
    )
