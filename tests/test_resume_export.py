"""Resume after a restart, `%chat log`, `%chat usage` and `%chat export`, through the magics.

A kernel restart is simulated in-process by unloading and loading the
extension (a new session, as in a new kernel); `$JPY_SESSION_NAME` names the
notebook as Jupyter Server does, so both "kernels" belong to the same notebook.
The real-kernel version is in test_kernel_memory.py.
"""

from __future__ import annotations

import json
import re

import httpx2 as httpx
import pytest

from nbchat.errors import OptionError
from nbchat.mockserver import mock_reply
from nbchat.pricing import estimate_cost
from nbchat.render import footer_text

from .conftest import TEST_KEY, markdown_outputs, plain_outputs, run
from .test_memory import FakeKernel, in_cell, magics, sent_prompts


@pytest.fixture
def notebook(ip, server, tmp_path, monkeypatch):
    """A notebook's kernel: cell ids on, its record in tmp_path."""
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/notebook.ipynb")
    kernel = FakeKernel()
    monkeypatch.setattr(ip, "kernel", kernel, raising=False)
    configure(ip, server, tmp_path)
    return kernel


def configure(ip, server, tmp_path) -> None:
    for setting in (
        f"base_url = {server.url!r}",
        f"api_key = {TEST_KEY!r}",
        f"history_path = {str(tmp_path / 'history.sqlite')!r}",
        "display_mode = 'final'",
    ):
        ip.run_line_magic("config", f"ChatMagics.{setting}")


def restart(ip, server, tmp_path) -> None:
    """What a kernel restart does to nbchat: a fresh extension, nothing in memory."""
    ip.run_line_magic("unload_ext", "nbchat")
    ip.run_line_magic("load_ext", "nbchat")
    configure(ip, server, tmp_path)


def turns(ip) -> list:
    return magics(ip).session.conversation().turns


# -- resume -------------------------------------------------------------------------------


def test_resume_after_a_restart_restores_the_conversation(ip, server, notebook, tmp_path):
    ip.user_ns["persona"] = "Answer in one line."
    in_cell(ip, notebook, "a", "%%chat -s persona\nquestion a")
    in_cell(ip, notebook, "b", "%%chat\nquestion b")
    in_cell(ip, notebook, "c", "%%chat\nquestion c")
    in_cell(ip, notebook, "b", "%%chat\nquestion b, again")  # drops c
    before = [(t.user, t.reply, t.cell_id) for t in turns(ip)]
    restart(ip, server, tmp_path)
    assert turns(ip) == []
    _, captured = in_cell(ip, notebook, None, "%chat resume")
    assert captured.stdout == "restored 2 turns of conversation 'default' from the record\n"
    assert [(t.user, t.reply, t.cell_id) for t in turns(ip)] == before  # usage, timings too
    in_cell(ip, notebook, "d", "%%chat\nquestion d")
    sent = server.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Answer in one line."}
    assert [m["content"] for m in sent if m["role"] == "user"] == [
        "question a",
        "question b, again",
        "question d",
    ]
    in_cell(ip, notebook, "b", "%%chat\nquestion b, third time")  # re-run after resume
    assert sent_prompts(server)[-1] == ["question a", "question b, third time"]


def test_first_chat_after_a_restart_says_a_conversation_can_be_resumed(
    ip, server, notebook, tmp_path
):
    in_cell(ip, notebook, "a", "%%chat\nquestion a")
    in_cell(ip, notebook, "b", "%%chat\nquestion b")
    restart(ip, server, tmp_path)
    _, first = in_cell(ip, notebook, "c", "%%chat\nquestion c")
    _, second = in_cell(ip, notebook, "d", "%%chat\nquestion d")
    note = (
        "nbchat: an earlier kernel left 2 turns of this notebook's conversation in the record;"
        " %chat resume restores them\n"
    )
    assert first.stdout == note
    assert second.stdout == ""
    _, resumed = in_cell(ip, notebook, None, "%chat resume")
    assert "restored 2 turns" in resumed.stdout
    # the turns made since the restart stay, after the restored ones
    assert [t.cell_id for t in turns(ip)] == ["a", "b", "c", "d"]
    in_cell(ip, notebook, "e", "%%chat\nquestion e")
    assert sent_prompts(server)[-1] == [f"question {c}" for c in "abcde"]


