"""Between a kernel's ChatSession and the record: exchanges in, conversations back out.

`Recorder` is the session's `recorder`: it writes a row when a request starts
and completes it when the exchange ends, for the notebook this kernel runs.
A record that cannot be opened or written never stops a chat: the user is told
once, and the chat goes on unrecorded. `resume` rebuilds the notebook's
conversations as earlier kernels left them: `keep` (a picked comparison reply)
and `forget` (a reset) keep the record's idea of a conversation in step with
the kernel's. `map_cache` gives nbchat.map its cache in the same file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .config import Settings
from .conversation import Conversation, Turn
from .errors import Interrupted, NbChatError, StreamError
from .record import Record
from .types import Message, Reply, Secret

if TYPE_CHECKING:
    from .mapcache import RecordCache
    from .results import MemoryCache

__all__ = ["Recorder", "outcome", "public_url"]


def public_url(url: str) -> str:
    """`url` without any user:password@ part, fit to be stored or exported."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def outcome(
    reply: Reply | None, error: BaseException | None
) -> tuple[str, Reply | None, str | None]:
    """(status, reply or partial reply, error message) of how an exchange ended."""
    if error is None:
        return "complete", reply, None
    partial = getattr(error, "partial", None)
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
        return "interrupted", partial, None
    if isinstance(error, StreamError):
        return "incomplete", partial, error.message
    if isinstance(error, NbChatError):
        return "failed", None, error.message
    return "failed", None, f"{type(error).__name__}: {error}"


