"""Helpers for tests that run a real kernel: collect a cell's messages, save a notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
