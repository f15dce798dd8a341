"""What a comparison leaves: each model's result, and picking one into the conversation.

A pick follows a `%%chat` cell's rules: the picked turn carries the comparison
cell's id (so running that cell again replaces it) and its row in the exchange
record, which is marked kept (so `%chat resume` restores it in its place); when
the comparison re-ran a cell, the pick replaces that cell's earlier turn and
drops the later ones, as a re-run cell's reply does once it is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .conversation import Conversation
from .errors import NbChatError, OptionError
from .results import Results
from .session import Recorder
from .types import Message, Reply

__all__ = ["CompareError", "CompareResult", "Comparison"]


@dataclass(frozen=True)
class CompareResult:
    """One model's answer: a complete or partial `reply`, and the `error` if it failed."""

    model: str
    reply: Reply | None
    error: NbChatError | None = None
    #: The column's footer instead of the reply's usage line (a choice of `-n K`: its
    #: finish reason; the request's usage is shown once, below the columns).
    note: str | None = None

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
        system: str | None = None,
        *,
        cell_id: str | None = None,
        rows: list[int | None] | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(results)
        self.prompt = prompt
        self.picked: int | None = None
        self.dropped = 0  # later turns a pick dropped (a re-run cell's)
        self._conversation = conversation
        self._seen = list(conversation.turns)  # the conversation as compared on
        self._system = system
        self._cell_id = cell_id
        self._rows = rows or [None] * len(results)
        self._recorder = recorder

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
        conv = self._conversation
        if len(conv.turns) != len(self._seen) or any(
            a is not b for a, b in zip(conv.turns, self._seen, strict=True)
        ):
            raise OptionError(
                "the conversation changed since this comparison",
                hint="a reply can only be picked right after its comparison",
            )
        removed = conv.rewind(self._cell_id)  # a re-run cell: its earlier turn and later ones
        if self._system is not None:
            conv.system_prompt = self._system
        turn = conv.add(self.prompt, result.reply, self._cell_id)
        row = self._rows[number - 1]
        if row is not None:
            conv.turns[-1] = dataclasses.replace(turn, record_id=row)
        if self._recorder is not None:
            self._recorder.keep(row)
        self.picked = number
        self.dropped = max(len(removed) - 1, 0)
        return result.reply

    def picked_note(self) -> str:
        """What a pick says: which reply continues, and what a re-run pick dropped."""
        number = self.picked or 0
        reply = self.results[number - 1].reply
        model = reply.model if reply is not None else self.results[number - 1].model
        note = f"picked reply {number} ({model}); the next %%chat continues from it"
        if self.dropped:
            later = f"{self.dropped} later turn{'s' * (self.dropped != 1)}"
            note += f"; re-ran an earlier turn: {later} dropped"
        return note

    def _repr_markdown_(self) -> str:
        from .columns import markdown_table

        return markdown_table(self, footers=True)
