"""The block splitter never cuts where the rest of a reply could change the rendering.

markdown-it-py (CommonMark + tables) is the independent oracle: a text cut at a
block boundary must render, piece by piece, exactly as the whole text does.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from nbchat.blocks import BlockSplitter, Fence, last_boundary, open_fence, paragraph_cut, scan
from nbchat.mockserver import reply_pieces

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])

TRICKY = {
    "headings, paragraphs, table": "# Title\n\nA paragraph\nover two lines.\n\n| a | b |\n"
    "|---|---|\n| 1 | 2 |\n\nSetext\n------\n\nTail paragraph\n",
    "nested lists": "- one\n  - one.a\n\n  - one.b\n\n    still one.b\n- two\n\n"
    "1. first\n\n   more of first\n2. second\n\nAfter the list.\n",
    "loose list stays one list": "- a\n\n- b\n\n- c\n\nIntro:\n- x\n\n- y\n\nend\n",
    "fence with fences in strings": '```python\nx = "```"\n\ny = """\n```\n"""\n```\n\n'
    "````md\n```\ninner\n```\n\nstill outer\n````\n\nafter\n",
    "tilde fence, indented closing": "~~~~\na\n\n~~~\n   ~~~~~\n\nafter\n",
    "fence inside a list": "1. step:\n   ```bash\n   echo hi\n\n   echo bye\n   ```\n\n"
    "2. next\n\ndone\n",
    "math blocks": "$$\na\n\nb\n$$\n\n\\[\nx\n\ny\n\\]\n\n\\begin{align}\nc\n\nd\n"
    "\\end{align}\n\ntext\n",
    "quotes and breaks": "> quoted\n>\n> more\n\n> another quote\n\n***\n\n    indented code\n\n"
    "    more code\n\nprose\n",
    "only a CommonMark closing fence closes": "```\ncode\n    ```\n\nmore code\n```\n\n"
    "~~~\n~~~ not a closer\n\nstill tilde\n~~~~\n\n````\n```\n\nshorter\n````  \n\n"
    "```\n~~~ is another character\n\nother char\n```\n\nafter\n",
    "fences in nested list items": "- a\n  - b\n\n    ```\n    x\n\n    y\n      ```\n\n"
    "    z\n    ```\n\n- ```\n  in item\n\n  more\n  ```\n\nafter\n",
    "a line left of the item ends its fence": "1. step\n   ```\n   open\n\nNext.\n\n```\n"
    "real\n\ncode\n```\n\nend\n",
    "fences in block quotes": "> ```\n> a\n>\n> b\n> ```\n\n> ```\n> open\n\n```\nc\n\nd\n```\n\n"
    "after\n",
    "raw html": "<!--\ncomment\n\nstill comment\n-->\n\n<details>\n<summary>More</summary>\n\n"
    "hidden *text*\n\n</details>\n\nvisible\n",
}


def cuts(text: str) -> set[int]:
    """Every block boundary found on any prefix of `text` (what a stream would freeze)."""
    return {last_boundary(text[:i]) for i in range(len(text) + 1)} - {0}


@pytest.mark.parametrize("name", TRICKY)
def test_every_cut_renders_like_the_whole(name):
    text = TRICKY[name]
    whole = MD.render(text)
    found = cuts(text)
    assert found, "expected at least one finished block"
    for cut in sorted(found):
        assert text[cut - 1] == "\n"
        assert MD.render(text[:cut]) + MD.render(text[cut:]) == whole, (cut, text[cut:][:20])


def test_cuts_are_exactly_the_top_level_block_starts():
    text = TRICKY["headings, paragraphs, table"]
    heads = ("A paragraph", "| a |", "Setext", "Tail")
    assert cuts(text) == {text.index(head) for head in heads}


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("fence with fences in strings", ["y = ", '"""\n```', "still outer"]),
        ("tilde fence, indented closing", ["~~~\n"]),
        ("fence inside a list", ["echo bye"]),
        (
            "only a CommonMark closing fence closes",
            ["more code", "still tilde", "shorter", "other char"],
        ),
        ("fences in nested list items", ["    y", "    z", "  more"]),
        ("a line left of the item ends its fence", ["code"]),
        ("fences in block quotes", ["d\n"]),
        ("math blocks", ["b\n$$", "y\n\\]", "d\n\\end"]),
        ("raw html", ["still comment", "hidden", "</details>"]),
        ("loose list stays one list", ["- b", "- c", "- y"]),
        ("nested lists", ["  - one.b", "    still", "2. second", "   more of first"]),
    ],
)
def test_never_cut_inside_a_fence_math_html_or_list(name, inside):
    text = TRICKY[name]
    found = cuts(text)
    for start in inside:
        position = text.index(start)
        assert position not in found
        # and no cut between the block's start and this line either
        assert not any(position - len(start) < c <= position for c in found)


