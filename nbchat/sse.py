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
from typing import NamedTuple

__all__ = ["SSEDecoder", "ServerSentEvent", "iter_events"]


class ServerSentEvent(NamedTuple):
    """One event; a named tuple because one is made per streamed chunk (cheapest to build)."""

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
        """The events of every complete line of `buf` (LF line ends); keep the rest."""
        end = buf.rfind(b"\n")
        self._pending = buf[end + 1 :]
        if end < 0:
            return []
        # A newline never splits a UTF-8 sequence: decode all complete lines at once.
        events: list[ServerSentEvent] = []
        data = self._data
        for line in buf[:end].decode("utf-8", "replace").split("\n"):
            if line.startswith("data:"):  # the hot path: one data line per event
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line:
                self._line(line)
            elif data:
                events.append(
                    ServerSentEvent(
                        data[0] if len(data) == 1 else "\n".join(data),
                        self._event or "message",
                        self._id,
                        self._retry,
                    )
                )
                data.clear()
                self._event = ""
            else:
                self._event = ""  # a blank line without data dispatches nothing
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

    def _line(self, line: str) -> None:
        if line[0] == ":":
            return
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


def iter_events(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Decode a whole byte stream lazily."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()
