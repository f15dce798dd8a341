"""`%load_ext nbchat` stays cheap: nothing heavy is imported until the first message."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "httpx", "httpcore", "httpx2", "httpcore2", "ipywidgets", "markdown_it", "openai", "anyio",
    "pandas", "numpy", "polars", "tiktoken", "PIL", "matplotlib",
)  # fmt: skip

PROBE = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "nbchat")
loaded = "chat" in ip.magics_manager.magics["cell"]
modules = sorted(sys.modules)
built = "parser" in vars(ip.find_cell_magic("chat").__func__)
from IPython.utils.capture import capture_output
with capture_output() as help:
    ip.run_cell("%%chat?")
print(json.dumps({"loaded": loaded, "modules": modules, "built": built, "help": help.stdout}))
"""


def test_load_ext_imports_nothing_heavy():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["loaded"]
    heavy = [m for m in result["modules"] if m.split(".")[0] in HEAVY]
    assert heavy == []
    # the flags' parser and help are built on first use, yet `%%chat?` shows them all
    assert not result["built"]
    assert "uuid" not in result["modules"]
    for flag in ("--temperature", "--params", "--dry-run", "--compare", "--interpolate", "--with"):
        assert flag in result["help"], flag
