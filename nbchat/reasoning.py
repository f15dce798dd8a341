"""What a reasoning model thought before it answered: taking it apart, and showing it.

Servers send the thinking in one of three ways:

- `delta.reasoning_content` (DeepSeek, vLLM, llama.cpp's server) or `delta.reasoning`
  (Ollama, OpenRouter) beside `delta.content`: `reasoning_delta` reads either;
- a leading `<think>…</think>` inside the content itself (servers that leave it
  inline): `ThinkSplitter` takes it out of the answer, whatever chunks the tags
  are split across.

The thinking is model text (untrusted): it reaches the browser only escaped,
inside nbchat's own HTML (`thinking_html`, `ThinkingLive`). It is kept on the
reply (`Reply.reasoning`) and in the record, and never sent back: a later
turn's assistant message carries only the answer (DeepSeek refuses a request
whose assistant messages carry `reasoning_content`).
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["ThinkSplitter", "ThinkingLive", "reasoning_delta", "thinking_html", "thinking_summary"]

OPEN, CLOSE = "<think>", "</think>"

#: Style of the thinking while it streams and inside the collapsed <details>: the
#: theme's own colours, dimmed, so it reads in light and dark themes alike.
_BODY = (
    'style="white-space:pre-wrap;opacity:0.75;font-size:0.9em;margin:0.2em 0 0.4em 0;'
    'border-left:3px solid var(--jp-border-color2,rgba(128,128,128,0.4));padding-left:0.6em"'
)


def reasoning_delta(delta: dict[str, Any]) -> str | None:
    """The reasoning text of one stream delta (or of a whole message), if any."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class ThinkSplitter:
    """Takes a leading `<think>…</think>` out of streamed content.

    `push(chunk)` returns `(reasoning, answer)` for that chunk; text that might
    still be the start of a tag is held back until the next chunk (or `end()`).
    Only a reply that *begins* (after white space) with `<think>` is split: a
    `<think>` later in an answer is answer text.
    """

    def __init__(self) -> None:
        self.state = "start"  # start | thinking | answer
        self._held = ""
        self._fresh = False  # right after <think>: newlines are dropped
        self._trim = False  # after </think>: white space before the answer is dropped

    def push(self, chunk: str) -> tuple[str, str]:
        if self.state == "answer":
            return "", self._trimmed(chunk)
        text = self._held + chunk
        self._held = ""
        if self.state == "start":
            stripped = text.lstrip()
            if not stripped or (OPEN.startswith(stripped) and stripped != OPEN):
                self._held = text  # white space, or part of "<think>": not decided yet
                return "", ""
            if not stripped.startswith(OPEN):
                self.state = "answer"
                return "", text
            self.state, self._fresh = "thinking", True
            text = stripped[len(OPEN) :]
        if self._fresh:  # the newline after <think> is no part of the thinking
            text = text.lstrip("\n")
            self._fresh = not text
        end = text.find(CLOSE)
        if end >= 0:
            self.state, self._trim = "answer", True
            return text[:end], self._trimmed(text[end + len(CLOSE) :])
        keep = _partial_tail(text, CLOSE)
        if keep:
            self._held, text = text[-keep:], text[:-keep]
        return text, ""

    def _trimmed(self, text: str) -> str:
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        return text

    def end(self) -> tuple[str, str]:
        """What is still held when the stream ends: undecided text is answer."""
        held, self._held = self._held, ""
        if self.state == "thinking":
            return held, ""
        return "", held


def _partial_tail(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def thinking_summary(text: str, seconds: float | None) -> str:
    """`Thinking · 1,234 characters · 3.2 s` (or `… · 850 ms`)."""
    parts = ["Thinking", f"{len(text):,} characters"]
    if seconds is not None:
        parts.append(f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s")
    return " · ".join(parts)


def thinking_html(text: str, seconds: float | None, *, open_: bool = False) -> str:
    """The thinking, escaped, in a `<details>` (collapsed unless `open_`)."""
    summary = html.escape(thinking_summary(text, seconds))
    flag = " open" if open_ else ""
    return (
        f'<details class="nbchat-thinking"{flag}><summary style="opacity:0.75;cursor:pointer">'
        f"{summary}</summary><div {_BODY}>{html.escape(text)}</div></details>"
    )


def thinking_bundle(text: str, seconds: float | None) -> dict[str, str]:
    """The collapsed thinking as a display bundle (HTML, and text for terminals)."""
    plain = f"[{thinking_summary(text, seconds)}]\n{text}"
    return {"text/html": thinking_html(text, seconds), "text/plain": plain}


class ThinkingLive:
    """The thinking while it streams, with bytes linear in its length.

    Whole lines (up to the last newline, or a cut at a space past `max_open`
    characters) go out once, each in an output of its own; only the open line is
    updated. `show(data, keep)` is the host view's output function.
    """

    def __init__(self, show: Any, max_open: int = 2000) -> None:
        self._show = show
        self._open = ""
        self.max_open = max_open
        self.started = False

    def push(self, text: str) -> None:
        if not self.started:
            self.started = True
            self._show({"text/html": "<i>Thinking…</i>", "text/plain": "Thinking…"}, False)
        text = self._open + text
        cut = text.rfind("\n") + 1
        if not cut and len(text) > self.max_open:
            cut = text.rfind(" ", 0, len(text)) + 1 or len(text)
        if cut:
            self._show(_live_html(text[:cut]), False)
            text = text[cut:]
        self._open = text
        if text:
            self._show(_live_html(text), True)


def _live_html(text: str) -> dict[str, str]:
    return {"text/html": f"<div {_BODY}>{html.escape(text)}</div>", "text/plain": text}


def split_message(message: dict[str, Any]) -> tuple[str | None, str]:
    """(thinking, answer) of a whole `message`: a reasoning field, or a leading `<think>`."""
    text = message.get("content") or message.get("refusal") or ""
    if not isinstance(text, str):
        text = ""
    thought = reasoning_delta(message)
    splitter = ThinkSplitter()
    inline, answer = splitter.push(text)
    more, rest = splitter.end()
    inline += more
    if inline:
        thought = f"{thought}\n\n{inline}" if thought else inline
    return thought or None, answer + rest
