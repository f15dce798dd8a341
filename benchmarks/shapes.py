"""Replies the bytes benchmark needs and the package's mock server does not make.

`python -m benchmarks.shapes` is `python -m nbchat.mockserver`, except that a
model named `shape-NAME` (e.g. `shape-code@chunks=2000,delay=0.0025`) streams
SHAPES[NAME] cut into that many chunks of about equal size, mid-word where it
falls, as real tokens of ~4 characters are.
"""

from __future__ import annotations

import itertools
from typing import Any

from nbchat import mockserver

__all__ = ["SHAPES", "reply_pieces"]

_SENTENCES = [
    "The model reads the whole prompt before it writes a single word of the answer.",
    "Each token it returns depends on every token that came before it in the reply.",
    "A long answer can therefore take several seconds, even on a fast connection.",
    "Streaming shows the words as they arrive, so the reader can start at once.",
    "The notebook keeps only the final text, which is what a saved file will hold.",
]


def paragraph(size: int = 8000) -> str:
    """One paragraph of plain sentences, `size` bytes with its final newline."""
    text = " ".join(itertools.islice(itertools.cycle(_SENTENCES), size // 40))
    return text[: size - 1].rstrip() + "\n"


def code_block(size: int = 10_500) -> str:
    """A short intro, then one Python code fence of about `size` bytes."""
    parts = ["Here is the module:\n\n```python\n"]
    k = 0
    while sum(map(len, parts)) < size - 10:
        k += 1
        parts.append(
            f"def step_{k}(values: list[int], factor: int = {k}) -> list[int]:\n"
            f'    """Scale the values by {k} and drop the negative ones."""\n'
            "    result = []\n"
            "    for value in values:\n"
            "        if value * factor >= 0:\n"
            "            result.append(value * factor)\n"
            "    return result\n\n\n"
        )
    return "".join(parts).rstrip() + "\n```\n"


SHAPES = {"paragraph": paragraph, "code": code_block}


def reply_pieces(
    messages: list[dict[str, Any]], model: str, reply: str = "echo", chunks: int | None = None
) -> list[str]:
    """mockserver.reply_pieces, plus the `shape-NAME` models."""
    if not model.startswith("shape-"):
        return _mock_reply_pieces(messages, model, reply, chunks)
    text = SHAPES[model.removeprefix("shape-")]()
    n = chunks or len(text) // 4
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


_mock_reply_pieces = mockserver.reply_pieces

if __name__ == "__main__":
    mockserver.reply_pieces = reply_pieces
    # The map benchmark opens 32+ connections at once: socketserver's default listen
    # backlog of 5 would drop some of them (a client sees a reset or a 1 s SYN retry).
    mockserver._Server.request_queue_size = 256
    raise SystemExit(mockserver.main())
