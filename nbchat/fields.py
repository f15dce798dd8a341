"""Every field of the API's CreateChatCompletionRequest, as a small schema checked locally.

A value the API would refuse with a 400 (`logit_bias: 5`, `service_tier: 7`, a
non-string metadata value, `response_format: {"type": "bogus"}`) is refused here
in one line, before anything is sent. The schemas are a subset of JSON Schema
written by hand from the OpenAPI description (types, enums, ranges, lengths,
required keys, discriminated `type`s), checked by nbchat/schemacheck.py rather
than a jsonschema dependency; tests/test_fields.py holds them against the official
description, so a field the API adds cannot slip by unchecked. Where nbchat is
stricter than the API (a non-empty `user`, at least one token) it says so here.
"""

from __future__ import annotations

from .schemacheck import Schema

__all__ = ["SCHEMAS"]

_NULL = "null"


def _num(low: float, high: float, kind: str = "number") -> Schema:
    return {"type": [kind, _NULL], "minimum": low, "maximum": high}


def _enum(*values: str, null: bool = True) -> Schema:
    return {"type": ["string", _NULL] if null else "string", "enum": list(values)}


def _obj(*required: str, null: bool = False, **properties: Schema) -> Schema:
    schema: Schema = {"type": ["object", _NULL] if null else "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _kind(value: str, *required: str, **properties: Schema) -> Schema:
    """One member of a union told apart by its `type` (response_format, tools, ...)."""
    schema = _obj("type", *required, type=_enum(value, null=False))
    schema["properties"].update(properties)
    return schema


_STRING: Schema = {"type": "string"}
_NAMED: Schema = _obj("name", name=_STRING)
_STRICT: Schema = {"type": ["boolean", _NULL]}
_ANY_OBJECT: Schema = {"type": "object"}

SCHEMAS: dict[str, Schema] = {
    "messages": {"type": "array", "minItems": 1, "items": _ANY_OBJECT},
    "model": {"type": "string", "minLength": 1},
    "stream": {"type": ["boolean", _NULL]},
    "stream_options": _obj(
        null=True, include_usage={"type": "boolean"}, include_obfuscation={"type": "boolean"}
    ),
    "temperature": _num(0, 2),
    "top_p": _num(0, 1),
    "frequency_penalty": _num(-2, 2),
    "presence_penalty": _num(-2, 2),
    # nbchat: at least one token (the API takes any integer)
    "max_completion_tokens": {"type": ["integer", _NULL], "minimum": 1},
    "max_tokens": {"type": ["integer", _NULL], "minimum": 1},
    "seed": _num(-(2**63), 2**63 - 1, "integer"),
    "n": _num(1, 128, "integer"),
    "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
    "logprobs": {"type": ["boolean", _NULL]},
    "store": {"type": ["boolean", _NULL]},
    "parallel_tool_calls": {"type": "boolean"},
    "user": {"type": "string", "minLength": 1},  # nbchat: not empty
    "safety_identifier": {"type": ["string", _NULL]},
    "prompt_cache_key": {"type": ["string", _NULL]},
    "prompt_cache_retention": _enum("in_memory", "24h"),
    "prompt_cache_options": _obj(
        ttl=_enum("30m", null=False), mode=_enum("implicit", "explicit", null=False)
    ),
    "service_tier": _enum("auto", "default", "flex", "scale", "priority", "fast"),
    "verbosity": _enum("low", "medium", "high"),
    "reasoning_effort": _enum("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    "modalities": {"type": ["array", _NULL], "items": _enum("text", "audio", null=False)},
    "metadata": {"type": ["object", _NULL], "additionalProperties": _STRING},
    "logit_bias": {"type": ["object", _NULL], "additionalProperties": {"type": "integer"}},
    "stop": {
        "x-what": "one to four non-empty strings",  # nbchat: no empty stop sequence
        "anyOf": [
            {"type": ["string", _NULL], "minLength": 1},
            {
                "type": "array",
                "minItems": 1,
                "maxItems": 4,
                "items": {"type": "string", "minLength": 1},
            },
        ],
    },
    "response_format": {
        "anyOf": [
            _kind("text"),
            _kind("json_object"),
            _kind(
                "json_schema",
                "json_schema",
                json_schema=_obj("name", name=_STRING, schema=_ANY_OBJECT, strict=_STRICT),
            ),
        ]
    },
    "audio": _obj(
        "voice",
        "format",
        null=True,
        voice={"anyOf": [_STRING, _obj("id", id=_STRING)]},
        format=_enum("wav", "aac", "mp3", "flac", "opus", "pcm16", null=False),
    ),
    "prediction": {
        "anyOf": [
            _kind(
                "content",
                "content",
                content={
                    "anyOf": [_STRING, {"type": "array", "minItems": 1, "items": _ANY_OBJECT}]
                },
            ),
            {"type": _NULL},
        ]
    },
    "moderation": _obj("model", null=True, model=_STRING, policy={"type": ["object", _NULL]}),
    "web_search_options": _obj(
        user_location=_obj(
            "type",
            "approximate",
            null=True,
            type=_enum("approximate", null=False),
            approximate=_obj(country=_STRING, region=_STRING, city=_STRING, timezone=_STRING),
        ),
        search_context_size=_enum("low", "medium", "high", null=False),
    ),
    "tools": {
        "type": "array",
        "items": {
            "anyOf": [
                _kind(
                    "function",
                    "function",
                    function=_obj("name", name=_STRING, parameters=_ANY_OBJECT, strict=_STRICT),
                ),
                _kind("custom", "custom", custom=_obj("name", name=_STRING, format=_ANY_OBJECT)),
            ]
        },
    },
    "tool_choice": {
        "anyOf": [
            _enum("none", "auto", "required", null=False),
            _kind(
                "allowed_tools",
                "allowed_tools",
                allowed_tools=_obj(
                    "mode",
                    "tools",
                    mode=_enum("auto", "required", null=False),
                    tools={"type": "array", "items": _ANY_OBJECT},
                ),
            ),
            _kind("function", "function", function=_NAMED),
            _kind("custom", "custom", custom=_NAMED),
        ]
    },
    "function_call": {"anyOf": [_enum("none", "auto", null=False), _NAMED]},
    "functions": {
        "type": "array",
        "minItems": 1,
        "maxItems": 128,
        "items": _obj("name", name=_STRING, description=_STRING, parameters=_ANY_OBJECT),
    },
}
