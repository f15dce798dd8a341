"""The chat panel in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium via Playwright.

A user's path: run a `%%chat` cell, open `%chat panel`, type into the panel and press
Enter, watch the reply stream in, stop a slow reply. Assertions are on page text;
screenshots (light and dark theme) are saved and their paths printed, for people.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, jupyterlab, open_notebook, run_cells

SLOW = "gpt-4o-mini@chunks=600,delay=0.05,reply=paragraph"  # 30 s unless stopped
CELLS = [
    "%load_ext nbchat",
    "%%chat\nhello from a cell",
    f"%config ChatMagics.model = {SLOW!r}\n%chat panel",
]


@pytest.fixture
def lab(server, tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving the panel notebook; yields its URL."""
    with jupyterlab(server, tmp_path, "panel.ipynb", CELLS) as url:
        yield url


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
    open_notebook(page, expect, url)
    run_cells(page, expect, len(CELLS))
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
