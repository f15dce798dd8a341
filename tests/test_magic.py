"""%%chat and %chat through the real surface: ip.run_cell against the mock server."""

from __future__ import annotations

import re

import httpx2 as httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbchat.errors import ConfigError, NbChatError, OptionError
from nbchat.mockserver import MockServer, mock_reply
from nbchat.types import Reply

from .conftest import TEST_KEY, markdown_outputs, plain_outputs, run


def server_usage(server: MockServer, body: dict) -> dict:
    """What the server reports as usage for the same request (deterministic)."""
    data = {**body, "stream": False}
    data.pop("stream_options", None)
    response = httpx.post(
        f"{server.url}/chat/completions", json=data, headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    return response.json()["usage"]


def test_reply_streams_as_markdown_with_footer_from_server_usage(ip, server):
    result, captured = run(ip, "%%chat -o answer\nExplain list comprehensions in two sentences.")
    assert result.error_in_exec is None
    sent = server.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [
        {"role": "user", "content": "Explain list comprehensions in two sentences."}
    ]
    expected = mock_reply(sent["messages"], "gpt-4o-mini")
    assert markdown_outputs(captured) == [expected]
    footer = plain_outputs(captured)[-1]
    usage = server_usage(server, sent)
    numbers = re.search(r"(\d+) prompt \+ (\d+) completion = (\d+) tokens", footer)
    assert numbers is not None, footer
    assert [int(n) for n in numbers.groups()] == [
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    ]
    assert footer.startswith("gpt-4o-mini · ")
    assert "first token" in footer and "tok/s" in footer and "$" in footer
    answer = ip.user_ns["answer"]
    assert isinstance(answer, Reply)
    assert str(answer) == expected and answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens == usage["total_tokens"]
    assert answer.ttft is not None and answer.latency is not None and answer.latency >= answer.ttft


def test_next_cell_continues_the_conversation_and_reset_starts_over(ip, server):
    run(ip, "%%chat\nfirst question")
    first_reply = mock_reply([{"role": "user", "content": "first question"}], "gpt-4o-mini")
    run(ip, "%%chat\nsecond question")
    assert server.requests[-1].body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": first_reply},
        {"role": "user", "content": "second question"},
    ]
    _, captured = run(ip, "%chat reset")
    assert "2 turns dropped" in captured.stdout
    run(ip, "%%chat\nthird question")
    assert server.requests[-1].body["messages"] == [{"role": "user", "content": "third question"}]


def test_model_and_system_flags(ip, server):
    ip.user_ns["persona"] = "You are a terse tutor."
    result, _ = run(ip, "%%chat -m gpt-4o -s persona\nhello")
    assert result.error_in_exec is None
    body = server.requests[-1].body
    assert body["model"] == "gpt-4o"
    assert body["messages"][0] == {"role": "system", "content": "You are a terse tutor."}
    run(ip, "%%chat\nagain")  # the system prompt belongs to the conversation now
    assert server.requests[-1].body["messages"][0]["role"] == "system"
    assert server.requests[-1].body["model"] == "gpt-4o-mini"


def test_system_prompt_setting(ip, server):
    ip.run_line_magic("config", "ChatMagics.system_prompt = 'Be brief.'")
    run(ip, "%%chat\nhi")
    assert server.requests[-1].body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_line_form_asks_a_one_line_question(ip, server):
    result, captured = run(ip, "%chat What is 2+2?")
    assert result.error_in_exec is None
    assert server.requests[-1].body["messages"][-1]["content"] == "What is 2+2?"
    assert markdown_outputs(captured)


def test_history_shows_the_transcript(ip, server):
    run(ip, "%%chat\nwhat is a tuple?")
    _, captured = run(ip, "%chat history")
    shown = markdown_outputs(captured)[0]
    assert "what is a tuple?" in shown and "## Echo" in shown and "tokens" in shown


def test_help_lists_commands_and_cell_help_documents_flags(ip, server):
    _, captured = run(ip, "%chat help")
    assert "%chat reset" in captured.stdout and "%chat history" in captured.stdout
    _, captured = run(ip, "%%chat?")
    for flag in ("--model", "--system", "--out"):
        assert flag in captured.stdout
    assert not server.requests


def test_unknown_flag_is_refused_before_sending(ip, server):
    result, captured = run(ip, "%%chat --temprature 3\nhi")
    assert result.error_in_exec is not None
    assert not server.requests
    assert "Traceback" not in captured.stdout


def test_empty_message_is_refused(ip, server):
    result, _ = run(ip, "%%chat\n   \n")
    assert isinstance(result.error_in_exec, OptionError)
    assert not server.requests


@pytest.mark.parametrize("cell", ["%%chat\nhello", "%chat models"])
def test_missing_key_for_openai_is_a_clear_error_before_any_request(bare_ip, monkeypatch, cell):
    from nbchat.session import ChatSession

    def no_client(self, settings):
        raise AssertionError("no HTTP client may be made without a key")

    monkeypatch.setattr(ChatSession, "client", no_client)
    bare_ip.run_line_magic("load_ext", "nbchat")
    result, captured = run(bare_ip, cell)
    assert isinstance(result.error_in_exec, ConfigError)
    assert "no API key" in captured.stdout
    assert len(captured.stdout.strip().splitlines()) <= 2  # one line and a hint, no traceback


def test_local_server_needs_no_key(bare_ip, server):
    bare_ip.run_line_magic("load_ext", "nbchat")
    bare_ip.run_line_magic("config", f"ChatMagics.base_url = {server.url!r}")
    result, _ = run(bare_ip, "%%chat\nhello")
    assert result.error_in_exec is None
    assert "authorization" not in server.requests[-1].headers


