"""The local request-field checks (nbchat/fields.py) held against the official OpenAPI schema.

Every property of CreateChatCompletionRequest must have a local schema with the
same JSON types, enums and (at least as narrow) ranges, and on a corpus of
probe values the local check must refuse whatever the official schema refuses,
so a field the API adds or changes cannot slip through unchecked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nbchat.errors import OptionError
from nbchat.fields import SCHEMAS
from nbchat.params import RESERVED, check_extra, check_field
from nbchat.schemacheck import describe, types_of

from .openapi import openapi_path, validator

DOC = json.loads(openapi_path().read_text(encoding="utf-8"))
COMPONENTS = DOC["components"]["schemas"]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**COMPONENTS[node["$ref"].rsplit("/", 1)[-1]], **rest}
    return node


def spec_properties(node: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each property's definitions: allOf parts may each define it, and all of them apply."""
    node = resolve(node)
    found: dict[str, list[dict[str, Any]]] = {}
    for part in node.get("allOf", []):
        for name, definitions in spec_properties(part).items():
            found.setdefault(name, []).extend(definitions)
    for name, definition in node.get("properties", {}).items():
        found.setdefault(name, []).append(definition)
    return found


SPEC = spec_properties(COMPONENTS["CreateChatCompletionRequest"])


def spec_shapes(field: str) -> dict[str, dict[str, Any]]:
    """The shapes a value must have to satisfy every definition of `field` (allOf)."""
    each = [shapes(definition) for definition in SPEC[field]]
    out = each[0]
    for other in each[1:]:
        out = {kind: out[kind] for kind in out if kind in other}
        for kind, shape in out.items():
            also = other[kind]
            if shape["enum"] is None or also["enum"] is not None:
                shape["enum"] = (
                    also["enum"] if shape["enum"] is None else shape["enum"] & also["enum"]
                )
            for bound, tighter in (("minimum", max), ("maximum", min)):
                values = [v for v in (shape[bound], also[bound]) if v is not None]
                shape[bound] = tighter(values) if values else None
    return out


