"""The chat panel in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium via Playwright.

A user's path: run a `%%chat` cell, open `%chat panel`, type into the panel and press
Enter, watch the reply stream in, stop a slow reply. Assertions are on page text;
screenshots (light and dark theme) are saved and their paths printed, for people.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import ENV

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
SLOW = "gpt-4o-mini@chunks=600,delay=0.05,reply=paragraph"  # 30 s unless stopped
CELLS = [
    "%load_ext nbchat",
    "%%chat\nhello from a cell",
    f"%config ChatMagics.model = {SLOW!r}\n%chat panel",
]
TIMEOUT_MS = 30_000


def _requirements() -> None:
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


def _notebook() -> dict:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in CELLS
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    metadata = {"kernelspec": kernelspec}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def lab(server, tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving a notebook in a temporary root; yields the notebook's URL."""
    _requirements()
    root = tmp_path / "root"
    root.mkdir()
    (root / "panel.ipynb").write_text(json.dumps(_notebook()))
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(
        OPENAI_BASE_URL=server.url,  # the mock; no OPENAI_API_KEY
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")])),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "official Jupyter news?" toast over the panel
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = (tmp_path / "lab.log").open("w")
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
        [sys.executable, "-m", "jupyterlab", *args], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while f"127.0.0.1:{port}" not in (tmp_path / "lab.log").read_text():
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            assert time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/lab/tree/panel.ipynb?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_panel_in_jupyterlab(lab: str, server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("NBCHAT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            _user_session(page, expect, shots, lab)
        finally:
            page.screenshot(path=str(shots / "last.png"))
            browser.close()
            for shot in sorted(shots.glob("*.png")):
                print(f"screenshot: {shot}")


def _user_session(page, expect, shots: Path, url: str) -> None:
    page.goto(url)
    expect(page.locator(".jp-Notebook")).to_be_visible()
    expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle")).to_have_count(1)
    for number in range(1, len(CELLS) + 1):  # run each cell as a user would
        cell = page.locator(".jp-Notebook .jp-Cell").nth(number - 1)
        cell.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        expect(cell.locator(".jp-InputPrompt")).to_have_text(f"[{number}]:")
    panel = page.locator(".nbchat-panel")
    expect(panel).to_be_visible()
    cell_reply = page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea")
    expect(cell_reply).to_contain_text("turn 1 of the conversation")
    expect(panel).to_contain_text("hello from a cell")  # turns from cells show in the panel
    expect(panel).to_contain_text("turn 1 of the conversation")

    # a quick reply: pick a listed model, type, press Enter
    expect(panel.locator(".nbchat-model select option")).to_have_count(5)
    panel.locator(".nbchat-model select").select_option("gpt-4o-mini")
    prompt = panel.locator("textarea.nbchat-prompt")
    prompt.click()
    prompt.type("line one")
    prompt.press("Shift+Enter")  # a new line, not a send
    prompt.type("line two")
    assert prompt.input_value() == "line one\nline two"
    prompt.press("Enter")
    expect(panel).to_contain_text("turn 2 of the conversation")
    expect(panel.locator(".nbchat-footer").last).to_contain_text("gpt-4o-mini · ")
    expect(panel.locator(".nbchat-totals")).to_contain_text("this conversation: 2 turns")
    expect(prompt).to_have_value("")
    panel.screenshot(path=str(shots / "1-reply.png"))

    # a slow reply: it streams in, then Stop keeps what arrived
    panel.locator(".nbchat-model select").select_option(SLOW)
    prompt.fill("a long answer please")
    prompt.press("Enter")
    expect(panel).to_contain_text("The mock server streams deterministic text")
    panel.screenshot(path=str(shots / "2-streaming.png"))
    panel.get_by_role("button", name="Stop").click()
    expect(panel.locator(".nbchat-status")).to_contain_text("stopped")
    expect(panel.locator(".nbchat-footer").last).to_contain_text("finish: interrupted")
    expect(panel.locator(".nbchat-totals")).to_contain_text("this conversation: 3 turns")
    text = panel.inner_text()
    assert not re.search(r"\bnbchat: ", text), text  # no error line
    panel.screenshot(path=str(shots / "3-stopped.png"))

    # the dark theme uses the same CSS variables
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Theme", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
    expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)
    panel.screenshot(path=str(shots / "4-dark.png"))
