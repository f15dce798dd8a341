"""Model text made safe to show: Markdown that cannot carry live HTML, and sanitised HTML.

A reply is untrusted: through prompt injection it can hold whatever an attacker
planted in a web page, a file or a data cell. JupyterLab renders the Markdown
and HTML of outputs made in the running session as trusted, raw HTML included,
so a reply shown as it came could run script in the user's browser session.

`safe_markdown` rewrites the Markdown source rather than rendering it to HTML
here, so each frontend still renders it natively (its code highlighting, its
math, its theme) — JupyterLab (marked), VS Code (markdown-it), nbconvert
(mistune), GitHub. Frontends parse Markdown differently, so the rewrite must
not depend on agreeing with them. Its invariant: **outside a code fence whose
extent every parser agrees on, no `<` of the model's reaches the output in a
form that can open a tag**:

- text: `<` before a letter, `/`, `!` or `?` becomes `&lt;` (shown as `<`);
  the attribute-less formatting tags of `ALLOWED_TAGS` stay, rewritten bare;
  autolinks stay only for http(s) and mailto;
- code spans that hold a `<` or a `]` become `<code>` with every punctuation
  character as an entity, so no parser can see markup or links in them (the
  others stay as written: nothing in them can become a tag or a link);
- math (`$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]`) keeps its TeX with `<` as `\\lt`;
- a code fence at column 0 is re-fenced with a marker longer than any run of
  backticks or tildes in it, so no parser can end it early, and keeps its text;
  a fence that is indented (maybe inside a list, maybe not a fence at all) gets
  a zero-width space after each tag-like `<`, which keeps it inert either way;
- link and image targets are checked after decoding entities and escapes, as a
  browser would read them: only http(s), mailto and relative links stay; images
  become a placeholder naming their host unless remote images are allowed.

Had a frontend ever seen something else where we saw code or math, it shows an
entity or `\\lt` literally: a cosmetic flaw, never a live tag.

`safe_html` (the head of a long streamed paragraph, shown as HTML) renders the
same safe Markdown with markdown-it-py and passes it through nh3 (the Rust
`ammonia` sanitiser, allowlist based) — the one sanitiser for HTML made from
model text. Both are imported on first use.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ALLOWED_TAGS", "safe_html", "safe_markdown", "safe_url"]

#: Formatting tags a reply may use, with no attributes at all.
ALLOWED_TAGS = ("br", "sub", "sup", "kbd", "b", "i", "em", "strong", "details", "summary")
_SCHEMES = ("http", "https", "mailto")
_ZWSP = "\u200b"

_FENCE = re.compile(
    r"(?P<lead>(?: {0,3}>[ ]?)*)(?P<indent> *)(?P<marker>`{3,}|~{3,})(?P<info>[^\r\n]*)"
)
_QUOTE = re.compile(r"(?:\s*>)+")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ALLOWED = re.compile(r"<(/?)(" + "|".join(ALLOWED_TAGS) + r")\s*/?>", re.IGNORECASE)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9.+-]{1,31}:[^\s<>\x00-\x1f]*)>")
_EMAIL = re.compile(
    r"<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>"
)
_LINE_LEAD = re.compile(r"[\s>*+\-\d.)]*")  # indentation, quote and list markers
_SPECIAL = re.compile(r"[\\`$<!\]]")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_ENTITY_PUNCT = {ord(c): f"&#{ord(c)};" for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def safe_url(url: str, *, image: bool = False) -> bool:
    """Whether a link (or image) target is harmless, read as a browser reads it."""
    plain = _CONTROL.sub("", html.unescape(re.sub(r"\\(.)", r"\1", url)))
    scheme = re.match(r"([A-Za-z][A-Za-z0-9.+-]*):", plain)
    if scheme is None:
        return not image and not plain.startswith("//")  # relative or #fragment, same server
    return scheme.group(1).lower() in (("http", "https") if image else _SCHEMES)


def _code_html(text: str) -> str:
    return "<code>" + text.translate(_ENTITY_PUNCT) + "</code>"


def _math(text: str) -> str:
    """TeX as written, but with nothing a Markdown parser could read as a tag, link or image."""
    return text.replace("<", "\\lt ").replace("](", "] (").replace("![", "! [")


def _neuter_tags(line: str) -> str:
    return _TAG_START.sub("<" + _ZWSP, line)


class _Inline:
    """The rewrite of text outside code fences (see the module docstring)."""

    def __init__(self, text: str, remote_images: bool) -> None:
        self.s = text
        self.remote_images = remote_images
        self.out: list[str] = []

    def run(self) -> str:
        s, out, i = self.s, self.out, 0
        while True:
            match = _SPECIAL.search(s, i)
            if match is None:
                out.append(s[i:])
                return "".join(out)
            j = match.start()
            out.append(s[i:j])
            i = self._special(j)

    def _special(self, i: int) -> int:
        s, c = self.s, self.s[i]
        if c == "\\":
            if s.startswith(("\\(", "\\["), i):
                end = s.find("\\)" if s[i + 1] == "(" else "\\]", i + 2)
                if end != -1 and not _BLANK_LINE.search(s, i, end):
                    self.out.append(_math(s[i : end + 2]))
                    return end + 2
            escaped = s[i + 1 : i + 2]  # `\<` is a literal `<`: the entity says the same
            self.out.append("&lt;" if escaped == "<" else "\\" + escaped)
            return i + 2
        if c == "`":
            return self._code_span(i)
        if c == "$":
            return self._dollars(i)
        if c == "<":
            return self._angle(i)
        if c == "!":
            if s.startswith("![", i):
                return self._image(i)
            self.out.append("!")
            return i + 1
        # "]": the end of a link text, maybe followed by its target
        if s.startswith("](", i) or (s.startswith("]:", i) and _may_define(s, i)):
            return self._target(i)
        self.out.append("]")
        return i + 1

    def _code_span(self, i: int) -> int:
        s = self.s
        run = 0
        while i + run < len(s) and s[i + run] == "`":
            run += 1
        start = i + run
        pos = start
        while True:
            close = s.find("`" * run, pos)
            if close == -1 or _BLANK_LINE.search(s, start, close):
                self.out.append("\\`" * run)  # no code span: literal backticks, for every parser
                return start
            end = close + run
            if end < len(s) and s[end] == "`":  # part of a longer run: not the closer
                while end < len(s) and s[end] == "`":
                    end += 1
                pos = end
                continue
            code = s[start:close]
            if "<" not in code and "]" not in code:
                # Nothing in it could become a tag, link or image even if a parser did not
                # see a code span here: it stays as written, byte for byte.
                self.out.append(s[i:end])
                return end
            code = code.replace("\n", " ")
            if code.startswith(" ") and code.endswith(" ") and code.strip(" "):
                code = code[1:-1]
            self.out.append(_code_html(code))
            return end

    def _dollars(self, i: int) -> int:
        s = self.s
        mark = "$$" if s.startswith("$$", i) else "$"
        pos = i + len(mark)
        while True:
            end = s.find(mark, pos)
            if end == -1 or _BLANK_LINE.search(s, i, end):
                self.out.append(mark)
                return i + len(mark)
            if s[end - 1] == "\\":
                pos = end + 1
                continue
            self.out.append(_math(s[i : end + len(mark)]))
            return end + len(mark)

    def _angle(self, i: int) -> int:
        s = self.s
        allowed = _ALLOWED.match(s, i)
        if allowed:
            # At the start of a line a tag would open an HTML block, which runs to the next
            # blank line and makes raw HTML of a code fence inside it; a zero-width space
            # before it keeps it inline (and the fence a fence).
            line_start = s.rfind("\n", 0, i) + 1
            lead = _ZWSP if _LINE_LEAD.fullmatch(s, line_start, i) else ""
            self.out.append(f"{lead}<{allowed.group(1)}{allowed.group(2).lower()}>")
            return allowed.end()
        link = _AUTOLINK.match(s, i) or _EMAIL.match(s, i)
        if link and (link.re is _EMAIL or safe_url(link.group(1))):
            self.out.append(link.group(0))
            return link.end()
        self.out.append("&lt;" if _TAG_START.match(s, i) else "<")
        return i + 1

    def _image(self, i: int) -> int:
        s = self.s
        close = _matching_bracket(s, i + 1)
        parsed = _destination(s, close + 2) if close != -1 and s.startswith("](", close) else None
        if parsed is None:
            self.out.append("\\!")  # a reference image, or none: at most a link
            return i + 1
        url, end = parsed
        alt = _Inline(s[i + 2 : close], self.remote_images).run()
        if self.remote_images and safe_url(url, image=True):
            self.out.append(f"![{alt}]({_quote_url(url)})")
        else:
            self.out.append(_placeholder(url, alt))
        return end

    def _target(self, i: int) -> int:
        s = self.s
        parsed = _destination(s, i + 2)
        if parsed is None or not safe_url(parsed[0]):
            self.out.append("\\]")  # no link can end here
            return i + 1
        url, end = parsed
        if s[i + 1] == ":":  # a link reference definition: the rest of the line is a title
            self.out.append(f"]: {_quote_url(url)}")
            return end
        self.out.append(f"]({_quote_url(url)})")
        return end


def _may_define(s: str, i: int) -> bool:
    """Whether the `]:` at `i` may end a link reference definition's label: its `[` starts
    a line (after indentation and quote markers) or is on an earlier line. `In [4]:` cannot."""
    line_start = s.rfind("\n", 0, i) + 1
    opening = s.rfind("[", line_start, i)
    return opening == -1 or not s[line_start:opening].strip(" \t>")


def _matching_bracket(s: str, i: int) -> int:
    """Index of the `]` closing the `[` at `i`, or -1 (escapes count, nesting counts)."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
        elif c == "\n" and s.startswith("\n", j + 1):
            return -1
        j += 1
    return -1


