"""The API key never shows: not in outputs, errors, reprs or a saved notebook, even when
a server echoes it back; `%chat login` asks for it without echo and keeps it in memory."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator

import pytest
from IPython.core.error import StdinNotImplementedError

from nbchat.errors import (
    AuthenticationError,
    ConfigError,
    NbChatError,
    OptionError,
    StreamError,
    TransportError,
)
from nbchat.mockserver import MockServer
from nbchat.types import Secret

from .conftest import TEST_KEY, run

SERVER_KEY = "sk-proj-SERVER-side-key-9876543210zyxw"


@pytest.fixture(scope="module")
def keyserver() -> Iterator[MockServer]:
    """A mock server that accepts only SERVER_KEY (the `ip` fixture sends TEST_KEY)."""
    with MockServer(api_key=SERVER_KEY, delay=0, ttft=0) as server:
        yield server


def leaks(text: str, key: str) -> bool:
    """The key, or its secret middle, anywhere in `text`."""
    return key in text or key[3:-4] in text


# -- redaction ---------------------------------------------------------------------------


def test_key_echoed_by_a_401_is_redacted_everywhere(ip, keyserver):
    ip.run_line_magic("config", f"ChatMagics.base_url = {keyserver.url!r}")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@echo_key=1\nhi")
    error = result.error_in_exec
    assert isinstance(error, AuthenticationError)
    assert keyserver.requests[-1].headers["authorization"] == f"Bearer {TEST_KEY}"  # it was sent
    assert "You sent: Bearer sk-...cdef" in captured.stdout  # the echo is there, masked
    shown = [captured.stdout, str(error), repr(error), error.message, str(error.hint)]
    shown.append(json.dumps(error.body))
    assert error.body["error"]["message"].endswith("You sent: Bearer sk-...cdef")
    _, tb = run(ip, "%tb")
    shown.append(tb.stdout + tb.stderr)
    assert not any(leaks(text, TEST_KEY) for text in shown)


def test_key_echoed_inside_a_stream_is_redacted(ip, server):
    result, captured = run(ip, "%%chat -m gpt-4o-mini@stream_error=3,echo_key=1 -o part\nhi")
    error = result.error_in_exec
    assert isinstance(error, StreamError)
    assert "You sent: Bearer sk-...cdef" in captured.stdout
    assert not leaks(captured.stdout + repr(captured.outputs) + str(error), TEST_KEY)
    assert not leaks(repr(ip.user_ns["part"]), TEST_KEY)


def test_key_in_a_connection_error_is_redacted(ip):
    # A key pasted into the URL by mistake is not repeated by the error either.
    ip.run_line_magic("config", f"ChatMagics.base_url = 'http://127.0.0.1:9/{TEST_KEY}/v1'")
    ip.run_line_magic("config", "ChatMagics.max_retries = 0")
    result, captured = run(ip, "%%chat\nhi")
    assert "cannot reach http://127.0.0.1:9/sk-...cdef/v1" in captured.stdout
    assert not leaks(captured.stdout + str(result.error_in_exec), TEST_KEY)


def chain_texts(error: BaseException) -> list[str]:
    """All that an error and its chain hold: reprs, args and attributes of every exception
    reached through __cause__, __context__ or an attribute, and any request's headers."""
    texts: list[str] = []
    todo: list[BaseException | None] = [error]
    seen: set[int] = set()
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        attrs = dict(vars(exc))
        texts += [repr(exc), str(exc), repr(exc.args), repr(attrs)]
        try:
            request = exc.request  # type: ignore[attr-defined]  # httpx errors keep theirs
        except (AttributeError, RuntimeError):
            request = None
        if request is not None:
            texts.append(repr(request.headers.raw))  # raw: the repr of Headers masks some
        if getattr(exc, "partial", None) is not None:
            texts.append(repr(exc.partial.request))  # type: ignore[attr-defined]
        todo += [exc.__cause__, exc.__context__]
        todo += [v for v in attrs.values() if isinstance(v, BaseException)]
    return texts


@pytest.mark.parametrize(
    "cell",
    [
        "%%chat -m gpt-4o-mini@stream_error=2,echo_key=1\nhi",  # after text
        "%%chat -m gpt-4o-mini@stream_error=0,echo_key=1\nhi",  # before any text
        "%%chat -m gpt-4o-mini@status=500,echo_key=1\nhi",
        "%%chat -m gpt-4o-mini@cut=2\nhi",
        "%%chat -m gpt-4o-mini@cut=0\nhi",
        "%%chat -m gpt-4o-mini@malformed=0\nhi",
        "%%chat -m gpt-4o-mini@stall=1\nhi",
        "%%chat --no-stream -m gpt-4o-mini@stall=1\nhi",
        "%%chat --no-stream -m gpt-4o-mini@status=503,echo_key=1\nhi",
        "%%chat -m gpt-4o-mini@echo_key=1\nwrong key",  # 401 from the key server
        "%%chat\nnobody listens",  # connection refused
        "%%chat --no-stream\nnobody listens",
        "%chat models",
        "%chat map items tpl --batch api",  # the Batch API's own requests, refused
    ],
)
def test_no_key_anywhere_in_the_exception_chain(ip, server, keyserver, cell):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    url = keyserver.url if "wrong key" in cell else refused if "nobody" in cell else server.url
    if cell.startswith(("%chat models", "%chat map")):
        url = refused
    ip.user_ns.update(items=["a", "b"], tpl="Say {}")
    ip.run_line_magic("config", f"ChatMagics.base_url = {url!r}")
    ip.run_line_magic("config", "ChatMagics.max_retries = 0")
    ip.run_line_magic("config", "ChatMagics.timeout = 0.2")
    result, _ = run(ip, cell)
    error = result.error_in_exec
    assert isinstance(error, NbChatError)
    texts = chain_texts(error)
    assert not [text for text in texts if leaks(text, TEST_KEY)]
    if isinstance(error, TransportError) and "cannot reach" in error.message:
        import httpx2 as httpx

        assert isinstance(error.__cause__, httpx.ConnectError)  # a trail to debug by


