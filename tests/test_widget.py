"""The chat panel without a browser: its widgets driven as a frontend would, against the
mock server, on the same ChatSession as the magic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx2 as httpx
import pytest

import nbchat
from nbchat import widget
from nbchat.client import ChatClient
from nbchat.config import Settings
from nbchat.errors import Interrupted, OptionError
from nbchat.mockserver import MODELS, MockServer, mock_reply, reply_pieces
from nbchat.session import ChatSession
from nbchat.widget import ChatPanel

from .conftest import TEST_KEY, run

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SLOW = "gpt-4o-mini@chunks=400,delay=0.02,reply=paragraph"  # ~8 s: long enough to stop


def eventually(check: Callable[[], object], deadline: float = 30.0) -> None:
    """Wait until `check()` is true; a deadline for hangs, not a timing assertion."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "gave up waiting"
        time.sleep(0.01)


def markdown_in(widget) -> list[str]:
    """Every Markdown text shown inside `widget`, in order (what a frontend renders)."""
    found = [o["data"]["text/markdown"] for o in getattr(widget, "outputs", ())]
    for child in getattr(widget, "children", ()):
        found += markdown_in(child)
    return found


def html_in(widget, css_class: str) -> list[str]:
    found = [widget.value] if css_class in getattr(widget, "_dom_classes", ()) else []
    for child in getattr(widget, "children", ()):
        found += html_in(child, css_class)
    return found


@pytest.fixture
def open_panel(ip) -> Iterator[Callable[[], ChatPanel]]:
    panels: list[ChatPanel] = []

    def make() -> ChatPanel:
        panels.append(nbchat.panel(ip))
        return panels[-1]

    yield make
    for panel in panels:
        panel.close()
        panel.wait(30)


def last_chat(server: MockServer) -> dict:
    """The body of the last chat request (the panel also asks for the model list)."""
    return [r.body for r in server.requests if r.path.endswith("/chat/completions")][-1]


def send(panel: ChatPanel, text: str) -> None:
    panel.prompt.value = text
    panel.send.click()
    assert panel.wait(30)


def test_send_streams_the_reply_with_footer_into_the_shared_conversation(ip, server, open_panel):
    panel = open_panel()
    send(panel, "hello from the panel")
    sent = last_chat(server)
    assert sent["messages"] == [{"role": "user", "content": "hello from the panel"}]
    assert sent["stream"] is True and "temperature" not in sent
    expected = mock_reply(sent["messages"], "gpt-4o-mini")
    assert markdown_in(panel.transcript) == [expected]
    assert html_in(panel.transcript, "nbchat-you") == ["hello from the panel"]
    (footer,) = html_in(panel.transcript, "nbchat-footer")
    completion = len(reply_pieces(sent["messages"], "gpt-4o-mini"))
    assert re.search(rf"\d+ prompt \+ {completion} completion = \d+ tokens", footer), footer
    assert footer.startswith("gpt-4o-mini · ") and "$" in footer
    assert panel.prompt.value == "" and panel.status.value == ""
    assert not panel.send.disabled and panel.stop.disabled
    # One shared state: the next %%chat cell continues the panel's conversation ...
    result, _ = run(ip, "%%chat\nand from a cell")
    assert result.error_in_exec is None
    assert last_chat(server)["messages"][:2] == [
        {"role": "user", "content": "hello from the panel"},
        {"role": "assistant", "content": expected},
    ]
    # ... and the open panel shows the cell's turn once the cell has run.
    assert html_in(panel.transcript, "nbchat-you") == ["hello from the panel", "and from a cell"]
    assert "turn 2 of the conversation" in markdown_in(panel.transcript)[1]
    assert "2 turns" in panel.totals.value


