"""`python -m nbchat demo`: run the quickstart notebook end to end and save an HTML copy.

Without OPENAI_API_KEY it starts the package's local mock server and points
the notebook's kernel at it (OPENAI_BASE_URL), so the demo needs no key and
no network; with a key it talks to the configured endpoint for real.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["find_notebook", "run_demo"]


def find_notebook(name: str = "quickstart.ipynb") -> Path:
    """The notebook from a source checkout (notebooks/) or the installed package."""
    here = Path(__file__).resolve().parent
    installed = Path(sys.prefix) / "share" / "nbchat" / "notebooks" / name
    for candidate in (here.parent / "notebooks" / name, installed):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"cannot find {name} next to the nbchat package")


def _print_outputs(cell: Any) -> None:
    if cell["cell_type"] != "code":
        return
    print(f"\n\x1b[1mIn [{cell.get('execution_count') or ' '}]:\x1b[0m {cell['source']}")
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        text = data.get("text/markdown") or data.get("text/plain") or output.get("text", "")
        if output.get("output_type") == "error":
            text = "\n".join(output.get("traceback", []))
        if text:
            print(text.rstrip())


class _TerminalView:
    """Shows a reply in the terminal as it streams, so the demo shows streaming itself."""

    def status(self, text: str) -> None:
        print(f"({text})", flush=True)

    def feed(self, delta: str) -> None:
        sys.stdout.write(delta)
        sys.stdout.flush()

    def finish(self, text: str, footer: Any = None) -> None:
        from .render import footer_text

        print()
        if footer is not None:
            print(f"\x1b[2m{footer_text(footer)}\x1b[0m", flush=True)


def stream_in_terminal(question: str) -> None:
    """One turn streamed live to stdout with the same session code the magic uses."""
    from .config import ChatSettings
    from .session import ChatSession

    print(f"\x1b[1m%%chat\x1b[0m {question}\n")
    session = ChatSession()
    try:
        session.run(question, ChatSettings().settings(), _TerminalView())
    finally:
        session.close()


def run_demo(out_dir: str = "demo-output", notebook: str = "quickstart.ipynb") -> Path:
    """Execute the notebook, echo its outputs, write .ipynb and .html; returns the HTML path."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter
    except ImportError as missing:  # pragma: no cover - depends on the install
        raise SystemExit(
            f"the demo needs the demo extra: pip install 'nbchat[demo]' ({missing})"
        ) from None

    from .mockserver import MockServer

    source = find_notebook(notebook)
    nb = nbformat.read(source, as_version=4)
    server = None
    if not os.environ.get("OPENAI_API_KEY"):
        server = MockServer(delay=0.02, ttft=0.3).start()
        os.environ["OPENAI_BASE_URL"] = server.url
        # Mock exchanges belong in the demo's folder, not in the user's real record.
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        os.environ["NBCHAT_HISTORY_PATH"] = str(Path(out_dir).resolve() / "history.sqlite")
        print(f"OPENAI_API_KEY is not set: using nbchat's local mock server at {server.url}")
    else:
        print(f"using {os.environ.get('OPENAI_BASE_URL', 'https://api.openai.com/v1')}")
    started = time.perf_counter()
    try:
        stream_in_terminal("Explain list comprehensions in two sentences.")
        print(f"\nnow running {source.name} in a Jupyter kernel ...")
        client = NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(source.parent)}},
        )
        client.execute()
    finally:
        if server is not None:
            server.stop()
    for cell in nb.cells:
        _print_outputs(cell)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target / source.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    html_path = target / source.with_suffix(".html").name
    html_path.write_text(html, encoding="utf-8")
    print(f"\nran {source.name} in {time.perf_counter() - started:.1f} s; open {html_path}")
    return html_path


if __name__ == "__main__":  # pragma: no cover
    run_demo(*sys.argv[1:2])
