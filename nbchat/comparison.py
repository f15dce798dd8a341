"""The same conversation sent to several models at once, shown side by side.

One thread per model streams with the shared sync client (the session's rules:
same payload builder, retries before the first token, error mapping); the
calling thread owns the display and drains a queue of deltas, so widgets and
outputs are only touched from the cell's thread and a kernel interrupt lands
where it can stop every stream. Nothing enters the conversation until the user
picks a reply: `Comparison.pick(n)` (or `%chat pick n`, or a Pick button).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .client import ChatStream
from .config import Settings
from .conversation import Conversation
from .errors import ConfigError, NbChatError, OptionError
from .pricing import estimate_cost
from .results import Results
from .session import ChatSession
from .types import Message, Reply

__all__ = ["CompareError", "CompareResult", "CompareView", "Comparison", "compare", "parse_models"]


def parse_models(spec: str) -> list[str]:
    """Split `a,b,c` into models; `k=v` pieces are mock options of the model before them.

    `gpt-4o-mini@ttft=0.5,chunks=3,llama3` -> `['gpt-4o-mini@ttft=0.5,chunks=3', 'llama3']`
    (model names never contain `=`, the mock server's `@k=v,...` options always do).
    """
    models: list[str] = []
    for piece in (p.strip() for p in spec.split(",")):
        if not piece:
            continue
        if "=" in piece and "@" not in piece and models:
            models[-1] += "," + piece
        else:
            models.append(piece)
    return models


@dataclass(frozen=True)
class CompareResult:
    """One model's answer: a complete or partial `reply`, and the `error` if it failed."""

    model: str
    reply: Reply | None
    error: NbChatError | None = None

    @property
    def text(self) -> str:
        return self.reply.text if self.reply is not None else ""

    @property
    def ok(self) -> bool:
        """A complete reply that can continue the conversation."""
        return self.error is None and self.reply is not None and self.reply.complete

    def __str__(self) -> str:
        return self.text


class CompareError(NbChatError):
    """Every model failed, or the comparison was interrupted; `.comparison` has the results."""

    def __init__(self, message: str, *, comparison: Comparison, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.comparison = comparison


class Comparison(Results[CompareResult]):
    """The results of one comparison, in the order the models were given.

    `comparison[0]` is the first model's result; `pick(1)` adds the first
    model's reply to the conversation (numbers as shown above the columns).
    """

    def __init__(
        self,
        prompt: Message,
        results: list[CompareResult],
        conversation: Conversation,
        turns_before: int,
        system: str | None = None,
    ) -> None:
        super().__init__(results)
        self.prompt = prompt
        self.picked: int | None = None
        self._conversation = conversation
        self._turns_before = turns_before
        self._system = system

    def __repr__(self) -> str:
        states = ", ".join(
            f"{r.model}: {'ok' if r.ok else 'error' if r.error else 'partial'}" for r in self
        )
        return f"<Comparison of {len(self)} models ({states})>"

    @property
    def replies(self) -> dict[str, Reply]:
        """Model -> reply, for every model that answered completely."""
        return {r.model: r.reply for r in self.results if r.ok and r.reply is not None}

    def pick(self, number: int) -> Reply:
        """Add reply `number` (1-based, as shown) to the conversation; later cells continue it."""
        if self.picked is not None:
            raise OptionError(
                f"reply {self.picked} of this comparison was already picked",
                hint="compare again to pick another",
            )
        if not 1 <= number <= len(self):
            raise OptionError(f"pick a reply between 1 and {len(self)}, not {number}")
        result = self.results[number - 1]
        if result.reply is None or not result.reply.text or result.error is not None:
            raise OptionError(
                f"reply {number} ({result.model}) has no answer to pick: {result.error or 'empty'}"
            )
        if len(self._conversation) != self._turns_before:
            raise OptionError(
                "the conversation changed since this comparison",
                hint="a reply can only be picked right after its comparison",
            )
        if self._system is not None:
            self._conversation.system_prompt = self._system
        self._conversation.add(self.prompt, result.reply)
        self.picked = number
        return result.reply

    def _repr_markdown_(self) -> str:
        from .columns import markdown_table

        return markdown_table(self, footers=True)


class CompareView(Protocol):
    """Where a comparison is shown: one column per model (see `columns.ColumnsView`)."""

    def start(self, models: list[str]) -> None: ...
    def status(self, index: int, text: str) -> None: ...
    def feed(self, index: int, delta: str) -> None: ...
    def tick(self) -> None: ...
    def finish(self, index: int, result: CompareResult) -> None: ...
    def close(self, comparison: Comparison) -> None: ...


def require_key(settings: Settings) -> None:
    """The OpenAI API itself needs a key; local servers may not."""
    if settings.needs_key and not settings.api_key:
        raise ConfigError(
            "no API key set for the OpenAI API",
            hint="set the OPENAI_API_KEY environment variable or c.ChatMagics.api_key in "
            "ipython_config.py; for a local server set ChatMagics.base_url",
        )


def _stream_into(
    index: int, stream: ChatStream, events: queue.Queue[Any], stop: threading.Event
) -> None:
    """Worker thread: put each delta, then the finished reply or the error, on `events`."""
    try:
        for delta in stream:
            events.put((index, "delta", delta))
            if stop.is_set():
                return
        events.put((index, "done", stream.reply))
    except NbChatError as error:
        events.put((index, "error", error))
    except Exception as exc:  # a stream closed under us by an interrupt, or a bug: keep others
        events.put((index, "error", NbChatError(f"{type(exc).__name__}: {exc}")))


def run_compare(
    session: ChatSession,
    settings: Settings,
    prompt: str | Message,
    models: list[str],
    view: CompareView,
    *,
    conversation: str | None = None,
    params: dict[str, Any] | None = None,
    system: str | None = None,
) -> Comparison:
    """Stream `prompt` (after the conversation so far) to every model concurrently.

    `system` replaces the conversation's system prompt for this request, and
    for the conversation only if a reply is picked.
    """
    if len(models) < 1:
        raise OptionError("no models to compare", hint="e.g. %%chat -m gpt-4o-mini,gpt-4.1-mini")
    require_key(settings)
    conv = session.conversation(conversation)
    sent = conv if system is None else dataclasses.replace(conv, system_prompt=system)
    turns_before = len(conv)
    user = prompt if isinstance(prompt, Message) else Message("user", prompt)
    client = session.client(settings)
    _ = client.http  # create the shared httpx.Client here, not raced for by the threads
    events: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def notice(index: int) -> Any:
        def on_retry(reason: str, delay: float, attempt: int, attempts: int) -> None:
            text = f"{reason} — retrying in {delay:.1f} s, attempt {attempt} of {attempts}"
            events.put((index, "status", text))

        return on_retry

    streams = [
        client.stream(
            session.build_payload(user, settings, conversation=sent, model=m, params=params),
            on_retry=notice(i),
        )
        for i, m in enumerate(models)
    ]

    def priced(reply: Reply) -> Reply:
        return reply.with_(cost=estimate_cost(reply.model, reply.usage, settings.prices))

    view.start(models)
    threads = [
        threading.Thread(target=_stream_into, args=(i, s, events, stop), daemon=True)
        for i, s in enumerate(streams)
    ]
    for thread in threads:
        thread.start()
    results: list[CompareResult | None] = [None] * len(models)
    interrupted = False
    try:
        while any(r is None for r in results):
            try:
                index, kind, value = events.get(timeout=settings.update_interval or 0.05)
            except queue.Empty:
                view.tick()
                continue
            if kind == "delta":
                view.feed(index, value)
            elif kind == "status":
                view.status(index, value)
            else:
                if kind == "done":
                    result = CompareResult(models[index], priced(value))
                else:
                    partial = getattr(value, "partial", None)
                    reply = priced(partial) if partial is not None else None
                    result = CompareResult(models[index], reply, value)
                results[index] = result
                view.finish(index, result)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        for stream in streams:
            stream.close()
        for thread in threads:
            thread.join(timeout=2.0)
        for index in range(len(models)):
            if results[index] is None:
                reply = priced(streams[index].build_reply("interrupted"))
                result = CompareResult(models[index], reply)
                results[index] = result
                view.finish(index, result)
    done = [r for r in results if r is not None]
    comparison = Comparison(user, done, conv, turns_before, system)
    view.close(comparison)
    if interrupted:
        raise CompareError(
            "comparison interrupted; nothing was added to the conversation",
            comparison=comparison,
            hint="%chat pick N keeps a partial reply",
        )
    if all(r.error is not None for r in done):
        first = done[0].error
        raise CompareError(
            f"every model failed; {done[0].model}: {first.message if first else ''}",
            comparison=comparison,
        )
    return comparison


def compare(
    prompt: str,
    models: Sequence[str] | str,
    *,
    params: dict[str, Any] | None = None,
    conversation: str | None = None,
) -> Comparison:
    """Send `prompt` to every model at once and show the replies side by side.

    With `%load_ext nbchat` loaded this uses the magic's settings and conversation;
    `.pick(n)` on the result continues that conversation with reply n.
    """
    from .columns import ColumnsView
    from .context import current

    ctx = current()
    names = parse_models(models) if isinstance(models, str) else list(models)
    view = ColumnsView(
        live=ctx.live, interval=ctx.settings.update_interval, footers=ctx.settings.show_usage
    )
    return run_compare(
        ctx.session, ctx.settings, prompt, names, view, conversation=conversation, params=params
    )
