"""Request fields beyond model and messages: their checks, flags, defaults and `--params`.

Every value is checked here, before anything is sent, so a typo in a notebook
gets a one-line message instead of a round trip and a 400 (or, worse, a silent
default on a lenient local server). The same checks guard the traits users set
as `c.ChatMagics.temperature = ...`, values from `--params`, and the flags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from .config import one_limit
from .errors import OptionError
from .fields import SCHEMAS
from .schemacheck import problem, types_of

__all__ = [
    "FLAG_FIELDS",
    "RESERVED",
    "RequestDefaults",
    "cell_params",
    "check_extra",
    "check_field",
    "check_json",
]

#: argparse dest of a %%chat flag -> (request field, how the flag is named in messages).
FLAG_FIELDS: dict[str, tuple[str, str]] = {
    "temperature": ("temperature", "-t/--temperature"),
    "top_p": ("top_p", "--top-p"),
    "frequency_penalty": ("frequency_penalty", "--frequency-penalty"),
    "presence_penalty": ("presence_penalty", "--presence-penalty"),
    "max_tokens": ("max_completion_tokens", "--max-tokens"),
    "seed": ("seed", "--seed"),
    "stop": ("stop", "--stop"),
    "store": ("store", "--store/--no-store"),
    "user": ("user", "--user"),
    "reasoning_effort": ("reasoning_effort", "--effort"),
}

#: Fields nbchat owns; `--params` may not set them (they have flags of their own).
RESERVED = {
    "messages": "the cell body is the message",
    "stream": "use --no-stream",
    "stream_options": "nbchat asks for usage itself",
    "model": "use -m/--model",
}


def check_field(field: str, value: Any, label: str | None = None, shown: str | None = None) -> Any:
    """`value` if it is valid for `field` (unknown fields pass), else OptionError.

    `shown` is how the value appears in messages (a flag's text rather than its float).
    """
    schema = SCHEMAS.get(field)
    found = problem(value, schema, label or field, shown) if schema is not None else None
    if found is not None:
        raise OptionError(found)
    return value


def check_json(value: Any, label: str) -> Any:
    """`value` if it can be sent as JSON (no sets, objects, NaN or infinity), else OptionError."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise OptionError(f"{label} holds NaN or infinity, which JSON cannot carry") from None
        raise OptionError(f"{label} is not JSON: {exc}") from None
    except (TypeError, RecursionError) as exc:
        raise OptionError(f"{label} is not JSON: {exc}") from None
    return value


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _unescape(text: str) -> str:
    r"""`\n`, `\t`, `\r` and `\\` in a flag value, so `--stop '\n'` can name a newline."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


def _from_flag(field: str, raw: Any, label: str) -> Any:
    """A flag's string value converted to the field's type (and then checked)."""
    kind = "stop" if field == "stop" else types_of(SCHEMAS[field])[0]
    value = raw
    try:
        if kind == "number":
            value = float(raw)
        elif kind == "integer":
            value = int(raw)
    except ValueError:
        what = "an integer" if kind == "integer" else "a number"
        raise OptionError(f"{label} must be {what}, not {raw!r}") from None
    if kind == "stop":
        value = [_unescape(s) for s in raw]
    return check_field(field, value, label, shown=raw if isinstance(raw, str) else None)


def _extra_params(raw: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """`--params`: a JSON object, or the name of a dict in the user namespace."""
    found = namespace.get(raw) if raw.isidentifier() else None
    if isinstance(found, Mapping):
        value: Any = dict(found)
    else:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise OptionError(
                f"--params must be a JSON object: {exc}",
                hint="""e.g. --params '{"n": 1, "logprobs": true}' or the name of a dict""",
            ) from None
    if not isinstance(value, dict):
        raise OptionError(f"--params must be a JSON object, not {type(value).__name__}")
    check_extra(value, "--params")
    return value


def check_extra(fields: Mapping[str, Any], label: str) -> None:
    """Refuse reserved fields; check the values of known ones; every value must be JSON."""
    for key, value in fields.items():
        if not isinstance(key, str):
            raise OptionError(f"{label} field names must be strings, not {key!r}")
        if key in RESERVED:
            raise OptionError(f"{label} cannot set {key!r}", hint=RESERVED[key])
        check_field(key, value, f"{label} {key}")
        check_json(value, f"{label} {key}")


def cell_params(
    args: Any, namespace: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Request fields for one cell: configured defaults < `--params` < named flags."""
    fields = one_limit(dict(defaults))
    if getattr(args, "params", None):
        fields.update(one_limit(_extra_params(args.params, namespace)))
    for dest, (field, label) in FLAG_FIELDS.items():
        raw = getattr(args, dest, None)
        if raw is not None:
            fields[field] = _from_flag(field, raw, label)
    return fields


class RequestDefaults(Configurable):
    """Traits for request fields sent with every cell (flags override them per cell)."""

    temperature = Float(
        None, allow_none=True, help="Sampling temperature 0-2 for every request (-t overrides)."
    ).tag(config=True)
    top_p = Float(None, allow_none=True, help="Nucleus sampling 0-1 (--top-p overrides).").tag(
        config=True
    )
    frequency_penalty = Float(None, allow_none=True, help="Frequency penalty -2..2.").tag(
        config=True
    )
    presence_penalty = Float(None, allow_none=True, help="Presence penalty -2..2.").tag(config=True)
    max_tokens = Int(
        None,
        allow_none=True,
        help="Reply length limit, sent as max_tokens or max_completion_tokens "
        "(see ChatMagics.max_tokens_field).",
    ).tag(config=True)
    seed = Int(None, allow_none=True, help="Seed for best-effort deterministic sampling.").tag(
        config=True
    )
    stop = List(Unicode(), help="Up to four stop sequences.").tag(config=True)
    store = Bool(None, allow_none=True, help="Ask OpenAI to store completions (None: unset).").tag(
        config=True
    )
    user = Unicode(None, allow_none=True, help="End-user identifier sent as 'user'.").tag(
        config=True
    )
    reasoning_effort = Unicode(
        None,
        allow_none=True,
        help="How hard a reasoning model thinks: none, minimal, low, medium, high, xhigh or max "
        "(sent as reasoning_effort; --effort overrides).",
    ).tag(config=True)
    stream = Bool(True, help="Stream replies; False sends one request, shown at once.").tag(
        config=True
    )
    params = Dict(
        help="Extra request fields for every request, e.g. {'service_tier': 'flex'}; "
        "--params and flags override them. 'messages', 'model' and 'stream' are not allowed."
    ).tag(config=True)

    @validate(*FLAG_FIELDS, "params")
    def _check_request_default(self, proposal: Any) -> Any:
        name, value = proposal["trait"].name, proposal["value"]
        try:
            if name == "params":
                check_extra(value, "ChatMagics.params")
            elif value is not None and (name != "stop" or value):
                check_field(FLAG_FIELDS[name][0], value, f"ChatMagics.{name}")
        except OptionError as exc:
            raise TraitError(exc.message) from None
        return value

    def request_defaults(self) -> dict[str, Any]:
        """The configured fields (unset ones left out), as a request would carry them."""
        fields = one_limit(dict(self.params))
        for dest, (field, _) in FLAG_FIELDS.items():
            value = getattr(self, dest)
            if value is not None and value != []:
                fields[field] = value
        return fields
