"""Comparing models side by side: `%%chat -m a,b`, `--compare`, `%chat pick`, Pick buttons."""

from __future__ import annotations

import html
import os
import signal
import threading
import time

import pytest
from IPython.utils.capture import capture_output

from nbchat.columns import ColumnsView, close_fences, markdown_table
from nbchat.comparison import CompareError, parse_models, run_compare
from nbchat.errors import BadRequestError, OptionError
from nbchat.magics import ChatMagics
from nbchat.mockserver import mock_reply, prompt_tokens, reply_pieces
from nbchat.render import footer_text

from .conftest import markdown_outputs, plain_outputs, run


def magics_of(ip) -> ChatMagics:
    return next(c for c in ip.configurables if isinstance(c, ChatMagics))


def usage_line(messages: list[dict], model: str) -> str:
    """The footer's token part for what the mock server answers `model` (deterministic)."""
    p, c = prompt_tokens(messages), len(reply_pieces(messages, model))
    return f"{p} prompt + {c} completion = {p + c} tokens"


def test_parse_models_keeps_mock_options_with_their_model():
    assert parse_models("gpt-4o-mini, gpt-4.1-mini") == ["gpt-4o-mini", "gpt-4.1-mini"]
    assert parse_models("a@ttft=0.5,chunks=3,b@delay=0,c") == [
        "a@ttft=0.5,chunks=3",
        "b@delay=0",
        "c",
    ]
    assert parse_models("solo") == ["solo"]


def test_models_stream_concurrently_each_with_its_own_footer(ip, server):
    slow, slower = "gpt-4o-mini@ttft=0.5", "gpt-4.1-mini@ttft=0.6"
    run(ip, f"%%chat -m {slow} -o alone1\nhello")
    run(ip, f"%%chat -m {slower} -o alone2\nhello")
    run(ip, "%chat reset")
    one_by_one = ip.user_ns["alone1"].latency + ip.user_ns["alone2"].latency
    server.clear()

    started = time.perf_counter()
    result, captured = run(ip, f"%%chat -m {slow},{slower} -o cmp\nhello")
    together = time.perf_counter() - started
    print(f"compare: {together:.2f} s together vs {one_by_one:.2f} s one by one")
    assert result.error_in_exec is None
    assert together < 0.75 * one_by_one  # close to the slower one, not the sum

    messages = [{"role": "user", "content": "hello"}]
    assert sorted(r.body["model"] for r in server.requests) == sorted([slow, slower])
    assert all(r.body["messages"] == messages and r.body["stream"] for r in server.requests)
    cmp = ip.user_ns["cmp"]
    assert [r.model for r in cmp] == [slow, slower]
    for result_, name in zip(cmp, ["gpt-4o-mini", "gpt-4.1-mini"], strict=True):
        assert result_.ok and result_.text == mock_reply(messages, name)
        assert result_.reply.ttft is not None and result_.reply.cost is not None
    # one static output: a table with both replies, each column with its own footer
    [table] = markdown_outputs(captured)
    [plain] = plain_outputs(captured)
    for result_, name in zip(cmp, ["gpt-4o-mini", "gpt-4.1-mini"], strict=True):
        footer = footer_text(result_.reply)
        assert footer.startswith(f"{name} · {usage_line(messages, name)} · first token")
        assert html.escape(footer) in table and footer in plain
        assert mock_reply(messages, name).strip() in table
    assert table.index("1 · gpt-4o-mini") < table.index("2 · gpt-4.1-mini")
    # nothing joined the conversation
    assert magics_of(ip).session.conversation().turns == []


def test_a_failing_model_leaves_the_others_intact(ip, server):
    result, captured = run(ip, "%%chat -m gpt-4o-mini,x@bogus=1,gpt-4o -o cmp\nhello")
    assert result.error_in_exec is None
    cmp = ip.user_ns["cmp"]
    messages = [{"role": "user", "content": "hello"}]
    assert cmp[0].ok and cmp[0].text == mock_reply(messages, "gpt-4o-mini")
    assert cmp[2].ok and cmp[2].text == mock_reply(messages, "gpt-4o")
    assert isinstance(cmp[1].error, BadRequestError) and not cmp[1].ok
    assert "Unknown mock option 'bogus'" in cmp[1].error.message
    [plain] = plain_outputs(captured)
    assert "[2] x@bogus=1\nerror: 400 Unknown mock option 'bogus'." in plain
    assert "**error:** 400 Unknown mock option" in markdown_outputs(captured)[0]
    _, picked = run(ip, "%chat pick 2")
    assert "nbchat: reply 2 (x@bogus=1) has no answer to pick" in picked.stdout


