"""The chat panel (`%chat panel`, `nbchat.panel()`): widgets on the magic's own ChatSession.

One shared state: the transcript is the session's active conversation, so turns
made in `%%chat` cells appear here (refreshed after every cell) and turns made
here continue in the next cell. A reply streams in a worker thread so the kernel
stays free for Stop and for other cells; that thread updates the widgets itself
(ipywidgets sends each change as a comm message, which ipykernel accepts from any
thread) at most once per `update_interval` (see transcript.py).
"""

from __future__ import annotations

import html
import threading
import weakref
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .errors import ConfigError, Interrupted, NbChatError
from .promptbox import PromptBox
from .transcript import TurnView, close_tree, label, reply_widgets, totals, turn_box

if TYPE_CHECKING:
    from .config import Settings
    from .conversation import Conversation, Turn
    from .magics import ChatMagics
    from .types import Message

__all__ = ["ChatPanel", "close_panels", "open_panel"]

#: The API's default, where the slider starts unless ChatMagics.temperature is set.
DEFAULT_TEMPERATURE = 1.0
_panels: weakref.WeakSet[ChatPanel] = weakref.WeakSet()


class ChatPanel:
    """The panel: displays as its widget tree; `refresh()` re-reads the shared session."""

    def __init__(self, magics: ChatMagics) -> None:
        self.magics, self.session = magics, magics.session
        assert magics.shell is not None
        self._shell = magics.shell
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self.view: TurnView | None = None  # the last reply's
        self.tool_view: Any = None  # the last reply's tool cards and buttons (toolpanel)
        self.name = "default"  # the conversation shown and continued here
        self.streaming: str | None = None  # the conversation a reply streams in
        self.stop_wanted = threading.Event()
        self._shown: list[Turn] = []  # the turns in the transcript, one box each
        self._boxes: list[widgets.Widget] = []
        self._pending: widgets.Widget | None = None  # the reply streaming, or a broken one
        self._syncing = False
        settings = magics.settings()
        wide = {"description_width": "initial"}
        self.conversations = widgets.Dropdown(description="Conversation", style=wide)
        auto = widgets.Layout(width="auto")
        self.new = widgets.Button(description="New conversation", icon="plus", layout=auto)
        self.model = widgets.Dropdown(
            description="Model", options=[settings.model], value=settings.model, style=wide
        )
        self.model.add_class("nbchat-model")
        self.temperature = widgets.FloatSlider(
            value=self._configured_temperature(), min=0.0, max=2.0, step=0.1,
            description="Temperature", readout_format=".1f", style=wide,
        )  # fmt: skip
        self.temperature_moved = False  # True once the user moves the slider
        self.system = widgets.Textarea(
            description="System", rows=1, continuous_update=False, style=wide,
            layout=widgets.Layout(width="100%"),
        )  # fmt: skip
        self.transcript = widgets.VBox()
        self.transcript.add_class("nbchat-transcript")
        scroll = widgets.Box([self.transcript], layout=widgets.Layout(max_height="480px"))
        scroll.layout.overflow = "auto"
        scroll.add_class("nbchat-scroll")
        self.status = widgets.HTML()
        self.status.add_class("nbchat-status")
        self.prompt = PromptBox(placeholder="Message (Enter sends, Shift+Enter for a new line)")
        self.prompt.layout.flex = "1"
        self.send = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane", layout=auto
        )
        self.stop = widgets.Button(description="Stop", icon="stop", disabled=True, layout=auto)
        self.totals = label("", "nbchat-totals")
        self.attach = widgets.Text(  # names from the namespace, sent as summaries (--with)
            description="With", placeholder="df, x: variables to attach (summaries)", style=wide
        )
        self.attach_error = widgets.Checkbox(description="last error", indent=False, layout=auto)
        self._receipts: dict[int, str] = {}  # id(user message) -> its receipt line
        self._context: tuple[str, bool] = ("", False)
        toolbar = widgets.HBox([self.conversations, self.new, self.model, self.temperature])
        toolbar.layout.flex_flow = "row wrap"
        entry = widgets.HBox([self.prompt, self.send, self.stop])
        context = widgets.HBox([self.attach, self.attach_error])
        self.widget = widgets.VBox(
            [toolbar, self.system, scroll, self.status, context, entry, self.totals]
        )
        self.widget.add_class("nbchat-panel")

        self.prompt.on_submit(self.submit)
        self.send.on_click(lambda _: self.submit(self.prompt.value))
        self.stop.on_click(lambda _: self.request_stop())
        self.new.on_click(lambda _: self.new_conversation())
        self.conversations.observe(self._pick_conversation, "value")
        self.temperature.observe(self._move_temperature, "value")
        self.system.observe(self._set_system, "value")
        self._models = threading.Thread(target=self._load_models, args=(settings,), daemon=True)
        self._models.start()
        self._shell.events.register("post_run_cell", self._after_cell)
        _panels.add(self)
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def conversation(self) -> Conversation:
        return self.session.conversation(self.name)

    # -- actions -----------------------------------------------------------------

    def submit(self, text: str) -> None:
        """Send `text` in the current conversation; the reply streams in a worker thread."""
        text = text.strip()
        if not text:
            return self.say("the message is empty", error=True)
        if self.streaming is not None:
            return self.say("a reply is still streaming: wait for it or press Stop", error=True)
        settings = self.magics.settings()
        name = self.name
        params = self.request_params()
        names, error = self.attach.value, self.attach_error.value
        try:  # the names and the last error, checked here: nothing is sent if one fails
            message, receipt = self.magics._panel_context(
                text, names, error, settings, name, self.model.value, params
            )
            # ChatMagics.tools: each call that needs approval gets Approve / Deny buttons
            # (nbchat.toolpanel); notes (the round limit) go to the status line
            tools = self.magics._tool_runner(
                None, self.model.value or settings.model, notice=self.say
            )
        except NbChatError as failed:
            return self.say(f"nbchat: {failed}", error=True)
        if receipt is not None:
            self._receipts[id(message)] = receipt
        self._context = (names, error)  # put back if the message fails
        with self._lock:
            self._drop_pending()
            body = widgets.VBox()
            self._pending = self._turn_box(text, body, receipt)
            self.streaming = name
            self.stop_wanted = threading.Event()  # this reply's own: a late Stop hits no other
            self._set_busy(True)
            self._layout()
        self.prompt.clear()
        self.attach.value, self.attach_error.value = "", False  # context belongs to one turn
        self.say("")
        self.view = view = TurnView(
            body,
            settings.update_interval,
            self.say,
            self._stop_if_wanted,
            remote_images=settings.load_remote_images,
        )
        if tools is not None:
            from .toolpanel import PanelTools

            self.tool_view = PanelTools(body, self.stop_wanted)
            tools.ask, tools.cards = self.tool_view.ask, self.tool_view
        args = (message, settings, view, name, self.model.value, params, self.stop_wanted, tools)
        self._worker = threading.Thread(target=self._run, args=args, daemon=True)
        self._worker.start()

    def request_params(self) -> dict[str, Any]:
        """The fields a cell would send (ChatMagics.temperature, max_tokens, params, ...),
        with the slider's temperature once the user has moved it."""
        params = self.magics.request_defaults()
        if self.temperature_moved:
            params["temperature"] = round(float(self.temperature.value), 2)
        return params

    def request_stop(self) -> None:
        """Stop the streaming reply at once; its partial text stays as an interrupted turn.

        Effective even before the worker has sent anything: session.run is given this
        reply's `stop_wanted` event and checks it before the request goes out.
        """
        name = self.streaming  # read once: the worker may end meanwhile
        if name is not None:
            self.stop_wanted.set()
            self.session.stop(name)  # never stop(None): that would stop other panels too

    def _stop_if_wanted(self) -> None:
        name = self.streaming
        if name is not None and self.stop_wanted.is_set():
            self.session.stop(name)

    def new_conversation(self) -> str:
        """Start an empty conversation (`chat-2`, `chat-3`, ...) and show it here."""
        number = 2
        while f"chat-{number}" in self.session.conversations:
            number += 1
        name = f"chat-{number}"
        self.session.conversation(name)
        self.name = name
        self.refresh()
        return name

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the streaming reply and the model list; False if still running."""
        for thread in (self._models, self._worker):
            if thread is not None:
                thread.join(timeout)
        return self.streaming is None and not self._models.is_alive()

    def close(self) -> None:
        """Stop listening to cells and close every widget of the panel."""
        self.request_stop()
        events = self._shell.events
        if self._after_cell in events.callbacks["post_run_cell"]:
            events.unregister("post_run_cell", self._after_cell)
        close_tree(self.widget)
        _panels.discard(self)

    def say(self, text: str, *, error: bool = False) -> None:
        """The panel's one status line (errors in the theme's error colour)."""
        css = "nbchat-error" if error else "nbchat-hint"
        self.status.value = f'<span class="{css}">{html.escape(text)}</span>' if text else ""

    # -- the worker --------------------------------------------------------------

    def _run(self, message: Message, settings: Settings, view: TurnView, *args: Any) -> None:
        name, model, params, stop, tools = args
        try:
            self.session.run(
                message,
                settings,
                view,
                conversation=name,
                model=model,
                params=params,
                stop=stop,
                tools=tools,
            )
            self._done(message, None)
        except Exception as error:  # a worker thread can only report in the panel
            self._done(message, error)

    def _done(self, message: Message, error: Exception | None) -> None:
        from .attach import prompt_and_parts

        text = prompt_and_parts(message)[0]
        partial = getattr(error, "partial", None)
        kept = error is None or (isinstance(error, Interrupted) and bool(partial and partial.text))
        with self._lock:
            name, self.streaming = self.streaming, None
            turns = self.session.conversation(name).turns
            if kept and self._pending is not None and name == self.name and turns:
                self._shown.append(turns[-1])  # the streamed box already shows this turn
                self._boxes.append(self._pending)
                self._pending = None
            elif not (partial and partial.text):
                self._drop_pending()
            self._set_busy(False)
        self.refresh()
        if isinstance(error, Interrupted):
            self.say("stopped" + ("; the partial reply was kept" if kept else ""))
        elif isinstance(error, NbChatError):
            self.say(f"nbchat: {error}", error=True)
        elif error is not None:
            self.say(f"nbchat: unexpected {type(error).__name__}: {error}", error=True)
        if not kept and not self.prompt.value:
            self.prompt.value = text  # nothing was kept: the message can be sent again
            self.attach.value, self.attach_error.value = self._context

    def _load_models(self, settings: Settings) -> None:
        if settings.key_missing:
            return  # no request without a key; Send says what is missing
        try:
            listed = self.session.client(settings).list_models()
        except NbChatError as error:
            if not self.status.value:  # a reply's own message matters more
                self.say(f"cannot list models, using {settings.model}: {error.message}")
            return
        ids = sorted({str(m["id"]) for m in listed if isinstance(m, dict) and m.get("id")})
        with self._lock:
            self._offer_models(ids)

    def _offer_models(self, models: list[str]) -> None:
        """The current choice first, then `models`; the choice stays selected."""
        chosen = self.model.value
        self.model.options = [chosen, *(m for m in models if m != chosen)]
        self.model.value = chosen

    # -- showing the session -------------------------------------------------------

    def refresh(self) -> None:
        """Show the session as it is: conversations, system prompt, transcript, totals."""
        with self._lock:
            self._syncing = True
            try:
                self.conversations.options = list(self.session.conversations)
                self.conversations.value = self.name
                self.system.value = self.conversation.system_prompt or ""
                if not self.temperature_moved:  # follows ChatMagics.temperature until moved
                    self.temperature.value = self._configured_temperature()
            finally:
                self._syncing = False
            settings = self.magics.settings()
            if settings.model not in self.model.options:  # configured since the panel opened
                self._offer_models([settings.model, *self.model.options])
            default = settings.system_prompt
            self.system.placeholder = (
                f"default: {default}" if default else "a system prompt for this conversation"
            )
            if self.streaming is None:
                self._show_turns(self.conversation.turns)
            self._show_totals()

    def _show_turns(self, turns: list[Turn]) -> None:
        shown = len(self._shown)
        if not (
            len(turns) >= shown and all(a is b for a, b in zip(self._shown, turns, strict=False))
        ):
            for box in self._boxes:
                close_tree(box)
            self._shown, self._boxes, shown = [], [], 0
            self._drop_pending()
        elif len(turns) > shown:
            self._drop_pending()
        for turn in turns[shown:]:
            footer = turn.reply if self.magics.show_usage else None
            reply = widgets.VBox(
                reply_widgets(turn.reply.text, footer, self.magics.load_remote_images)
            )
            text, receipt = turn.user.text, None
            if not isinstance(turn.user.content, str):  # context parts: the receipt, not their text
                from .attach import prompt_and_parts

                text, parts = prompt_and_parts(turn.user)
                receipt = self._receipts.get(id(turn.user))
                if receipt is None and parts:
                    receipt = "context: " + " · ".join(f"{n} — {k}" for n, k in parts)
            self._boxes.append(self._turn_box(text, reply, receipt))
            self._shown.append(turn)
        self._layout()

    @staticmethod
    def _turn_box(text: str, reply: widgets.VBox, receipt: str | None) -> widgets.VBox:
        box = turn_box(text, reply)
        if receipt:  # what left the notebook with this message, under it
            you, *rest = box.children
            box.children = (you, label(receipt, "nbchat-context"), *rest)
        return box

    def _layout(self) -> None:
        shown = [*self._boxes, *([self._pending] if self._pending else [])]
        if not shown:
            shown = [label("The conversation is empty: write below.", "nbchat-hint")]
        self.transcript.children = shown

    def _drop_pending(self) -> None:
        if self._pending is not None:
            close_tree(self._pending)
            self._pending = None

    def _set_busy(self, busy: bool) -> None:
        self.send.disabled = self.conversations.disabled = self.new.disabled = busy
        self.stop.disabled = not busy

    def _show_totals(self) -> None:
        this = totals([self.conversation])
        self.totals.value = html.escape(
            f"this conversation: {this} — session: {totals(self.session.conversations.values())}"
        )

    def _after_cell(self, *_: Any) -> None:
        self.refresh()

    def _configured_temperature(self) -> float:
        configured = self.magics.temperature
        return DEFAULT_TEMPERATURE if configured is None else float(configured)

    def _move_temperature(self, change: Any) -> None:
        self.temperature_moved = self.temperature_moved or not self._syncing

    def _pick_conversation(self, change: Any) -> None:
        if not self._syncing and change["new"] and change["new"] != self.name:
            self.name = change["new"]
            self.refresh()

    def _set_system(self, change: Any) -> None:
        if not self._syncing:
            self.conversation.system_prompt = change["new"].strip() or None


def open_panel(shell: Any = None) -> ChatPanel:
    """A new panel on the session of `shell` (the running IPython), loading nbchat if needed."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise ConfigError(
                "the chat panel needs IPython or Jupyter", hint="run it in a notebook"
            )
    from .magics import ChatMagics

    if not any(isinstance(c, ChatMagics) for c in shell.configurables):
        shell.run_line_magic("load_ext", "nbchat")
    magics = next(c for c in shell.configurables if isinstance(c, ChatMagics))
    return ChatPanel(magics)


def close_panels() -> None:
    """Close every open panel (when the extension is unloaded)."""
    for panel in list(_panels):
        panel.close()
