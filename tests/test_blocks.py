"""The block splitter never cuts where the rest of a reply could change the rendering."""

from __future__ import annotations

from nbchat.blocks import last_boundary

DOC = """# Title

A paragraph
over two lines.

- item one

  still item one
- item two

```python
x = 1

y = "```"
```

$$
a

b
$$

| a | b |
|---|---|
| 1 | 2 |

Tail paragraph
"""


def cuts(text: str) -> list[int]:
    return sorted({last_boundary(text[:i]) for i in range(len(text) + 1)})


def test_no_cut_without_a_finished_block():
    assert last_boundary("") == 0
    assert last_boundary("just a paragraph") == 0
    assert last_boundary("para\n\nnext") == 0  # the next block's first line is not complete


def test_cut_at_blank_line_before_a_new_block():
    text = "para one\n\npara two\n"
    assert last_boundary(text) == text.index("para two")


def test_cuts_fall_only_at_block_starts():
    heads = ("A paragraph", "- item one", "```python", "$$\na", "| a |", "Tail")
    starts = {0} | {DOC.index(head) for head in heads}
    assert set(cuts(DOC)) == starts  # every block start, and nothing else
    for inside in ("y = ", "b\n$$", "still item one", "- item two"):
        assert DOC.index(inside) not in cuts(DOC)


def test_unclosed_fence_is_never_cut():
    text = "```\ncode\n\nmore code\n\nstill code\n"
    assert last_boundary(text) == 0


def test_tilde_fence_and_longer_closing_fence():
    text = "~~~~\na\n\n~~~\nb\n~~~~~\n\nafter\n"
    assert last_boundary(text) == text.index("after")


def test_indented_continuation_is_not_a_boundary():
    text = "1. first\n\n   more of first\n"
    assert last_boundary(text) == 0


def test_concatenated_blocks_equal_the_text():
    # What a renderer publishes: finished pieces then the open tail, for every prefix.
    for i in range(len(DOC) + 1):
        prefix = DOC[:i]
        cut = last_boundary(prefix)
        assert prefix[:cut] + prefix[cut:] == prefix
        assert cut == 0 or prefix[cut - 1] == "\n"
