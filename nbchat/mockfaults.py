"""Fault modes of the mock server: HTTP errors, broken streams and stalls (stdlib only).

Real APIs fail in a handful of ways (rate limits, outages, wrong keys, dropped
connections, garbage mid-stream); the mock server reproduces each on request,
through options such as ``@status=429,retry_after_ms=20`` (see
``mockserver.Options``), so the client's handling of every one is tested
against real HTTP. Error bodies follow the OpenAI ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

__all__ = ["FailureCounter", "error_body", "wait_until_gone"]

# status: (message, type, code), worded like the OpenAI API's own errors.
_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: (
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error_body(status: int, *, model: str = "", echo: str | None = None) -> dict[str, Any]:
    """The JSON error for `status`; `echo` (the Authorization header) is put in the message.

    Some servers echo the key they were sent; `echo` lets tests check it is redacted.
    """
    default_kind = "server_error" if status >= 500 else "invalid_request_error"
    message, kind, code = _ERRORS.get(status, (f"Mock error {status}.", default_kind, None))
    message = message.format(model=model)
    if echo is not None:
        message += f" You sent: {echo}"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class FailureCounter:
    """How often each fault key has failed, so ``fail_times=N`` fails N times, then works.

    Keys are the request's option strings: "500 once, then OK" is per distinct
    option set, and `clear()` (called between tests) starts every count again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def should_fail(self, key: str, times: int | None) -> bool:
        """True if this request should fail (always when `times` is None), and count it."""
        with self._lock:
            done = self._counts.get(key, 0)
            if times is not None and done >= times:
                return False
            self._counts[key] = done + 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


def wait_until_gone(conn: socket.socket, stopping: threading.Event) -> None:
    """Block (sending nothing) until the client closes its end or the server stops."""
    while not stopping.is_set():
        try:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(1, socket.MSG_PEEK):
                return  # orderly close by the client
        except OSError:
            return
        if readable:
            stopping.wait(0.05)  # unexpected bytes: keep ignoring them, slowly
