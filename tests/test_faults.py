"""Every way a request can fail, through `%%chat` against the mock server's fault modes.

After each fault the next request must still alternate user/assistant and carry
no error text: a failure never corrupts the conversation.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbchat.client
from nbchat.errors import (
    AuthenticationError,
    BadRequestError,
    Interrupted,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
    TransportError,
)
from nbchat.magics import ChatMagics
from nbchat.mockserver import MockServer, reply_pieces

from .conftest import markdown_outputs, run

ERROR_WORDS = ("nbchat", "incomplete", "retrying", "error", "Incorrect", "malformed", "limit")


def magic(ip: InteractiveShell) -> ChatMagics:
    return ip.find_cell_magic("chat").__self__


def pieces(prompt: str, chunks: int | None = None, turn: int = 1) -> list[str]:
    """The mock server's content chunks for `prompt` as the `turn`-th user message."""
    messages = [{"role": "user", "content": "earlier"}] * (turn - 1)
    messages.append({"role": "user", "content": prompt})
    return reply_pieces(messages, "gpt-4o-mini", chunks=chunks)


def assert_history_clean(ip: InteractiveShell, server: MockServer, turns: int = 0) -> None:
    """The next request alternates user/assistant, has `turns` earlier turns, no error text."""
    result, _ = run(ip, "%%chat\nand now?")
    assert result.error_in_exec is None
    messages = server.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * turns + ["user"]
    for m in messages:
        assert not any(word in m["content"] for word in ERROR_WORDS), m


