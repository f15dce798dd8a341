"""What went wrong with a request, in words, and whether (and when) to try again.

Helpers of the client: the retry rules (which statuses, how long to wait) and
one request's place in its attempts, the mapping of an HTTP error to one
`NbChatError` with a hint, and redaction of the key from anything a server
sends back. Kept apart from `client` so the
rules read in one place and are tested without a connection.
"""

from __future__ import annotations

import email.utils
import html
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import TYPE_CHECKING, Any

from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NbChatError,
    NotFoundError,
    RateLimitError,
    ServerError,
)

if TYPE_CHECKING:
    import httpx2 as httpx

    from .types import Secret

__all__ = [
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "Retries",
    "RetryNotice",
    "describe_status",
    "describe_transport_error",
    "empty_reply",
    "media_kinds",
    "one_line",
    "page_text",
    "redact_error",
    "retry_delay",
    "server_message",
    "server_text",
    "status_error",
    "trail",
]

#: Statuses worth another try: timeout, conflict, rate limit and every server error (as
#: OpenAI's SDK does; Cloudflare's 52x too) except 501 Not Implemented and 505 HTTP Version
#: Not Supported, which say the same again however often they are asked.
RETRY_STATUSES = frozenset({408, 409, 429}) | (frozenset(range(500, 600)) - {501, 505})
#: A server asking for a longer wait than this gets our own backoff instead.
MAX_RETRY_AFTER = 120.0
#: Called before each retry with (reason, delay in s, next attempt number, attempts in all).
RetryNotice = Callable[[str, float, int, int], None]
KEY_HINT = (
    "set the OPENAI_API_KEY environment variable or c.ChatMagics.api_key in ipython_config.py "
    "(or run %chat login)"
)


@dataclass
class Retries:
    """Where one request stands in its attempts; shared by the HTTP retries and a stream
    that broke before any text, and cancelled by `ChatStream.close()`."""

    on_retry: RetryNotice | None
    attempts: int
    attempt: int = 1
    cancelled: threading.Event = field(default_factory=threading.Event)


def retry_delay(response: httpx.Response | None, attempt: int) -> float:
    """Seconds to wait after failed `attempt` (1-based).

    The server's `retry-after-ms`, then `retry-after` (seconds or an HTTP date),
    when between 0 and 120 s; otherwise 0.5 s · 2^(attempt-1), at most 8 s,
    less up to 25 % jitter so many clients do not retry in step.
    """
    if response is not None:
        headers = response.headers
        for seconds in (_number(headers.get("retry-after-ms"), 1000), _after(headers)):
            if seconds is not None and 0 <= seconds <= MAX_RETRY_AFTER:
                return seconds
    backoff: float = min(0.5 * 2 ** (attempt - 1), 8.0)
    return backoff * (1 - 0.25 * random.random())


def _number(raw: str | None, per_second: float = 1.0) -> float | None:
    try:
        return float(raw) / per_second if raw is not None else None
    except ValueError:
        return None


def _after(headers: httpx.Headers) -> float | None:
    """`retry-after` in seconds from now: a number, or an HTTP date (always GMT)."""
    raw = headers.get("retry-after")
    seconds = _number(raw)
    if seconds is not None or not raw:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() - time.time()


def describe_status(status: int) -> str:
    """A few words for the status line while waiting to retry."""
    if status == 429:
        return "rate limited"
    if status >= 500:
        return f"server error {status}"
    return f"HTTP {status}"


def describe_transport_error(exc: Exception) -> str:
    import httpx2 as httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed"
    return type(exc).__name__


def media_kinds(body: dict[str, Any]) -> list[str]:
    """The kinds of non-text input in a request's messages: `image`, `audio`, `file`."""
    kinds = {"image_url": "image", "input_audio": "audio", "file": "file"}
    found: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            kind = kinds.get(str(part.get("type"))) if isinstance(part, dict) else None
            if kind and kind not in found:
                found.append(kind)
    return found


