"""Tools: Python functions of the notebook that a model may call, with the user's consent.

`describe(func)` makes a function's JSON schema from its signature, type hints
and docstring (Google, NumPy or Sphinx parameter sections); `ToolRunner` runs the
calls of one reply: it asks first (unless the tool or the settings say not to),
binds the JSON arguments to the signature, times the call and turns the result
into text within a token budget. Failures are results, not crashes: an exception,
arguments that do not fit, an unknown name: the model is told what went wrong
(type and message) and may recover. Only a KeyboardInterrupt ends the loop.

No IPython here: the display (nbchat.toolcards) and the way to ask (stdin in a
cell, nobody in the panel) are handed in. pydantic is imported only when a
parameter's type is a pydantic model.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import OptionError
from .types import Reply, ToolCall

__all__ = [
    "NO_STDIN",
    "Tool",
    "ToolRunner",
    "ToolSet",
    "ask_stdin",
    "call_line",
    "call_summary",
    "describe",
    "resolve",
    "result_text",
    "tool",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ATTR = "__nbchat_tool__"
#: What the cell says (once) when calls needing approval were declined for want of stdin.
NO_STDIN = (
    "tool calls declined: nobody can approve them here (no stdin); to allow them mark the "
    "function @nbchat.tool(confirm=False) or run %config ChatMagics.confirm_tools = False"
)


def tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = True,
) -> Any:
    """Adjust how a function is offered as a tool: `@nbchat.tool(confirm=False)`.

    `name` and `description` replace the function's own; `confirm=False` runs its
    calls without asking. The function itself is returned, still callable as before.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise TypeError(f"nbchat.tool takes a function, not {type(f).__name__}")
        options = {"name": name, "description": description, "confirm": confirm}
        try:
            setattr(f, _ATTR, options)
        except (AttributeError, TypeError):  # a builtin: wrap it

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return f(*args, **kwargs)

            wrapper.__signature__ = inspect.signature(f)  # type: ignore[attr-defined]
            wrapper.__doc__ = f.__doc__
            wrapper.__name__ = getattr(f, "__name__", "tool")
            setattr(wrapper, _ATTR, options)
            return wrapper
        return f

    return mark if func is None else mark(func)


@dataclass(frozen=True)
class Tool:
    """One function offered to the model."""

    name: str
    function: Callable[..., Any]
    description: str
    parameters: dict[str, Any]
    confirm: bool = True
    models: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # pydantic params

    def schema(self) -> dict[str, Any]:
        """The request's `tools` item."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


class ToolSet(dict[str, Tool]):
    """Tools by name, in the order offered."""

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.values()]


# -- schemas ----------------------------------------------------------------------------

_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?|"
    r"See Also|Attributes|Other Parameters)\s*:?\s*$"
)


def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(the description: the docstring before its sections, {parameter: description})."""
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    head: list[str] = []
    section: str | None = None
    current: str | None = None
    for i, line in enumerate(lines):
        sphinx = re.match(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$", line)
        if sphinx:
            section, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            continue
        if re.match(r"^\s*:\w+", line):  # :returns:, :type x:, :raises ...:
            section, current = "sphinx-other", None
            continue
        underline = i + 1 < len(lines) and re.match(r"^\s*-{3,}\s*$", lines[i + 1])
        match = _SECTION.match(line)
        if match:
            word = match.group(1).lower()
            section = "params" if word.startswith(("arg", "param", "other")) else "other"
            if underline and section == "params":
                section = "numpy"
            current = None
            continue
        if re.match(r"^\s*-{3,}\s*$", line):
            continue
        if underline:  # a NumPy heading we do not know
            section, current = "other", None
            continue
        if section is None:
            head.append(line)
            continue
        if section == "numpy":
            if line.strip() and not line.startswith((" ", "\t")):
                current = line.split(":")[0].strip().lstrip("*")
                params[current] = ""
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section == "params":
            google = re.match(r"^\s{0,4}(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if google and not line.startswith(" " * 5):
                current = google.group(1).lstrip("*")
                params[current] = google.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section == "sphinx" and current and line.startswith((" ", "\t")) and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
    description = "\n".join(head).strip().split("\n\n")[0].replace("\n", " ")
    return description, {k: v for k, v in params.items() if v}


class _Undescribable(Exception):
    pass


def _pydantic_model(hint: Any) -> bool:
    return isinstance(hint, type) and any(
        c.__module__.startswith("pydantic") and c.__name__ == "BaseModel" for c in hint.__mro__
    )


def _type_schema(hint: Any, models: dict[str, Any], name: str) -> dict[str, Any]:
    """JSON schema of a type hint; _Undescribable if it has none."""
    if hint is inspect.Parameter.empty:
        raise _Undescribable("has no type hint")
    if isinstance(hint, str):
        raise _Undescribable(f"has a type hint that cannot be resolved ({hint!r})")
    if hint is Any:
        return {}
    if hint is type(None) or hint is None:
        return {"type": "null"}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint in (list, tuple, set, frozenset):
        return {"type": "array"}
    if hint is dict:
        return {"type": "object"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    if _pydantic_model(hint):
        models[name] = hint
        schema: dict[str, Any] = hint.model_json_schema()
        return schema
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Annotated:
        return _type_schema(args[0], models, name)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a, models, name) for a in args]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin in (list, set, frozenset, Iterable) or (origin is tuple and args[-1:] == (...,)):
        return (
            {"type": "array", "items": _type_schema(args[0], models, name)}
            if args
            else {"type": "array"}
        )
    if origin is tuple:
        items = [_type_schema(a, models, name) for a in args]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }
    if origin in (dict, Mapping):
        if args and args[0] is not str:
            raise _Undescribable("is a dict whose keys are not str")
        value = _type_schema(args[1], models, name) if args else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    raise _Undescribable(f"has a type JSON cannot describe ({getattr(hint, '__name__', hint)})")


