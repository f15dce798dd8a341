"""`%%chat` and `%chat`: argument parsing and display, nothing more.

The traits (settings) come from `ChatSettings`; the work of a turn is done by
`ChatSession`, imported on first use so `%load_ext nbchat` stays cheap.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument
from traitlets import CaselessStrEnum, default

from .commands import ConversationCommands
from .config import ChatSettings
from .contextmagics import ContextCommands
from .errors import NbChatError, OptionError
from .login import LoginCommand
from .magicargs import check_out, lazy_magic_arguments, magic_parser, switch
from .memory_commands import MemoryCommands
from .multimagics import MultiModelCommands
from .params import RequestDefaults
from .toolmagics import ToolCommands

if TYPE_CHECKING:
    from .session import ChatSession

__all__ = ["ChatMagics"]

LINE_HELP = """\
%%chat [flags]                 the cell body is your message; the reply streams below
%chat QUESTION                 a one-line question (sent as written; flags first if any)
%chat list                     the conversations, with turns, tokens and cost
%chat reset [NAME]             forget a conversation (default: 'default'; its system prompt stays)
%chat history [NAME]           show a conversation so far
%chat panel                    a chat panel on the same conversation (widgets)
%%chat -m A,B                  compare models side by side; %chat pick N keeps reply N
%chat map ITEMS TEMPLATE       one request per item, concurrently (nbchat.map)
%%chat --with df,x             attach variables (summaries), --error the last error, --cells N
%chat fix                      explain the last error; the corrected cell goes in a new cell
%%chat --tools f,g             the model may call these functions (each call asks you first)
%%chat --logprobs, -n 3        token probabilities; several choices side by side; --effort LEVEL
%chat models                   the models the server offers (GET /models)
%chat resume                   after a kernel restart: restore the notebook's conversations
%chat log [N]                  the notebook's last N exchanges from the record
%chat export PATH [NAME]       write a conversation to PATH.md or PATH.json
%chat usage                    tokens and estimated cost: this kernel, this notebook
%chat login                    enter the API key (hidden; kept in memory only)
%chat help                     this help; %%chat? lists every flag
%config ChatMagics             every setting (the key is shown masked)
"""

_QUESTION = r"^(\s*)%chat\s+(.*\w.*\?)\s*$"  # compiled on first use, by re's cache


def keep_questions(lines: list[str]) -> list[str]:
    """Let `%chat What is a closure?` ask its question.

    IPython reads any line ending in `name?` as a help request for `name`
    (here: `closure`), before a magic sees it. This input transformer turns
    such `%chat` lines into the call IPython would otherwise make.
    """
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("%%"):  # a cell magic's body is not code: leave it alone
        return lines
    out = []
    for line in lines:
        match = re.match(_QUESTION, line)
        if match:
            indent, question = match.groups()
            line = f"{indent}get_ipython().run_line_magic('chat', {question!r})\n"
        out.append(line)
    return out


@magics_class
class ChatMagics(
    Magics,
    ChatSettings,
    RequestDefaults,
    ConversationCommands,
    MemoryCommands,
    LoginCommand,
    MultiModelCommands,
    ContextCommands,
    ToolCommands,
):
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
        cleanup = getattr(shell, "input_transformers_cleanup", None)
        if cleanup is not None and keep_questions not in cleanup:
            cleanup.append(keep_questions)
        self._watch_errors()  # --error and %chat fix need the cells that failed

    @property
    def session(self) -> ChatSession:
        if self._session is None:
            from .session import ChatSession

            self._session = ChatSession()
            self._session.recorder = self._make_recorder()
        return self._session

    @property
    def _user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns  # type: ignore[union-attr,no-any-return]

    def _live(self) -> bool:
        if self.display_mode != "auto":
            return bool(self.display_mode == "live")
        return getattr(self.shell, "kernel", None) is not None

    # -- the magic ------------------------------------------------------------------

    @lazy_magic_arguments()
    @argument("-m", "--model", help="model for this cell (default: ChatMagics.model)")
    @argument(
        "-s", "--system", help="set the conversation's system prompt (a string, or a variable name)"
    )
    @argument(
        "-c",
        "--conversation",
        metavar="NAME",
        help="the named conversation to continue (default: default)",
    )
    @argument(
        "-o",
        "--out",
        metavar="NAME",
        help="store the reply object (with --dry-run: the request body) here",
    )
    @argument("-t", "--temperature", metavar="T", help="sampling temperature, 0 to 2")
    @argument("--top-p", metavar="P", help="nucleus sampling, 0 to 1")
    @argument("--frequency-penalty", metavar="X", help="frequency penalty, -2 to 2")
    @argument("--presence-penalty", metavar="X", help="presence penalty, -2 to 2")
    @argument(
        "--max-tokens",
        metavar="N",
        help="reply length limit (max_completion_tokens to OpenAI, max_tokens elsewhere; "
        "ChatMagics.max_tokens_field)",
    )
    @argument("--seed", metavar="N", help="integer seed for best-effort determinism")
    @argument(
        "--stop", action="append", metavar="TEXT", help=r"stop sequence, up to 4 (\n for newline)"
    )
    @switch("--store", True, help="ask OpenAI to store the completion")
    @switch("--no-store", False, help="ask OpenAI not to store it")
    @argument("--user", metavar="ID", help="end-user identifier")
    @switch("--stream", True, help="stream the reply (the default)")
    @switch("--no-stream", False, help="one request; the reply is shown when complete")
    @argument(
        "--effort",
        dest="reasoning_effort",
        metavar="LEVEL",
        help="reasoning effort: none, minimal, low, medium, high, xhigh, max",
    )
    @argument(
        "--logprobs",
        nargs="?",
        const="5",
        metavar="K",
        help="show each token's probability and its K likeliest alternatives (default 5)",
    )
    @argument("-n", dest="n", metavar="K", help="K choices side by side; %%chat pick N keeps one")
    @argument("--predict", metavar="NAME", help="a string variable sent as the predicted output")
    @argument("--params", metavar="JSON", help="extra request fields: a JSON object or a dict name")
    @argument("--json", action="store_true", help="ask for a JSON object; show it as JSON")
    @argument("--schema", metavar="NAME", help="JSON Schema dict or pydantic model class to fill")
    @argument(
        "--image",
        action="append",
        metavar="X",
        help="path, http(s) URL, or a numpy array / PIL image / figure variable",
    )
    @argument(
        "--audio",
        action="append",
        metavar="X",
        help="wav or mp3 file, bytes, or an IPython Audio variable",
    )
    @argument(
        "-i",
        "--interpolate",
        action="store_true",
        help="expand {name} and {expression} from the namespace",
    )
    @argument(
        "-w",
        "--with",
        dest="with_",
        action="append",
        metavar="NAMES",
        help="attach variables as summaries: df,x (repeatable; attribute paths like df.columns)",
    )
    @argument("--error", action="store_true", help="attach the last error: traceback and its cell")
    @argument("--cells", metavar="N", help="attach the code of the last N cells run")
    @argument(
        "-T",
        "--tools",
        action="append",
        metavar="NAMES",
        help="offer these functions to the model: f,g (repeatable); each call asks first",
    )
    @argument("--dry-run", action="store_true", help="show the request (key masked); send nothing")
    @argument("--compare", metavar="MODELS", help="models side by side, e.g. gpt-4o,llama3")
    @argument("words", nargs="*", help="%%chat COMMAND or a one-line question")
    @no_var_expand
    @line_cell_magic
    def chat(self, line: str = "", cell: str | None = None) -> Any:
        """Send the cell to the chat model and stream the reply as Markdown.

        The reply ends with a usage footer: tokens, time to first token,
        latency, tokens per second and an estimated cost. Later cells continue
        the conversation; `%chat reset` starts over. `%chat help` lists the
        line commands. The cell body is sent exactly as written; with -i,
        `{name}` and `{expression}` are evaluated in the notebook's namespace
        (`{{` and `}}` stay literal braces). Every flag's value is checked
        before anything is sent; defaults can be set as ChatMagics traits
        (`%config ChatMagics`).
        """
        if cell is None and not line.lstrip().startswith("-"):
            return self._line_command(line)
        args = self._parse(line)
        if cell is None:
            return self._line_command(" ".join(args.words), args)
        if args.words:
            raise OptionError(
                f"unexpected words after %%chat: {' '.join(args.words)!r}",
                hint="options are listed by %%chat?",
            )
        return self._send(cell, args)

    def _parse(self, line: str) -> Any:
        """The flags of `line`, split as a shell would (quotes removed); OptionError if bad."""
        try:
            args = magic_parser(ChatMagics.chat).parse_args(shlex.split(line))
        except ValueError as exc:  # shlex: an unbalanced quote
            raise OptionError(f"cannot read the flags: {exc}", hint="check the quotes") from None
        except UsageError as exc:
            raise OptionError(str(exc).strip(), hint=self._suggest(str(exc))) from None
        check_out(args.out)
        return args

    def _suggest(self, message: str) -> str:
        """'did you mean --temperature?' for a misspelt flag, else where flags are listed."""
        import difflib

        known = re.findall(r"--[\w-]+", magic_parser(ChatMagics.chat).format_help())
        for word in re.findall(r"--[\w-]+", message):
            close = difflib.get_close_matches(word, known, n=1, cutoff=0.75)
            if close and word not in known:
                return f"did you mean {close[0]}? (%%chat? lists every flag)"
        return "%%chat? lists every flag"

    def _send(self, prompt: str, args: Any) -> None:
        from .choices import writing_request
        from .render import LiveMarkdown
        from .request import cell_request, preview

        prompt = prompt.rstrip("\n")  # IPython adds the cell's last newline
        if not prompt.strip():
            raise OptionError("the message is empty", hint="write your message in the cell body")
        request = cell_request(args, prompt, self._user_ns, self.request_defaults(), self.stream)
        request = writing_request(args, request, self._user_ns)  # nbchat.choices
        session = self.session
        settings = self.settings()
        request, receipt = self._attach(args, request, settings)  # nbchat.contextmagics
        runner = self._tool_runner(args, request.model or settings.model)  # nbchat.toolmagics
        if args.dry_run:
            text, body = preview(session, settings, request, runner)
            if receipt is not None:
                print(receipt.dry_run())
            print(text)
            if args.out:
                self._user_ns[args.out] = body
            return
        models = self._compare_models(args)  # several models: nbchat.multimagics
        if request.params.get("n", 1) > 1:
            if models:
                raise OptionError("-n K takes one model", hint="compare models without -n")
            from .choices import choices_cell

            return choices_cell(self, request, args, settings, receipt)
        if models:
            header = receipt.bundle() if receipt is not None else None
            return self._compare(request, models, args, settings, header)
        if receipt is not None:
            view: Any = receipt.view(
                interval=settings.update_interval,
                live=self._live(),
                remote_images=settings.load_remote_images,
            )
        else:
            view = LiveMarkdown(
                interval=settings.update_interval,
                live=self._live(),
                remote_images=settings.load_remote_images,
            )
        if request.json is not None:
            from .structured import JsonView

            view = JsonView(view, settings.update_interval)
        if runner is not None:
            from .toolcards import ToolCards

            runner.cards = ToolCards(view)
        conv = session.conversation(request.conversation)
        turns, system = len(conv), conv.system_prompt
        if request.system is not None:
            conv.system_prompt = request.system
        try:
            reply = session.run(
                request.message,
                settings,
                view,
                conversation=request.conversation,
                model=request.model,
                params=request.params,
                stream=request.stream,
                cell_id=self._cell_id(),
                tools=runner,
            )
        except NbChatError as error:
            if len(conv) == turns:  # nothing was added: leave the system prompt as it was
                conv.system_prompt = system
            partial = getattr(error, "partial", None)
            if args.out and partial is not None:
                self._user_ns[args.out] = partial
            raise
        if args.out:
            self._user_ns[args.out] = reply
        if request.json is not None:
            reply = reply.with_(parsed=request.json.parse(reply))
            if args.out:
                self._user_ns[args.out] = reply

    # -- %chat commands ---------------------------------------------------------------

    def _line_command(self, line: str, args: Any = None) -> Any:
        """`%chat WORD ...` runs the command `_cmd_WORD` if there is one, else asks the line.

        Commands are methods named `_cmd_<name>(rest)`; feature mixins add their own.
        A question without flags is sent exactly as typed (quotes, `$`, braces).
        """
        words = line.split()
        self._line_args = args  # flags given before the command word (%chat -o x map ...)
        if not words:
            return self._cmd_help([])
        command = getattr(self, f"_cmd_{words[0]}", None)
        if command is not None:
            self._refuse_tools(args, f"%chat {words[0]}")
            return command(words[1:])
        return self._send(line.strip(), args if args is not None else self._parse(""))

    def _cmd_help(self, rest: list[str]) -> None:
        print(LINE_HELP)

    def _cmd_panel(self, rest: list[str]) -> None:
        if rest:
            raise OptionError(f"%chat panel takes no arguments, not {' '.join(rest)!r}")
        from IPython.display import display

        from .widget import ChatPanel  # ipywidgets is imported here, not at %load_ext

        display(ChatPanel(self))
