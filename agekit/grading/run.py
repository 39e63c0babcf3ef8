"""Step 1 of grading: running a submitted notebook headless, under a time limit and an output cap.

nbclient executes the notebook top to bottom with errors allowed; at the
deadline the kernel's process group is killed, and outputs past
:data:`DEFAULT_MAX_OUTPUT_BYTES` are cut. Part of ``agekit grade``
(:mod:`agekit.grade`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from agekit.site import notebook_node

DEFAULT_MAX_OUTPUT_BYTES = 20_000_000


class _RunLimit:
    """Watches one notebook run: kills the kernel's process group at the deadline."""

    def __init__(self, seconds: float):
        self.seconds, self.expired, self.pid = seconds, False, None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self):
        self._timer.start()

    def cancel(self):
        self._timer.cancel()

    def _expire(self):
        self.expired = True
        _kill_group(self.pid)


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _client_class():
    """nbclient's NotebookClient, with a cap on the size of the outputs and the kernel's pid recorded."""
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        max_output_bytes = DEFAULT_MAX_OUTPUT_BYTES
        limit: _RunLimit | None = None
        kernel_env: dict | None = None
        _output_bytes = 0
        _truncated = False

        async def async_start_new_kernel(self, **kwargs):
            await super().async_start_new_kernel(env=self.kernel_env, **kwargs)
            pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
            if self.limit is not None:
                self.limit.pid = pid  # launched with start_new_session: its pid is its process group
                if self.limit.expired:
                    _kill_group(pid)

        def output(self, outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {}), default=str))
            if self._output_bytes + size > self.max_output_bytes:
                if not self._truncated:
                    self._truncated = True
                    outs.append(_stream(f"[agekit grade: output cut here; the notebook's outputs passed the "
                                        f"{self.max_output_bytes:,}-byte limit]\n"))
                return None
            self._output_bytes += size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def _stream(text: str) -> dict:
    import nbformat

    return nbformat.v4.new_output("stream", name="stderr", text=text)


def run_notebook(notebook: dict, workdir: Path, timeout: float, fast: bool = True,
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, kernel_name: str = "python3"):
    """Execute a notebook in ``workdir``; returns (executed notebook, status, seconds).

    status is ``"ok"``, ``"errors"`` (some cells raised; the run went on), ``"timeout"``
    (stopped at ``timeout`` seconds: the kernel's process group was killed) or
    ``"failed: ..."`` (the kernel could not run it).
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    node = notebook_node(notebook)
    if fast:
        try:
            from papermill.parameterize import parameterize_notebook

            node = parameterize_notebook(node, {"fast": True})  # beside AGEKIT_FAST=1, which forces it anyway
        except Exception:  # no parameters cell (a student may have removed its tag): the environment decides
            pass
    environment = {**os.environ, "AGEKIT_RUNS": str(workdir / "runs"), "HOME": str(workdir),
                   "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    environment["AGEKIT_FAST"] = "1" if fast else "0"
    limit = _RunLimit(timeout)
    client = _client_class()(node, timeout=max(1, int(timeout)), kernel_name=kernel_name, allow_errors=True,
                             resources={"metadata": {"path": str(workdir)}},
                             extra_arguments=["--IPKernelApp.log_level=ERROR"])
    client.max_output_bytes, client.limit, client.kernel_env = max_output_bytes, limit, environment
    start = time.perf_counter()
    limit.start()
    status = "ok"
    try:
        client.execute()
    except (DeadKernelError, CellTimeoutError, RuntimeError) as error:
        status = "timeout" if limit.expired or isinstance(error, CellTimeoutError) else f"failed: {error}"
    except Exception as error:  # a notebook the kernel cannot run at all must not stop the other submissions
        status = "timeout" if limit.expired else f"failed: {type(error).__name__}: {error}"
    finally:
        limit.cancel()
        _kill_group(limit.pid)
    seconds = time.perf_counter() - start
    if limit.expired:
        status = "timeout"
    if status == "ok" and any(output.get("output_type") == "error"
                              for cell in node.cells for output in cell.get("outputs", [])):
        status = "errors"
    return node, status, seconds
