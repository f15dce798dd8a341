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
