"""The OpenAPI (JSON Schema) of the ``POST /v1/events`` body, generated from the inbound fields."""

from __future__ import annotations

from typing import Any

from footprint.contract.fields import MAX_DEPTH, MAX_TIME, MIN_TIME, SHORT_MAX_BYTES, SHORT_MAX_CHARS
from footprint.contract.inbound import INBOUND_COMMON, INBOUND_TYPES

_KIND_SCHEMA: dict[str, dict[str, Any]] = {
    "short": {"type": "string", "minLength": 1, "maxLength": SHORT_MAX_CHARS},
    "object": {"type": "object", "additionalProperties": True},
    "time": {"type": "string", "format": "date-time"},
}


def inbound_json_schema(max_events: int) -> dict[str, Any]:
    """JSON Schema of the ``POST /v1/events`` body, generated from INBOUND_COMMON/INBOUND_TYPES.

    JSON Schema cannot say everything (byte limits, no NUL, the time range, MAX_DEPTH); the
    descriptions do, and ``validate_batch`` enforces all of it.
    """
    variants = []
    for type_, extra in INBOUND_TYPES.items():
        props: dict[str, Any] = {"type": {"type": "string", "enum": [type_]}}
        for f in (*INBOUND_COMMON, *extra):
            props[f.name] = {**_KIND_SCHEMA[f.kind], **({"description": f.doc} if f.doc else {})}
        variants.append({
            "title": f"{type_} event",
            "type": "object",
            "additionalProperties": False,
            "required": ["type", *(f.name for f in extra if f.required)],
            "properties": props,
            "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        })
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["batch"],
        "properties": {"batch": {"type": "array", "minItems": 1, "maxItems": max_events, "items": {
            "oneOf": variants,
            "discriminator": {"propertyName": "type"},
        }}},
        "description": (
            f"Strings: no NUL, valid Unicode, short fields at most {SHORT_MAX_CHARS} characters and "
            f"{SHORT_MAX_BYTES} bytes; properties/traits nested at most {MAX_DEPTH} deep, numbers finite; "
            f"timestamps {MIN_TIME.year}..{MAX_TIME.year - 1} UTC. The batch is accepted whole or refused whole."
        ),
    }
