"""`--json` and `--schema`: ask for JSON, show it as JSON, and parse it for `-o`.

A `--schema` is a JSON Schema dict, sent as written, or a pydantic model class,
whose schema is made strict (every object closed, every property required, as
OpenAI's structured outputs demand) and whose instance the reply is parsed
into. pydantic is never imported here: a model class is recognised by its
methods, so it is only loaded if the user's own code loaded it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import NbChatError, OptionError
from .types import Reply

__all__ = ["JsonMode", "JsonView", "json_mode", "strict_schema"]


@dataclass(frozen=True)
class JsonMode:
    """The `response_format` of a cell, and the pydantic model to parse the reply into."""

    response_format: dict[str, Any]
    model: Any = None

    def parse(self, reply: Reply) -> Any:
        """The reply's JSON value (or model instance); NbChatError when it does not fit."""
        try:
            value = json.loads(reply.text)
        except ValueError as exc:
            raise NbChatError(
                f"the reply is not valid JSON ({exc})",
                hint="finish_reason "
                f"{reply.finish_reason!r}; the text is kept in the conversation and in -o",
            ) from None
        if self.model is None:
            return value
        try:
            return self.model.model_validate(value)
        except Exception as exc:  # pydantic.ValidationError, without importing pydantic
            first = str(exc).splitlines()[1:3]
            raise NbChatError(
                f"the reply does not match {self.model.__name__}: {' '.join(first).strip()}",
                hint="the JSON is still in -o NAME.json",
            ) from None


def _is_model_class(obj: Any) -> bool:
    return isinstance(obj, type) and callable(getattr(obj, "model_json_schema", None))


#: Keywords whose value maps names to schemas (a property may be called "default").
_NAMED = ("properties", "$defs", "definitions", "patternProperties")
#: Keywords whose value is data, not a schema: copied as they are.
_DATA = ("enum", "const", "examples")


def strict_schema(node: Any) -> Any:
    """A copy of `node` with every object closed, all its properties required, no `default`.

    Strict structured outputs refuse `default` ("'default' is not permitted"), and
    with every property required a default could never apply anyway; the OpenAI
    SDK drops `default: null` for the same reason, we drop them all.
    """
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key in _DATA:
            out[key] = value
        elif key in _NAMED and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        else:
            out[key] = strict_schema(value)
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def json_mode(as_json: bool, schema: str | None, namespace: Mapping[str, Any]) -> JsonMode | None:
    """The JSON mode `--json` / `--schema NAME` ask for (None for plain text)."""
    if schema is None:
        return JsonMode({"type": "json_object"}) if as_json else None
    if as_json:
        raise OptionError("give --json or --schema, not both", hint="--schema implies JSON")
    if schema not in namespace:
        raise OptionError(
            f"--schema {schema}: no such variable",
            hint="--schema takes the name of a dict (JSON Schema) or a pydantic model class",
        )
    obj = namespace[schema]
    if _is_model_class(obj):
        body = strict_schema(obj.model_json_schema())
        spec = {"name": _schema_name(obj.__name__), "schema": body, "strict": True}
        return JsonMode({"type": "json_schema", "json_schema": spec}, model=obj)
    if isinstance(obj, Mapping):
        try:
            body = json.loads(json.dumps(obj))
        except (TypeError, ValueError) as exc:
            raise OptionError(f"--schema {schema}: not JSON ({exc})") from None
        name = _schema_name(str(body.get("title") or schema))
        return JsonMode({"type": "json_schema", "json_schema": {"name": name, "schema": body}})
    raise OptionError(
        f"--schema {schema}: a {type(obj).__name__} is not a JSON Schema",
        hint="--schema takes the name of a dict (JSON Schema) or a pydantic model class",
    )


def _schema_name(text: str) -> str:
    """The API's `json_schema.name`: a-z, A-Z, 0-9, _ and -, at most 64 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:64] or "schema"


class JsonView:
    """Shows a JSON reply: a ```json block while it streams, pretty JSON at the end.

    Wraps the cell's Markdown view, so streaming, status lines and the footer
    behave exactly as for text replies.
    """

    def __init__(self, inner: Any, interval: float) -> None:
        self.inner = inner
        self.interval = interval
        self._started = False

    def status(self, text: str) -> None:
        self.inner.status(text)

    def think(self, delta: str) -> None:
        """A reasoning model's thinking: shown by the inner view (nbchat.reasoning)."""
        think = getattr(self.inner, "think", None)
        if think is not None:
            think(delta)

    def details(self, reply: Reply) -> None:
        """The reply's thinking (and logprobs), shown above the JSON by the inner view."""
        details = getattr(self.inner, "details", None)
        if details is not None:
            details(reply)

    def feed(self, delta: str) -> None:
        if not self._started:
            self._started = True
            delta = "```json\n" + delta
        self.inner.feed(delta)

    def finish(self, text: str, footer: Reply | None = None) -> None:
        try:
            value = json.loads(text)
        except ValueError:
            self.inner.finish(text, footer)  # not JSON (cut short?): show what came
            return
        from IPython.display import display

        from .render import LiveMarkdown
        from .sanitize import safe_markdown

        pretty = json.dumps(value, indent=2, ensure_ascii=False)
        self.inner.finish("", None)  # clears what was shown while streaming
        bundle = {
            "text/markdown": safe_markdown(f"```json\n{pretty}\n```"),
            "application/json": value,
            "text/plain": pretty,
        }
        display(bundle, raw=True)  # type: ignore[no-untyped-call]
        if footer is not None:
            LiveMarkdown(interval=self.interval, live=False).finish("", footer)
