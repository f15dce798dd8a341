"""Comparisons in the record and in re-runs: picked turns survive a restart, cells re-run.

Like test_resume_export.py: cell ids come from a fake kernel's execute request,
and a restart is the extension unloaded and loaded again on the same record.
"""

from __future__ import annotations

import json

import pytest

from nbchat.mockserver import mock_reply

from .conftest import run
from .test_memory import FakeKernel, in_cell, magics, rows, sent_prompts
from .test_resume_export import configure, restart, turns

MODELS = "gpt-4o-mini,gpt-4.1-mini"


@pytest.fixture
def notebook(ip, server, tmp_path, monkeypatch) -> FakeKernel:
    """A notebook's kernel (as in test_resume_export): cell ids on, its record in tmp_path."""
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/compare.ipynb")
    kernel = FakeKernel()
    monkeypatch.setattr(ip, "kernel", kernel, raising=False)
    configure(ip, server, tmp_path)
    return kernel


def users(ip) -> list[str]:
    return [t.user.text for t in turns(ip)]


def test_a_picked_reply_is_recorded_and_resumed_in_its_place(ip, server, notebook, tmp_path):
    in_cell(ip, notebook, "a", "%%chat\na")
    in_cell(ip, notebook, "b", f"%%chat -m {MODELS}\nb")
    _, picked = in_cell(ip, notebook, None, "%chat pick 2")
    assert picked.stdout == "picked reply 2 (gpt-4.1-mini); the next %%chat continues from it\n"
    in_cell(ip, notebook, "c", "%%chat\nc")
    before = [(t.user, t.reply.text, t.cell_id) for t in turns(ip)]
    assert [t.cell_id for t in turns(ip)] == ["a", "b", "c"]

    recorded = rows(tmp_path / "history.sqlite")
    compared = [r for r in recorded if r["cell_id"] == "b"]
    assert [(r["model"], r["status"], r["kept"]) for r in compared] == [
        ("gpt-4o-mini", "complete", 0),
        ("gpt-4.1-mini", "complete", 1),  # the picked one
    ]
    assert all(r["total_tokens"] and r["cost"] for r in compared)  # %chat usage counts them
    assert turns(ip)[1].record_id == compared[1]["id"]
    assert json.loads(recorded[-1]["context"]) == [recorded[0]["id"], compared[1]["id"]]

    restart(ip, server, tmp_path)
    _, resumed = in_cell(ip, notebook, None, "%chat resume")
    assert resumed.stdout == "restored 3 turns of conversation 'default' from the record\n"
    assert [(t.user, t.reply.text, t.cell_id) for t in turns(ip)] == before
    in_cell(ip, notebook, "d", "%%chat\nd")
    assert sent_prompts(server)[-1] == ["a", "b", "c", "d"]
    question = [{"role": "user", "content": "a"}, {"role": "assistant", "content": before[0][1]}]
    question.append({"role": "user", "content": "b"})
    assert server.requests[-1].body["messages"][3]["content"] == mock_reply(
        question, "gpt-4.1-mini"
    )
    _, usage = run(ip, "%chat usage")
    assert "this notebook: 5 exchanges · " in usage.stdout  # a, both columns, c, d


def test_an_unpicked_comparison_is_recorded_but_not_resumed(ip, server, notebook, tmp_path):
    in_cell(ip, notebook, "a", "%%chat\na")
    in_cell(ip, notebook, "b", f"%%chat -m {MODELS},x@bogus=1\nb")
    in_cell(ip, notebook, "c", "%%chat\nc")
    recorded = [(r["status"], r["kept"]) for r in rows(tmp_path / "history.sqlite")]
    a, *compared, c = recorded
    assert a == c == ("complete", 1)
    assert compared == [("complete", 0), ("complete", 0), ("failed", 0)]
    restart(ip, server, tmp_path)
    in_cell(ip, notebook, None, "%chat resume")
    assert users(ip) == ["a", "c"]


def test_rerunning_a_compare_cell_compares_on_the_conversation_before_it(
    ip,
    server,
    notebook,
    tmp_path,
):
    for cell in "abc":
        in_cell(ip, notebook, cell, f"%%chat\n{cell}")
    in_cell(ip, notebook, "b", f"%%chat -m {MODELS}\nb, compared")
    assert sent_prompts(server)[-2:] == [["a", "b, compared"]] * 2  # not b and c
    assert users(ip) == ["a", "b", "c"]  # nothing changes until a reply is picked
    _, picked = in_cell(ip, notebook, None, "%chat pick 1")
    assert picked.stdout.endswith("; re-ran an earlier turn: 1 later turn dropped\n")
    assert users(ip) == ["a", "b, compared"]
    assert [t.cell_id for t in turns(ip)] == ["a", "b"]

    in_cell(ip, notebook, "b", f"%%chat -m {MODELS}\nb, compared again")  # replaces the pick
    assert sent_prompts(server)[-1] == ["a", "b, compared again"]
    in_cell(ip, notebook, None, "%chat pick 2")
    _, quiet = in_cell(ip, notebook, "d", "%%chat\nd")
    assert sent_prompts(server)[-1] == ["a", "b, compared again", "d"]
    assert "re-ran" not in quiet.stdout

    restart(ip, server, tmp_path)
    in_cell(ip, notebook, None, "%chat resume")
    assert users(ip) == ["a", "b, compared again", "d"]


def test_a_rerun_comparison_left_unpicked_changes_nothing(ip, server, notebook, tmp_path):
    for cell in "abc":
        in_cell(ip, notebook, cell, f"%%chat\n{cell}")
    in_cell(ip, notebook, "a", f"%%chat -m {MODELS}\na, compared")
    in_cell(ip, notebook, "d", "%%chat\nd")
    assert sent_prompts(server)[-1] == ["a", "b", "c", "d"]
    _, late = in_cell(ip, notebook, None, "%chat pick 1")
    assert "the conversation changed since this comparison" in late.stdout
    restart(ip, server, tmp_path)
    in_cell(ip, notebook, None, "%chat resume")
    assert users(ip) == ["a", "b", "c", "d"]


def test_compare_from_python_in_a_cell_replaces_its_turn_when_run_again(ip, server, notebook):
    code = "import nbchat\ncmp = nbchat.compare('q', ['gpt-4o-mini', 'gpt-4.1-mini'])\ncmp.pick(1)"
    in_cell(ip, notebook, "a", "%%chat\na")
    in_cell(ip, notebook, "p", code)
    in_cell(ip, notebook, "p", code)
    assert users(ip) == ["a", "q"]
    assert sent_prompts(server)[-1] == ["a", "q"]
    assert magics(ip).session.conversation().turns[-1].cell_id == "p"
