"""The `%chat` line commands about conversations and models, as a ChatMagics mixin.

Each command is a method `_cmd_<name>(rest)`; `ChatMagics._line_command` finds
them by name, so adding a command here is all it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from .errors import OptionError

if TYPE_CHECKING:
    from .config import Settings
    from .conversation import Conversation
    from .session import ChatSession

__all__ = ["ConversationCommands"]


def _no_arguments(command: str, rest: list[str]) -> None:
    if rest:
        raise OptionError(f"%chat {command} takes no arguments, not {' '.join(rest)!r}")


class ConversationCommands:
    """`%chat list`, `reset [NAME]`, `history [NAME]` and `models`."""

    if TYPE_CHECKING:  # provided by ChatMagics

        @property
        def session(self) -> ChatSession: ...
        def settings(self) -> Settings: ...
        def _record_reset(self, conversation: str) -> None: ...

    def _conversation_named(self, command: str, rest: list[str]) -> Conversation:
        """The conversation `%chat COMMAND [NAME]` is about; OptionError if there is none."""
        if len(rest) > 1:
            raise OptionError(
                f"%chat {command} takes one conversation name, not {' '.join(rest)!r}"
            )
        name = rest[0] if rest else "default"
        session = self.session
        if name not in session.conversations:
            raise OptionError(f"there is no conversation {name!r}", hint="%chat list shows them")
        return session.conversation(name)

    def _cmd_reset(self, rest: list[str]) -> None:
        conv = self._conversation_named("reset", rest)
        dropped = conv.reset()
        self._record_reset(conv.name)  # so %chat resume after a restart brings none back
        what = "conversation" if conv.name == "default" else f"conversation {conv.name!r}"
        print(f"{what} reset ({dropped} turn{'s' * (dropped != 1)} dropped)")

    def _cmd_history(self, rest: list[str]) -> None:
        self._history(self._conversation_named("history", rest))

    def _cmd_list(self, rest: list[str]) -> None:
        from IPython.display import display

        from .tables import conversations_table

        _no_arguments("list", rest)
        table = conversations_table(self.session, self.settings().system_prompt)
        display(table, raw=True)  # type: ignore[no-untyped-call]

    def _cmd_models(self, rest: list[str]) -> None:
        from IPython.display import display

        from .tables import models_table

        _no_arguments("models", rest)
        settings = self.settings()
        settings.require_key()
        table = models_table(self.session.client(settings))
        display(table, raw=True)  # type: ignore[no-untyped-call]

    def _history(self, conv: Conversation) -> None:
        from IPython.display import display

        from .media import describe_parts
        from .render import footer_text
        from .sanitize import safe_markdown

        settings = self.settings()
        system = conv.system_prompt or settings.system_prompt
        if not conv.turns and not system:
            print("the conversation is empty")
            return

        def history(show: Callable[[str], str]) -> str:
            lines = [f"**System:** {show(system)}\n"] if system else []
            for number, turn in enumerate(conv.turns, 1):
                attached = describe_parts(turn.user.content)
                attached = f"\n\n*({attached})*" if attached else ""
                lines.append(f"**[{number}] You:**\n\n{show(turn.user.text)}{attached}\n")
                if turn.reply.tool_rounds:  # the turn's function calls (nbchat.tools)
                    from .tools import call_summary

                    calls = [show(f"- {call_summary(c, 200)}") for c in turn.reply.tool_calls]
                    lines.append("\n".join(calls) + "\n")
                lines.append(f"**[{number}] Assistant:**\n\n{show(turn.reply.text)}\n")
                lines.append(f"<sub>{show(footer_text(turn.reply))}</sub>\n\n---\n")
            return "\n".join(lines)

        # Every text here came from a model, a server or a pasted page: safe Markdown.
        markdown = history(partial(safe_markdown, remote_images=settings.load_remote_images))
        display({"text/markdown": markdown, "text/plain": history(str)}, raw=True)  # type: ignore[no-untyped-call]
