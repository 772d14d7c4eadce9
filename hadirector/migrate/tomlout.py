"""Deterministic TOML text from plain data (dicts in insertion order, lists, scalars).

A table's scalar keys come first, then its sub-tables (``[a.b]``), then its arrays of
tables (``[[a.c]]``) for the keys named in ``ARRAY_TABLES``; other lists of tables are
written inline (``{ name = "eth1", weight = -50 }``). Tables under an array of tables are
indented by their depth; a long list of numbers is written ten to a line. A key whose
name starts with ``#`` is a comment line written where the key stands. Numbers: integers
as is, floats without a needless fraction kept short (``1.5``, ``60.0`` is written
``60``).
"""

from __future__ import annotations

from typing import Any

from hadirector.ipvs.importer import toml_string

ARRAY_TABLES = frozenset(
    {
        "vrrp_instance",
        "sync_group",
        "track_script",
        "track_file",
        "virtual_server",
        "real_server",
        "virtual_server_group",
    }
)


string = toml_string  # one TOML basic-string writer for both importers


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _key(k: str) -> str:
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return string(k)


def _is_array_table(k: str, v: Any) -> bool:
    return k in ARRAY_TABLES and isinstance(v, list) and all(isinstance(x, dict) for x in v)


def _assignment(indent: str, k: str, v: Any) -> list[str]:
    text = f"{indent}{_key(k)} = {value(v)}"
    if len(text) <= 100 or not isinstance(v, list) or not all(isinstance(x, int) for x in v):
        return [text]
    # a long list of numbers (HTTP status codes): ten to a line
    rows = [", ".join(value(x) for x in v[n : n + 10]) for n in range(0, len(v), 10)]
    return [f"{indent}{_key(k)} = [", *(f"{indent}    {r}," for r in rows), f"{indent}]"]


def _header_indent(parts: list[str]) -> str:
    """Tables under an array of tables are indented by their depth, others are not."""
    return "  " * (len(parts) - 1) if parts[0] in ARRAY_TABLES else ""


def _table(path: list[str], table: dict[str, Any], out: list[str]) -> None:
    indent = _header_indent(path) if path else ""
    for k, v in table.items():
        if k.startswith("#"):
            out.append(f"{indent}# {v}")
        elif not isinstance(v, dict) and not _is_array_table(k, v):
            out.extend(_assignment(indent, k, v))
    for k, v in table.items():  # sub-tables before arrays of tables: easier to read
        if isinstance(v, dict) and not k.startswith("#"):
            sub = [*path, k]
            if not v or not all(isinstance(x, dict) for x in v.values()):
                out.append("")  # a table of tables alone needs no header of its own
                out.append(f"{_header_indent(sub)}[{'.'.join(sub)}]")
            _table(sub, v, out)
    for k, v in table.items():
        if _is_array_table(k, v):
            sub = [*path, k]
            for item in v:
                out.append("")
                out.append(f"{_header_indent(sub)}[[{'.'.join(sub)}]]")
                _table(sub, item, out)


def dumps(document: dict[str, Any], header: list[str] | None = None) -> str:
    out = [f"# {h}" if h else "#" for h in header or []]
    _table([], document, out)
    while out and out[0] == "":
        out.pop(0)
    return "\n".join(out).rstrip("\n") + "\n"
