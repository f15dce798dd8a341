"""Validators for schemas of the official OpenAI OpenAPI description.

Tests check wire formats against the real API description rather than against
our own idea of it. The document is loaded once; validators are cached per name.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

HERE = Path(__file__).resolve().parent
URI = "https://nbchat.invalid/openai.json"


def openapi_path() -> Path:
    """$NBCHAT_OPENAPI, else the shared copy next to the repo, else tests/data."""
    env = os.environ.get("NBCHAT_OPENAPI")
    if env:
        return Path(env)
    shared = HERE.parent.parent / "shared" / "openapi" / "openai.json"
    return shared if shared.is_file() else HERE / "data" / "openai.json"


def _allow_null(node: Any) -> Any:
    """Turn OpenAPI 3.0 ``nullable: true`` into JSON Schema.

    The document says 3.1 but still uses ``nullable`` in ~100 places (e.g. a
    stream chunk's ``finish_reason``), which draft 2020-12 ignores, so the real
    API's ``"finish_reason": null`` would be rejected without this.
    """
    if isinstance(node, list):
        return [_allow_null(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_null(v) for k, v in node.items() if not (k == "nullable" and v is True)}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _registry() -> Registry[Any]:
    doc = _allow_null(json.loads(openapi_path().read_text(encoding="utf-8")))
    resource = Resource.from_contents(doc, DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(URI, resource)
    return registry


@functools.cache
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>``."""
    schema = {"$ref": f"{URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=_registry())
