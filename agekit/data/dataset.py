"""A face data set over an image tensor (or an image store) and its labels.

Two ways to read it:

* a plain ``torch.utils.data.DataLoader`` (``dataset[i]`` gives one sample), and
* the fast path, ``dataset.batch(indices)`` / ``dataset.batches(...)``, which slices
  whole batches at once with no per-sample Python work. The trainer uses this.

Images stay uint8 until a batch is on its device; ``to_float`` turns them into
[0, 1] floats there, so the host never holds a float copy of the data set.

Taught in ``notebooks/01_synthetic_faces.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from agekit import _checks


@dataclass
class Batch:
    """One batch: images uint8 [b, 3, H, W], ages int64 [b], genders int64 [b] (-1 unknown), index [b]."""

    images: torch.Tensor
    ages: torch.Tensor
    genders: torch.Tensor
    index: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.images, self.ages, self.genders, self.index)))

    def pin_memory(self) -> "Batch":
        return Batch(*(t.pin_memory() for t in (self.images, self.ages, self.genders, self.index)))


class Labelled:
    """What every face collection with ``ages`` and ``genders`` [N] (-1 unknown) answers alike."""

    ages: torch.Tensor
    genders: torch.Tensor

    def __len__(self) -> int:
        return len(self.ages)

    @property
    def has_gender(self) -> bool:
        """True when at least one sample has a known gender."""
        return bool((self.genders >= 0).any())


class FaceDataset(Labelled, torch.utils.data.Dataset):
    """Faces with whole-year ages and optional genders and identities.

    images: uint8 [N, 3, H, W] tensor, or any object with ``__len__`` and
    ``__getitem__(index tensor) -> uint8 [b, 3, H, W]`` (the image store of real data);
    ages: [N]; genders: [N] with 0 male, 1 female, -1 unknown, or None;
    identities: [N] or None.
    """

    def __init__(self, images, ages, genders=None, identities=None):
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}.")
            if images.dtype != torch.uint8:
                raise TypeError(f"images must be uint8 (0..255), got {images.dtype}.")
        ages = _checks.vector("ages", ages)
        if ages.is_floating_point():
            if not torch.equal(ages, ages.round()):
                raise ValueError("ages must be whole years.")
        ages = ages.to(torch.int64)
        if genders is None:
            genders = torch.full_like(ages, -1)
        genders = _checks.vector("genders", genders, dtype=torch.int64)
        if bool(((genders < -1) | (genders > 1)).any()):
            raise ValueError("genders must be 0 (male), 1 (female) or -1 (unknown).")
        lengths = {"images": images, "ages": ages, "genders": genders}
        if identities is not None:
            identities = torch.as_tensor(identities)
            lengths["identities"] = identities
        _checks.same_length(**lengths)
        self.images, self.ages, self.genders, self.identities = images, ages, genders, identities

    @property
    def image_size(self) -> int:
        return int(self.batch(torch.tensor([0])).images.shape[-1])

    def __getitem__(self, i: int):
        """(image uint8 [3, H, W], age, gender) for a DataLoader."""
        batch = self.batch(torch.tensor([int(i)]))
        return batch.images[0], batch.ages[0], batch.genders[0]

    def batch(self, index) -> Batch:
        """The samples at ``index`` (int64 [b]) as one Batch, sliced in one go."""
        index = torch.as_tensor(index, dtype=torch.int64)
        return Batch(self.images[index], self.ages[index], self.genders[index], index)

    def subset(self, index) -> "FaceDataset":
        """A new FaceDataset holding only the samples at ``index``."""
        index = torch.as_tensor(index, dtype=torch.int64)
        images = self.images[index]
        identities = None if self.identities is None else self.identities[index]
        return FaceDataset(images, self.ages[index], self.genders[index], identities)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Iterate over whole batches (the fast path). Shuffling uses ``generator``."""
        batch_size = _checks.positive_int("batch_size", batch_size)
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [b, 3, H, W] -> float32 in [0, 1] on the same device."""
    return images.float().div_(255.0)


def normalize(images: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """[0, 1] images -> roughly [-1, 1], the input range of the IR backbones."""
    return (images - mean) / std