_fence_line = st.builds(
    lambda indent, char, length, info: " " * indent + char * length + info,
    st.integers(0, 7),
    st.sampled_from("`~"),
    st.integers(3, 5),
    st.sampled_from(["", "", "python", " x", " `", "  "]),
)
_line = st.one_of(
    st.sampled_from(["", "", "text", "more words", "   c", "    code", "\tx"]),
    st.sampled_from(["", "text"]),
    _fence_line,
    _fence_line,
    _fence_line,
    st.sampled_from(
        ["- a", "1. a", "2. x", "10. c", " 2. q", "  - b", "1)    y", "-", "1.", "* * *", "---"]
    ),
    st.sampled_from(["- ```", "-   ```", "-\t```", "- - ~~~", "  1. ```", "> ```", "> a", ">"]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_line, max_size=16))
def test_every_cut_of_fences_lists_and_quotes_renders_like_the_whole(lines):
    """Fences of every indent, length and kind, in and out of list items and quotes."""
    text = "\n".join(lines) + "\n"
    whole = MD.render(text)
    for cut in sorted(cuts(text)):
        assert MD.render(text[:cut]) + MD.render(text[cut:]) == whole, (text, cut)


def test_open_fence_and_the_line_that_closes_it():
    assert open_fence("text\n```python\nx = 1") == Fence("```")
    assert open_fence("```\ncode\n    ```") == Fence("```")  # 4 spaces: still code
    assert open_fence("~~~~\n~~~\n~~~~ x\n") == Fence("~~~~")
    assert open_fence("```\nx\n   ````  \n") is None
    fence = open_fence("1. step\n   ```bash\n   echo\n       ```")
    assert fence == Fence("```", 3) and fence.closer() == "   ```"
    assert open_fence("1. step\n   ```bash\n   echo\nNext") is None  # the item ended


def test_unclosed_fence_is_never_cut_and_renders_as_code():
    text = "Intro.\n\n```python\nx = 1\n\ny = 2\n\nz"
    cut = last_boundary(text)
    assert text[cut:].startswith("```python")
    code = '<pre><code class="language-python">x = 1\n\ny = 2\n\nz'
    assert MD.render(text[cut:]).startswith(code)


def test_growing_last_line_decides_once_its_first_character_is_known():
    assert last_boundary("para\n\nnext") == len("para\n\n")  # a letter: a new block
    assert last_boundary("para\n\n") == 0  # nothing of the next block yet
    assert last_boundary("para\n\n  ind") == 0  # may continue a list item
    assert scan("- a\n\n-") == (0, len("- a\n\n"))  # may continue the list
    assert scan("- a\n\nEnd") == (len("- a\n\n"),) * 2  # a letter ends the list
    assert last_boundary("```\ncode\n\nmore") == 0


def test_no_cut_without_a_finished_block():
    assert last_boundary("") == 0
    assert last_boundary("just a paragraph") == 0
    assert last_boundary("one\ntwo\nthree\n") == 0


def long_paragraph(sentences: int = 40) -> str:
    parts = [
        "Plain words here.",
        "Some **bold text** and *soft emphasis* too!",
        "Code `a * b + c` with spaces, and ``x ` y`` as well.",
        "Math $a * b = c$ stays whole, and so does \\$5 escaped.",
        'A [link with words](https://example.org/a_b "a title") and <https://x.org/y z>.',
        "Snake_case_names and _underlined words_ are fine: ~~struck out~~ too.",
        "Numbers like 1. or 2) mid-line, a > b and a < b are prose.",
    ]
    return " ".join(parts[i % len(parts)] for i in range(sentences)) + "\n"


