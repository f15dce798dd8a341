"""How models write, in a real browser: thinking, token probabilities and choices stay inert.

The hostile text of test_hostile_browser goes through a reasoning model's
thinking (as a field, and inline as <think>, which the mock quotes the user's
message in), the shaded `--logprobs` view (each token and its hover title) and
`-n 2` choices. After hovering every token and clicking every summary, no
payload flag is set and no host but 127.0.0.1 was asked for anything; the
same after saving, `jupyter trust` and reloading; the saved file is inert.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .lab import chromium_page, jupyterlab, open_notebook, run_cells, save_trust_reload
from .test_hostile_browser import FLAGS, HOSTILE, _poke_everything, saved_outputs_inert

CELLS = [
    "%load_ext nbchat",
    f"%%chat --logprobs -m gpt-4o-mini@reply=verbatim,reasoning=field,delay=0.003\n{HOSTILE}",
    f"%%chat -m gpt-4o-mini@reply=verbatim,reasoning=think,chunks=80,delay=0.003\n{HOSTILE}",
    f"%%chat -n 2 -t 1 -m gpt-4o-mini@reply=verbatim\n{HOSTILE}",
]


def test_thinking_logprobs_and_choices_run_nothing(server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("NBCHAT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with (
        jupyterlab(server, tmp_path, "writing.ipynb", CELLS) as url,
        sync_playwright() as pw,
        chromium_page(pw, expect, outside) as page,
    ):
        try:
            open_notebook(page, expect, url)
            run_cells(page, expect, len(CELLS))
            _check(page, expect)
            page.locator(".jp-Notebook .jp-OutputArea").nth(1).screenshot(
                path=str(shots / "writing-logprobs.png")
            )
            assert outside == [], f"the browser asked another host: {outside}"

            saved = save_trust_reload(page, expect, server, tmp_path, "writing.ipynb")
            _saved_file_is_inert(saved)
            _check(page, expect)
            assert outside == [], f"the browser asked another host: {outside}"
        finally:
            page.screenshot(path=str(shots / "writing-last.png"))


def _check(page, expect) -> None:
    """Two collapsed thinkings, the shaded view with titles, the choices: all as text."""
    outputs = page.locator(".jp-Notebook .jp-OutputArea")
    thinking = page.locator(".nbchat-thinking")
    expect(thinking).to_have_count(2)
    expect(thinking.first).not_to_have_attribute("open", "")
    tokens = page.locator(".nbchat-logprobs span[title]")
    expect(tokens.first).to_be_visible()
    count = tokens.count()
    assert count > 50
    for i in range(0, count, max(count // 40, 1)):  # hover across the whole reply
        tokens.nth(i).hover()
    titles = [tokens.nth(i).get_attribute("title") or "" for i in range(count)]
    assert all(t.startswith("p ") for t in titles)
    expect(outputs.nth(1).locator(".nbchat-logprobs")).to_contain_text("onerror")
    expect(outputs.nth(3)).to_contain_text("finish: stop")
    _poke_everything(page)  # clicks both thinking summaries open, hovers every link
    expect(thinking.first).to_contain_text("The user wrote: Intro <img src=x onerror=")
    assert page.evaluate(FLAGS) == [], "a payload ran"
    expect(page.locator(".jp-Notebook .jp-OutputArea img")).to_have_count(0)


def _saved_file_is_inert(path: Path) -> None:
    html_outputs = saved_outputs_inert(path, _without_our_styles)[1]
    assert html_outputs >= 5, "thinking (2), the shaded view and the footers were saved"


def _our_styles() -> set[tuple[str, str]]:
    """(tag, style) of nbchat's own markup around thinking and the shaded view."""
    from bs4 import BeautifulSoup

    from nbchat.logprobs import Logprobs, TokenLogprob, logprobs_html
    from nbchat.reasoning import thinking_html

    sample = thinking_html("x", 1.0) + logprobs_html(Logprobs([TokenLogprob("x", math.log(0.5))]))
    return {(t.name, t["style"]) for t in BeautifulSoup(sample, "html.parser").find_all(style=True)}


def _without_our_styles(page: str) -> str:
    """`page` with nbchat's own style attributes removed; any other is a problem for _problems.

    A token's background must be exactly `rgba(255,99,71,ALPHA)`.
    """
    from bs4 import BeautifulSoup

    ours = _our_styles()
    soup = BeautifulSoup(page, "html.parser")
    for tag in soup.find_all(style=True):
        style = tag["style"]
        token = tag.name == "span" and re.fullmatch(r"background:rgba\(255,99,71,[\d.]+\)", style)
        if (tag.name, style) in ours or token:
            del tag["style"]
    return str(soup)