def shapes(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """JSON type -> {"enum": set or None, "minimum", "maximum"}, the union of the alternatives."""
    node = resolve(node)
    out: dict[str, dict[str, Any]] = {}

    def merge(kind: str, enum: set[Any] | None, low: Any, high: Any) -> None:
        if kind not in out:
            out[kind] = {"enum": enum, "minimum": low, "maximum": high}
            return
        seen = out[kind]
        seen["enum"] = None if seen["enum"] is None or enum is None else seen["enum"] | enum
        seen["minimum"] = None if None in (seen["minimum"], low) else min(seen["minimum"], low)
        seen["maximum"] = None if None in (seen["maximum"], high) else max(seen["maximum"], high)

    alternatives = [*node.get("anyOf", []), *node.get("oneOf", [])]
    for alt in alternatives:
        for kind, shape in shapes(alt).items():
            merge(kind, shape["enum"], shape["minimum"], shape["maximum"])
    if not alternatives:
        enum = set(node["enum"]) if "enum" in node else None
        for kind in types_of(node):
            plain = kind == "null"
            merge(kind, None if plain else enum, node.get("minimum"), node.get("maximum"))
    if node.get("nullable") is True:
        merge("null", None, None, None)
    return out


def test_every_field_of_the_official_schema_has_a_local_check():
    assert set(SPEC) == set(SCHEMAS), "add the new field to nbchat/fields.py SCHEMAS"


@pytest.mark.parametrize("field", sorted(SPEC))
def test_local_types_enums_and_ranges_match_the_official_schema(field):
    spec, local = spec_shapes(field), shapes(SCHEMAS[field])
    assert set(local) == set(spec), f"{field}: JSON types differ"
    for kind, want in spec.items():
        have = local[kind]
        assert have["enum"] == want["enum"], f"{field}: {kind} enum differs"
        if want["minimum"] is not None:
            assert have["minimum"] is not None and have["minimum"] >= want["minimum"], field
        if want["maximum"] is not None:
            assert have["maximum"] is not None and have["maximum"] <= want["maximum"], field


PROBES: list[Any] = [
    None, True, False, 0, 1, -1, 5, 2.5, -3, 200, 2**70, "", "x", "auto", "text", "low", "30m",
    [], ["x"], ["text"], ["a"] * 5, [1], [{}], {}, {"a": 1}, {"a": "b"}, {"1": -100},
    {"type": "bogus"}, {"type": "text"}, {"type": "json_object"}, {"type": "json_schema"},
    {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
    {"type": "json_schema", "json_schema": {"name": 3}},
    {"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {}},
    {"type": "custom", "custom": {"name": "c"}}, {"name": "f"}, {"name": 1},
    {"type": "content", "content": "x"}, {"type": "content", "content": 1}, {"model": "m"},
    {"voice": "alloy", "format": "mp3"}, {"voice": "alloy", "format": "ogg"}, {"voice": "alloy"},
    [{"type": "function", "function": {"name": "f"}}], [{"type": "bogus"}], [{"name": "f"}],
    {"user_location": None}, {"search_context_size": "huge"}, {"ttl": "30m"}, {"ttl": "1h"},
    {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
    {"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": []}},
]  # fmt: skip

#: (field, probe) pairs nbchat refuses although the API schema takes them, on purpose.
STRICTER = {
    ("user", ""),  # an empty end-user id says nothing
    ("stop", ""),  # an empty stop sequence would stop at once
    ("max_completion_tokens", 0),  # no room for a reply
    ("max_completion_tokens", -1),
    ("max_completion_tokens", -3),
    ("max_tokens", 0),
    ("max_tokens", -1),
    ("max_tokens", -3),
}

BASE = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def refused_locally(field: str, value: Any) -> bool:
    try:
        check_field(field, value)
    except OptionError as error:
        assert "\n" not in str(error) and field in str(error)
        return True
    return False


@pytest.mark.parametrize("field", sorted(set(SPEC) - set(RESERVED)))
def test_local_check_refuses_exactly_what_the_api_refuses(field):
    check = validator("CreateChatCompletionRequest")
    for probe in PROBES:
        official = not list(check.iter_errors({**BASE, field: probe}))
        local = not refused_locally(field, probe)
        if (field, json.dumps(probe)) in {(f, json.dumps(p)) for f, p in STRICTER}:
            assert official and not local, (field, probe)
            continue
        assert local == official, f"{field}={probe!r}: API {'takes' if official else 'refuses'} it"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"logit_bias": 5}, "logit_bias must be a JSON object, not 5"),
        ({"service_tier": 7}, "service_tier must be one of 'auto', "),
        ({"metadata": {"a": 1}}, "metadata['a'] must be a string, not 1"),
        ({"response_format": {"type": "bogus"}}, "response_format.type must be one of 'text'"),
        ({"seed": 2**64}, "between -9223372036854775808 and 9223372036854775807"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function needs 'name'"),
        ({"foo": {1, 2}}, "--params foo is not JSON: Object of type set"),
        ({"foo": [float("nan")]}, "--params foo holds NaN or infinity"),
        ({1: "x"}, "field names must be strings"),
    ],
)
def test_messages_name_the_field_in_one_line(fields, message):
    with pytest.raises(OptionError) as caught:
        check_extra(fields, "--params")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_fields_pass_for_servers_with_extras():
    check_extra({"num_ctx": 4096, "repetition_penalty": 1.1, "top_k": 40}, "--params")


def test_descriptions_read_well():
    assert describe(SCHEMAS["temperature"]) == "a number between 0 and 2"
    assert describe(SCHEMAS["user"]) == "a non-empty string"
    assert describe(SCHEMAS["n"]) == "an integer between 1 and 128"