def test_every_model_failing_fails_the_cell_in_one_line(ip, server):
    result, captured = run(ip, "%%chat --compare x@bogus=1,y@bogus=2 -o cmp\nhello")
    assert isinstance(result.error_in_exec, CompareError)
    assert "nbchat: every model failed; x@bogus=1: 400 Unknown mock option" in captured.stdout
    assert "Traceback" not in captured.stdout
    assert len(ip.user_ns["cmp"]) == 2  # the -o object is kept even so


def test_pick_continues_the_conversation_with_that_reply(ip, server):
    run(ip, "%%chat -m gpt-4o-mini,gpt-4.1-mini -o cmp\nWhich is faster?")
    result, captured = run(ip, "%chat pick 2")
    assert result.error_in_exec is None
    assert "picked reply 2 (gpt-4.1-mini)" in captured.stdout
    run(ip, "%%chat\nAnd why?")
    first = {"role": "user", "content": "Which is faster?"}
    assert server.requests[-1].body["messages"] == [
        first,
        {"role": "assistant", "content": mock_reply([first], "gpt-4.1-mini")},
        {"role": "user", "content": "And why?"},
    ]
    turns = magics_of(ip).session.conversation().turns
    assert turns[0].reply is ip.user_ns["cmp"][1].reply


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%chat pick 3", "pick a reply between 1 and 2, not 3"),
        ("%chat pick two", "usage: %chat pick N"),
        ("%chat pick", "usage: %chat pick N"),
    ],
)
def test_pick_refuses_bad_numbers(ip, server, line, message):
    run(ip, "%%chat -m gpt-4o-mini,gpt-4.1-mini\nhello")
    result, captured = run(ip, line)
    assert isinstance(result.error_in_exec, OptionError)
    assert f"nbchat: {message}" in captured.stdout
    assert magics_of(ip).session.conversation().turns == []


def test_pick_only_right_after_its_comparison_and_only_once(ip, server):
    _, captured = run(ip, "%chat pick 1")
    assert "nbchat: nothing to pick yet" in captured.stdout
    run(ip, "%%chat --compare gpt-4o-mini,gpt-4.1-mini\nhello")
    run(ip, "%chat pick 1")
    _, captured = run(ip, "%chat pick 2")
    assert "nbchat: reply 1 of this comparison was already picked" in captured.stdout
    run(ip, "%chat -m gpt-4o-mini,gpt-4o another question")  # the line form compares too
    run(ip, "%%chat\nsomething else")
    _, captured = run(ip, "%chat pick 1")
    assert "nbchat: the conversation changed since this comparison" in captured.stdout
    assert len(magics_of(ip).session.conversation().turns) == 2


def test_compare_needs_two_models(ip, server):
    result, captured = run(ip, "%%chat --compare gpt-4o-mini\nhello")
    assert isinstance(result.error_in_exec, OptionError)
    assert "nbchat: --compare needs two or more models" in captured.stdout
    assert len(server.requests) == 0