def empty_reply(body: dict[str, Any]) -> NbChatError:
    """A 200 with an empty body. To a request with images or audio, servers that cannot
    read them answer so (llama-cpp-python with a text-only model): asking again
    cannot help, so nothing is retried and the hint says what to change."""
    kinds = media_kinds(body)
    if not kinds:
        return NbChatError(
            "the server sent an empty reply (HTTP 200, no data)",
            hint="try again; if it persists, the server may not support this request",
        )
    what = " and ".join(kinds)
    return NbChatError(
        f"the server sent nothing back (HTTP 200, empty body) to a request with {what} input",
        hint=f"this model or server may not accept {what} input; try a model that does, or "
        "leave it out (it stays in the conversation: %chat reset drops it)",
    )


def server_message(response: httpx.Response) -> tuple[str, Any]:
    """The server's own `error.message` (OpenAI shape), or its body on one line."""
    try:
        body = response.json()
    except ValueError:
        return (page_text(response) or response.reason_phrase or "error"), None
    return server_text(body) or response.reason_phrase or "error", body


_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_UNSEEN = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def page_text(response: httpx.Response) -> str:
    """A body that is not JSON, on one line: an HTML page's <title> (a proxy's "502 Bad
    Gateway" page), else its visible text; plain text as it is."""
    text = response.text
    if "html" in response.headers.get("content-type", "") or text.lstrip()[:1] == "<":
        title = _TITLE.search(text)
        if title and title.group(1).strip():
            text = title.group(1)
        else:
            text = _TAG.sub(" ", _UNSEEN.sub(" ", text))
        text = html.unescape(text)
    return one_line(text)


def one_line(text: str, limit: int = 200) -> str:
    """`text` with its whitespace collapsed to single spaces, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def server_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or json.dumps(error)[:200])
        if isinstance(error, str):
            return error
    return json.dumps(body)[:200]


def status_error(response: httpx.Response, model: str | None, base_url: str) -> APIError:
    """One error for an HTTP error status, in the server's words, with what to do next."""
    status = response.status_code
    message, body = server_message(response)
    kind: type[APIError] = APIError
    hint: str | None = None
    if status in (401, 403):
        kind, hint = AuthenticationError, KEY_HINT
    elif status == 404:
        kind = NotFoundError
        if model and _about_model(body, message):
            hint = "see %chat models for the models this server has"
            message = f"model {model!r} not found at {base_url}: {message}"
        else:  # most often a base_url without its /v1: the server has no such path
            hint = "check that ChatMagics.base_url ends in /v1 (or the server's API prefix)"
            message = f"not found at {_url(response, base_url)}: {message}"
    elif status == 429:
        kind, message = RateLimitError, f"rate limited: {message}"
    elif status >= 500:
        kind, message = ServerError, f"server error: {message}"
    elif status in (400, 422):
        kind = BadRequestError  # the server's words verbatim (e.g. context too long)
    return kind(f"{status} {message}", status_code=status, body=body, hint=hint)


def _about_model(body: Any, message: str) -> bool:
    """Whether a 404 says the model is unknown (rather than the path)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code == "model_not_found" or "model" in message.lower()


def _url(response: httpx.Response, base_url: str) -> str:
    try:
        return str(response.request.url)
    except RuntimeError:  # a response built without its request
        return base_url


def trail(exc: BaseException, key: Secret | None) -> BaseException:
    """A stand-in for `exc` to chain as the cause of our error, for debugging: its type
    and words (the key masked), without its request, whose headers hold the key."""
    text = key.redact(str(exc)) if key else str(exc)
    try:
        return type(exc)(text)
    except Exception:  # a constructor that wants more than a message
        return Exception(f"{type(exc).__name__}: {text}")


def redact_error(error: NbChatError, key: Secret | None) -> NbChatError:
    """`error` with the key masked in its message, hint and body (servers may echo it)."""
    if key:
        error.message = key.redact(error.message)
        error.hint = key.redact(error.hint) if error.hint else error.hint
        error.args = (error.message,)
        if isinstance(error, APIError):
            error.body = _redact_any(error.body, key)
    return error


def _redact_any(value: Any, key: Secret) -> Any:
    if isinstance(value, str):
        return key.redact(value)
    if isinstance(value, dict):
        return {k: _redact_any(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_any(v, key) for v in value]
    return value
