"""The panel's transcript: a turn's widgets, and the view a reply streams into.

Replies are Markdown outputs inside Output widgets, so the frontend renders them
exactly like a `%%chat` cell's output (code highlighting, math, the light or dark
theme) and nbchat needs no Markdown library of its own.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .blocks import last_boundary
from .render import footer_text, markdown_bundle

if TYPE_CHECKING:
    from .conversation import Conversation
    from .types import Reply

__all__ = ["TurnView", "close_tree", "label", "reply_widgets", "totals", "turn_box"]


def markdown_outputs(text: str, remote_images: bool = False) -> tuple[dict[str, Any], ...]:
    data = markdown_bundle(text, remote_images=remote_images)
    return ({"output_type": "display_data", "data": data, "metadata": {}},)


def label(text: str, css_class: str) -> widgets.HTML:
    label = widgets.HTML(html.escape(text))
    label.add_class(css_class)
    return label


def reply_widgets(
    text: str, footer: Reply | None, remote_images: bool = False
) -> tuple[widgets.Widget, ...]:
    """A finished reply: one (safe) Markdown output, then its usage footer."""
    shown: list[widgets.Widget] = (
        [widgets.Output(outputs=markdown_outputs(text, remote_images))] if text else []
    )
    if footer is not None:
        shown.append(label(footer_text(footer), "nbchat-footer"))
    return tuple(shown)


def turn_box(user: str, reply: widgets.VBox) -> widgets.VBox:
    box = widgets.VBox([label(user, "nbchat-you"), label("Assistant", "nbchat-role"), reply])
    box.add_class("nbchat-turn")
    return box


def close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def totals(conversations: Iterable[Conversation]) -> str:
    """`3 turns · 512 tokens · $0.000123` (the cost only where prices are known)."""
    convs = list(conversations)
    turns = sum(len(c) for c in convs)
    costs = [c.total_cost for c in convs if c.total_cost is not None]
    text = f"{turns} turn{'s' * (turns != 1)} · {sum(c.total_tokens for c in convs)} tokens"
    if costs:
        cost = sum(costs)
        text += f" · ${cost:.6f}" if cost < 0.01 else f" · ${cost:.4f}"
    return text


class TurnView:
    """One reply streaming into the panel (a session `View`), called from its worker.

    Finished Markdown blocks go out once, in an Output of their own; only the open
    block is re-sent, so the bytes sent grow linearly with the reply.
    """

    def __init__(
        self,
        body: widgets.VBox,
        interval: float,
        say: Callable[[str], None],
        poll: Callable[[], None],
        remote_images: bool = False,
    ) -> None:
        self.body, self.interval, self.say, self.poll = body, interval, say, poll
        self.remote_images = remote_images
        self.parts: list[str] = []
        self.frozen = 0  # characters already published as finished blocks
        self.open: widgets.Output | None = None
        self.due = 0.0
        self.updates = 0

    def status(self, text: str) -> None:
        self.say(text)

    def feed(self, delta: str) -> None:
        if not self.parts:
            self.say("")  # the reply replaces any retry notice
        self.parts.append(delta)
        self.poll()  # e.g. a Stop pressed before the stream could be stopped
        now = time.perf_counter()
        if now >= self.due:
            self.due = now + self.interval
            self.flush()

    def flush(self) -> None:
        tail = "".join(self.parts)[self.frozen :]
        cut = last_boundary(tail)
        if cut:
            self._publish(tail[:cut])  # the open output now holds finished blocks only
            self.open, self.frozen, tail = None, self.frozen + cut, tail[cut:]
        if tail:
            self._publish(tail)

    def _publish(self, text: str) -> None:
        self.updates += 1
        if self.open is None:
            self.open = widgets.Output(outputs=markdown_outputs(text, self.remote_images))
            self.body.children = (*self.body.children, self.open)
        else:
            self.open.outputs = markdown_outputs(text, self.remote_images)

    def finish(self, text: str, footer: Reply | None = None) -> None:
        """One clean output with the whole reply replaces the streamed pieces."""
        pieces = self.body.children
        kept = tuple(p for p in pieces if "nbchat-keep" in p._dom_classes)  # tool cards
        self.body.children = (*kept, *reply_widgets(text, footer, self.remote_images))
        for piece in pieces:
            if piece not in kept:
                piece.close()