def test_live_columns_stream_into_widgets_then_leave_a_static_table(ip, server):
    magics = magics_of(ip)
    view = ColumnsView(live=True, interval=0)
    models = ["gpt-4o-mini@chunks=40", "gpt-4.1-mini@reply=markdown"]
    with capture_output() as captured:
        cmp = run_compare(magics.session, magics.settings(), "hello", models, view)
    for column, result in zip(view.columns, cmp, strict=True):
        shown = [o.outputs[0]["data"]["text/markdown"] for o in column.blocks.children if o.outputs]
        assert "".join(shown) == result.text  # frozen blocks + the open block, nothing lost
        assert html.escape(footer_text(result.reply)) in column.footer.value
    assert len(view.columns[1].blocks.children) > 5  # finished blocks were frozen, sent once
    # the live widgets were cleared: the cell keeps the static table, then the Pick buttons
    data = [o.data for o in captured.outputs]
    assert data[0]["text/markdown"] == markdown_table(cmp)
    assert "application/vnd.jupyter.widget-view+json" in data[1]
    buttons = view.pick_row.children[:-1]
    assert [b.description for b in buttons] == [f"Pick 1 · {models[0]}", f"Pick 2 · {models[1]}"]
    with capture_output() as clicked:
        buttons[1].click()
    assert magics.session.conversation().turns[-1].reply is cmp[1].reply
    note = clicked.outputs[-1]
    assert note.update and "picked reply 2 (gpt-4.1-mini)" in note.data["text/markdown"]
    buttons[0].click()
    assert "already picked" in view.pick_row.children[-1].value
    assert len(magics.session.conversation().turns) == 1


def test_interrupting_a_comparison_keeps_partials_out_of_the_conversation(ip, server):
    slow = "gpt-4o-mini@chunks=200,delay=0.01,gpt-4.1-mini@chunks=200,delay=0.01"
    fire = threading.Event()

    def interrupt_once_streaming() -> None:
        deadline = time.monotonic() + 5
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        fire.set()
        os.kill(os.getpid(), signal.SIGINT)  # what a kernel interrupt does

    threading.Thread(target=interrupt_once_streaming, daemon=True).start()
    result, captured = run(ip, f"%%chat -m {slow} -o cmp\nhello")
    assert fire.is_set()
    assert isinstance(result.error_in_exec, CompareError)
    assert "nbchat: comparison interrupted; nothing was added" in captured.stdout
    cmp = ip.user_ns["cmp"]
    assert all(r.reply.finish_reason == "interrupted" for r in cmp)
    assert all(0 < len(r.text) < 1000 for r in cmp)  # partial, not whole
    assert magics_of(ip).session.conversation().turns == []
    run(ip, "%chat pick 1")  # a partial reply can still be kept on purpose
    assert magics_of(ip).session.conversation().turns[0].reply is cmp[0].reply


def test_close_fences_keeps_a_cut_code_block_inside_its_column():
    assert close_fences("text\n```python\nx = 1") == "text\n```python\nx = 1\n```\n"
    assert close_fences("```\nx\n```\n") == "```\nx\n```\n"
    assert close_fences("~~~~\n```\n") == "~~~~\n```\n~~~~\n"


def test_compare_from_python_shares_the_magics_conversation(ip, server):
    import nbchat

    run(ip, "%%chat\nfirst")
    with capture_output() as captured:
        cmp = nbchat.compare("second", ["gpt-4o-mini", "gpt-4.1-mini"])
    history = server.requests[-1].body["messages"][:2]  # both models saw the conversation
    assert [m["role"] for m in history] == ["user", "assistant"]
    second = [*history, {"role": "user", "content": "second"}]
    assert [r.text for r in cmp] == [mock_reply(second, m) for m in ("gpt-4o-mini", "gpt-4.1-mini")]
    assert markdown_outputs(captured) == [markdown_table(cmp)]
    cmp.pick(1)
    run(ip, "%%chat\nthird")
    assert server.requests[-1].body["messages"][3] == {"role": "assistant", "content": cmp[0].text}


def test_cell_flags_apply_to_every_model_and_system_only_joins_with_a_pick(ip, server):
    ip.user_ns["persona"] = "You are terse."
    result, _ = run(ip, "%%chat -m gpt-4o-mini,gpt-4.1-mini -s persona -t 0.2 -c side\nhello")
    assert result.error_in_exec is None
    for request in server.requests:
        assert request.body["messages"][0] == {"role": "system", "content": "You are terse."}
        assert request.body["temperature"] == 0.2
    conv = magics_of(ip).session.conversation("side")
    assert conv.system_prompt is None and conv.turns == []
    run(ip, "%chat pick 1")
    assert conv.system_prompt == "You are terse." and len(conv.turns) == 1
