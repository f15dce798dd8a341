"""Quirks of real local servers, reproduced by the mock server (see README "Local servers").

llama-cpp-python's server (0.3.x) ends a running stream with `data: [DONE]` and no
finish_reason when another request arrives, sends `: ping` comments while it is
stuck, and answers a streamed request with an image with a 200 and no body. The
same behaviours against the real server are in tests/test_llamacpp.py.
"""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest

from nbchat.client import ChatClient
from nbchat.errors import NbChatError, StreamError, TransportError
from nbchat.mockserver import reply_pieces
from nbchat.recorder import Recorder

from .conftest import markdown_outputs, run
from .test_faults import assert_history_clean, chat_requests, fast_backoff, pieces  # noqa: F401

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


def statuses(ip) -> list[str]:
    magics = ip.find_cell_magic("chat").__self__
    recorder = magics.session.recorder
    assert isinstance(recorder, Recorder)
    record = recorder.open()
    assert record is not None
    return [row.status for row in record.recent(recorder.notebook(), 50)]


# -- a stream that ends without a finish_reason ----------------------------------------------


def test_done_without_finish_reason_is_an_incomplete_reply(ip, server):
    run(ip, "%%chat\nfirst")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@done_early=4,chunks=20 -o r\nsecond")
    assert isinstance(result.error_in_exec, StreamError)
    assert chat_requests(server) == 2  # text was shown: never retried
    partial = "".join(pieces("second", chunks=20, turn=2)[:4])
    assert markdown_outputs(captured) == [partial]  # the partial stays visible
    assert ip.user_ns["r"].text == partial and not ip.user_ns["r"].complete
    assert (
        "nbchat: reply incomplete: the server ended the stream early (no finish_reason) "
        "after 4 tokens" in captured.stdout
    )
    assert "Traceback" not in captured.stdout
    assert statuses(ip) == ["complete", "incomplete"]
    assert_history_clean(ip, server, turns=1)


@pytest.mark.usefixtures("fast_backoff")
def test_done_without_finish_reason_before_text_is_retried(ip, server):
    result, captured = run(ip, "%%chat -m gpt-4o-mini@done_early=0,fail_times=1 -o r\nhi")
    assert result.error_in_exec is None
    assert chat_requests(server) == 2
    assert "the server ended the stream early (no finish_reason) — retrying" in captured.stdout
    assert ip.user_ns["r"].complete


def test_a_comparison_column_cut_short_says_so(ip, server):
    result, captured = run(ip, "%%chat -m gpt-4o-mini@done_early=3,chunks=12,gpt-4o -o cmp\nhi")
    assert result.error_in_exec is None  # one model answered
    cmp = ip.user_ns["cmp"]
    cut, whole = cmp[0], cmp[1]
    assert not cut.ok and cut.error is not None
    assert "the server ended the stream early" in cut.error.message
    assert cut.reply is not None and cut.reply.text == "".join(
        reply_pieces([{"role": "user", "content": "hi"}], "gpt-4o-mini", chunks=12)[:3]
    )
    assert whole.ok and whole.error is None
    final = markdown_outputs(captured)[-1]
    assert "the server ended the stream early" in final  # the column shows the line


# -- a stall with keep-alive comments ------------------------------------------------------


def test_comments_during_a_stall_do_not_hold_the_cell(ip, server):
    ip.run_line_magic("config", "ChatMagics.timeout = 0.5")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@stall_after=2,ping=0.05,chunks=9 -o r\nhi")
    assert isinstance(result.error_in_exec, StreamError)
    assert ip.user_ns["r"].text == "".join(pieces("hi", chunks=9)[:2])
    assert "reply incomplete: no data for 0.5 s after 2 tokens (ChatMagics.timeout)" in (
        captured.stdout
    )
    assert_history_clean(ip, server)


def test_comments_before_the_first_token_count_against_the_timeout(ip, server):
    ip.run_line_magic("config", "ChatMagics.timeout = 0.5")
    ip.run_line_magic("config", "ChatMagics.max_retries = 0")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@stall=1,ping=0.05\nhi")
    assert isinstance(result.error_in_exec, TransportError)
    assert "nbchat: no response in 0.5 s (ChatMagics.timeout)" in captured.stdout
    assert chat_requests(server) == 1


def test_slow_tokens_between_comments_are_progress(ip, server):
    ip.run_line_magic("config", "ChatMagics.timeout = 0.5")
    result, _ = run(ip, "%%chat -m gpt-4o-mini@chunks=6,delay=0.2 -o r\nhi")  # 1.0 s in all
    assert result.error_in_exec is None and ip.user_ns["r"].complete


