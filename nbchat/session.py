"""One turn of a conversation: settings + client + conversation + view.

Shared by the `%%chat` magic and the panel, so both follow the same rules:
a completed reply becomes a turn; an interrupted one is kept as a turn marked
`finish_reason="interrupted"`; any other failure leaves the conversation as it
was and re-raises a one-line NbChatError with the partial reply attached.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from .client import ChatClient, ChatStream
from .config import Settings
from .conversation import Conversation
from .errors import ConfigError, Interrupted, OptionError, StreamError
from .pricing import estimate_cost
from .types import Message, Reply

__all__ = ["ChatSession", "View"]


class View(Protocol):
    """Where a streaming reply is shown (a cell output, the panel's transcript)."""

    def status(self, text: str) -> None: ...
    def feed(self, delta: str) -> None: ...
    def finish(self, text: str, footer: Reply | None = None) -> None: ...


class ChatSession:
    """Conversations of one kernel and the HTTP client they share."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {"default": Conversation("default")}
        self.active = "default"
        self._client: ChatClient | None = None
        self._client_key: tuple[Any, ...] | None = None
        self.last_reply: Reply | None = None
        # Replies streaming now, by conversation (the panel streams from a worker thread
        # while cells run other conversations), each with the event that stops it.
        self._streams: dict[str, tuple[ChatStream, threading.Event]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # the running reply's stop event, per thread

    def stop(self, conversation: str | None = None) -> bool:
        """Stop the reply streaming in `conversation` (any, when None); thread-safe.

        For the panel's Stop button: the partial reply is kept as an interrupted
        turn, as on a kernel interrupt. Returns False when nothing was streaming.
        """
        with self._lock:
            running = [s for name, s in self._streams.items() if conversation in (None, name)]
        for chat, stopped in running:
            stopped.set()
            chat.close()
        return bool(running)

    def streaming(self, conversation: str | None = None) -> bool:
        """Whether a reply is streaming in `conversation` (the active one by default)."""
        return (conversation or self.active) in self._streams

    def _retry_wait(self, delay: float) -> None:
        """The client's sleep before a retry, cut short (as an interrupt) by `stop()`."""
        stopped: threading.Event | None = getattr(self._local, "stopped", None)
        if stopped is None:
            time.sleep(delay)
        elif stopped.wait(delay):
            raise KeyboardInterrupt

    def conversation(self, name: str | None = None) -> Conversation:
        """The named conversation (created on first use); the active one by default."""
        name = name or self.active
        if name not in self.conversations:
            self.conversations[name] = Conversation(name)
        return self.conversations[name]

    def client(self, settings: Settings) -> ChatClient:
        """The shared client; rebuilt only when connection settings changed (thread-safe)."""
        with self._lock:
            return self._shared_client(settings)

    def _shared_client(self, settings: Settings) -> ChatClient:
        if self._client is None or self._client_key != settings.connection:
            if self._client is not None:
                self._client.close()
            self._client = ChatClient(
                base_url=settings.base_url,
                api_key=settings.api_key,
                organization=settings.organization,
                project=settings.project,
                timeout=settings.timeout,
                max_retries=settings.max_retries,
                sleep=self._retry_wait,
            )
            self._client_key = settings.connection
            self._client.http  # noqa: B018 -- made here, under the lock: threads share it
        return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def build_payload(
        self,
        prompt: Message,
        settings: Settings,
        *,
        conversation: Conversation,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        stream: bool = True,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model or settings.model,
            "messages": conversation.messages(
                prompt, system=conversation.system_prompt or settings.system_prompt
            ),
        }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        if params:
            payload.update(params)
        return payload

    def run(
        self,
        prompt: str | Message,
        settings: Settings,
        view: View,
        *,
        conversation: str | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        stream: bool = True,
        cell_id: str | None = None,
    ) -> Reply:
        """Send one turn, show it in `view`, and add it to the conversation."""
        if settings.needs_key and not settings.api_key:
            raise ConfigError(
                "no API key set for the OpenAI API",
                hint="set the OPENAI_API_KEY environment variable, c.ChatMagics.api_key in "
                "ipython_config.py, or run %chat login; for a local server set ChatMagics.base_url",
            )
        conv = self.conversation(conversation)
        user = prompt if isinstance(prompt, Message) else Message("user", prompt)
        payload = self.build_payload(
            user, settings, conversation=conv, model=model, params=params, stream=stream
        )
        client = self.client(settings)

        def on_retry(reason: str, delay: float, attempt: int, attempts: int) -> None:
            view.status(f"{reason} — retrying in {delay:.1f} s, attempt {attempt} of {attempts}")

        def priced(reply: Reply) -> Reply:
            return reply.with_(cost=estimate_cost(reply.model, reply.usage, settings.prices))

        footer = settings.show_usage
        if not stream:
            reply = priced(client.complete(payload, on_retry=on_retry))
            view.finish(reply.text, reply if footer else None)
        else:
            chat = client.stream(payload, on_retry=on_retry)
            stop = threading.Event()
            with self._lock:
                if conv.name in self._streams:
                    raise OptionError(
                        f"a reply is still streaming in conversation {conv.name!r}",
                        hint="wait for it, or stop it (the panel's Stop button)",
                    )
                self._streams[conv.name] = (chat, stop)
            self._local.stopped = stop
            try:
                for delta in chat:
                    view.feed(delta)
                    if stop.is_set():
                        raise KeyboardInterrupt
            except (KeyboardInterrupt, StreamError) as stopped:
                if isinstance(stopped, StreamError) and not stop.is_set():
                    error = stopped
                    error.partial = priced(error.partial)
                    view.finish(
                        error.partial.text, error.partial if footer and error.partial.text else None
                    )
                    self.last_reply = error.partial
                    raise

                chat.close()
                partial = priced(chat.build_reply("interrupted"))
                view.finish(partial.text, partial if footer else None)
                self.last_reply = partial
                if partial.text:
                    conv.add(user, partial, cell_id)
                raise Interrupted(
                    f"interrupted after {chat.chunks} chunks",
                    partial=partial,
                    hint="the partial reply was kept in the conversation" if partial.text else None,
                ) from None
            finally:
                self._local.stopped = None
                with self._lock:
                    del self._streams[conv.name]
            reply = priced(chat.reply)
            view.finish(reply.text, reply if footer else None)
        self.last_reply = reply
        conv.add(user, reply, cell_id)
        return reply
