"""The tables of `%chat list`, `%chat models` and `%chat log`, as Markdown with a plain-text twin.

Cells hold text from elsewhere (model ids a server lists, prompts that may quote
a web page), so each is made safe Markdown like a reply (see sanitize.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import NbChatError, NotFoundError
from .sanitize import safe_markdown

if TYPE_CHECKING:
    from .client import ChatClient
    from .conversation import Conversation
    from .session import ChatSession

__all__ = ["conversations_table", "models_table", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """A display bundle: a Markdown table, and aligned columns for text/plain."""
    cells = [[str(c) for c in row] for row in rows]

    def md(row: Sequence[str]) -> str:
        return "| " + " | ".join(_cell(c) for c in row) + " |"

    markdown = [md(headers), "|" + "---|" * len(headers), *(md(r) for r in cells)]
    widths = [max(len(c) for c in col) for col in zip(headers, *cells, strict=False)]
    plain = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *cells]
    ]
    return {"text/markdown": "\n".join(markdown), "text/plain": "\n".join(plain)}


def _cell(text: str) -> str:
    return safe_markdown(text.replace("\n", " ")).replace("|", "\\|")


def _shorten(text: str | None, width: int = 40) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _tokens(conv: Conversation) -> str:
    """The reported tokens, and what is not in them: replies without usage (estimated or not).

    e.g. `1210`, or `1210 + ≈41 completion estimated (1 of 3 replies without usage)`.
    """
    replies = [turn.reply for turn in conv.turns]
    missing = [r for r in replies if r.usage is None]
    text = str(conv.total_tokens)
    if not missing:
        return text
    estimated = sum(r.estimated_tokens or 0 for r in missing)
    if estimated:
        text += f" + ≈{estimated} completion estimated"
    return f"{text} ({len(missing)} of {len(replies)} replies without usage)"


def conversations_table(session: ChatSession, default_system: str | None) -> dict[str, str]:
    """One row per named conversation: turns, tokens used, cost and system prompt."""
    rows = []
    for name, conv in session.conversations.items():
        cost = conv.total_cost
        rows.append(
            [
                name,
                len(conv),
                _tokens(conv),
                "—" if cost is None else f"${cost:.6f}",
                _shorten(conv.system_prompt or default_system) or "—",
            ]
        )
    return table(["conversation", "turns", "tokens", "cost", "system prompt"], rows)


def models_table(client: ChatClient) -> dict[str, str]:
    """`GET {base_url}/models` as a table of id and owner, sorted by id."""
    try:
        models = client.list_models()
    except NotFoundError:
        raise NbChatError(
            f"{client.base_url} has no model list (GET /models answered 404)",
            hint="this server does not list its models; name one with -m or ChatMagics.model",
        ) from None
    if not models:
        raise NbChatError(f"{client.base_url} lists no models")
    rows = sorted(
        (str(m.get("id", "?")), str(m.get("owned_by") or "—"))
        for m in models
        if isinstance(m, dict)
    )
    return table(["id", "owner"], rows)