def chat_requests(server: MockServer) -> int:
    return sum(r.path.endswith("/chat/completions") for r in server.requests)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Our own backoff (no retry-after from the server) at 1/100 of its delay; records them."""
    real = nbchat.client.retry_delay
    delays: list[float] = []

    def scaled(response, attempt):
        delays.append(real(response, attempt))
        return delays[-1] / 100

    monkeypatch.setattr(nbchat.client, "retry_delay", scaled)
    return delays


# -- retries before the first token ----------------------------------------------------


def test_rate_limit_is_retried_honouring_retry_after_ms(ip, server):
    cell = "%%chat -m gpt-4o-mini@status=429,retry_after_ms=100,fail_times=2 -o r\nhi"
    result, captured = run(ip, cell)
    assert result.error_in_exec is None
    assert chat_requests(server) == 3
    # 'auto' outside a kernel prints the status line (a terminal keeps it)
    assert "rate limited — retrying in 0.1 s, attempt 2 of 3" in captured.stdout
    assert "rate limited — retrying in 0.1 s, attempt 3 of 3" in captured.stdout
    assert markdown_outputs(captured) == ["".join(pieces("hi"))]
    assert ip.user_ns["r"].finish_reason == "stop"
    assert_history_clean(ip, server, turns=1)


def test_live_status_line_is_replaced_by_the_reply(ip, server, monkeypatch):
    from nbchat.render import LiveMarkdown

    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", "ChatMagics.update_interval = 0")
    shown: list[str] = []
    real = LiveMarkdown.status

    def status(self, text):
        shown.append(text)
        real(self, text)

    monkeypatch.setattr(LiveMarkdown, "status", status)
    result, captured = run(ip, "%%chat -m gpt-4o-mini@status=503,retry_after=0,fail_times=1\nhi")
    assert result.error_in_exec is None
    assert shown == ["server error 503 — retrying in 0.0 s, attempt 2 of 3"]  # Retry-After: 0
    assert "retrying" not in captured.stdout + repr(captured.outputs)
    assert markdown_outputs(captured) == ["".join(pieces("hi"))]


def test_server_error_once_then_ok(ip, server):
    result, _ = run(ip, "%%chat -m gpt-4o-mini@status=500,retry_after_ms=1,fail_times=1\nhi")
    assert result.error_in_exec is None
    assert chat_requests(server) == 2
    assert_history_clean(ip, server, turns=1)


def test_retries_run_out_after_max_retries(ip, server):
    ip.run_line_magic("config", "ChatMagics.max_retries = 1")
    run(ip, "%%chat\nfirst")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@status=429,retry_after_ms=1\nsecond")
    assert isinstance(result.error_in_exec, RateLimitError)
    assert chat_requests(server) == 1 + 2
    lines = captured.stdout.strip().splitlines()
    assert lines[-1].endswith(
        "nbchat: 429 rate limited: Rate limit reached for requests. Please try again later.\x1b[0m"
    )
    assert "Traceback" not in captured.stdout
    assert_history_clean(ip, server, turns=1)


def test_max_retries_zero_sends_once(ip, server):
    ip.run_line_magic("config", "ChatMagics.max_retries = 0")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@status=503,retry_after_ms=1\nhi")
    assert isinstance(result.error_in_exec, ServerError)
    assert chat_requests(server) == 1 and "retrying" not in captured.stdout
    assert "503 server error: The engine is currently overloaded" in captured.stdout


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("cut=0", "connection closed"),
        ("stream_error=0", "server error"),
        ("malformed=0", "malformed event"),
    ],
)
def test_stream_broken_before_any_text_is_retried(ip, server, fast_backoff, fault, reason):
    result, captured = run(ip, f"%%chat -m gpt-4o-mini@{fault},fail_times=1 -o r\nhi")
    assert result.error_in_exec is None
    assert chat_requests(server) == 2
    assert f"{reason} — retrying in 0.0 s, attempt 2 of 3" in captured.stdout
    assert 0.375 <= fast_backoff[0] <= 0.5  # our backoff: 0.5 s less up to 25 % jitter
    assert ip.user_ns["r"].text == "".join(pieces("hi"))
    assert_history_clean(ip, server, turns=1)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("cut=0", "no reply: connection closed before any text arrived"),
        (
            "stream_error=0",
            "no reply: server error before any text arrived: The server had an error",
        ),
        ("malformed=0", 'no reply: malformed event before any text arrived: \'{"id"'),
    ],
)
def test_stream_broken_before_any_text_every_time(ip, server, fast_backoff, fault, words):
    ip.user_ns.pop("nothing", None)
    result, captured = run(ip, f"%%chat -m gpt-4o-mini@{fault} -o nothing\nhi")
    assert isinstance(result.error_in_exec, TransportError)
    assert chat_requests(server) == 3
    assert words in captured.stdout
    assert "nothing" not in ip.user_ns  # no reply at all, so -o keeps nothing
    assert_history_clean(ip, server)


def test_connection_refused_is_retried_then_one_line(ip, server, fast_backoff):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ip.run_line_magic("config", f"ChatMagics.base_url = 'http://127.0.0.1:{port}/v1'")
    ip.run_line_magic("config", "ChatMagics.max_retries = 1")
    result, captured = run(ip, "%%chat\nhi")
    assert isinstance(result.error_in_exec, TransportError)
    assert "connection refused — retrying" in captured.stdout
    assert f"nbchat: cannot reach http://127.0.0.1:{port}/v1: connection refused" in captured.stdout
    assert "ChatMagics.base_url" in captured.stdout and len(fast_backoff) == 1


# -- timeouts ---------------------------------------------------------------------------


def test_stall_times_out_and_is_retried(ip, server, fast_backoff):
    ip.run_line_magic("config", "ChatMagics.timeout = 0.2")
    ip.run_line_magic("config", "ChatMagics.max_retries = 1")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@stall=1\nhi")
    assert isinstance(result.error_in_exec, TransportError)
    assert chat_requests(server) == 2
    assert "timed out — retrying" in captured.stdout
    assert "nbchat: no response in 0.2 s (ChatMagics.timeout)" in captured.stdout
    assert_history_clean(ip, server)


@pytest.mark.parametrize("flags", ["-m gpt-4o-mini@ttft=0.5", "--no-stream -m gpt-4o-mini@stall=1"])
def test_no_answer_within_the_timeout(ip, server, flags):
    ip.run_line_magic("config", "ChatMagics.timeout = 0.1")
    ip.run_line_magic("config", "ChatMagics.max_retries = 0")
    result, captured = run(ip, f"%%chat {flags}\nhi")
    assert isinstance(result.error_in_exec, TransportError)
    assert "no response in 0.1 s (ChatMagics.timeout)" in captured.stdout


def test_slow_first_token_within_the_timeout(ip, server):
    result, _ = run(ip, "%%chat -m gpt-4o-mini@ttft=0.2 -o r\nhi")
    assert result.error_in_exec is None
    assert ip.user_ns["r"].ttft >= 0.2  # the server waited that long before the first token


def test_silence_after_tokens_is_an_incomplete_reply(ip, server):
    ip.run_line_magic("config", "ChatMagics.timeout = 0.3")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@chunks=4,delay=2 -o r\nhi")
    assert isinstance(result.error_in_exec, StreamError)
    assert chat_requests(server) == 1  # text was shown: never retried
    first = pieces("hi", chunks=4)[0]
    assert ip.user_ns["r"].text == first
    assert "reply incomplete: no data for 0.3 s after 1 token (ChatMagics.timeout)" in (
        captured.stdout
    )


# -- the stream breaks after text arrived -------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("cut=5", "reply incomplete: connection closed after 5 tokens"),
        ("malformed=5", 'reply incomplete: malformed event after 5 tokens: \'{"id"'),
        (
            "stream_error=5",
            "reply incomplete: server error after 5 tokens: The server had an error while "
            "processing your request.",
        ),
    ],
)
def test_broken_stream_keeps_the_partial_reply_out_of_the_conversation(ip, server, fault, words):
    run(ip, "%%chat\nfirst")
    result, captured = run(ip, f"%%chat -m gpt-4o-mini@{fault},chunks=20 -o r\nsecond")
    error = result.error_in_exec
    assert isinstance(error, StreamError)
    assert chat_requests(server) == 2  # text was shown: never retried
    partial = "".join(pieces("second", chunks=20, turn=2)[:5])
    assert markdown_outputs(captured) == [partial]  # visible in the cell
    assert ip.user_ns["r"].text == partial and ip.user_ns["r"].finish_reason == "error"
    assert words in captured.stdout
    assert "not added to the conversation" in captured.stdout
    assert "Traceback" not in captured.stdout
    footer = captured.outputs[-1].data["text/plain"]
    assert "finish: error" in footer
    assert_history_clean(ip, server, turns=1)


# -- HTTP errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        (
            401,
            AuthenticationError,
            [
                "401 Incorrect API key provided.",
                "OPENAI_API_KEY",
                "c.ChatMagics.api_key",
                "%chat login",
            ],
        ),
        (403, AuthenticationError, ["403 You are not allowed to sample", "OPENAI_API_KEY"]),
        (
            404,
            NotFoundError,
            [
                "404 model 'gpt-4o-mini@status=404' not found at http://127.0.0.1:",
                "The model `gpt-4o-mini` does not exist",
                "%chat models",
            ],
        ),
        (
            400,
            BadRequestError,
            [
                "400 This model's maximum context length is 128000 tokens. "
                "However, your messages resulted in 131072 tokens. Please reduce "
                "the length of the messages."
            ],
        ),
    ],
)
def test_http_errors_are_one_line_and_hint(ip, server, status, error, shown):
    result, captured = run(ip, f"%%chat -m gpt-4o-mini@status={status}\nhi")
    assert isinstance(result.error_in_exec, error)
    assert chat_requests(server) == 1  # not retryable
    out = captured.stdout.strip()
    assert len(out.splitlines()) <= 2 and "Traceback" not in out  # the line, maybe a hint
    for text in shown:
        assert text in out
    assert_history_clean(ip, server)


def test_a_base_url_without_v1_is_blamed_not_the_model(ip, server):
    base = server.url.removesuffix("/v1")
    ip.run_line_magic("config", f"ChatMagics.base_url = {base!r}")
    result, captured = run(ip, "%%chat\nhi")
    assert isinstance(result.error_in_exec, NotFoundError)
    line, hint = captured.stdout.strip().splitlines()
    assert line.endswith(  # the mock server's words for an unknown path, like OpenAI's
        f"nbchat: 404 not found at {base}/chat/completions: Invalid URL (POST /chat/completions)"
        "\x1b[0m"
    )
    assert "model" not in line and "ChatMagics.base_url ends in /v1" in hint


# -- interrupts ---------------------------------------------------------------------------


@pytest.fixture
def interrupt_on_feed(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make the cell's view raise KeyboardInterrupt on the n-th delta, as Ctrl-C would."""
    from nbchat.render import LiveMarkdown

    def arm(n: int) -> None:
        real = LiveMarkdown.feed
        count = [0]

        def feed(self, delta):
            real(self, delta)
            count[0] += 1
            if count[0] == n:
                raise KeyboardInterrupt

        monkeypatch.setattr(LiveMarkdown, "feed", feed)

    return arm