def test_resume_restores_every_conversation_of_the_notebook(ip, server, notebook, tmp_path):
    in_cell(ip, notebook, "a", "%%chat\nin default")
    in_cell(ip, notebook, "b", "%%chat -c notes\nin notes")
    in_cell(ip, notebook, "c", "%%chat -c notes\nin notes again")
    restart(ip, server, tmp_path)
    _, captured = in_cell(ip, notebook, None, "%chat resume")
    assert captured.stdout == ("restored 3 turns in 2 conversations ('default': 1, 'notes': 2)\n")
    conversations = magics(ip).session.conversations
    assert [t.user.text for t in conversations["notes"].turns] == ["in notes", "in notes again"]
    _, captured = run(ip, "%chat log")
    assert "| # | time | conversation | model |" in markdown_outputs(captured)[0]
    assert "| notes | gpt-4o-mini |" in markdown_outputs(captured)[0]
    magics(ip).session.active = "default"
    run(ip, f"%chat export {tmp_path / 'notes.md'} notes")
    assert "in notes again" in (tmp_path / "notes.md").read_text()


def test_resume_with_nothing_recorded_says_so(ip, server, notebook, tmp_path):
    _, captured = in_cell(ip, notebook, None, "%chat resume")
    assert captured.stdout.startswith("the record is empty")
    in_cell(ip, notebook, "a", "%%chat\nhello")
    _, captured = in_cell(ip, notebook, None, "%chat resume")
    assert captured.stdout.startswith("nothing to resume: no earlier turns of /work/notebook.ipynb")
    result, _ = run(ip, "%chat resume now")
    assert isinstance(result.error_in_exec, OptionError)


def test_a_reset_is_kept_in_the_record_so_resume_brings_nothing_back(
    ip, server, notebook, tmp_path
):
    for cell in "abcd":
        in_cell(ip, notebook, cell, f"%%chat\n{cell}")
    in_cell(ip, notebook, None, "%chat reset")
    restart(ip, server, tmp_path)
    _, captured = in_cell(ip, notebook, None, "%chat resume")
    assert captured.stdout.startswith("nothing to resume")
    assert turns(ip) == []


def test_resume_restores_only_the_turns_after_the_last_reset(ip, server, notebook, tmp_path):
    in_cell(ip, notebook, "a", "%%chat\na")
    in_cell(ip, notebook, "n", "%%chat -c notes\nin notes")
    restart(ip, server, tmp_path)
    in_cell(ip, notebook, None, "%chat resume")
    in_cell(ip, notebook, "b", "%%chat\nb")
    in_cell(ip, notebook, None, "%chat reset")  # the restored turn and this kernel's
    in_cell(ip, notebook, "c", "%%chat\nc")
    in_cell(ip, notebook, "d", "%%chat\nd")
    in_cell(ip, notebook, "c", "%%chat\nc, again")  # a re-run after the reset drops d
    restart(ip, server, tmp_path)
    _, captured = in_cell(ip, notebook, None, "%chat resume")
    assert captured.stdout.startswith("restored 2 turns in 2 conversations")
    assert [t.user.text for t in turns(ip)] == ["c, again"]
    notes = magics(ip).session.conversation("notes")
    assert [t.user.text for t in notes.turns] == ["in notes"]  # another conversation: untouched
    in_cell(ip, notebook, "e", "%%chat\ne")
    assert sent_prompts(server)[-1] == ["c, again", "e"]


