"""Root pytest hooks: notebooks under nbval talk to the package's local mock server.

The kernels nbval starts inherit this process's environment, so pointing
OPENAI_BASE_URL at a mock server started here (and dropping any real key)
makes every notebook run offline and deterministic.
"""

from __future__ import annotations

import os
from typing import Any

_server: Any = None


def pytest_configure(config: Any) -> None:
    global _server
    if not getattr(config.option, "nbval", False):
        return
    from nbchat.mockserver import MockServer

    _server = MockServer(delay=0, ttft=0).start()
    for name in ("OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        os.environ.pop(name, None)
    os.environ["OPENAI_BASE_URL"] = _server.url
    # nbval ignores clear_output and update_display_data (Jupyter frontends and
    # nbclient honour them), so notebooks under nbval show each reply once, at
    # the end; the live path is tested with nbclient in tests/.
    os.environ["NBCHAT_DISPLAY_MODE"] = "final"


def pytest_unconfigure(config: Any) -> None:
    if _server is not None:
        _server.stop()
