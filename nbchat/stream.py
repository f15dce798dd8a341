"""ChatStream: one streaming reply, read event by event as the server sends it.

Counts what arrived (text, usage, timings), retries through its client while no
text has arrived, and turns a stream that breaks after text into a StreamError
carrying the partial reply. `close()` stops it at once from any thread.

Errors are raised outside `except` blocks, so they chain no httpx exception:
those hold the request, whose headers carry the key.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import NbChatError, StreamError, TransportError
from .estimate import estimate_completion_tokens
from .failures import Retries, RetryNotice, empty_reply, media_kinds, server_text, trail
from .reasoning import ThinkSplitter, reasoning_delta, split_message
from .sse import iter_events
from .toolcalls import ToolCallParts, from_message
from .types import Reply, Usage

if TYPE_CHECKING:
    import httpx2 as httpx

    from .client import ChatClient

__all__ = ["ChatStream", "parse_completion", "without_stream_options"]

#: After `[DONE]` the rest of the body (normally only the end of the chunked
#: encoding) is read so the connection goes back to httpx's pool; a server that
#: sends more than this many bytes, or holds the body open longer than
#: DRAIN_SECONDS, loses the connection instead.
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 0.5


class _Broken(Exception):
    """Why a stream broke off: `kind` is closed | timeout | error | malformed | early | empty."""

    WORDS = {
        "closed": "connection closed",
        "timeout": "timed out",
        "error": "server error",
        "malformed": "malformed event",
        # `data: [DONE]` without a finish_reason: llama-cpp-python's server ends a
        # running stream so when another request arrives.
        "early": "the server ended the stream early (no finish_reason)",
        "empty": "empty reply",  # a 200 with no body at all
    }

    def __init__(self, kind: str, detail: str = "", exc: Exception | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.exc = exc  # the httpx error behind it, if any

    @classmethod
    def transport(cls, exc: Exception) -> _Broken:
        """An httpx error while reading the body: a timeout, or the connection closed."""
        import httpx2 as httpx

        return cls("timeout" if isinstance(exc, httpx.TimeoutException) else "closed", exc=exc)


class _Choice:
    """Choice `index` > 0 of a request with `n` > 1: its text and how it ended."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.thinking: list[str] = []
        self.finish_reason: str | None = None
        self.splitter = ThinkSplitter()

    @property
    def text(self) -> str:
        return "".join(self.parts)


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
        #: When data last arrived (or the attempt began): a stream that sends no data
        #: for `client.timeout` s times out, whatever comments keep its bytes flowing.
        self._progress = 0.0
        self._received = False  # any byte of the body (an empty 200 is told apart)
        self._one_body = False  # the reply came as one JSON body, not as events
        self._tool_parts = ToolCallParts()  # streamed function calls (nbchat.toolcalls)
        # Reasoning (nbchat.reasoning): thinking beside or inside the content, kept apart.
        self._thinking: list[str] = []
        self._splitter = ThinkSplitter()
        self._think_first: float | None = None
        self._think_last: float | None = None
        self.answer_ttft: float | None = None
        self._logprobs: list[dict[str, Any]] = []  # choice 0's logprobs.content items
        self.others: dict[int, _Choice] = {}  # choices 1.. of a request with n > 1
        #: Called (kind, choice index, text) for each piece of thinking ("reasoning") and
        #: each text delta of choices other than the first ("content"), as they arrive.
        self.on_delta: Callable[[str, int, str], None] | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def reasoning(self) -> str:
        return "".join(self._thinking)

    @property
    def _arrived(self) -> bool:
        """Whether any text (answer or thinking, of any choice) arrived."""
        return bool(self._parts or self._thinking or self.others)

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
            self._progress = time.perf_counter()
            response = client._send(self.payload, self._retries, stream=True)
            if not client.stream_options:
                self.payload = without_stream_options(self.payload)  # as it was sent
            self._response = response
            broken: _Broken | None = None
            try:
                if self._closed:  # stopped while the request was on its way
                    return
                if _is_json(response):  # the server ignored "stream": one whole completion
                    yield from self._whole(response)
                else:
                    yield from self._read(response)
            except _Broken as exc:
                broken = exc
            finally:
                response.close()
            if broken is None:
                break
            # Out of the except block: the error raised chains nothing (see the docstring).
            if broken.kind == "empty" and media_kinds(self.payload):
                raise client._redacted(empty_reply(self.payload))  # asking again cannot help
            if self._arrived or not client._retry(self._retries, _Broken.WORDS[broken.kind], None):
                raise self._failure(broken)
            self.usage = self.finish_reason = self.fingerprint = None
            self._received = False
            self._tool_parts = ToolCallParts()
            self._splitter, self._logprobs = ThinkSplitter(), []  # white space held back
        self._reply = self.build_reply(self.finish_reason)

    def _broken(self, kind: str, detail: str) -> _Broken:
        """A _Broken whose detail (the server's words) has the key masked."""
        key = self._client.api_key
        return _Broken(kind, key.redact(detail) if key else detail)

    def _read(self, response: httpx.Response) -> Iterator[str]:
        import httpx2 as httpx

        parts = self._parts
        loads = json.loads
        perf = time.perf_counter
        chunks = response.iter_bytes()
        watchdog = _Watchdog.start(self, response)
        try:
            for event in iter_events(self._watched(chunks)):
                data = event.data
                if data == "[DONE]":
                    self._drain(response, chunks)
                    if self.finish_reason is None:
                        raise _Broken("early")
                    yield from self._end_thinking()
                    return
                try:
                    content = self._take(loads(data))
                except (ValueError, TypeError, AttributeError, KeyError, IndexError):
                    raise self._broken("malformed", repr(data[:80])) from None
                if content:
                    now = perf()
                    if self.ttft is None:
                        self.ttft = now - self.started
                    if self.answer_ttft is None:
                        self.answer_ttft = now - self.started
                    self._progress = now
                    parts.append(content)
                    yield content
        except httpx.HTTPError as exc:
            if watchdog is not None and watchdog.fired:
                raise _Broken("timeout") from None
            raise _Broken.transport(exc) from None
        finally:
            if watchdog is not None:
                watchdog.stop()
        if self.finish_reason is None:
            raise _Broken("closed" if self._received else "empty")
        yield from self._end_thinking()

    def _end_thinking(self) -> Iterator[str]:
        """At the end: text held back as a possible `</think>` goes where it belongs."""
        thought, answer = self._splitter.end()
        if thought:
            self._think(0, thought)
        for index, choice in self.others.items():
            more, rest = choice.splitter.end()
            if more:
                self._think(index, more)
            if rest:
                self._other_content(index, rest)
        if answer:
            if self.answer_ttft is None:
                self.answer_ttft = time.perf_counter() - self.started
            self._parts.append(answer)
            yield answer

    def _think(self, index: int, text: str) -> None:
        """Keep a piece of thinking of choice `index` and pass it on."""
        now = time.perf_counter()
        if index == 0:
            self._thinking.append(text)
            if self._think_first is None:
                self._think_first = now
            self._think_last = now
        else:
            self.others.setdefault(index, _Choice()).thinking.append(text)
        if self.ttft is None:
            self.ttft = now - self.started
        if self.on_delta is not None:
            self.on_delta("reasoning", index, text)

    def _other_content(self, index: int, text: str) -> None:
        self.others.setdefault(index, _Choice()).parts.append(text)
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.started
        if self.on_delta is not None:
            self.on_delta("content", index, text)

    def _watched(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The body's chunks, until no data came for `timeout` s.

        httpx's read timeout restarts with every byte, so a server sending `: ping`
        comments (or empty events) while it is stuck would hold the cell forever;
        only data (text, a finish reason, usage) counts as progress here. A socket
        blocked in a read is ended by `_Watchdog`; this check covers transports
        without one.
        """
        timeout = self._client.timeout
        perf = time.perf_counter
        for chunk in chunks:
            if perf() - self._progress > timeout:
                raise _Broken("timeout")
            self._received = True
            yield chunk

    def _drain(self, response: httpx.Response, chunks: Iterator[bytes]) -> None:
        """Read the body to its end, so httpx keeps the connection for the next request
        (a new one costs a TCP and TLS handshake); give up past DRAIN_BYTES or DRAIN_SECONDS.

        The time limit is a timer that shuts the socket down, as `close()` does from
        another thread; the reply is complete either way.
        """
        import httpx2 as httpx

        timer = None
        if _socket(response) is not None:
            timer = threading.Timer(DRAIN_SECONDS, _shutdown, (response,))
            timer.daemon = True
            timer.start()
        drained = 0
        try:
            for chunk in chunks:
                drained += len(chunk)
                if drained > DRAIN_BYTES:
                    return
        except httpx.HTTPError:
            return
        finally:
            if timer is not None:
                timer.cancel()

    def _whole(self, response: httpx.Response) -> Iterator[str]:
        """A complete `chat.completion` answering a streaming request: its text at once."""
        import httpx2 as httpx

        try:
            data = json.loads(response.read())
        except httpx.HTTPError as exc:
            raise _Broken.transport(exc) from None
        except ValueError:
            raise self._broken("malformed", repr(response.text[:80])) from None
        if isinstance(data, dict) and data.get("error"):
            raise self._broken("error", server_text(data))
        try:
            reply = parse_completion(data, self.payload, None)
        except (ValueError, AttributeError, TypeError, IndexError):
            raise self._broken("malformed", repr(response.text[:80])) from None
        self.model, self.usage = reply.model, reply.usage
        self.finish_reason, self.fingerprint = reply.finish_reason, reply.system_fingerprint
        self._one_body = True
        self._whole_calls = reply.tool_calls
        if reply.reasoning:
            self._think(0, reply.reasoning)
        if reply.logprobs is not None:
            self._logprobs = [_api_item(t) for t in reply.logprobs]
        if reply.text:
            self._parts.append(reply.text)
            yield reply.text

    def _take(self, obj: Any) -> str | None:
        """Keep one chunk's model, finish reason, usage and fingerprint; return its text, if any.

        Anything not shaped like a chunk raises TypeError/AttributeError/...: malformed.
        """
        if obj.get("error"):
            raise self._broken("error", server_text(obj))
        content = None
        for choice in obj.get("choices") or ():
            index = choice.get("index") or 0
            delta = choice.get("delta")
            if delta:
                piece = delta.get("content")
                if piece is not None and not isinstance(piece, str):
                    raise TypeError("content is not text")
                if len(delta) > 1 or not piece:  # more than text (the usual chunk): look
                    self._besides_text(index, delta, piece)
                if piece:
                    splitter = self._splitter if index == 0 else self._other(index).splitter
                    thought, piece = splitter.push(piece)
                    if thought:
                        self._think(index, thought)
                if index == 0:
                    content = piece or None
                elif piece:
                    self._other_content(index, piece)
            logprobs = choice.get("logprobs")
            if index == 0 and logprobs and logprobs.get("content"):
                self._logprobs.extend(logprobs["content"])
            if choice.get("finish_reason"):
                if index == 0:
                    self.finish_reason = str(choice["finish_reason"])
                else:
                    self._other(index).finish_reason = str(choice["finish_reason"])
                self._progress = time.perf_counter()
        if obj.get("usage"):
            self.usage = Usage.from_api(obj["usage"])
            self._progress = time.perf_counter()
        model = obj.get("model")
        if model:  # e.g. gpt-4o-mini-2024-07-18 for gpt-4o-mini, fingerprint or not
            self.model = str(model)
        if self.fingerprint is None and obj.get("system_fingerprint"):
            self.fingerprint = str(obj["system_fingerprint"])
        return content

    def _besides_text(self, index: int, delta: dict[str, Any], piece: str | None) -> None:
        """A delta's tool calls (choice 0's: nbchat.tools) and reasoning; both are progress."""
        if delta.get("tool_calls") and index == 0:
            self._tool_parts.add(delta["tool_calls"])
        if not piece and any(v for k, v in delta.items() if k != "role"):
            self._progress = time.perf_counter()  # reasoning, tool calls: data too
        thought = reasoning_delta(delta)
        if thought:
            self._think(index, thought)

    def _other(self, index: int) -> _Choice:
        return self.others.setdefault(index, _Choice())

    def _failure(self, broken: _Broken) -> NbChatError:
        """The error to show: no text yet is a failed request; else an incomplete reply."""
        client = self._client
        timeout = broken.kind == "timeout"
        words = f"no data for {client.timeout:g} s" if timeout else _Broken.WORDS[broken.kind]
        detail = f": {broken.detail}" if broken.detail else ""
        error: NbChatError
        if not self._arrived:
            if timeout:
                return client._timeout_error(broken.exc)
            if broken.kind == "empty":
                return client._redacted(empty_reply(self.payload))
            error = TransportError(
                f"no reply: {words} before any text arrived{detail}",
                hint=f"{client.base_url} accepted the request but sent no text; try again later",
            )
        else:
            n = self.tokens
            where = " (ChatMagics.timeout)" if timeout else ""
            hint = "the partial reply is shown (and kept by -o) but not added to the conversation"
            if broken.kind == "early":
                hint += "; some local servers end a stream when another request arrives"
            error = StreamError(
                f"reply incomplete: {words} after {n} token{'s' * (n != 1)}{where}{detail}",
                partial=self.build_reply("error"),
                hint=hint,
            )
        if broken.exc is not None:  # for a traceback: what httpx said, without its request
            error.__cause__ = trail(broken.exc, client.api_key)
        return client._redacted(error)

    def build_reply(self, finish_reason: str | None) -> Reply:
        from .logprobs import Logprobs

        estimated = None
        if self.usage is None:  # count what arrived: deltas, or the one body's text
            deltas = None if self._one_body else len(self._parts)
            estimated = estimate_completion_tokens(self.text, deltas)
        first, last = self._think_first, self._think_last
        return Reply(
            text=self.text,
            model=self.model,
            usage=self.usage,
            finish_reason=finish_reason,
            ttft=self.ttft,
            latency=time.perf_counter() - self.started if self.started else None,
            system_fingerprint=self.fingerprint,
            request=self.payload,
            estimated_tokens=estimated,
            tool_calls=self._tool_parts.calls() or getattr(self, "_whole_calls", ()),
            reasoning=self.reasoning or None,
            reasoning_time=last - first if first is not None and last is not None else None,
            answer_ttft=self.answer_ttft,
            logprobs=Logprobs.from_api(self._logprobs) if self._logprobs else None,
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
        _shutdown(response)


class _Watchdog:
    """Shuts a stream's socket down once no data came for `timeout` s (see `_watched`).

    One thread per stream, sleeping until the current deadline; data arriving
    moves the deadline (`ChatStream._progress`), so it wakes about once per
    `timeout` seconds, not per event. The blocked read then fails, and `_read`
    reports a timeout.
    """

    def __init__(self, stream: ChatStream, response: httpx.Response) -> None:
        self.fired = False
        self._done = threading.Event()
        self._stream = stream
        self._response = response
        self._timeout = stream._client.timeout
        threading.Thread(target=self._run, name="nbchat-stall-watch", daemon=True).start()

    @classmethod
    def start(cls, stream: ChatStream, response: httpx.Response) -> _Watchdog | None:
        return cls(stream, response) if _socket(response) is not None else None

    def _run(self) -> None:
        while True:
            left = self._stream._progress + self._timeout - time.perf_counter()
            if left <= 0:
                self.fired = True
                _shutdown(self._response)
                return
            if self._done.wait(left):
                return

    def stop(self) -> None:
        self._done.set()


def _socket(response: httpx.Response) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _shutdown(response: httpx.Response) -> None:
    """Shut the response's socket down: a read blocked on it (in another thread) ends."""
    sock = _socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def without_stream_options(body: dict[str, Any]) -> dict[str, Any]:
    """`body` as sent to a server that refuses `stream_options` (see ChatClient)."""
    if "stream_options" not in body:
        return body
    return {k: v for k, v in body.items() if k != "stream_options"}


