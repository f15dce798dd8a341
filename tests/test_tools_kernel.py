"""Tool approval in a real kernel: the y/N question arrives on the stdin channel (as in
JupyterLab, Notebook 7, VS Code) and the answer decides; a frontend without stdin
(nbclient, papermill) gets the calls declined and one line saying how to allow them."""

from __future__ import annotations

import pytest

from .kernels import collect, run_and_save, running_kernel
from .test_kernel import kernel_env

SETUP = """\
%load_ext nbchat
%config ChatMagics.base_url = {url!r}
%config ChatMagics.display_mode = 'final'
ran = []
def revenue(region: str, year: int) -> float:
    \"\"\"Total revenue of a region in a year.\"\"\"
    ran.append(region)
    return 1.5
"""
CELL = "%%chat -m gpt-4o-mini@tools=call,parallel=2 -T revenue -o r\nWhich region grew?"


@pytest.fixture(scope="module")
def kernel():
    with running_kernel(kernel_env()) as client:
        yield client


def _run(client, code: str, answers: list[str]) -> tuple[list[str], list[dict]]:
    """Run `code` allowing stdin; answer each input_request in turn. (prompts, iopub)."""
    msg_id = client.execute(code, allow_stdin=True)
    prompts = []
    for answer in answers:
        request = client.get_stdin_msg(timeout=60)
        assert request["msg_type"] == "input_request"
        prompts.append(request["content"]["prompt"])
        client.input(answer)
    return prompts, collect(client, msg_id)


def _value(client, expression: str) -> str:
    _, messages = _run(client, f"print({expression})", [])
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def test_stdin_yes_runs_no_declines(kernel, server):
    _run(kernel, SETUP.format(url=server.url), [])
    prompts, messages = _run(kernel, CELL, ["y", "n"])
    assert prompts == [
        'Run revenue(region="region-1", year=1)? [y/N] ',
        'Run revenue(region="region-2", year=2)? [y/N] ',
    ]
    assert "error" not in [m["msg_type"] for m in messages]
    assert _value(kernel, "ran") == "['region-1']\n"
    assert _value(kernel, "[c.status for c in r.tool_calls]") == "['ran', 'declined']\n"
    tool_messages = [m for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == [
        "1.5",
        "declined: the user did not allow this call",
    ]


def test_a_notebook_run_without_stdin_declines_and_says_how(server, tmp_path):
    nb = run_and_save(
        [SETUP.format(url=server.url), CELL, "print(ran, [c.status for c in r.tool_calls])"],
        tmp_path / "tools.ipynb",
        kernel_env(),
    )
    outputs = nb.cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert text.count("\n") == 1 and "ChatMagics.confirm_tools = False" in text
    # the saved cell: the cards (one line each), the answer, the footer, the line
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert shown[0]["data"]["text/plain"].splitlines() == [
        '🔧 revenue(region="region-1", year=1) · declined',
        '🔧 revenue(region="region-2", year=2) · declined',
    ]
    assert shown[0]["data"]["text/html"].count("<details") == 2
    assert "2 tool calls · 1 round" in shown[-1]["data"]["text/plain"]
    assert nb.cells[2].outputs[0]["text"] == "[] ['declined', 'declined']\n"
    tool_messages = [m for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
    assert all(m["content"].startswith("declined: nobody could approve") for m in tool_messages)


def test_live_cards_leave_one_clean_cell(server, tmp_path):
    """Streamed live (cards updated in place, the cell redrawn per round), the saved
    cell holds the cards (one line each), the answer and the footer: nothing else."""
    setup = SETUP.format(url=server.url).replace("'final'", "'live'")
    setup += "import nbchat\nrevenue = nbchat.tool(confirm=False)(revenue)\n"
    cell = "%%chat -m gpt-4o-mini@tools=call,parallel=2,rounds=2,delay=0.002 -T revenue\nq"
    nb = run_and_save([setup, cell], tmp_path / "live.ipynb", kernel_env())
    outputs = nb.cells[1].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"] * 3
    cards, answer, footer = (o["data"] for o in outputs)
    assert len(cards["text/plain"].splitlines()) == 4
    assert cards["text/html"].count("<details") == 4
    assert answer["text/markdown"].startswith("Tool results (4):")
    assert "4 tool calls · 2 rounds" in footer["text/plain"]
