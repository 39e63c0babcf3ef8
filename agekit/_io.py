"""Writing files so that nothing is ever half-written, and reading torch files safely.

Every file agekit writes (checkpoints, configs, metrics, synthetic faces,
previews, course outputs) goes through :func:`atomic_write`: a temporary file
in the same folder, flushed to disk, then renamed over the target. A crash or
Ctrl-C at any moment leaves either the old file or the new one, and no
temporary file behind. Several files that only make sense together (a
prepared data set: store, manifest, ...) are written under temporary names
with :func:`staged_files` and renamed into place together, in a fixed order,
once all of them are complete; a failure deletes every temporary file. A full
disk is reported as :class:`DiskFull`, one line naming the folder, whatever
library was writing.

A run that writes several files into one folder (a training run, a prepared
data set) holds :func:`folder_lock` meanwhile, so a second run into the same
folder is refused instead of mixing its files with the first one's. The lock
is an ``flock`` on an open file, which the kernel releases when the process
dies, so a crashed run never leaves it stuck. Under the lock,
:func:`remove_stale_temps` deletes what killed runs left behind.

:func:`load_torch` is the one reader of torch files (checkpoints, pretrained
weights): ``weights_only=True``, and one accurate line for each way a file can
be unreadable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

LOCK_NAME = ".agekit.lock"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class WriteError(OSError):
    """A folder that cannot be written now (full, or busy with another run); the message is one line."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class DiskFull(WriteError):
    """No space (or quota) left while writing into a folder."""


class FolderBusy(WriteError):
    """Another process holds the folder's lock."""


def disk_full(error: OSError, folder, needed: int | None = None) -> OSError:
    """``DiskFull`` for an ``OSError`` that means "no space left", else ``error`` itself (to re-raise)."""
    if isinstance(error, DiskFull) or error.errno not in _FULL:
        return error
    need = f"; it needs about {needed / 2**20:.1f} MiB" if needed else ""
    return DiskFull(error.errno, f"no space left in {folder} ({error.strerror}{need}). Free some space there "
                    "or choose another folder; what was there before is kept")