def test_streaming_updates_are_bounded_by_the_update_rate_not_the_chunks(ip, server, open_panel):
    model = "gpt-4o-mini@chunks=400,delay=0.003,reply=markdown"
    ip.run_line_magic("config", "ChatMagics.update_interval = 0.1")
    ip.run_line_magic("config", f"ChatMagics.model = {model!r}")
    panel = open_panel()
    send(panel, "a report")
    expected = "".join(reply_pieces([], "gpt-4o-mini", reply="markdown", chunks=400))
    assert markdown_in(panel.transcript) == [expected]  # one clean output at the end
    assert panel.view is not None and 2 <= panel.view.updates < 100
    assert last_chat(server)["model"] == model


def test_a_new_panel_shows_turns_made_in_cells(ip, server, open_panel):
    run(ip, "%%chat\nfirst from a cell")
    panel = open_panel()
    assert html_in(panel.transcript, "nbchat-you") == ["first from a cell"]
    (footer,) = html_in(panel.transcript, "nbchat-footer")
    assert "completion" in footer


def test_chat_panel_magic_displays_a_widget(ip, server):
    result, captured = run(ip, "%chat panel")
    assert result.error_in_exec is None
    (view,) = [o.data for o in captured.outputs]
    (panel,) = [p for p in widget._panels if p.widget.model_id == view[WIDGET_VIEW]["model_id"]]
    panel.close()
    assert panel.wait(30)
    result, _ = run(ip, "%chat panel now")
    assert isinstance(result.error_in_exec, OptionError)


def test_enter_in_the_prompt_box_sends_exactly_the_typed_text(ip, server, open_panel):
    panel = open_panel()
    panel.prompt.value = "stale text"  # the submit message carries the text itself
    panel.prompt._handle_custom_msg({"event": "submit", "text": "line one\nline two"}, [])
    assert panel.wait(30)
    assert last_chat(server)["messages"][-1]["content"] == "line one\nline two"
    assert panel.prompt.value == ""


def test_stop_mid_stream_keeps_the_partial_reply_as_an_interrupted_turn(ip, server, open_panel):
    ip.run_line_magic("config", f"ChatMagics.model = {SLOW!r}")
    panel = open_panel()
    panel.prompt.value = "a long answer please"
    panel.send.click()
    eventually(lambda: markdown_in(panel.transcript))  # text is streaming in
    assert panel.send.disabled and not panel.stop.disabled
    panel.stop.click()
    assert panel.wait(30)
    (turn,) = ip.magics_manager.registry["ChatMagics"].session.conversation().turns
    assert turn.reply.finish_reason == "interrupted"
    full = "".join(reply_pieces([], "gpt-4o-mini", reply="paragraph", chunks=400))
    assert turn.reply.text and full.startswith(turn.reply.text) and turn.reply.text != full
    assert markdown_in(panel.transcript) == [turn.reply.text]
    assert "finish: interrupted" in html_in(panel.transcript, "nbchat-footer")[0]
    assert "stopped" in panel.status.value
    assert not panel.send.disabled and panel.stop.disabled


def test_one_reply_per_conversation_a_cell_is_refused_while_the_panel_streams(
    ip, server, open_panel
):
    ip.run_line_magic("config", f"ChatMagics.model = {SLOW!r}")
    panel = open_panel()
    panel.prompt.value = "slow one"
    panel.send.click()
    eventually(lambda: markdown_in(panel.transcript))
    result, _ = run(ip, "%%chat\nat the same time")
    assert isinstance(result.error_in_exec, OptionError)
    assert "still streaming" in str(result.error_in_exec)
    panel.prompt._handle_custom_msg({"event": "submit", "text": "again"}, [])
    assert "still streaming" in panel.status.value
    panel.stop.click()
    assert panel.wait(30)
    assert len(ip.magics_manager.registry["ChatMagics"].session.conversation().turns) == 1