def test_paragraph_cut_keeps_every_inline_construct_whole():
    text = long_paragraph()
    whole = MD.renderInline(text)
    heads = set()
    for end in range(200, len(text) + 1, 3):
        cut = paragraph_cut(text[:end], least=100)
        if not cut:
            continue
        heads.add(cut)
        head, tail = text[:cut], text[cut:]
        assert cut >= 100 and head.endswith(" ") and tail[0].isalpha()
        assert MD.renderInline(head.rstrip(" ")) + " " + MD.renderInline(tail) == whole, head[-40:]
    assert len(heads) > 20  # cuts were found all along the paragraph


def test_paragraph_cut_prefers_a_new_sentence():
    text = "word " * 30 + "End of a sentence. Then more words follow"
    assert text[paragraph_cut(text, least=20) :] == "Then more words follow"
    text = "word " * 30 + "no sentence ends here at all"
    assert text[paragraph_cut(text, least=20) :] == "all"


@pytest.mark.parametrize(
    "text",
    [
        "- a list item " + "word " * 50,
        "# heading " + "word " * 50,
        "> quote " + "word " * 50,
        "    indented code " + "word " * 50,
        "first paragraph\n\nsecond " + "word " * 50,
        "a | table | header " + "word " * 50,
        "prose " * 20 + "\n- an item that interrupts " + "word " * 30,
    ],
)
def test_no_paragraph_cut_where_it_could_change_the_rendering(text):
    assert paragraph_cut(text, least=10) == 0


OPENERS = ["`code ", "$math ", "**bold ", "__bold ", "~~struck ", "[link ", "](url ", "<a href="]


@pytest.mark.parametrize("opener", OPENERS)
def test_no_paragraph_cut_after_an_open_inline_construct(opener):
    text = "prose " * 20 + "[x" * (opener == "](url ") + opener + "word " * 30
    assert 0 < paragraph_cut(text, least=10) <= text.index(opener[0], 100)


def pieces_of(text: str, max_open: int, seed: int) -> tuple[list[str], str]:
    """Feed `text` in random chunks; return the finished pieces and the open rest."""
    rng = random.Random(seed)
    splitter = BlockSplitter(max_open)
    pieces: list[str] = []
    pos = 0
    while pos < len(text):
        step = rng.randint(1, 40)
        pieces += [p.text for p in splitter.push(text[pos : pos + step])]
        pos += step
        assert "".join(pieces) + splitter.open == text[:pos]  # nothing lost, nothing repeated
    return pieces, splitter.open


@pytest.mark.parametrize("max_open", [120, 3000])
def test_joined_pieces_always_equal_the_text_so_far(max_open):
    reply = "".join(reply_pieces([], "m", reply="markdown", chunks=600)) + long_paragraph()
    pieces, rest = pieces_of(reply, max_open, seed=max_open)
    assert len(pieces) > 10 and rest
    if max_open == 3000:  # no soft cuts: every piece renders as in the whole reply
        whole = MD.render(reply)
        assert "".join(MD.render(p) for p in pieces) + MD.render(rest) == whole


def test_every_prefix_of_a_long_reply():
    reply = "".join(reply_pieces([], "m", reply="markdown", chunks=300))
    splitter = BlockSplitter(200)
    published = ""
    for i in range(len(reply)):
        published += "".join(p.text for p in splitter.push(reply[i]))
        assert published + splitter.open == reply[: i + 1]


def test_long_loose_list_is_cut_between_items_only_when_too_long():
    items = "".join(f"{n}. item {n} " + "word " * 10 + "\n\n" for n in range(1, 30))
    short, _ = pieces_of(items, 10_000, seed=1)
    assert short == []  # one list: nothing is final until it ends
    long, rest = pieces_of(items, 300, seed=1)
    assert len(long) > 3 and "".join(long) + rest == items
    for piece in long[1:]:
        assert piece.split(". ", 1)[0].isdigit()  # each piece starts at an item


def test_long_paragraph_head_is_marked_as_continuing():
    splitter = BlockSplitter(200)
    text = "Intro.\n\n" + long_paragraph(12)
    pieces = [p for i in range(0, len(text), 7) for p in splitter.push(text[i : i + 7])]
    assert pieces[0].text == "Intro.\n\n" and not pieces[0].continues
    heads = [p for p in pieces if p.continues]
    assert len(heads) >= 3 and all(p.text.endswith(" ") for p in heads)
    assert all(len(p.text) >= 100 for p in heads)
