"""Helpers for tests that run a real kernel: collect a cell's messages, save a notebook."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def running_kernel(env: dict[str, str]) -> Iterator[Any]:
    """A real python3 kernel with `env`; yields its blocking client, shuts it down after."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def stop(proc: subprocess.Popen[Any], grace: float) -> None:
    """Terminate a server process; kill it if it has not gone after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def collect(kernel: Any, msg_id: str) -> list[dict[str, Any]]:
    """The iopub messages of the request `msg_id`, until its kernel is idle again."""
    messages = []
    while True:
        msg = kernel.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
        messages.append(msg)


def run_and_save(cells: list[str], path: Path, env: dict[str, str]) -> Any:
    """Execute `cells` as a notebook (errors allowed), save it to `path`, read it back."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True).execute(env=env)
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)
