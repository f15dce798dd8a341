"""Plain value types shared by every layer: messages, usage, replies and secrets.

Frozen dataclasses so a reply handed to the user (`-o NAME`) or kept in the
conversation cannot be changed behind the conversation's back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .logprobs import Logprobs

__all__ = ["Message", "Reply", "Secret", "ToolCall", "Usage"]


class Secret:
    """An API key that never shows itself: repr/str give `sk-...9c0d`.

    The clear value is only reachable through `.get()`, which the client calls
    when it builds the Authorization header.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        value = self._value
        if len(value) < 12:
            return "***"
        prefix = value[:3] if value.startswith("sk-") else ""
        return f"{prefix}...{value[-4:]}"

    def redact(self, text: str) -> str:
        """`text` with every occurrence of the key replaced by its masked form."""
        return text.replace(self._value, self.masked) if self._value else text

    def __repr__(self) -> str:
        return f"Secret('{self.masked}')"

    def __str__(self) -> str:
        return self.masked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling (e.g. by %store) must not leak it either
        raise TypeError("nbchat.Secret cannot be pickled")


@dataclass(frozen=True)
class Message:
    """One chat message as the API takes it; `content` is text or content parts."""

    role: str
    content: str | list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}

    @property
    def text(self) -> str:
        """The text of the message, with non-text parts left out."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.get("text", "") for p in self.content if p.get("type") == "text")


@dataclass(frozen=True)
class ToolCall:
    """One function call a model asked for, and (once run) what came of it.

    `arguments` is the JSON text exactly as the model wrote it. `status` is None
    until handled, then `ran` | `error` (the function raised, or the call could not
    be made: bad arguments, unknown name) | `declined` (the user said no, or nobody
    could be asked). `result` is the text sent back to the model.
    """

    id: str
    name: str
    arguments: str
    result: str | None = None
    status: str | None = None
    seconds: float | None = None

    def wire(self) -> dict[str, Any]:
        """The call as an assistant message's `tool_calls` item."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def message(self) -> dict[str, Any]:
        """The `tool` message that answers this call."""
        return {"role": "tool", "tool_call_id": self.id, "content": self.result or ""}


@dataclass(frozen=True)
class Usage:
    """Token counts exactly as the server reported them (never estimated)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    #: Predicted outputs (`--predict`): prediction tokens that appeared in the reply, and not.
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Usage:
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        details = data.get("prompt_tokens_details") or {}
        completion_details = data.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=int(data.get("total_tokens") or prompt + completion),
            cached_tokens=details.get("cached_tokens"),
            reasoning_tokens=completion_details.get("reasoning_tokens"),
            accepted_prediction_tokens=completion_details.get("accepted_prediction_tokens"),
            rejected_prediction_tokens=completion_details.get("rejected_prediction_tokens"),
        )


@dataclass(frozen=True)
class Reply:
    """What came back for one request, with the timings measured on the client.

    `ttft` and `latency` are seconds from sending the request; `cost` is an
    estimate in USD from the price table, or None when the model is unknown.
    `parsed` holds the JSON value (or pydantic instance) of a `--json` /
    `--schema` reply. `estimated_tokens` counts the completion when the server
    reported no usage (an estimate, labelled so wherever it is shown).
    `str(reply)` is the text, so `-o answer` can be used like a string.
    """

    text: str
    model: str
    usage: Usage | None = None
    finish_reason: str | None = None
    ttft: float | None = None
    latency: float | None = None
    system_fingerprint: str | None = None
    cost: float | None = None
    request: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: `--json` / `--schema`: the parsed JSON value, or the pydantic model instance.
    parsed: Any = field(default=None, repr=False, compare=False)
    #: Completion tokens estimated by nbchat when the server reported no usage
    #: (see nbchat.estimate); None when `usage` is known or nothing could be counted.
    estimated_tokens: int | None = None
    #: Function calls: those this reply asks for (one request), or, for a turn that
    #: used tools, every call of every round with its result (see nbchat.tools).
    tool_calls: tuple[ToolCall, ...] = field(default=(), repr=False, compare=False)
    #: The messages of the tool rounds before this reply's text (assistant messages
    #: with `tool_calls`, then `tool` results), as sent; the conversation replays them.
    steps: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)
    tool_rounds: int = 0
    #: What a reasoning model thought before answering (never sent back to the model),
    #: and for how long (seconds from its first to its last piece of thinking).
    reasoning: str | None = field(default=None, repr=False)
    reasoning_time: float | None = None
    #: Seconds to the first token of the answer (`ttft` counts thinking too).
    answer_ttft: float | None = None
    #: `--logprobs`: each token with its probability and alternatives (nbchat.logprobs).
    logprobs: Logprobs | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens (reported, else estimated) over the time after the first token."""
        tokens = self.usage.completion_tokens if self.usage else self.estimated_tokens
        if self.latency is None or not tokens:
            return None
        span = self.latency - (self.ttft or 0.0)
        return tokens / span if span > 0 else None

    @property
    def complete(self) -> bool:
        return self.finish_reason not in (None, "interrupted", "error")

    @property
    def json(self) -> Any:
        """The reply parsed as JSON (for `--json` / `--schema` replies)."""
        return json.loads(self.text)

    def with_(self, **changes: Any) -> Reply:
        return replace(self, **changes)

    def _repr_markdown_(self) -> str:
        return self.text
