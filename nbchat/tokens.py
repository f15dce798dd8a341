"""Token counts for receipts and trimming: tiktoken when it works, else a labelled estimate.

tiktoken is optional and never imported at `%load_ext`: it is tried the first
time a count is needed. It also needs its BPE file, which it downloads once and
caches; offline, without the file in its cache (`TIKTOKEN_CACHE_DIR`), loading
fails and nbchat estimates instead. The load runs in a daemon thread that is
waited for at most `LOAD_WAIT` seconds, so a network that hangs cannot hang a
cell; whatever it ends with is remembered for the process.

The estimate follows how BPE tokenizers split text (runs of letters, digits in
groups of three, punctuation, line breaks); it is labelled `≈` wherever shown.
Image parts count with OpenAI's published tile formula; audio is not counted.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Counter", "counter", "estimate", "image_tokens", "message_tokens"]

LOAD_WAIT = 3.0  # seconds to wait for tiktoken's encoding the first time
_PIECE = r"[^\W\d_]+|\d+|\n+| {2,}|[^\w\s]+|_+|\s"
_pattern: re.Pattern[str] | None = None
_encodings: dict[str, Any] = {}  # name -> Encoding, or None once it failed to load
_loading: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def estimate(text: str) -> int:
    """Roughly how many tokens `text` is (within ~25% of o200k/cl100k on prose, code, tables)."""
    global _pattern
    if _pattern is None:
        _pattern = re.compile(_PIECE)
    n = 0
    for piece in _pattern.findall(text):
        first = piece[0]
        if first.isdigit():
            n += math.ceil(len(piece) / 3)
        elif first.isalpha():
            wide = sum(ord(c) >= 0x2E80 for c in piece)  # CJK: about a token per character
            rest = len(piece) - wide
            n += wide + (1 if 0 < rest <= 8 else math.ceil(rest / 4))
        elif first == "\n":
            n += 1
        elif first == " ":
            n += 1 if len(piece) > 1 else 0  # a single space joins the next word
        else:  # punctuation, symbols, underscores
            n += math.ceil(len(piece) / 2)
    return n


@dataclass(frozen=True)
class Counter:
    """Counts tokens of text for one model; `exact` when tiktoken did it."""

    encoding: Any = None  # a tiktoken Encoding, or None: estimate

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    @property
    def method(self) -> str:
        return f"tiktoken {self.encoding.name}" if self.exact else "estimate"

    def __call__(self, text: str) -> int:
        if self.encoding is None:
            return estimate(text)
        return len(self.encoding.encode(text, disallowed_special=()))

    def tokens(self, n: int | None) -> str:
        """`≈ 1,234 tokens` (estimate), `1,234 tokens` (tiktoken), `tokens not counted`."""
        if n is None:
            return "tokens not counted"
        return f"{'' if self.exact else '≈ '}{n:,} token{'s' * (n != 1)}"


def _encoding_name(model: str) -> str:
    """tiktoken's encoding for `model` (mock suffixes `@...` and unknown models: o200k_base)."""
    name = model.split("@", 1)[0].rsplit("/", 1)[-1]
    try:
        import tiktoken

        return str(tiktoken.encoding_name_for_model(name))
    except Exception:  # an unknown model (llama3.2, ...): the newest OpenAI encoding
        return "o200k_base"


def _load(name: str) -> None:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(name)
    except Exception:  # not installed, or its BPE file cannot be fetched (offline)
        encoding = None
    with _lock:
        _encodings[name] = encoding


def counter(model: str, mode: str = "auto") -> Counter:
    """The counter for `model`: tiktoken's encoding if it loads, else the estimate.

    `mode` "estimate" never tries tiktoken (also set by $NBCHAT_TOKEN_COUNTER).
    """
    if mode == "estimate" or os.environ.get("NBCHAT_TOKEN_COUNTER") == "estimate":
        return Counter()
    import importlib.util

    try:
        installed = importlib.util.find_spec("tiktoken") is not None
    except ValueError:  # a module object without a spec stands in sys.modules
        installed = False
    if not installed:
        return Counter()
    name = _encoding_name(model)
    with _lock:
        if name in _encodings:
            return Counter(_encodings[name])
        thread = _loading.get(name)
        if thread is None:
            thread = _loading[name] = threading.Thread(target=_load, args=(name,), daemon=True)
            thread.start()
    thread.join(LOAD_WAIT)
    with _lock:
        return Counter(_encodings.get(name))


# -- whole requests -----------------------------------------------------------------------

#: model prefix -> (base, per 512-px tile) image tokens; others as gpt-4o.
_IMAGE_TOKENS = {"gpt-4o-mini": (2833, 5667), "gpt-4o": (85, 170), "gpt-4.1": (85, 170)}


def image_tokens(width: int, height: int, model: str = "gpt-4o") -> int:
    """Tokens of an image at detail "high"/"auto", by OpenAI's published tile formula."""
    scale = min(1.0, 2048 / max(width, height, 1))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / max(min(w, h), 1))
    w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    base, tile = next(
        (v for k, v in _IMAGE_TOKENS.items() if model.startswith(k)), _IMAGE_TOKENS["gpt-4o"]
    )
    return base + tile * tiles


def part_tokens(part: Mapping[str, Any], count: Callable[[str], int], model: str) -> int | None:
    """Tokens of one content part (None: audio, or an image of unknown size)."""
    kind = part.get("type")
    if kind == "text":
        return count(str(part.get("text", "")))
    if kind == "image_url":
        size = png_size(str(part.get("image_url", {}).get("url", "")))
        return None if size is None else image_tokens(*size, model=model)
    return None


def png_size(url: str) -> tuple[int, int] | None:
    """(width, height) of a base64 PNG data URL, read from its header only."""
    import base64
    import struct

    prefix = "data:image/png;base64,"
    if not url.startswith(prefix):
        return None
    try:
        head = base64.b64decode(url[len(prefix) : len(prefix) + 32])
    except ValueError:
        return None
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def message_tokens(
    messages: Iterable[Mapping[str, Any]], count: Callable[[str], int], model: str
) -> tuple[int, bool]:
    """(prompt tokens of `messages`, whether every part could be counted).

    As OpenAI's cookbook counts them: 3 per message plus its role and content,
    and 3 that prime the reply.
    """
    total, complete = 3, True
    for message in messages:
        total += 3 + count(str(message.get("role", "")))
        content = message.get("content")
        if isinstance(content, str):
            total += count(content)
            continue
        for part in content or ():
            n = part_tokens(part, count, model)
            complete = complete and n is not None
            total += n or 0
    return total, complete
