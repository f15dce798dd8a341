"""Completion tokens estimated for replies whose server reported no usage.

Many local servers (llama-cpp-python's among them) send no `usage` in a
stream. A streamed reply is then counted by its content deltas: llama.cpp's
servers send one token per delta (measured: the count equals the `usage` the
same server reports for the same request without streaming). A reply that came
in one piece is counted with tiktoken's `o200k_base` when tiktoken is installed
(imported on first use, never at load time), else not at all. Either way the
figure is labelled as an estimate wherever it is shown.
"""

from __future__ import annotations

__all__ = ["estimate_completion_tokens"]


def estimate_completion_tokens(text: str, deltas: int | None) -> int | None:
    """Content deltas of a streamed reply, else tiktoken's count of `text` (or None).

    tiktoken is reached through `tokens.counter`, the one loader (in a thread, waited
    for at most a few seconds, so an offline machine cannot hang a cell).
    """
    if deltas:
        return deltas
    if not text:
        return None
    from .tokens import counter

    count = counter("gpt-4o")  # o200k_base, the newest OpenAI encoding
    return count(text) if count.exact else None
