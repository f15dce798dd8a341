"""`%chat login`: type the API key into a hidden prompt, as a ChatMagics mixin.

The key is read with `getpass` (Jupyter shows a password field; nothing is
echoed or saved in the notebook) and kept only in this kernel's memory, as
the `ChatMagics.api_key` trait. A key given as an argument is refused: the
cell that holds it would be saved with the notebook.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, OptionError

__all__ = ["LoginCommand"]


class LoginCommand:
    """`%chat login`."""

    api_key: Any  # the ChatSettings trait

    def _cmd_login(self, rest: list[str]) -> None:
        """Ask for the API key without echoing it; it stays in memory, never in the notebook."""
        import getpass

        from IPython.core.error import StdinNotImplementedError

        if rest:
            raise OptionError(
                "%chat login takes no arguments",
                hint="a key typed into a cell is saved with the notebook; run %chat login alone",
            )
        try:
            key = getpass.getpass("API key (not shown, not saved): ").strip()
        except StdinNotImplementedError:
            raise ConfigError(
                "this frontend cannot ask for input",
                hint="set the OPENAI_API_KEY environment variable before starting Jupyter",
            ) from None
        except (EOFError, KeyboardInterrupt):
            key = ""
        if not key:
            print("no key entered; the API key is unchanged")
            return
        self.api_key = key
        print(f"API key set for this session ({self.api_key}); it is not saved in the notebook")