def describe(func: Any, name: str | None = None) -> Tool:
    """The Tool of `func`; OptionError (one line) if its parameters cannot be described."""
    options = getattr(func, _ATTR, None) or {}
    label = str(name or getattr(func, "__name__", "?"))
    tool_name = str(options.get("name") or getattr(func, "__name__", None) or label)
    if not _NAME.match(tool_name):
        raise OptionError(
            f"--tools {label}: {tool_name!r} is not a tool name",
            hint="use letters, digits, '_' and '-' (@nbchat.tool(name=...) sets one)",
        )
    if inspect.iscoroutinefunction(func):
        raise OptionError(
            f"--tools {label}: async functions cannot be tools yet",
            hint="wrap it: def f(...): return asyncio.run(g(...)), or call it in a thread",
        )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"--tools {label}: cannot read its signature ({exc})") from None
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # a hint naming something out of reach: as written
        hints = {}
    description, docs = _doc_parts(inspect.getdoc(func) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    models: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise OptionError(
                f"--tools {label}: parameter {param.name!r} (*args or **kwargs) "
                "cannot be described",
                hint="give the function named parameters with type hints",
            )
        if param.kind == param.POSITIONAL_ONLY:
            raise OptionError(
                f"--tools {label}: parameter {param.name!r} is positional-only",
                hint="a model passes arguments by name",
            )
        try:
            schema = dict(_type_schema(hints.get(param.name, param.annotation), models, param.name))
        except _Undescribable as why:
            raise OptionError(
                f"--tools {label}: parameter {param.name!r} {why}",
                hint="annotate it with str, int, float, bool, list[...], dict[str, ...], "
                "Literal[...], an Enum or a pydantic model",
            ) from None
        if param.name in docs:
            schema["description"] = docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            try:
                json.dumps(param.default)
                schema["default"] = param.default
            except (TypeError, ValueError):
                pass
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return Tool(
        name=tool_name,
        function=func,
        description=options.get("description") or description,
        parameters=parameters,
        confirm=bool(options.get("confirm", True)),
        models=models,
    )


def resolve(names: Iterable[str], namespace: Mapping[str, Any]) -> ToolSet:
    """The tools named in `--tools a,b` (and ChatMagics.tools); OptionError if one is bad."""
    found = ToolSet()
    for spec in names:
        for label in filter(None, (s.strip() for s in spec.split(","))):
            if label not in namespace:
                raise OptionError(
                    f"--tools {label}: no such name in the notebook",
                    hint="define the function first (run its cell)",
                )
            func = namespace[label]
            if not callable(func):
                raise OptionError(f"--tools {label}: {type(func).__name__} is not callable")
            described = describe(func, label)
            if described.name in found and found[described.name].function is not func:
                raise OptionError(f"--tools {label}: two tools are named {described.name!r}")
            found[described.name] = described
    return found


# -- calls --------------------------------------------------------------------------------


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def call_line(call: ToolCall, width: int = 120) -> str:
    """`revenue(region="north", year=2024)`, cut to `width` characters."""
    args = _arguments(call)
    if args is None:
        inner = call.arguments
    else:
        inner = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items()
        )
    line = f"{call.name}({inner})".replace("\n", " ")
    return line if len(line) <= width else line[: width - 1] + "…"


def call_summary(call: ToolCall, width: int = 2000) -> str:
    """One line for transcripts: `tool call f(x=1) → ran: 2` (history, export)."""
    outcome = " ".join(f"{call.status or 'not run'}: {call.result or ''}".split())
    outcome = outcome if len(outcome) <= width else outcome[: width - 1] + "…"
    return f"tool call {call_line(call, 400)} → {outcome}"


def result_text(value: Any, budget: int, count: Callable[[str], int]) -> str:
    """What a function returned, as the text sent to the model, within `budget` tokens."""
    from .summaries import fit, summarise

    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            summary = summarise(value, "result", budget, count)
            text = summary.text if summary.text is not None else repr(value)[:2000]
    return fit(text, budget, count)


