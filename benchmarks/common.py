"""Shared benchmark plumbing: the mock server in its own process, a counting display
publisher, a shell with nbchat loaded, and medians.

The server runs in a subprocess so it never competes with the measured client
for the GIL; everything measured runs in this process, one thing at a time.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.displaypub import DisplayPublisher

__all__ = [
    "NO_SDK",
    "CountingPublisher",
    "Published",
    "forget",
    "has_openai",
    "median",
    "mock_server",
    "nbchat_shell",
    "run_chat",
    "timed",
]


NO_SDK = "openai SDK not installed (pip install -r benchmarks/requirements.txt)"


def has_openai() -> bool:
    """Whether the openai SDK, a baseline only, can be imported (it is never a dependency)."""
    import importlib.util

    return importlib.util.find_spec("openai") is not None


@contextmanager
def mock_server() -> Iterator[str]:
    """The mock server (with benchmarks/shapes.py's replies) in a subprocess; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.shapes", "--port", "0", "--delay", "0", "--ttft", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,  # where `benchmarks` is importable
    )
    try:
        assert proc.stdout is not None
        found = re.search(r"http://\S+", proc.stdout.readline())
        if not found:
            raise RuntimeError("the mock server did not print its URL")
        yield found.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Published:
    """One message to the frontend: when, what kind, and the bytes of its MIME values."""

    time: float
    kind: str  # display_data | update_display_data | clear_output
    nbytes: int
    mimetypes: tuple[str, ...] = ()


class CountingPublisher(DisplayPublisher):  # type: ignore[misc]
    """Records every display message instead of sending it (what a kernel would send)."""

    def __init__(self) -> None:
        super().__init__(shell=None)
        self.messages: list[Published] = []

    def publish(
        self,
        data: dict[str, Any],
        metadata: Any = None,
        source: Any = None,
        *,
        transient: Any = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        nbytes = sum(len(v.encode()) for v in data.values() if isinstance(v, str))
        kind = "update_display_data" if update else "display_data"
        self.messages.append(Published(time.perf_counter(), kind, nbytes, tuple(data)))

    def clear_output(self, wait: bool = False) -> None:
        self.messages.append(Published(time.perf_counter(), "clear_output", 0))

    def reset(self) -> None:
        self.messages.clear()


def nbchat_shell(url: str, *, live: bool = True) -> tuple[Any, CountingPublisher]:
    """The InteractiveShell with nbchat loaded, pointed at `url`, its displays counted."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    publisher = CountingPublisher()
    ip.display_pub = publisher
    if "nbchat" not in ip.extension_manager.loaded:
        ip.run_line_magic("load_ext", "nbchat")
    ip.run_line_magic("config", f"ChatMagics.base_url = {url!r}")
    ip.run_line_magic("config", "ChatMagics.api_key = 'sk-bench'")
    ip.run_line_magic("config", f"ChatMagics.display_mode = {'live' if live else 'final'!r}")
    return ip, publisher


def run_chat(ip: Any, model: str, prompt: str = "benchmark") -> None:
    """One `%%chat` cell, as the first turn of the conversation (so every run sends the same)."""
    forget(ip)
    result = ip.run_cell(f"%%chat -m {model}\n{prompt}")
    if not result.success:
        raise RuntimeError(f"%%chat failed: {result.error_in_exec or result.error_before_exec}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def forget(ip: Any) -> None:
    """Drop earlier turns: they would be re-sent with every request."""
    ip.find_cell_magic("chat").__self__.session.conversation().reset()