def test_server_error_is_one_line_and_conversation_unchanged(ip, server):
    run(ip, "%%chat\nfirst")
    result, captured = run(ip, "%%chat -m no-such@unknown_option=1\nsecond")
    assert isinstance(result.error_in_exec, NbChatError)
    assert "Traceback" not in captured.stdout
    run(ip, "%%chat\nthird")
    roles = [m["role"] for m in server.requests[-1].body["messages"]]
    assert roles == ["user", "assistant", "user"]


def test_live_display_leaves_one_clean_markdown_output(ip, server):
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", "ChatMagics.update_interval = 0")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@chunks=300,reply=markdown\nlong one")
    assert result.error_in_exec is None
    reply = ip.find_cell_magic("chat").__self__.session.last_reply
    assert markdown_outputs(captured) == [reply.text]
    assert reply.usage is not None and reply.usage.completion_tokens == 300


def test_show_usage_false_hides_the_footer(ip, server):
    ip.run_line_magic("config", "ChatMagics.show_usage = False")
    _, captured = run(ip, "%%chat\nhi")
    assert len(captured.outputs) == 1 and "tokens" not in plain_outputs(captured)[0]


def test_usage_not_reported_is_estimated_and_labelled(ip, server):
    _, captured = run(ip, "%%chat -m gpt-4o-mini@usage=0,chunks=7,delay=0.01 -o r\nhi")
    footer = plain_outputs(captured)[-1]
    assert "≈7 completion tokens (estimated)" in footer and "prompt" not in footer
    assert re.search(r"· \d+ tok/s", footer) and "$" not in footer  # no cost from a guess
    assert ip.user_ns["r"].usage is None and ip.user_ns["r"].estimated_tokens == 7
    run(ip, "%%chat\nand with usage")
    _, captured = run(ip, "%chat list")
    row = plain_outputs(captured)[-1].splitlines()[1]
    assert "+ ≈7 completion estimated (1 of 2 replies without usage)" in row


def test_usage_not_reported_in_one_body_is_said_not_invented(ip, server, monkeypatch):
    import sys

    import nbchat.tokens

    monkeypatch.delenv("NBCHAT_TOKEN_COUNTER", raising=False)
    monkeypatch.setattr(nbchat.tokens, "_encodings", {})
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # not installed: nothing to count with
    _, captured = run(ip, "%%chat --no-stream -m gpt-4o-mini@usage=0\nhi")
    footer = plain_outputs(captured)[-1]
    assert "usage not reported" in footer
    assert "tok/s" not in footer and "$" not in footer


def test_usage_chunk_with_nonempty_choices_is_understood(ip, server):
    _, captured = run(ip, "%%chat -m gpt-4o-mini@choices_on_usage=1 -o r\nhi")
    assert ip.user_ns["r"].usage is not None
    assert re.search(r"\d+ prompt \+ \d+ completion", plain_outputs(captured)[-1])


def test_loading_twice_is_harmless_and_unloading_removes_the_magic(ip, server):
    from nbchat import load_ipython_extension

    load_ipython_extension(ip)
    assert sum(type(c).__name__ == "ChatMagics" for c in ip.configurables) == 1
    ip.run_line_magic("unload_ext", "nbchat")
    assert ip.find_cell_magic("chat") is None
    assert not any(type(c).__name__ == "ChatMagics" for c in ip.configurables)
    ip.run_line_magic("load_ext", "nbchat")
    assert ip.find_cell_magic("chat") is not None


def test_key_never_in_outputs(ip, server):
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    outputs = []
    for cell in (
        "%%chat -o r\nhi",
        "%chat history",
        "%config ChatMagics",
        "%%chat -m x@nope=1\nhi",
    ):
        _, captured = run(ip, cell)
        outputs.append(captured.stdout + captured.stderr + repr(captured.outputs))
    outputs.append(repr(ip.user_ns["r"]))
    magics = ip.find_cell_magic("chat").__self__
    client = magics.session.client(magics.settings())  # the client the cells used
    assert client.api_key.get() == TEST_KEY  # it does hold the key ...
    assert repr(client) == f"ChatClient(base_url={server.url!r}, api_key=Secret('sk-...cdef'))"
    outputs += [repr(client), repr(magics.session.conversation()), repr(magics.settings())]
    assert TEST_KEY not in "\n".join(outputs)  # ... and shows it nowhere
    assert TEST_KEY[-4:] in "\n".join(outputs)  # the masked form is shown


@pytest.mark.parametrize(
    "cell", ["%chat -o 'a b' what?", "%chat map cities tpl -o 'a b'", "%chat -o def map cities tpl"]
)
def test_out_must_name_a_variable(ip, server, cell):
    ip.user_ns.update(cities=["Oslo"], tpl="Where is {}?")
    result, _ = run(ip, cell)
    assert isinstance(result.error_in_exec, OptionError)
    assert "-o takes a variable name" in str(result.error_in_exec)
    assert not server.requests and "a b" not in ip.user_ns


@pytest.mark.parametrize("bad", ["-m", "-o"])
def test_flag_without_value_is_refused(ip, server, bad):
    result, _ = run(ip, f"%%chat {bad}\nhi")
    assert result.error_in_exec is not None
    assert not server.requests


def test_shell_type(ip: InteractiveShell):
    # Plain InteractiveShell has no kernel: 'auto' shows the reply once at the end.
    assert ip.find_cell_magic("chat").__self__._live() is False
