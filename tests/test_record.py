"""The exchange record on its own: SQLite rows, concurrent writers, rebuilding conversations."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import sys
from pathlib import Path

import pytest

from nbchat.record import Record, default_history_path, user_data_dir

WRITES_PER_PROCESS = 300


def write_exchanges(path: str, writer: str, count: int, barrier) -> None:
    """One process's writes: every exchange inserted when it starts, updated when it ends."""
    record = Record(path)
    barrier.wait()  # both processes write at the same time
    for n in range(count):
        row = record.start(
            notebook="nb.ipynb",
            session=writer,
            conversation="default",
            prompt=json.dumps({"role": "user", "content": f"{writer} {n}"}),
            request="{}",
        )
        record.finish(row, status="complete", kept=1, reply=f"{writer} {n}", total_tokens=n)
    record.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")  # not created yet: both race to create it too
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    workers = [
        spawn.Process(target=write_exchanges, args=(path, name, WRITES_PER_PROCESS, barrier))
        for name in ("kernel-a", "kernel-b")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT session, reply, status FROM exchanges").fetchall()
    writers = ("kernel-a", "kernel-b")
    expected = {(w, f"{w} {n}") for w in writers for n in range(WRITES_PER_PROCESS)}
    assert {(session, reply) for session, reply, _ in rows} == expected
    assert len(rows) == len(expected)
    assert {status for *_, status in rows} == {"complete"}


def test_record_is_in_wal_mode(tmp_path):
    Record(tmp_path / "h.sqlite").close()
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_record_from_a_newer_nbchat_is_refused(tmp_path):
    path = tmp_path / "h.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(sqlite3.DatabaseError, match="newer nbchat"):
        Record(path)


def kept(record: Record, session: str, context: list[int], text: str, kept: int = 1) -> int:
    row = record.start(
        notebook="nb",
        session=session,
        conversation="default",
        context=json.dumps(context),
        prompt=json.dumps({"role": "user", "content": text}),
        request="{}",
    )
    record.finish(row, status="complete" if kept else "failed", kept=kept, reply=f"re: {text}")
    return row


def test_conversation_is_rebuilt_from_its_last_row_across_reruns(tmp_path):
    record = Record(tmp_path / "h.sqlite")
    a = kept(record, "s1", [], "a")
    b = kept(record, "s1", [a], "b")
    kept(record, "s1", [a, b], "c")
    b2 = kept(record, "s1", [a], "b again")  # cell b re-ran: c dropped
    kept(record, "s1", [a, b2], "failed", kept=0)  # failed: never a turn
    kept(record, "s2", [], "this kernel")  # the current session is not "earlier"
    rows = record.conversations("nb", session="s2")["default"]
    assert [r.user.text for r in rows] == ["a", "b again"]
    assert [r.to_reply().text for r in rows] == ["re: a", "re: b again"]
    assert record.conversations("other notebook", session="s2") == {}


def test_abandoned_streaming_rows_become_incomplete(tmp_path):
    record = Record(tmp_path / "h.sqlite")
    dead = record.start(notebook="nb", session="s1", conversation="c", prompt="{}", request="{}")
    assert record.abandon("nb", session="s1") == 0  # its own kernel is alive
    assert record.abandon("nb", session="s2") == 1
    (row,) = record.recent("nb", 5)
    assert (row.id, row.status) == (dead, "incomplete")


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {}, "/home/u/.local/share/nbchat"),
        ("linux", {"XDG_DATA_HOME": "/data"}, "/data/nbchat"),
        ("linux", {"XDG_DATA_HOME": "relative"}, "/home/u/.local/share/nbchat"),
        ("darwin", {}, "/home/u/Library/Application Support/nbchat"),
        ("win32", {"LOCALAPPDATA": "/c/Users/u/AppData/Local"}, "/c/Users/u/AppData/Local/nbchat"),
    ],
)
def test_user_data_dir_per_platform(monkeypatch, platform, env, expected):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "home", lambda: Path("/home/u"))
    for name in ("XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert user_data_dir() == Path(expected)


def test_default_path_is_in_the_data_dir_unless_the_environment_says(monkeypatch, tmp_path):
    monkeypatch.delenv("NBCHAT_HISTORY_PATH")
    assert Path(default_history_path()) == user_data_dir() / "history.sqlite"
    monkeypatch.setenv("NBCHAT_HISTORY_PATH", str(tmp_path / "x.sqlite"))
    assert default_history_path() == str(tmp_path / "x.sqlite")


# -- version 4: indexed queries and running totals ------------------------------------------

SUMS = (
    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
    "COALESCE(SUM(total_tokens), 0), SUM(cost), "
    "COALESCE(SUM(total_tokens IS NOT NULL AND cost IS NULL), 0), "
    "COALESCE(SUM(total_tokens IS NULL), 0) FROM {} WHERE notebook = ?{}"
)


def summed(path, notebook: str, session: str | None = None) -> tuple:
    """The totals as version 2 computed them: a SUM over every row (the reference)."""
    extra, args = ("", (notebook,))
    if session is not None:
        extra, args = " AND session = ?", (notebook, session)
    with sqlite3.connect(path) as db:
        chat = db.execute(SUMS.format("exchanges", extra), args).fetchone()
        mapped = db.execute(SUMS.format("map_results", extra), args).fetchone()
        estimated = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(estimated_tokens), 0) FROM exchanges WHERE notebook = ?"
            + extra
            + " AND total_tokens IS NULL AND estimated_tokens IS NOT NULL",
            args,
        ).fetchone()
    costs = [c for c in (chat[4], mapped[4]) if c is not None]
    return (
        *(chat[i] + mapped[i] for i in range(4)),
        round(sum(costs), 12) if costs else None,
        chat[5] + mapped[5],
        chat[6] + mapped[6],
        mapped[0],
        *estimated,
    )


