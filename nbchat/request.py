"""What one `%%chat` cell asks for: its flags and body turned into one checked request.

Everything that can be wrong with a cell (a value out of range, a missing
image, a bad schema, a failed `{expression}`) is found here, before the
session sends anything. `--dry-run` shows the request exactly as it would go.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import OptionError
from .types import Message

if TYPE_CHECKING:
    from .config import Settings
    from .session import ChatSession
    from .structured import JsonMode
    from .tools import ToolRunner

__all__ = ["CellRequest", "cell_request", "preview"]

_NAME = re.compile(r"[\w.-]{1,64}")


@dataclass(frozen=True)
class CellRequest:
    """The arguments of `ChatSession.run` for one cell, every value already checked."""

    message: Message
    conversation: str
    model: str | None
    params: dict[str, Any]
    stream: bool
    system: str | None = None
    json: JsonMode | None = None


def check_conversation_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise OptionError(
            f"{name!r} is not a conversation name",
            hint="use letters, digits, '_', '-' and '.', at most 64 characters",
        )
    return name


def cell_request(
    args: Any,
    body: str,
    namespace: dict[str, Any],
    defaults: Mapping[str, Any],
    stream: bool,
) -> CellRequest:
    """Check every flag of a cell against `namespace` and build its request."""
    from .media import audio_part, image_part
    from .params import cell_params
    from .structured import json_mode

    text = body
    if args.interpolate:
        from .interpolate import interpolate

        text = interpolate(body, namespace)
    parts = [image_part(spec, namespace) for spec in args.image or ()]
    parts += [audio_part(spec, namespace) for spec in args.audio or ()]
    content: str | list[dict[str, Any]] = text
    if parts:
        content = [{"type": "text", "text": text}, *parts]
    params = cell_params(args, namespace, defaults)
    mode = json_mode(args.json, args.schema, namespace)
    if mode is not None:
        params["response_format"] = mode.response_format
    system = None
    if args.system:
        found = namespace.get(args.system) if args.system.isidentifier() else None
        system = found if isinstance(found, str) else args.system
    return CellRequest(
        message=Message("user", content),
        conversation=check_conversation_name(args.conversation or "default"),
        model=args.model,
        params=params,
        stream=stream if args.stream is None else args.stream,
        system=system,
        json=mode,
    )


def preview(
    session: ChatSession,
    settings: Settings,
    request: CellRequest,
    tools: ToolRunner | None = None,
) -> tuple[str, dict[str, Any]]:
    """(what `--dry-run` prints, the exact body): method, URL, headers with the key masked.

    Base64 data over 200 characters is shortened in the printed text only, so a
    dry run with an image does not put megabytes into the notebook; the body
    returned (`-o NAME`) is exact.
    """
    conversation = session.conversation(request.conversation)
    if request.system is not None:
        conversation = dataclasses.replace(conversation, system_prompt=request.system)
    body = session.build_payload(
        request.message,
        settings,
        conversation=conversation,
        model=request.model,
        params=request.params,
        stream=request.stream,
    )
    if not request.stream:  # as ChatClient.complete sends it
        body = {**body, "stream": False}
    if tools is not None:
        body["tools"] = tools.schemas()
    client = session.client(settings)
    headers = {**client.headers(), "Content-Type": "application/json"}
    if settings.api_key:
        headers = {k: settings.api_key.redact(v) for k, v in headers.items()}
    lines = [f"POST {client.base_url}/chat/completions"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    shown = json.dumps(_shortened(body), indent=2, ensure_ascii=False)
    return "\n".join([*lines, "", shown]), body


def _shortened(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _shortened(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_shortened(v) for v in node]
    long = isinstance(node, str) and len(node) > 200
    if long and (key == "data" or (key == "url" and node.startswith("data:"))):
        return f"{node[:48]}…({len(node):,} characters; -o NAME holds them all)"
    return node
