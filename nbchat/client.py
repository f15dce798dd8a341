"""ChatClient: the one HTTP path to an OpenAI-compatible chat-completions server.

Built on an injected or lazily created `httpx.Client` that is reused across
cells (a new client costs ~20 ms of TLS and pool setup). Requests are retried
only before the first token arrives (also when a stream breaks before any
text): nothing was shown yet, so trying again cannot duplicate text. After
that a failure keeps the partial reply and is reported, never silently repeated.
The rules themselves (statuses, delays, messages) live in `failures`.

Errors are raised outside `except` blocks, so none chains an httpx exception
(whose request headers carry the key); a copy without the request is chained
as `__cause__` instead, for tracebacks outside IPython.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import NbChatError, TransportError
from .failures import (
    RETRY_STATUSES,
    Retries,
    RetryNotice,
    describe_status,
    describe_transport_error,
    empty_reply,
    redact_error,
    retry_delay,
    status_error,
    trail,
)
from .stream import ChatStream, parse_completion, without_stream_options
from .types import Reply, Secret

if TYPE_CHECKING:
    import ssl

    import httpx2 as httpx

__all__ = [
    "ChatClient",
    "ChatStream",
    "RetryNotice",
    "parse_completion",
    "retry_delay",
    "ssl_context",
]

_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def ssl_context() -> ssl.SSLContext:
    """httpx2's default verifying context, made once per process (and per SSL_CERT_FILE /
    SSL_CERT_DIR): loading the CA bundle costs ~50 ms of CPU, which every new client
    (each `nbchat.map` call builds an async one) would otherwise pay again."""
    import os

    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _ssl_contexts.get(key)
    if context is None:
        import httpx2

        context = _ssl_contexts[key] = httpx2.create_ssl_context()
    return context


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
        #: False once the server refused `stream_options` (a 400 naming it): streams are
        #: then sent without it, and their usage is not reported.
        self.stream_options = True

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, api_key={self.api_key!r})"

    @property
    def http(self) -> httpx.Client:
        """The shared httpx.Client, created on first use (httpx is imported here)."""
        if self._http is None:
            import httpx2 as httpx

            self._http = httpx.Client(
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                headers=self.headers(),
                verify=ssl_context(),
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
        response = self._send(body, Retries(on_retry, self.max_retries + 1), stream=False)
        latency = time.perf_counter() - started
        if not response.content.strip():  # a 200 with nothing in it: see empty_reply
            raise self._redacted(empty_reply(body))
        try:
            return parse_completion(response.json(), body, latency)
        except (ValueError, AttributeError, TypeError, IndexError) as exc:
            problem = str(exc)  # a JSONDecodeError holds the whole body (echoes and all)
        raise self._redacted(NbChatError(f"the server sent a malformed reply ({problem})"))

    def list_models(self) -> list[dict[str, Any]]:
        """GET {base_url}/models: the `data` list, as the server sent it."""
        import httpx2 as httpx

        url = f"{self.base_url}/models"
        failed: httpx.HTTPError | None = None
        try:
            response = self.http.get(url)
        except httpx.HTTPError as exc:
            failed = exc
        if failed is not None:
            raise self._transport_error(failed)
        if response.status_code >= 400:
            raise self._status_error(response, None)
        data: Any = None
        with contextlib.suppress(ValueError, KeyError, TypeError):
            data = response.json()["data"]
        if not isinstance(data, list):
            raise NbChatError(
                f"{url} did not answer with a model list", hint="this server may not list models"
            )
        return data

    # -- plumbing -----------------------------------------------------------------

    def _send(self, body: dict[str, Any], retries: Retries, *, stream: bool) -> httpx.Response:
        """POST, retrying retryable statuses and transport errors; raises mapped errors."""
        import httpx2 as httpx

        url = f"{self.base_url}/chat/completions"
        while True:
            if stream and not self.stream_options:
                body = without_stream_options(body)
            failed: httpx.HTTPError | None = None
            try:
                request = self.http.build_request("POST", url, json=body)
                response = self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                failed = exc
            if failed is not None:  # handled here, out of the except block (see above)
                if self._retry(retries, describe_transport_error(failed), None):
                    continue
                raise self._transport_error(failed)
            if response.status_code < 400:
                return response
            response.read()
            response.close()
            status = response.status_code
            if status in RETRY_STATUSES and self._retry(retries, describe_status(status), response):
                continue
            if stream and self._refuses_stream_options(body, response):
                continue  # sent again without it, at the top of the loop
            raise self._status_error(response, body.get("model"))

    def _refuses_stream_options(self, body: dict[str, Any], response: httpx.Response) -> bool:
        """A 400/422 naming `stream_options` (some older OpenAI-compatible servers refuse
        it): the caller sends once more without it, and so does every later stream."""
        if "stream_options" not in body or response.status_code not in (400, 422):
            return False
        if "stream_options" not in response.text:
            return False
        self.stream_options = False
        return True

    def _retry(self, retries: Retries, reason: str, response: httpx.Response | None) -> bool:
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
        import httpx2 as httpx

        if isinstance(exc, httpx.TimeoutException):
            return self._timeout_error(exc)
        error = TransportError(
            f"cannot reach {self.base_url}: {describe_transport_error(exc)}",
            hint="check ChatMagics.base_url and that the server is running",
        )
        error.__cause__ = trail(exc, self.api_key)
        return self._redacted(error)

    def _timeout_error(self, exc: Exception | None = None) -> NbChatError:
        error = TransportError(
            f"no response in {self.timeout:g} s (ChatMagics.timeout)",
            hint=f"{self.base_url} did not answer in time; for a slow model raise it, "
            "e.g. %config ChatMagics.timeout = 180",
        )
        if exc is not None:
            error.__cause__ = trail(exc, self.api_key)
        return self._redacted(error)

    def _status_error(self, response: httpx.Response, model: str | None) -> NbChatError:
        return self._redacted(status_error(response, model, self.base_url))