def _is_json(response: httpx.Response) -> bool:
    kind = str(response.headers.get("content-type", "")).partition(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def parse_completion(data: Any, body: dict[str, Any], latency: float | None) -> Reply:
    """A Reply from a `chat.completion` object (also the body of a Batch API output line).

    Raises ValueError/AttributeError/TypeError/IndexError when `data` has another shape.
    """
    from .logprobs import Logprobs

    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = data.get("usage")
    reasoning, text = split_message(message)
    logprobs = (choice.get("logprobs") or {}).get("content")
    return Reply(
        text=text,
        model=data.get("model") or body.get("model", ""),
        usage=Usage.from_api(usage) if usage else None,
        estimated_tokens=None if usage else estimate_completion_tokens(text, None),
        finish_reason=choice.get("finish_reason"),
        latency=latency,
        system_fingerprint=data.get("system_fingerprint"),
        request=body,
        tool_calls=from_message(message),
        reasoning=reasoning,
        logprobs=Logprobs.from_api(logprobs) if logprobs else None,
    )


def _api_item(token: Any) -> dict[str, Any]:
    """A TokenLogprob back in the API's shape (a whole body's logprobs, kept as a stream's)."""
    tops = [{"token": t, "logprob": lp} for t, lp in token.alternatives]
    return {"token": token.token, "logprob": token.logprob, "top_logprobs": tops}
