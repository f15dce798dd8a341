"""ChatMagics glue for context from the notebook: `--with`, `--error`, `--cells`, `%chat fix`.

A mixin, so magics.py only routes. Loading it costs a trait and a
`post_run_cell` callback; summaries, token counting and tracebacks are
imported when a cell first asks for context (nbchat.attach).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from traitlets import Int, validate
from traitlets.config import Configurable

from .errors import OptionError

if TYPE_CHECKING:
    from .attach import Receipt
    from .config import Settings
    from .lasterror import ErrorWatch
    from .request import CellRequest
    from .session import ChatSession
    from .types import Message

__all__ = ["FIX_PROMPT", "ContextCommands", "proposed_code"]

FIX_PROMPT = (
    "Explain in a few sentences what caused the error attached below, then give the whole "
    "corrected cell as one ```python code block."
)
_FENCE = r"^ {0,3}(`{3,}|~{3,})[ \t]*(\w*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$"


def proposed_code(text: str) -> str | None:
    """The code of the reply's last fenced block (a python one, if any is python)."""
    blocks = re.findall(_FENCE, text, re.DOTALL | re.MULTILINE)
    python = [b for b in blocks if b[1].lower() in ("python", "py", "python3", "ipython")]
    chosen = (python or blocks)[-1:] if blocks else []
    return chosen[0][2].rstrip("\n") if chosen else None


class ContextCommands(Configurable):
    """Mixin for ChatMagics: the `context_tokens` setting, context for a cell, `%chat fix`."""

    context_tokens = Int(
        2000,
        help="Token budget of each value attached with --with (and of --error and --cells): "
        "summaries are trimmed to fit.",
    ).tag(config=True)

    _error_watch: ErrorWatch | None = None
    _line_args: Any = None

    if TYPE_CHECKING:
        shell: Any

        @property
        def session(self) -> ChatSession: ...
        def settings(self) -> Settings: ...
        def _parse(self, line: str) -> Any: ...
        def _send(self, prompt: str, args: Any) -> None: ...
        def _compare_models(self, args: Any) -> list[str]: ...

    @validate("context_tokens")
    def _check_context_tokens(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 50 <= value <= 200_000:
            from traitlets import TraitError

            raise TraitError(f"context_tokens must be between 50 and 200000, not {value}")
        return value

    def _watch_errors(self) -> None:
        """Remember failed cells from now on (for --error and %chat fix)."""
        from .lasterror import ErrorWatch

        events = getattr(self.shell, "events", None)
        if events is not None and self._error_watch is None:
            self._error_watch = ErrorWatch(self.shell)
            self._error_watch.register(events)

    def _unwatch_errors(self) -> None:
        events = getattr(self.shell, "events", None)
        watch, self._error_watch = self._error_watch, None
        if events is not None and watch is not None:
            watch.unregister(events)

    def _attach(
        self, args: Any, request: CellRequest, settings: Settings, panel: bool = False
    ) -> tuple[CellRequest, Receipt | None]:
        """The request with the context the cell names, and its receipt (None: no context)."""
        from .attach import split_names

        names = split_names(getattr(args, "with_", None))
        error, cells = bool(getattr(args, "error", False)), getattr(args, "cells", None)
        if not (names or error or cells is not None):
            return request, None
        from dataclasses import replace

        from .attach import collect, receipt_for, with_context
        from .identity import cell_id, execute_request
        from .tokens import counter

        model = request.model or settings.model
        count = counter(model)
        key = settings.api_key
        parts = collect(
            names=names,
            error=error,
            cells=_cells(cells),
            shell=self.shell,
            watch=self._error_watch,
            budget=self.context_tokens,
            count=count,
            model=model,
            redact=key.redact if key else (lambda text: text),
        )
        request = replace(request, message=with_context(request.message, parts))
        this_cell = None if panel else cell_id(execute_request(self.shell))  # peeked, not taken
        return request, receipt_for(self.session, settings, request, parts, count, this_cell)

    def _panel_context(
        self,
        text: str,
        names: str,
        error: bool,
        settings: Settings,
        conversation: str,
        model: str | None,
        params: dict[str, Any],
    ) -> tuple[Message, str | None]:
        """The panel's message with the context it names, and its receipt line (None: none)."""
        from argparse import Namespace

        from .request import CellRequest
        from .types import Message

        request = CellRequest(Message("user", text), conversation, model, params, True)
        args = Namespace(with_=[names] if names.strip() else None, error=error, cells=None)
        request, receipt = self._attach(args, request, settings, panel=True)
        return request.message, (receipt.line() if receipt is not None else None)

    def _cmd_fix(self, rest: list[str]) -> None:
        """`%chat fix [MORE]`: explain the last error; the corrected cell goes below, not run."""
        args = self._line_args if self._line_args is not None else self._parse("")
        if self._compare_models(args):
            raise OptionError("%chat fix asks one model", hint="drop the comma in -m")
        args.error = True
        prompt = FIX_PROMPT + (f"\n\n{' '.join(rest)}" if rest else "")
        self._send(prompt, args)
        reply = self.session.last_reply
        code = proposed_code(reply.text) if reply is not None else None
        if getattr(args, "dry_run", False):
            return
        if code is None:
            print("nbchat: the reply has no code block to put in a new cell")
            return
        self.shell.set_next_input(code, replace=False)
        print(
            "nbchat: the proposed cell is in a new cell below, not run (JupyterLab, Notebook 7, "
            "IPython); it is also the code block above"
        )


def _cells(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise OptionError(f"--cells takes a number of cells, not {value!r}") from None
