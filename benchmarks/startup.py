"""4. `%load_ext nbchat` start-up over bare IPython, in fresh processes.

Each run is a new interpreter that builds an InteractiveShell; half of them also
load the extension. Runs alternate so drift hits both alike. Reported: the CPU
time of the whole process (user + system) and of the `load_ext` call alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .common import NO_SDK, has_openai, median

ROUNDS = 12
SCRIPT = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
started = time.process_time()
{load}
heavy = [m for m in ("httpx", "httpx2", "ipywidgets", "markdown_it") if m in sys.modules]
print(json.dumps({{"load": time.process_time() - started, "heavy": heavy}}))
"""
KINDS = {
    "bare IPython": "",
    "IPython + %load_ext nbchat": "ip.run_line_magic('load_ext', 'nbchat')",
    "IPython + import openai": "import openai",
}


#: As an installed package runs: with its bytecode cached (pip compiles on install). With
#: PYTHONDONTWRITEBYTECODE set, a source checkout would compile every module at each start.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def one_process(load: str) -> tuple[float, dict[str, Any]]:
    """(CPU seconds of the whole child process, what it printed)."""
    before = os.times()
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(load=load)],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    ).stdout
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return cpu, json.loads(out.splitlines()[-1])


def measure() -> dict[str, Any]:
    kinds = {k: code for k, code in KINDS.items() if "openai" not in code or has_openai()}
    process: dict[str, list[float]] = {kind: [] for kind in kinds}
    load: dict[str, list[float]] = {kind: [] for kind in kinds}
    heavy: set[str] = set()
    for code in kinds.values():  # warm up: bytecode written, files in the page cache
        one_process(code)
    for _ in range(ROUNDS):
        for kind, code in kinds.items():
            cpu, printed = one_process(code)
            process[kind].append(cpu)
            load[kind].append(printed["load"])
            if "nbchat" in kind:
                heavy.update(printed["heavy"])
    return {
        "process": {k: median(v) for k, v in process.items()},
        "load": {k: median(v) for k, v in load.items()},
        "heavy": sorted(heavy),
    }


def report(r: dict[str, Any]) -> list[str]:
    bare = r["process"]["bare IPython"]
    lines = [
        f"### 4. Start-up in fresh processes (CPU time), median of {ROUNDS}",
        "",
        "| | whole process | over bare IPython | the load step alone |",
        "|---|---|---|---|",
    ]
    for kind in KINDS:
        if kind not in r["process"]:
            lines.append(f"| {kind} | {NO_SDK} | | |")
            continue
        cpu = r["process"][kind]
        lines.append(
            f"| {kind} | {cpu * 1000:.0f} ms | {(cpu - bare) * 1000:+.0f} ms "
            f"| {r['load'][kind] * 1000:.1f} ms |"
        )
    heavy = ", ".join(r["heavy"]) or "none"
    lines += [
        "",
        f"Target: `%load_ext nbchat` ≤ 15 ms over bare IPython. Heavy modules it loaded: {heavy}.",
    ]
    return lines