def test_a_reset_with_nothing_recorded_creates_no_record(ip, server, notebook, tmp_path):
    _, captured = in_cell(ip, notebook, None, "%chat reset")
    assert captured.stdout == "conversation reset (0 turns dropped)\n"
    assert not (tmp_path / "history.sqlite").exists()


# -- log and usage ------------------------------------------------------------------------


def test_log_shows_the_notebooks_recent_exchanges(ip, server, notebook):
    for n in range(3):
        in_cell(ip, notebook, f"c{n}", f"%%chat -o r{n}\nquestion {n}")
    in_cell(ip, notebook, "bad", "%%chat -m bad@nope=1\nrefused | piped")
    _, captured = run(ip, "%chat log 2")
    (table,) = markdown_outputs(captured)
    lines = table.splitlines()
    assert lines[0].startswith("| # | time | model | status | tokens |")
    assert len(lines) == 4  # header, rule, two exchanges
    reply = ip.user_ns["r2"]
    assert f"| gpt-4o-mini | complete | {reply.usage.total_tokens} |" in lines[2]
    assert "| failed |" in lines[3] and "refused \\| piped" in lines[3]
    assert "question 2" in plain_outputs(captured)[0]
    _, captured = run(ip, "%chat log")
    assert len(markdown_outputs(captured)[0].splitlines()) == 2 + 4
    result, _ = run(ip, "%chat log many")
    assert isinstance(result.error_in_exec, OptionError)


def usage_numbers(line: str) -> tuple[int, int, int, int, float]:
    found = re.search(
        r"(\d+) exchanges? · (\d+) prompt \+ (\d+) completion = (\d+) tokens · \$([\d.]+)", line
    )
    assert found, line
    *counts, cost = found.groups()
    return (*(int(c) for c in counts), float(cost))


def test_usage_totals_this_kernel_and_this_notebook(ip, server, notebook, tmp_path):
    in_cell(ip, notebook, "a", "%%chat -o r1\nbefore the restart")
    restart(ip, server, tmp_path)
    in_cell(ip, notebook, "b", "%%chat -o r2\nafter the restart")
    in_cell(ip, notebook, "c", "%%chat -m gpt-4o@usage=1 -o r3\nanother model")
    replies = [ip.user_ns[name] for name in ("r1", "r2", "r3")]
    _, captured = run(ip, "%chat usage")
    kernel_line, notebook_line, note = captured.stdout.splitlines()

    def expected(rs):
        return (
            len(rs),
            sum(r.usage.prompt_tokens for r in rs),
            sum(r.usage.completion_tokens for r in rs),
            sum(r.usage.total_tokens for r in rs),
            sum(estimate_cost(r.model, r.usage) for r in rs),
        )

    got = usage_numbers(kernel_line)
    want = expected(replies[1:])
    assert got[:4] == want[:4] and got[4] == pytest.approx(want[4], abs=1e-6)
    got = usage_numbers(notebook_line)
    want = expected(replies)
    assert got[:4] == want[:4] and got[4] == pytest.approx(want[4], abs=1e-6)
    assert kernel_line.startswith("this kernel:") and notebook_line.startswith("this notebook:")
    assert "estimates" in note


# -- export -------------------------------------------------------------------------------


def test_export_markdown_is_a_transcript_with_footers(ip, server, notebook, tmp_path):
    ip.user_ns["persona"] = "Be brief."
    in_cell(ip, notebook, "a", "%%chat -s persona\nfirst question")
    in_cell(ip, notebook, "b", "%%chat\nsecond question")
    _, captured = run(ip, f"%chat export {tmp_path / 'chat.md'}")
    assert captured.stdout == f"exported 2 turns of 'default' to {tmp_path / 'chat.md'}\n"
    text = (tmp_path / "chat.md").read_text()
    assert text.startswith("# Conversation `default`\n")
    assert "Notebook `/work/notebook.ipynb`" in text and "**System:** Be brief." in text
    position = 0
    for turn in turns(ip):
        for part in (turn.user.text, turn.reply.text, f"<sub>{footer_text(turn.reply)}</sub>"):
            position = text.index(part, position)  # in order


