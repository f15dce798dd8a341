"""Memory in a real kernel: cell ids from execute-request metadata, and resume after a
kernel is killed mid-reply and restarted (as the Restart button does)."""

from __future__ import annotations

import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from .test_kernel import kernel_env

SETUP = (
    "%load_ext nbchat\n"
    "%config ChatMagics.base_url = {url!r}\n"
    "%config ChatMagics.history_path = {path!r}"
)
SLOW = "gpt-4o-mini@chunks=400,delay=0.02"  # 8 s of reply: plenty of time to kill it


@pytest.fixture
def kernel(tmp_path):
    env = {**kernel_env(), "NBCHAT_HISTORY_PATH": str(tmp_path / "unused.sqlite")}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def send(client, code: str, cell_id: str | None = None) -> str:
    """An execute_request as JupyterLab sends it: the cell id in the metadata."""
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    metadata = {"cellId": cell_id} if cell_id else {}
    msg = client.session.msg("execute_request", content, metadata=metadata)
    client.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def iopub(client, msg_id: str):
    """The iopub messages of one request, as they arrive, until the kernel is idle."""
    while True:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return
        yield msg


def execute(client, code: str, cell_id: str | None = None) -> str:
    """Run a cell; returns its stdout; fails on an error."""
    stdout = []
    for msg in iopub(client, send(client, code, cell_id)):
        assert msg["msg_type"] != "error", msg["content"]
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            stdout.append(msg["content"]["text"])
    return "".join(stdout)


def user_prompts(server) -> list[str]:
    return [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "user"]


def test_rerunning_a_cell_replaces_its_turn(kernel, server, tmp_path):
    _, client = kernel
    execute(client, SETUP.format(url=server.url, path=str(tmp_path / "h.sqlite")))
    for cell in ("cell-a", "cell-b", "cell-c"):
        execute(client, f"%%chat\nquestion from {cell}", cell)
    out = execute(client, "%%chat\nquestion from cell-b, edited", "cell-b")
    assert user_prompts(server) == ["question from cell-a", "question from cell-b, edited"]
    assert "re-ran an earlier turn: 1 later turn dropped" in out
    execute(client, "%%chat\nno cell id")  # e.g. a console attached to the kernel
    execute(client, "%%chat\nno cell id")
    assert user_prompts(server)[-2:] == ["no cell id", "no cell id"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_mid_reply_then_restarted_then_resumed(kernel, server, tmp_path):
    manager, client = kernel
    path = str(tmp_path / "h.sqlite")
    setup = SETUP.format(url=server.url, path=path)
    execute(client, setup)
    execute(client, "%%chat\nfirst question", "c1")
    execute(client, "%%chat\nsecond question", "c2")
    streaming = iopub(client, send(client, f"%%chat -m {SLOW}\nlong question", "c3"))
    for msg in streaming:  # wait until the reply is visibly streaming
        if msg["msg_type"] in ("display_data", "update_display_data"):
            break
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT status FROM exchanges ORDER BY id").fetchall() == [
            ("complete",),
            ("complete",),
            ("streaming",),
        ]
    manager.signal_kernel(signal.SIGKILL)  # dies mid-reply, no chance to clean up
    while manager.is_alive():
        time.sleep(0.05)
    manager.restart_kernel(now=True)  # same kernel id and connection file, fresh process
    client.wait_for_ready(timeout=60)
    execute(client, setup)
    out = execute(client, "%chat resume")
    assert out.splitlines() == [
        "restored 2 turns of conversation 'default' from the record",
        "1 unfinished exchange of an earlier kernel is in the record as incomplete (%chat log)",
    ]
    with sqlite3.connect(path) as db:
        third = db.execute("SELECT status, kept, error FROM exchanges WHERE cell_id = 'c3'")
        assert third.fetchone() == ("incomplete", 0, "the kernel stopped before the reply finished")
        notebooks = db.execute("SELECT DISTINCT notebook FROM exchanges").fetchall()
    # no notebook path here, so the kernel is known by its connection file, kept across restarts
    stem = Path(manager.connection_file).stem.removeprefix("kernel-")
    assert notebooks == [(f"kernel:{stem}",)]
    execute(client, "%%chat\nafter the restart", "c4")
    assert user_prompts(server) == ["first question", "second question", "after the restart"]
