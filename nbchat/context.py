"""The session and settings that `nbchat.compare` / `nbchat.map` called from Python use.

Inside IPython with `%load_ext nbchat` they are the magic's own (same key,
base_url, prices and conversation as `%%chat`); anywhere else a standalone
session reads the same environment fallbacks (OPENAI_API_KEY, OPENAI_BASE_URL).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .session import ChatSession

__all__ = ["Context", "current"]

_standalone: ChatSession | None = None


@dataclass(frozen=True)
class Context:
    session: ChatSession
    settings: Settings
    live: bool  # the frontend can update outputs in place (a kernel)
    magics: Any = None  # the loaded ChatMagics, if any


def _shell() -> Any:
    """The running IPython shell, or None (IPython is never imported by this)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def current() -> Context:
    """The loaded extension's session and settings, else a standalone session."""
    global _standalone
    shell = _shell()
    if shell is not None:
        from .magics import ChatMagics

        for magics in shell.configurables:
            if isinstance(magics, ChatMagics):
                return Context(magics.session, magics.settings(), magics._live(), magics)
    if _standalone is None:
        _standalone = ChatSession()
    from .config import ChatSettings

    live = getattr(shell, "kernel", None) is not None
    return Context(_standalone, ChatSettings().settings(), live)
