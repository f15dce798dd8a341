"""`%chat export PATH`: a conversation as a Markdown transcript or as replayable JSON.

Markdown is for reading: each prompt and reply, with the reply's usage footer,
made safe like the cell's output (sanitize.py): a transcript opened in a
Markdown viewer runs nothing a model wrote and fetches no image it named.
JSON is for machines: each request body exactly as it was sent and the reply
with its usage and timings, so POSTing every `request` to
`{base_url}/chat/completions` replays the conversation. Neither holds the API
key: request bodies never contain it, and the text is passed through the key's
redaction as well.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .conversation import Conversation
from .errors import OptionError
from .render import footer_text
from .sanitize import safe_markdown
from .types import Reply, Secret

__all__ = ["FORMAT", "export", "to_json", "to_markdown"]

FORMAT = "nbchat.export/1"
FORMATS = {".md": "markdown", ".markdown": "markdown", ".json": "json"}


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def reply_data(reply: Reply) -> dict[str, Any]:
    """A reply as JSON: the usage in the API's own shape, times in seconds, cost estimated."""
    usage = reply.usage
    return {
        "text": reply.text,
        "model": reply.model,
        "finish_reason": reply.finish_reason,
        "system_fingerprint": reply.system_fingerprint,
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {
                "reasoning_tokens": usage.reasoning_tokens,
                "accepted_prediction_tokens": usage.accepted_prediction_tokens,
                "rejected_prediction_tokens": usage.rejected_prediction_tokens,
            },
        },
        "tool_calls": [
            {
                "id": c.id,
                "name": c.name,
                "arguments": c.arguments,
                "status": c.status,
                "result": c.result,
            }
            for c in reply.tool_calls
        ],
        "tool_rounds": reply.tool_rounds,
        "reasoning": reply.reasoning,
        "ttft_seconds": reply.ttft,
        "latency_seconds": reply.latency,
        "estimated_cost_usd": reply.cost,
    }


def to_json(conv: Conversation, *, notebook: str, base_url: str, system: str | None) -> str:
    """The conversation with every request body as sent and every reply, as JSON text."""
    data = {
        "format": FORMAT,
        "exported": _stamp(),
        "notebook": notebook,
        "conversation": conv.name,
        "base_url": base_url,
        "system_prompt": system,
        "exchanges": [
            {
                "cell_id": turn.cell_id,
                "request": turn.reply.request,
                "reply": reply_data(turn.reply),
            }
            for turn in conv.turns
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _thinking(reply: Reply) -> list[str]:
    """The reply's thinking, escaped, in a collapsed <details> (none: nothing)."""
    if not reply.reasoning:
        return []
    from .reasoning import thinking_html

    return [thinking_html(reply.reasoning, reply.reasoning_time), ""]


def to_markdown(conv: Conversation, *, notebook: str, system: str | None) -> str:
    """A readable transcript: prompts, replies and each reply's usage footer."""
    tokens = conv.total_tokens
    cost = conv.total_cost
    summary = f"{len(conv.turns)} turn{'s' * (len(conv.turns) != 1)} · {tokens} tokens"
    if cost is not None:
        summary += f" · ${cost:.6f} (estimated)"
    lines = [
        f"# Conversation `{conv.name}`",
        "",
        f"Notebook `{notebook}` · exported {_stamp()} · {summary}",
        "",
    ]
    if system:
        lines += [f"**System:** {safe_markdown(system)}", ""]
    for number, turn in enumerate(conv.turns, 1):
        lines += [
            "---",
            "",
            f"### {number}. You",
            "",
            safe_markdown(turn.user.text),
            "",
            "### Assistant",
            "",
            *_calls_markdown(turn.reply),
            *_thinking(turn.reply),
            safe_markdown(turn.reply.text),
            "",
            f"<sub>{safe_markdown(footer_text(turn.reply))}</sub>",
            "",
        ]
    return "\n".join(lines)


def _calls_markdown(reply: Reply) -> list[str]:
    """Each tool call and its result, as text (escaped like the reply), then a blank line."""
    if not reply.tool_rounds:
        return []
    from .tools import call_summary

    lines = [safe_markdown(f"- {call_summary(call)}").rstrip() for call in reply.tool_calls]
    return [*lines, ""]


def export(
    path: str,
    conv: Conversation,
    *,
    notebook: str,
    base_url: str,
    system: str | None,
    secret: Secret | None,
) -> Path:
    """Write `conv` to `path` as Markdown or JSON (chosen by the extension)."""
    target = Path(path).expanduser()
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise OptionError(
            f"cannot tell the export format of {path!r}",
            hint="end the path in .md for a Markdown transcript or .json for replayable JSON",
        )
    if kind == "json":
        text = to_json(conv, notebook=notebook, base_url=base_url, system=system)
    else:
        text = to_markdown(conv, notebook=notebook, system=system)
    if secret:
        text = secret.redact(text)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"cannot write {path}: {exc.strerror or exc}") from None
    return target
