"""ChatStream: one streaming reply, read event by event as the server sends it.

Counts what arrived (text, usage, timings), retries through its client while no
text has arrived, and turns a stream that breaks after text into a StreamError
carrying the partial reply. `close()` stops it at once from any thread.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import NbChatError, StreamError, TransportError
from .failures import Retries, RetryNotice, server_text
from .sse import iter_events
from .types import Reply, Usage

if TYPE_CHECKING:
    import httpx

    from .client import ChatClient

__all__ = ["ChatStream"]


class _Broken(Exception):
    """Why a stream broke off: `kind` is closed | timeout | error | malformed."""

    WORDS = {
        "closed": "connection closed",
        "timeout": "timed out",
        "error": "server error",
        "malformed": "malformed event",
    }

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class ChatStream:
    """One streaming reply: iterate for text deltas, then read `.reply`.

    A stream that breaks before any text is retried like a failed request. If
    it breaks after text arrived, iteration raises StreamError with the partial
    reply; `.text` always holds what arrived so far.
    """

    def __init__(self, client: ChatClient, payload: dict[str, Any], on_retry: RetryNotice | None):
        self._client = client
        self.payload = payload
        self._parts: list[str] = []
        self._response: httpx.Response | None = None
        self._retries = Retries(on_retry, client.max_retries + 1)
        self._reader: int | None = None  # the thread that iterates
        self.started = 0.0
        self.ttft: float | None = None
        self.model: str = payload.get("model", "")
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.fingerprint: str | None = None
        self._reply: Reply | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def _closed(self) -> bool:
        return self._retries.cancelled.is_set()

    @property
    def chunks(self) -> int:
        return len(self._parts)

    @property
    def tokens(self) -> int:
        """Completion tokens so far: the server's count if it sent one, else content chunks."""
        return self.usage.completion_tokens if self.usage else len(self._parts)

    def __iter__(self) -> Iterator[str]:
        self.started = time.perf_counter()
        self._reader = threading.get_ident()
        client = self._client
        while True:
            response = client._send(self.payload, self._retries, stream=True)
            self._response = response
            try:
                if self._closed:  # stopped while the request was on its way
                    return
                yield from self._read(response)
                break
            except _Broken as broken:
                if self._parts or not client._retry(
                    self._retries, _Broken.WORDS[broken.kind], None
                ):
                    raise self._failure(broken) from None
                self.usage = self.finish_reason = self.fingerprint = None
            finally:
                response.close()
        self._reply = self.build_reply(self.finish_reason)

    def _read(self, response: httpx.Response) -> Iterator[str]:
        import httpx

        parts = self._parts
        loads = json.loads
        perf = time.perf_counter
        try:
            for event in iter_events(response.iter_bytes()):
                data = event.data
                if data == "[DONE]":
                    return
                try:
                    content = self._take(loads(data))
                except (ValueError, TypeError, AttributeError, KeyError, IndexError):
                    raise _Broken("malformed", repr(data[:80])) from None
                if content:
                    if self.ttft is None:
                        self.ttft = perf() - self.started
                    parts.append(content)
                    yield content
        except httpx.TimeoutException:
            raise _Broken("timeout") from None
        except httpx.HTTPError:
            raise _Broken("closed") from None
        if self.finish_reason is None:
            raise _Broken("closed")

    def _take(self, obj: Any) -> str | None:
        """Keep one chunk's finish reason, usage and fingerprint; return its text, if any.

        Anything not shaped like a chunk raises TypeError/AttributeError/...: malformed.
        """
        if obj.get("error"):
            raise _Broken("error", server_text(obj))
        content = None
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content is not None and not isinstance(content, str):
                    raise TypeError("content is not text")
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        if obj.get("usage"):
            self.usage = Usage.from_api(obj["usage"])
        if self.fingerprint is None and obj.get("system_fingerprint"):
            self.fingerprint = str(obj["system_fingerprint"])
            self.model = str(obj.get("model") or self.model)
        return content

    def _failure(self, broken: _Broken) -> NbChatError:
        """The error to show: no text yet is a failed request; else an incomplete reply."""
        client = self._client
        timeout = broken.kind == "timeout"
        words = f"no data for {client.timeout:g} s" if timeout else _Broken.WORDS[broken.kind]
        detail = f": {broken.detail}" if broken.detail else ""
        error: NbChatError
        if not self._parts:
            if timeout:
                return client._timeout_error()
            error = TransportError(
                f"no reply: {words} before any text arrived{detail}",
                hint=f"{client.base_url} accepted the request but sent no text; try again later",
            )
        else:
            n = self.tokens
            where = " (ChatMagics.timeout)" if timeout else ""
            error = StreamError(
                f"reply incomplete: {words} after {n} token{'s' * (n != 1)}{where}{detail}",
                partial=self.build_reply("error"),
                hint="the partial reply is shown (and kept by -o) but not added to the "
                "conversation",
            )
        return client._redacted(error)

    def build_reply(self, finish_reason: str | None) -> Reply:
        return Reply(
            text=self.text,
            model=self.model,
            usage=self.usage,
            finish_reason=finish_reason,
            ttft=self.ttft,
            latency=time.perf_counter() - self.started if self.started else None,
            system_fingerprint=self.fingerprint,
            request=self.payload,
        )

    @property
    def reply(self) -> Reply:
        if self._reply is None:
            raise RuntimeError("the stream has not finished")
        return self._reply

    def close(self) -> None:
        """Stop reading, from any thread, at once; nothing is retried after this.

        From the reading thread the response is closed. From another thread (a
        Stop button) the socket is shut down instead: that wakes a read blocked
        on a silent server, and the reading thread then closes the response
        itself, so httpx's connection state is never touched by two threads.
        """
        self._retries.cancelled.set()
        response = self._response
        if response is None:
            return
        if threading.get_ident() == self._reader:
            response.close()
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
