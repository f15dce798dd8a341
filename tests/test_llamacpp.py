"""nbchat against a real local server: llama-cpp-python's (`python -m llama_cpp.server`).

The model is tiny and random, written by the tests (tests/tinyllama.py; nothing is
downloaded). The server binds 127.0.0.1 on a free port. Without llama-cpp-python
these tests are skipped with the reason; in CI (CI=true) that fails instead, as
.ci/run installs it. The same quirks are reproduced quickly by the mock server in
tests/test_local_quirks.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from nbchat.client import ChatClient
from nbchat.errors import NbChatError, StreamError, TransportError
from nbchat.sanitize import safe_markdown

from .conftest import markdown_outputs, plain_outputs, run
from .kernels import stop
from .test_local_quirks import PNG
from .tinyllama import BYTE_FF, IM_END, write_model

pytestmark = pytest.mark.llamacpp

MODEL = "tiny"
#: Runs the server with sse-starlette's keep-alive comments every argv[1] seconds
#: (15 s by default), so a stall shows its comments within a short test.
LAUNCH = (
    "import runpy, sys; import sse_starlette.sse as s; "
    "s.EventSourceResponse.DEFAULT_PING_INTERVAL = float(sys.argv.pop(1)); "
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)"
)


def _require_server() -> None:
    """Found, not imported: the server runs in its own process."""
    import importlib.util

    needed = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "gguf")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        why = (
            f"llama-cpp-python[server] and gguf are needed (missing: {', '.join(missing)}); "
            ".ci/run installs them"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"llama.cpp tests cannot run in CI: {why}")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: Path, log: Path, *, n_ctx: int = 2048, ping: float = 0.5) -> Iterator[str]:
    """The server on 127.0.0.1:<free port> serving `model` as 'tiny'; yields its /v1 URL."""
    port = _free_port()
    args = ["--model", str(model), "--model_alias", MODEL, "--n_ctx", str(n_ctx)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--n_threads", "1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(ping), *args], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):  # the model loads in about a second; allow a slow machine 60 s
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
        yield url
    finally:
        stop(proc, 10)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_server()
    return write_model(tmp_path_factory.mktemp("model") / "tiny.gguf")  # about 0.2 s here


@pytest.fixture(scope="module")
def llama_url(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(tiny_model, tmp_path_factory.mktemp("log") / "server.log") as url:
        yield url


@pytest.fixture
def lip(bare_ip, llama_url):
    """A shell with nbchat pointed at the llama.cpp server: no key, model 'tiny'."""
    bare_ip.run_line_magic("load_ext", "nbchat")
    bare_ip.run_line_magic("config", f"ChatMagics.base_url = {llama_url!r}")
    bare_ip.run_line_magic("config", f"ChatMagics.model = {MODEL!r}")
    return bare_ip


def test_word_salad_streams_and_renders_with_an_estimate(lip):
    result, captured = run(lip, "%%chat -t 1 --seed 3 --max-tokens 120 -o r\nSay anything.")
    assert result.error_in_exec is None, captured.stdout
    reply = lip.user_ns["r"]
    assert reply.text and reply.finish_reason == "length"
    # rendered, whole, once (as safe Markdown: the salad holds HTML-ish pieces)
    assert markdown_outputs(captured)[-1] == safe_markdown(reply.text)
    assert any(ord(c) > 127 for c in reply.text)  # multi-byte pieces came through intact
    assert "\ufffd" not in reply.text
    footer = plain_outputs(captured)[-1]
    assert reply.usage is None  # the server sends no usage in a stream
    assert "≈120 completion tokens (estimated)" in footer and "tok/s" in footer
    assert "finish: length" in footer
    # One token per delta: the same request unstreamed reports the same count.
    result, _ = run(lip, "%%chat --no-stream -t 1 --seed 3 --max-tokens 120 -o w\nSay anything.")
    whole = lip.user_ns["w"]
    assert whole.usage is not None and whole.usage.completion_tokens == reply.estimated_tokens


def test_max_tokens_limits_the_reply(lip):
    result, captured = run(lip, "%%chat --max-tokens 7 -o r\nShort, please.")
    assert result.error_in_exec is None, captured.stdout
    reply = lip.user_ns["r"]
    assert reply.request["max_tokens"] == 7 and "max_completion_tokens" not in reply.request
    assert reply.estimated_tokens == 7 and reply.finish_reason == "length"
    run(lip, "%%chat --no-stream --max-tokens 5 -o r\nShorter.")
    assert lip.user_ns["r"].usage.completion_tokens == 5


def test_a_stream_cut_by_another_request_is_incomplete(llama_url):
    client = ChatClient(base_url=llama_url, timeout=30, max_retries=0)
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Go on."}],
        "stream": True,
        "max_tokens": 1000,
        "logit_bias": {str(IM_END): -100},
    }
    stream = client.stream(payload)
    deltas = iter(stream)
    got = [next(deltas) for _ in range(3)]
    other = threading.Thread(
        target=httpx.post,
        args=(f"{llama_url}/chat/completions",),
        kwargs={"json": {"model": MODEL, "messages": payload["messages"], "max_tokens": 2}},
    )
    other.start()  # the server ends the running stream when this one arrives
    with pytest.raises(StreamError, match=r"the server ended the stream early") as caught:
        for delta in deltas:
            got.append(delta)
    other.join()
    client.close()
    partial = caught.value.partial
    assert partial.text == "".join(got) and 3 <= len(got) < 1000
    assert not partial.complete and partial.estimated_tokens == len(got)


def test_a_comparison_on_one_server_never_shows_an_empty_column(lip):
    lip.run_line_magic("config", "ChatMagics.max_retries = 0")
    cell = f"%%chat -m {MODEL},{MODEL} --max-tokens 300 -o cmp\nBoth at once."
    run(lip, cell)
    cmp = lip.user_ns["cmp"]
    for column in cmp:
        assert column.ok == (column.error is None)
        if not column.ok:  # cut short by the other column's request
            assert column.error is not None and "ended the stream early" in column.error.message
    assert any(column.ok for column in cmp)


def test_json_mode_uses_the_servers_grammar(lip):
    result, captured = run(lip, "%%chat --json --max-tokens 40 -o r\nJSON, please.")
    reply = lip.user_ns["r"]
    assert reply.text.lstrip().startswith("{")  # the grammar made it start as JSON
    if reply.finish_reason == "length":  # cut by the limit: kept, and said in one line
        assert isinstance(result.error_in_exec, NbChatError)
        assert "nbchat: the reply is not valid JSON" in captured.stdout
    assert "Traceback" not in captured.stdout


def test_models_lists_the_alias(lip):
    result, captured = run(lip, "%chat models")
    assert result.error_in_exec is None
    assert MODEL in captured.outputs[-1].data["text/markdown"]


def test_map_over_the_server(lip):
    import nbchat

    results = nbchat.map("Say {}", ["a", "b", "c"], params={"max_tokens": 4}, progress=False)
    assert results.errors == {}
    assert all(text for text in results.texts)
    assert all(item.reply.usage.completion_tokens == 4 for item in results)


def test_an_image_to_a_text_only_model_is_one_line(lip, tmp_path):
    path = tmp_path / "dot.png"
    path.write_bytes(PNG)
    result, captured = run(lip, f"%%chat --image {path}\nWhat is this?")
    assert isinstance(result.error_in_exec, NbChatError)
    assert "sent nothing back (HTTP 200, empty body) to a request with image input" in (
        captured.stdout
    )
    assert "retrying" not in captured.stdout and "Traceback" not in captured.stdout


def test_a_stall_with_keep_alive_comments_times_out(lip, tiny_model, tmp_path):
    """An invalid UTF-8 byte (0xFF, pushed up by logit_bias) is held back by the server,
    which keeps generating silently until its context is full, sending `: ping`
    comments meanwhile; a server of its own, as it stays busy after we give up."""
    with llama_server(tiny_model, tmp_path / "stall.log", n_ctx=8192, ping=0.2) as url:
        lip.run_line_magic("config", f"ChatMagics.base_url = {url!r}")
        lip.run_line_magic("config", "ChatMagics.timeout = 2")
        lip.run_line_magic("config", "ChatMagics.max_retries = 0")
        params = '--params \'{"logit_bias": {"' + str(BYTE_FF) + "\": 100}}'"
        started = time.perf_counter()
        result, captured = run(lip, f"%%chat --max-tokens 50 {params}\nStall.")
        waited = time.perf_counter() - started
    assert isinstance(result.error_in_exec, TransportError), captured.stdout
    assert "nbchat: no response in 2 s (ChatMagics.timeout)" in captured.stdout
    assert waited < 60  # (not a timing claim: only that the cell did not hang)
