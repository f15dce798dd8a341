"""6. The exchange record at scale: `%chat log`, `%chat usage` and `%chat resume` (run as
magics in an InteractiveShell with nbchat loaded) on records of 1,000, 10,000 and
100,000 exchanges of the notebook they are asked about.

Each record is written once through `Record` (so the usage triggers run as in use):
kernels of 50 exchanges each, two conversations, a reset every 20 turns (so the
conversation `%chat resume` rebuilds holds at most 20 turns, as a real one would),
a few exchanges left streaming by dead kernels, and one map result per 10 exchanges.
Rounds interleave the sizes (opening a record is
not timed); medians. The queries should grow no faster than the
log of the row count: 100,000 rows may cost at most log(1e5)/log(1e3) = 1.67 x 1,000.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import median, nbchat_shell

SIZES = (1_000, 10_000, 100_000)
ROUNDS = 7
COMMANDS = ("log", "usage", "resume")


def build(path: Path, notebook: str, rows: int) -> None:
    """A record of `rows` exchanges of `notebook` (see the module's docstring)."""
    from nbchat.record import Record

    record = Record(path)
    record.query("BEGIN")
    kept: dict[str, list[int]] = {"default": [], "notes": []}
    for n in range(rows):
        session = f"kernel-{n // 50:06d}"
        name = "notes" if n % 5 == 4 else "default"
        if len(kept[name]) == 20:
            record.forget(notebook, name)
            kept[name] = []
        row = record.start(
            notebook=notebook,
            session=session,
            conversation=name,
            context=json.dumps(kept[name]),
            model="gpt-4o-mini",
            prompt=json.dumps({"role": "user", "content": f"question {n}"}),
            request=json.dumps({"model": "gpt-4o-mini", "messages": []}),
        )
        if n % 997 == 996:
            continue  # a kernel died mid-reply: left streaming
        record.finish(
            row,
            status="complete",
            kept=1,
            reply=f"answer {n}: " + "words " * 20,
            reply_model="gpt-4o-mini",
            prompt_tokens=30,
            completion_tokens=40,
            total_tokens=70,
            cost=0.00003,
            latency=0.5,
        )
        kept[name].append(row)
        if n % 10 == 0:
            record.query(
                "INSERT INTO map_results (key, notebook, session, created, model, reply, "
                "prompt_tokens, completion_tokens, total_tokens, cost) "
                "VALUES (?, ?, ?, ?, 'gpt-4o-mini', '{}', 10, 10, 20, 0.00001)",
                (f"key-{n}", notebook, session, time.time()),
            )
    record.query("COMMIT")
    record.close()


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    from nbchat.identity import notebook_identity

    ip, _ = nbchat_shell("http://127.0.0.1:9/v1", live=False)
    notebook = notebook_identity(ip)
    magics = ip.find_cell_magic("chat").__self__
    before = magics.history_path
    times: dict[tuple[str, int], list[float]] = {(c, n): [] for c in COMMANDS for n in SIZES}
    build_s: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for n in SIZES:
            paths[n] = Path(tmp) / f"record-{n}.sqlite"
            started = time.perf_counter()
            build(paths[n], notebook, n)
            build_s[n] = time.perf_counter() - started

        def run(command: str, n: int) -> float:
            if magics.history_path != str(paths[n]):  # (re)opens the record: not timed
                magics.history_path = str(paths[n])
                with contextlib.redirect_stdout(io.StringIO()):
                    ip.run_line_magic("chat", "usage")
            with contextlib.redirect_stdout(io.StringIO()):
                started = time.perf_counter()
                ip.run_line_magic("chat", command)
                return time.perf_counter() - started

        for n in SIZES:  # warm up: open each record once
            for command in COMMANDS:
                run(command, n)
        for _ in range(rounds):
            for n in SIZES:
                for command in COMMANDS:
                    times[command, n].append(run(command, n))
        magics.history_path = before
        if magics._recorder is not None and magics._recorder._record is not None:
            magics._recorder._record.close()  # before the directory goes
            magics._recorder._record = None
    return {
        "rounds": rounds,
        "build": build_s,
        "times": {f"{c} {n}": median(v) for (c, n), v in times.items()},
    }


def report(r: dict[str, Any]) -> list[str]:
    t = r["times"]
    lo, hi = SIZES[0], SIZES[-1]
    bound = math.log(hi) / math.log(lo)
    head = " | ".join(f"{n:,} exchanges" for n in SIZES)
    lines = [
        f"### 6. The record at scale: median of {r['rounds']} interleaved rounds",
        "",
        f"| | {head} | {hi:,} ÷ {lo:,} |",
        "|---|" + "---|" * (len(SIZES) + 1),
    ]
    for command in COMMANDS:
        cells = " | ".join(f"{t[f'{command} {n}'] * 1000:.2f} ms" for n in SIZES)
        growth = t[f"{command} {hi}"] / t[f"{command} {lo}"]
        lines.append(f"| `%chat {command}` | {cells} | {growth:.2f} |")
    built = ", ".join(f"{n:,}: {s:.1f} s" for n, s in r["build"].items())
    lines += [
        "",
        f"Target: growth from {lo:,} to {hi:,} rows ≤ log({hi:,}) ÷ log({lo:,}) = {bound:.2f} "
        f"(logarithmic). Records written in ({built}).",
    ]
    return lines
