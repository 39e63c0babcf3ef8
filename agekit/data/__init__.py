"""Data: synthetic faces, age labels and positions, splits, data sets and augmentation.

The public names of DESIGN.md live here: ``make_synthetic_faces`` and ``AgeLabels``.
"""

from agekit.data.augment import BatchAugment
from agekit.data.dataset import Batch, FaceDataset, normalize, to_float
from agekit.data.formats import FORMATS
from agekit.data.labels import AgeLabels
from agekit.data.prepare import PreparedData, load_prepared
from agekit.data.splits import SPLIT_NAMES, find_leakage, identity_split, random_split, split_indices
from agekit.data.store import ImageStore


def __getattr__(name):
    # the synthetic generator is imported on first use; it is the largest module
    if name in {"make_synthetic_faces", "render_face", "render_faces", "SyntheticFaces", "save_synthetic_faces",
                "load_synthetic_faces", "preview_grid", "face_grid", "age_prior", "write_synthetic_dataset"}:
        from agekit.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'agekit.data' has no attribute {name!r}")


__all__ = [
    "AgeLabels", "Batch", "BatchAugment", "FORMATS", "FaceDataset", "ImageStore", "PreparedData",
    "SPLIT_NAMES", "find_leakage", "identity_split", "load_prepared", "make_synthetic_faces",
    "normalize", "random_split", "render_face", "render_faces", "face_grid", "age_prior",
    "SyntheticFaces", "split_indices", "to_float",
]
