"""Named conversations, %chat list/reset/history/models, and the one-line %chat form."""

from __future__ import annotations

import pytest

from nbchat.errors import NbChatError, OptionError
from nbchat.mockserver import MODELS, mock_reply

from .conftest import markdown_outputs, plain_outputs, run


def messages(server) -> list[dict]:
    return server.requests[-1].body["messages"]


def test_named_conversations_keep_their_own_history_and_system_prompt(ip, server):
    run(ip, "%%chat\nin default")
    run(ip, "%%chat -c work -s 'You review code.'\nin work")
    assert messages(server) == [
        {"role": "system", "content": "You review code."},
        {"role": "user", "content": "in work"},
    ]
    run(ip, "%%chat\ndefault again")
    assert [m["content"] for m in messages(server)][::2] == ["in default", "default again"]
    assert all(m["role"] != "system" for m in messages(server))
    run(ip, "%chat -c work second in work")
    assert messages(server)[0]["content"] == "You review code."
    assert [m["content"] for m in messages(server) if m["role"] == "user"] == [
        "in work",
        "second in work",
    ]


def test_list_shows_turns_and_tokens_of_each_conversation(ip, server):
    run(ip, "%%chat -o a\none")
    run(ip, "%%chat -o b\ntwo")
    run(ip, "%%chat -c side -s 'Be brief.' -o c\nthree")
    _, captured = run(ip, "%chat list")
    shown = markdown_outputs(captured)[0].splitlines()
    assert shown[0].startswith("| conversation | turns | tokens |")
    total = ip.user_ns["a"].usage.total_tokens + ip.user_ns["b"].usage.total_tokens
    assert shown[2].startswith(f"| default | 2 | {total} | $")
    assert shown[3].startswith(f"| side | 1 | {ip.user_ns['c'].usage.total_tokens} | $")
    assert shown[3].endswith("| Be brief. |")
    plain = plain_outputs(captured)[0].splitlines()
    assert plain[0].split() == ["conversation", "turns", "tokens", "cost", "system", "prompt"]


def test_reset_by_name_leaves_the_others(ip, server):
    run(ip, "%%chat\nkeep me")
    run(ip, "%%chat -c scratch\nforget me")
    _, captured = run(ip, "%chat reset scratch")
    assert "conversation 'scratch' reset (1 turn dropped)" in captured.stdout
    run(ip, "%%chat -c scratch\nfresh")
    assert messages(server) == [{"role": "user", "content": "fresh"}]
    run(ip, "%%chat\nnext")
    assert len(messages(server)) == 3
    result, _ = run(ip, "%chat reset nobody")
    assert isinstance(result.error_in_exec, OptionError) and "%chat list" in str(
        result.error_in_exec
    )


def test_history_of_a_named_conversation(ip, server):
    run(ip, "%%chat -c notes\nwhat is a set?")
    _, captured = run(ip, "%chat history notes")
    shown = markdown_outputs(captured)[0]
    assert "what is a set?" in shown
    assert mock_reply([{"role": "user", "content": "what is a set?"}], "gpt-4o-mini") in shown
    _, captured = run(ip, "%chat history")
    assert captured.stdout.strip() == "the conversation is empty"


def test_failed_request_leaves_the_system_prompt_as_it_was(ip, server):
    run(ip, "%%chat -s 'Old prompt.'\nhi")
    result, _ = run(ip, "%%chat -s 'New prompt.' -m bad@nope=1\nhi again")
    assert isinstance(result.error_in_exec, NbChatError)
    run(ip, "%%chat\nthird")
    assert messages(server)[0] == {"role": "system", "content": "Old prompt."}


def test_models_lists_the_servers_models(ip, server):
    result, captured = run(ip, "%chat models")
    assert result.error_in_exec is None
    assert server.requests[-1].method == "GET" and server.requests[-1].path == "/v1/models"
    rows = markdown_outputs(captured)[0].splitlines()
    assert rows[:2] == ["| id | owner |", "|---|---|"]
    assert rows[2:] == [f"| {m} | {o} |" for m, o in sorted(MODELS)]


def test_models_where_the_server_has_no_such_endpoint(ip, server):
    ip.run_line_magic("config", f"ChatMagics.base_url = '{server.url}/nothing'")
    result, captured = run(ip, "%chat models")
    assert isinstance(result.error_in_exec, NbChatError)
    assert "has no model list" in str(result.error_in_exec)
    assert len(captured.stdout.strip().splitlines()) == 2  # the message and a hint


@pytest.mark.parametrize(
    ("body", "words"), [({"data": []}, "lists no models"), ({"data": "x"}, "model list")]
)
def test_models_with_an_empty_or_odd_answer(body, words):
    httpx = pytest.importorskip("httpx2")
    from nbchat.client import ChatClient
    from nbchat.tables import models_table

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    client = ChatClient(base_url="http://127.0.0.1:9/v1", transport=transport)
    with pytest.raises(NbChatError, match=words):
        models_table(client)


def test_line_form_sends_questions_ending_in_a_name_and_question_mark(ip, server):
    result, _ = run(ip, "%chat What is a closure?")
    assert result.error_in_exec is None
    assert messages(server)[-1]["content"] == "What is a closure?"
    run(ip, """%chat What's "quoted" {x} $x?""")
    assert messages(server)[-1]["content"] == """What's "quoted" {x} $x?"""
    run(ip, "%%chat\n%chat is this line kept?\nx = 1?")
    assert messages(server)[-1]["content"] == "%chat is this line kept?\nx = 1?"
    sent = len(server.requests)
    result, _ = run(ip, "%chat?")  # the magic's own help still works, and sends nothing
    assert result.error_in_exec is None and len(server.requests) == sent


def test_commands_take_no_stray_words(ip, server):
    for cell in ("%chat list everything", "%chat models please", "%chat reset a b"):
        result, _ = run(ip, cell)
        assert isinstance(result.error_in_exec, OptionError), cell
    assert not server.requests
