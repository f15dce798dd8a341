"""Streaming Markdown into a cell output, and the usage footer.

While a reply streams, finished Markdown blocks are frozen in their own output
and only the open block is re-sent, at most once per `interval`, so the bytes
sent to the browser grow linearly with the reply instead of quadratically.
At the end the cell is cleared and holds one clean Markdown output with the
whole reply (what the saved notebook keeps), followed by the footer.
Frontends that cannot update displays (terminal IPython) get the end only.
"""

from __future__ import annotations

import html
import time
from typing import Any

from .blocks import last_boundary
from .types import Reply

__all__ = ["LiveMarkdown", "footer_text"]


def _markdown(text: str) -> dict[str, str]:
    return {"text/markdown": text, "text/plain": text}


class LiveMarkdown:
    """One reply's display: `status()` while waiting, `feed()` per delta, `finish()` once."""

    def __init__(self, *, interval: float = 0.1, live: bool = True) -> None:
        from IPython.display import display

        self._display = display
        self.interval = interval
        self.live = live
        self._handle: Any = None  # the open block's output (or the status line)
        self._open = ""  # text of the open block as last published
        self._pending: list[str] = []
        self._next = 0.0
        self._outputs = 0
        self.updates = 0

    def status(self, text: str) -> None:
        """A transient line (e.g. a retry notice), replaced by the reply when it starts."""
        if self.live:
            self._show({"text/plain": text, "text/markdown": f"*{text}*"})
        else:
            print(text, flush=True)
            self._outputs += 1  # so finish() clears it: a saved notebook keeps no status line

    def feed(self, delta: str) -> None:
        self._pending.append(delta)
        if self.live:
            now = time.perf_counter()
            if now >= self._next:
                self._next = now + self.interval
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        text = self._open + "".join(self._pending)
        self._pending.clear()
        cut = last_boundary(text)
        if cut:
            self._show(_markdown(text[:cut]))  # freeze the finished blocks
            self._handle = None
            text = text[cut:]
        self._open = text
        self._show(_markdown(text))

    def _show(self, data: dict[str, str]) -> None:
        self.updates += 1
        if self._handle is None:
            self._handle = self._display(data, raw=True, display_id=True)
            self._outputs += 1
        else:
            self._handle.update(data, raw=True)

    def finish(self, text: str, footer: Reply | None = None) -> None:
        """Leave one clean Markdown output with the whole `text`, then the footer."""
        if self._outputs:
            from IPython.display import clear_output

            clear_output(wait=True)
        if text:
            self._display(_markdown(text), raw=True)
        if footer is not None:
            line = footer_text(footer)
            self._display(
                {
                    "text/plain": line,
                    "text/html": '<div class="nbchat-footer" style="font-size:0.85em;'
                    f'opacity:0.7;font-family:var(--jp-code-font-family,monospace)">{html.escape(line)}</div>',
                },
                raw=True,
            )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def footer_text(reply: Reply) -> str:
    """One line: model · tokens · first token · latency · tok/s · cost · fingerprint.

    e.g. `gpt-4o-mini · 9 prompt + 41 completion = 50 tokens · first token 312 ms · 1.84 s`.
    """
    parts = [reply.model or "unknown model"]
    usage = reply.usage
    if usage is None:
        parts.append("usage not reported")
    else:
        tokens = (
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
            f" = {usage.total_tokens} tokens"
        )
        if usage.cached_tokens:
            tokens += f" ({usage.cached_tokens} cached)"
        parts.append(tokens)
    if reply.ttft is not None:
        parts.append(f"first token {_duration(reply.ttft)}")
    if reply.latency is not None:
        parts.append(_duration(reply.latency))
    rate = reply.tokens_per_second
    if rate is not None:
        parts.append(f"{rate:.0f} tok/s")
    if reply.cost is not None:
        parts.append(f"${reply.cost:.6f}" if reply.cost < 0.01 else f"${reply.cost:.4f}")
    if reply.finish_reason not in (None, "stop"):
        parts.append(f"finish: {reply.finish_reason}")
    if reply.system_fingerprint:
        parts.append(reply.system_fingerprint)
    return " · ".join(parts)