# -- %chat login --------------------------------------------------------------------------


def test_login_reads_the_key_hidden_and_uses_it(ip, keyserver, monkeypatch):
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return f"  {SERVER_KEY}\n"

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    ip.run_line_magic("config", f"ChatMagics.base_url = {keyserver.url!r}")
    result, captured = run(ip, "%chat login")
    assert result.error_in_exec is None and len(prompts) == 1
    assert "sk-...zyxw" in captured.stdout and not leaks(captured.stdout, SERVER_KEY)
    assert ip.find_cell_magic("chat").__self__.api_key == Secret(SERVER_KEY)
    result, _ = run(ip, "%%chat\nhi")
    assert result.error_in_exec is None  # the key server accepted it
    assert keyserver.requests[-1].headers["authorization"] == f"Bearer {SERVER_KEY}"
    _, config = run(ip, "%config ChatMagics")
    assert not leaks(config.stdout, SERVER_KEY) and "sk-...zyxw" in config.stdout


def test_login_refuses_a_key_typed_into_the_cell(ip, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": pytest.fail("asked anyway"))
    result, captured = run(ip, "%chat login sk-typed-in-the-cell-1234")
    assert isinstance(result.error_in_exec, OptionError)
    assert "saved with the notebook" in captured.stdout
    assert ip.find_cell_magic("chat").__self__.api_key == Secret(TEST_KEY)


def test_login_with_nothing_entered_keeps_the_key(ip, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "   ")
    _, captured = run(ip, "%chat login")
    assert "unchanged" in captured.stdout
    assert ip.find_cell_magic("chat").__self__.api_key == Secret(TEST_KEY)


def test_login_where_the_frontend_cannot_ask(ip, monkeypatch):
    def no_stdin(prompt: str = "") -> str:
        raise StdinNotImplementedError("getpass was called, but this frontend does not support")

    monkeypatch.setattr(getpass, "getpass", no_stdin)
    result, captured = run(ip, "%chat login")
    assert isinstance(result.error_in_exec, ConfigError)
    assert "OPENAI_API_KEY" in captured.stdout and "Traceback" not in captured.stdout


def test_login_in_a_real_kernel_is_a_password_prompt(keyserver):
    from jupyter_client.manager import start_new_kernel

    from .kernels import collect
    from .test_kernel import execute, kernel_env

    manager, kernel = start_new_kernel(kernel_name="python3", env=kernel_env())
    try:
        execute(kernel, f"%load_ext nbchat\n%config ChatMagics.base_url = {keyserver.url!r}")
        msg_id = kernel.execute("%chat login", allow_stdin=True)
        request = kernel.get_stdin_msg(timeout=30)
        assert request["msg_type"] == "input_request"
        assert request["content"]["password"] is True  # the frontend hides what is typed
        kernel.input(SERVER_KEY)
        messages = collect(kernel, msg_id) + execute(kernel, "%%chat\nhi")
        kinds = [m["msg_type"] for m in messages]
        assert "error" not in kinds and "display_data" in kinds  # logged in, reply shown
        assert not leaks(json.dumps([m["content"] for m in messages]), SERVER_KEY)
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


# -- the saved notebook -------------------------------------------------------------------


def test_saved_notebook_never_holds_the_key(server, keyserver, tmp_path):
    from .kernels import run_and_save
    from .test_kernel import kernel_env

    fake = "sk-proj-FAKE-notebook-key-abcdefghij0123456789"
    cells = [
        f"%load_ext nbchat\n%config ChatMagics.base_url = {keyserver.url!r}",
        "%%chat -m gpt-4o-mini@echo_key=1\nwrong key for this server",  # 401, key echoed
        "import sys\nerr = sys.last_value\nerr, err.body, err.hint",
        "%tb",
        f"%config ChatMagics.base_url = {server.url!r}",
        "%%chat -m gpt-4o-mini@stream_error=2,echo_key=1 -o part\nbroken",  # echoed mid-stream
        "part, sys.last_value",
        "%%chat -m gpt-4o-mini@status=429,echo_key=1,retry_after_ms=1\nlimited",
        "%%chat -o r\nhello",
        "r, r.request",
        "%config ChatMagics",
        "%config ChatMagics.api_key",
        "%chat history",
        "m = get_ipython().find_cell_magic('chat').__self__\nm.session.client(m.settings())",
        "m.settings()",
    ]
    path = tmp_path / "saved.ipynb"
    nb = run_and_save(cells, path, {**kernel_env(), "OPENAI_API_KEY": fake})
    saved = path.read_text()
    assert keyserver.requests[-1].headers["authorization"] == f"Bearer {fake}"  # it was used
    assert "You sent: Bearer sk-...6789" in saved  # the echoes are in the file, masked
    errors = [o for c in nb.cells for o in c.outputs if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == [
        "AuthenticationError",
        "AuthenticationError",  # %tb shows it again, as one line too
        "StreamError",
        "RateLimitError",
    ]
    assert all(len(e["traceback"]) <= 2 for e in errors)
    assert not leaks(saved, fake)
