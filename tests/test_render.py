"""The live view: what is published while a reply streams, and what stays at the end.

A recording DisplayPublisher stands in for the kernel's, so every display_data,
update_display_data and clear_output message of a real `%%chat` run is seen.
"""

from __future__ import annotations

import html
import itertools
import re
import time
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher

from nbchat.mockserver import reply_pieces
from nbchat.render import LiveMarkdown, paragraph_head_html

INTERVAL = 0.05


class Recorder(DisplayPublisher):  # type: ignore[misc]
    """Keeps every display message in order, as the kernel would send them."""

    def __init__(self) -> None:
        super().__init__(shell=None)
        self.messages: list[dict[str, Any]] = []

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
        display_id = (transient or {}).get("display_id")
        kind = "update_display_data" if update else "display_data"
        self.messages.append({"kind": kind, "data": dict(data), "id": display_id})

    def clear_output(self, wait=False):
        self.messages.append({"kind": "clear_output", "wait": wait})


@pytest.fixture
def recorder(ip):
    saved = ip.display_pub
    ip.display_pub = recorder = Recorder()
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", f"ChatMagics.update_interval = {INTERVAL}")
    yield recorder
    ip.display_pub = saved


def live_views(messages: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """What the frontend shows after each message before the clear (outputs in order)."""
    outputs: list[dict[str, Any]] = []
    views = []
    for msg in messages:
        if msg["kind"] == "clear_output":
            break
        if msg["kind"] == "update_display_data":
            target = next(o for o in outputs if o["id"] == msg["id"])
            target["data"] = msg["data"]
        else:
            outputs.append({"id": msg["id"], "data": msg["data"]})
        views.append([o["data"] for o in outputs])
    return views


def source_of(data: dict[str, str]) -> str:
    """The Markdown a live output shows (a paragraph head's HTML back to its plain words)."""
    if "text/markdown" in data:
        return data["text/markdown"]
    return html.unescape(re.sub(r"<[^>]+>", "", data["text/html"]))


def reply_text(**options: Any) -> str:
    return "".join(reply_pieces([{"role": "user", "content": "hi"}], "gpt-4o-mini", **options))


# One view update sends at most three messages: the finished blocks, the head of a long
# paragraph, and the open rest.
PER_UPDATE = 3


def test_publishes_are_bounded_by_the_rate_not_the_chunks(ip, recorder):
    """1,000 chunks over at least a second: at most one view update per interval.

    The bound comes from the stream's measured duration, so a slow machine only
    loosens it; without the throttle every chunk would publish (1,000+ messages).
    """
    started = time.perf_counter()
    result = ip.run_cell("%%chat -m gpt-4o-mini@chunks=1000,delay=0.001,reply=markdown\nhi")
    elapsed = time.perf_counter() - started
    assert result.success
    kinds = [m["kind"] for m in recorder.messages]
    live = kinds[: kinds.index("clear_output")]
    updates = elapsed / INTERVAL + 1  # the first chunk publishes at once
    assert 5 < len(live) <= PER_UPDATE * updates


def test_live_outputs_always_join_to_a_prefix_of_the_reply(ip, recorder):
    result = ip.run_cell("%%chat -m gpt-4o-mini@chunks=600,delay=0.001,reply=markdown\nhi")
    assert result.success
    text = reply_text(reply="markdown", chunks=600)
    views = live_views(recorder.messages)
    assert len(views) > 5
    shown = ["".join(source_of(d) for d in view) for view in views]
    for before, after in itertools.pairwise(shown):
        assert text.startswith(after) and len(after) >= len(before)
    for view in views:  # live outputs are transient: Markdown only, no text/plain copy
        assert all(set(d) == {"text/markdown"} for d in view)


def test_the_end_is_one_clean_markdown_output_and_the_footer(ip, recorder):
    ip.run_cell("%%chat -m gpt-4o-mini@chunks=600,delay=0.001,reply=markdown\nhi")
    kinds = [m["kind"] for m in recorder.messages]
    clear = kinds.index("clear_output")
    assert recorder.messages[clear]["wait"] is True  # no flicker
    final = recorder.messages[clear + 1 :]
    assert [m["kind"] for m in final] == ["display_data", "display_data"]
    assert final[0]["data"] == {"text/markdown": reply_text(reply="markdown", chunks=600)} | {
        "text/plain": reply_text(reply="markdown", chunks=600)
    }
    assert "600 completion" in final[1]["data"]["text/plain"]


def test_a_long_paragraph_streams_as_heads_that_join_without_a_gap(ip, recorder):
    result = ip.run_cell("%%chat -m gpt-4o-mini@chunks=1300,delay=0.0005,reply=paragraph\nhi")
    assert result.success
    text = reply_text(reply="paragraph", chunks=1300)
    views = live_views(recorder.messages)
    last = views[-1]
    heads = [d["text/html"] for d in last if "text/html" in d]
    assert heads, "an 8 KB paragraph is cut into heads"
    assert all(h.startswith('<p style="margin:0">') for h in heads)
    for view in views:
        assert text.startswith("".join(source_of(d) for d in view))
    # each update re-sends at most the open tail (max_open), not the whole paragraph
    sizes = [len(m["data"].get("text/markdown", "")) for m in recorder.messages[:-3]]
    assert max(sizes) < 3000 + 1300


def test_paragraph_head_html_renders_inline_markdown_and_keeps_math():
    head = "Some **bold**, `x*y`, [a](https://e.org) & $a*b*c$ then $$d_1 * e_2$$ "
    assert paragraph_head_html(head) == (
        '<p style="margin:0">Some <strong>bold</strong>, <code>x*y</code>, '
        '<a href="https://e.org" rel="noopener noreferrer nofollow">a</a> &amp; $a*b*c$ '
        "then $$d_1 * e_2$$ </p>"
    )


def test_final_mode_publishes_nothing_until_the_end(ip, recorder):
    ip.run_line_magic("config", "ChatMagics.display_mode = 'final'")
    ip.run_cell("%%chat -m gpt-4o-mini@chunks=300,delay=0.0005\nhi")
    assert [m["kind"] for m in recorder.messages] == ["display_data", "display_data"]


def test_a_status_line_is_replaced_by_the_reply(ip, recorder):
    view = LiveMarkdown(interval=0)
    view.status("429 rate limited — retrying in 1.0 s")
    view.feed("Hello")
    view.finish("Hello")
    first, second = recorder.messages[:2]
    assert "retrying" in first["data"]["text/plain"]
    assert second["kind"] == "update_display_data" and second["id"] == first["id"]
    assert second["data"] == {"text/markdown": "Hello"}


def test_a_long_code_block_is_resent_at_a_bounded_rate(recorder, monkeypatch):
    """A fence is never cut, so past OPEN_RATE * interval characters its updates slow
    down: the live bytes grow with the stream's duration, not with its square."""
    import nbchat.render as render

    clock = [0.0]
    monkeypatch.setattr(render, "perf_counter", lambda: clock[0])
    view = LiveMarkdown(interval=0.1)
    line = "    total = total + compute(value, index)  # a line of code\n"
    chunks, per_chunk = 2000, 1 / 400  # 2,000 lines at 400 chunks/s: 5 s, 120 KB
    view.feed("```python\n")
    for _ in range(chunks):
        clock[0] += per_chunk
        view.feed(line)
    live = [m for m in recorder.messages if m["kind"] != "clear_output"]
    sent = sum(len(m["data"]["text/markdown"]) for m in live)
    duration = chunks * per_chunk
    largest = len(line) * chunks + 20
    assert sent <= render.OPEN_RATE * duration + largest  # unthrottled: ~3 MB
    assert len(live) >= 5  # still updating as it grows (every ~3 s at 120 KB)
