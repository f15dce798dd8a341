"""`%load_ext nbchat` stays cheap: nothing heavy is imported until the first message."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("httpx", "httpcore", "ipywidgets", "markdown_it", "openai", "anyio")

PROBE = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "nbchat")
loaded = "chat" in ip.magics_manager.magics["cell"]
print(json.dumps({"loaded": loaded, "modules": sorted(sys.modules)}))
"""


def test_load_ext_imports_nothing_heavy():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["loaded"]
    heavy = [m for m in result["modules"] if m.split(".")[0] in HEAVY]
    assert heavy == []