def test_interrupt_mid_stream_keeps_the_partial_as_an_interrupted_turn(
    ip, server, interrupt_on_feed
):
    interrupt_on_feed(4)
    result, captured = run(ip, "%%chat -m gpt-4o-mini@chunks=50 -o r\ntell me")
    assert isinstance(result.error_in_exec, Interrupted)
    partial = "".join(pieces("tell me", chunks=50)[:4])
    assert markdown_outputs(captured) == [partial]
    assert "nbchat: interrupted after 4 tokens" in captured.stdout
    assert ip.user_ns["r"].text == partial and ip.user_ns["r"].finish_reason == "interrupted"
    turn = magic(ip).session.conversation().turns[-1]
    assert turn.reply.finish_reason == "interrupted" and turn.reply.text == partial
    run(ip, "%%chat\nnext")
    assert server.requests[-1].body["messages"] == [
        {"role": "user", "content": "tell me"},
        {"role": "assistant", "content": partial},
        {"role": "user", "content": "next"},
    ]


def test_interrupt_while_waiting_to_retry_adds_no_turn(ip, server, monkeypatch):
    from nbchat.render import LiveMarkdown

    def status(self, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(LiveMarkdown, "status", status)
    result, captured = run(ip, "%%chat -m gpt-4o-mini@status=429,retry_after_ms=1\nhi")
    assert isinstance(result.error_in_exec, Interrupted)
    assert "interrupted before any text arrived" in captured.stdout
    assert chat_requests(server) == 1
    assert magic(ip).session.conversation().turns == []
    monkeypatch.undo()
    assert_history_clean(ip, server)


def stop_when(ip: InteractiveShell, ready: Callable[[nbchat.client.ChatStream], bool]) -> None:
    """From another thread (like the panel's Stop button): session.stop() once `ready`."""
    session = magic(ip).session

    def watch() -> None:
        for _ in range(2000):
            running = session._running.get(session.active)
            active = running.chat if running is not None else None
            if active is not None and ready(active):
                assert session.stop()
                return
            threading.Event().wait(0.005)

    threading.Thread(target=watch, daemon=True).start()


def test_stop_from_another_thread_keeps_the_partial(ip, server):
    stop_when(ip, lambda chat: chat.chunks >= 3)
    result, _ = run(ip, "%%chat -m gpt-4o-mini@chunks=200,delay=0.01 -o r\nlong")
    assert isinstance(result.error_in_exec, Interrupted)
    reply = ip.user_ns["r"]
    assert reply.finish_reason == "interrupted"
    all_pieces = pieces("long", 200)
    assert reply.text in {"".join(all_pieces[:k]) for k in range(3, 200)}
    assert magic(ip).session.conversation().turns[-1].reply.text == reply.text
    assert_history_clean(ip, server, turns=1)


def test_stop_during_a_stall_is_an_interrupt_not_a_retry(ip, server):
    stop_when(ip, lambda chat: chat._response is not None)
    result, captured = run(ip, "%%chat -m gpt-4o-mini@stall=1\nhi")
    assert isinstance(result.error_in_exec, Interrupted)
    assert "interrupted before any text arrived" in captured.stdout
    assert chat_requests(server) == 1 and "retrying" not in captured.stdout
    assert magic(ip).session.conversation().turns == []


def test_stop_while_waiting_to_retry_stops_at_once(ip, server):
    stop_when(ip, lambda chat: chat._retries.attempt == 2)  # waiting out a 60 s retry-after
    outcome: list[object] = []
    cell = threading.Thread(
        target=lambda: outcome.append(
            run(ip, "%%chat -m gpt-4o-mini@status=429,retry_after_ms=60000\nhi")
        )
    )
    cell.start()
    cell.join(timeout=30)  # far below the 60 s the server asked for
    assert not cell.is_alive(), "Stop did not cut the wait short"
    result, _ = outcome[0]
    assert isinstance(result.error_in_exec, Interrupted)
    assert chat_requests(server) == 1 and magic(ip).session.conversation().turns == []


# -- in a real kernel ----------------------------------------------------------------------


def interrupt_when(manager, kernel, code: str, msg_type: str) -> list[dict]:
    """Run `code` in a real kernel, interrupt it (the notebook's ■) at the first `msg_type`
    message it sends; return its messages."""
    msg_id = kernel.execute(code)
    messages: list[dict] = []
    interrupted = False
    while True:
        msg = kernel.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == msg_type and not interrupted:
            manager.interrupt_kernel()
            interrupted = True
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def test_kernel_interrupt_mid_stream_keeps_the_partial(server):
    from jupyter_client.manager import start_new_kernel

    from .test_kernel import SETUP, execute, kernel_env

    manager, kernel = start_new_kernel(kernel_name="python3", env=kernel_env())
    try:
        execute(kernel, SETUP.format(url=server.url))
        # while text streams in (the first update of the open block)
        cell = "%%chat -m gpt-4o-mini@chunks=400,delay=0.01 -o r\nlong story"
        messages = interrupt_when(manager, kernel, cell, "update_display_data")
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert [e["ename"] for e in errors] == ["Interrupted"]
        assert "interrupted after" in errors[0]["traceback"][0]
        assert len(errors[0]["traceback"]) == 2  # one line and a hint, no traceback
        shown = execute(kernel, "import json; print(json.dumps([r.text, r.finish_reason]))")
        text, finish = json.loads(
            next(m for m in shown if m["msg_type"] == "stream")["content"]["text"]
        )
        assert finish == "interrupted"
        all_pieces = pieces("long story", 400)
        assert text in {"".join(all_pieces[:k]) for k in range(1, 400)}  # a strict prefix

        # while waiting out a 60 s retry-after (the status line is showing)
        cell = "%%chat -m gpt-4o-mini@status=429,retry_after_ms=60000\nnever sent twice"
        messages = interrupt_when(manager, kernel, cell, "display_data")
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert [e["ename"] for e in errors] == ["Interrupted"]
        assert "interrupted before any text arrived" in errors[0]["traceback"][0]
        assert server.requests[-1].body["messages"][-1]["content"] == "never sent twice"

        execute(kernel, "%%chat\nnext")
        assert server.requests[-1].body["messages"] == [
            {"role": "user", "content": "long story"},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "next"},
        ]
        assert (
            sum(
                r.body["messages"][-1]["content"] == "never sent twice"
                for r in server.requests
                if r.body
            )
            == 1
        )
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


