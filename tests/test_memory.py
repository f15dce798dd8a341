"""Re-run semantics, the exchange record, resume, log, usage and export through `%%chat`.

Cell ids reach the kernel in the execute request's metadata (`cellId`); here a
fake kernel hands the magic the parent header a real ipykernel would.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

import pytest

from nbchat.errors import Interrupted, NbChatError, StreamError
from nbchat.mockserver import mock_reply, prompt_tokens
from nbchat.pricing import estimate_cost
from nbchat.types import Usage

from .conftest import run

_msg_ids = count()


class FakeKernel:
    """What the magic reads of an ipykernel: the parent header of the running request."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def get_parent(self, channel: str = "shell") -> dict:
        assert channel == "shell"
        return self.parent


class OldKernel:
    """ipykernel < 6: no get_parent, only `_parent_header`."""

    _parent_header: dict = {}


@pytest.fixture
def kernel(ip, monkeypatch):
    fake = FakeKernel()
    monkeypatch.setattr(ip, "kernel", fake, raising=False)
    ip.run_line_magic("config", "ChatMagics.display_mode = 'final'")
    return fake


@pytest.fixture
def history(ip, tmp_path):
    path = tmp_path / "record.sqlite"
    ip.run_line_magic("config", f"ChatMagics.history_path = {str(path)!r}")
    return path


def in_cell(ip, kernel, cell_id: str | None, source: str):
    """Run `source` as the frontend would run cell `cell_id` (a new execute request)."""
    metadata = {"cellId": cell_id} if cell_id else {}
    parent = {"header": {"msg_id": f"msg-{next(_msg_ids)}"}, "metadata": metadata}
    if isinstance(kernel, OldKernel):
        kernel._parent_header = parent
    else:
        kernel.parent = parent
    return run(ip, source)


def sent_prompts(server) -> list[list[str]]:
    """The user messages of every chat request, request by request."""
    return [
        [m["content"] for m in r.body["messages"] if m["role"] == "user"]
        for r in server.requests
        if r.path.endswith("/chat/completions")
    ]


def rows(path) -> list[sqlite3.Row]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM exchanges ORDER BY id").fetchall()


def magics(ip):
    return ip.find_cell_magic("chat").__self__


# -- re-run semantics ---------------------------------------------------------------------


def test_rerunning_a_cell_replaces_its_turn_and_drops_later_ones(ip, server, kernel):
    for cell in ("a", "b", "c"):
        in_cell(ip, kernel, cell, f"%%chat\nquestion {cell}")
    result, captured = in_cell(ip, kernel, "b", "%%chat\nquestion b, again")
    assert result.error_in_exec is None
    assert sent_prompts(server)[-1] == ["question a", "question b, again"]
    note = captured.stdout.strip().splitlines()[-1]
    assert note == "re-ran an earlier turn: 1 later turn dropped"
    in_cell(ip, kernel, "d", "%%chat\nquestion d")
    assert sent_prompts(server)[-1] == ["question a", "question b, again", "question d"]
    conv = magics(ip).session.conversation()
    assert [t.cell_id for t in conv.turns] == ["a", "b", "d"]


def test_rerunning_the_last_cell_replaces_it_quietly(ip, server, kernel):
    in_cell(ip, kernel, "a", "%%chat\nfirst")
    _, captured = in_cell(ip, kernel, "a", "%%chat\nfirst, reworded")
    assert sent_prompts(server)[-1] == ["first, reworded"]
    assert "re-ran" not in captured.stdout
    assert len(magics(ip).session.conversation().turns) == 1


@pytest.mark.parametrize("kind", [FakeKernel, OldKernel])
def test_cell_id_read_from_either_kind_of_kernel(ip, server, monkeypatch, kind):
    fake = kind()
    monkeypatch.setattr(ip, "kernel", fake, raising=False)
    ip.run_line_magic("config", "ChatMagics.display_mode = 'final'")
    in_cell(ip, fake, "a", "%%chat\none")
    in_cell(ip, fake, "a", "%%chat\none again")
    assert sent_prompts(server)[-1] == ["one again"]


def test_without_cell_ids_turns_append(ip, server):
    assert getattr(ip, "kernel", None) is None  # terminal IPython: no execute request
    run(ip, "%%chat\nsame cell")
    run(ip, "%%chat\nsame cell")
    assert sent_prompts(server)[-1] == ["same cell", "same cell"]


def test_frontend_without_cell_ids_appends(ip, server, kernel):
    in_cell(ip, kernel, None, "%%chat\nsame cell")
    in_cell(ip, kernel, None, "%%chat\nsame cell")
    assert sent_prompts(server)[-1] == ["same cell", "same cell"]


def test_several_questions_in_one_execution_all_count_and_a_rerun_replaces_them(ip, server, kernel):
    cell = "%chat one\n%chat two"
    in_cell(ip, kernel, "x", cell)
    assert sent_prompts(server)[-1] == ["one", "two"]
    _, captured = in_cell(ip, kernel, "x", cell)
    assert sent_prompts(server)[-2:] == [["one"], ["one", "two"]]
    assert "re-ran an earlier turn: 1 later turn dropped" in captured.stdout


def test_a_failed_rerun_leaves_the_conversation_as_it_was(ip, server, kernel):
    in_cell(ip, kernel, "a", "%%chat\nquestion a")
    in_cell(ip, kernel, "b", "%%chat\nquestion b")
    result, captured = in_cell(ip, kernel, "a", "%%chat -m bad@nope=1\nquestion a, again")
    assert isinstance(result.error_in_exec, NbChatError)
    assert "re-ran" not in captured.stdout
    in_cell(ip, kernel, "c", "%%chat\nquestion c")
    assert sent_prompts(server)[-1] == ["question a", "question b", "question c"]