class _Tracked:
    """A file wrapper that remembers the OSError of a failed write (torch.save turns it into a RuntimeError)."""

    def __init__(self, handle):
        self._handle, self.error = handle, None

    def write(self, data):
        try:
            return self._handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new empty file ``.NAME.XXXX.tmp`` in ``folder`` with the usual permissions for the umask: (fd, path)."""
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # a bare temporary file would be private
    return fd, Path(temporary)


def _fill(fd: int, write: Callable) -> None:
    """``write(binary_file)`` into the open ``fd``, then flush it to disk and close it.

    A full disk met inside ``write`` raises its ``OSError`` even where the
    writing library wrapped it in another error (torch.save's RuntimeError).
    """
    tracked = None
    try:
        with os.fdopen(fd, "wb") as handle:
            tracked = _Tracked(handle)
            write(tracked)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as error:
        cause = tracked.error if tracked is not None else None
        if cause is not None and cause is not error and cause.errno in _FULL:
            raise cause from None
        raise


def _raise_disk_full(error: BaseException, folder, needed: int | None = None) -> None:
    """Raise ``DiskFull`` (one line, no traceback chain) when ``error`` means "no space left"; else return."""
    if isinstance(error, OSError):
        full = disk_full(error, folder, needed)
        if full is not error:
            raise full from None


def atomic_write(path, write: Callable) -> Path:
    """Create or replace ``path`` atomically; ``write(binary_file)`` fills it. Returns the path.

    The folder is created if needed. The new file gets the usual permissions for
    the user's umask. A full disk raises ``DiskFull`` and leaves the old file in
    place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = _temporary(path.parent, path.name)
    try:
        _fill(fd, write)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        _raise_disk_full(error, path.parent)
        raise
    return path


class StagedFiles:
    """Files written into one folder under temporary names, renamed into place together by :meth:`publish`.

    Each file is complete and flushed to disk before anything is renamed, and
    the renames happen in the order the files were added, so a reader that
    checks the last one (a manifest) never sees it beside older companions.
    Make one with :func:`staged_files`, which deletes the temporary files when
    the block fails.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.renames: list[tuple[Path, Path]] = []  # (temporary, final), in publishing order
        self._handles: list = []  # files from open(), closed by discard()

    def open(self, name: str):
        """A new temporary file for ``name``: (binary file open for writing, its path).

        The caller flushes it to disk and closes it before :meth:`publish`.
        """
        fd, temporary = _temporary(self.folder, name)
        self.renames.append((temporary, self.folder / name))
        self._handles.append(os.fdopen(fd, "wb"))
        return self._handles[-1], temporary

    def write(self, name: str, write: Callable) -> Path:
        """Write the temporary file for ``name`` with ``write(binary_file)``; returns its temporary path."""
        fd, temporary = _temporary(self.folder, name)
        self.renames.append((temporary, self.folder / name))
        _fill(fd, write)
        return temporary

    def write_text(self, name: str, text: str) -> Path:
        """:meth:`write` for UTF-8 text."""
        data = text.encode("utf-8")
        return self.write(name, lambda handle: handle.write(data))

    def publish(self, remove_first: Sequence[str] = ()) -> list[Path]:
        """Delete the files named in ``remove_first``, then rename every file into place, in order."""
        for name in remove_first:
            (self.folder / name).unlink(missing_ok=True)
        published = []
        while self.renames:
            temporary, final = self.renames[0]
            os.replace(temporary, final)
            published.append(self.renames.pop(0)[1])
        return published

    def discard(self) -> None:
        """Close the files from :meth:`open` and delete the temporary files that were not published."""
        for handle in self._handles:
            with contextlib.suppress(OSError):  # closing may flush into a full disk
                handle.close()
        for temporary, _ in self.renames:
            temporary.unlink(missing_ok=True)
        self.renames.clear()


@contextlib.contextmanager
def staged_files(folder, needed: int | None = None):
    """A :class:`StagedFiles` for ``folder`` (created if needed) for the ``with`` block.

    When the block fails, every temporary file not yet published is deleted
    and a full disk becomes ``DiskFull`` (``needed``, in bytes, is named in its
    message); files published before the failure stay.
    """
    files = StagedFiles(folder)
    files.folder.mkdir(parents=True, exist_ok=True)
    try:
        yield files
    except BaseException as error:
        files.discard()
        _raise_disk_full(error, folder, needed)
        raise


@contextlib.contextmanager
def folder_lock(folder, what: str = "run"):
    """Hold ``folder``'s lock for the ``with`` block; ``FolderBusy`` at once if another process holds it.

    The folder is created if needed; the lock file is removed on release. Where
    the platform has no ``fcntl`` (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise FolderBusy(errno.EBUSY, f"{folder} is in use by another {what} (process {holder}); wait for it "
                             "to finish or choose another folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the holder removed the file as we opened it: take the new one
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        handle.close()


def remove_stale_temps(folder, names) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files that killed runs left in ``folder`` (call only under its lock)."""
    removed = []
    for name in names:
        for temporary in Path(folder).glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
                removed.append(temporary)
    return removed


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` for UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


# --- reading torch files -------------------------------------------------------------------

_UNSAFE = re.compile(r"Unsupported global: GLOBAL (\S+)")
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"  # torch.save's zip archive; the legacy format starts with a pickle


def load_torch(path, map_location="cpu", error: type[Exception] = ValueError, advice: str = ""):
    """``torch.load(path, weights_only=True)``, with one accurate line (an ``error``) for every unreadable file.

    A folder, an empty file, text or other bytes that are no torch file, a
    truncated archive, and a file that needs pickled Python code (refused:
    loading it could run anything; ``advice`` says what to do) each get their
    own message. A missing file raises ``FileNotFoundError``.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        inside = [name for name in ("best.pt", "last.pt") if (path / name).is_file()]
        hint = f"; it holds {' and '.join(inside)}" if inside else ""
        raise error(f"{path} is a folder, not a checkpoint file{hint}. Pass a .pt file.")
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    if not path.is_file():
        raise error(f"{path} is not a regular file (a FIFO, device or socket); pass a .pt file.")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise error(f"{path} is empty (0 bytes); it was not written completely.")
    if not (head.startswith(_ZIP) or head.startswith(_PICKLE)):
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "bytes"
        raise error(f"{path} is not a torch file: it starts with {kind} {head!r}, not the zip archive "
                    "torch.save writes.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as failure:
        found = _UNSAFE.search(str(failure))
        if found is None:  # the weights-only unpickler met bytes that are no pickle at all
            raise error(f"{path} is damaged: its data section is not a valid torch pickle.") from None
        raise error(f"Refusing to load {path}: it stores pickled Python objects ({found.group(1)}), not only "
                    f"tensors, and loading it could run code from the file. {advice}".rstrip()) from None
    except MemoryError:
        raise
    except Exception as failure:  # torch raises KeyError, IndexError, RuntimeError, EOFError ... for foreign bytes
        text = str(failure).strip()
        reason = re.split(r"(?<=\.)\s", text.splitlines()[0])[0][:120] if text else type(failure).__name__
        raise error(f"{path} is damaged or truncated; torch cannot read it ({reason}).") from None
