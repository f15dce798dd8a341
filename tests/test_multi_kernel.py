"""Compare and map in a real kernel: widgets while running, static outputs after, interrupts."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from jupyter_client.manager import start_new_kernel

from nbchat.mockbatch import extras
from nbchat.mockserver import mock_reply

from .test_kernel import SETUP, execute, kernel_env

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel_and_manager(tmp_path_factory):
    # a record of its own: map results are cached there, and no other test may share them
    record = str(tmp_path_factory.mktemp("multi") / "history.sqlite")
    env = {**kernel_env(), "NBCHAT_HISTORY_PATH": record}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(kernel_and_manager, server):
    _, client = kernel_and_manager
    execute(client, SETUP.format(url=server.url) + "\nimport nbchat\n%chat reset")
    extras(server).reset()
    yield client
    extras(server).reset()


def outputs(messages: list[dict], kind: str) -> list[dict]:
    return [m["content"] for m in messages if m["msg_type"] == kind]


def stdout(messages: list[dict]) -> str:
    return "".join(c["text"] for c in outputs(messages, "stream"))


def test_compare_shows_live_columns_then_a_static_table_and_pick_buttons(kernel, server):
    messages = execute(kernel, "%%chat -m gpt-4o-mini,gpt-4.1-mini@delay=0.01\nhello")
    kinds = [m["msg_type"] for m in messages]
    assert "error" not in kinds, messages
    assert "comm_open" in kinds  # the live columns are widgets
    after = messages[kinds.index("clear_output") :]  # ... cleared at the end
    shown = outputs(after, "display_data")
    table = shown[0]["data"]["text/markdown"]
    question = [{"role": "user", "content": "hello"}]
    for name in ("gpt-4o-mini", "gpt-4.1-mini"):
        assert mock_reply(question, name).strip() in table
    assert WIDGET in shown[1]["data"]  # the Pick buttons

    messages = execute(kernel, "%chat pick 2")
    assert "picked reply 2 (gpt-4.1-mini)" in stdout(messages)
    execute(kernel, "%%chat\nand then?")
    assert server.requests[-1].body["messages"][1] == {
        "role": "assistant",
        "content": mock_reply(question, "gpt-4.1-mini"),
    }


def test_map_in_a_kernel_shows_a_bar_then_a_summary(kernel, server):
    code = "r = nbchat.map('Hi {}', ['a', 'b', 'c'])\nprint(r.texts)"
    messages = execute(kernel, code)
    assert "error" not in [m["msg_type"] for m in messages], messages
    expected = [mock_reply([{"role": "user", "content": f"Hi {x}"}], "gpt-4o-mini") for x in "abc"]
    assert stdout(messages).strip() == repr(expected)
    assert WIDGET in outputs(messages, "display_data")[0]["data"]  # the bar
    summary = outputs(messages, "update_display_data")[-1]["data"]["text/plain"]
    assert summary.startswith("gpt-4o-mini: 3/3 done")


def test_interrupting_the_kernel_keeps_finished_results_for_a_rerun(
    kernel_and_manager, kernel, server
):
    manager, _ = kernel_and_manager
    state = extras(server)
    state.track = True
    code = (
        "items = [f'item {i}' for i in range(100)]\n"
        "r = nbchat.map('Say {}', items, model='gpt-4o-mini@ttft=0.03', concurrency=4)"
    )

    def interrupt_when_busy() -> None:
        deadline = time.monotonic() + 20
        while state.chat_requests < 30 and time.monotonic() < deadline:
            time.sleep(0.005)
        # what interrupt_kernel() does, without its per-thread event loop
        os.kill(manager.provisioner.process.pid, signal.SIGINT)

    threading.Thread(target=interrupt_when_busy, daemon=True).start()
    messages = execute(kernel, code)
    [error] = outputs(messages, "error")
    assert error["ename"] == "BatchInterrupted"
    assert error["traceback"][0].startswith("\x1b[31mnbchat: interrupted: ")
    finished = int(error["traceback"][0].split("interrupted: ")[1].split(" of")[0])
    assert 0 < finished < 100

    sent_before = state.chat_requests
    messages = execute(kernel, code + "\nprint(sum(x.cached for x in r), len(r))")
    assert stdout(messages).strip() == f"{finished} 100"
    assert state.chat_requests - sent_before == 100 - finished  # only the rest was sent
