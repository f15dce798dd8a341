"""Where code runs in a notebook: which notebook, and which cell.

The record keys exchanges by notebook so `%chat resume` after a kernel restart
finds the notebook's conversations, and the magic passes the cell id so a
re-run cell replaces its turn. Both come from what the kernel can know:

- notebook: `$JPY_SESSION_NAME` (Jupyter Server sets it to the notebook's path
  for the kernel it starts), VS Code's `__vsc_ipynb_file__` in the namespace,
  else the kernel id from the connection file (kept across restarts), else an
  id unique to this process (terminal IPython).
- cell: `metadata.cellId` of the execute request being run (sent by JupyterLab,
  Notebook 7 and VS Code; the key ipykernel itself reads).
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["PROCESS_ID", "cell_id", "execute_request", "notebook_identity"]

PROCESS_ID = f"process:{os.urandom(6).hex()}"  # not uuid: it imports `platform`


def notebook_identity(shell: Any) -> str:
    """The notebook this shell runs for, as stably as the kernel can tell."""
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    user_ns = getattr(shell, "user_ns", None) or {}
    vscode = user_ns.get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and vscode:
        return vscode
    kernel = kernel_id()
    return f"kernel:{kernel}" if kernel else PROCESS_ID


def kernel_id() -> str | None:
    """The id in the kernel's connection file name (`kernel-<id>.json`), if in a kernel."""
    if "ipykernel.kernelapp" not in sys.modules:  # not a kernel: don't import ipykernel
        return None
    try:
        from ipykernel.connect import get_connection_file

        path = get_connection_file()
    except Exception:  # not initialised, or an ipykernel without this helper
        return None
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.removeprefix("kernel-") or None


def execute_request(shell: Any) -> dict[str, Any] | None:
    """The execute request the kernel is running now (ipykernel ≥ 6; older: `_parent_header`)."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    get_parent = getattr(kernel, "get_parent", None)
    parent: Any
    if get_parent is None:
        parent = getattr(kernel, "_parent_header", None)
    else:
        try:
            parent = get_parent("shell")
        except TypeError:  # a kernel whose get_parent takes no channel
            parent = get_parent()
    return parent if isinstance(parent, dict) else None


def cell_id(request: dict[str, Any] | None) -> str | None:
    """The cell id a frontend put in the request's metadata, or None."""
    metadata = (request or {}).get("metadata")
    value = metadata.get("cellId") if isinstance(metadata, dict) else None
    return str(value) if value else None
