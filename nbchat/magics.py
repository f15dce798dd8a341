"""`%%chat` and `%chat`: argument parsing and display, nothing more.

The traits (settings) come from `ChatSettings`; the work of a turn is done by
`ChatSession`, imported on first use so `%load_ext nbchat` stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import CaselessStrEnum, default

from .config import ChatSettings
from .errors import NbChatError, OptionError
from .multimagics import MultiModelCommands

if TYPE_CHECKING:
    from .session import ChatSession

__all__ = ["ChatMagics"]

LINE_HELP = """\
%%chat [-m MODEL] [-s SYSTEM] [-o NAME]   the cell body is your message; the reply streams below
%chat QUESTION                           a one-line question in the same conversation
%chat reset                              forget the conversation (the system prompt stays)
%chat history                            show the conversation so far
%chat help                               this help; %%chat? lists every flag
%config ChatMagics                       every setting (the key is shown masked)
"""


@magics_class
class ChatMagics(Magics, ChatSettings, MultiModelCommands):
    """Talk to an OpenAI-compatible chat model from a notebook."""

    display_mode = CaselessStrEnum(
        ["auto", "live", "final"],
        "auto",
        help="'live' updates the output while a reply streams, 'final' shows it once at the "
        "end, 'auto' streams wherever the frontend can update outputs (Jupyter, VS Code). "
        "Falls back to $NBCHAT_DISPLAY_MODE.",
    ).tag(config=True)

    @default("display_mode")
    def _default_display_mode(self) -> str:
        value = os.environ.get("NBCHAT_DISPLAY_MODE", "auto").lower()
        return value if value in ("auto", "live", "final") else "auto"

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._session: ChatSession | None = None

    @property
    def session(self) -> ChatSession:
        if self._session is None:
            from .session import ChatSession

            self._session = ChatSession()
        return self._session

    @property
    def _user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns  # type: ignore[union-attr,no-any-return]

    def _live(self) -> bool:
        if self.display_mode != "auto":
            return bool(self.display_mode == "live")
        return getattr(self.shell, "kernel", None) is not None

    # -- the magic ------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="model for this cell (default: ChatMagics.model)")
    @argument(
        "-s", "--system", help="set the conversation's system prompt (a string, or a variable name)"
    )
    @argument("-o", "--out", metavar="NAME", help="store the reply object in this variable")
    @argument("--compare", metavar="MODELS", help="models side by side, e.g. gpt-4o,llama3")
    @argument("words", nargs="*", help="%%chat COMMAND or a one-line question")
    @line_cell_magic
    def chat(self, line: str = "", cell: str | None = None) -> Any:
        """Send the cell to the chat model and stream the reply as Markdown.

        The reply ends with a usage footer: tokens, time to first token,
        latency, tokens per second and an estimated cost. Later cells continue
        the conversation; `%chat reset` starts over. `%chat help` lists the
        line commands.
        """
        args = parse_argstring(self.chat, line)
        if cell is None:
            return self._line_command(args)
        if args.words:
            raise OptionError(
                f"unexpected words after %%chat: {' '.join(args.words)!r}",
                hint="options are listed by %%chat?",
            )
        return self._send(cell, args)

    def _send(self, prompt: str, args: Any) -> None:
        from .render import LiveMarkdown

        prompt = prompt.rstrip("\n")  # IPython adds the cell's last newline
        if not prompt.strip():
            raise OptionError("the message is empty", hint="write your message in the cell body")
        session = self.session
        conv = session.conversation()
        if args.system:
            conv.system_prompt = self._resolve_text(args.system)
        settings = self.settings()
        models = self._compare_models(args)  # several models: nbchat.multimagics
        if models:
            return self._compare(prompt, models, args, settings)
        view = LiveMarkdown(interval=settings.update_interval, live=self._live())
        try:
            reply = session.run(prompt, settings, view, model=args.model)
        except NbChatError as error:
            partial = getattr(error, "partial", None)
            if args.out and partial is not None:
                self._user_ns[args.out] = partial
            raise
        if args.out:
            self._user_ns[args.out] = reply

    def _resolve_text(self, value: str) -> str:
        """A variable's value when `value` names a string in the namespace, else itself."""
        found = self._user_ns.get(value) if value.isidentifier() else None
        return found if isinstance(found, str) else value

    # -- %chat commands ---------------------------------------------------------------

    def _line_command(self, args: Any) -> Any:
        """`%chat WORD ...` runs the command `_cmd_WORD` if there is one, else asks WORD ...

        Commands are methods named `_cmd_<name>(rest)`; feature mixins add their own.
        """
        words: list[str] = args.words
        self._line_args = args  # flags of the line, for commands that take them (%chat map)
        if not words:
            return self._cmd_help([])
        command = getattr(self, f"_cmd_{words[0]}", None)
        if command is not None:
            return command(words[1:])
        return self._send(" ".join(words), args)

    def _cmd_help(self, rest: list[str]) -> None:
        print(LINE_HELP)

    def _cmd_reset(self, rest: list[str]) -> None:
        if rest:
            raise OptionError(f"%chat reset takes no arguments, not {' '.join(rest)!r}")
        dropped = self.session.conversation().reset()
        print(f"conversation reset ({dropped} turn{'s' * (dropped != 1)} dropped)")

    def _cmd_history(self, rest: list[str]) -> None:
        if rest:
            raise OptionError(f"%chat history takes no arguments, not {' '.join(rest)!r}")
        self._history()

    def _history(self) -> None:
        from IPython.display import display

        from .render import footer_text

        conv = self.session.conversation()
        settings = self.settings()
        system = conv.system_prompt or settings.system_prompt
        if not conv.turns and not system:
            print("the conversation is empty")
            return
        lines = [f"**System:** {system}\n"] if system else []
        for number, turn in enumerate(conv.turns, 1):
            lines.append(f"**[{number}] You:**\n\n{turn.user.text}\n")
            lines.append(f"**[{number}] Assistant:**\n\n{turn.reply.text}\n")
            lines.append(f"<sub>{footer_text(turn.reply)}</sub>\n\n---\n")
        text = "\n".join(lines)
        display({"text/markdown": text, "text/plain": text}, raw=True)
