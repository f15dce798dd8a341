"""The exchange record: every request nbchat sent and what came back, in SQLite.

One row per exchange, written when the request starts (status `streaming`) and
updated once when it ends (`complete`, `interrupted`, `incomplete`, `failed`),
so even a kernel killed mid-reply leaves its exchange behind. Each write is one
statement in autocommit mode, i.e. one short transaction; with WAL and a busy
timeout, kernels writing the same file at once wait for each other instead of
failing, and readers never block writers.

A row keeps `context`, the ids of the rows whose turns the request was built
on, so a conversation is rebuilt from its last kept row alone, whatever re-runs
happened before; `kept` says the turn is part of the conversation as it stands
(a compared reply is kept once picked, and a reset clears it from every row of
that conversation). The API key is never written: it is not in request bodies,
and anything written is passed through the key's redaction as well.

Two more tables serve `nbchat.map` (see `mapcache`): `map_results`, finished
replies keyed by a digest of the exact request (with their usage, so `%chat
usage` counts them), and `map_batches`, the Batch API batches submitted.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .toolcalls import from_message
from .types import Message, Reply, ToolCall, Usage

if TYPE_CHECKING:
    import sqlite3

__all__ = ["Exchange", "Record", "Totals", "default_history_path", "user_data_dir"]

SCHEMA_VERSION = 4
BUSY_TIMEOUT = 10.0  # seconds a writer waits for another kernel's transaction
SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY,
    notebook TEXT NOT NULL,
    session TEXT NOT NULL,
    conversation TEXT NOT NULL,
    cell_id TEXT,
    status TEXT NOT NULL,
    kept INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    finished REAL,
    base_url TEXT,
    model TEXT,
    system_prompt TEXT,
    context TEXT NOT NULL DEFAULT '[]',
    prompt TEXT NOT NULL,
    request TEXT NOT NULL,
    reply TEXT,
    reply_model TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    cached_tokens INTEGER,
    reasoning_tokens INTEGER,
    ttft REAL,
    latency REAL,
    system_fingerprint TEXT,
    cost REAL,
    error TEXT,
    estimated_tokens INTEGER,
    reasoning TEXT,
    reasoning_time REAL,
    answer_ttft REAL
);
CREATE INDEX IF NOT EXISTS exchanges_by_notebook ON exchanges (notebook, conversation, id);
CREATE INDEX IF NOT EXISTS exchanges_by_session ON exchanges (session);
CREATE TABLE IF NOT EXISTS map_results (
    key TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    session TEXT NOT NULL,
    created REAL NOT NULL,
    model TEXT,
    reply TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    cost REAL
);
CREATE INDEX IF NOT EXISTS map_results_by_notebook ON map_results (notebook, session);
CREATE TABLE IF NOT EXISTS map_batches (
    digest TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def _sums(row: str, sign: str, source: str) -> str:
    """SET clause adding (`sign` '+') or removing ('-') one row's share of the totals."""
    if source == "map":
        estimated = "estimated = estimated, estimated_tokens = estimated_tokens"
    else:
        estimated = (
            f"estimated = estimated {sign} ({row}.total_tokens IS NULL "
            f"AND {row}.estimated_tokens IS NOT NULL), "
            f"estimated_tokens = estimated_tokens {sign} CASE WHEN {row}.total_tokens IS NULL "
            f"THEN COALESCE({row}.estimated_tokens, 0) ELSE 0 END"
        )
    return (
        f"exchanges = exchanges {sign} 1, "
        f"prompt_tokens = prompt_tokens {sign} COALESCE({row}.prompt_tokens, 0), "
        f"completion_tokens = completion_tokens {sign} COALESCE({row}.completion_tokens, 0), "
        f"total_tokens = total_tokens {sign} COALESCE({row}.total_tokens, 0), "
        f"cost = cost {sign} COALESCE({row}.cost, 0), "
        f"priced = priced {sign} ({row}.cost IS NOT NULL), "
        f"unpriced = unpriced {sign} ({row}.total_tokens IS NOT NULL AND {row}.cost IS NULL), "
        f"without_usage = without_usage {sign} ({row}.total_tokens IS NULL), {estimated}"
    )


