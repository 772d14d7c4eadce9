"""Configuration documents for tests: Python dicts written out as TOML text, and builders
for the usual tables (a VRRP instance, a virtual server, a firewall-mark service) with
keys overridden or dropped (``DROP``)."""

from __future__ import annotations

import json
import math
from datetime import date, time
from typing import Any

DROP = object()  # marks a key to remove from a base table


# --------------------------------------------------------------------------- TOML writer


def toml_string(text: str) -> str:
    """A TOML basic string (JSON escapes are TOML escapes; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(doc: dict[str, Any]) -> str:
    """A document as TOML: top-level keys with inline values (arrays of inline tables)."""
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


# --------------------------------------------------------------------------- builders


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def inst(**over: Any) -> dict[str, Any]:
    base = {
        "name": "VI_1",
        "interface": "eth0",
        "vrid": 51,
        "priority": 150,
        "virtual_addresses": ["192.0.2.50/24"],
    }
    return merged(base, over)


def inst6(**over: Any) -> dict[str, Any]:
    return inst(**{"virtual_addresses": ["2001:db8::50/64"], **over})


def vs(**over: Any) -> dict[str, Any]:
    base = {
        "address": "198.51.100.10:80",
        "real_server": [{"address": "203.0.113.11:80"}, {"address": "203.0.113.12:80"}],
    }
    return merged(base, over)


def fw(**over: Any) -> dict[str, Any]:
    base = {"fwmark": 7, "real_server": [{"address": "203.0.113.11"}]}
    return merged(base, over)
