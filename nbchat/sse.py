"""Incremental server-sent-events decoder: bytes in, events out.

Pure and stateful, so it works for any chunk boundaries the network produces
(a line, a UTF-8 character or a CRLF pair may be split across chunks). It does
the least work per chunk: one split per network read, one decode per line.
Follows the WHATWG event-stream parsing rules: `data` lines are joined with
newlines, `event`, `id` and `retry` fields, comments start with ':', a blank
line dispatches, a leading BOM is skipped. Undecodable bytes become U+FFFD
(as the spec says) so arbitrary input never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent", "iter_events"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it byte chunks; it returns the events completed by each chunk."""

    __slots__ = ("_data", "_event", "_id", "_pending", "_retry", "_started")

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buf = self._pending + chunk if self._pending else chunk
        if not self._started and buf:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._pending = buf
                return []
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
            self._started = True
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # may be the first half of a CRLF
                self._pending = buf
                return []
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return self._lines(buf)

    def _lines(self, buf: bytes) -> list[ServerSentEvent]:
        """Process every complete line of `buf` (LF-only); keep the unfinished rest."""
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        events: list[ServerSentEvent] = []
        for raw in lines:
            event = self._line(raw)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: the events still held back, then a clean slate.

        A final CR ends a line (it was only held in case an LF followed), so the
        lines before it still count; an unterminated last line and an event
        without its blank line are discarded, as the spec says.
        """
        pending, self._pending = self._pending, b""
        events: list[ServerSentEvent] = []
        if pending.endswith(b"\r"):
            events = self._lines(pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        self._pending, self._data, self._event = b"", [], ""
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data), event=event or "message", id=self._id, retry=self._retry
        )


def iter_events(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Decode a whole byte stream lazily."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()
