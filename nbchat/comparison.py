"""The same conversation sent to several models at once, shown side by side.

One thread per model streams with the shared sync client (the session's rules:
same payload builder, retries before the first token, error mapping); the
calling thread owns the display and drains a queue of deltas, so widgets and
outputs are only touched from the cell's thread and a kernel interrupt lands
where it can stop every stream. Nothing enters the conversation until the user
picks a reply: `Comparison.pick(n)` (or `%chat pick n`, or a Pick button).

A comparison follows a `%%chat` cell's rules: each model's exchange is in the
record (not kept until picked, so `%chat usage` counts it and `%chat resume`
restores the picked turn in its place), and a cell run again is compared on
the conversation as it was before that cell's earlier turn. That turn and the
later ones stay until a reply is picked, which replaces them, as a re-run
`%%chat` cell's reply does once it is kept.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from .client import ChatStream
from .compared import CompareError, CompareResult, Comparison
from .config import Settings
from .errors import Interrupted, NbChatError, OptionError
from .pricing import estimate_cost
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


class CompareView(Protocol):
    """Where a comparison is shown: one column per model (see `columns.ColumnsView`)."""

    def start(self, models: list[str]) -> None: ...
    def status(self, index: int, text: str) -> None: ...
    def feed(self, index: int, delta: str) -> None: ...
    def tick(self) -> None: ...
    def finish(self, index: int, result: CompareResult) -> None: ...
    def close(self, comparison: Comparison) -> None: ...


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
    cell_id: str | None = None,
) -> Comparison:
    """Stream `prompt` (after the conversation so far) to every model concurrently.

    `system` replaces the conversation's system prompt for this request, and
    for the conversation only if a reply is picked. With the `cell_id` of a cell
    that made a turn, the models see the conversation before that turn.
    """
    if len(models) < 1:
        raise OptionError("no models to compare", hint="e.g. %%chat -m gpt-4o-mini,gpt-4.1-mini")
    settings.require_key()
    conv = session.conversation(conversation)
    sent = conv.as_sent(cell_id, system)
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

    payloads = [
        session.build_payload(user, settings, conversation=sent, model=m, params=params)
        for m in models
    ]
    recorder = session.recorder
    rows = [
        recorder.start(sent, user, payload, settings, cell_id) if recorder else None
        for payload in payloads
    ]
    streams = [client.stream(p, on_retry=notice(i)) for i, p in enumerate(payloads)]

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
                    if reply is not None:
                        value.partial = reply  # priced, as the record keeps it
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
    comparison = Comparison(user, done, conv, system, cell_id=cell_id, rows=rows, recorder=recorder)
    view.close(comparison)
    if recorder is not None:  # after the table, so the record's notes print below it
        for row, result in zip(rows, done, strict=True):
            recorder.finish(row, *_outcome(result), False)
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


def _outcome(result: CompareResult) -> tuple[Reply | None, BaseException | None]:
    """(reply, error) of one column, as the record's `finish` takes them."""
    reply = result.reply
    if result.error is None and reply is not None and reply.finish_reason == "interrupted":
        return None, Interrupted("interrupted", partial=reply)
    return (None, result.error) if result.error is not None else (reply, None)


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
        live=ctx.live,
        interval=ctx.settings.update_interval,
        footers=ctx.settings.show_usage,
        remote_images=ctx.settings.load_remote_images,
    )
    magics = ctx.magics
    return run_compare(
        ctx.session,
        ctx.settings,
        prompt,
        names,
        view,
        conversation=conversation,
        params=params,
        cell_id=magics._cell_id() if magics is not None else None,  # a re-run cell replaces
    )
