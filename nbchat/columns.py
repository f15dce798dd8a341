"""Side-by-side columns for a comparison: live widgets while streaming, static Markdown after.

Why two forms: Jupyter renders `text/markdown` per output, never per column,
so live columns are an ipywidgets HBox with one column per model (JupyterLab,
Notebook 7 and VS Code render Markdown inside each `Output` widget). Finished
Markdown blocks are frozen in their own `Output` and only the open block is
re-sent, so bytes stay linear in the reply length. But widgets do not survive
a saved notebook (their state is not saved by default: a reopened notebook
says "model not found"), so at the end the cell is cleared and holds one
static `text/markdown` output: an HTML table whose cells hold the replies'
Markdown (blank lines around each cell let CommonMark render the Markdown
inside), which every frontend, nbconvert and GitHub show side by side, and
`text/plain` sections for terminals. Pick buttons follow in live notebooks.
"""

from __future__ import annotations

import html
import sys
import time
from typing import TYPE_CHECKING, Any

from .blocks import last_boundary, open_fence
from .errors import NbChatError
from .render import footer_text, markdown_bundle
from .sanitize import safe_markdown

if TYPE_CHECKING:
    from .comparison import CompareResult, Comparison

__all__ = ["ColumnsView", "markdown_table", "plain_sections"]

# Notebook CSS centres and right-aligns table cells; a reply reads from the top left.
_TOP = 'valign="top" style="vertical-align:top;text-align:left"'


def _markdown(text: str, remote_images: bool) -> dict[str, Any]:
    data = markdown_bundle(text, remote_images=remote_images)
    return {"output_type": "display_data", "data": data, "metadata": {}}


def close_fences(text: str) -> str:
    """`text` with an unclosed code fence closed, so it cannot swallow what follows."""
    fence = open_fence(text)
    return f"{text.rstrip()}\n{fence.closer()}\n" if fence else text


def _footer(result: CompareResult) -> str:
    if result.error is not None:
        return f"error: {result.error.message}"
    if result.note is not None:
        return result.note
    return footer_text(result.reply) if result.reply is not None else ""


def markdown_table(
    comparison: Comparison, *, footers: bool = True, remote_images: bool = False
) -> str:
    """An HTML table with each reply's Markdown in its own cell.

    Every tag stands in a block of its own between blank lines: CommonMark then
    renders the Markdown between them, and Jupyter's `$...$` math detection,
    which stops at blank lines, cannot pair dollar signs of different cells.
    """
    width = f"{100 // max(len(comparison), 1)}%"
    pieces = ["<table>", "<tr>"]
    pieces += [f"<th>{n} · {html.escape(r.model)}</th>" for n, r in enumerate(comparison, 1)]
    pieces += ["</tr>", "<tr>"]
    for result in comparison:
        body = close_fences(result.text).strip() if result.text else ""
        if result.error is not None:
            body += f"\n\n**error:** {result.error.message}"  # a server's words: untrusted too
        body = safe_markdown(body, remote_images=remote_images)
        pieces += [f'<td {_TOP} width="{width}">', body.strip(), "</td>"]
    pieces.append("</tr>")
    if footers:
        pieces.append("<tr>")
        pieces += [f"<td {_TOP}><sub>{html.escape(_footer(r))}</sub></td>" for r in comparison]
        pieces.append("</tr>")
    pieces.append("</table>")
    return "\n\n".join(p for p in pieces if p) + "\n"


def plain_sections(comparison: Comparison, *, footers: bool = True) -> str:
    """The comparison as text, one section per model, for terminals and logs."""
    parts = []
    for n, result in enumerate(comparison, 1):
        lines = [f"[{n}] {result.model}", result.text.rstrip()]
        if footers or result.error is not None:
            lines.append(_footer(result))
        parts.append("\n".join(line for line in lines if line))
    return "\n\n".join(parts)


