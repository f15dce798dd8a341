"""Function calls on the wire: streamed `tool_calls` deltas assembled by index.

A streamed reply sends each call in pieces: the first delta of index i carries
its id and function name, later ones fragments of the arguments' JSON text; the
deltas of several calls (parallel calls) may interleave. Standard library only.
"""

from __future__ import annotations

from typing import Any

from .types import ToolCall

__all__ = ["ToolCallParts", "from_message"]


class ToolCallParts:
    """Collects the `tool_calls` deltas of one streamed reply."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, deltas: Any) -> None:
        """One chunk's `delta.tool_calls` list; TypeError/AttributeError if malformed."""
        if not isinstance(deltas, list):
            raise TypeError("tool_calls is not a list")
        for delta in deltas:
            index = delta.get("index", len(self._calls))
            if not isinstance(index, int):
                raise TypeError("tool call index is not an integer")
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": []})
            if delta.get("id"):
                call["id"] = str(delta["id"])
            function = delta.get("function") or {}
            name = function.get("name")
            if name and call["name"] != name:  # some servers repeat the name in every delta
                call["name"] += str(name)
            arguments = function.get("arguments")
            if arguments:
                if not isinstance(arguments, str):
                    raise TypeError("tool call arguments are not text")
                call["arguments"].append(arguments)

    def calls(self) -> tuple[ToolCall, ...]:
        """The calls so far, in index order (an id is made up if the server sent none)."""
        return tuple(
            ToolCall(
                id=call["id"] or f"call_{index}",
                name=call["name"],
                arguments="".join(call["arguments"]),
            )
            for index, call in sorted(self._calls.items())
        )


def from_message(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The calls of a whole (non-streamed) assistant message."""
    out = []
    for i, item in enumerate(message.get("tool_calls") or ()):
        function = item.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # some servers send an object
            import json

            arguments = json.dumps(arguments if arguments is not None else {})
        out.append(
            ToolCall(
                id=str(item.get("id") or f"call_{i}"),
                name=str(function.get("name") or ""),
                arguments=arguments,
            )
        )
    return tuple(out)