def as_tuple(totals) -> tuple:
    values = list(vars(totals).values())
    values[4] = round(values[4], 12) if values[4] is not None else None
    return tuple(values)


def fill(record: Record, rows: int = 60) -> None:
    """Chat rows in two notebooks and sessions (priced, unpriced, estimated, failed,
    still streaming), and map results."""
    for n in range(rows):
        row = record.start(
            notebook=f"nb{n % 2}",
            session=f"s{n % 3}",
            conversation="default",
            prompt=json.dumps({"role": "user", "content": str(n)}),
            request="{}",
        )
        if n % 7 == 6:
            continue  # left streaming
        usage = {"prompt_tokens": n, "completion_tokens": 2 * n, "total_tokens": 3 * n}
        if n % 5 == 0:
            record.finish(row, status="complete", kept=1, estimated_tokens=n)
        elif n % 5 == 1:
            record.finish(row, status="failed", error="no")
        else:
            record.finish(row, status="complete", kept=1, cost=n / 1000 if n % 3 else None, **usage)
        if n % 4 == 0:
            record.query(
                "INSERT OR IGNORE INTO map_results (key, notebook, session, created, reply, "
                "prompt_tokens, completion_tokens, total_tokens, cost) "
                "VALUES (?, ?, ?, 0, '{}', ?, ?, ?, ?)",
                (f"k{n}", f"nb{n % 2}", f"s{n % 3}", n, n, 2 * n, n / 500 if n % 8 else None),
            )


def test_usage_totals_kept_by_triggers_match_summing_every_row(tmp_path):
    path = tmp_path / "h.sqlite"
    record = Record(path)
    fill(record)
    record.abandon("nb0", "s9")  # status changes leave the sums alone
    record.forget("nb1", "default")
    for notebook in ("nb0", "nb1", "nobody"):
        assert as_tuple(record.totals(notebook)) == summed(path, notebook)
        for session in ("s0", "s1", "s2", "s9"):
            assert as_tuple(record.totals(notebook, session)) == summed(path, notebook, session)
    record.close()


def test_a_version_3_record_is_indexed_and_its_totals_filled(tmp_path):
    from nbchat.record import SCHEMA, SCHEMA_VERSION

    path = tmp_path / "v3.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)  # version 3: no totals table, no triggers
        db.execute("PRAGMA user_version = 3")
    record = Record.__new__(Record)  # write version-3 rows through the same helpers
    record._lock = __import__("threading").Lock()
    record._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    record.path = path
    fill(record)
    expected = {nb: summed(path, nb) for nb in ("nb0", "nb1")}
    record.close()

    record = Record(path)  # migrates
    for notebook, sums in expected.items():
        assert as_tuple(record.totals(notebook)) == sums
        assert as_tuple(record.totals(notebook, "s1")) == summed(path, notebook, "s1")
    fill(record, 10)  # and keeps them from here on
    assert as_tuple(record.totals("nb0")) == summed(path, "nb0")
    record.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


@pytest.mark.parametrize(
    "sql, args",
    [
        ("recent", ("nb0", 10)),
        ("conversations", ("nb0", "s0")),
        ("abandon", ("nb0", "s0")),
        ("forget", ("nb0", "default")),
    ],
)
def test_log_resume_and_reset_read_through_indexes(tmp_path, sql, args):
    """No statement of `%chat log`, `%chat resume` or a reset scans the exchanges table."""
    record = Record(tmp_path / "h.sqlite")
    fill(record, 20)
    plans: list[str] = []
    db = record._db
    real = db.execute

    class Spy:
        def execute(self, statement, params=()):
            if statement.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE")):
                plans.extend(r[-1] for r in real("EXPLAIN QUERY PLAN " + statement, params))
            return real(statement, params)

        def __getattr__(self, name):
            return getattr(db, name)

    record._db = Spy()  # type: ignore[assignment]
    getattr(record, sql)(*args)
    record._db = db
    assert plans
    scans = [p for p in plans if p.startswith("SCAN exchanges")]
    assert not scans, plans
    record.close()


def test_a_migration_skips_columns_a_file_already_has(tmp_path):
    """A file a development build half-migrated (a column there, the version behind) opens,
    migrates and records; adding a column is not an error that stops recording."""
    from nbchat.record import SCHEMA, SCHEMA_VERSION

    path = tmp_path / "half.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)  # every column of today
        db.execute("PRAGMA user_version = 1")  # but the version of the first schema
    record = Record(path)
    row = record.start(notebook="nb", session="s", conversation="c", prompt="{}", request="{}")
    record.finish(row, status="complete", estimated_tokens=3, reasoning="hm")
    assert record.totals("nb").estimated_tokens == 3
    record.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
