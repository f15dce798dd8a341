"""ChatClient: the one HTTP path to an OpenAI-compatible chat-completions server.

Built on an injected or lazily created `httpx.Client` that is reused across
cells (a new client costs ~20 ms of TLS and pool setup). Requests are retried
only before the first token arrives (also when a stream breaks before any
text): nothing was shown yet, so trying again cannot duplicate text. After
that a failure keeps the partial reply and is reported, never silently repeated.
The rules themselves (statuses, delays, messages) live in `failures`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import NbChatError, StreamError, TransportError
from .failures import (
    RETRY_STATUSES,
    describe_status,
    describe_transport_error,
    redact_error,
    retry_delay,
    server_text,
    status_error,
)
from .sse import iter_events
from .types import Reply, Secret, Usage

if TYPE_CHECKING:
    import httpx

__all__ = ["ChatClient", "ChatStream", "RetryNotice", "retry_delay"]

#: Called before each retry with (reason, delay in s, next attempt number, attempts in all).
RetryNotice = Callable[[str, float, int, int], None]


class ChatClient:
    """Sends chat-completion requests with the configured key, headers and retries."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Secret | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.organization = organization
        self.project = project
        self.timeout = timeout
        self.max_retries = max_retries
        self._transport = transport
        self._sleep = sleep  # None: wait on the request's cancel event (tests inject their own)
        self._http: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, api_key={self.api_key!r})"

    @property
    def http(self) -> httpx.Client:
        """The shared httpx.Client, created on first use (httpx is imported here)."""
        if self._http is None:
            import httpx

            self._http = httpx.Client(
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                headers=self.headers(),
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"nbchat/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key.get()}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    # -- requests -----------------------------------------------------------------

    def stream(self, payload: dict[str, Any], *, on_retry: RetryNotice | None = None) -> ChatStream:
        """A streaming request; iterate the result for text deltas."""
        return ChatStream(self, payload, on_retry)

    def complete(self, payload: dict[str, Any], *, on_retry: RetryNotice | None = None) -> Reply:
        """One non-streaming request, with the same retries and error mapping."""
        body = {**payload, "stream": False}
        body.pop("stream_options", None)
        started = time.perf_counter()
        response = self._send(body, _Retries(on_retry, self.max_retries + 1), stream=False)
        latency = time.perf_counter() - started
        try:
            data = response.json()
            choice = (data.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            usage = data.get("usage")
            return Reply(
                text=message.get("content") or message.get("refusal") or "",
                model=data.get("model") or payload.get("model", ""),
                usage=Usage.from_api(usage) if usage else None,
                finish_reason=choice.get("finish_reason"),
                latency=latency,
                system_fingerprint=data.get("system_fingerprint"),
                request=body,
            )
        except (ValueError, AttributeError, TypeError, IndexError) as exc:
            raise self._redacted(
                NbChatError(f"the server sent a malformed reply ({exc})")
            ) from None

    def list_models(self) -> list[dict[str, Any]]:
        """GET {base_url}/models: the `data` list, as the server sent it."""
        import httpx

        url = f"{self.base_url}/models"
        try:
            response = self.http.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._status_error(response, None)
        try:
            data = response.json()["data"]
            if not isinstance(data, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise NbChatError(
                f"{url} did not answer with a model list", hint="this server may not list models"
            ) from None
        return data

    # -- plumbing -----------------------------------------------------------------

    def _send(self, body: dict[str, Any], retries: _Retries, *, stream: bool) -> httpx.Response:
        """POST, retrying retryable statuses and transport errors; raises mapped errors."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        while True:
            try:
                request = self.http.build_request("POST", url, json=body)
                response = self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                if self._retry(retries, describe_transport_error(exc), None):
                    continue
                raise self._transport_error(exc) from None
            if response.status_code < 400:
                return response
            response.read()
            response.close()
            status = response.status_code
            if status in RETRY_STATUSES and self._retry(retries, describe_status(status), response):
                continue
            raise self._status_error(response, body.get("model"))

    def _retry(self, retries: _Retries, reason: str, response: httpx.Response | None) -> bool:
        """Announce and wait out the delay before the next attempt.

        False when no attempt is left or the request was cancelled (even while waiting).
        """
        if retries.attempt >= retries.attempts or retries.cancelled.is_set():
            return False
        delay = retry_delay(response, retries.attempt)
        retries.attempt += 1
        if retries.on_retry is not None:
            retries.on_retry(reason, delay, retries.attempt, retries.attempts)
        if self._sleep is not None:
            self._sleep(delay)
        else:
            retries.cancelled.wait(delay)
        return not retries.cancelled.is_set()

    def _redacted(self, error: NbChatError) -> NbChatError:
        return redact_error(error, self.api_key)

    def _transport_error(self, exc: Exception) -> NbChatError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return self._timeout_error()
        return self._redacted(
            TransportError(
                f"cannot reach {self.base_url}: {describe_transport_error(exc)}",
                hint="check ChatMagics.base_url and that the server is running",
            )
        )

    def _timeout_error(self) -> NbChatError:
        return self._redacted(
            TransportError(
                f"no response in {self.timeout:g} s (ChatMagics.timeout)",
                hint=f"{self.base_url} did not answer in time; for a slow model raise it, "
                "e.g. %config ChatMagics.timeout = 180",
            )
        )

    def _status_error(self, response: httpx.Response, model: str | None) -> NbChatError:
        return self._redacted(status_error(response, model, self.base_url))


@dataclass
class _Retries:
    """Where one request stands in its attempts; shared by the HTTP retries and a stream
    that broke before any text, and cancelled by `ChatStream.close()`."""

    on_retry: RetryNotice | None
    attempts: int
    attempt: int = 1
    cancelled: threading.Event = field(default_factory=threading.Event)


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
        self._retries = _Retries(on_retry, client.max_retries + 1)
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
