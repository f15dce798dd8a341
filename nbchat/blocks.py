"""Where a streaming Markdown text can be cut into pieces that will never change.

A live view publishes each finished piece once and re-sends only the open rest,
so the bytes sent to the browser grow linearly with the reply. A cut must sit
where the rest of the reply cannot change how the text before it renders:

- a *block boundary*: a blank line outside any fenced code, `$$`, `\\[`,
  `\\begin{...}` math or raw HTML block, followed by a line that starts at
  column 0 (an indented line may continue a list item) and does not continue a
  list (a loose list stays one block, so it renders as one list);
- only when the open block grows past a size limit, a *soft cut*: between two
  items of a loose list, or inside a plain paragraph at a word that starts a
  new sentence or, failing that, any word, where no code span, math, link or
  emphasis is open. The live view shows the head of such a paragraph so that it
  joins the rest without a gap (see render.py).

Code fences follow CommonMark: a fence is closed only by a line of the same
character, at least as long, indented at most 3 columns past the content of
the list item it is in, with nothing after it; a line left of that content ends
the item and its fence. So the scan keeps the content columns of open list
items. (In a block quote every line starts with `>` and a blank line ends the
quote, so a quote's fence cannot hide a cut.)

Only complete lines count for blocks, and the first character of the growing
last line: a letter after a blank line starts a new block whatever follows.
Pure string scanning, no imports: this runs on every display update.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["BlockSplitter", "Fence", "Piece", "last_boundary", "open_fence", "paragraph_cut"]

_FENCE = re.compile(r"`{3,}|~{3,}")
_MATH = re.compile(r" {0,3}(\$\$|\\\[|\\begin\{([A-Za-z*]+)\})")
_RAW_HTML = re.compile(r" {0,3}<(script|pre|style|textarea|!--)", re.IGNORECASE)
_CONTAINER = re.compile(r"<(/?)(details|div)\b", re.IGNORECASE)
_LIST_ITEM = re.compile(r"([-+*]|\d{1,9}[.)])( |\t|$)")
# What ends a paragraph (besides list items, fences and blank lines).
_INTERRUPTS = re.compile(r" {0,3}(#{1,6}( |$)|>|<|[-*_=\s]+$)")
_BREAK = re.compile(r"([-*_])( *\1){2,} *$")  # a thematic break, not a list item
# A line starting like this is not plain paragraph text (it may start another block).
_NOT_PROSE = re.compile(
    r" {0,3}([#>|<]|`{3}|~{3}|\$\$|\\\[|[-+*]( |\t|$)|\d{1,9}[.)]( |\t|$))| {4}|\t|[-*_=\s]+$"
)


class Fence(NamedTuple):
    """An open code fence: its marker, and the column where its list item's content starts."""

    marker: str
    base: int = 0

    def closed_by(self, line: str, indent: int) -> bool:
        """Whether `line`, `indent` columns in, closes the fence: CommonMark allows at most
        3 columns past the item's content, the same character at least as many times, and
        nothing but spaces after it."""
        rest = line[indent:].rstrip(" \t")
        return indent - self.base < 4 and rest.startswith(self.marker) and not rest.strip(rest[0])

    def closer(self) -> str:
        return " " * self.base + self.marker


def _item(line: str, start: int, base: int, interrupts: bool) -> tuple[int, int] | None:
    """(content column, text start) if a list item starts at `start`, in content at `base`.

    `interrupts`: the line would otherwise continue a paragraph, which an empty item
    or an ordered one not numbered 1 cannot interrupt.
    """
    match = _LIST_ITEM.match(line, start)
    if match is None or start - base > 3 or _BREAK.match(line, start):
        return None
    after = match.end(1)
    text = len(line) - len(line[after:].lstrip(" "))
    marker = match.group(1)
    if interrupts and (text == len(line) or (marker[0].isdigit() and int(marker[:-1]) != 1)):
        return None
    if text == len(line) or text - after > 4:  # an empty item, or indented code in it
        return after + 1, text
    return text, text


