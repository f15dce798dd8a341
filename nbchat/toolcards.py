"""Tool cards: each function call a model makes, shown in the cell as it happens.

A card is nbchat's own HTML around escaped text: the function name, the arguments
and the result came from a model or from a function fed by one, so every value
goes through `html.escape` and none is interpolated raw. A card is a `<details>`
whose summary is the one-line call -> outcome, with the full arguments and result
inside, plus a text/plain twin; in the saved notebook each call is one line.

While a call is asked, approved and run its card updates in place. When a round
ends the cell is redrawn (`LiveMarkdown.restart`): what the model wrote in that
round and its cards become the header above the next round's text, so the final
output reads top to bottom: receipt, rounds with their cards, answer, footer.
"""

from __future__ import annotations

import html
from typing import Any

from .tools import call_line
from .types import ToolCall

__all__ = ["ToolCards", "card_bundle", "card_line"]

_WORDS = {
    "asked": "waiting for your answer (y/N)",
    "approved": "approved, running…",
    "running": "running…",
    "declined": "declined",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f" in {seconds * 1000:.0f} ms" if seconds < 1 else f" in {seconds:.2f} s"


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def card_line(call: ToolCall, state: str) -> str:
    """One line: `revenue(region="north", year=2024) · ran in 12 ms → 1200000.0`."""
    head = f"🔧 {call_line(call)}"
    if state == "ran":
        return f"{head} · ran{_duration(call.seconds)} → {_short(call.result or '')}"
    if state == "error":
        return f"{head} · failed{_duration(call.seconds)} → {_short(call.result or '')}"
    return f"{head} · {_WORDS.get(state, state)}"


def card_html(call: ToolCall, state: str) -> str:
    line = html.escape(card_line(call, state))
    body = f"<div>arguments</div><pre>{html.escape(call.arguments)}</pre>"
    if call.result is not None:
        body += f"<div>result</div><pre>{html.escape(call.result)}</pre>"
    return (
        '<details class="nbchat-tool" style="font-size:0.9em;margin:0.2em 0">'
        '<summary style="font-family:var(--jp-code-font-family,monospace);cursor:pointer">'
        f"{line}</summary>"
        '<div style="padding-left:1.5em;white-space:normal">'
        f"{body}</div></details>"
    )


def card_bundle(call: ToolCall, state: str) -> dict[str, str]:
    return {"text/plain": card_line(call, state), "text/html": card_html(call, state)}


def _text_html(text: str) -> str:
    return f'<div class="nbchat-tool-text" style="white-space:pre-wrap">{html.escape(text)}</div>'


class ToolCards:
    """The cards of one turn in a cell; `view` is the turn's LiveMarkdown (or a wrapper)."""

    def __init__(self, view: Any) -> None:
        from IPython.display import display

        self._display: Any = display
        self.view = getattr(view, "inner", view)  # JsonView wraps the Markdown view
        self.base = getattr(self.view, "header", None)  # the receipt, if any
        self._html: list[str] = []
        self._plain: list[str] = []
        self._handles: dict[str, Any] = {}
        #: Not live ('final' display mode, terminal IPython): no card until the end, where
        #: the cell holds only the final outputs (nbval compares every display it sees).
        self.live = bool(getattr(self.view, "live", True))

    def show(self, call: ToolCall, state: str) -> None:
        if not self.live:
            return
        bundle = card_bundle(call, state)
        handle = self._handles.get(call.id)
        if handle is None:
            self._handles[call.id] = self._display(bundle, raw=True, display_id=True)
        else:
            handle.update(bundle, raw=True)

    def round(self, text: str, calls: tuple[ToolCall, ...]) -> None:
        """A round ended: its text and cards join the header; the next text goes below."""
        if text.strip():
            self._html.append(_text_html(text))
            self._plain.append(text)
        for call in calls:
            bundle = card_bundle(call, call.status or "")
            self._html.append(bundle["text/html"])
            self._plain.append(bundle["text/plain"])
        self._handles.clear()
        restart = getattr(self.view, "restart", None)
        if restart is not None:
            restart(self.header())

    def header(self) -> dict[str, str]:
        """The receipt (if any), then every finished round: one output."""
        html_parts, plain_parts = [], []
        if self.base:
            html_parts.append(
                self.base.get("text/html")
                or f"<pre>{html.escape(self.base.get('text/plain', ''))}</pre>"
            )
            plain_parts.append(self.base.get("text/plain", ""))
        html_parts += self._html
        plain_parts += self._plain
        return {"text/plain": "\n".join(plain_parts), "text/html": "".join(html_parts)}
