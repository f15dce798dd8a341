"""`nbchat.map`'s cache in the exchange record, so a re-run after a kernel restart pays nothing.

Finished replies go to the record's `map_results` table, keyed by
`results.request_key` (the server URL and the exact request body), with the
notebook and kernel session that paid for them, so `%chat usage` counts each
request once. Batch API batches go to `map_batches`, keyed by a digest of the
server and the batch's input file, so the same call after a restart collects
the batch already running instead of submitting (and paying for) it again.

The record is shared by every kernel of the user and written one short
statement at a time (WAL, see `record`). If it fails mid-way the cache says so
once and carries on in memory: a broken record never stops a map.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .types import Reply, Secret, Usage

if TYPE_CHECKING:
    from .record import Record
    from .results import MemoryCache

__all__ = ["RecordCache", "reply_from_json", "reply_to_json"]


def reply_to_json(reply: Reply) -> str:
    """A reply as stored: every field but `parsed` (which may be any object)."""
    data = asdict(reply)
    data.pop("parsed", None)
    return json.dumps(data, ensure_ascii=False, default=str)


def reply_from_json(text: str) -> Reply:
    data = json.loads(text)
    usage = data.pop("usage", None)
    return Reply(**data, usage=Usage(**usage) if usage else None)


class RecordCache:
    """A `ResultCache` (and a store of submitted batch ids) in the exchange record."""

    def __init__(
        self,
        record: Record,
        *,
        notebook: str,
        session: str,
        fallback: MemoryCache,
        secret: Secret | None = None,
        notice: Callable[[str], None] = print,
    ) -> None:
        self.record = record
        self.notebook = notebook
        self.session = session
        self.fallback = fallback
        self._secret = secret
        self._notice = notice
        self.broken = False

    def _failed(self, exc: Exception) -> None:
        if not self.broken:
            self.broken = True
            self._notice(
                f"nbchat: cannot use the record at {self.record.path} ({exc}); "
                "map results are cached in memory only"
            )

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[Any] | None:
        import sqlite3

        if self.broken:
            return None
        try:
            return self.record.query(sql, args)
        except sqlite3.Error as exc:
            self._failed(exc)
            return None

    # -- ResultCache ----------------------------------------------------------------------

    def get(self, key: str) -> Reply | None:
        rows = self._query("SELECT reply FROM map_results WHERE key = ?", (key,))
        if rows is None:
            return self.fallback.get(key)
        return reply_from_json(rows[0][0]) if rows else None

    def get_many(self, keys: list[str]) -> dict[str, Reply]:
        """The cached replies among `keys`, read 500 keys per statement (100,000 one-row
        SELECTs would cost a re-run of a big map seconds before it sends anything)."""
        found: dict[str, Reply] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = self._query(
                f"SELECT key, reply FROM map_results WHERE key IN ({marks})", tuple(part)
            )
            if rows is None:
                found.update(self.fallback.get_many(part))
                continue
            found.update((key, reply_from_json(text)) for key, text in rows)
        return found

    def put(self, key: str, reply: Reply) -> None:
        """Keep `reply` (called from the pool's thread; the record has its own lock)."""
        text = reply_to_json(reply)
        if self._secret:
            text = self._secret.redact(text)
        usage = reply.usage
        done = self._query(
            "INSERT OR IGNORE INTO map_results (key, notebook, session, created, model, reply, "
            "prompt_tokens, completion_tokens, total_tokens, cost) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                self.notebook,
                self.session,
                time.time(),
                reply.model,
                text,
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
                usage.total_tokens if usage else None,
                reply.cost,
            ),
        )
        if done is None:
            self.fallback.put(key, reply)

    # -- batch ids (batch_api.BatchIds) ---------------------------------------------------

    def batch_id(self, digest: str) -> str | None:
        rows = self._query("SELECT batch_id FROM map_batches WHERE digest = ?", (digest,))
        return str(rows[0][0]) if rows else None

    def remember_batch(self, digest: str, batch_id: str) -> None:
        self._query(
            "INSERT OR REPLACE INTO map_batches (digest, batch_id, created) VALUES (?, ?, ?)",
            (digest, batch_id, time.time()),
        )