def test_model_picker_lists_the_server_models_and_sends_the_choice(ip, server, open_panel):
    panel = open_panel()
    assert panel.wait(30)
    listed = sorted(m for m, _ in MODELS if m != "gpt-4o-mini")
    assert list(panel.model.options) == ["gpt-4o-mini", *listed]  # the configured one first
    panel.model.value = "gpt-4o"
    send(panel, "which model?")
    assert last_chat(server)["model"] == "gpt-4o"
    assert html_in(panel.transcript, "nbchat-footer")[0].startswith("gpt-4o · ")
    run(ip, "%config ChatMagics.model = 'mock-echo@delay=0'")  # offered, not forced
    assert panel.model.value == "gpt-4o" and "mock-echo@delay=0" in panel.model.options


def test_model_picker_falls_back_to_the_configured_model(ip, server, open_panel):
    ip.run_line_magic("config", f"ChatMagics.base_url = {server.url + '/nowhere'!r}")
    panel = open_panel()
    assert panel.wait(30)
    assert list(panel.model.options) == ["gpt-4o-mini"]
    assert "cannot list models, using gpt-4o-mini: 404" in panel.status.value


def test_temperature_and_system_prompt_go_into_the_request(ip, server, open_panel):
    panel = open_panel()
    panel.temperature.value = 0.3
    panel.system.value = "  Answer briefly.  "
    send(panel, "hi")
    sent = last_chat(server)
    assert sent["temperature"] == 0.3
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    # the conversation's system prompt, the same one `%%chat -s` sets
    ip.user_ns["style"] = "Be terse."
    run(ip, "%%chat -s style\nnext")
    assert panel.system.value == "Be terse."


def test_the_panel_sends_the_request_defaults_a_cell_sends(ip, server, open_panel):
    ip.run_line_magic("config", "ChatMagics.temperature = 0.2")
    ip.run_line_magic("config", "ChatMagics.max_tokens = 50")
    ip.run_line_magic("config", "ChatMagics.params = {'service_tier': 'auto'}")
    run(ip, "%%chat\nfrom a cell")
    from_cell = last_chat(server)
    panel = open_panel()
    assert panel.temperature.value == 0.2  # the slider starts at the configured value
    send(panel, "from the panel")
    from_panel = last_chat(server)
    for field in ("temperature", "max_tokens", "service_tier"):
        assert from_panel[field] == from_cell[field], field
    assert (from_panel["temperature"], from_panel["max_tokens"]) == (0.2, 50)
    run(ip, "%config ChatMagics.temperature = 0.4")  # followed while the slider is untouched
    assert panel.temperature.value == 0.4
    send(panel, "again")
    assert last_chat(server)["temperature"] == 0.4
    panel.temperature.value = 1.0  # the user's choice wins from now on, even the API default
    send(panel, "warmer")
    assert last_chat(server)["temperature"] == 1.0
    assert last_chat(server)["max_tokens"] == 50
    run(ip, "%config ChatMagics.temperature = 0.3")
    assert panel.temperature.value == 1.0


def test_stop_before_the_request_is_sent_sends_nothing(ip, server, open_panel, monkeypatch):
    """Stop pressed before the worker registered its reply: no waiting for a stalled server."""
    ip.run_line_magic("config", "ChatMagics.model = 'gpt-4o-mini@ttft=60'")
    panel = open_panel()
    assert panel.wait(30)  # the model list is in
    gate = threading.Event()
    real_run = panel.session.run

    def held_run(*args, **kwargs):
        gate.wait(30)  # the worker is slow to start: Stop comes first
        return real_run(*args, **kwargs)

    monkeypatch.setattr(panel.session, "run", held_run)
    before = len(server.requests)
    panel.prompt.value = "never mind"
    panel.send.click()
    panel.stop.click()
    gate.set()
    eventually(lambda: panel.streaming is None, deadline=20)  # not the server's 60 s
    # the worker's end writes the status and restores the prompt just after: wait for it
    eventually(lambda: "stopped" in panel.status.value, deadline=20)
    eventually(lambda: panel.prompt.value == "never mind", deadline=20)
    assert server.requests[before:] == []  # nothing was sent
    assert panel.conversation.turns == []  # nothing kept: the message can be sent again


