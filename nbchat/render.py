"""Streaming Markdown into a cell output, and the usage footer.

While a reply streams, each finished piece (see blocks.py) is published once
in an output of its own and only the open rest is re-sent, at most once per
`interval`, so the bytes sent to the browser grow linearly with the reply
instead of quadratically. Live outputs carry only `text/markdown`: they are
replaced at the end, when the cell is cleared and holds one clean output with
the whole reply as Markdown and plain text (what the saved notebook keeps; the
plain copy is what kernel frontends that show only text, such as jupyter
console and qtconsole, display), followed by the footer. Frontends that cannot
update displays (terminal IPython) get the end only.

A very long paragraph is cut between words (blocks.paragraph_cut). Its finished
head is shown as HTML with no bottom margin, so the tail (Markdown, whose first
paragraph has no top margin) continues right under it: the live view shows one
paragraph with an early line break instead of two paragraphs with a gap. The
head is rendered by markdown-it-py and sanitised by nh3 (see sanitize.py),
imported only when the first such cut happens.

Every output that carries model text goes through sanitize.py first: the reply
is untrusted, and a frontend renders a session's own outputs as trusted HTML.

A reasoning model's thinking (nbchat.reasoning) streams above the answer in
outputs of its own (`think`), escaped, line by line; when the answer starts the
cell is cleared once and the thinking stays as one collapsed `<details>`. At the
end `details(reply)` gives the view the reply's thinking and token
probabilities: the thinking is shown collapsed above the answer, and the
`--logprobs` view (nbchat.logprobs) in an output of its own below it.
"""

from __future__ import annotations

import html
from time import perf_counter
from typing import Any

from .blocks import BlockSplitter, Piece
from .reasoning import ThinkingLive, thinking_bundle
from .sanitize import safe_html, safe_markdown
from .types import Reply

__all__ = ["LiveMarkdown", "footer_html", "footer_text", "markdown_bundle", "paragraph_head_html"]

#: An open block that cannot be cut (a code fence, a math block, a table) is
#: re-sent whole on each update; past `OPEN_RATE * interval` characters the
#: updates slow down so it is re-sent at most this many characters per second.
#: The live bytes then grow with the stream's duration, not its square, and the
#: browser is not asked to re-highlight 50 KB of code ten times a second.
OPEN_RATE = 40_000


def paragraph_head_html(text: str, *, remote_images: bool = False) -> str:
    """The head of a paragraph as sanitised `<p>` HTML with no margins."""
    return f'<p style="margin:0">{safe_html(text, remote_images=remote_images)}</p>'


def markdown_bundle(text: str, *, remote_images: bool = False) -> dict[str, str]:
    """Model text as a display bundle: safe Markdown, and the text as it came for text/plain."""
    return {"text/markdown": safe_markdown(text, remote_images=remote_images), "text/plain": text}