_DEST = re.compile(r"[ \t]*\n?[ \t]*(?:<([^<>\n]*)>|((?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))+))")
_TITLE = re.compile(r"""(?:[ \t]*\n?[ \t]*(?:"[^"]*"|'[^']*'|\([^()]*\)))?[ \t]*""")


def _destination(s: str, i: int) -> tuple[str, int] | None:
    """The link target starting at `i` (after `](` or `]:`) and where the link ends.

    For `](` the title and the closing `)` are consumed; for `]:` the title is
    dropped. None when no target parses (then no parser makes a link of it either
    way: the caller escapes the `]`).
    """
    dest = _DEST.match(s, i)
    if dest is None:
        return None
    url = dest.group(1) if dest.group(1) is not None else dest.group(2)
    title = _TITLE.match(s, dest.end())
    end = title.end() if title else dest.end()
    if s[i - 1] == "(":
        if not s.startswith(")", end):
            return None
        return url, end + 1
    return url, end


def _quote_url(url: str) -> str:
    """A target that no parser can read as anything but a URL: no spaces, tags or backticks
    (balanced parentheses stay: the target parsed with them)."""
    return re.sub(r"[\s<>`]", lambda m: f"%{ord(m.group()):02X}", url)


def _placeholder(url: str, alt: str) -> str:
    target = _CONTROL.sub("", html.unescape(url))
    what = f"image “{alt}”" if alt.strip() else "image"
    if target.lower().startswith("data:"):
        note = f"{what} (embedded data) not loaded"
    else:
        host = urlsplit(target).hostname if "://" in target else None
        note = f"{what} from {host or 'this server'} not loaded"
    shown = target if len(target) <= 120 else target[:117] + "…"
    return f"*\\[{note}\\]* {_code_html(shown)}"


