"""Tools (--tools): schemas, the loop against the mock server, approval, failures, cards."""

from __future__ import annotations

import builtins
import json
from typing import Literal

import pytest

from nbchat.errors import OptionError
from nbchat.toolcalls import ToolCallParts
from nbchat.tools import describe, tool

from .conftest import plain_outputs, run

REVENUE = '''
def revenue(region: str, year: int) -> float:
    """Total revenue of a region in a year, in euros.

    Args:
        region: the sales region, e.g. north
        year: the calendar year
    """
    calls.append((region, year))
    return 1.2e6 + year
calls = []
'''


def _tools_ip(ip, *, confirm=False):
    ip.run_cell(REVENUE)
    ip.run_line_magic("config", f"ChatMagics.confirm_tools = {confirm}")
    return ip


def test_streamed_parallel_calls_two_rounds_then_the_answer_and_footer(ip, server):
    _tools_ip(ip)
    result, captured = run(
        ip, "%%chat -m gpt-4o-mini@tools=call,parallel=2,rounds=2 -T revenue -o r\nWhich grew?"
    )
    assert result.error_in_exec is None, captured.stdout
    assert ip.user_ns["calls"] == [
        ("region-1", 1),
        ("region-2", 2),
        ("region-2", 2),
        ("region-3", 3),
    ]
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 3
    assert bodies[0]["tools"][0]["function"]["name"] == "revenue"
    params = bodies[0]["tools"][0]["function"]["parameters"]
    assert params["properties"]["region"] == {
        "type": "string",
        "description": "the sales region, e.g. north",
    }
    assert params["required"] == ["region", "year"]
    # the third request carries both rounds: assistant tool_calls + tool results, twice
    roles = [m["role"] for m in bodies[2]["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "tool", "tool"]
    assert json.loads(bodies[2]["messages"][1]["tool_calls"][1]["function"]["arguments"]) == {
        "region": "region-2",
        "year": 2,
    }
    reply = ip.user_ns["r"]
    assert reply.tool_rounds == 2 and len(reply.tool_calls) == 4
    assert [c.status for c in reply.tool_calls] == ["ran"] * 4
    assert reply.tool_calls[0].result == str(1.2e6 + 1)
    assert reply.text.startswith("Tool results (4):")
    footer = plain_outputs(captured)[-1]
    assert "4 tool calls · 2 rounds" in footer
    # usage summed over the three requests
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_fragments_assemble_by_index():
    parts = ToolCallParts()
    parts.add(
        [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]
    )
    parts.add([{"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"x"'}}])
    parts.add([{"index": 0, "function": {"arguments": '{"y": '}}])
    parts.add([{"index": 1, "function": {"arguments": ": 1}"}}])
    parts.add([{"index": 0, "function": {"arguments": "2}"}}])
    calls = parts.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "f", '{"y": 2}'),
        ("b", "g", '{"x": 1}'),
    ]


def test_the_next_cell_continues_with_the_whole_exchange(ip, server):
    _tools_ip(ip)
    run(ip, "%%chat -m gpt-4o-mini@tools=call -T revenue\nfirst")
    result, _ = run(ip, "%%chat -m gpt-4o-mini\nsecond")
    assert result.error_in_exec is None
    roles = [m["role"] for m in server.requests[-1].body["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assistant = server.requests[-1].body["messages"][1]
    assert assistant["tool_calls"][0]["function"]["name"] == "revenue"


def test_no_stream_replies_with_message_tool_calls(ip, server):
    _tools_ip(ip)
    result, captured = run(
        ip, "%%chat --no-stream -m gpt-4o-mini@tools=call,parallel=2 -T revenue -o r\nq"
    )
    assert result.error_in_exec is None, captured.stdout
    assert [r.body["stream"] for r in server.requests] == [False, False]
    reply = ip.user_ns["r"]
    assert len(reply.tool_calls) == 2 and reply.tool_rounds == 1
    assert "2 tool calls · 1 round" in plain_outputs(captured)[-1]


def _tool_messages(server, request=-1):
    chats = [r for r in server.requests if r.path.endswith("/chat/completions")]
    return [m for m in chats[request].body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize(
    ("answer", "status"), [("y", "ran"), ("yes", "ran"), ("n", "declined"), ("", "declined")]
)
def test_each_call_asks_first_and_the_answer_decides(ip, server, monkeypatch, answer, status):
    _tools_ip(ip, confirm=True)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda q: asked.append(q) or answer)
    result, _ = run(ip, "%%chat -m gpt-4o-mini@tools=call -T revenue -o r\nq")
    assert result.error_in_exec is None
    assert asked == ['Run revenue(region="region-1", year=1)? [y/N] ']
    call = ip.user_ns["r"].tool_calls[0]
    assert call.status == status
    assert (ip.user_ns["calls"] == [("region-1", 1)]) == (status == "ran")
    told = _tool_messages(server)[0]["content"]
    assert told == (
        "1200001.0" if status == "ran" else "declined: the user did not allow this call"
    )


def test_without_stdin_calls_are_declined_the_model_told_and_the_cell_says_how(
    ip, server, monkeypatch
):
    from IPython.core.error import StdinNotImplementedError

    def no_stdin(question):
        raise StdinNotImplementedError(
            "raw_input was called, but this frontend does not support input requests."
        )

    _tools_ip(ip, confirm=True)
    monkeypatch.setattr(builtins, "input", no_stdin)
    result, captured = run(ip, "%%chat -m gpt-4o-mini@tools=call -T revenue -o r\nq")
    assert result.error_in_exec is None
    assert ip.user_ns["calls"] == []
    assert ip.user_ns["r"].tool_calls[0].status == "declined"
    assert _tool_messages(server)[0]["content"].startswith("declined: nobody could approve")
    assert "confirm_tools = False" in captured.stdout and "confirm=False" in captured.stdout
    assert captured.stdout.count("\n") == 1  # one line


def test_confirm_false_on_the_function_runs_without_asking(ip, server, monkeypatch):
    ip.run_cell(
        "import nbchat\n@nbchat.tool(confirm=False, description='Say hello.')\n"
        "def hello(name: str) -> str:\n    return 'hello ' + name\n"
    )
    monkeypatch.setattr(builtins, "input", lambda q: pytest.fail("asked"))
    result, _ = run(ip, "%%chat -m gpt-4o-mini@tools=call -T hello -o r\nq")
    assert result.error_in_exec is None
    assert ip.user_ns["r"].tool_calls[0].result == "hello name-1"
    assert server.requests[0].body["tools"][0]["function"]["description"] == "Say hello."


def test_an_exception_in_the_function_is_a_result_the_model_sees(ip, server):
    ip.run_cell("def boom(x: int) -> int:\n    raise ValueError(f'no data for {x}')\n")
    ip.run_line_magic("config", "ChatMagics.confirm_tools = False")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@tools=call -T boom -o r\nq")
    assert result.error_in_exec is None
    call = ip.user_ns["r"].tool_calls[0]
    assert (call.status, call.result) == ("error", "error: ValueError: no data for 1")
    assert _tool_messages(server)[0]["content"] == "error: ValueError: no data for 1"
    assert "ValueError: no data for 1" in ip.user_ns["r"].text  # the model could recover
    assert any("failed" in p and "ValueError" in p for p in plain_outputs(captured))


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("tool_args=invalid", "error: the arguments are not a JSON object"),
        ("tool_args=wrong", "error: arguments do not fit revenue: TypeError"),
        ("tool_name=nope", "error: unknown tool 'nope' (tools offered: revenue)"),
    ],
)
def test_bad_arguments_and_unknown_tools_are_results(ip, server, option, expected):
    _tools_ip(ip)
    result, _ = run(ip, f"%%chat -m gpt-4o-mini@tools=call,{option} -T revenue -o r\nq")
    assert result.error_in_exec is None
    assert ip.user_ns["calls"] == []
    call = ip.user_ns["r"].tool_calls[0]
    assert call.status == "error" and call.result.startswith(expected)
    assert _tool_messages(server)[0]["content"] == call.result


def test_wrongly_typed_argument_is_refused(ip, server):
    ip.run_cell("def half(x: int) -> float:\n    return x / 2\n")
    ip.run_line_magic("config", "ChatMagics.confirm_tools = False")
    ip.user_ns["bad"] = None
    # the mock sends a string for a str parameter; call with a str param typed int instead
    ip.run_cell(
        "import nbchat\n@nbchat.tool(name='half', confirm=False)\n"
        "def half_s(x: str) -> str:\n    return x\n"
    )
    from nbchat.tools import ToolRunner, ToolSet, describe
    from nbchat.types import Reply, ToolCall

    runner = ToolRunner(ToolSet(half=describe(ip.user_ns["half"])), ask=None, confirm=False)
    done = runner.run(Reply("", "m", tool_calls=(ToolCall("c", "half", '{"x": "3"}'),)))
    assert done[0].status == "error" and "x must be integer, not str" in done[0].result
    done = runner.run(Reply("", "m", tool_calls=(ToolCall("c", "half", '{"x": 3}'),)))
    assert (done[0].status, done[0].result) == ("ran", "1.5")


def test_the_round_limit_stops_with_one_line(ip, server):
    _tools_ip(ip)
    ip.run_line_magic("config", "ChatMagics.max_tool_rounds = 2")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@tools=call,rounds=50 -T revenue -o r\nq")
    assert result.error_in_exec is None
    assert len(server.requests) == 3  # the first request and one per round
    assert len(ip.user_ns["calls"]) == 2
    lines = [line for line in captured.stdout.splitlines() if line.strip("\x1b[2K")]
    assert lines == [
        "stopped after 2 tool rounds: the model still asked for 1 call(s) "
        "(ChatMagics.max_tool_rounds)"
    ]
    # the conversation keeps the complete rounds; the next cell validates and continues
    run(ip, "%%chat\nnext")
    roles = [m["role"] for m in server.requests[-1].body["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "user"]


def test_an_interrupt_ends_the_loop_and_keeps_complete_rounds_only(ip, server):
    ip.run_cell(
        "runs = []\n"
        "def slow(x: int) -> int:\n"
        "    runs.append(x)\n"
        "    if len(runs) == 2:\n"
        "        raise KeyboardInterrupt\n"
        "    return x\n"
    )
    ip.run_line_magic("config", "ChatMagics.confirm_tools = False")
    result, _ = run(ip, "%%chat -m gpt-4o-mini@tools=call,rounds=3 -T slow\nq")
    assert result.error_in_exec is not None
    assert "interrupted in tool round 2" in str(result.error_in_exec)
    assert len(server.requests) == 2  # nothing sent after the interrupt
    conv = ip.find_cell_magic("chat").__self__.session.conversation()
    assert len(conv.turns) == 1
    assert conv.turns[0].reply.finish_reason == "interrupted"
    assert [m["role"] for m in conv.turns[0].reply.steps] == ["assistant", "tool"]
    run(ip, "%%chat\nnext")
    roles = [m["role"] for m in server.requests[-1].body["messages"]]
    assert roles == ["user", "assistant", "tool", "user"]


def test_an_interrupt_in_the_first_round_leaves_the_conversation_unchanged(ip, server):
    ip.run_cell("def stop(x: int) -> int:\n    raise KeyboardInterrupt\n")
    ip.run_line_magic("config", "ChatMagics.confirm_tools = False")
    result, _ = run(ip, "%%chat -m gpt-4o-mini@tools=call -T stop\nq")
    assert result.error_in_exec is not None
    conv = ip.find_cell_magic("chat").__self__.session.conversation()
    assert conv.turns == []


HOSTILE = "<img src=x onerror=alert(1)>"


def test_hostile_arguments_and_results_show_as_escaped_text(ip, server):
    ip.run_cell(
        "from typing import Literal\n"
        f"def lookup(key: Literal[{HOSTILE!r}]) -> str:\n"
        f"    return {HOSTILE!r} + key\n"
    )
    ip.run_line_magic("config", "ChatMagics.confirm_tools = False")
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@tools=call,delay=0.001 -T lookup -o r\nq")
    assert result.error_in_exec is None
    assert ip.user_ns["r"].tool_calls[0].result == HOSTILE * 2
    htmls = [o.data["text/html"] for o in captured.outputs if "text/html" in o.data]
    cards = [h for h in htmls if "nbchat-tool" in h]
    assert cards
    for h in htmls:
        assert "<img" not in h and "onerror=alert(1)>" not in h
    assert any("&lt;img src=x onerror=alert(1)&gt;" in h for h in cards)
    for o in captured.outputs:  # the model's answer quotes the result: safe Markdown
        assert "<img" not in o.data.get("text/markdown", "")


def test_saved_output_has_one_line_per_call(ip, server):
    _tools_ip(ip)
    _, captured = run(ip, "%%chat -m gpt-4o-mini@tools=call,parallel=2 -T revenue\nq")
    cards = [o for o in captured.outputs if "nbchat-tool" in o.data.get("text/html", "")]
    final = cards[-1]  # the header kept above the answer
    assert final.data["text/html"].count("<details") == 2
    assert final.data["text/plain"].splitlines() == [
        '🔧 revenue(region="region-1", year=1) · ran in 0 ms → 1200001.0',
        '🔧 revenue(region="region-2", year=2) · ran in 0 ms → 1200002.0',
    ]


# -- refusals: one line, nothing sent ---------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "cell", "message"),
    [
        ("", "%%chat -T nosuch\nq", "--tools nosuch: no such name in the notebook"),
        ("x = 3", "%%chat -T x\nq", "--tools x: int is not callable"),
        ("def f(*args): pass", "%%chat -T f\nq", "parameter 'args' (*args or **kwargs)"),
        ("def f(a): pass", "%%chat -T f\nq", "--tools f: parameter 'a' has no type hint"),
        ("def f(a: object): pass", "%%chat -T f\nq", "parameter 'a' has a type JSON cannot"),
        ("def f(a: int): pass", "%%chat -m a,b -T f\nq", "--tools cannot be combined with a"),
        (
            "def f(a: int): pass",
            "%chat -T f map [1] x",
            "--tools cannot be combined with %chat map",
        ),
    ],
)
def test_bad_tools_are_one_line_and_nothing_is_sent(ip, server, setup, cell, message):
    ip.run_cell(setup)
    result, _ = run(ip, cell)
    assert isinstance(result.error_in_exec, OptionError)
    assert message in str(result.error_in_exec)
    assert len(server.requests) == 0


def test_dry_run_shows_the_tools(ip, server):
    _tools_ip(ip)
    run(ip, "%%chat --dry-run -T revenue -o body\nq")
    assert ip.user_ns["body"]["tools"][0]["function"]["name"] == "revenue"
    assert len(server.requests) == 0


def test_tools_setting_offers_functions_in_every_cell(ip, server):
    _tools_ip(ip)
    ip.run_line_magic("config", "ChatMagics.tools = ['revenue']")
    result, _ = run(ip, "%%chat -m gpt-4o-mini@tools=call\nq")
    assert result.error_in_exec is None
    assert ip.user_ns["calls"] == [("region-1", 1)]


# -- schemas ------------------------------------------------------------------------------


def test_schema_from_numpy_and_sphinx_docstrings_and_rich_hints():
    def numpy_style(city: str, days: int = 3, units: Literal["C", "F"] = "C") -> dict:
        """Forecast for a city.

        Parameters
        ----------
        city : str
            Name of the city,
            in English.
        days : int
            How many days.
        """

    def sphinx_style(tags: list[str], limit: int | None = None, scores: dict[str, float] = {}):  # noqa: B006
        """Search.

        :param tags: tags to match
        :param limit: at most this many
        :returns: hits
        """

    schema = describe(numpy_style).schema()
    assert schema == {
        "type": "function",
        "function": {
            "name": "numpy_style",
            "description": "Forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "Name of the city, in English."},
                    "days": {"type": "integer", "description": "How many days.", "default": 3},
                    "units": {"enum": ["C", "F"], "default": "C"},
                },
                "required": ["city"],
            },
        },
    }
    props = describe(sphinx_style).parameters["properties"]
    assert props["tags"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "tags to match",
    }
    assert props["limit"] == {
        "anyOf": [{"type": "integer"}, {"type": "null"}],
        "description": "at most this many",
        "default": None,
    }
    assert props["scores"]["additionalProperties"] == {"type": "number"}


def test_pydantic_model_parameter():
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):
        x: float
        y: float

    globals()["Point"] = Point  # hints are strings here (from __future__ import annotations)

    def norm(p: Point) -> float:
        """Length of p."""
        return (p.x**2 + p.y**2) ** 0.5

    described = describe(norm)
    assert described.parameters["properties"]["p"]["properties"]["x"]["type"] == "number"
    from nbchat.tools import ToolRunner, ToolSet
    from nbchat.types import Reply, ToolCall

    runner = ToolRunner(ToolSet(norm=described), ask=None, confirm=False)
    done = runner.run(
        Reply("", "m", tool_calls=(ToolCall("c", "norm", '{"p": {"x": 3, "y": 4}}'),))
    )
    assert done[0].result == "5.0"
    done = runner.run(Reply("", "m", tool_calls=(ToolCall("c", "norm", '{"p": {"x": "a"}}'),)))
    assert done[0].status == "error" and "ValidationError" in done[0].result


def test_results_as_text_within_the_budget():
    from nbchat.tokens import estimate
    from nbchat.tools import result_text

    assert result_text("plain", 100, estimate) == "plain"
    assert result_text({"a": [1, 2]}, 100, estimate) == '{"a": [1, 2]}'
    long = result_text("word " * 5000, 60, estimate)
    assert estimate(long) <= 60 and "more characters" in long
    assert "object" in result_text(object(), 100, estimate)


def test_tool_decorator_keeps_the_function_callable():
    @tool(name="add_up", confirm=False)
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    described = describe(add)
    assert (described.name, described.confirm) == ("add_up", False)
    with pytest.raises(OptionError):
        describe(tool(name="bad name")(add))


# -- record, resume, export -----------------------------------------------------------------


def test_record_resume_and_export_round_trip_a_tool_exchange(ip, server, tmp_path, monkeypatch):
    from .test_memory import in_cell
    from .test_resume_export import configure, notebook, restart, turns  # noqa: F401

    monkeypatch.setenv("JPY_SESSION_NAME", "/work/notebook.ipynb")
    from .test_memory import FakeKernel

    kernel = FakeKernel()
    monkeypatch.setattr(ip, "kernel", kernel, raising=False)
    configure(ip, server, tmp_path)
    _tools_ip(ip)
    in_cell(ip, kernel, "a", f"%%chat -m gpt-4o-mini@tools=call,parallel=2 -T revenue\n{HOSTILE}")
    before = [(t.user, t.reply, t.cell_id) for t in turns(ip)]
    assert before[0][1].tool_rounds == 1
    restart(ip, server, tmp_path)
    _, captured = in_cell(ip, kernel, None, "%chat resume")
    assert "restored 1 turn" in captured.stdout
    after = turns(ip)
    assert [(t.user, t.reply, t.cell_id) for t in after] == before
    assert after[0].reply.steps == before[0][1].steps
    assert [(c.name, c.arguments, c.result, c.status) for c in after[0].reply.tool_calls] == [
        (c.name, c.arguments, c.result, c.status) for c in before[0][1].tool_calls
    ]
    in_cell(ip, kernel, "b", "%%chat\nnext")  # continues with the whole exchange
    roles = [m["role"] for m in server.requests[-1].body["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "user"]
    run(ip, f"%chat export {tmp_path / 'chat.md'}")
    text = (tmp_path / "chat.md").read_text()
    assert 'tool call revenue(region="region-1", year=1) → ran: 1200001.0' in text
    assert 'tool call revenue(region="region-2", year=2) → ran: 1200002.0' in text
    assert "<img" not in text
    run(ip, f"%chat export {tmp_path / 'chat.json'}")
    data = json.loads((tmp_path / "chat.json").read_text())
    first = data["exchanges"][0]
    assert [m["role"] for m in first["request"]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
    ]
    assert first["reply"]["tool_rounds"] == 1
    assert [c["result"] for c in first["reply"]["tool_calls"]] == ["1200001.0", "1200002.0"]


def _panel_with_tools(ip, server):
    import nbchat

    _tools_ip(ip, confirm=True)
    ip.run_cell(
        "import nbchat\n@nbchat.tool(confirm=False)\n"
        "def hello(name: str) -> str:\n    return 'hello ' + name\n"
    )
    ip.run_line_magic("config", "ChatMagics.tools = ['revenue', 'hello']")
    ip.run_line_magic("config", "ChatMagics.model = 'gpt-4o-mini@tools=call,parallel=2'")
    panel = nbchat.panel(ip)
    panel.prompt.value = "which region?"
    panel.send.click()
    return panel


def _wait_for_buttons(panel):
    from .test_widget import eventually

    eventually(lambda: panel.tool_view is not None and panel.tool_view.pending is not None)
    return panel.tool_view.pending


@pytest.mark.parametrize(("button", "status"), [(0, "ran"), (1, "declined")])
def test_the_panel_asks_with_approve_and_deny_buttons(ip, server, button, status):
    from .test_widget import html_in

    panel = _panel_with_tools(ip, server)
    try:
        _wait_for_buttons(panel)[button].click()
        assert panel.wait(30)
        told = [m["content"] for m in _tool_messages(server)]
        expected = "1200001.0" if status == "ran" else "declined: the user did not allow this call"
        assert told == [expected, "hello name-2"]
        assert (ip.user_ns["calls"] == [("region-1", 1)]) == (status == "ran")
        turn = ip.find_cell_magic("chat").__self__.session.conversation().turns[-1]
        assert [c.status for c in turn.reply.tool_calls] == [status, "ran"]
        cards = html_in(panel.transcript, "nbchat-keep")
        assert len(cards) == 2 and "revenue(region=&quot;region-1&quot;" in cards[0]
        assert panel.tool_view.pending is None
    finally:
        panel.close()
        panel.wait(30)


def test_stop_while_the_panel_asks_ends_the_loop(ip, server):
    panel = _panel_with_tools(ip, server)
    try:
        _wait_for_buttons(panel)
        panel.stop.click()
        assert panel.wait(30)
        assert len([r for r in server.requests if r.path.endswith("/chat/completions")]) == 1
        assert ip.user_ns["calls"] == []
        assert ip.find_cell_magic("chat").__self__.session.conversation().turns == []
        assert "stopped" in panel.status.value
    finally:
        panel.close()
        panel.wait(30)


def test_a_result_holding_the_api_key_is_masked(ip, server):
    from .conftest import TEST_KEY

    ip.run_cell("import os\ndef secret(x: int) -> str:\n    return 'key: ' + KEY\n")
    ip.user_ns["KEY"] = TEST_KEY
    ip.run_line_magic("config", "ChatMagics.confirm_tools = False")
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    result, captured = run(ip, "%%chat -m gpt-4o-mini@tools=call,delay=0.001 -T secret -o r\nq")
    assert result.error_in_exec is None
    assert ip.user_ns["r"].tool_calls[0].result == "key: sk-...cdef"
    assert all(TEST_KEY not in str(r.body) for r in server.requests)
    assert all(TEST_KEY not in str(o.data) for o in captured.outputs)


def test_async_functions_are_refused(ip, server):
    ip.run_cell("async def later(x: int) -> int:\n    return x\n")
    result, _ = run(ip, "%%chat -T later\nq")
    assert "async functions cannot be tools" in str(result.error_in_exec)
    assert len(server.requests) == 0


def test_a_name_repeated_in_every_delta_is_one_name():
    parts = ToolCallParts()
    parts.add([{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}])
    parts.add([{"index": 0, "function": {"name": "f", "arguments": "}"}}])
    assert [(c.name, c.arguments) for c in parts.calls()] == [("f", "{}")]


def test_history_lists_the_calls_of_a_turn(ip, server):
    _tools_ip(ip)
    ip.run_cell(f"def echo(text: str) -> str:\n    return {HOSTILE!r}\n")
    run(ip, "%%chat -m gpt-4o-mini@tools=call,parallel=2 -T revenue,echo\nq")
    _, captured = run(ip, "%chat history")
    (shown,) = captured.outputs
    plain, markdown = shown.data["text/plain"], shown.data["text/markdown"]
    assert '- tool call revenue(region="region-1", year=1) → ran: 1200001.0' in plain
    assert f'- tool call echo(text="text-2") → ran: {HOSTILE}' in plain
    assert "<img" not in markdown and "tool call echo" in markdown


def test_tools_with_several_choices_are_one_line(ip, server):
    _tools_ip(ip)
    result, _ = run(ip, "%%chat -n 3 -T revenue\nq")
    assert "--tools cannot be combined with -n" in str(result.error_in_exec)
    assert len(server.requests) == 0
