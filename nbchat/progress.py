"""Progress of a batch: done / failed / ETA / tokens / cost.

In a live notebook an ipywidgets bar, replaced at the end by a one-line
summary (widget state is not saved with a notebook, the summary is); in a
terminal a line redrawn on stderr; in logs and tests only the summary.
"""

from __future__ import annotations

import html
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Progress", "Tally"]


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return (
        f"{minutes} min {seconds:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


@dataclass
class Tally:
    """Counts for one run; `done` includes failures and cache hits."""

    total: int
    done: int = 0
    failed: int = 0
    cached: int = 0
    tokens: int = 0
    cost: float | None = None
    in_flight: int = 0
    note: str = ""
    started: float = field(default_factory=time.perf_counter)

    def add(
        self,
        *,
        failed: bool = False,
        cached: bool = False,
        tokens: int = 0,
        cost: float | None = None,
    ) -> None:
        self.done += 1
        self.failed += failed
        self.cached += cached
        self.tokens += tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def eta(self) -> float | None:
        """Seconds left at the rate of this run's own requests (cache hits are free)."""
        sent = self.done - self.cached
        left = self.total - self.done
        if sent <= 0 or left <= 0:
            return None
        return self.elapsed / sent * left

    def line(self, *, final: bool = False) -> str:
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cached:
            parts.append(f"{self.cached} cached")
        if not final:
            if self.in_flight:
                parts.append(f"{self.in_flight} in flight")
            eta = self.eta()
            if eta is not None:
                parts.append(f"ETA {_seconds(eta)}")
        parts.append(f"{self.tokens:,} tokens")
        if self.cost is not None:
            parts.append(f"${self.cost:.4f}" if self.cost >= 0.01 else f"${self.cost:.6f}")
        if final:
            parts.append(_seconds(self.elapsed))
        if self.note and not final:
            parts.append(self.note)
        return " · ".join(parts)


class Progress:
    """Shows a `Tally`: call `show()` as often as you like (it throttles), `close()` once."""

    def __init__(self, tally: Tally, *, live: bool, enabled: bool = True, title: str = "") -> None:
        self.tally = tally
        self.live = live and enabled
        self.enabled = enabled
        self.title = title
        self._tty = enabled and not live and sys.stderr.isatty()
        self._next = 0.0
        self._handle: Any = None
        self._bar: Any = None
        self._label: Any = None
        if self.live:
            import ipywidgets as widgets
            from IPython.display import display

            self._bar = widgets.IntProgress(min=0, max=max(tally.total, 1), bar_style="info")
            self._label = widgets.HTML()
            self._handle = display(widgets.HBox([self._bar, self._label]), display_id=True)
            self.show(force=True)

    def show(self, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not (self.live or self._tty) or (now < self._next and not force):
            return
        self._next = now + (0.2 if self.live else 0.5)
        line = f"{self.title}{self.tally.line()}"
        if self.live:
            self._bar.max = max(self.tally.total, 1)
            self._bar.value = self.tally.done
            self._label.value = f"&nbsp;{html.escape(line)}"
        else:
            sys.stderr.write(f"\r{line}\x1b[K")
            sys.stderr.flush()

    def close(self, suffix: str = "") -> str:
        """Replace the bar by the final summary line (also returned)."""
        line = f"{self.title}{self.tally.line(final=True)}{suffix}"
        if not self.enabled:
            return line
        if self.live:
            summary = f'<div class="nbchat-progress">{html.escape(line)}</div>'
            self._handle.update({"text/plain": line, "text/html": summary}, raw=True)
        else:
            if self._tty:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
            print(line, flush=True)
        return line
