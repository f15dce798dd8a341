"""Where a streaming Markdown text can be cut into finished blocks.

Finished blocks are published once and never touched again, so a cut must sit
where the rest of the reply cannot change how the text before it renders: a
blank line outside any fenced code block or `$$` math block, followed by a
line that starts at column 0 (an indented line may continue a list item).
"""

from __future__ import annotations

import re

__all__ = ["last_boundary"]

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_MATH = re.compile(r" {0,3}\$\$")


def last_boundary(text: str) -> int:
    """Index where the last safe block starts in `text` (0 when there is none).

    Only complete lines count: the text after the last newline may still grow.
    """
    fence: str | None = None  # the opening fence while inside one
    in_math = False
    boundary = 0
    blank_before = False
    pos = 0
    end = text.rfind("\n") + 1  # complete lines only
    while pos < end:
        nl = text.index("\n", pos)
        line = text[pos:nl]
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                fence = None
        elif in_math:
            if line.strip().endswith("$$"):
                in_math = False
        elif not line.strip():
            blank_before = True
            pos = nl + 1
            continue
        else:
            if blank_before and not line[0].isspace():
                boundary = pos
            match = _FENCE.match(line)
            if match:
                marker = match.group(1)
                if not (marker[0] == "`" and "`" in line[match.end() :]):
                    fence = marker
            elif _MATH.match(line) and not (line.strip() != "$$" and line.strip().endswith("$$")):
                in_math = True
        blank_before = False
        pos = nl + 1
    return boundary
