"""`--error` and `--cells N`: the kernel's last exception and its latest cells, as text.

`ErrorWatch` is registered on the shell's `post_run_cell` event when nbchat
loads (registering costs nothing) and remembers the last cell that failed,
with its code; nbchat's own one-line errors (a mistyped flag) and IPython's
usage errors are not remembered, so `%chat fix` after a typo still fixes the
user's error. Errors from before nbchat was loaded are found in
`sys.last_value`, as IPython leaves them.

The traceback keeps the user's own frames (notebook cells, and files outside
the standard library and site-packages) and the frame that raised, so the
model sees the user's code, not forty lines of pandas internals.
"""

from __future__ import annotations

import linecache
import sys
import traceback
from dataclasses import dataclass
from typing import Any

__all__ = ["ErrorWatch", "LastError", "error_text", "last_error", "recent_cells"]


@dataclass(frozen=True)
class LastError:
    """A failed cell: the exception and the code of the cell that ran."""

    error: BaseException
    cell: str | None = None
    number: int | None = None  # the cell's execution count, when known


def _ours(error: BaseException | None) -> bool:
    """nbchat's and IPython's one-line errors: about a command, not the user's code."""
    from IPython.core.error import UsageError

    from .errors import NbChatError

    return isinstance(error, (NbChatError, UsageError))


class ErrorWatch:
    """`pre_run_cell` / `post_run_cell` callbacks: the last cell that failed, and the cells
    run since nbchat loaded (for `--cells` where cells are run without history, as nbval
    and `run_cell(store_history=False)` do)."""

    KEEP = 200  # cells remembered

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self.last: LastError | None = None
        self.stored = True  # the running cell was stored in the input history
        self.cells: list[tuple[int | None, str]] = []  # (execution count, code), the running last

    def pre(self, info: Any) -> None:
        self.stored = bool(getattr(info, "store_history", True))
        count = getattr(self.shell, "execution_count", None)
        if isinstance(count, int) and self.stored:
            count -= 1  # IPython counts a stored cell before running it
        self.cells = [*self.cells[-self.KEEP :], (count, str(getattr(info, "raw_cell", "")))]

    def post(self, result: Any) -> None:
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if error is None or _ours(error):
            return
        info = getattr(result, "info", None)
        number = getattr(result, "execution_count", None)
        self.last = LastError(error, getattr(info, "raw_cell", None), number)

    def register(self, events: Any) -> None:
        events.register("pre_run_cell", self.pre)
        events.register("post_run_cell", self.post)

    def unregister(self, events: Any) -> None:
        for name, callback in (("pre_run_cell", self.pre), ("post_run_cell", self.post)):
            if callback in events.callbacks[name]:
                events.unregister(name, callback)


def last_error(shell: Any, watch: ErrorWatch | None) -> LastError | None:
    """The last error of this kernel that was not nbchat's own, or None."""
    if watch is not None and watch.last is not None:
        return watch.last
    error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if error is None or _ours(error):
        return None
    return LastError(error)


def _cell_label(shell: Any, filename: str) -> str | None:
    """`In[5]` for a notebook cell's code, None for a file."""
    names = getattr(getattr(shell, "compile", None), "_filename_map", {})
    if filename in names:
        return f"In[{names[filename]}]"
    if filename.startswith("<ipython-input-"):
        return f"In[{filename.split('-')[2]}]"
    return None


def _library_dirs() -> tuple[str, ...]:
    import sysconfig  # not at load: %load_ext imports this module to watch for errors

    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return (*sorted(dirs), "<frozen ")


def error_text(shell: Any, last: LastError) -> str:
    """Type, message, the user's frames of the traceback and the failing cell's code."""
    error = last.error
    lines = [f"{type(error).__name__}: {_message(error)}"]
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is not None:
        lines.append(f"(raised while handling {type(cause).__name__}: {_message(cause)})")
    if isinstance(error, SyntaxError):
        if error.text:
            where = f"line {error.lineno}" if error.lineno else "the cell"
            lines += ["", f"At {where}:", "    " + error.text.rstrip()]
    else:
        lines += _frames(shell, traceback.extract_tb(error.__traceback__))
    code, number = last.cell, last.number
    if code is None:  # an error from before nbchat loaded: the outermost cell frame's code
        for frame in traceback.extract_tb(error.__traceback__):
            label = _cell_label(shell, frame.filename)
            if label is not None:
                code, number = "".join(linecache.getlines(frame.filename)), int(label[3:-1])
                break
    if code:
        where = f" (In [{number}])" if number else ""
        lines += ["", f"The cell that raised it{where}:", "```python", code.rstrip(), "```"]
    return "\n".join(lines)


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = "(no message)"
    return text if len(text) <= 2000 else f"{text[:2000]}… ({len(text) - 2000:,} more characters)"


def _frames(shell: Any, frames: traceback.StackSummary) -> list[str]:
    library = _library_dirs()
    kept, left = [], 0
    cells = [i for i, f in enumerate(frames) if _cell_label(shell, f.filename) is not None]
    first = cells[0] if cells else 0  # frames before the first cell are IPython running it
    for i, frame in enumerate(frames):
        if i < first:
            continue
        label = _cell_label(shell, frame.filename)
        mine = label is not None or not frame.filename.startswith(library)
        if not (mine or i == len(frames) - 1):
            left += 1
            continue
        where = f"Cell {label}" if label else f'File "{frame.filename}"'
        kept.append(f"  {where}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            kept.append(f"    {frame.line.strip()}")
    if not kept:
        return []
    note = f"; {left} library frame{'s' * (left != 1)} left out" if left else ""
    return ["", f"Traceback (most recent call last{note}):", *kept]


def recent_cells(
    shell: Any, n: int, watch: ErrorWatch | None = None
) -> list[tuple[int | None, str]]:
    """The code of the `n` cells executed before the running one, oldest first.

    From the shell's input history, where a kernel stores each cell before it
    runs it; for a cell run without history, from the cells the watch saw.
    """
    if watch is not None and not watch.stored:
        seen = [(number, code) for number, code in watch.cells[:-1] if code.strip()]
        return seen[-n:]
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None) or []
    cells: list[tuple[int | None, str]] = []
    number = len(history) - 2  # the last entry is the running cell
    while number >= 1 and len(cells) < n:
        if history[number].strip():
            cells.append((number, history[number]))
        number -= 1
    return cells[::-1]