class _Slow(httpx.SyncByteStream):
    """A body of comments, each after `every` seconds (no socket: `_watched` must notice)."""

    def __init__(self, head: list[bytes], every: float, count: int) -> None:
        self.head, self.every, self.count = head, every, count

    def __iter__(self):
        import time

        yield from self.head
        for _ in range(self.count):
            time.sleep(self.every)
            yield b": keep-alive\n\n"


def test_comments_do_not_reset_the_timeout_without_a_socket_either():
    content = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    head = [f"data: {json.dumps(content)}\n\n".encode()]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_Slow(head, 0.05, 200)
        )

    client = ChatClient(
        base_url="http://mock.test/v1",
        transport=httpx.MockTransport(handler),
        timeout=0.3,
        max_retries=0,
    )
    stream = client.stream({"model": "m", "messages": [], "stream": True})
    with pytest.raises(StreamError, match=r"no data for 0.3 s after 1 token"):
        list(stream)  # 200 comments would take 10 s: it must stop long before


# -- an empty 200 to a request with an image ---------------------------------------------------


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "dot.png"
    path.write_bytes(PNG)
    return str(path)


@pytest.mark.parametrize("stream", ["", "--no-stream"])
def test_an_empty_reply_to_an_image_is_one_line_and_not_retried(ip, server, png, stream):
    run(ip, "%%chat\nfirst")
    result, captured = run(ip, f"%%chat {stream} -m gpt-4o-mini@empty=1 --image {png}\nwhat?")
    error = result.error_in_exec
    assert isinstance(error, NbChatError)
    assert chat_requests(server) == 2  # asked once: the same request cannot get another answer
    assert (
        "nbchat: the server sent nothing back (HTTP 200, empty body) to a request with image input"
        in captured.stdout
    )
    assert "may not accept image input" in captured.stdout
    assert "try again" not in captured.stdout and "retrying" not in captured.stdout
    assert "Traceback" not in captured.stdout
    assert_history_clean(ip, server, turns=1)


@pytest.mark.usefixtures("fast_backoff")
def test_an_empty_reply_without_media_is_retried(ip, server):
    result, captured = run(ip, "%%chat -m gpt-4o-mini@empty=1,fail_times=1 -o r\nhi")
    assert result.error_in_exec is None
    assert chat_requests(server) == 2
    assert "empty reply — retrying" in captured.stdout


def test_mock_quirk_options_are_checked(server):
    with httpx.Client(base_url=server.url) as http:
        for bad in ("done_early=-1", "stall_after=x", "ping=0", "empty=maybe"):
            body = {"model": f"gpt-4o-mini@{bad}", "messages": [{"role": "user", "content": "x"}]}
            assert http.post("/chat/completions", json=body).status_code == 400, bad


# -- estimated tokens in the record --------------------------------------------------------------


def test_log_and_usage_say_which_replies_are_estimated(ip, server):
    run(ip, "%%chat\nwith usage")
    run(ip, "%%chat -m gpt-4o-mini@usage=0,chunks=5\nwithout")
    _, captured = run(ip, "%chat log")
    table = captured.outputs[-1].data["text/plain"].splitlines()
    assert "≈5" in table[-1] and "≈" not in table[-2]
    assert "≈: 1 exchange without usage from the server" in captured.stdout
    _, captured = run(ip, "%chat usage")
    kernel = captured.stdout.splitlines()[0]
    assert "2 exchanges" in kernel
    assert "(1 without usage; ≈5 completion tokens estimated for 1 of them, not counted)" in kernel


def test_a_version_1_record_gains_the_estimate_column(tmp_path):
    import sqlite3

    from nbchat.record import SCHEMA, SCHEMA_VERSION, Record

    path = tmp_path / "old.sqlite"
    old = SCHEMA.replace(",\n    estimated_tokens INTEGER", "").replace(
        ",\n    reasoning TEXT,\n    reasoning_time REAL,\n    answer_ttft REAL", ""
    )
    assert old != SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(old)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO exchanges (notebook, session, conversation, status, started, prompt,"
            " request) VALUES ('nb', 's', 'default', 'complete', 1, '{\"content\": \"x\"}', '{}')"
        )
    record = Record(path)
    (row,) = record.recent("nb", 5)
    assert row.estimated_tokens is None
    new = record.start(
        notebook="nb", session="s", conversation="default", prompt="{}", request="{}"
    )
    record.finish(new, status="complete", estimated_tokens=9)
    assert record.totals("nb").estimated_tokens == 9
    record.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