def test_stop_never_stops_other_conversations(ip, server, open_panel, monkeypatch):
    """The panel reads which reply it streams once: a worker ending meanwhile is no stop(None)."""
    panel = open_panel()
    stopped: list[object] = []
    monkeypatch.setattr(panel.session, "stop", lambda name=None: stopped.append(name) or True)
    reads = iter(["default", None])
    streaming = property(lambda self: next(reads, None), lambda self, value: None)
    monkeypatch.setattr(ChatPanel, "streaming", streaming, raising=False)
    panel.request_stop()  # the worker ends between the check and the stop
    panel.stop_wanted.set()
    panel._stop_if_wanted()
    assert stopped == ["default"]


def test_new_conversation_and_the_picker_switch_the_panel_s_conversation(ip, server, open_panel):
    session = ip.magics_manager.registry["ChatMagics"].session
    panel = open_panel()
    send(panel, "in the default conversation")
    panel.new.click()
    assert panel.name == "chat-2" and panel.conversations.value == "chat-2"
    assert list(panel.conversations.options) == ["default", "chat-2"]
    assert markdown_in(panel.transcript) == []
    run(ip, "%%chat -c chat-2\nin chat-2 from a cell")
    assert last_chat(server)["messages"] == [{"role": "user", "content": "in chat-2 from a cell"}]
    assert html_in(panel.transcript, "nbchat-you") == ["in chat-2 from a cell"]
    panel.conversations.value = "default"
    assert panel.name == "default" and session.active == "default"  # cells' default unchanged
    assert html_in(panel.transcript, "nbchat-you") == ["in the default conversation"]
    assert "1 turn · " in panel.totals.value and "session: 2 turns" in panel.totals.value


def test_errors_show_in_one_line_and_leave_the_conversation_as_it_was(ip, open_panel):
    with MockServer(api_key="sk-the-right-key-000000000000") as strict:
        ip.run_line_magic("config", f"ChatMagics.base_url = {strict.url!r}")
        panel = open_panel()
        assert panel.wait(30)  # the model list fails the same way, and says so first
        assert "cannot list models, using gpt-4o-mini: 401" in panel.status.value
        send(panel, "will fail")
    status = panel.status.value
    assert "nbchat: 401 Incorrect API key provided." in status and "\n" not in status
    assert "nbchat-error" in status and TEST_KEY not in status
    assert ip.magics_manager.registry["ChatMagics"].session.conversation().turns == []
    assert markdown_in(panel.transcript) == []
    assert panel.prompt.value == "will fail"  # ready to send again