class LiveMarkdown:
    """One reply's display: `status()` while waiting, `feed()` per delta, `finish()` once.

    `max_open`: the open block is cut softly (long paragraphs, loose lists) past
    this many characters, which bounds the bytes of each update. A paragraph then
    costs about `max_open / 2` bytes per update: 2,000 keeps an 8 KB paragraph
    streamed at 400 chunks/s near 9 x its size, with an early line break in the
    live view every 1,000-2,000 characters. A code fence is never cut, so a long
    one is re-sent whole on each update, at most OPEN_RATE characters a second.
    """

    def __init__(
        self,
        *,
        interval: float = 0.1,
        live: bool = True,
        max_open: int = 2000,
        remote_images: bool = False,
        header: dict[str, str] | None = None,
    ) -> None:
        from IPython.display import display

        self._display = display
        self.interval = interval
        self.remote_images = remote_images
        self.header = header  # e.g. a context receipt: shown now, and kept above the reply
        if header is not None:
            display(header, raw=True)
        self.live = live
        self._splitter = BlockSplitter(max_open)
        self._handle: Any = None  # the open block's output (or the status line)
        self._pending: list[str] = []
        self._next = 0.0
        self._outputs = 0
        self.updates = 0
        self._thinking: ThinkingLive | None = None  # the thinking while it streams
        self._thought: list[str] = []
        self._think_pending: list[str] = []
        self._think_start = 0.0
        self._reply: Reply | None = None  # see details()

    def status(self, text: str) -> None:
        """A transient line (e.g. a retry notice), replaced by the reply when it starts."""
        if self.live:
            self._show({"text/plain": text, "text/markdown": f"*{self._safe(text)}*"})
        else:
            print(text, flush=True)
            self._outputs += 1  # so finish() clears it: a saved notebook keeps no status line

    def think(self, delta: str) -> None:
        """A piece of a reasoning model's thinking: shown live, escaped, above the answer."""
        if not self.live:
            return
        if self._thinking is None:
            self._thinking = ThinkingLive(self._show_thinking)
            self._think_start = perf_counter()
            self._next = 0.0
        self._thought.append(delta)
        self._think_pending.append(delta)
        now = perf_counter()
        if now >= self._next:  # at most once per interval, as the answer is
            self._thinking.push("".join(self._think_pending))
            self._think_pending.clear()
            self._next = now + self.interval

    def _show_thinking(self, data: dict[str, str], open_: bool) -> None:
        self._show(data, keep=open_)
        if not open_:
            self._handle = None

    def _collapse_thinking(self) -> None:
        """The answer starts: the live thinking becomes one collapsed <details>."""
        from IPython.display import clear_output

        seconds = perf_counter() - self._think_start
        clear_output(wait=True)
        if self.header is not None:
            self._display(self.header, raw=True)
        self._display(thinking_bundle("".join(self._thought), seconds), raw=True)
        self._thought.clear()
        self._think_pending.clear()
        self._thinking = None
        self._handle = None
        self._outputs = 1

    def details(self, reply: Reply) -> None:
        """The reply whose thinking and token probabilities `finish` shows."""
        self._reply = reply

    def feed(self, delta: str) -> None:
        """Called once per streamed chunk: must stay this cheap."""
        if self._thinking is not None:
            self._collapse_thinking()
        if self.live:
            self._pending.append(delta)
            if perf_counter() >= self._next:
                self.flush()

    def flush(self) -> None:
        """Publish what arrived since the last update: finished pieces once, then the open rest."""
        if not self._pending:
            return
        more = "".join(self._pending)
        self._pending.clear()
        for piece in self._splitter.push(more):
            self._show(self._finished(piece), keep=False)
            self._handle = None
        open_text = self._splitter.open
        if open_text:
            self._show({"text/markdown": self._safe(open_text)})
        self._next = perf_counter() + max(self.interval, len(open_text) / OPEN_RATE)

    def _safe(self, text: str) -> str:
        return safe_markdown(text, remote_images=self.remote_images)

    def _finished(self, piece: Piece) -> dict[str, str]:
        if piece.continues:
            return {"text/html": paragraph_head_html(piece.text, remote_images=self.remote_images)}
        return {"text/markdown": self._safe(piece.text)}

    def _show(self, data: dict[str, str], keep: bool = True) -> None:
        self.updates += 1
        if self._handle is not None:
            self._handle.update(data, raw=True)
        else:
            self._handle = self._display(data, raw=True, display_id=keep or None)
            self._outputs += 1

    def restart(self, header: dict[str, str]) -> None:
        """Start over below a new `header` (tool rounds: the text and cards so far).

        The cell is cleared and shows `header`; later text streams as a new reply.
        Not live, nothing is shown now: `finish` shows the header above the reply.
        """
        from IPython.display import clear_output

        self.header = header
        if not self.live:
            self._outputs = max(self._outputs, 1)  # so finish() clears and shows the header
            return
        self.flush()
        clear_output(wait=True)
        self._display(header, raw=True)
        self._splitter = BlockSplitter(self._splitter.max_open)
        self._handle = None
        self._pending.clear()
        self._outputs = 1  # so finish() clears and shows the header again

    def finish(self, text: str, footer: Reply | None = None) -> None:
        """Leave one clean Markdown output with the whole `text`, then the footer."""
        if self._outputs:
            from IPython.display import clear_output

            clear_output(wait=True)
            if self.header is not None:
                self._display(self.header, raw=True)
        reply, self._reply = self._reply, None
        if reply is not None and reply.reasoning:
            self._display(thinking_bundle(reply.reasoning, reply.reasoning_time), raw=True)
        if text:
            self._display(markdown_bundle(text, remote_images=self.remote_images), raw=True)
        if reply is not None and reply.logprobs:
            from .logprobs import logprobs_bundle

            self._display(logprobs_bundle(reply.logprobs), raw=True)
        if footer is not None:
            line = footer_text(footer)
            self._display({"text/plain": line, "text/html": footer_html(line)}, raw=True)


def footer_html(line: str) -> str:
    """The footer line (it names the server's model: escaped) in small monospace."""
    return (
        '<div class="nbchat-footer" style="font-size:0.85em;opacity:0.7;'
        f'font-family:var(--jp-code-font-family,monospace)">{html.escape(line)}</div>'
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def footer_text(reply: Reply) -> str:
    """One line: model · tokens · first token · latency · tok/s · cost · fingerprint.

    e.g. `gpt-4o-mini · 9 prompt + 41 completion = 50 tokens · first token 312 ms · 1.84 s`.
    """
    parts = [reply.model or "unknown model"]
    usage = reply.usage
    if usage is None and reply.estimated_tokens:  # the server reported none: our count
        parts.append(f"≈{reply.estimated_tokens} completion tokens (estimated)")
    elif usage is None:
        parts.append("usage not reported")
    else:
        tokens = (
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
            f" = {usage.total_tokens} tokens"
        )
        details = [f"{usage.cached_tokens} cached"] if usage.cached_tokens else []
        if usage.reasoning_tokens:
            details.append(f"{usage.reasoning_tokens} reasoning")
        if details:
            tokens += f" ({', '.join(details)})"
        parts.append(tokens)
        accepted = usage.accepted_prediction_tokens or 0
        rejected = usage.rejected_prediction_tokens or 0
        if accepted or rejected:
            parts.append(f"prediction {accepted} accepted, {rejected} rejected")
    if reply.ttft is not None:
        parts.append(f"first token {_duration(reply.ttft)}")
    if reply.reasoning and reply.answer_ttft is not None:
        parts.append(f"first answer token {_duration(reply.answer_ttft)}")
    if reply.latency is not None:
        parts.append(_duration(reply.latency))
    rate = reply.tokens_per_second
    if rate is not None:
        parts.append(f"{rate:.0f} tok/s")
    if reply.cost is not None:
        parts.append(f"${reply.cost:.6f}" if reply.cost < 0.01 else f"${reply.cost:.4f}")
    if reply.tool_rounds:  # a turn that used tools: its calls and rounds
        n, rounds = len(reply.tool_calls), reply.tool_rounds
        parts.append(f"{n} tool call{'s' * (n != 1)} · {rounds} round{'s' * (rounds != 1)}")
    if reply.finish_reason not in (None, "stop"):
        parts.append(f"finish: {reply.finish_reason}")
    if reply.system_fingerprint:
        parts.append(reply.system_fingerprint)
    return " · ".join(parts)
