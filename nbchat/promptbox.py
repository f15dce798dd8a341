"""The panel's prompt box: a textarea where Enter sends and Shift+Enter starts a new line.

ipywidgets 8 has no such control: its Textarea cannot tell Enter from
Shift+Enter, and its Text sends "submit" on both, drops the newlines of pasted
code, and may submit before its last keystrokes reached the kernel (custom
messages bypass the throttled state sync). So this one widget is an anywidget:
a few lines of JavaScript shipped as a string, no frontend build. The submit
message carries the text itself, so what is sent is exactly what was typed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

__all__ = ["PANEL_CSS", "PromptBox"]

_ESM = """
export default {
  render({ model, el }) {
    const box = document.createElement("textarea");
    box.className = "nbchat-prompt";
    box.rows = 2;
    const show = () => {
      if (box.value !== model.get("value")) box.value = model.get("value");
      box.placeholder = model.get("placeholder");
      box.disabled = model.get("disabled");
    };
    show();
    model.on("change:value change:placeholder change:disabled", show);
    const clear = (msg) => {
      if (msg && msg.event === "clear") {  // in order after this view's own edits
        box.value = "";
        model.set("value", "");
        model.save_changes();
      }
    };
    model.on("msg:custom", clear);
    box.addEventListener("input", () => {
      model.set("value", box.value);
      model.save_changes();
    });
    box.addEventListener("keydown", (event) => {
      event.stopPropagation();  // keep notebook shortcuts (Shift+Enter runs a cell) out
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        model.send({ event: "submit", text: box.value });
      }
    });
    el.appendChild(box);
    return () => {
      model.off("change:value change:placeholder change:disabled", show);
      model.off("msg:custom", clear);
    };
  },
};
"""

#: The whole panel's look; JupyterLab's CSS variables follow the light/dark theme.
PANEL_CSS = """
.nbchat-panel { border: 1px solid var(--jp-border-color2); border-radius: 6px;
  padding: 6px; background: var(--jp-layout-color1); color: var(--jp-ui-font-color1); }
.nbchat-panel .nbchat-scroll { flex-direction: column-reverse; }  /* stays at the end */
.nbchat-scroll > *, .nbchat-transcript > *, .nbchat-turn > * { flex-shrink: 0; }
.nbchat-panel .widget-html-content { line-height: 1.4; white-space: pre-wrap; }
.nbchat-you { align-self: flex-end; max-width: 85%; white-space: pre-wrap;
  background: var(--jp-layout-color2); border-radius: 8px; padding: 4px 10px;
  margin: 6px 0 2px 0; font-family: var(--jp-content-font-family); }
.nbchat-role { font-size: var(--jp-ui-font-size0); color: var(--jp-ui-font-color2);
  font-weight: 600; margin-top: 4px; }
.nbchat-footer, .nbchat-totals, .nbchat-hint { font-size: var(--jp-ui-font-size0);
  color: var(--jp-ui-font-color2); font-family: var(--jp-code-font-family); }
.nbchat-status { font-size: var(--jp-ui-font-size1); color: var(--jp-ui-font-color2); }
.nbchat-error { color: var(--jp-error-color1); }
.nbchat-prompt { width: 100%; box-sizing: border-box; resize: vertical;
  font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1);
  color: var(--jp-ui-font-color0); background: var(--jp-layout-color0);
  border: 1px solid var(--jp-border-color1); border-radius: 4px; padding: 6px 8px; }
.nbchat-prompt:focus { outline: none; border-color: var(--jp-brand-color1); }
"""


class PromptBox(anywidget.AnyWidget):
    """A multi-line prompt: Enter calls the `on_submit` callbacks with the text."""

    _esm = _ESM
    _css = PANEL_CSS
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._submit: list[Callable[[str], None]] = []
        self.on_msg(self._on_message)

    def on_submit(self, callback: Callable[[str], None]) -> None:
        self._submit.append(callback)

    def clear(self) -> None:
        """Empty the box once the text was taken.

        Told to the browser as a message, so it lands after the keystrokes it may
        still be syncing (setting `value` alone could be overwritten by them).
        """
        self.send({"event": "clear"})
        self.value = ""

    def submit(self, text: str | None = None) -> None:
        """What pressing Enter does (`text` defaults to the box's value)."""
        text = self.value if text is None else text
        for callback in self._submit:
            callback(text)

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self.submit(str(content.get("text", "")))