def _check(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments bound to the signature (pydantic params validated); TypeError if not."""
    signature = inspect.signature(tool.function)
    bound = signature.bind(**args)
    props = tool.parameters.get("properties", {})
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    for key, value in list(bound.arguments.items()):
        if key in tool.models:
            bound.arguments[key] = tool.models[key].model_validate(value)
            continue
        kind = props.get(key, {}).get("type")
        expected = kinds.get(kind) if isinstance(kind, str) else None
        if expected is None:
            continue
        wrong_bool = isinstance(value, bool) and kind in ("integer", "number")
        if wrong_bool or not isinstance(value, expected):  # type: ignore[arg-type]
            raise TypeError(f"{key} must be {kind}, not {type(value).__name__}")
        if kind == "number" and isinstance(value, int):
            bound.arguments[key] = float(value)
    return dict(bound.arguments)


Ask = Callable[[str], "bool | None"]  # True yes, False no, None: nobody can answer


def ask_stdin(question: str) -> bool | None:
    """Ask on the kernel's stdin (`input()`); None when the frontend allows no stdin."""
    import builtins

    from IPython.core.error import StdinNotImplementedError

    try:
        answer = builtins.input(question)
    except (StdinNotImplementedError, EOFError, OSError, RuntimeError):
        return None
    return answer.strip().lower() in ("y", "yes")


class Cards(Protocol):
    """Where calls are shown (nbchat.toolcards.ToolCards)."""

    def show(self, call: ToolCall, state: str) -> None: ...
    def round(self, text: str, calls: tuple[ToolCall, ...]) -> None: ...


class ToolRunner:
    """Runs the calls of each reply of one turn, asking first where it must."""

    def __init__(
        self,
        tools: ToolSet,
        *,
        ask: Ask | None,
        confirm: bool = True,
        max_rounds: int = 8,
        result_tokens: int = 2000,
        count: Callable[[str], int] | None = None,
        cards: Cards | None = None,
        notice: Callable[[str], None] = print,
        redact: Callable[[str], str] = str,
    ) -> None:
        from .tokens import estimate

        self.tools = tools
        self.ask = ask
        self.confirm = confirm
        self.max_rounds = max_rounds
        self.result_tokens = result_tokens
        self.count = count or estimate
        self.cards = cards
        self.notice = notice
        self.redact = redact  # masks the API key in results, as --with does in its parts
        self.unanswered = False  # some call was declined because nobody could be asked

    def schemas(self) -> list[dict[str, Any]]:
        return self.tools.schemas()

    def run(self, reply: Reply) -> tuple[ToolCall, ...]:
        """Handle every call of `reply`; each comes back with its status and result.

        A KeyboardInterrupt (while asking or while a function runs) propagates.
        """
        done = tuple(self._one(call) for call in reply.tool_calls)
        if self.cards is not None:
            self.cards.round(reply.text, done)
        return done

    def _show(self, call: ToolCall, state: str) -> None:
        if self.cards is not None:
            self.cards.show(call, state)

    def _one(self, call: ToolCall) -> ToolCall:
        def ended(status: str, result: str, seconds: float | None = None) -> ToolCall:
            result = self.redact(result)
            done = dataclasses.replace(call, status=status, result=result, seconds=seconds)
            self._show(done, status)
            return done

        found = self.tools.get(call.name)
        if found is None:
            known = ", ".join(self.tools) or "none"
            return ended("error", f"error: unknown tool {call.name!r} (tools offered: {known})")
        args = _arguments(call)
        if args is None:
            return ended(
                "error", f"error: the arguments are not a JSON object: {call.arguments[:200]!r}"
            )
        try:
            bound = _check(found, args)
        except Exception as exc:  # TypeError from bind, pydantic's ValidationError
            return ended(
                "error", f"error: arguments do not fit {call.name}: {type(exc).__name__}: {exc}"
            )
        if found.confirm and self.confirm:
            self._show(call, "asked")
            answer = self.ask(f"Run {call_line(call)}? [y/N] ") if self.ask else None
            if answer is None:
                self.unanswered = True
                return ended(
                    "declined",
                    "declined: nobody could approve this call (the "
                    "user must allow it first); do not retry it",
                )
            if not answer:
                return ended("declined", "declined: the user did not allow this call")
            self._show(call, "approved")
        else:
            self._show(call, "running")
        started = time.perf_counter()
        try:
            value = found.function(**bound)
        except Exception as exc:
            seconds = time.perf_counter() - started
            return ended("error", f"error: {type(exc).__name__}: {exc}", seconds)
        seconds = time.perf_counter() - started
        try:
            text = result_text(value, self.result_tokens, self.count)
        except Exception as exc:
            text = f"error: cannot turn the result into text: {type(exc).__name__}: {exc}"
        return ended("ran", text, seconds)