def _math_end(line: str, start: re.Match[str]) -> str | None:
    """The marker that closes a display-math block opened on `line`, or None if it closes here."""
    opener, env = start.group(1), start.group(2)
    closer = "$$" if opener == "$$" else "\\]" if opener == "\\[" else f"\\end{{{env}}}"
    rest = line[start.end() :]
    return None if closer in rest else closer


def scan(text: str) -> tuple[int, int]:
    """(last block boundary, last boundary between loose list items); 0 when none."""
    boundary, item, _ = _scan(text)
    return boundary, item


def open_fence(text: str) -> Fence | None:
    """The code fence still open at the end of `text` (its last line counts), if any."""
    return _scan(text if text.endswith("\n") else text + "\n")[2]


def _scan(text: str) -> tuple[int, int, Fence | None]:
    fence: Fence | None = None  # the code fence we are in
    closer: str | None = None  # what ends the math or raw HTML block we are in
    containers = 0  # open <details>/<div> elements
    items: list[int] = []  # content columns of the open list items, outermost first
    in_list = paragraph = empty_item = False
    boundary = item = 0
    blank_before = False
    pos = 0
    end = text.rfind("\n") + 1  # complete lines only
    while pos < end:
        nl = text.index("\n", pos)
        line = text[pos:nl]
        if "\t" in line:
            line = line.expandtabs(4)
        blank = not line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if fence is not None and not blank and indent < fence.base:
            fence = None  # a line left of the list item's content ends the item and its fence
        if fence is not None:
            if fence.closed_by(line, indent):
                fence = None
        elif closer is not None:
            if closer in line:
                closer = None
        elif blank:
            if empty_item:
                items.pop()  # an item may start with one blank line, not two
            blank_before = True
            paragraph = empty_item = False
            pos = nl + 1
            continue
        else:
            interrupts = paragraph  # the line would continue the paragraph it follows
            if not (paragraph and not _NOT_PROSE.match(line, indent)):  # not a lazy line
                while items and indent < items[-1]:
                    items.pop()
                    interrupts = False  # that paragraph's list item has ended
            if not line[0].isspace():
                marker = _LIST_ITEM.match(line) is not None
                if blank_before and containers == 0:
                    if in_list and marker:
                        item = pos
                    else:
                        boundary = item = pos
                        in_list = marker
                elif marker:
                    in_list = True
            base = items[-1] if items else 0
            start = indent
            while found := _item(line, start, base, interrupts):
                in_list = in_list or not items  # a top-level list, maybe indented
                base, start = found
                items.append(base)
                interrupts = False
            empty_item = start == len(line)  # only an item marker
            paragraph = (interrupts and not _INTERRUPTS.match(line, indent)) or (
                start < len(line) and not _NOT_PROSE.match(line, start)
            )
            match = _FENCE.match(line, start) if start - base < 4 else None
            if match and not (match.group()[0] == "`" and "`" in line[match.end() :]):
                fence = Fence(match.group(), base)
                paragraph = False
            elif match := _MATH.match(line):
                closer = _math_end(line, match)
            elif match := _RAW_HTML.match(line):
                tag = match.group(1).lower()
                closer = "-->" if tag == "!--" else f"</{tag}>"
                if closer in line[match.end() :].lower():
                    closer = None
            for opening in _CONTAINER.finditer(line):
                containers = max(0, containers + (-1 if opening.group(1) else 1))
        blank_before = False
        pos = nl + 1
    # The growing last line already decides whether the block before it is finished
    # once its first character shows a new block (a letter cannot continue a list).
    if blank_before and end < len(text) and fence is None and closer is None and not containers:
        first = text[end]
        if not first.isspace():
            item = end
            if not (in_list and (first in "-+*" or first.isdigit())):
                boundary = end
    return boundary, item, fence


def last_boundary(text: str) -> int:
    """Index where the last finished block ends and the open one starts (0 when none)."""
    return scan(text)[0]