def _fence_block(opener: re.Match[str], lines: list[str], closed: bool) -> str:
    """A column-0 fence, re-fenced so that none of its lines can close it in any parser.

    A fence still open (the reply is streaming) stays open: it runs to the end of
    the output in every parser, and the live text stays a prefix of the final one.
    """
    longest = 2
    for line in lines:
        stripped = line.lstrip()
        if stripped[:1] in ("`", "~"):
            longest = max(longest, len(stripped) - len(stripped.lstrip(stripped[0])))
    marker = "`" * max(len(opener["marker"]), longest + 1)
    info = opener["info"].strip().split(" ")[0] if opener["info"].strip() else ""
    head = marker + re.sub(r"[^\w+#.-]", "", info) + opener.string[opener.end() :]
    body = "".join(lines)
    if not closed:
        return head + body
    if body and not body.endswith("\n"):
        body += "\n"
    return head + body + marker


def safe_markdown(text: str, *, remote_images: bool = False) -> str:
    """`text` as Markdown that renders the same, minus live HTML and unsafe links and images."""
    out: list[str] = []
    prose: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0

    def flush_prose() -> None:
        if prose:
            out.append(_Inline("".join(prose), remote_images).run())
            prose.clear()

    while i < len(lines):
        line = lines[i]
        opener = _FENCE.match(line)
        if opener is None or (opener["marker"][0] == "`" and "`" in opener["info"]):
            prose.append(line)
            i += 1
            continue
        flush_prose()
        marker = opener["marker"]
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            stripped = (
                _QUOTE.sub("", lines[i], count=1).strip() if opener["lead"] else lines[i].strip()
            )
            if stripped.startswith(marker) and not stripped.strip(marker[0]):
                closed = True
                break
            body.append(lines[i])
            i += 1
        if not (opener["lead"] or opener["indent"]):  # column 0: every parser agrees on it
            out.append(_fence_block(opener, body, closed))
            if closed:
                out.append(lines[i][len(lines[i].rstrip("\r\n")) :])  # the closer's line end
        else:  # in a list or a quote: inert whichever way a parser reads the indentation
            out.append(_neuter_tags(line) + "".join(_neuter_tags(b) for b in body))
            if closed:
                out.append(_neuter_tags(lines[i]))
        i += 1 if closed else 0
    flush_prose()
    return "".join(out)


_renderer: Any = None
_VERBATIM = re.compile(r"\$\$.+?\$\$|\$[^$]+\$|\\\(.+?\\\)", re.DOTALL)


def safe_html(text: str, *, remote_images: bool = False) -> str:
    """Inline Markdown (a paragraph's head) as sanitised HTML, math left for the frontend."""
    global _renderer
    import nh3

    if _renderer is None:
        from markdown_it import MarkdownIt

        _renderer = MarkdownIt("commonmark", {"html": True}).enable("strikethrough")
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\ue000{len(kept) - 1}\ue001"

    safe = safe_markdown(text, remote_images=remote_images)
    body = _renderer.renderInline(_VERBATIM.sub(keep, safe))
    for n, math in enumerate(kept):
        body = body.replace(f"\ue000{n}\ue001", html.escape(math))
    return nh3.clean(
        body,
        tags={"a", "code", "em", "strong", "s", "del", "img", *ALLOWED_TAGS},
        attributes={"a": {"href", "title"}, "img": {"src", "alt"} if remote_images else set()},
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer nofollow",
    )