def test_saved_notebook_keeps_no_status_line(server, tmp_path):
    from .kernels import run_and_save
    from .test_kernel import SETUP, kernel_env

    cells = [
        SETUP.format(url=server.url),
        "%%chat -m gpt-4o-mini@status=429,retry_after_ms=20,fail_times=1\nlive",
        "%config ChatMagics.display_mode = 'final'",
        "%%chat -m gpt-4o-mini@status=503,retry_after_ms=20,fail_times=1\nfinal",
        "%%chat -m gpt-4o-mini@status=429,retry_after_ms=20\nfails",
    ]
    path = tmp_path / "saved.ipynb"
    saved = run_and_save(cells, path, kernel_env()).cells
    assert chat_requests(server) == 2 + 2 + 3  # every status line was really shown
    assert "retrying" not in path.read_text()
    for cell, prompt, turn in ((saved[1], "live", 1), (saved[3], "final", 2)):
        kinds = [o["output_type"] for o in cell.outputs]
        assert kinds == ["display_data", "display_data"]  # the reply and its footer
        assert cell.outputs[0]["data"]["text/markdown"] == "".join(pieces(prompt, turn=turn))
    assert [o["output_type"] for o in saved[4].outputs] == ["error"]
    assert saved[4].outputs[0]["ename"] == "RateLimitError"