def paragraph_cut(text: str, *, least: int, continued: bool = False) -> int:
    """Where to cut a long open paragraph into a finished head and a growing tail (0: nowhere).

    The head is at least `least` characters, ends with a space, and leaves no
    code span, math, link, autolink or emphasis open; the tail starts with a
    letter, so it cannot start a list, heading or other block. A cut before a new
    sentence is preferred. `continued`: `text` is the tail of a paragraph cut before.
    """
    if "\n\n" in text or "|" in text:
        return 0  # not one paragraph, or a line that may become a table header
    lines = text.split("\n")
    if any(_NOT_PROSE.match(line) for line in lines[1 if continued else 0 :]):
        return 0
    word = sentence = 0
    ticks = 0  # length of the backtick run that opened the current code span
    dollars = brackets = parens = angles = stars = unders = tildes = 0
    i, n = 0, len(text) - 1  # the last character may still grow into a longer word
    while i < n:
        c = text[i]
        if c == " ":
            if (
                i >= least
                and text[i + 1].isalpha()
                and text[i - 1] != " "
                and not (ticks or dollars % 2 or brackets or parens or angles)
                and not (stars % 2 or unders % 2 or tildes % 2)
            ):
                word = i + 1
                if text[i - 1] in ".!?:":
                    sentence = i + 1
        elif c == "\\":
            i += 1
        elif c == "`":
            j = i
            while j < n and text[j] == "`":
                j += 1
            run = j - i
            ticks = 0 if ticks == run else (run if ticks == 0 else ticks)
            i = j
            continue
        elif ticks:
            pass
        elif c == "$":
            dollars += 1
        elif dollars % 2:
            pass  # inside math: Markdown syntax does not apply
        elif c == "[":
            brackets += 1
        elif c == "]":
            brackets = max(0, brackets - 1)
            if text[i + 1] == "(":  # a link destination (and title) follows
                parens += 1
                i += 1
        elif c == "(" and parens:
            parens += 1
        elif c == ")" and parens:
            parens -= 1
        elif c == "<" and (text[i + 1].isalpha() or text[i + 1] in "/!"):
            angles += 1
        elif c == ">":
            angles = max(0, angles - 1)
        elif c == "*":
            stars += 1  # one delimiter run (** opens strong emphasis once)
            while i + 1 < n and text[i + 1] == "*":
                i += 1
        elif c == "~" and text[i + 1] == "~":
            tildes += 1
            i += 1
        elif c == "_":
            j = i
            while j + 1 < n and text[j + 1] == "_":
                j += 1
            if not (i and text[i - 1].isalnum() and text[j + 1].isalnum()):  # not intraword
                unders += 1
            i = j
        i += 1
    return sentence or word


class Piece(NamedTuple):
    """A finished part of the reply. `continues`: it ends inside a paragraph that goes on."""

    text: str
    continues: bool = False


class BlockSplitter:
    """Splits a growing Markdown text into finished pieces and the open rest.

    `push(more)` returns the pieces that became final; the finished pieces joined
    with `open` always equal the text pushed so far. Blocks are cut at their
    boundaries; an open block longer than `max_open` characters is cut softly.
    """

    def __init__(self, max_open: int = 3000) -> None:
        self.max_open = max_open
        self.open = ""
        self._mid_paragraph = False

    def push(self, more: str) -> list[Piece]:
        text = self.open + more
        pieces: list[Piece] = []
        boundary, item = scan(text)
        if len(text) - boundary > self.max_open and item > boundary:
            boundary = item  # a long loose list: cut between items
        if boundary:
            pieces.append(Piece(text[:boundary]))
            text = text[boundary:]
            self._mid_paragraph = False
        if len(text) > self.max_open:
            cut = paragraph_cut(text, least=self.max_open // 2, continued=self._mid_paragraph)
            if cut:
                pieces.append(Piece(text[:cut], continues=True))
                text = text[cut:]
                self._mid_paragraph = True
        self.open = text
        return pieces