class Recorder:
    """Records the exchanges of one kernel session (one `session` id per Recorder)."""

    def __init__(
        self,
        *,
        path: Callable[[], str],
        enabled: Callable[[], bool],
        notebook: Callable[[], str],
        notice: Callable[[str], None] = print,
    ) -> None:
        self.session = uuid.uuid4().hex
        self._path = path
        self._enabled = enabled
        self.notebook = notebook
        self.notice = notice
        self._record: Record | None = None
        self._warned: set[str] = set()
        self._pending: list[str] = []
        self._secret: Secret | None = None
        self._notebook_id: str | None = None
        self.told = False  # the user heard about resumable turns (or resumed)

    def open(self) -> Record | None:
        """The record at the configured path (reopened when the path changes), or None."""
        import sqlite3

        path = Path(os.path.expanduser(self._path()))
        if self._record is not None:
            if self._record.path == path:
                return self._record
            self._record.close()
            self._record = None
        try:
            self._record = Record(path)
        except (OSError, sqlite3.Error) as exc:
            self._warn(path, exc)
        return self._record

    def _warn(self, path: Path, exc: Exception) -> None:
        """Say once per path that the record failed (at the end of the turn, so it stays)."""
        if str(path) not in self._warned:
            self._warned.add(str(path))
            self._pending.append(
                f"nbchat: cannot keep the record at {path} ({exc}); chats are not recorded"
            )

    def flush(self) -> None:
        """Print the notes held back while a reply was shown."""
        pending, self._pending = self._pending, []
        for line in pending:
            self.notice(line)

    def _text(self, value: Any) -> str:
        """`value` as stored: JSON unless a string, with the key (if ever present) masked."""
        text = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )
        return self._secret.redact(text) if self._secret else text

    # -- the session's recorder -----------------------------------------------------------

    def start(
        self,
        conversation: Conversation,
        user: Message,
        payload: dict[str, Any],
        settings: Settings,
        cell_id: str | None,
    ) -> int | None:
        import sqlite3

        if not self._enabled():
            return None
        record = self.open()
        if record is None:
            return None
        self._secret = settings.api_key
        self._notebook_id = self.notebook()
        context = [t.record_id for t in conversation.turns if t.record_id is not None]
        try:
            return record.start(
                notebook=self._notebook_id,
                session=self.session,
                conversation=conversation.name,
                cell_id=cell_id,
                base_url=public_url(settings.base_url),
                model=payload.get("model"),
                system_prompt=conversation.system_prompt,
                context=json.dumps(context),
                prompt=self._text(user.to_dict()),
                request=self._text(payload),
            )
        except sqlite3.Error as exc:
            self._warn(record.path, exc)
            return None

    def finish(
        self, row: int | None, reply: Reply | None, error: BaseException | None, kept: bool
    ) -> None:
        import sqlite3

        record = self._record
        if row is None or record is None:
            self.flush()
            return
        status, reply, message = outcome(reply, error)
        values: dict[str, Any] = {"status": status, "kept": int(kept)}
        values["error"] = self._text(message) if message else None
        if reply is not None:
            values.update(self._reply_values(reply))
        try:
            record.finish(row, **values)
            if not self.told and self._notebook_id is not None:
                self.told = True
                self._first_exchange(record, self._notebook_id)
        except sqlite3.Error as exc:
            self._warn(record.path, exc)
        self.flush()

    def keep(self, row: int | None) -> None:
        """Exchange `row` joined its conversation after it ended (a picked comparison reply)."""
        if row is not None:
            self._update(lambda record: record.keep(row))
        self.flush()

    def forget(self, conversation: str) -> None:
        """`%chat reset`: the conversation's recorded turns stop counting for resume."""
        if not self._enabled() or not Path(os.path.expanduser(self._path())).exists():
            return  # nothing recorded, and a reset is no reason to create the file
        if self.open() is not None:
            self._update(lambda record: record.forget(self.notebook(), conversation))
        self.flush()

    def _update(self, change: Callable[[Record], Any]) -> None:
        """`change` the open record; a failure is said once (at the next flush)."""
        import sqlite3

        record = self._record
        if record is None:
            return
        try:
            change(record)
        except sqlite3.Error as exc:
            self._warn(record.path, exc)

    def map_cache(self, secret: Secret | None, fallback: MemoryCache) -> RecordCache | None:
        """nbchat.map's cache in the record (None when recording is off or it cannot open)."""
        from .mapcache import RecordCache

        record = self.open() if self._enabled() else None
        self.flush()  # says why, if it could not be opened
        if record is None:
            return None
        return RecordCache(
            record,
            notebook=self.notebook(),
            session=self.session,
            fallback=fallback,
            secret=secret,
            notice=self.notice,
        )

    def _reply_values(self, reply: Reply) -> dict[str, Any]:
        usage = reply.usage
        values: dict[str, Any] = {
            "reply": self._text(reply.text),
            "reply_model": reply.model,
            "finish_reason": reply.finish_reason,
            "ttft": reply.ttft,
            "latency": reply.latency,
            "system_fingerprint": reply.system_fingerprint,
            "cost": reply.cost,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "estimated_tokens": None if usage else reply.estimated_tokens,
            "reasoning": self._text(reply.reasoning) if reply.reasoning else None,
            "reasoning_time": reply.reasoning_time,
            "answer_ttft": reply.answer_ttft,
        }
        if reply.request:  # the body exactly as the client sent it
            values["request"] = self._text(reply.request)
        return values

    def _first_exchange(self, record: Record, notebook: str) -> None:
        """After this kernel's first exchange: close what dead kernels left streaming, and
        say if earlier kernels left turns to resume."""
        record.abandon(notebook, self.session)
        turns = sum(len(rows) for rows in record.conversations(notebook, self.session).values())
        if turns:
            self.notice(
                f"nbchat: an earlier kernel left {turns} turn{'s' * (turns != 1)} of this "
                "notebook's conversation in the record; %chat resume restores them"
            )

    # -- resume ---------------------------------------------------------------------------

    def resume(self, conversation: Callable[[str], Conversation]) -> tuple[dict[str, int], int]:
        """Restore each conversation of this notebook as earlier kernels left it.

        Turns this kernel already made are kept after the restored ones (a turn
        from a re-run cell replaces that cell's restored turn). Returns the turns
        restored per conversation and how many exchanges earlier kernels left
        unfinished (now marked `incomplete`).
        """
        record = self.open()
        if record is None:
            return {}, 0
        notebook = self.notebook()
        self.told = True
        abandoned = record.abandon(notebook, self.session)
        restored: dict[str, int] = {}
        for name, rows in record.conversations(notebook, self.session).items():
            conv = conversation(name)
            ids = {row.id for row in rows}
            current = [turn for turn in conv.turns if turn.record_id not in ids]
            conv.turns = [Turn(r.user, r.to_reply(), r.cell_id, r.id) for r in rows]
            for turn in current:
                conv.rewind(turn.cell_id)
                conv.turns.append(turn)
            if conv.system_prompt is None and rows:
                conv.system_prompt = rows[-1].system_prompt
            restored[name] = len(rows)
        return restored, abandoned
