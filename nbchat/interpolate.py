"""`-i/--interpolate`: expand `{name}` and `{expression}` in a prompt from the user namespace.

Opt-in, because prompts are full of code and braces that must arrive verbatim.
With `-i`, each `{...}` field is evaluated as a Python expression in the user
namespace — as IPython's own `!cmd {expr}` expansion does — so it can run any
code the cell could run; nothing beyond what the notebook's author wrote runs.
Expansion is a single pass: braces inside an inserted value are never
evaluated, so text from a file or a web page cannot inject an expression.
`{{` and `}}` give literal braces; `!r`/`!s` and `:spec` work as in `str.format`.
Whatever goes wrong in a field (evaluating it, `!r`, a `__format__` or `__str__`
that raises) is one line naming the field, never a traceback.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from .errors import OptionError

__all__ = ["interpolate"]

_HINT = "write {{ and }} for literal braces, or drop -i to send the text as written"


class _Field(NamedTuple):
    """A field's value and how it was written, carried to the conversion and formatting."""

    value: Any
    source: str


def _failed(source: str, exc: Exception) -> OptionError:
    try:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    except Exception:  # an exception whose own __str__ fails
        detail = "(no message)"
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return OptionError(f"-i could not expand {{{source}}}: {text}", hint=_HINT)


class _EvalFormatter(string.Formatter):
    """`str.format` whose field names are Python expressions evaluated in a namespace."""

    def parse(self, format_string: str) -> Iterator[tuple[str, str | None, str | None, str | None]]:
        for literal, field, spec, conversion in super().parse(format_string):
            if field is not None and not field.strip():  # `{}` would become `{0}`: refuse
                raise OptionError("-i found an empty {} in the prompt", hint=_HINT)
            yield literal, field, spec, conversion

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        try:
            namespace = cast(dict[str, Any], kwargs)
            value = eval(field_name, namespace)  # see the module docstring on safety
        except Exception as exc:
            raise _failed(field_name, exc) from None
        return _Field(value, field_name), field_name

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        field = cast(_Field, value)
        source = field.source + (f"!{conversion}" if conversion else "")
        try:
            return _Field(super().convert_field(field.value, conversion), source)
        except Exception as exc:
            raise _failed(source, exc) from None

    def format_field(self, value: Any, format_spec: str) -> str:
        field = cast(_Field, value)
        try:
            return format(field.value, format_spec)
        except Exception as exc:
            raise _failed(field.source, exc) from None


def interpolate(text: str, namespace: dict[str, Any]) -> str:
    """`text` with every `{expression}` replaced by its value from `namespace`."""
    try:
        return _EvalFormatter().vformat(text, (), namespace)
    except OptionError:
        raise
    except Exception as exc:  # the template itself: an unmatched brace, a bad conversion
        raise OptionError(f"-i could not expand the prompt: {exc}", hint=_HINT) from None
