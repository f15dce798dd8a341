"""ChatMagics glue for tools: `--tools` / `-T`, the tool settings, the runner of a cell.

A mixin, so magics.py only routes. Loading it costs four traits; schemas,
cards and the runner are imported when a cell first offers tools (nbchat.tools,
nbchat.toolcards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Int, List, Unicode, validate
from traitlets.config import Configurable

from .errors import OptionError

if TYPE_CHECKING:
    from .tools import Ask, ToolRunner

__all__ = ["ToolCommands"]


class ToolCommands(Configurable):
    """Mixin for ChatMagics: which functions a model may call, and on what terms."""

    tools = List(
        Unicode(),
        help="Names of functions in the notebook offered as tools in every %%chat cell "
        "(as --tools NAME,...).",
    ).tag(config=True)
    confirm_tools = Bool(
        True,
        help="Ask before each tool call (y/N on the cell's stdin). False runs every call "
        "without asking; @nbchat.tool(confirm=False) does so for one function.",
    ).tag(config=True)
    max_tool_rounds = Int(
        8,
        help="Tool rounds (a reply with calls, answered with their results) in one cell; "
        "then the cell stops with one line.",
    ).tag(config=True)
    tool_result_tokens = Int(
        2000, help="Token budget of each tool result sent back to the model: longer is trimmed."
    ).tag(config=True)

    if TYPE_CHECKING:
        shell: Any

        def _compare_models(self, args: Any) -> list[str]: ...

    @validate("max_tool_rounds")
    def _check_max_tool_rounds(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 1 <= value <= 100:
            from traitlets import TraitError

            raise TraitError(f"max_tool_rounds must be between 1 and 100, not {value}")
        return value

    @validate("tool_result_tokens")
    def _check_tool_result_tokens(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 50 <= value <= 200_000:
            from traitlets import TraitError

            raise TraitError(f"tool_result_tokens must be between 50 and 200000, not {value}")
        return value

    def _tool_names(self, args: Any) -> list[str]:
        return [*self.tools, *(getattr(args, "tools", None) or ())]

    def _refuse_tools(self, args: Any, what: str) -> None:
        """One line if tools were asked for where they are not supported."""
        if getattr(args, "tools", None):
            raise OptionError(
                f"--tools cannot be combined with {what}",
                hint="tools work in a single-model %%chat cell",
            )

    def _tool_runner(
        self,
        args: Any,
        model: str,
        *,
        ask: Ask | None = None,
        notice: Callable[[str], None] = print,
    ) -> ToolRunner | None:
        """The runner of a cell's tools (None without any); OptionError if one is bad.

        `ask`: how a call is approved (default: the cell's stdin); the caller sets
        `cards` once the cell's view exists.
        """
        names = self._tool_names(args)
        if not names:
            return None
        if args is not None and self._compare_models(args):
            self._refuse_tools(args, "a comparison of models")
            return None  # ChatMagics.tools: not offered in a comparison
        if str(getattr(args, "n", None) or "1").strip() not in ("0", "1"):  # -n K choices
            self._refuse_tools(args, "-n (several choices)")
            return None
        from .tokens import counter
        from .tools import ToolRunner, ask_stdin, resolve

        namespace = getattr(self.shell, "user_ns", {})
        found = resolve(names, namespace)
        key = getattr(self, "api_key", None)
        return ToolRunner(
            found,
            ask=ask if ask is not None else ask_stdin,
            confirm=self.confirm_tools,
            max_rounds=self.max_tool_rounds,
            result_tokens=self.tool_result_tokens,
            count=counter(model),
            notice=notice,
            redact=key.redact if key else str,
        )
