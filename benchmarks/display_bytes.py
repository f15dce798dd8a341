"""2. Bytes sent to the frontend while a reply streams, and how often the view updates.

Replies of 2,000 chunks at 400 chunks/s through `%%chat` in live mode; a counting
DisplayPublisher adds up the UTF-8 bytes of every MIME value of every display_data
and update_display_data message (the usage footer left out). The baseline, measured
in the same run on the same stream, is what other notebook tools do: re-send the
whole growing Markdown at the same update rate (throttled), then show it once more
at the end.
"""

from __future__ import annotations

import itertools
from typing import Any

from .common import CountingPublisher, Published, median, nbchat_shell, run_chat

RATE = 400  # chunks per second
CHUNKS = 2000
SHAPES = {
    # name: (model and mock options (shape-* models: see shapes.py), target for the total)
    "realistic Markdown": ("gpt-4o-mini@reply=markdown", 3.0),
    "one long paragraph": ("shape-paragraph", 12.0),  # 8 KB: ~4 bytes a chunk, like tokens
    "one long code block": ("shape-code", None),  # 10.6 KB in one fence, which is never cut
}
ROUNDS = 3  # nbchat; the baseline runs once (its bytes barely vary)
SAME_UPDATE = 0.002  # seconds: messages closer than this belong to one view update


class NaiveMarkdown:
    """The baseline view: the whole text so far, re-sent at most once per `interval`."""

    def __init__(self, interval: float) -> None:
        from IPython.display import display

        self.interval = interval
        self._handle = display({"text/markdown": ""}, raw=True, display_id=True)
        self._parts: list[str] = []
        self._next = 0.0
        self.updates = 0

    def status(self, text: str) -> None:
        pass

    def feed(self, delta: str) -> None:
        import time

        self._parts.append(delta)
        now = time.perf_counter()
        if now >= self._next:
            self._next = now + self.interval
            self._handle.update({"text/markdown": "".join(self._parts)}, raw=True)

    def finish(self, text: str, footer: Any = None) -> None:
        self._handle.update({"text/markdown": text, "text/plain": text}, raw=True)


def summarize(messages: list[Published], reply_bytes: int) -> dict[str, float]:
    """Live bytes (before the final clear), final bytes, update rate and longest pause."""
    clear = next((i for i, m in enumerate(messages) if m.kind == "clear_output"), len(messages))
    live = [m for m in messages[:clear] if m.kind != "clear_output"]
    final = [m for m in messages[clear:] if "text/markdown" in m.mimetypes]
    # One view update may send a few messages at once (a finished piece, then the open rest).
    times = [m.time for m in live]
    updates = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > SAME_UPDATE]
    span = updates[-1] - updates[0] if len(updates) > 1 else 0.0
    gaps = [b - a for a, b in itertools.pairwise(updates)]
    return {
        "live": sum(m.nbytes for m in live) / reply_bytes,
        "final": sum(m.nbytes for m in final) / reply_bytes,
        "messages": len(live),
        "updates_per_s": (len(updates) - 1) / span if span else 0.0,
        "max_gap": max(gaps, default=0.0),
    }


def _stream(ip: Any, publisher: CountingPublisher, model: str) -> tuple[list[Published], int]:
    publisher.reset()
    run_chat(ip, model)
    reply = ip.find_cell_magic("chat").__self__.session.last_reply
    return list(publisher.messages), len(reply.text.encode())


def measure(url: str) -> dict[str, Any]:
    from nbchat import render

    ip, publisher = nbchat_shell(url, live=True)
    interval = float(ip.find_cell_magic("chat").__self__.update_interval)
    results: dict[str, Any] = {}
    for shape, (model, target) in SHAPES.items():
        name, _, options = model.partition("@")
        model = f"{name}@chunks={CHUNKS},delay={1 / RATE}" + (f",{options}" if options else "")
        runs: dict[str, list[dict[str, float]]] = {"nbchat": [], "naive": []}
        reply_bytes = 0
        for round in range(ROUNDS):
            messages, reply_bytes = _stream(ip, publisher, model)
            runs["nbchat"].append(summarize(messages, reply_bytes))
            if round:
                continue
            live_markdown = render.LiveMarkdown
            render.LiveMarkdown = lambda **kw: NaiveMarkdown(kw.get("interval", interval))  # type: ignore[assignment,misc]
            try:
                messages, reply_bytes = _stream(ip, publisher, model)
            finally:
                render.LiveMarkdown = live_markdown  # type: ignore[misc]
            messages.append(Published(messages[-1].time, "clear_output", 0))
            runs["naive"].append(summarize(messages, reply_bytes))
        results[shape] = {
            "target": target,
            "reply_bytes": reply_bytes,
            **{
                who: {key: median([r[key] for r in rs]) for key in rs[0]}
                for who, rs in runs.items()
            },
        }
    return {"interval": interval, "shapes": results}


def report(r: dict[str, Any]) -> list[str]:
    lines = [
        f"### 2. Bytes to the frontend ÷ reply bytes, {CHUNKS:,} chunks at {RATE} chunks/s, "
        f"update_interval {r['interval']:g} s, median of {ROUNDS}",
        "",
        "| reply | view | while streaming | final output | total | target "
        "| updates/s | longest pause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    once = []
    for shape, s in r["shapes"].items():
        name = f"{shape} ({s['reply_bytes'] / 1000:.1f} KB)"
        for who in ("nbchat", "naive"):
            m = s[who]
            total = m["live"] + m["final"]
            final = f"{m['final']:.2f} x" if who == "nbchat" else "(in place)"
            target = "" if who == "naive" else f"≤ {s['target']:g} x" if s["target"] else "none"
            lines.append(
                f"| {name if who == 'nbchat' else ''} | {who} | {m['live']:.2f} x "
                f"| {final} | **{total:.2f} x** | {target} "
                f"| {m['updates_per_s']:.1f} | {m['max_gap'] * 1000:.0f} ms |"
            )
        once.append(f"{shape} {s['nbchat']['live'] + s['nbchat']['final'] / 2:.2f} x")
    lines += [
        "",
        "Total = while streaming + final output: the UTF-8 sizes of every MIME value of "
        "every display_data and update_display_data message, footer left out. The final "
        "output holds the reply twice, as text/markdown and as text/plain for frontends "
        "that show only text (jupyter console, qtconsole, Spyder); counting it once, as "
        f'the targets\' "one final clean output" does: {"; ".join(once)}. A code fence '
        "is never cut, so the open fence is re-sent whole on each update, at most "
        "40,000 characters a second (nbchat.render.OPEN_RATE).",
    ]
    return lines
