"""A small JSON Schema subset checker with one-line messages (for nbchat/fields.py).

Types, enums, ranges, string and list lengths, required keys, properties,
additionalProperties and anyOf, where a union of objects is told apart by
their `type` ("response_format.type must be one of ..."). Enough for the
request fields, without a jsonschema dependency; `x-what` on a schema
replaces the generated description of what a value must be.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["bounds", "describe", "problem", "types_of"]

Schema = dict[str, Any]

_NULL = "null"

_WORDS = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
}


def types_of(schema: Schema) -> list[str]:
    """The JSON types a schema allows (none for a union: see its anyOf)."""
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return _is(value, "integer") or (isinstance(value, float) and math.isfinite(value))
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, (list, tuple))
    return isinstance(value, Mapping)


def _fits(value: Any, schema: Schema) -> bool:
    """Whether `value` is of one of the schema's types (anyOf: of any alternative's)."""
    if "anyOf" in schema:
        return any(_fits(value, alt) for alt in schema["anyOf"])
    return any(_is(value, kind) for kind in types_of(schema))


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def bounds(low: float | None, high: float | None) -> str:
    """`between 0 and 2`, `at least 1`: integers shown whole (never `-9.22337e+18`)."""
    if low is not None and high is not None:
        return f"between {_number(low)} and {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    return f"at most {_number(high)}" if high is not None else "any value"


def describe(schema: Schema) -> str:
    """What a value must be, in words: `a number between 0 and 2`, `one of 'a', 'b'`."""
    if "x-what" in schema:
        return str(schema["x-what"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema:
        words = [describe(alt) for alt in schema["anyOf"] if types_of(alt) != [_NULL]]
        return " or ".join(dict.fromkeys(words))
    words = [_WORDS[kind] for kind in types_of(schema) if kind != _NULL]
    text = " or ".join(words)
    if schema.get("minLength"):
        text = text.replace("a string", "a non-empty string")
    if "minimum" in schema or "maximum" in schema:
        text += " " + bounds(schema.get("minimum"), schema.get("maximum"))
    return text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problem(value: Any, schema: Schema, label: str, shown: str | None = None) -> str | None:
    """Why `value` does not fit `schema` (one line naming `label`), or None if it does."""
    found = _problem(value, schema, label, shown or _shown(value))
    if found is not None and "x-what" in schema:
        return f"{label} must be {schema['x-what']}, not {shown or _shown(value)}"
    return found


def _problem(value: Any, schema: Schema, label: str, shown: str) -> str | None:
    if "anyOf" in schema:
        return _union(value, schema, label, shown)
    if not _fits(value, schema):
        return f"{label} must be {describe(schema)}, not {shown}"
    if value is None:
        return None
    if "enum" in schema and value not in schema["enum"]:
        return f"{label} must be {describe(schema)}, not {shown}"
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{label} must be {bounds(low, high)}, not {shown}"
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        return f"{label} must be {describe(schema)}, not {shown}"
    if isinstance(value, (list, tuple)):
        return _array(value, schema, label)
    if isinstance(value, Mapping):
        return _object(value, schema, label)
    return None


def _union(value: Any, schema: Schema, label: str, shown: str) -> str | None:
    """anyOf: members of a tagged union are picked by their `type`, others by kind."""
    fitting = [alt for alt in schema["anyOf"] if _fits(value, alt)]
    if not fitting:
        return f"{label} must be {describe(schema)}, not {shown}"
    tags = [alt["properties"]["type"]["enum"][0] for alt in fitting if _tagged(alt)]
    if isinstance(value, Mapping) and tags:
        if value.get("type") not in tags:
            words = ", ".join(repr(t) for t in tags)
            return f"{label}.type must be one of {words}, not {_shown(value.get('type'))}"
        fitting = [
            alt
            for alt in fitting
            if not _tagged(alt) or value["type"] in alt["properties"]["type"]["enum"]
        ]
    problems = [_problem(value, alt, label, shown) for alt in fitting]
    return None if None in problems else problems[0]


def _tagged(schema: Schema) -> bool:
    return "enum" in schema.get("properties", {}).get("type", {})


def _array(value: list[Any] | tuple[Any, ...], schema: Schema, label: str) -> str | None:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if (low is not None and len(value) < low) or (high is not None and len(value) > high):
        return f"{label} must have {bounds(low, high)} items, not {len(value)}"
    items: Schema = schema.get("items", {})
    for i, item in enumerate(value if items else ()):
        found = problem(item, items, f"{label}[{i}]")
        if found:
            return found
    return None


def _object(value: Mapping[Any, Any], schema: Schema, label: str) -> str | None:
    for key in schema.get("required", ()):
        if key not in value:
            return f"{label} needs {key!r}"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            found = problem(item, properties[key], f"{label}.{key}")
        elif isinstance(extra, dict):
            found = problem(item, extra, f"{label}[{key!r}]")
        else:
            continue
        if found:
            return found
    return None