class _Column:
    """One model's live column: header, status line, Markdown blocks, footer."""

    def __init__(self, widgets: Any, number: int, model: str, remote_images: bool) -> None:
        self._widgets = widgets
        self.remote_images = remote_images
        self.status = widgets.HTML("<i>waiting…</i>")
        self.open = widgets.Output()
        self.blocks = widgets.VBox([self.open])
        self.footer = widgets.HTML("")
        header = widgets.HTML(f"<b>{number} · {html.escape(model)}</b>")
        self.box = widgets.VBox(
            [header, self.status, self.blocks, self.footer],
            layout=widgets.Layout(flex="1 1 0", min_width="0", padding="0 0.5em"),
        )
        self.text = ""  # the open block as last shown
        self.pending: list[str] = []

    def flush(self) -> None:
        if not self.pending:
            return
        if not self.text:
            self.status.value = ""
        text = self.text + "".join(self.pending)
        self.pending.clear()
        cut = last_boundary(text)
        if cut:  # freeze the finished blocks in their own output, sent once
            frozen = self._widgets.Output()
            frozen.outputs = (_markdown(text[:cut], self.remote_images),)
            self.blocks.children = (*self.blocks.children[:-1], frozen, self.open)
            text = text[cut:]
        self.text = text
        self.open.outputs = (_markdown(text, self.remote_images),) if text else ()


class ColumnsView:
    """Shows a comparison: live columns in a kernel, then one static output (see module doc)."""

    def __init__(
        self,
        *,
        live: bool,
        interval: float = 0.1,
        footers: bool = True,
        buttons: bool = True,
        remote_images: bool = False,
        header: dict[str, str] | None = None,
    ) -> None:
        self.live = live
        self.remote_images = remote_images
        self.header = header  # e.g. a context receipt: shown first, kept above the replies
        self.interval = interval
        self.footers = footers
        self.buttons = buttons and live
        self.columns: list[_Column] = []
        self._next = 0.0
        self.pick_row: Any = None

    def start(self, models: list[str]) -> None:
        if self.header is not None and "IPython" in sys.modules:
            from IPython.display import display

            display(self.header, raw=True)
        if not self.live:
            return
        import ipywidgets as widgets
        from IPython.display import display

        self.columns = [
            _Column(widgets, n, m, self.remote_images) for n, m in enumerate(models, 1)
        ]
        row = widgets.HBox(
            [c.box for c in self.columns],
            layout=widgets.Layout(width="100%", align_items="flex-start"),
        )
        display(row)

    def status(self, index: int, text: str) -> None:
        if self.live:
            self.columns[index].status.value = f"<i>{html.escape(text)}</i>"
        else:
            print(f"[{index + 1}] {text}", flush=True)

    def feed(self, index: int, delta: str) -> None:
        if self.live:
            self.columns[index].pending.append(delta)
            self.tick()

    def tick(self) -> None:
        now = time.perf_counter()
        if self.live and now >= self._next:
            self._next = now + self.interval
            for column in self.columns:
                column.flush()

    def finish(self, index: int, result: CompareResult) -> None:
        if not self.live:
            return
        column = self.columns[index]
        column.flush()
        column.status.value = ""
        column.footer.value = (
            f'<span style="font-size:0.85em;opacity:0.7">{html.escape(_footer(result))}</span>'
        )

    def close(self, comparison: Comparison) -> None:
        """Replace the live columns by the static form; add Pick buttons in live notebooks."""
        text = plain_sections(comparison, footers=self.footers)
        if "IPython" not in sys.modules:  # a plain script: no display system, just text
            print(text)
            return
        from IPython.display import clear_output, display

        if self.live:
            clear_output(wait=True)
            if self.header is not None:
                display(self.header, raw=True)
        markdown = markdown_table(
            comparison, footers=self.footers, remote_images=self.remote_images
        )
        display({"text/markdown": markdown, "text/plain": text}, raw=True)
        if self.buttons and any(r.reply is not None and r.reply.text for r in comparison):
            self.pick_row = _pick_buttons(comparison)


def _pick_buttons(comparison: Comparison) -> Any:
    """A row of "Pick N" buttons; the chosen one continues the conversation."""
    import ipywidgets as widgets
    from IPython.display import display

    message = widgets.HTML("")
    handle: Any = None

    def picker(number: int) -> Any:
        def on_click(_: Any) -> None:
            try:
                comparison.pick(number)
            except NbChatError as error:
                message.value = f"<i>{html.escape(error.message)}</i>"
                return
            note = "*" + comparison.picked_note().replace("%%chat", "`%%chat`") + "*"
            handle.update({"text/markdown": note, "text/plain": note}, raw=True)

        return on_click

    buttons = []
    for number, result in enumerate(comparison, 1):
        if result.reply is not None and result.reply.text and result.error is None:
            button = widgets.Button(description=f"Pick {number} · {result.model}"[:40])
            button.on_click(picker(number))
            buttons.append(button)
    row = widgets.HBox([*buttons, message])
    handle = display(row, display_id=True)
    return row
