"""The data a run trains on: the train / val / test splits, their age labels and a fingerprint.

    data = load_data(preset("cpu"))            # synthetic faces, split by identity
    data = DataSplits.of(load_prepared(path))  # a prepared data set, as it was split
    data.train, data.val, data.test, data.age_labels

Every kind of data reaches the trainer as one :class:`DataSplits`.
Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch

from agekit.config import Config
from agekit.data.dataset import FaceDataset
from agekit.data.labels import AgeLabels
from agekit.data.splits import SPLIT_NAMES, identity_split, split_indices


@dataclass
class DataSplits:
    """The train / val / test data sets and the age labels (from the training split)."""

    train: FaceDataset
    val: FaceDataset
    test: FaceDataset
    age_labels: AgeLabels
    description: str = ""

    @property
    def has_gender(self) -> bool:
        return self.train.has_gender

    def split(self, name: str) -> FaceDataset:
        if name not in SPLIT_NAMES:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}.")
        return getattr(self, name)

    @classmethod
    def from_sets(cls, sets: dict, description: str = "") -> "DataSplits":
        """From {"train", "val", "test": FaceDataset}; the age labels come from the training split."""
        if not isinstance(sets, dict) or not set(SPLIT_NAMES) <= set(sets):
            raise TypeError(
                "data must be a DataSplits, a PreparedData, or a dict with FaceDataset values for "
                f"'train', 'val' and 'test'; got {type(sets).__name__}."
            )
        for name in SPLIT_NAMES:
            if not isinstance(sets[name], FaceDataset) or len(sets[name]) == 0:
                raise ValueError(f"data[{name!r}] must be a non-empty FaceDataset.")
        labels = AgeLabels.from_ages(sets["train"].ages)
        return cls(sets["train"], sets["val"], sets["test"], labels, description)

    @classmethod
    def of(cls, data, description: str = "") -> "DataSplits":
        """The splits of ``data``: a DataSplits (as it is), a PreparedData (its own split) or a dict of FaceDatasets."""
        if isinstance(data, cls):
            return data
        from agekit.data.prepare import PreparedData

        if isinstance(data, PreparedData):
            data = {name: data.subset(name) for name in SPLIT_NAMES}
        return cls.from_sets(data, description)


def as_splits(data, description: str = "") -> DataSplits:
    """Accept a :class:`DataSplits`, a dict {"train", "val", "test": FaceDataset} or a PreparedData."""
    return DataSplits.of(data, description)


@functools.lru_cache(maxsize=2)
def _synthetic(n: int, image_size: int, seed: int, difficulty: str):
    from agekit.data.synthetic import make_synthetic_faces

    return make_synthetic_faces(n, image_size=image_size, seed=seed, difficulty=difficulty)


def load_data(config: Config) -> DataSplits:
    """The data sets ``config.data`` describes: a prepared manifest, or synthetic faces split by identity.

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    d = config.data
    if d.manifest:
        from agekit.data.prepare import load_prepared

        prepared = load_prepared(d.manifest)
        return DataSplits.of(prepared, f"{d.manifest}: {len(prepared)} faces at {prepared.image_size} px")
    faces = _synthetic(d.n, d.image_size, d.seed, d.difficulty)
    codes = identity_split(faces.ages, faces.identities, fractions=tuple(d.fractions), seed=d.seed)
    dataset = FaceDataset(faces.images, faces.ages, faces.genders, faces.identities)
    parts = split_indices(codes)
    empty = [name for name, index in parts.items() if len(index) == 0]
    if empty:
        raise ValueError(
            f"data.fractions={list(d.fractions)} leaves no faces in {' and '.join(empty)} (of {d.n} synthetic "
            "faces); training needs faces in train, val and test: give each a share, e.g. [0.6, 0.2, 0.2]."
        )
    sets = {name: dataset.subset(index) for name, index in parts.items()}
    return DataSplits.from_sets(sets, f"{d.n} synthetic faces ({d.difficulty}, seed {d.seed}) at {d.image_size} px")


def data_fingerprint(data: DataSplits, images_per_split: int = 32) -> str:
    """A short hash of the splits: their sizes, every age and gender, and evenly spaced images.

    Checkpoints keep it, so a run cached in ``runs/`` is never continued on data that
    has changed since (a new version of the synthetic generator, another folder). It
    reads a few images per split, not all, so it stays instant on large data sets.
    """
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        dataset = data.split(name)
        digest.update(f"{name}:{len(dataset)};".encode())
        for labels in (dataset.ages, dataset.genders):
            if labels is not None:
                digest.update(torch.as_tensor(labels).cpu().numpy().tobytes())
        index = torch.linspace(0, len(dataset) - 1, min(images_per_split, len(dataset))).round().long()
        digest.update(torch.as_tensor(dataset.images[index]).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
