"""`%chat resume`, `%chat log`, `%chat export` and `%chat usage`, and the record's settings.

A mixin of ChatMagics: the traits become `c.ChatMagics.record` and
`c.ChatMagics.history_path`, and each `_cmd_<name>` is a `%chat <name>`
command. The record itself (sqlite3) is opened on first use, never at
`%load_ext`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Unicode, default
from traitlets.config import Configurable

from .errors import OptionError
from .identity import cell_id, execute_request, notebook_identity

if TYPE_CHECKING:
    from .record import Exchange, Record, Totals
    from .recorder import Recorder
    from .session import ChatSession

__all__ = ["MemoryCommands", "log_table", "usage_line"]


def _usd(cost: float) -> str:
    return f"${cost:.6f}" if cost < 0.01 else f"${cost:.4f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


class MemoryCommands(Configurable):
    """The exchange record's settings and `%chat` commands (mixed into ChatMagics)."""

    record = Bool(
        True,
        help="Record every exchange (request as sent, reply, usage, timings, estimated cost) "
        "in the SQLite file at history_path; the API key is never stored. False: nothing is "
        "written.",
    ).tag(config=True)
    history_path = Unicode(
        help="The exchange record, an SQLite file shared by all kernels. Default: "
        "history.sqlite in the user's data directory (~/.local/share/nbchat on Linux, "
        "~/Library/Application Support/nbchat on macOS, %LOCALAPPDATA%\\nbchat on Windows). "
        "Falls back to $NBCHAT_HISTORY_PATH."
    ).tag(config=True)

    @default("history_path")
    def _default_history_path(self) -> str:
        from .record import default_history_path

        return default_history_path()

    shell: Any
    _recorder: Recorder | None = None
    _cell_request: str | None = None  # execute request whose cell id was already used

    if TYPE_CHECKING:

        @property
        def session(self) -> ChatSession: ...
        def settings(self) -> Any: ...

    # -- hooks used by ChatMagics -------------------------------------------------------------

    def _make_recorder(self) -> Recorder:
        """The recorder of this kernel's ChatSession; reads the traits at every exchange."""
        from .recorder import Recorder

        self._recorder = Recorder(
            path=lambda: self.history_path,
            enabled=lambda: bool(self.record),
            notebook=lambda: notebook_identity(self.shell),
        )
        return self._recorder

    def _record_reset(self, conversation: str) -> None:
        """`%chat reset` reaches the record: resume restores what the conversation holds now."""
        if self._recorder is not None:
            self._recorder.forget(conversation)

    def _cell_id(self) -> str | None:
        """The running cell's id, for the first turn of this execution (later ones append)."""
        request = execute_request(self.shell)
        cell = cell_id(request)
        if cell is None or request is None:
            return None
        msg_id = (request.get("header") or {}).get("msg_id")
        if msg_id is not None and msg_id == self._cell_request:
            return None
        self._cell_request = msg_id
        return cell

    def _open_record(
        self, command: str = "", rest: tuple[str, ...] = ()
    ) -> tuple[Recorder, Record] | None:
        """This kernel's recorder and its open record; None (and says why) if there is none."""
        if rest:
            raise OptionError(f"%chat {command} takes no arguments, not {' '.join(rest)!r}")
        self.session  # noqa: B018 -- creates the session and its recorder
        recorder = self._recorder
        if recorder is None:
            return None
        path = Path(self.history_path).expanduser()
        if not path.exists():
            print(f"the record is empty: nothing has been recorded at {path} yet")
            return None
        record = recorder.open()
        recorder.flush()  # says why, if it could not be opened
        return (recorder, record) if record is not None else None

    # -- the commands -------------------------------------------------------------------------

    def _cmd_resume(self, rest: list[str]) -> None:
        opened = self._open_record("resume", tuple(rest))
        if opened is None:
            return
        recorder, record = opened
        restored, abandoned = recorder.resume(self.session.conversation)
        total = sum(restored.values())
        if not total:
            print(f"nothing to resume: no earlier turns of {recorder.notebook()} in {record.path}")
        elif len(restored) == 1:
            name = next(iter(restored))
            print(f"restored {_plural(total, 'turn')} of conversation {name!r} from the record")
        else:
            parts = ", ".join(f"{name!r}: {n}" for name, n in restored.items())
            print(f"restored {_plural(total, 'turn')} in {len(restored)} conversations ({parts})")
        if abandoned:
            print(
                f"{_plural(abandoned, 'unfinished exchange')} of an earlier kernel "
                f"{'is' if abandoned == 1 else 'are'} in the record as incomplete (%chat log)"
            )

    def _cmd_log(self, rest: list[str]) -> None:
        if len(rest) > 1 or (rest and not (rest[0].isdigit() and int(rest[0]) > 0)):
            raise OptionError(
                f"%chat log takes one optional count, not {' '.join(rest)!r}",
                hint="e.g. %chat log 20",
            )
        opened = self._open_record()
        if opened is None:
            return
        recorder, record = opened
        rows = record.recent(recorder.notebook(), int(rest[0]) if rest else 10)
        if not rows:
            print(f"no exchanges of {recorder.notebook()} in {record.path}")
            return
        from IPython.display import display

        markdown, plain = log_table(rows)
        display({"text/markdown": markdown, "text/plain": plain}, raw=True)  # type: ignore[no-untyped-call]
        estimated = sum(r.total_tokens is None and r.estimated_tokens is not None for r in rows)
        if estimated:  # what the ≈ in the tokens column means
            print(
                f"≈: {_plural(estimated, 'exchange')} without usage from the server; their "
                "completion tokens are estimated by nbchat"
            )

    def _cmd_export(self, rest: list[str]) -> None:
        if len(rest) not in (1, 2):
            raise OptionError(
                "%chat export takes a path and optionally a conversation name",
                hint="e.g. %chat export chat.md, or %chat export notes.json notes",
            )
        from .export import export
        from .recorder import public_url

        session = self.session
        if len(rest) == 2 and rest[1] not in session.conversations:
            raise OptionError(f"there is no conversation named {rest[1]!r}")
        conv = session.conversation(rest[1] if len(rest) == 2 else None)
        if not conv.turns:
            raise OptionError(f"the conversation {conv.name!r} is empty: nothing to export")
        settings = self.settings()
        path = export(
            rest[0],
            conv,
            notebook=notebook_identity(self.shell),
            base_url=public_url(settings.base_url),
            system=conv.system_prompt or settings.system_prompt,
            secret=settings.api_key,
        )
        print(f"exported {_plural(len(conv.turns), 'turn')} of {conv.name!r} to {path}")

    def _cmd_usage(self, rest: list[str]) -> None:
        opened = self._open_record("usage", tuple(rest))
        if opened is None:
            return
        recorder, record = opened
        notebook = recorder.notebook()
        kernel = record.totals(notebook, recorder.session)
        every = record.totals(notebook)
        print(f"this kernel:   {usage_line(kernel)}")
        print(f"this notebook: {usage_line(every)}")
        note = "costs are estimates from list prices (ChatMagics.prices)"
        if every.unpriced:
            note += f"; {_plural(every.unpriced, 'exchange')} of unpriced models not counted"
        print(note)
        if not self.record:
            print("recording is off (ChatMagics.record = False): later exchanges are not counted")


