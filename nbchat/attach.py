"""Context from the notebook for one turn: `--with`, `--error`, `--cells`, and the receipt.

Each attached thing is one content part of the turn's user message, after the
cell's own text (which stays the first part): a text part starting with
`[notebook context: NAME — KIND]`, or an image / audio part. Nothing from the
namespace is read unless the cell names it. Every text part passes through the
API key's redaction, so even a variable holding the key does not send it.

The receipt says, before the reply starts, what was attached, each part's size
in tokens, and the size and estimated input cost of the whole request
(tiktoken when it works, else a labelled estimate; see nbchat.tokens). In a
notebook it is a collapsed `<details>` (every value escaped) holding the full
text of each part; elsewhere one line. The reply's view re-shows it when it
clears the cell, so it stays above the reply.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import OptionError
from .render import LiveMarkdown
from .tokens import Counter, message_tokens, part_tokens

if TYPE_CHECKING:
    from .config import Settings
    from .lasterror import ErrorWatch
    from .request import CellRequest
    from .session import ChatSession
    from .types import Message

__all__ = [
    "Part",
    "Receipt",
    "collect",
    "prompt_and_parts",
    "receipt_for",
    "resolve",
    "with_context",
]

_HEADER = re.compile(r"\[notebook context: (.+?) — (.+?)\]\n")
MAX_CELLS = 50


@dataclass(frozen=True)
class Part:
    """One attached thing: its name, what it is, and the content part as sent."""

    name: str
    kind: str
    content: dict[str, Any]
    tokens: int | None = None  # None: not counted (audio, an image of unknown size)

    @property
    def text(self) -> str | None:
        return self.content.get("text") if self.content.get("type") == "text" else None


def _text_part(name: str, kind: str, body: str) -> dict[str, Any]:
    return {"type": "text", "text": f"[notebook context: {name} — {kind}]\n{body}"}


# -- finding what the cell names ----------------------------------------------------------


def split_names(specs: Iterable[str] | None) -> list[str]:
    """`-w df,x -w y` -> ['df', 'x', 'y'] (duplicates dropped, order kept)."""
    names: list[str] = []
    for spec in specs or ():
        for name in spec.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def resolve(spec: str, namespace: Mapping[str, Any]) -> Any:
    """The value `spec` names: a variable, or a dotted attribute path (`df.columns`)."""
    path = spec.split(".")
    if not all(p.isidentifier() for p in path):
        raise OptionError(
            f"--with {spec}: not a variable name",
            hint="give names or attribute paths (df, df.columns), separated by commas",
        )
    if path[0] not in namespace:
        close = difflib.get_close_matches(
            path[0], [n for n in namespace if not n.startswith("_")], n=1
        )
        hint = f"did you mean {close[0]}?" if close else "define it first, or check the spelling"
        raise OptionError(f"--with {spec}: there is no variable {path[0]!r}", hint=hint)
    value = namespace[path[0]]
    for i, attribute in enumerate(path[1:], 1):
        try:
            value = getattr(value, attribute)
        except Exception as exc:
            owner = ".".join(path[:i])
            raise OptionError(
                f"--with {spec}: {owner} ({type(value).__name__}) has no attribute "
                f"{attribute!r}" + ("" if isinstance(exc, AttributeError) else f" ({exc})")
            ) from None
    return value


def collect(
    *,
    names: list[str],
    error: bool,
    cells: int | None,
    shell: Any,
    watch: ErrorWatch | None,
    budget: int,
    count: Counter,
    model: str,
    redact: Callable[[str], str] = lambda text: text,
) -> list[Part]:
    """The parts a cell asked for; OptionError (nothing sent) if any cannot be made."""
    from .summaries import fit, summarise

    namespace = getattr(shell, "user_ns", {})
    values = [(name, resolve(name, namespace)) for name in names]  # every name checked first
    last = None
    if error:
        from .lasterror import last_error

        last = last_error(shell, watch)
        if last is None:
            raise OptionError(
                "--error: no cell has raised an exception in this kernel yet",
                hint="run the cell that fails first; nothing was sent",
            )
    if cells is not None and not 1 <= cells <= MAX_CELLS:
        raise OptionError(f"--cells takes a number from 1 to {MAX_CELLS}, not {cells}")
    parts: list[Part] = []

    def add(name: str, kind: str, body: str) -> None:
        content = _text_part(name, kind, redact(body))
        parts.append(Part(name, kind, content, count(content["text"])))

    for name, value in values:
        try:
            summary = summarise(value, name, budget, count)
        except OptionError:
            raise
        except Exception as exc:  # a value whose own methods fail
            raise OptionError(
                f"--with {name}: cannot summarise {type(value).__name__}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if summary.part is not None:
            tokens = part_tokens(summary.part, count, model)
            parts.append(Part(name, summary.kind, summary.part, tokens))
        else:
            add(name, summary.kind, summary.text or "")
    if last is not None:
        from .lasterror import error_text

        where = f" in In [{last.number}]" if last.number else ""
        add("the last error", f"{type(last.error).__name__}{where}", fit(
            error_text(shell, last), budget, count
        ))  # fmt: skip
    if cells:
        from .lasterror import recent_cells

        found = recent_cells(shell, cells, watch)
        if not found:
            raise OptionError("--cells: no cell has run before this one")
        each = max(budget // len(found), 50)
        body = "\n\n".join(
            f"{_in(n)}:\n```python\n{fit(code.rstrip(), each, count)}\n```" for n, code in found
        )
        numbers = ", ".join(_in(n) for n, _ in found)
        label = f"the last {len(found)} cell{'s' * (len(found) != 1)}"
        add(label, numbers, body)
    return parts


def _in(number: int | None) -> str:
    return f"In [{number}]" if number is not None else "In [ ]"


def with_context(message: Message, parts: list[Part]) -> Message:
    """`message` with `parts` after its own text (which stays the first part)."""
    from .types import Message

    content = message.content
    own = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    first, rest = own[:1], own[1:]
    return Message(message.role, [*first, *(p.content for p in parts), *rest])


def prompt_and_parts(message: Message) -> tuple[str, list[tuple[str, str]]]:
    """(the user's own text, [(name, kind)] of its context parts), for showing a turn."""
    content = message.content
    if isinstance(content, str):
        return content, []
    texts = [p.get("text", "") for p in content if p.get("type") == "text"]
    attached = [m.groups() for t in texts[1:] if (m := _HEADER.match(t))]
    return (texts[0] if texts else ""), [(str(a), str(b)) for a, b in attached]


# -- the receipt ----------------------------------------------------------------------------


def _money(cost: float) -> str:
    return f"${cost:.6f}" if cost < 0.01 else f"${cost:.4f}"


@dataclass(frozen=True)
class Receipt:
    """What a turn attached and what the whole request costs, shown before the reply."""

    parts: tuple[Part, ...]
    count: Counter
    total: int
    complete: bool  # every part was counted (audio is not)
    cost: float | None  # input cost of the whole request, when the model's price is known

    def line(self) -> str:
        shown = [f"{p.name} — {p.kind} ({self.count.tokens(p.tokens)})" for p in self.parts]
        total = self.count.tokens(self.total)
        if not self.complete:
            total = f"≈ {self.total:,}+ tokens"
        elif any(p.content.get("type") != "text" for p in self.parts):
            total = f"≈ {self.total:,} tokens"  # image tokens follow a published estimate
        end = f"{total} in all"
        if self.cost is not None:
            end += f", ≈ {_money(self.cost)} for the prompt"
        return f"context: {' · '.join(shown)} · {end}"

    def bundle(self) -> dict[str, str]:
        """The receipt as an output: one line of text, a collapsed details element as HTML."""
        line = self.line()
        items = []
        for p in self.parts:
            head = f"<b>{html.escape(p.name)}</b> — {html.escape(p.kind)}"
            head += f" · {html.escape(self.count.tokens(p.tokens))}"
            text = p.text
            if text is None:
                size = len(str(p.content.get("image_url", p.content.get("input_audio", ""))))
                body = f"<i>{html.escape(p.content['type'])} part, {size:,} characters</i>"
            else:
                body = (
                    '<pre style="white-space:pre-wrap;max-height:20em;overflow:auto">'
                    f"{html.escape(text)}</pre>"
                )
            items.append(f"<div>{head}</div>{body}")
        how = html.escape(f"token counts: {self.count.method}")
        markup = (
            '<details class="nbchat-context" style="font-size:0.85em;opacity:0.8">'
            f"<summary>{html.escape(line)}</summary>{''.join(items)}<div><i>{how}</i></div>"
            "</details>"
        )
        return {"text/plain": line, "text/html": markup}

    def dry_run(self) -> str:
        """The receipt and the full text of every part, for `--dry-run`."""
        out = [self.line(), ""]
        for p in self.parts:
            out.append(f"--- {p.name} — {p.kind} ({self.count.tokens(p.tokens)}) ---")
            text = p.text
            out.append(text if text is not None else f"({p.content['type']} part; see the body)")
            out.append("")
        return "\n".join(out)

    def view(self, *, interval: float, live: bool, remote_images: bool = False) -> LiveMarkdown:
        """The reply's view, with this receipt shown now and kept above the reply."""
        return LiveMarkdown(
            interval=interval, live=live, remote_images=remote_images, header=self.bundle()
        )


def receipt_for(
    session: ChatSession,
    settings: Settings,
    request: CellRequest,
    parts: list[Part],
    count: Counter,
    cell_id: str | None,
) -> Receipt:
    """The receipt of `request` as it will be sent (a re-run cell: without its old turn)."""
    from .pricing import price_for

    conv = session.conversation(request.conversation)
    index = conv.turn_of(cell_id)
    system = request.system if request.system is not None else conv.system_prompt
    conv = replace(conv, turns=list(conv.turns[:index] if index is not None else conv.turns))
    conv.system_prompt = system
    payload = session.build_payload(
        request.message, settings, conversation=conv, model=request.model, params=request.params
    )
    model = str(payload["model"])
    total, complete = message_tokens(payload["messages"], count, model)
    row = price_for(model, settings.prices)
    cost = None if row is None else total * row[0] / 1e6
    return Receipt(tuple(parts), count, total, complete, cost)
