"""`nbchat.map` and the exchange record: a re-run after a restart (or in another process)
pays nothing, Batch API batches are collected rather than submitted twice, map spend
shows in `%chat usage`, and the configured request fields reach every map request."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import nbchat
import nbchat.batch_api
from nbchat.batch import DEFAULT_CACHE
from nbchat.mapcache import RecordCache, reply_from_json, reply_to_json
from nbchat.mockbatch import MockExtras
from nbchat.mockserver import MockServer
from nbchat.record import Record
from nbchat.results import BatchInterrupted, MemoryCache
from nbchat.types import Reply, Usage

from .conftest import ENV, TEST_KEY, run
from .test_batch import expected, fresh_extras, interrupt_when, sent_prompts
from .test_batch_api import api_calls
from .test_resume_export import configure, restart

ITEMS = [f"item {i}" for i in range(12)]


@pytest.fixture
def mock(server: MockServer) -> Iterator[MockExtras]:
    yield from fresh_extras(server)


@pytest.fixture
def recorded(ip, server, tmp_path, monkeypatch):
    """A notebook whose record is tmp_path/history.sqlite (the path `restart` keeps)."""
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/map.ipynb")
    configure(ip, server, tmp_path)
    return tmp_path / "history.sqlite"


def new_process_state(ip, server, tmp_path) -> None:
    """What a new kernel starts with: a fresh extension, nothing cached in memory."""
    restart(ip, server, tmp_path)
    DEFAULT_CACHE.clear()
    nbchat.batch_api._submitted.clear()
    server.clear()


def test_a_map_rerun_after_a_restart_sends_nothing(ip, server, mock, recorded, tmp_path):
    first = nbchat.map("Say {}", ITEMS)
    assert len(sent_prompts(server)) == 12 and not any(r.cached for r in first)
    new_process_state(ip, server, tmp_path)
    again = nbchat.map("Say {}", ITEMS)
    assert sent_prompts(server) == []  # counted at the server: nothing was sent
    assert all(r.cached for r in again)
    assert again.texts == first.texts == [expected(f"Say {i}") for i in ITEMS]
    assert [r.reply for r in again] == [r.reply for r in first]  # usage, timings, cost too
    assert TEST_KEY.encode() not in recorded.read_bytes()


def test_a_map_rerun_in_another_process_sends_nothing(ip, server, mock, recorded):
    first = nbchat.map("Say {}", ITEMS[:5], model="gpt-4.1-mini")
    server.clear()
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "import nbchat\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'nbchat')\n"
        f"r = nbchat.map('Say {{}}', {ITEMS[:5]!r}, model='gpt-4.1-mini', progress=False)\n"
        "print(sum(x.cached for x in r), r.texts == " + repr(first.texts) + ")\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(
        OPENAI_BASE_URL=server.url,
        OPENAI_API_KEY=TEST_KEY,
        NBCHAT_HISTORY_PATH=str(recorded),
        JPY_SESSION_NAME="/work/map.ipynb",
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "True"]
    assert sent_prompts(server) == []


def test_batch_api_resumes_its_batch_after_a_restart(ip, server, mock, recorded, tmp_path):
    items = ["a", "b", "c"]
    polled = lambda: any(r.path.startswith("/v1/batches/") for r in server.requests)  # noqa: E731
    fired = interrupt_when(polled)
    with pytest.raises(BatchInterrupted):
        nbchat.map("Hi {}", items, batch="api", poll_interval=0.5)
    assert fired.is_set()
    new_process_state(ip, server, tmp_path)
    results = nbchat.map("Hi {}", items, batch="api", poll_interval=0.01)
    assert results.texts == [expected(f"Hi {i}") for i in items]
    calls = api_calls(server)
    assert ("POST", "/v1/files") not in calls and ("POST", "/v1/batches") not in calls
    assert sent_prompts(server) == [f"Hi {i}" for i in items]  # each line ran once, on the server

    new_process_state(ip, server, tmp_path)  # finished: the results themselves are cached
    nbchat.map("Hi {}", items, batch="api", poll_interval=0.01)
    assert len(server.requests) == 0


def test_an_interrupted_job_of_several_batches_resumes_each(
    ip, server, mock, recorded, tmp_path, monkeypatch
):
    monkeypatch.setattr(nbchat.batch_api, "MAX_REQUESTS", 4)
    mock.max_batch_lines = 4
    items = [f"n{i}" for i in range(10)]  # 3 batches: 4 + 4 + 2 lines
    polled = lambda: any(r.path.startswith("/v1/batches/") for r in server.requests)  # noqa: E731
    fired = interrupt_when(polled)
    with pytest.raises(BatchInterrupted):
        nbchat.map("Hi {}", items, batch="api", poll_interval=0.5)
    assert fired.is_set()
    created = [c for c in api_calls(server) if c == ("POST", "/v1/batches")]
    assert len(created) == 3

    new_process_state(ip, server, tmp_path)
    results = nbchat.map("Hi {}", items, batch="api", poll_interval=0.01)
    assert results.texts == [expected(f"Hi {i}") for i in items]
    calls = api_calls(server)
    assert ("POST", "/v1/files") not in calls and ("POST", "/v1/batches") not in calls
    polled_ids = {path.rsplit("/", 1)[1] for m, path in calls if path.startswith("/v1/batches/")}
    assert len(polled_ids) == 3  # each part collected from the batch it was submitted as
    ran = sorted(sent_prompts(server), key=lambda p: int(p[4:]))
    assert ran == [f"Hi {i}" for i in items]  # each line ran once, on the server


def test_a_batch_the_server_no_longer_knows_is_submitted_again(ip, server, mock, recorded):
    cache = nbchat.batch._cache(True, nbchat.context.current())
    assert isinstance(cache, RecordCache)
    lines = nbchat.batch_api.request_lines(
        [(0, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi x"}]})]
    )
    digest = nbchat.batch_api.hashlib.sha256(server.url.encode() + b"\n" + lines).hexdigest()
    cache.remember_batch(digest, "batch_gone")
    nbchat.batch_api._submitted.clear()
    results = nbchat.map("Hi {}", ["x"], batch="api", poll_interval=0.01)
    assert results.texts == [expected("Hi x")]
    assert ("GET", "/v1/batches/batch_gone") in api_calls(server)  # asked, 404, then submitted
    assert ("POST", "/v1/batches") in api_calls(server)


def test_map_spend_counts_in_chat_usage_once(ip, server, mock, recorded, tmp_path):
    run(ip, "%%chat\nhello")
    results = nbchat.map("Say {}", ITEMS[:3])
    nbchat.map("Say {}", ITEMS[:3])  # cached: paid once, counted once
    _, captured = run(ip, "%chat usage")
    kernel_line, notebook_line, _ = captured.stdout.splitlines()
    assert "4 exchanges (3 by nbchat.map) · " in kernel_line
    tokens = int(kernel_line.split(" = ")[1].split(" tokens")[0])
    chat_tokens = magics_reply_tokens(ip)
    assert tokens == results.total_tokens + chat_tokens
    new_process_state(ip, server, tmp_path)
    _, captured = run(ip, "%chat usage")
    kernel_line, notebook_line, _ = captured.stdout.splitlines()
    assert kernel_line.startswith("this kernel:   0 exchanges · ")
    assert "this notebook: 4 exchanges (3 by nbchat.map) · " in notebook_line


def magics_reply_tokens(ip) -> int:
    from .test_memory import magics

    return sum(t.reply.usage.total_tokens for t in magics(ip).session.conversation().turns)


def test_with_recording_off_map_caches_in_memory_only(ip, server, mock, recorded):
    ip.run_line_magic("config", "ChatMagics.record = False")
    nbchat.map("Say {}", ITEMS[:2])
    server.clear()
    again = nbchat.map("Say {}", ITEMS[:2])
    assert sent_prompts(server) == [] and all(r.cached for r in again)
    assert not recorded.exists()


def test_an_unusable_record_leaves_map_in_memory_and_says_so_once(ip, server, mock, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ip.run_line_magic("config", f"ChatMagics.history_path = {str(blocker / 'h.sqlite')!r}")
    _, first = run(ip, "import nbchat\nr = nbchat.map('Say {}', ['x', 'y'])")
    _, second = run(ip, "r = nbchat.map('Say {}', ['x', 'y'])")
    assert "cannot keep the record at" in first.stdout
    assert "cannot keep the record" not in second.stdout
    assert all(r.cached for r in ip.user_ns["r"])


def test_record_cache_round_trips_replies_and_survives_a_new_instance(tmp_path):
    reply = Reply(
        text="ok",
        model="m",
        usage=Usage(3, 4, 7, 1, None),
        finish_reason="stop",
        latency=0.5,
        cost=0.25,
        request={"model": "m", "messages": []},
    )
    assert reply_from_json(reply_to_json(reply)) == reply
    record = Record(tmp_path / "h.sqlite")
    cache = RecordCache(record, notebook="nb", session="s1", fallback=MemoryCache())
    cache.put("k", reply)
    cache.remember_batch("d", "batch_1")
    record.close()
    fresh = RecordCache(
        Record(tmp_path / "h.sqlite"), notebook="nb", session="s2", fallback=MemoryCache()
    )
    assert fresh.get("k") == reply and fresh.get("other") is None
    assert fresh.batch_id("d") == "batch_1"
    totals = fresh.record.totals("nb")
    assert (totals.exchanges, totals.mapped, totals.total_tokens, totals.cost) == (1, 1, 7, 0.25)
    assert fresh.record.totals("nb", "s2").exchanges == 0


def test_record_cache_looks_up_many_keys_at_once_and_falls_back_when_broken(tmp_path):
    replies = {f"k{i}": Reply(text=f"r{i}", model="m") for i in range(1203)}
    record = Record(tmp_path / "h.sqlite")
    cache = RecordCache(record, notebook="nb", session="s", fallback=MemoryCache())
    for key, reply in replies.items():
        cache.put(key, reply)
    keys = [*replies, "missing"]  # more than one statement's worth (500 per SELECT)
    assert cache.get_many(keys) == replies
    record.close()  # from here every statement fails: the memory fallback answers
    told: list[str] = []
    cache._notice = told.append
    cache.fallback.put("k1", replies["k1"])
    assert cache.get_many(keys) == {"k1": replies["k1"]}
    assert cache.broken and len(told) == 1


# -- the configured request fields ----------------------------------------------------------


def test_map_applies_the_configured_request_fields_under_params(ip, server, mock):
    ip.run_line_magic("config", "ChatMagics.temperature = 0.2")
    ip.run_line_magic("config", "ChatMagics.max_tokens = 50")
    ip.run_line_magic("config", "ChatMagics.params = {'service_tier': 'flex'}")
    nbchat.map("Say {}", ["a"])
    nbchat.map("Say {}", ["b"], params={"temperature": 0.7, "seed": 3})
    ip.user_ns["names"] = ["c"]
    run(ip, "%chat map names 'Say {}'")
    run(ip, "%chat -t 0.9 --max-tokens 20 map names 'Say {} again'")
    fields = [
        {k: v for k, v in r.body.items() if k not in ("model", "messages")} for r in server.requests
    ]
    assert fields == [
        {"temperature": 0.2, "max_tokens": 50, "service_tier": "flex"},
        {"temperature": 0.7, "max_tokens": 50, "service_tier": "flex", "seed": 3},
        {"temperature": 0.2, "max_tokens": 50, "service_tier": "flex"},
        {"temperature": 0.9, "max_tokens": 20, "service_tier": "flex"},
    ]


def test_map_without_the_extension_sends_only_what_it_is_given(bare_ip, server, mock, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    nbchat.map("Say {}", ["solo"], params={"seed": 1}, progress=False)
    assert {k for k in server.requests[-1].body} == {"model", "messages", "seed"}
