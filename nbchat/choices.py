"""`-n K`: K choices of one request, side by side; and the flags that show how a model writes.

The choices of one request are shown as a comparison shows models (the same
`ColumnsView`: live columns, then one static table, Pick buttons), each column
with its own finish reason, and below the table one footer with the request's
usage (the server counts every choice into it). Nothing joins the conversation
until a choice is picked (`%chat pick N`, as for a comparison); every choice's
reply carries the request's usage and cost, so the picked turn is billed once.

`writing_request` adds the fields of `--logprobs [K]`, `-n K` and `--predict NAME`
to a cell's request, each checked before anything is sent.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .compared import CompareError, CompareResult, Comparison
from .errors import NbChatError, OptionError
from .params import check_field
from .types import Message, Reply

if TYPE_CHECKING:
    from .attach import Receipt
    from .config import Settings
    from .request import CellRequest
    from .session import ChatSession

__all__ = ["Choices", "choices_cell", "run_choices", "writing_request"]


def _integer(raw: str, field: str, label: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise OptionError(f"{label} must be an integer, not {raw!r}") from None
    check_field(field, value, label, shown=raw)
    return value


def writing_request(args: Any, request: CellRequest, namespace: dict[str, Any]) -> CellRequest:
    """`request` with the fields of --logprobs, -n and --predict (checked; OptionError if bad)."""
    params = dict(request.params)
    if getattr(args, "logprobs", None) is not None:
        params["logprobs"] = True
        params["top_logprobs"] = _integer(args.logprobs, "top_logprobs", "--logprobs")
    if getattr(args, "n", None) is not None:
        params["n"] = _integer(args.n, "n", "-n")
    name = getattr(args, "predict", None)
    if name:
        value = namespace.get(name) if name.isidentifier() else None
        if not isinstance(value, str) or not value:
            raise OptionError(
                f"--predict {name}: not the name of a string variable",
                hint="e.g. draft = open('f.py').read(), then %%chat --predict draft",
            )
        params["prediction"] = {"type": "content", "content": value}
    n = params.get("n", 1)
    if isinstance(n, int) and n > 1 and not request.stream:
        raise OptionError("-n K shows the choices as they stream", hint="drop --no-stream")
    return dataclasses.replace(request, params=params)


class Choices(Comparison):
    """The K choices of one request; `pick(n)` continues the conversation with choice n."""

    def __repr__(self) -> str:
        states = ", ".join(f"{r.reply.finish_reason if r.reply else 'error'}" for r in self.results)
        model = self.results[0].model if self.results else ""
        return f"<Choices: {len(self)} of {model} ({states})>"

    def pick(self, number: int) -> Reply:
        reply = super().pick(number)
        row = self._rows[number - 1]
        if number != 1 and self._recorder is not None and row is not None:
            self._recorder.finish(row, reply, None, True)  # the record keeps the picked text
        return reply

    def picked_note(self) -> str:
        return super().picked_note().replace("picked reply", "picked choice")


def run_choices(
    session: ChatSession,
    settings: Settings,
    prompt: str | Message,
    view: Any,
    *,
    params: dict[str, Any],
    model: str | None = None,
    conversation: str | None = None,
    system: str | None = None,
    cell_id: str | None = None,
) -> tuple[Choices, Reply | None]:
    """Stream one request with `n` > 1 into `view` (a ColumnsView); (the choices, the reply
    of choice 1 with the request's usage). Follows a comparison's rules (see comparison.py)."""
    from .pricing import estimate_cost

    settings.require_key()
    n = int(params["n"])
    conv = session.conversation(conversation)
    sent = conv.as_sent(cell_id, system)
    user = prompt if isinstance(prompt, Message) else Message("user", prompt)
    client = session.client(settings)
    payload = session.build_payload(user, settings, conversation=sent, model=model, params=params)
    recorder = session.recorder
    row = recorder.start(sent, user, payload, settings, cell_id) if recorder else None

    def on_retry(reason: str, delay: float, attempt: int, attempts: int) -> None:
        view.status(0, f"{reason} — retrying in {delay:.1f} s, attempt {attempt} of {attempts}")

    chat = client.stream(payload, on_retry=on_retry)

    def on_delta(kind: str, index: int, text: str) -> None:
        if kind == "content" and 0 < index < n:
            view.feed(index, text)

    chat.on_delta = on_delta
    name = payload["model"]
    view.start([name] * n)
    error: NbChatError | None = None
    interrupted = False
    try:
        for delta in chat:
            view.feed(0, delta)
        first: Reply | None = chat.reply
    except KeyboardInterrupt:
        chat.close()
        interrupted = True
        first = chat.build_reply("interrupted")
    except NbChatError as failed:
        error = failed
        first = getattr(failed, "partial", None)
    if first is not None:
        first = first.with_(cost=estimate_cost(first.model, first.usage, settings.prices))
    results = []
    for k in range(n):
        other = chat.others.get(k)
        reply = None
        if first is not None:
            reply = first
            if k:
                done = other.finish_reason if other is not None else None
                reply = first.with_(
                    text=other.text if other is not None else "",
                    finish_reason=done if done else first.finish_reason,
                    reasoning="".join(other.thinking) or None if other is not None else None,
                    logprobs=None,
                )
        note = f"finish: {reply.finish_reason}" if reply is not None else ""
        result = CompareResult(name, reply, error if k == 0 else None, note=note)
        results.append(result)
        view.finish(k, result)
    rows: list[int | None] = [row] * n
    choices = Choices(user, results, conv, system, cell_id=cell_id, rows=rows, recorder=recorder)
    view.close(choices)
    if recorder is not None:
        if interrupted and first is not None:
            from .errors import Interrupted

            recorder.finish(row, None, Interrupted("interrupted", partial=first), False)
        else:
            recorder.finish(row, first if error is None else None, error, False)
    if interrupted:
        raise CompareError(
            "interrupted; nothing was added to the conversation",
            comparison=choices,
            hint="%chat pick N keeps a partial choice",
        )
    if error is not None:
        raise CompareError(error.message, comparison=choices, hint=error.hint)
    return choices, first


def request_footer(reply: Reply, n: int) -> dict[str, str]:
    """The footer of the whole request: n choices, its usage, times and cost."""
    from .render import footer_html, footer_text

    line = f"{n} choices · " + footer_text(reply.with_(finish_reason=None))
    return {"text/plain": line, "text/html": footer_html(line)}


def choices_cell(
    magics: Any,
    request: CellRequest,
    args: Any,
    settings: Settings,
    receipt: Receipt | None,
) -> None:
    """`%%chat -n K`: the K choices side by side, then the request's footer."""
    from IPython.display import display

    from .columns import ColumnsView

    if receipt is not None:
        print(receipt.line())
    view = ColumnsView(
        live=magics._live(),
        interval=settings.update_interval,
        footers=settings.show_usage,
        remote_images=settings.load_remote_images,
    )
    try:
        choices, first = run_choices(
            magics.session,
            settings,
            request.message,
            view,
            params=request.params,
            model=request.model,
            conversation=request.conversation,
            system=request.system,
            cell_id=magics._cell_id(),
        )
    except CompareError as error:
        magics._keep(error.comparison, args)
        raise
    magics._keep(choices, args)
    if first is not None and settings.show_usage:
        display(request_footer(first, len(choices)), raw=True)  # type: ignore[no-untyped-call]
