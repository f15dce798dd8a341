"""Argument helpers for the `%%chat` magic: flags declared with IPython's decorators,
the argparse parser built only when first needed.
"""

from __future__ import annotations

from keyword import iskeyword
from typing import Any

from IPython.core.magic_arguments import argument

from .errors import OptionError

__all__ = ["check_out", "lazy_magic_arguments", "magic_parser", "switch"]


class lazy_magic_arguments:
    """`@magic_arguments()` whose argparse parser is built on first use, not at import.

    Building the parser of ~25 flags (and its help text) is most of what
    `%load_ext nbchat` would cost. `%%chat?` still shows the full generated help:
    IPython's inspector asks an object's `getdoc()` before its `__doc__`.
    Abbreviated flags (`--temperatur`) are refused, not guessed.
    """

    def __call__(self, func: Any) -> Any:
        if not getattr(func, "has_arguments", False):
            func.has_arguments = True
            func.decorators = []
        func.getdoc = lambda: magic_parser(func).format_help()
        return func


def magic_parser(func: Any) -> Any:
    """The argparse parser of a `@lazy_magic_arguments` magic (built once)."""
    parser = func.__dict__.get("parser")
    if parser is None:
        from IPython.core.magic_arguments import construct_parser

        parser = construct_parser(func)  # type: ignore[no-untyped-call]  # sets __doc__ too
        parser.allow_abbrev = False
        func.parser = parser
    return parser


def switch(flag: str, value: bool, help: str) -> Any:
    """`--x` / `--no-x`: both set `x` (True/False); left at None when neither is given."""
    return argument(  # type: ignore[no-untyped-call]
        flag,
        dest=flag.removeprefix("--no-").removeprefix("--"),
        action="store_const",
        const=value,
        help=help,
    )


def check_out(name: str | None) -> str | None:
    """`-o NAME`: a variable name the result can be stored under, else OptionError."""
    if name is not None and not (name.isidentifier() and not iskeyword(name)):
        raise OptionError(f"-o takes a variable name, not {name!r}", hint="e.g. -o answer")
    return name
