"""JupyterLab on 127.0.0.1 with a notebook of our cells, for tests driven by Debian's Chromium.

The server runs in a temporary root with its own config, settings, data and
IPython directories, talks to the mock server, and asks no registry anything.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..conftest import ENV
from ..kernels import stop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000


def requirements() -> None:
    """Skip only outside CI when Chromium is missing; in CI (CI=true) a gap fails."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        for module in ("playwright", "jupyterlab"):
            try:
                __import__(module)
            except ImportError:
                missing = f"{module} is not installed (pip install -e '.[test]')"
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run in CI: {missing}")
    if missing:
        pytest.skip(f"browser test skipped: {missing}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def notebook(cells: Sequence[str]) -> dict[str, Any]:
    code = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in cells
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    metadata = {"kernelspec": kernelspec}
    return {"cells": code, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def environment(server: Any, tmp_path: Path) -> dict[str, str]:
    """The server's (and `jupyter trust`'s) environment: the mock, private Jupyter dirs."""
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(
        OPENAI_BASE_URL=server.url,  # the mock; no OPENAI_API_KEY
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")])),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    return env


@contextmanager
def jupyterlab(server: Any, tmp_path: Path, name: str, cells: Sequence[str]) -> Iterator[str]:
    """JupyterLab serving notebook `name` made of `cells`; yields the notebook's URL."""
    requirements()
    root = tmp_path / "root"
    root.mkdir()
    (root / name).write_text(json.dumps(notebook(cells)))
    token, port = secrets.token_hex(16), _free_port()
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "official Jupyter news?" toast over the page
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log_path = tmp_path / "lab.log"
    log = log_path.open("w")
    args = [
        *("--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"),
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no registry look-ups
        *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", *args],
        env=environment(server, tmp_path),
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while f"127.0.0.1:{port}" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}"
    finally:
        stop(proc, 20)
        log.close()


def run_cells(page: Any, expect: Any, count: int, first: int = 1) -> None:
    """Run cells `first`..`count` one by one as a user would (click, Shift+Enter)."""
    for number in range(first, count + 1):
        cell = page.locator(".jp-Notebook .jp-Cell").nth(number - 1)
        cell.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        expect(cell.locator(".jp-InputPrompt")).to_have_text(f"[{number}]:")


def open_notebook(page: Any, expect: Any, url: str) -> None:
    page.goto(url)
    expect(page.locator(".jp-Notebook")).to_be_visible()
    expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle")).to_have_count(1)


def local_only(outside: list[str]) -> Any:
    """A Playwright route handler: 127.0.0.1 passes; any other host is noted and refused,
    so no test ever reaches a public address (and a planted image URL shows up here)."""

    def route(request_route: Any) -> None:
        if urlsplit(request_route.request.url).hostname in ("127.0.0.1", "localhost"):
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    return route


@contextmanager
def chromium_page(pw: Any, expect: Any, outside: list[str]) -> Iterator[Any]:
    """A page in Debian's Chromium that may only talk to this machine (see `local_only`)."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.context.route("**/*", local_only(outside))
    try:
        yield page
    finally:
        browser.close()


def save_trust_reload(page: Any, expect: Any, server: Any, tmp_path: Path, name: str) -> Path:
    """Save the notebook, trust it as its owner would (`jupyter trust`), reload the page."""
    page.keyboard.press("Control+s")
    expect(page.locator(".jp-mod-dirty")).to_have_count(0)
    saved = tmp_path / "root" / name
    subprocess.run(
        [sys.executable, "-m", "jupyter", "trust", str(saved)],
        env=environment(server, tmp_path),
        check=True,
        capture_output=True,
    )
    page.reload()
    expect(page.locator(".jp-Notebook")).to_be_visible()
    return saved
