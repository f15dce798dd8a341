"""What `nbchat.map` returns, and the cache that lets a re-run resume instead of paying twice.

The cache sits behind a two-method interface (`ResultCache`) keyed by the
exact request (server URL + body), so a persistent store (e.g. a per-user
exchange record) can replace the in-memory default without touching `map`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload

from .errors import NbChatError, OptionError
from .types import Reply

__all__ = [
    "BatchInterrupted",
    "BatchResult",
    "BatchResults",
    "MemoryCache",
    "ResultCache",
    "Results",
    "cached",
    "request_key",
]

T = TypeVar("T")

#: Columns added to a DataFrame (after an optional prefix).
COLUMNS = ("reply", "error", "latency", "prompt_tokens", "completion_tokens", "cost", "cached")


class ResultCache(Protocol):
    """Where finished replies are kept between runs, keyed by `request_key`.

    A cache may also offer `get_many(keys) -> {key: reply}`, which `map` then uses to
    look up all its requests at once."""

    def get(self, key: str) -> Reply | None: ...
    def put(self, key: str, reply: Reply) -> None: ...


def cached(store: ResultCache, keys: list[str]) -> dict[str, Reply]:
    """The replies `store` holds for `keys` (through `get_many` when it has one)."""
    unique = list(dict.fromkeys(keys))
    many = getattr(store, "get_many", None)
    if many is not None:
        return dict(many(unique))
    return {key: reply for key in unique if (reply := store.get(key)) is not None}


class MemoryCache:
    """The default: this kernel's memory, least recently used dropped past `max_items`."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, Reply] = OrderedDict()
        self._lock = threading.Lock()  # written from the pool's thread, read from the cell's

    def get(self, key: str) -> Reply | None:
        with self._lock:
            reply = self._items.get(key)
            if reply is not None:
                self._items.move_to_end(key)
            return reply

    def get_many(self, keys: list[str]) -> dict[str, Reply]:
        """The cached replies among `keys` (one lock for all of them)."""
        with self._lock:
            found = {key: self._items[key] for key in keys if key in self._items}
            for key in found:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, reply: Reply) -> None:
        with self._lock:
            self._items[key] = reply
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def request_key(base_url: str, body: dict[str, Any]) -> str:
    """A digest of the exact request: same server and same body give the same key."""
    canonical = json.dumps(
        {"url": f"{base_url.rstrip('/')}/chat/completions", "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class BatchResult:
    """One item's outcome; `label` is its dict key or pandas index label, else its position."""

    index: int
    label: Any
    item: Any
    prompt: Any
    reply: Reply | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.error is None

    @property
    def text(self) -> str | None:
        return self.reply.text if self.reply is not None else None

    def row(self) -> dict[str, Any]:
        reply, usage = self.reply, self.reply.usage if self.reply else None
        return {
            "reply": self.text,
            "error": self.error,
            "latency": reply.latency if reply else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "cost": reply.cost if reply else None,
            "cached": self.cached,
        }


class Results(Sequence[T]):
    """A read-only list of results (kept in `.results`): indexing, len, iteration."""

    def __init__(self, results: list[T]) -> None:
        self.results = results

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[T]:
        return iter(self.results)


class BatchResults(Results[BatchResult]):
    """Results in input order: `.texts`, `.errors`, totals, `.to_pandas()`."""

    @property
    def texts(self) -> list[str | None]:
        return [r.text for r in self.results]

    @property
    def errors(self) -> dict[Any, str]:
        """label -> error, for the items that failed."""
        return {r.label: r.error for r in self.results if r.error is not None}

    @property
    def total_tokens(self) -> int:
        """Tokens this run paid for (cache hits are free)."""
        return sum(r.reply.usage.total_tokens for r in self._paid() if r.reply and r.reply.usage)

    @property
    def cost(self) -> float | None:
        """Estimated USD this run paid for (cache hits are free)."""
        costs = [r.reply.cost for r in self._paid() if r.reply and r.reply.cost is not None]
        return sum(costs) if costs else None

    def _paid(self) -> list[BatchResult]:
        return [r for r in self.results if not r.cached]

    def __repr__(self) -> str:
        failed = sum(not r.ok for r in self.results)
        cost = f", ${self.cost:.6f}" if self.cost is not None else ""
        return (
            f"<BatchResults: {len(self)} items, {len(self) - failed} ok, {failed} failed, "
            f"{self.total_tokens:,} tokens{cost}>"
        )

    def to_pandas(self, frame: Any = None, *, prefix: str = "") -> Any:
        """A DataFrame: `frame` with result columns added, or input + result columns."""
        import pandas as pd

        rows = [r.row() for r in self.results]
        names = {c: f"{prefix}{c}" for c in COLUMNS}
        if frame is None:
            index = [r.label for r in self.results]
            data = {"input": [r.item for r in self.results]}
            out = pd.DataFrame(data, index=index)
        else:
            taken = sorted(set(names.values()) & {str(c) for c in frame.columns})
            if taken:
                raise OptionError(
                    f"the DataFrame already has column(s) {', '.join(taken)}",
                    hint="pass prefix='chat_' to name the result columns chat_reply, ...",
                )
            out = frame.copy()
        for column in COLUMNS:
            out[names[column]] = [row[column] for row in rows]
        return out


class BatchInterrupted(NbChatError):
    """The user interrupted a batch; `.results` holds what finished (the rest say why not)."""

    def __init__(self, message: str, *, results: Any, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.results = results