def _apply(row: str, sign: str, source: str) -> str:
    """Statements adding/removing `row` to its (notebook, session) and (notebook, '*') totals."""
    return "".join(
        f"INSERT OR IGNORE INTO usage_totals (notebook, session, source) "
        f"VALUES ({row}.notebook, {session}, '{source}'); "
        f"UPDATE usage_totals SET {_sums(row, sign, source)} WHERE notebook = {row}.notebook "
        f"AND session = {session} AND source = '{source}'; "
        for session in (f"{row}.session", "'*'")
    )


_TOKENS = "prompt_tokens, completion_tokens, total_tokens, cost, notebook, session"

#: Version 4 (`_index_and_total`): indexes for `%chat log` (newest rows of a notebook),
#: `%chat resume` (the last kept row of each conversation, exchanges left streaming),
#: and running totals kept by triggers, so `%chat usage` reads a few rows instead of
#: summing every exchange. Session '*' holds the notebook's totals over all sessions.
TOTALS_SCHEMA = f"""
CREATE INDEX IF NOT EXISTS exchanges_by_recent ON exchanges (notebook, id);
CREATE INDEX IF NOT EXISTS exchanges_kept ON exchanges (notebook, conversation, id)
    WHERE kept = 1;
CREATE INDEX IF NOT EXISTS exchanges_streaming ON exchanges (notebook, session)
    WHERE status = 'streaming';
CREATE TABLE IF NOT EXISTS usage_totals (
    notebook TEXT NOT NULL,
    session TEXT NOT NULL,
    source TEXT NOT NULL,
    exchanges INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    priced INTEGER NOT NULL DEFAULT 0,
    unpriced INTEGER NOT NULL DEFAULT 0,
    without_usage INTEGER NOT NULL DEFAULT 0,
    estimated INTEGER NOT NULL DEFAULT 0,
    estimated_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notebook, session, source)
);
CREATE TRIGGER IF NOT EXISTS exchanges_total_insert AFTER INSERT ON exchanges
BEGIN {_apply("NEW", "+", "chat")} END;
CREATE TRIGGER IF NOT EXISTS exchanges_total_update
AFTER UPDATE OF {_TOKENS}, estimated_tokens ON exchanges
BEGIN {_apply("OLD", "-", "chat")}{_apply("NEW", "+", "chat")} END;
CREATE TRIGGER IF NOT EXISTS exchanges_total_delete AFTER DELETE ON exchanges
BEGIN {_apply("OLD", "-", "chat")} END;
CREATE TRIGGER IF NOT EXISTS map_results_total_insert AFTER INSERT ON map_results
BEGIN {_apply("NEW", "+", "map")} END;
CREATE TRIGGER IF NOT EXISTS map_results_total_update AFTER UPDATE OF {_TOKENS} ON map_results
BEGIN {_apply("OLD", "-", "map")}{_apply("NEW", "+", "map")} END;
CREATE TRIGGER IF NOT EXISTS map_results_total_delete AFTER DELETE ON map_results
BEGIN {_apply("OLD", "-", "map")} END;
"""


