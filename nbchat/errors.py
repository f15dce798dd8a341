"""Errors nbchat raises, each rendered in a notebook as one short line.

The family::

    NbChatError                 base: `_render_traceback_` gives a one-line message
    ├── ConfigError             a setting is missing or wrong (no key, bad base_url)
    ├── OptionError             a %%chat flag or value is refused before anything is sent
    ├── APIError                the server answered with an HTTP error
    │   ├── AuthenticationError 401 / 403
    │   ├── NotFoundError       404: an unknown model, or a path (base_url without /v1)
    │   ├── RateLimitError      429 after the retries ran out
    │   ├── BadRequestError     400 / 422 (e.g. context too long): server's words verbatim
    │   └── ServerError         5xx after the retries ran out
    ├── TransportError          no usable answer: connection refused, timeout
    ├── StreamError             the reply broke off after tokens arrived; carries `.partial`
    └── Interrupted             the user stopped the reply; carries `.partial`

Why one family: IPython shows a 40-line traceback for any other exception, and
users of a notebook need one line saying what happened and what to do. Raising
(rather than printing) keeps the cell marked failed so "Run all" stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import Reply

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "Interrupted",
    "NbChatError",
    "NotFoundError",
    "OptionError",
    "RateLimitError",
    "ServerError",
    "StreamError",
    "TransportError",
]


class NbChatError(Exception):
    """Base of nbchat's errors: a message and an optional hint on what to do."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: one red line, maybe a hint."""
        lines = [f"\x1b[31mnbchat: {self.message}\x1b[0m"]
        if self.hint:
            lines.append(self.hint)
        return lines


class ConfigError(NbChatError):
    """A setting is missing or invalid; nothing was sent."""


class OptionError(NbChatError):
    """A flag or value given to %%chat is refused; nothing was sent."""


class APIError(NbChatError):
    """The server answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        hint: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.body = body


class AuthenticationError(APIError):
    """401/403: the key is missing, wrong or lacks access."""


class NotFoundError(APIError):
    """404: a model the server does not know, or (its error not naming a model) a path
    it does not serve, most often because base_url lacks its /v1."""


class RateLimitError(APIError):
    """429 after every retry was used."""


class BadRequestError(APIError):
    """400/422: the server refused the request as sent."""


class ServerError(APIError):
    """5xx after every retry was used."""


class TransportError(NbChatError):
    """No HTTP answer at all: connection refused, DNS, timeout."""


class _PartialReplyError(NbChatError):
    def __init__(self, message: str, *, partial: Reply, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.partial = partial


class StreamError(_PartialReplyError):
    """The stream broke after tokens arrived; the partial reply is kept, not retried."""


class Interrupted(_PartialReplyError):
    """The user interrupted the reply (kernel interrupt or the panel's Stop)."""
