"""Root pytest hooks: notebooks under nbval talk to the package's local mock server.

The kernels nbval starts inherit this process's environment, so pointing
OPENAI_BASE_URL at a mock server started here (and dropping any real key)
makes every notebook run offline and deterministic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

_server: Any = None
_record_dir: str | None = None


def pytest_configure(config: Any) -> None:
    global _server, _record_dir
    # No test and no kernel a test starts may write the user's own exchange record.
    _record_dir = tempfile.mkdtemp(prefix="nbchat-test-")
    os.environ["NBCHAT_HISTORY_PATH"] = os.path.join(_record_dir, "history.sqlite")
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
    # Receipts count tokens with tiktoken where its BPE file loads: the stored outputs
    # hold the estimate, so every machine counts the same way.
    os.environ["NBCHAT_TOKEN_COUNTER"] = "estimate"


def pytest_unconfigure(config: Any) -> None:
    if _record_dir is not None:
        shutil.rmtree(_record_dir, ignore_errors=True)
    if _server is not None:
        _server.stop()
