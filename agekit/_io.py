"""Writing files so that nothing is ever half-written.

Every file agekit writes (checkpoints, configs, metrics, synthetic faces,
previews, course outputs) goes through :func:`atomic_write`: a temporary file
in the same folder, flushed to disk, then renamed over the target. A crash or
Ctrl-C at any moment leaves either the old file or the new one, and no
temporary file behind. (Prepared data sets publish several files in a fixed
order instead; see ``agekit.data.prepare``.)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path, write: Callable) -> Path:
    """Create or replace ``path`` atomically; ``write(binary_file)`` fills it. Returns the path.

    The folder is created if needed. The new file gets the usual permissions for
    the user's umask (a bare temporary file would be private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` for UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))
