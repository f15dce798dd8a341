"""Tool calls in the chat panel: a card per call, and Approve / Deny buttons.

The panel's reply runs in a worker thread while the kernel's main thread is
idle, so a click on a button reaches the kernel: the worker waits for it (a
cell cannot — its own code holds the main thread — and asks on stdin instead).
Stop ends the wait like a kernel interrupt. The cards are the cell's HTML
(nbchat.toolcards: escaped text only), kept above the reply when it finishes.
"""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets

from .toolcards import card_html
from .types import ToolCall

__all__ = ["PanelTools"]

#: Widgets the turn keeps when its reply finishes (see TurnView.finish).
KEEP = "nbchat-keep"


class PanelTools:
    """Cards and approval for one panel turn; `body` is the turn's VBox."""

    def __init__(self, body: widgets.VBox, stop: threading.Event) -> None:
        self.body = body
        self.stop = stop
        self.cards: dict[str, widgets.HTML] = {}
        self.pending: tuple[widgets.Button, widgets.Button] | None = None  # for tests

    def _add(self, widget: widgets.Widget) -> None:
        self.body.children = (*self.body.children, widget)

    def show(self, call: ToolCall, state: str) -> None:
        card = self.cards.get(call.id)
        if card is None:
            card = self.cards[call.id] = widgets.HTML(card_html(call, state))
            card.add_class(KEEP)
            self._add(card)
        else:
            card.value = card_html(call, state)

    def round(self, text: str, calls: tuple[ToolCall, ...]) -> None:
        for call in calls:
            self.show(call, call.status or "")

    def ask(self, question: str) -> bool:
        """Show the question with Approve / Deny and wait for a click (Stop interrupts)."""
        answered = threading.Event()
        answer: list[bool] = []

        def choose(value: bool) -> None:
            if not answered.is_set():
                answer.append(value)
                answered.set()

        approve = widgets.Button(description="Approve", button_style="success")
        deny = widgets.Button(description="Deny")
        approve.on_click(lambda _: choose(True))
        deny.on_click(lambda _: choose(False))
        box = widgets.HBox([widgets.HTML(f"<code>{html.escape(question)}</code>"), approve, deny])
        self._add(box)
        self.pending = (approve, deny)
        try:
            while not answered.wait(0.05):
                if self.stop.is_set():
                    raise KeyboardInterrupt
        finally:
            self.pending = None
            self.body.children = tuple(c for c in self.body.children if c is not box)
            box.close()
        return answer[0]