def test_loading_the_extension_does_not_import_ipywidgets():
    code = (
        "import sys; from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance(); ip.run_line_magic('load_ext', 'nbchat')\n"
        "print(sorted(m for m in ('ipywidgets', 'anywidget', 'nbchat.widget') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- ChatSession.stop() from another thread (what the Stop button calls) ------------------


def run_in_thread(session: ChatSession, settings: Settings, model: str) -> dict:
    outcome: dict = {}

    class Quiet:
        def status(self, text):
            outcome["status"] = text

        def feed(self, delta):
            pass

        def finish(self, text, footer=None):
            pass

    def work():
        try:
            session.run("hi", settings, Quiet(), model=model)
        except Exception as error:
            outcome["error"] = error

    outcome["thread"] = threading.Thread(target=work, daemon=True)
    outcome["thread"].start()
    return outcome


@pytest.mark.parametrize("wait", ["first token", "next token"])
def test_stop_from_another_thread_ends_a_blocked_read_at_once(server, wait):
    """The server would stay silent for 60 s; stop() must not wait for it."""
    session = ChatSession()
    options = "ttft=60" if wait == "first token" else "chunks=3,delay=60"
    outcome = run_in_thread(session, Settings(base_url=server.url), f"gpt-4o-mini@{options}")
    eventually(lambda: session.streaming("default"))
    eventually(lambda: len(server.requests) == 1)
    assert session.stop("other") is False  # only the named conversation's reply
    assert session.stop("default") is True
    outcome["thread"].join(20)
    assert not outcome["thread"].is_alive()
    assert isinstance(outcome["error"], Interrupted)
    assert not session.streaming()
    session.close()


def test_stop_cuts_a_retry_wait_short():
    def rate_limited(request: httpx.Request) -> httpx.Response:
        error = {"error": {"message": "slow down"}}
        return httpx.Response(429, headers={"retry-after": "60"}, json=error)

    session = ChatSession()
    settings = Settings(base_url="http://127.0.0.1:9/v1")
    session._client = ChatClient(
        base_url=settings.base_url,
        transport=httpx.MockTransport(rate_limited),
    )
    session._client_key = settings.connection
    outcome = run_in_thread(session, settings, "gpt-4o-mini")
    eventually(lambda: "retrying" in outcome.get("status", ""))
    assert session.stop() is True
    outcome["thread"].join(20)
    assert not outcome["thread"].is_alive()
    assert isinstance(outcome["error"], Interrupted)
    assert session.conversation().turns == []
    session.close()


def serve_with(ip, handler) -> None:
    """Point the magic's session at an httpx.MockTransport (faults the mock server lacks)."""
    magics = ip.magics_manager.registry["ChatMagics"]
    settings = magics.settings()
    session = magics.session
    session._client = ChatClient(
        base_url=settings.base_url,
        api_key=settings.api_key,
        max_retries=settings.max_retries,
        transport=httpx.MockTransport(handler),
    )
    session._client_key = settings.connection


def test_rate_limit_retries_show_then_one_error_line(ip, open_panel):
    def rate_limited(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        error = {"error": {"message": "Rate limit reached.", "type": "requests"}}
        return httpx.Response(429, headers={"retry-after-ms": "1"}, json=error)

    serve_with(ip, rate_limited)
    panel = open_panel()
    assert panel.wait(30)
    seen: list[str] = []
    panel.status.observe(lambda change: seen.append(change["new"]), "value")
    send(panel, "too fast")
    notices = [s for s in seen if "retrying" in s]
    assert len(notices) == 2 and "rate limited" in notices[0] and "attempt 2 of 3" in notices[0]
    assert "nbchat: 429 rate limited: Rate limit reached." in panel.status.value
    assert "\n" not in panel.status.value
    assert ip.magics_manager.registry["ChatMagics"].session.conversation().turns == []
    assert panel.prompt.value == "too fast"


def test_a_dropped_stream_keeps_its_text_visible_but_out_of_the_conversation(ip, open_panel):
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": "Half an ans"}, "finish_reason": None}],
    }

    def dropped(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        body = f"data: {json.dumps(chunk)}\n\n".encode()  # and then the connection ends
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    serve_with(ip, dropped)
    panel = open_panel()
    send(panel, "tell me everything")
    assert markdown_in(panel.transcript) == ["Half an ans"]  # still on screen
    assert "nbchat: reply incomplete: connection closed" in panel.status.value
    assert ip.magics_manager.registry["ChatMagics"].session.conversation().turns == []
    assert panel.prompt.value == "tell me everything"
    assert "0 turns" in panel.totals.value


def test_unloading_the_extension_closes_open_panels(ip, server):
    panel = nbchat.panel(ip)
    assert panel.wait(30)  # the model list is in
    assert panel._after_cell in ip.events.callbacks["post_run_cell"]
    ip.run_line_magic("unload_ext", "nbchat")
    assert panel.wait(30)
    assert panel._after_cell not in ip.events.callbacks["post_run_cell"]
    assert panel.widget.comm is None and panel.prompt.comm is None  # closed in the frontend
    assert panel not in widget._panels
