"""Run every nbchat benchmark once and print Markdown tables (the README's Performance).

    pip install -r benchmarks/requirements.txt   # the openai SDK, a baseline only
    python -m benchmarks                          # or: python benchmarks/run.py

Every ratio compares with a baseline measured in this same run on this machine.
The mock server runs in its own process (`python -m nbchat.mockserver`).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import display_bytes, first_token, record_queries, startup, throughput
from benchmarks import map as map_suite
from benchmarks.common import mock_server

SUITES = ("throughput", "bytes", "first-token", "map", "record", "startup")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", choices=SUITES, action="append", help="run only these")
    args = parser.parse_args(argv)
    chosen = args.only or list(SUITES)
    # Benchmarks record their exchanges as a user's cells do, but never in the user's record.
    os.environ["NBCHAT_HISTORY_PATH"] = str(
        Path(tempfile.mkdtemp(prefix="nbchat-bench-")) / "history.sqlite"
    )
    started = time.perf_counter()
    import IPython

    import nbchat

    print(
        f"nbchat {nbchat.__version__} · Python {platform.python_version()} · "
        f"IPython {IPython.__version__} · {platform.machine()}, {_cpus()} CPUs\n"
    )
    sections: list[list[str]] = []
    with mock_server() as url:
        if "throughput" in chosen:
            sections.append(throughput.report(throughput.measure(url)))
            _print(sections[-1])
        if "bytes" in chosen:
            sections.append(display_bytes.report(display_bytes.measure(url)))
            _print(sections[-1])
        if "first-token" in chosen:
            sections.append(first_token.report(first_token.measure(url)))
            _print(sections[-1])
        if "map" in chosen:
            sections.append(map_suite.report(map_suite.measure(url)))
            _print(sections[-1])
    if "record" in chosen:
        sections.append(record_queries.report(record_queries.measure()))
        _print(sections[-1])
    if "startup" in chosen:
        sections.append(startup.report(startup.measure()))
        _print(sections[-1])
    print(f"(whole run: {time.perf_counter() - started:.0f} s)")
    return 0


def _print(lines: list[str]) -> None:
    print("\n".join(lines) + "\n", flush=True)


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