# -- the mock server's fault modes themselves ------------------------------------------------


def test_mock_fault_options_are_checked(server):
    import httpx2 as httpx

    for bad in ("status=200", "status=abc", "cut=-1", "fail_times=0", "stall=maybe"):
        response = httpx.post(
            f"{server.url}/chat/completions",
            json={"model": f"gpt-4o-mini@{bad}", "messages": [{"role": "user", "content": "x"}]},
        )
        assert response.status_code == 400, bad
        assert bad.split("=")[0] in response.json()["error"]["message"]


def test_mock_fail_times_counts_per_option_string_until_cleared(server):
    import httpx2 as httpx

    def status(model: str) -> int:
        body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        response = httpx.post(f"{server.url}/chat/completions", json=body)
        if response.status_code == 429:
            assert response.headers["retry-after"] == "3"
            assert response.headers["retry-after-ms"] == "7"
        return response.status_code

    once = "gpt-4o-mini@status=429,retry_after=3,retry_after_ms=7,fail_times=1"
    assert [status(once), status(once), status(once + ",reply=markdown")] == [429, 200, 429]
    server.clear()
    assert status(once) == 429


def test_mock_server_stops_while_a_client_is_stalled():
    import httpx2 as httpx

    outcome: list[BaseException] = []

    def stalled(url: str) -> None:
        body = {"model": "m@stall=1", "messages": [], "stream": True}
        try:
            with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as r:
                r.read()
        except httpx.HTTPError as exc:
            outcome.append(exc)

    srv = MockServer(delay=0, ttft=0).start()
    client = threading.Thread(target=stalled, args=(srv.url,))
    client.start()
    for _ in range(400):  # until the server holds the request
        if len(srv.requests):
            break
        threading.Event().wait(0.005)
    srv.stop()  # returns: the stalled handler notices and lets go
    client.join(timeout=20)
    assert not client.is_alive() and isinstance(outcome[0], httpx.RemoteProtocolError)


# -- without streaming (--no-stream) the same rules hold -------------------------------------


def test_no_stream_retries_then_answers(ip, server):
    cell = "%%chat --no-stream -m gpt-4o-mini@status=503,retry_after_ms=1,fail_times=1 -o r\nhi"
    result, captured = run(ip, cell)
    assert result.error_in_exec is None
    assert "server error 503 — retrying in 0.0 s, attempt 2 of 3" in captured.stdout
    assert server.requests[-1].body["stream"] is False and chat_requests(server) == 2
    assert ip.user_ns["r"].text == "".join(pieces("hi"))


def test_no_stream_interrupt_is_an_interrupt(ip, server, monkeypatch):
    from nbchat.render import LiveMarkdown

    def status(self, text):
        raise KeyboardInterrupt  # Ctrl-C while the status line is up

    monkeypatch.setattr(LiveMarkdown, "status", status)
    result, captured = run(ip, "%%chat --no-stream -m gpt-4o-mini@status=429,retry_after_ms=1\nhi")
    assert isinstance(result.error_in_exec, Interrupted)
    assert "interrupted before any text arrived" in captured.stdout
    monkeypatch.undo()
    assert_history_clean(ip, server)