def _statements(script: str) -> list[str]:
    """`script` cut into whole statements (`executescript` would commit the migration's
    transaction first)."""
    import sqlite3

    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _fill_totals(db: sqlite3.Connection, table: str, source: str) -> None:
    estimated = (
        "COALESCE(SUM(total_tokens IS NULL AND estimated_tokens IS NOT NULL), 0), "
        "COALESCE(SUM(CASE WHEN total_tokens IS NULL THEN estimated_tokens END), 0)"
        if source == "chat"
        else "0, 0"
    )
    sums = (
        "COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
        "COALESCE(SUM(total_tokens), 0), COALESCE(SUM(cost), 0), COUNT(cost), "
        "COALESCE(SUM(total_tokens IS NOT NULL AND cost IS NULL), 0), "
        f"COALESCE(SUM(total_tokens IS NULL), 0), {estimated}"
    )
    for session, group in (("session", "notebook, session"), ("'*'", "notebook")):
        db.execute(
            f"INSERT INTO usage_totals SELECT notebook, {session}, '{source}', {sums} "
            f"FROM {table} GROUP BY {group}"
        )


def _add_columns(db: sqlite3.Connection, columns: dict[str, str]) -> None:
    """Add the `exchanges` columns a file lacks (a file a development build half-migrated
    may have some already: adding is then a no-op, not an error that stops recording)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(exchanges)")}
    for name, kind in columns.items():
        if name not in present:
            db.execute(f"ALTER TABLE exchanges ADD COLUMN {name} {kind}")


def _add_estimated_tokens(db: sqlite3.Connection) -> None:
    """Version 2: completion tokens nbchat estimated when a server reported no usage."""
    _add_columns(db, {"estimated_tokens": "INTEGER"})


def _add_reasoning(db: sqlite3.Connection) -> None:
    """Version 3: what a reasoning model thought before its answer (nbchat.reasoning), for how
    long, and when the answer's first token came."""
    _add_columns(db, {"reasoning": "TEXT", "reasoning_time": "REAL", "answer_ttft": "REAL"})


def _index_and_total(db: sqlite3.Connection) -> None:
    """Version 4: indexes for log and resume, running totals for usage (TOTALS_SCHEMA),
    filled from the rows already there."""
    for statement in _statements(TOTALS_SCHEMA):
        db.execute(statement)
    db.execute("DELETE FROM usage_totals")
    _fill_totals(db, "exchanges", "chat")
    _fill_totals(db, "map_results", "map")


