"""A memory-mapped image store: every face decoded once, read many times.

Decoding a JPEG costs far more than copying its pixels. ``data_scripts/prepare.py``
therefore decodes each face once, resizes it to ``S x S`` and writes all of them
into ONE flat file of uint8 pixels, laid out as ``[N, 3, S, S]`` (row ``i`` is
image ``i``, channels first, as the models want them). A small JSON file next to
it records the shape, dtype and format version.

Training then reads a batch by index: the operating system maps the file into
memory (``numpy.memmap``) and pages in only the rows that are touched, so a data
set larger than RAM works, and a data set that fits stays in the page cache
after the first epoch. ``benchmarks/bench_store.py`` measures the difference.

Files in a store directory::

    images.u8     N * 3 * S * S bytes, C order
    images.json   {"version": 1, "shape": [N, 3, S, S], "dtype": "uint8", ...}

Taught in ``notebooks/10_real_datasets.ipynb``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from agekit import _checks
from agekit._io import StagedFiles

STORE_VERSION = 1
DATA_NAME = "images.u8"
META_NAME = "images.json"


class ImageStore:
    """Read-only uint8 face images ``[N, 3, S, S]`` backed by one memory-mapped file.

    ``store[index]`` with an int64 tensor, list, array or slice gives a uint8
    tensor ``[b, 3, S, S]`` (a copy, safe to modify); an int gives ``[3, S, S]``.
    ``store.take(rows)`` is a view on a subset of rows, with the same interface.

    Taught in ``notebooks/10_real_datasets.ipynb``.
    """

    def __init__(self, data_path: str | os.PathLike, shape: tuple[int, int, int, int], rows=None):
        self.data_path = Path(data_path)
        self._shape = tuple(int(s) for s in shape)
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._array = None  # opened lazily, so a store pickles cheaply into DataLoader workers

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "ImageStore":
        """Open the store in ``directory`` (or given its ``images.json``).

        Taught in ``notebooks/10_real_datasets.ipynb``.
        """
        directory = Path(directory)
        meta_path = directory if directory.suffix == ".json" else directory / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"No image store at {str(directory)!r}: {meta_path.name} is missing. "
                "Run data_scripts/prepare.py to create one."
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != STORE_VERSION or meta.get("dtype") != "uint8":
            raise ValueError(
                f"{meta_path} describes store version {meta.get('version')!r} with dtype "
                f"{meta.get('dtype')!r}; this agekit reads version {STORE_VERSION}, uint8. "
                "Prepare the data set again."
            )
        shape = tuple(meta["shape"])
        if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
            raise ValueError(f"{meta_path} has shape {shape}; expected [N, 3, S, S].")
        data_path = meta_path.parent / meta.get("file", DATA_NAME)
        expected = int(np.prod(shape))
        if not data_path.is_file():
            raise FileNotFoundError(
                f"{data_path} is missing, though {meta_path.name} describes it; the store is incomplete. "
                "Prepare the data set again."
            )
        actual = data_path.stat().st_size
        if actual != expected:
            raise ValueError(
                f"{data_path} holds {actual} bytes but {meta_path.name} promises {expected} "
                f"(shape {shape}); the store is incomplete. Prepare the data set again."
            )
        return cls(data_path, shape)

    # --- size and shape -------------------------------------------------------------

    def __len__(self) -> int:
        return self._shape[0] if self._rows is None else len(self._rows)

    @property
    def image_size(self) -> int:
        """S, the side of every (square) image."""
        return self._shape[2]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, 3, S, S) of this store or view."""
        return (len(self),) + self._shape[1:]

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    # --- reading --------------------------------------------------------------------

    def _memmap(self) -> np.ndarray:
        if self._array is None:
            if self._shape[0] == 0:
                self._array = np.zeros(self._shape, dtype=np.uint8)
            else:
                self._array = np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=self._shape)
        return self._array

    def _resolve(self, index) -> np.ndarray | slice | int:
        """Turn any supported index into positions in the file (an array, a slice or an int)."""
        if isinstance(index, torch.Tensor):
            if index.dtype == torch.bool or index.is_floating_point():
                raise TypeError(f"index must hold whole numbers, got a {index.dtype} tensor.")
            index = index.cpu().numpy()
        if isinstance(index, (int, np.integer)):
            index = int(index)
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} is out of range for a store of {len(self)} images.")
            index %= len(self)
            return index if self._rows is None else int(self._rows[index])
        if isinstance(index, slice):
            return index if self._rows is None else self._rows[index]
        index = np.asarray(index)
        if index.dtype == bool or not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"index must be an int, a slice or whole numbers, got dtype {index.dtype}.")
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(
                f"index out of range: values must lie in [0, {len(self)}), got min {index.min()} and max {index.max()}."
            )
        index = index.astype(np.int64) % max(len(self), 1)
        return index if self._rows is None else self._rows[index]

    def __getitem__(self, index) -> torch.Tensor:
        """index: int -> uint8 [3, S, S]; tensor/list/array [b] or slice -> uint8 [b, 3, S, S]."""
        position = self._resolve(index)
        return torch.from_numpy(np.array(self._memmap()[position], dtype=np.uint8, copy=True))

    def take(self, rows) -> "ImageStore":
        """A view holding only ``rows`` (int64 [m]) of this store, in that order."""
        rows = _checks.vector("rows", rows, dtype=torch.int64, allow_empty=True)
        return ImageStore(self.data_path, self._shape, self._resolve(rows.numpy()).reshape(-1))

    def read_all(self) -> torch.Tensor:
        """Every image of this store or view in memory: uint8 [N, 3, S, S] (mind the RAM)."""
        return self[slice(None)] if self._rows is None else self[np.arange(len(self))]

    # --- pickling (DataLoader workers reopen the file themselves) --------------------

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __repr__(self) -> str:
        return f"ImageStore({str(self.data_path)!r}, shape={self.shape})"


