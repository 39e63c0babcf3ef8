"""JupyterLab in headless Chromium: a throwaway server and browser for the widget tests.

The server runs on a free localhost port with its own token, config, runtime,
settings and workspace folders, serving copies of the lessons in a temporary
folder (so autosave never touches the committed notebooks). Kernels inherit
``AGEKIT_FAST=1`` and a temporary ``AGEKIT_RUNS``. Chromium is the system's
(Debian's ``chromium`` package, or ``$AGEKIT_CHROMIUM``) driven by Playwright,
with a fresh profile and no background networking. Everything is shut down at
the end, also when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agekit.course import notebooks_dir

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]
LESSONS = ["01_synthetic_faces.ipynb", "07_siamese_metric_learning.ipynb"]


def _chromium() -> str:
    for candidate in (os.environ.get("AGEKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("The browser tests need Chromium: 'apt-get install chromium' (Debian/Ubuntu), "
                "or set AGEKIT_CHROMIUM to a Chromium or Chrome executable.", pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where screenshots go: $AGEKIT_E2E_OUT, or runs/e2e beside the notebooks."""
    folder = Path(os.environ.get("AGEKIT_E2E_OUT") or notebooks_dir().parent / "runs" / "e2e")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server: yields (base url, token, folder of the notebook copies)."""
    home = tmp_path_factory.mktemp("jupyterlab")
    folder = home / "notebooks"
    folder.mkdir()
    for name in LESSONS:
        shutil.copy(notebooks_dir() / name, folder / name)
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "receive news?" toast over the notebook; no update checks (there is no network).
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    docmanager = home / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}), encoding="utf-8")
    notebook = home / "settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    # Every cell stays in the page (no windowing), so the checks see all prompts and outputs.
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}), encoding="utf-8")
    port, token = _free_port(), secrets.token_hex(16)
    # The kernels inherit this environment: fast mode, a throwaway runs/, and the inline plot backend
    # (the test session itself sets MPLBACKEND=Agg, which would keep figures out of the notebook).
    environment = {
        **os.environ, "AGEKIT_FAST": "1", "AGEKIT_RUNS": str(home / "runs"), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False",
        "--LabApp.news_url=", "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
    ] + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])  # root in CI containers
    log = open(home / "server.log", "w", encoding="utf-8")
    server = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}: "
                                   + (home / "server.log").read_text(encoding="utf-8")[-2000:])
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not answer within 120 s: "
                                   + (home / "server.log").read_text(encoding="utf-8")[-2000:])
            time.sleep(0.5)
        yield base, token, folder
    finally:
        _stop(server)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (server and kernels), SIGKILL what is left after 15 s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """Headless Chromium with a fresh profile, driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The browser tests need Playwright for Python: pip install -e '.[test]' "
                    "(it uses the system Chromium; no browser is downloaded).", pytrace=False)
    executable = _chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000}, device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()