#: MIGRATIONS[v - 2] brings a record of schema version v - 1 to version v.
MIGRATIONS = [_add_estimated_tokens, _add_reasoning, _index_and_total]


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older record up to SCHEMA_VERSION, one step at a time, in one transaction
    (another kernel migrating the same file at once waits, then finds nothing to do)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for migrate in MIGRATIONS[max(version - 1, 0) :]:
            migrate(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def user_data_dir(app: str = "nbchat") -> Path:
    """The per-user data directory, where platformdirs' `user_data_dir` puts it."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "").strip()
        base = xdg if os.path.isabs(xdg) else str(Path.home() / ".local" / "share")
    return Path(base) / app


def default_history_path() -> str:
    """`$NBCHAT_HISTORY_PATH`, else `history.sqlite` in the user's data directory."""
    return os.environ.get("NBCHAT_HISTORY_PATH") or str(user_data_dir() / "history.sqlite")


@dataclass(frozen=True)
class Exchange:
    """One row of the record."""

    id: int
    notebook: str
    session: str
    conversation: str
    cell_id: str | None
    status: str
    kept: int
    started: float
    finished: float | None
    base_url: str | None
    model: str | None
    system_prompt: str | None
    context: str
    prompt: str
    request: str
    reply: str | None
    reply_model: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    ttft: float | None
    latency: float | None
    system_fingerprint: str | None
    cost: float | None
    error: str | None
    estimated_tokens: int | None = None
    reasoning: str | None = None
    reasoning_time: float | None = None
    answer_ttft: float | None = None

    @property
    def context_ids(self) -> list[int]:
        return [int(i) for i in json.loads(self.context)]

    @property
    def user(self) -> Message:
        data = json.loads(self.prompt)
        return Message(data.get("role", "user"), data["content"])

    def to_reply(self) -> Reply:
        usage = None
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
            usage = Usage(
                prompt,
                completion,
                self.total_tokens or prompt + completion,
                self.cached_tokens,
                self.reasoning_tokens,
            )
        request = json.loads(self.request)
        steps, calls = _tool_steps(request)
        return Reply(
            text=self.reply or "",
            model=self.reply_model or self.model or "",
            usage=usage,
            finish_reason=self.finish_reason,
            ttft=self.ttft,
            latency=self.latency,
            system_fingerprint=self.system_fingerprint,
            cost=self.cost,
            request=request,
            estimated_tokens=self.estimated_tokens if usage is None else None,
            tool_calls=calls,
            steps=steps,
            tool_rounds=sum(1 for m in steps if m.get("tool_calls")),
            reasoning=self.reasoning,
            reasoning_time=self.reasoning_time,
            answer_ttft=self.answer_ttft,
        )


def _tool_steps(request: Any) -> tuple[tuple[dict[str, Any], ...], tuple[ToolCall, ...]]:
    """The tool rounds of an exchange, from its last request body as sent: the messages
    after the user's (assistant `tool_calls`, `tool` results), and the calls with results."""
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not request.get("tools"):
        return (), ()
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    steps = tuple(m for m in messages[last + 1 :] if m.get("role") in ("assistant", "tool"))
    results = {m.get("tool_call_id"): m.get("content") for m in steps if m.get("role") == "tool"}
    calls = []
    for message in steps:
        for call in from_message(message):
            result = results.get(call.id)
            status = None
            if isinstance(result, str):
                status = (
                    "declined"
                    if result.startswith("declined:")
                    else ("error" if result.startswith("error:") else "ran")
                )
            calls.append(replace(call, result=result, status=status))
    return steps, tuple(calls)


COLUMNS = ", ".join(f.name for f in fields(Exchange))


@dataclass(frozen=True)
class Totals:
    """Sums over some exchanges; `cost` is None when none of them had a price."""

    exchanges: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    unpriced: int  # exchanges with usage but a model missing from the price table
    without_usage: int
    mapped: int = 0  # of `exchanges`, requests sent by nbchat.map
    estimated: int = 0  # of `without_usage`, replies whose completion nbchat estimated
    estimated_tokens: int = 0  # their estimated completion tokens (not in the sums above)


class Record:
    """An open exchange record (one SQLite file, shared by every kernel of the user)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import sqlite3

        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the panel may record from another thread
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # in WAL: durable across a killed process
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"written by a newer nbchat (schema {version})")
            if 0 < version < SCHEMA_VERSION:
                _migrate(db)
            if version != SCHEMA_VERSION:  # a new file (or one just migrated)
                db.executescript(SCHEMA + TOTALS_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        self._db: sqlite3.Connection = db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...] | dict[str, Any]) -> int:
        with self._lock:
            cursor = self._db.execute(sql, args)
            return cursor.lastrowid or 0

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Exchange]:
        return [Exchange(*row) for row in self.query(sql, args)]

    def query(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
        """The rows of one statement (for the map tables, which `mapcache` reads and writes)."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- writing --------------------------------------------------------------------------

    def start(self, **values: Any) -> int:
        """Insert an exchange that is being sent (status `streaming`); returns its id."""
        values = {"status": "streaming", "started": time.time(), **values}
        names = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        return self._write(f"INSERT INTO exchanges ({names}) VALUES ({marks})", values)

    def finish(self, row: int, **values: Any) -> None:
        """Set how exchange `row` ended, in one UPDATE."""
        values = {"finished": time.time(), **values}
        sets = ", ".join(f"{name} = :{name}" for name in values)
        self._write(f"UPDATE exchanges SET {sets} WHERE id = :row_id", {**values, "row_id": row})

    def keep(self, row: int) -> None:
        """Exchange `row` joined its conversation after it ended (a picked comparison reply)."""
        self._write("UPDATE exchanges SET kept = 1 WHERE id = ?", (row,))

    def forget(self, notebook: str, conversation: str) -> int:
        """A reset: no exchange of the conversation so far is part of it any more."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE exchanges SET kept = 0 "
                "WHERE notebook = ? AND conversation = ? AND kept = 1",
                (notebook, conversation),
            )
            return cursor.rowcount

    def abandon(self, notebook: str, session: str) -> int:
        """Mark exchanges other kernels of `notebook` left `streaming` as `incomplete`."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE exchanges SET status = 'incomplete', "
                "error = 'the kernel stopped before the reply finished' "
                "WHERE notebook = ? AND session <> ? AND status = 'streaming'",
                (notebook, session),
            )
            return cursor.rowcount

    # -- reading --------------------------------------------------------------------------

    def recent(self, notebook: str, limit: int) -> list[Exchange]:
        """The notebook's last `limit` exchanges, oldest first."""
        rows = self._read(
            f"SELECT {COLUMNS} FROM exchanges WHERE notebook = ? ORDER BY id DESC LIMIT ?",
            (notebook, limit),
        )
        return rows[::-1]

    def conversations(self, notebook: str, session: str) -> dict[str, list[Exchange]]:
        """Each conversation of `notebook` as earlier kernels (not `session`) left it.

        Indexed: the names are walked one index seek each (SQLite does no skip-scan
        for DISTINCT), then each conversation's last kept row is found from its end.
        """
        names = self.query(
            "WITH RECURSIVE names(name) AS ("
            "SELECT MIN(conversation) FROM exchanges WHERE notebook = ?1 AND kept = 1 "
            "UNION ALL SELECT (SELECT MIN(conversation) FROM exchanges "
            "WHERE notebook = ?1 AND kept = 1 AND conversation > names.name) "
            "FROM names WHERE names.name IS NOT NULL) "
            "SELECT name FROM names WHERE name IS NOT NULL",
            (notebook,),
        )
        last: list[Exchange] = []
        for (name,) in names:
            last += self._read(
                f"SELECT {COLUMNS} FROM exchanges INDEXED BY exchanges_kept "
                "WHERE notebook = ? AND conversation = ? AND kept = 1 AND session <> ? "
                "ORDER BY id DESC LIMIT 1",
                (notebook, name, session),
            )
        last.sort(key=lambda row: row.id)
        out: dict[str, list[Exchange]] = {}
        for row in last:
            ids = [*row.context_ids, row.id]
            marks = ", ".join("?" * len(ids))
            found = {
                r.id: r
                for r in self._read(
                    f"SELECT {COLUMNS} FROM exchanges WHERE id IN ({marks})", tuple(ids)
                )
            }
            out[row.conversation] = [found[i] for i in ids if i in found and found[i].kept]
        return out

    def totals(self, notebook: str, session: str | None = None) -> Totals:
        """Token and cost sums for a notebook, or for one kernel session of it.

        Chat exchanges and the requests nbchat.map paid for (each cached result once).
        """
        sums = {"chat": (0,) * 10, "map": (0,) * 10}
        for source, *values in self.query(
            "SELECT source, exchanges, prompt_tokens, completion_tokens, total_tokens, cost, "
            "priced, unpriced, without_usage, estimated, estimated_tokens FROM usage_totals "
            "WHERE notebook = ? AND session = ?",
            (notebook, "*" if session is None else session),
        ):
            sums[source] = tuple(values)
        chat, mapped = sums["chat"], sums["map"]
        count, prompt, completion, total = (chat[i] + mapped[i] for i in range(4))
        cost = chat[4] + mapped[4] if chat[5] + mapped[5] else None
        unpriced, without = chat[6] + mapped[6], chat[7] + mapped[7]
        estimated, estimated_tokens = chat[8], chat[9]
        return Totals(
            count,
            prompt,
            completion,
            total,
            cost,
            unpriced,
            without,
            mapped[0],
            estimated,
            estimated_tokens,
        )