# -- the record ---------------------------------------------------------------------------


def test_every_exchange_is_recorded_with_what_was_sent_and_what_came_back(
    ip, server, kernel, history, monkeypatch
):
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/analysis.ipynb")
    ip.user_ns["persona"] = "Be brief."
    in_cell(ip, kernel, "a", "%%chat -s persona\nfirst")
    in_cell(ip, kernel, "b", "%%chat -m nope@bad=1\nrefused")
    (first, failed) = rows(history)
    body = server.requests[0].body
    assert json.loads(first["request"]) == body  # exactly as sent
    assert json.loads(first["prompt"]) == {"role": "user", "content": "first"}
    assert first["reply"] == mock_reply(body["messages"], "gpt-4o-mini")
    assert (first["status"], first["kept"], first["finish_reason"]) == ("complete", 1, "stop")
    assert first["notebook"] == "/work/analysis.ipynb" and first["cell_id"] == "a"
    assert first["system_prompt"] == "Be brief."
    assert first["prompt_tokens"] == prompt_tokens(body["messages"])
    usage = Usage(first["prompt_tokens"], first["completion_tokens"], first["total_tokens"], 0)
    assert first["cost"] == pytest.approx(estimate_cost("gpt-4o-mini", usage))
    assert first["system_fingerprint"] == "fp_mock" and first["reply_model"] == "gpt-4o-mini"
    assert 0 < first["ttft"] <= first["latency"] and first["started"] <= first["finished"]
    assert first["base_url"] == server.url
    assert (failed["status"], failed["kept"], failed["reply"]) == ("failed", 0, None)
    assert "400" in failed["error"]
    assert json.loads(failed["request"])["messages"][-1]["content"] == "refused"


def test_an_interrupted_reply_is_recorded_and_kept_as_a_turn(ip, server, kernel, history):
    session = magics(ip).session

    def stop_when_streaming() -> None:
        while session._active is None or not session._active.chunks:
            time.sleep(0.005)
        session.stop()

    stopper = threading.Thread(target=stop_when_streaming)
    stopper.start()
    result, _ = in_cell(ip, kernel, "a", "%%chat -m gpt-4o-mini@chunks=500,delay=0.01\nlong")
    stopper.join()
    assert isinstance(result.error_in_exec, Interrupted)
    (row,) = rows(history)
    assert (row["status"], row["kept"], row["finish_reason"]) == ("interrupted", 1, "interrupted")
    assert row["reply"] == session.conversation().turns[0].reply.text != ""


class BrokenStream(BaseHTTPRequestHandler):
    """Sends one chunk of a reply, then closes the connection."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {"choices": [{"index": 0, "delta": {"content": "half a rep"}}]}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_a_broken_reply_is_recorded_incomplete_and_not_kept(ip, kernel, history):
    broken = ThreadingHTTPServer(("127.0.0.1", 0), BrokenStream)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    try:
        ip.run_line_magic(
            "config", f"ChatMagics.base_url = 'http://127.0.0.1:{broken.server_port}/v1'"
        )
        result, _ = in_cell(ip, kernel, "a", "%%chat\nhello")
    finally:
        broken.shutdown()
        broken.server_close()
    assert isinstance(result.error_in_exec, StreamError)
    (row,) = rows(history)
    assert (row["status"], row["kept"], row["reply"]) == ("incomplete", 0, "half a rep")
    assert "connection closed" in row["error"]
    assert not magics(ip).session.conversation().turns


def test_record_false_writes_nothing(ip, server, history):
    ip.run_line_magic("config", "ChatMagics.record = False")
    result, _ = run(ip, "%%chat\nhello")
    assert result.error_in_exec is None
    assert not history.exists()


def test_an_unusable_record_path_is_said_once_and_chats_go_on(ip, server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ip.run_line_magic("config", f"ChatMagics.history_path = {str(blocker / 'h.sqlite')!r}")
    outputs = [run(ip, f"%%chat\nhello {n}") for n in range(2)]
    assert all(result.error_in_exec is None for result, _ in outputs)
    notes = [c.stdout for _, c in outputs]
    assert "cannot keep the record at" in notes[0] and "cannot keep" not in notes[1]
    assert len(notes[0].strip().splitlines()) == 1


def test_notebook_identity_prefers_the_path_then_the_kernel(ip, monkeypatch):
    from nbchat.identity import PROCESS_ID, notebook_identity

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert notebook_identity(ip) == PROCESS_ID  # terminal IPython: this process
    monkeypatch.setitem(ip.user_ns, "__vsc_ipynb_file__", "/home/u/vscode.ipynb")
    assert notebook_identity(ip) == "/home/u/vscode.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/u/lab.ipynb")
    assert notebook_identity(ip) == "/home/u/lab.ipynb"


def test_record_settings_from_ipython_config(bare_ip, server, tmp_path):
    bare_ip.config.ChatMagics.history_path = str(tmp_path / "from-config.sqlite")
    bare_ip.config.ChatMagics.base_url = server.url
    bare_ip.run_line_magic("load_ext", "nbchat")
    run(bare_ip, "%%chat\nhello")
    assert [r["status"] for r in rows(tmp_path / "from-config.sqlite")] == ["complete"]
    bare_ip.run_line_magic("unload_ext", "nbchat")
    bare_ip.config.ChatMagics.record = False
    bare_ip.run_line_magic("load_ext", "nbchat")
    run(bare_ip, "%%chat\nhello again")
    assert len(rows(tmp_path / "from-config.sqlite")) == 1