class StoreWriter:
    """Writes a store under temporary names; ``finish`` says which renames publish it.

    At most ``capacity`` rows; ``finish(count)`` keeps the first ``count``.
    Rows are written with ordinary file writes (not through a memory map, where
    a full disk kills the process with SIGBUS), so a full disk raises
    ``OSError``. The two files are staged in ``files`` (an
    ``agekit._io.StagedFiles``, one of its own when none is given), so they are
    published with whatever else the caller stages there; nothing carries a
    final name until they are renamed, so an interrupted run never leaves a
    store that looks complete. ``discard`` deletes the temporary files.
    """

    def __init__(self, directory: str | os.PathLike, capacity: int, image_size: int,
                 files: StagedFiles | None = None):
        self.directory = Path(directory)
        self.capacity = _checks.positive_int("capacity", capacity)
        self.image_size = _checks.positive_int("image_size", image_size)
        self.row_bytes = 3 * self.image_size * self.image_size
        self._files = files if files is not None else StagedFiles(self.directory)
        self._file, self.data_tmp = self._files.open(DATA_NAME)
        self.meta_tmp: Path | None = None
        self._next = 0  # the row the file position is at

    def write(self, row: int, image: np.ndarray) -> None:
        """Put one uint8 image [3, S, S] at ``row`` (rows written in order need no seek)."""
        if not 0 <= row < self.capacity:
            raise IndexError(f"row {row} is outside the reserved capacity {self.capacity}.")
        if row != self._next:
            self._file.seek(row * self.row_bytes)
        self._file.write(np.ascontiguousarray(image, dtype=np.uint8).reshape(self.row_bytes).data)
        self._next = row + 1

    def finish(self, count: int) -> list[tuple[Path, Path]]:
        """Flush, cut the file to ``count`` rows, write the JSON; return (temp, final) renames."""
        count = _checks.positive_int("count", count, minimum=0)
        if count > self.capacity:
            raise ValueError(f"count {count} exceeds the reserved capacity {self.capacity}.")
        self._file.truncate(count * self.row_bytes)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        meta = {
            "version": STORE_VERSION,
            "shape": [count, 3, self.image_size, self.image_size],
            "dtype": "uint8",
            "layout": "NCHW, RGB, C order",
            "file": DATA_NAME,
        }
        self.meta_tmp = self._files.write_text(META_NAME, json.dumps(meta, indent=2) + "\n")
        return [(self.data_tmp, self.directory / DATA_NAME), (self.meta_tmp, self.directory / META_NAME)]

    def discard(self) -> None:
        """Delete the temporary files (after a failure)."""
        with contextlib.suppress(OSError):  # closing may flush into a full disk
            self._file.close()
        for path in (self.data_tmp, self.meta_tmp):
            if path is not None:
                path.unlink(missing_ok=True)
