"""Opt-in auto-loading: a startup file in an IPython profile that loads nbchat.

A startup file is the one piece IPython and every Jupyter kernel of that
profile run at start, and it can be added and removed without editing the
user's own ipython_config.py. `python -m nbchat autoload on|off|status`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STARTUP_NAME", "disable", "enable", "startup_file", "status"]

STARTUP_NAME = "50-nbchat-autoload.py"

STARTUP_SOURCE = """\
# Written by `python -m nbchat autoload on`; `python -m nbchat autoload off` removes it.
# Loads the nbchat extension (%%chat) in every IPython shell and kernel of this profile.
try:
    get_ipython().run_line_magic("load_ext", "nbchat")  # noqa: F821
except Exception as error:  # never break IPython's start-up
    print(f"nbchat autoload failed: {error}")
"""


def startup_file(profile: str = "default", ipython_dir: str | None = None) -> Path:
    from IPython.paths import get_ipython_dir

    root = Path(ipython_dir or get_ipython_dir())
    return root / f"profile_{profile}" / "startup" / STARTUP_NAME


def enable(profile: str = "default", ipython_dir: str | None = None) -> Path:
    path = startup_file(profile, ipython_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTUP_SOURCE, encoding="utf-8")
    return path


def disable(profile: str = "default", ipython_dir: str | None = None) -> bool:
    """Remove the startup file; False when auto-loading was not on."""
    path = startup_file(profile, ipython_dir)
    if not path.exists():
        return False
    path.unlink()
    return True


def status(profile: str = "default", ipython_dir: str | None = None) -> bool:
    return startup_file(profile, ipython_dir).exists()
