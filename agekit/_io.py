"""Writing files so that nothing is ever half-written, and reading torch files safely.

Every file agekit writes (checkpoints, configs, metrics, synthetic faces,
previews, course outputs) goes through :func:`atomic_write`: a temporary file
in the same folder, flushed to disk, then renamed over the target. A crash or
Ctrl-C at any moment leaves either the old file or the new one, and no
temporary file behind. (Prepared data sets publish several files in a fixed
order instead; see ``agekit.data.prepare``.) A full disk is reported as
:class:`DiskFull`, one line naming the folder, whatever library was writing.

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
from pathlib import Path
from typing import Callable

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


def atomic_write(path, write: Callable) -> Path:
    """Create or replace ``path`` atomically; ``write(binary_file)`` fills it. Returns the path.

    The folder is created if needed. The new file gets the usual permissions for
    the user's umask (a bare temporary file would be private). A full disk raises
    ``DiskFull`` and leaves the old file in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tracked = None
    try:
        with os.fdopen(fd, "wb") as handle:
            tracked = _Tracked(handle)
            write(tracked)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        cause = tracked.error if tracked is not None and tracked.error is not None else error
        if isinstance(cause, OSError) and disk_full(cause, path.parent) is not cause:
            raise disk_full(cause, path.parent) from None
        raise
    return path


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
