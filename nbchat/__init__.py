"""nbchat: talk to OpenAI-compatible chat models from Jupyter with `%%chat`.

`%load_ext nbchat` registers the magics; nothing heavy (httpx, ipywidgets)
is imported until the first message is sent.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "load_ipython_extension",
    "panel",
    "tool",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    """`nbchat.map`, `nbchat.compare` and `nbchat.tool`, imported on first use (nothing
    heavy at import)."""
    if name == "map":
        from .batch import map

        return map
    if name == "compare":
        from .comparison import compare

        return compare
    if name == "tool":
        from .tools import tool

        return tool
    raise AttributeError(f"module 'nbchat' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """Register `%%chat` / `%chat`; loading twice keeps the first registration."""
    from .magics import ChatMagics

    if any(isinstance(c, ChatMagics) for c in ipython.configurables):
        return
    magics = ChatMagics(shell=ipython)  # Magics.__init__ joins shell.configurables
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)


def panel(shell: Any = None) -> Any:
    """A chat panel on the running kernel's conversation (as `%chat panel`).

    Loads the extension if needed; ipywidgets is imported only here.
    """
    from .widget import open_panel

    return open_panel(shell)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics, close open panels and the HTTP client; the conversation is discarded."""
    import sys

    from .magics import ChatMagics, keep_questions

    if "nbchat.widget" in sys.modules:
        sys.modules["nbchat.widget"].close_panels()
    if keep_questions in getattr(ipython, "input_transformers_cleanup", ()):
        ipython.input_transformers_cleanup.remove(keep_questions)
    for configurable in [c for c in ipython.configurables if isinstance(c, ChatMagics)]:
        ipython.configurables.remove(configurable)
        configurable._unwatch_errors()
        if configurable._session is not None:
            configurable._session.close()
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("chat", None)
    ipython.magics_manager.registry.pop("ChatMagics", None)
