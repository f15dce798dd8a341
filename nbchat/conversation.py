"""Conversation state: a system prompt and completed turns, one per exchange.

A turn is added only when a reply completed (or was interrupted by the user,
which chat UIs keep); a failed request leaves the conversation exactly as it
was, so the next request still alternates user/assistant correctly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .types import Message, Reply

__all__ = ["Conversation", "Turn"]


@dataclass(frozen=True)
class Turn:
    """One exchange: what the user sent and the reply it got."""

    user: Message
    reply: Reply
    cell_id: str | None = None
    record_id: int | None = None  # its row in the exchange record, when recorded

    @property
    def assistant(self) -> Message:
        return Message("assistant", self.reply.text)


@dataclass
class Conversation:
    """Turns of one named conversation; builds the `messages` of the next request."""

    name: str = "default"
    system_prompt: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.turns)

    def messages(
        self, prompt: Message | None = None, *, system: str | None = None
    ) -> list[dict[str, Any]]:
        """The request's `messages`: system prompt, every earlier turn, then `prompt`."""
        system = system if system is not None else self.system_prompt
        out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for turn in self.turns:
            out.append(turn.user.to_dict())
            out.extend(turn.reply.steps)  # tool rounds: assistant tool_calls, tool results
            if turn.reply.text or not turn.reply.steps:
                out.append(turn.assistant.to_dict())
        if prompt is not None:
            out.append(prompt.to_dict())
        return out

    def add(self, user: Message, reply: Reply, cell_id: str | None = None) -> Turn:
        turn = Turn(user, reply, cell_id)
        self.turns.append(turn)
        return turn

    def rewind(self, cell_id: str | None) -> list[Turn]:
        """Remove the turn made by cell `cell_id` and every later one; returns them.

        Re-running a cell replaces its turn. Nothing is removed without a cell id
        or when the cell made no turn yet.
        """
        index = self.turn_of(cell_id)
        if index is None:
            return []
        removed = self.turns[index:]
        del self.turns[index:]
        return removed

    def turn_of(self, cell_id: str | None) -> int | None:
        """The index of the turn cell `cell_id` made (None without one)."""
        if not cell_id:
            return None
        return next((i for i, t in enumerate(self.turns) if t.cell_id == cell_id), None)

    def as_sent(self, cell_id: str | None, system: str | None = None) -> Conversation:
        """A copy as a request from cell `cell_id` sees it: without that cell's earlier turn
        and the ones after (a re-run), with `system` in place of the system prompt if given.
        Comparisons and `-n` choices send this; nothing joins until a reply is picked."""
        earlier = self.turn_of(cell_id)
        return replace(
            self,
            turns=self.turns[:earlier] if earlier is not None else list(self.turns),
            system_prompt=self.system_prompt if system is None else system,
        )

    def reset(self) -> int:
        """Forget every turn (the system prompt stays); returns how many were dropped."""
        dropped = len(self.turns)
        self.turns.clear()
        return dropped

    @property
    def total_tokens(self) -> int:
        return sum(t.reply.usage.total_tokens for t in self.turns if t.reply.usage)

    @property
    def total_cost(self) -> float | None:
        costs = [t.reply.cost for t in self.turns if t.reply.cost is not None]
        return sum(costs) if costs else None
