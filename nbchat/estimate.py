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

from typing import Any

__all__ = ["count_tokens", "estimate_completion_tokens"]

_encoding: Any = None  # the tiktoken encoding; False once tiktoken proved unusable


def count_tokens(text: str) -> int | None:
    """`text`'s length in tiktoken's o200k_base tokens, or None without tiktoken."""
    global _encoding
    if _encoding is None:
        try:
            import tiktoken

            _encoding = tiktoken.get_encoding("o200k_base")
        except Exception:  # not installed, or its encoding file cannot be had
            _encoding = False
    if _encoding is False:
        return None
    return len(_encoding.encode(text, disallowed_special=()))


def estimate_completion_tokens(text: str, deltas: int | None) -> int | None:
    """Content deltas of a streamed reply, else tiktoken's count of `text` (or None)."""
    if deltas:
        return deltas
    return count_tokens(text) if text else None
