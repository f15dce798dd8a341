"""ChatClient: the one HTTP path to an OpenAI-compatible chat-completions server.

Built on an injected or lazily created `httpx.Client` that is reused across
cells (a new client costs ~20 ms of TLS and pool setup). Requests are retried
only before the first token arrives; after that a failure keeps the partial
reply and is reported, never silently repeated (it would duplicate text).
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NbChatError,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
    TransportError,
)
from .sse import SSEDecoder
from .types import Reply, Secret, Usage

if TYPE_CHECKING:
    import httpx

__all__ = ["ChatClient", "ChatStream", "RetryNotice"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504}) | frozenset(range(520, 530))
MAX_RETRY_AFTER = 120.0

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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.organization = organization
        self.project = project
        self.timeout = timeout
        self.max_retries = max_retries
        self._transport = transport
        self._sleep = sleep
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
        response = self._send(body, on_retry, stream=False)
        latency = time.perf_counter() - started
        try:
            return parse_completion(response.json(), body, latency)
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

    def _send(
        self, body: dict[str, Any], on_retry: RetryNotice | None, *, stream: bool
    ) -> httpx.Response:
        """POST with retries on retryable statuses and transport errors; raises mapped errors."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                request = self.http.build_request("POST", url, json=body)
                response = self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                if attempt < attempts:
                    self._wait(describe_transport_error(exc), None, attempt, attempts, on_retry)
                    continue
                raise self._transport_error(exc) from None
            if response.status_code < 400:
                return response
            response.read()
            response.close()
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                self._wait(
                    describe_status(response.status_code), response, attempt, attempts, on_retry
                )
                continue
            raise self._status_error(response, body.get("model"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(
        self,
        reason: str,
        response: httpx.Response | None,
        attempt: int,
        attempts: int,
        on_retry: RetryNotice | None,
    ) -> None:
        delay = retry_delay(response, attempt)
        if on_retry is not None:
            on_retry(reason, delay, attempt + 1, attempts)
        self._sleep(delay)

    def _redacted(self, error: NbChatError) -> NbChatError:
        if self.api_key:
            error.message = self.api_key.redact(error.message)
            error.args = (error.message,)
        return error

    def _transport_error(self, exc: Exception) -> NbChatError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return TransportError(
                f"no response in {self.timeout:g} s from {self.base_url}",
                hint="raise ChatMagics.timeout if the model is slow",
            )
        return self._redacted(
            TransportError(
                f"cannot reach {self.base_url}: {describe_transport_error(exc)}",
                hint="check ChatMagics.base_url and that the server is running",
            )
        )

    def _status_error(self, response: httpx.Response, model: str | None) -> NbChatError:
        status = response.status_code
        message, body = server_message(response)
        error: APIError
        if status in (401, 403):
            error = AuthenticationError(
                f"{status} {message}",
                status_code=status,
                body=body,
                hint="set the OPENAI_API_KEY environment variable or c.ChatMagics.api_key "
                "in ipython_config.py (or run %chat login)",
            )
        elif status == 404:
            what = f"model {model!r} not found at {self.base_url}" if model else "not found"
            error = NotFoundError(
                f"404 {what}: {message}", status_code=status, body=body, hint="see %chat models"
            )
        elif status == 429:
            error = RateLimitError(f"429 rate limited: {message}", status_code=status, body=body)
        elif status >= 500:
            error = ServerError(f"{status} server error: {message}", status_code=status, body=body)
        elif status in (400, 422):
            error = BadRequestError(f"{status} {message}", status_code=status, body=body)
        else:
            error = APIError(f"{status} {message}", status_code=status, body=body)
        return self._redacted(error)


class ChatStream:
    """One streaming reply: iterate for text deltas, then read `.reply`.

    If the stream breaks after text arrived, iteration raises StreamError with
    the partial reply; `.text` always holds what arrived so far.
    """

    def __init__(self, client: ChatClient, payload: dict[str, Any], on_retry: RetryNotice | None):
        self._client = client
        self.payload = payload
        self._on_retry = on_retry
        self._parts: list[str] = []
        self._response: httpx.Response | None = None
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
    def chunks(self) -> int:
        return len(self._parts)

    def __iter__(self) -> Iterator[str]:
        self.started = time.perf_counter()
        response = self._client._send(self.payload, self._on_retry, stream=True)
        self._response = response
        try:
            yield from self._read(response)
        finally:
            response.close()
        self._reply = self.build_reply(self.finish_reason)

    def _read(self, response: httpx.Response) -> Iterator[str]:
        import httpx

        decoder = SSEDecoder()
        parts = self._parts
        loads = json.loads
        perf = time.perf_counter
        try:
            for chunk in response.iter_bytes():
                for event in decoder.feed(chunk):
                    data = event.data
                    if data == "[DONE]":
                        return
                    try:
                        obj = loads(data)
                        choices = obj.get("choices")
                    except (ValueError, AttributeError):
                        raise self._broken(
                            f"malformed event from the server: {data[:80]!r}"
                        ) from None
                    if choices:
                        choice = choices[0]
                        delta = choice.get("delta")
                        if delta:
                            content = delta.get("content")
                            if content:
                                if self.ttft is None:
                                    self.ttft = perf() - self.started
                                parts.append(content)
                                yield content
                        if choice.get("finish_reason"):
                            self.finish_reason = choice["finish_reason"]
                    if obj.get("usage"):
                        self.usage = Usage.from_api(obj["usage"])
                    if self.fingerprint is None and obj.get("system_fingerprint"):
                        self.fingerprint = obj["system_fingerprint"]
                        self.model = obj.get("model") or self.model
                    if obj.get("error"):
                        raise self._broken(f"the server reported an error: {server_text(obj)}")
        except httpx.HTTPError as exc:
            raise self._broken(f"connection lost: {describe_transport_error(exc)}") from None
        decoder.flush()
        if self.finish_reason is None:
            raise self._broken("connection closed before the reply was finished")

    def _broken(self, what: str) -> NbChatError:
        partial = self.build_reply("error")
        tokens = f"after {len(self._parts)} chunks" if self._parts else "before any text arrived"
        error = StreamError(
            f"reply incomplete: {what} ({tokens})",
            partial=partial,
            hint="the partial reply is shown but not added to the conversation"
            if self._parts
            else None,
        )
        return self._client._redacted(error)

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
        if self._response is not None:
            self._response.close()


# -- helpers (pure) -------------------------------------------------------------------


def parse_completion(data: Any, body: dict[str, Any], latency: float | None) -> Reply:
    """A Reply from a `chat.completion` object (also the body of a Batch API output line).

    Raises ValueError/AttributeError/TypeError/IndexError when `data` has another shape.
    """
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = data.get("usage")
    return Reply(
        text=message.get("content") or message.get("refusal") or "",
        model=data.get("model") or body.get("model", ""),
        usage=Usage.from_api(usage) if usage else None,
        finish_reason=choice.get("finish_reason"),
        latency=latency,
        system_fingerprint=data.get("system_fingerprint"),
        request=body,
    )


def retry_delay(response: httpx.Response | None, attempt: int) -> float:
    """Seconds to wait: the server's retry-after-ms / retry-after if sane, else backoff."""
    if response is not None:
        headers = response.headers
        try:
            if "retry-after-ms" in headers:
                value = float(headers["retry-after-ms"]) / 1000
                if 0 <= value <= MAX_RETRY_AFTER:
                    return value
        except ValueError:
            pass
        raw = headers.get("retry-after")
        if raw:
            seconds = _parse_retry_after(raw)
            if seconds is not None and 0 <= seconds <= MAX_RETRY_AFTER:
                return seconds
    backoff: float = min(0.5 * 2 ** (attempt - 1), 8.0)
    return backoff * (1 - 0.25 * random.random())


def _parse_retry_after(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
    if parsed is None:
        return None
    return parsed.timestamp() - time.time()


def describe_status(status: int) -> str:
    if status == 429:
        return "rate limited"
    if status >= 500:
        return f"server error {status}"
    return f"HTTP {status}"


def describe_transport_error(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return type(exc).__name__


def server_message(response: httpx.Response) -> tuple[str, Any]:
    """The server's own `error.message` (OpenAI shape), or the start of its body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:200] or response.reason_phrase or "error"), None
    return server_text(body) or response.reason_phrase or "error", body


def server_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or json.dumps(error)[:200])
        if isinstance(error, str):
            return error
    return json.dumps(body)[:200]
