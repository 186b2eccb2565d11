"""The read API's (Segment) names of a stored event's columns, derived from the field table."""

from __future__ import annotations

from typing import Any

from footprint.contract.fields import COLUMN_NAMES, OUTBOUND_EXTRA
from footprint.contract.inbound import INBOUND_COMMON, INBOUND_TYPES


def outbound_names(type_: str) -> dict[str, str]:
    """Column -> the name the read API answers with for an event of ``type_``: the inbound (Segment)
    name of the field that fills it (``event`` is ``name`` for a page), else ``OUTBOUND_EXTRA``."""
    names = {"type": "type"}
    for f in (*INBOUND_COMMON, *INBOUND_TYPES.get(type_, ())):
        if f.column:
            names[f.column] = f.name
    return {**names, **OUTBOUND_EXTRA}


def outbound(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event (column -> value, canonical values) in the read API's (Segment) names."""
    names = outbound_names(str(row.get("type", "")))
    return {names[c]: row[c] for c in COLUMN_NAMES if c in names and c in row}
