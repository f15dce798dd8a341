"""`-i/--interpolate`: expand `{name}` and `{expression}` in a prompt from the user namespace.

Opt-in, because prompts are full of code and braces that must arrive verbatim.
With `-i`, each `{...}` field is evaluated as a Python expression in the user
namespace — as IPython's own `!cmd {expr}` expansion does — so it can run any
code the cell could run; nothing beyond what the notebook's author wrote runs.
Expansion is a single pass: braces inside an inserted value are never
evaluated, so text from a file or a web page cannot inject an expression.
`{{` and `}}` give literal braces; `!r`/`!s` and `:spec` work as in `str.format`.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from .errors import OptionError

__all__ = ["interpolate"]

_HINT = "write {{ and }} for literal braces, or drop -i to send the text as written"


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
            return eval(field_name, namespace), field_name  # see the module docstring on safety
        except Exception as exc:
            raise OptionError(
                f"-i could not expand {{{field_name}}}: {type(exc).__name__}: {exc}", hint=_HINT
            ) from None


def interpolate(text: str, namespace: dict[str, Any]) -> str:
    """`text` with every `{expression}` replaced by its value from `namespace`."""
    try:
        return _EvalFormatter().vformat(text, (), namespace)
    except OptionError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise OptionError(f"-i could not expand the prompt: {exc}", hint=_HINT) from None
