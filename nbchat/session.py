"""One turn of a conversation: settings + client + conversation + view.

Shared by the `%%chat` magic and the panel, so both follow the same rules:
a completed reply becomes a turn; an interrupted one is kept as a turn marked
`finish_reason="interrupted"`; any other failure leaves the conversation as it
was and re-raises a one-line NbChatError with the partial reply attached.
A turn sent again from the same cell replaces that cell's earlier turn, and an
optional `recorder` (nbchat.record) keeps every exchange, whatever its outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from .client import ChatClient, ChatStream
from .config import Settings, with_limit_field
from .conversation import Conversation, Turn
from .errors import Interrupted, NbChatError, OptionError, StreamError
from .pricing import estimate_cost
from .types import Message, Reply, ToolCall, Usage

if TYPE_CHECKING:
    from .tools import ToolRunner

__all__ = ["ChatSession", "Recorder", "TurnOptions", "View"]


class View(Protocol):
    """Where a streaming reply is shown (a cell output, the panel's transcript)."""

    def status(self, text: str) -> None: ...
    def feed(self, delta: str) -> None: ...
    def finish(self, text: str, footer: Reply | None = None) -> None: ...


class Recorder(Protocol):
    """Keeps a record of exchanges (nbchat.recorder.Recorder); its methods never raise.

    `start` returns the new row (None when not recorded); `finish` is called after
    every exchange, after the reply is shown, so it may print notes that stay visible;
    `keep` marks a row kept after it ended (a picked comparison reply).
    """

    def start(
        self,
        conversation: Conversation,
        user: Message,
        payload: dict[str, Any],
        settings: Settings,
        cell_id: str | None,
    ) -> int | None: ...
    def finish(
        self, row: int | None, reply: Reply | None, error: BaseException | None, kept: bool
    ) -> None: ...
    def keep(self, row: int | None) -> None: ...


@dataclass(frozen=True)
class TurnOptions:
    """How one turn is sent: the per-cell choices on top of the settings."""

    model: str | None = None
    params: dict[str, Any] | None = None
    stream: bool = True
    cell_id: str | None = None
    tools: ToolRunner | None = None  # functions the model may call (nbchat.tools)


@dataclass
class _Running:
    """An exchange in progress in one conversation (the panel runs them in a thread)."""

    stop: threading.Event = field(default_factory=threading.Event)
    chat: ChatStream | None = None


class ChatSession:
    """Conversations of one kernel and the HTTP client they share.

    Thread-safe where the panel needs it: replies may stream in several
    conversations at once (a cell, a panel's worker thread), one per conversation.
    """

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {"default": Conversation("default")}
        self.active = "default"
        self._client: ChatClient | None = None
        self._client_key: dict[str, Any] | None = None
        self.last_reply: Reply | None = None
        self._running: dict[str, _Running] = {}  # by conversation name
        self._lock = threading.Lock()
        self._local = threading.local()  # `row`: the record row of this thread's turn
        self.recorder: Recorder | None = None
        self.notice: Callable[[str], None] = print  # one-line notes after a turn

    @property
    def _row(self) -> int | None:
        return getattr(self._local, "row", None)

    @_row.setter
    def _row(self, row: int | None) -> None:
        self._local.row = row

    def stop(self, conversation: str | None = None) -> bool:
        """Stop the reply in `conversation` (every one when None), from any thread.

        For the panel's Stop button: the partial reply is kept as an interrupted
        turn, as on a kernel interrupt. Returns False when nothing was running.
        """
        with self._lock:
            running = [r for name, r in self._running.items() if conversation in (None, name)]
        for exchange in running:
            exchange.stop.set()
            if exchange.chat is not None:
                exchange.chat.close()
        return bool(running)

    def streaming(self, conversation: str | None = None) -> bool:
        """Whether a reply is on its way in `conversation` (the active one by default)."""
        return (conversation or self.active) in self._running

    def conversation(self, name: str | None = None) -> Conversation:
        """The named conversation (created on first use); the active one by default."""
        name = name or self.active
        if name not in self.conversations:
            self.conversations[name] = Conversation(name)
        return self.conversations[name]

    def client(self, settings: Settings) -> ChatClient:
        """The shared client; rebuilt only when connection settings changed (thread-safe)."""
        with self._lock:
            return self._shared_client(settings)

    def _shared_client(self, settings: Settings) -> ChatClient:
        if self._client is None or self._client_key != settings.connection:
            if self._client is not None:
                self._client.close()
            self._client = ChatClient(**settings.connection)
            self._client_key = settings.connection
            self._client.http  # noqa: B018 -- made here, under the lock: threads share it
        return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def build_payload(
        self,
        prompt: Message,
        settings: Settings,
        *,
        conversation: Conversation,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        stream: bool = True,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model or settings.model,
            "messages": conversation.messages(
                prompt, system=conversation.system_prompt or settings.system_prompt
            ),
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        if params:
            payload.update(with_limit_field(params, settings.limit_field))
        return payload

    def run(
        self,
        prompt: str | Message,
        settings: Settings,
        view: View,
        *,
        conversation: str | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        stream: bool = True,
        cell_id: str | None = None,
        stop: threading.Event | None = None,
        tools: ToolRunner | None = None,
    ) -> Reply:
        """Send one turn, show it in `view`, add it to the conversation and record it.

        With a `cell_id` that already made a turn, that turn and the later ones are
        set aside first; they are dropped once the new reply is kept, and put back
        if it fails, so a failure never changes the conversation. Setting `stop`
        (the panel's own event) stops the turn like `stop(conversation)`, even
        before it is registered; if set before the request goes out, none is sent.
        """
        conv = self.conversation(conversation)
        with self._lock:
            if conv.name in self._running:
                raise OptionError(
                    f"a reply is still streaming in conversation {conv.name!r}",
                    hint="wait for it, or stop it (the panel's Stop button)",
                )
            self._running[conv.name] = _Running(stop=stop or threading.Event())
        try:
            options = TurnOptions(
                model=model, params=params, stream=stream, cell_id=cell_id, tools=tools
            )
            return self._exchange(prompt, settings, view, conv, options)
        finally:
            with self._lock:
                del self._running[conv.name]

    def _exchange(
        self,
        prompt: str | Message,
        settings: Settings,
        view: View,
        conv: Conversation,
        options: TurnOptions,
    ) -> Reply:
        removed = conv.rewind(options.cell_id)
        size = len(conv.turns)
        self._row = None
        try:
            reply = self._turn(prompt, settings, view, conv, options)
        except BaseException as error:
            kept = len(conv.turns) > size
            if not kept:
                conv.turns.extend(removed)
            self._finished(conv, kept, removed, error=error)
            raise
        self._finished(conv, True, removed, reply=reply)
        return reply

    def _record_start(
        self,
        conv: Conversation,
        user: Message,
        payload: dict[str, Any],
        settings: Settings,
        cell_id: str | None,
    ) -> None:
        """Record that a request is being sent (so even a killed kernel leaves a trace)."""
        if self.recorder is not None:
            self._row = self.recorder.start(conv, user, payload, settings, cell_id)

    def _finished(
        self,
        conv: Conversation,
        kept: bool,
        removed: list[Turn],
        *,
        reply: Reply | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record how the exchange ended and say how many later turns a re-run dropped."""
        row, self._row = self._row, None
        if kept and row is not None:
            conv.turns[-1] = replace(conv.turns[-1], record_id=row)
        if self.recorder is not None:
            self.recorder.finish(row, reply, error, kept)
        if kept and len(removed) > 1:
            later = len(removed) - 1
            self.notice(f"re-ran an earlier turn: {later} later turn{'s' * (later != 1)} dropped")

    def _turn(
        self,
        prompt: str | Message,
        settings: Settings,
        view: View,
        conv: Conversation,
        options: TurnOptions,
    ) -> Reply:
        """One exchange as sent and shown; `run` adds re-run and recording around it.

        With `options.tools`, each reply that calls functions is answered with their
        results and sent again (a round), until a reply calls none (see _rounds).
        """
        settings.require_key()
        user = prompt if isinstance(prompt, Message) else Message("user", prompt)
        payload = self.build_payload(
            user,
            settings,
            conversation=conv,
            model=options.model,
            params=options.params,
            stream=options.stream,
        )
        if options.tools is not None:
            payload["tools"] = options.tools.schemas()
        self._record_start(conv, user, payload, settings, options.cell_id)
        reply = self._request(payload, settings, view, conv, user, options, ())
        notes: list[str] = []  # shown below the reply (finish clears the cell first)
        if options.tools is not None and reply.tool_calls:
            reply = self._rounds(reply, payload, settings, view, conv, user, options, notes)
        _details(view, reply)
        view.finish(reply.text, reply if settings.show_usage else None)
        for note in notes:  # the runner's own channel: a cell prints, the panel says
            options.tools.notice(note) if options.tools is not None else self.notice(note)
        self.last_reply = reply
        conv.add(user, reply, options.cell_id)
        return reply

    def _rounds(
        self,
        reply: Reply,
        payload: dict[str, Any],
        settings: Settings,
        view: View,
        conv: Conversation,
        user: Message,
        options: TurnOptions,
        notes: list[str],
    ) -> Reply:
        """Run the calls of `reply`, send the results, repeat; the last reply, summed.

        A KeyboardInterrupt while a call is asked or runs ends the loop at once: the
        conversation keeps the complete rounds only (as an interrupted turn).
        """
        runner = options.tools
        assert runner is not None
        base = payload["messages"]
        steps: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        replies = [reply]
        rounds = 0
        while reply.tool_calls:
            if rounds >= runner.max_rounds:
                notes.append(
                    f"stopped after {rounds} tool round{'s' * (rounds != 1)}: the model still "
                    f"asked for {len(reply.tool_calls)} call(s) (ChatMagics.max_tool_rounds)"
                )
                break
            try:
                done = runner.run(reply)
            except KeyboardInterrupt:
                partial = _summed(replies, calls, steps, rounds, text="").with_(
                    finish_reason="interrupted"
                )
                view.finish("", partial if settings.show_usage and steps else None)
                self.last_reply = partial
                if steps:
                    conv.add(user, partial, options.cell_id)
                raise Interrupted(
                    f"interrupted in tool round {rounds + 1}",
                    partial=partial,
                    hint="the conversation keeps the complete rounds only"
                    if steps
                    else "the conversation is unchanged",
                ) from None
            rounds += 1
            calls += done
            steps.append(
                {
                    "role": "assistant",
                    "content": reply.text or None,
                    "tool_calls": [c.wire() for c in done],
                }
            )
            steps += [c.message() for c in done]
            payload = {**payload, "messages": [*base, *steps]}
            reply = self._request(payload, settings, view, conv, user, options, tuple(steps))
            replies.append(reply)
        if runner.unanswered:
            from .tools import NO_STDIN

            notes.append(NO_STDIN)
        return _summed(replies, calls, steps, rounds, text=reply.text)

    def _request(
        self,
        payload: dict[str, Any],
        settings: Settings,
        view: View,
        conv: Conversation,
        user: Message,
        options: TurnOptions,
        steps: tuple[dict[str, Any], ...],
    ) -> Reply:
        """One request, streamed into `view` (not finished); interrupts keep the partial.

        `steps`: the tool rounds before this request, kept with an interrupted partial.
        """
        client = self.client(settings)
        cell_id = options.cell_id

        def on_retry(reason: str, delay: float, attempt: int, attempts: int) -> None:
            view.status(f"{reason} — retrying in {delay:.1f} s, attempt {attempt} of {attempts}")

        def priced(reply: Reply) -> Reply:
            return reply.with_(cost=estimate_cost(reply.model, reply.usage, settings.prices))

        footer = settings.show_usage
        if not options.stream:
            try:
                return priced(client.complete(payload, on_retry=on_retry))
            except (KeyboardInterrupt, NbChatError) as failed:
                view.finish("")  # nothing to show; the retry status line goes
                if isinstance(failed, KeyboardInterrupt):
                    empty = Reply(
                        text="", model=payload["model"], finish_reason="interrupted", steps=steps
                    )
                    if steps:
                        conv.add(user, empty, cell_id)
                    raise Interrupted(
                        "interrupted before any text arrived", partial=empty
                    ) from None
                raise
        chat = client.stream(payload, on_retry=on_retry)
        chat.on_delta = _thinking_to(view)
        running = self._running[conv.name]
        running.chat = chat
        stop = running.stop
        try:
            if stop.is_set():  # stopped before the request went out: send none
                raise KeyboardInterrupt
            for delta in chat:
                view.feed(delta)
                if stop.is_set():
                    raise KeyboardInterrupt
            if stop.is_set():  # stopped before the first token
                raise KeyboardInterrupt
        except (KeyboardInterrupt, NbChatError) as stopped:
            if isinstance(stopped, KeyboardInterrupt) or stop.is_set():
                chat.close()
                partial = priced(chat.build_reply("interrupted")).with_(steps=steps, tool_calls=())
                _details(view, partial)
                view.finish(partial.text, partial if footer and partial.text else None)
                self.last_reply = partial
                if partial.text or steps:
                    conv.add(user, partial, cell_id)
                raise self._interrupted(chat, partial) from None
            if isinstance(stopped, StreamError):
                stopped.partial = kept = priced(stopped.partial)
                _details(view, kept)
                view.finish(kept.text, kept if footer and kept.text else None)
                self.last_reply = kept
            else:
                view.finish("")  # nothing to show; the retry status line goes
            raise
        finally:
            running.chat = None
        return priced(chat.reply)

    @staticmethod
    def _interrupted(chat: ChatStream, partial: Reply) -> Interrupted:
        if not partial.text and partial.reasoning:
            return Interrupted(
                f"interrupted while thinking ({len(partial.reasoning):,} characters of thinking)",
                partial=partial,
                hint="the thinking is shown (and kept by -o and the record); no answer was added",
            )
        if not partial.text:
            return Interrupted("interrupted before any text arrived", partial=partial)
        n = chat.tokens
        return Interrupted(
            f"interrupted after {n} token{'s' * (n != 1)}",
            partial=partial,
            hint="the partial reply was kept in the conversation (finish_reason='interrupted')",
        )


def _summed(
    replies: list[Reply],
    calls: list[ToolCall],
    steps: list[dict[str, Any]],
    rounds: int,
    *,
    text: str,
) -> Reply:
    """The last reply of a tool loop, with the usage, time and cost of every round."""
    last = replies[-1]
    usages = [r.usage for r in replies if r.usage is not None]
    usage = None
    if usages:
        usage = Usage(
            prompt_tokens=sum(u.prompt_tokens for u in usages),
            completion_tokens=sum(u.completion_tokens for u in usages),
            total_tokens=sum(u.total_tokens for u in usages),
            cached_tokens=sum(u.cached_tokens or 0 for u in usages)
            if any(u.cached_tokens is not None for u in usages)
            else None,
            reasoning_tokens=sum(u.reasoning_tokens or 0 for u in usages)
            if any(u.reasoning_tokens is not None for u in usages)
            else None,
        )
    costs = [r.cost for r in replies if r.cost is not None]
    latencies = [r.latency for r in replies if r.latency is not None]
    estimated = [r.estimated_tokens for r in replies if r.estimated_tokens]
    return last.with_(
        text=text,
        usage=usage,
        cost=sum(costs) if costs and len(costs) == len(replies) else None,
        ttft=next((r.ttft for r in replies if r.ttft is not None), None),  # the first text
        latency=sum(latencies) if latencies else None,
        estimated_tokens=sum(estimated) if usage is None and estimated else None,
        tool_calls=tuple(calls),
        steps=tuple(steps),
        tool_rounds=rounds,
    )


def _details(view: View, reply: Reply) -> None:
    """Give a view that shows them the reply's thinking and token probabilities."""
    details = getattr(view, "details", None)
    if details is not None:
        details(reply)


def _thinking_to(view: View) -> Callable[[str, int, str], None] | None:
    """The stream's `on_delta` for a view that shows thinking as it streams."""
    think = getattr(view, "think", None)
    if think is None:
        return None

    def on_delta(kind: str, index: int, text: str) -> None:
        if kind == "reasoning" and index == 0:
            think(text)

    return on_delta