def test_export_json_replays_to_the_same_request_bodies(ip, server, notebook, tmp_path):
    ip.user_ns["persona"] = "Be brief."
    in_cell(ip, notebook, "a", "%%chat -s persona\nfirst question")
    in_cell(ip, notebook, "b", "%%chat -m gpt-4o\nsecond question")
    in_cell(ip, notebook, "c", "%%chat\nthird question")
    in_cell(ip, notebook, "b", "%%chat\nsecond question, again")
    sent = [r.body for r in server.requests]
    run(ip, f"%chat export {tmp_path / 'chat.json'}")
    data = json.loads((tmp_path / "chat.json").read_text())
    assert (data["format"], data["conversation"], data["base_url"]) == (
        "nbchat.export/1",
        "default",
        server.url,
    )
    requests = [exchange["request"] for exchange in data["exchanges"]]
    assert requests == [sent[0], sent[3]]  # the kept turns, exactly as sent
    server.clear()
    for exchange in data["exchanges"]:  # replay
        response = httpx.post(
            f"{data['base_url']}/chat/completions",
            json=exchange["request"],
            headers={"Authorization": f"Bearer {TEST_KEY}"},
        )
        assert response.status_code == 200
        request = exchange["request"]
        assert exchange["reply"]["text"] == mock_reply(request["messages"], "gpt-4o-mini")
    assert [r.body for r in server.requests] == requests
    usage = data["exchanges"][0]["reply"]["usage"]
    assert usage["total_tokens"] == turns(ip)[0].reply.usage.total_tokens


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%chat export chat.txt", "cannot tell the export format"),
        ("%chat export", "takes a path"),
        ("%chat export chat.md nosuch", "no conversation named 'nosuch'"),
        ("%chat export /no/such/dir/chat.md", "cannot write"),
    ],
)
def test_export_refuses_clearly(ip, server, notebook, cell, message):
    in_cell(ip, notebook, "a", "%%chat\nhello")
    result, captured = run(ip, cell)
    assert isinstance(result.error_in_exec, OptionError)
    assert message in result.error_in_exec.message
    assert "Traceback" not in captured.stdout


def test_an_empty_conversation_is_not_exported(ip, server, tmp_path):
    result, _ = run(ip, f"%chat export {tmp_path / 'x.md'}")
    assert isinstance(result.error_in_exec, OptionError)
    assert not (tmp_path / "x.md").exists()


def test_the_key_is_in_neither_the_record_nor_the_exports(ip, server, notebook, tmp_path):
    in_cell(ip, notebook, "a", "%%chat\nhello")
    in_cell(ip, notebook, "b", f"%%chat\nmy key is {TEST_KEY}, keep it safe")  # pasted by mistake
    in_cell(ip, notebook, "c", "%%chat -m nope@bad=1\nrefused")
    run(ip, f"%chat export {tmp_path / 'chat.md'}")
    run(ip, f"%chat export {tmp_path / 'chat.json'}")
    exports = [tmp_path / "chat.md", tmp_path / "chat.json"]
    written = [*sorted(tmp_path.glob("history.sqlite*")), *exports]
    assert len(written) >= 4  # the database, its WAL, and both exports
    for path in written:
        data = path.read_bytes()
        assert TEST_KEY.encode() not in data, path
    assert b"keep it safe" in (tmp_path / "chat.md").read_bytes()


def test_usage_never_invents_a_cost_for_an_unpriced_model(ip, server, notebook):
    in_cell(ip, notebook, "a", "%%chat -m mock-echo\nhello")
    _, captured = run(ip, "%chat usage")
    kernel_line, _, note = captured.stdout.splitlines()
    assert "$" not in kernel_line and "1 exchange · " in kernel_line
    assert note.endswith("; 1 exchange of unpriced models not counted")