def usage_line(totals: Totals) -> str:
    """e.g. `3 exchanges (1 by nbchat.map) · 120 prompt + 400 completion = 520 tokens · $0.0003`."""
    mapped = f" ({totals.mapped} by nbchat.map)" if totals.mapped else ""
    line = (
        f"{_plural(totals.exchanges, 'exchange')}{mapped} · {totals.prompt_tokens} prompt + "
        f"{totals.completion_tokens} completion = {totals.total_tokens} tokens"
    )
    if totals.cost is not None:
        line += f" · {_usd(totals.cost)}"
    if totals.estimated:
        line += (
            f" ({totals.without_usage} without usage; ≈{totals.estimated_tokens} completion "
            f"tokens estimated for {totals.estimated} of them, not counted)"
        )
    elif totals.without_usage:
        line += f" ({totals.without_usage} without usage)"
    return line


def _log_tokens(row: Exchange) -> str:
    if row.total_tokens is not None:
        return str(row.total_tokens)
    return "" if row.estimated_tokens is None else f"≈{row.estimated_tokens}"


def log_table(rows: list[Exchange]) -> tuple[str, str]:
    """The exchanges as a Markdown table and as aligned plain text."""
    head = ["#", "time", "model", "status", "tokens", "first token", "latency", "cost", "prompt"]
    table = []
    for row in rows:
        prompt = " ".join(row.user.text.split())
        table.append(
            [
                str(row.id),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.started)),
                row.reply_model or row.model or "",
                row.status,
                _log_tokens(row),
                "" if row.ttft is None else f"{row.ttft:.2f} s",
                "" if row.latency is None else f"{row.latency:.2f} s",
                "" if row.cost is None else _usd(row.cost),
                prompt if len(prompt) <= 40 else prompt[:39] + "…",
            ]
        )
    if len({row.conversation for row in rows}) > 1:  # say which conversation each is in
        head.insert(2, "conversation")
        for line, row in zip(table, rows, strict=True):
            line.insert(2, row.conversation)
    from .tables import table as bundle

    shown = bundle(head, table)
    return shown["text/markdown"], shown["text/plain"]
