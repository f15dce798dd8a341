"""Tools (--tools): schemas, the loop against the mock server, approval, failures, cards."""

from __future__ import annotations

import json

from nbchat.toolcalls import ToolCallParts

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
