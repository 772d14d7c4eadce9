"""The validation toolkit of the configuration loader: typed getters that collect problems.

A ``Checker`` collects every problem with its key path in index form
(``vrrp_instance[0].priority: must be 1..255, got 300``) and remembers which paths went bad,
so that a cross check can skip a value that already has a problem. Its checks take a value
and its path and return the typed value or None (a problem recorded); ``Table`` reads one
TOML table through them, reporting unknown keys with a hint. ``toml_keys`` and
``Defaults`` read a section's keys and defaults off its ``schema`` dataclass, so they are
written once.

The sections are built on this in ``config.vrrp_sections`` and ``config.lvs_sections``;
``config.load`` puts them together. Pure: standard library and the schema only, no I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING
from datetime import date, datetime, time
from typing import Any, Final, TypeVar, cast

from hadirector.config.schema import IPAddress
from hadirector.errors import Problem

T = TypeVar("T")
Check = Callable[[object, str], T | None]

INT32_MAX: Final = 2**31 - 1
UINT32_MAX: Final = 2**32 - 1
IFNAMSIZ: Final = 16  # kernel limit including the NUL: names are 1..15 bytes
SUN_PATH_MAX: Final = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")
ABSENT: Final = object()
_UNIT_RE: Final = re.compile(r"_(cs|s)$")


# --------------------------------------------------------------------------- schema-derived


def toml_keys(
    cls: type, rename: Mapping[str, str | tuple[str, ...]] | None = None
) -> tuple[str, ...]:
    """The keys of the TOML table that ``cls`` (a schema dataclass) is loaded from, in field
    order: a field's name less its unit suffix (``_cs``, ``_s``: the file says seconds);
    ``rename`` gives a field's key(s) when they differ (``()``: a field with no key)."""
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        given = (rename or {}).get(f.name)
        if given is None:
            keys.append(_UNIT_RE.sub("", f.name))
        else:
            keys.extend((given,) if isinstance(given, str) else given)
    return tuple(keys)


class Defaults:
    """The defaults a schema dataclass declares, by field name (``Defaults(VrrpInstance)
    .preempt``); a field without one (a required field) is an AttributeError."""

    def __init__(self, cls: type) -> None:
        self._cls = cls.__name__
        for f in dataclasses.fields(cls):
            if f.default is not MISSING:
                setattr(self, f.name, f.default)
            elif f.default_factory is not MISSING:
                setattr(self, f.name, f.default_factory())

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{self._cls}.{name} has no default")


# --------------------------------------------------------------------------- rendering


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time"
    return type(value).__name__


def show(value: object) -> str:
    """A value as it would be written in TOML (short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return '"' + shown.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    return type_name(value)


def got(value: object) -> str:
    """'got <type> <value>' for type errors."""
    name = type_name(value)
    shown = show(value)
    return f"got {name}" if shown == name else f"got {name} {shown}"


def num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def quote(name: str) -> str:
    return show(name)


# --------------------------------------------------------------------------- table reader


class Table:
    """One TOML table: reports unknown keys, hands out values with their key paths."""

    def __init__(
        self, loader: Checker, data: Mapping[str, object], path: str, keys: Sequence[str]
    ) -> None:
        self.loader = loader
        self.data = data
        self.path = path
        for key in data:
            if key not in keys:
                import difflib  # only for a mistake: not on every start's path

                hint = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
                msg = f'unknown key (did you mean "{hint[0]}"?)' if hint else "unknown key"
                loader.add(join_path(path, str(key)), msg)

    def at(self, key: str) -> str:
        return join_path(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        return self.data.get(key, ABSENT)

    def opt(self, key: str, check: Check[T], default: T) -> T:
        """The checked value, or ``default`` when absent or invalid (problem recorded)."""
        value = self.data.get(key, ABSENT)
        if value is ABSENT:
            return default
        result = check(value, self.at(key))
        return default if result is None else result

    def maybe(self, key: str, check: Check[T]) -> T | None:
        """The checked value, or None when absent or invalid (problem recorded)."""
        value = self.data.get(key, ABSENT)
        if value is ABSENT:
            return None
        return check(value, self.at(key))

    def req(self, key: str, check: Check[T]) -> T | None:
        """The checked value; a problem when absent."""
        value = self.data.get(key, ABSENT)
        if value is ABSENT:
            self.loader.add(self.at(key), "is required")
            return None
        return check(value, self.at(key))

    def address(
        self, key: str, check: Check[IPAddress], *, required: bool = False
    ) -> IPAddress | None:
        """``maybe``/``req`` for addresses (keeps mypy from joining v4|v6 to their base)."""
        return self.req(key, check) if required else self.maybe(key, check)  # type: ignore[return-value]

    def many(self, key: str, item: Check[T]) -> tuple[T, ...]:
        """An optional array of distinct items (empty when absent; bad items dropped)."""
        value = self.data.get(key, ABSENT)
        if value is ABSENT:
            return ()
        return tuple(self.loader.unique_list(value, self.at(key), item) or ())

    def bad(self, key: str) -> bool:
        return self.loader.bad(self.at(key))


# --------------------------------------------------------------------------- the checker


class Checker:
    """Collects problems (with their key paths) while checking values."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._bad: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))
        # Remember the path and every ancestor, so cross checks can skip broken values.
        self._bad.add(path)
        for i, ch in enumerate(path):
            if ch in ".[":
                self._bad.add(path[:i])

    def bad(self, path: str) -> bool:
        """True when a problem was recorded at ``path`` or anywhere below it."""
        return path in self._bad

    def integer(self, lo: int, hi: int) -> Check[int]:
        def check(value: object, path: str) -> int | None:
            if isinstance(value, bool) or not isinstance(value, int):
                self.add(path, f"must be an integer, {got(value)}")
                return None
            if not lo <= value <= hi:
                self.add(path, f"must be {lo}..{hi}, got {show(value)}")
                return None
            return value

        return check

    def boolean(self) -> Check[bool]:
        def check(value: object, path: str) -> bool | None:
            if not isinstance(value, bool):
                self.add(path, f"must be true or false, {got(value)}")
                return None
            return value

        return check

    def number(self, value: object, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"must be a number, {got(value)}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"must be a finite number, got {show(value)}")
            return None
        return value

    def seconds(self, lo: float, hi: float, *, lo_open: bool = False) -> Check[float]:
        """A duration in seconds (integer or float) within lo..hi (lo excluded if lo_open)."""

        def check(value: object, path: str) -> float | None:
            number = self.number(value, path)
            if number is None:
                return None
            if not (lo < number <= hi if lo_open else lo <= number <= hi):
                lower = f"more than {num(lo)}" if lo_open else num(lo)
                rng = f"{lower} and at most {num(hi)}" if lo_open else f"{lower}..{num(hi)}"
                self.add(path, f"must be {rng} seconds, got {show(value)}")
                return None
            return float(number)

        return check

    def text(
        self, *, max_len: int | None = None, pattern: re.Pattern[str] | None = None
    ) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string, {got(value)}")
                return None
            if not value:
                self.add(path, "must not be empty")
                return None
            if "\x00" in value:
                self.add(path, "must not contain NUL characters")
                return None
            if pattern is not None and not pattern.fullmatch(value):
                self.add(path, f"must match {pattern.pattern}, got {show(value)}")
                return None
            if max_len is not None and len(value) > max_len:
                self.add(path, f"must be at most {max_len} characters, got {len(value)}")
                return None
            return value

        return check

    def choice(self, options: Sequence[str]) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string, {got(value)}")
                return None
            if value not in options:
                self.add(path, f"must be one of {'|'.join(options)}, got {show(value)}")
                return None
            return value

        return check

    def name(self) -> Check[str]:
        return self.text(pattern=NAME_RE, max_len=64)

    def ifname(self) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string (interface name), {got(value)}")
                return None
            size = len(value.encode("utf-8", "surrogatepass"))
            if (
                not value
                or size >= IFNAMSIZ
                or value in (".", "..")
                or any(c in "/:\x00" or c.isspace() for c in value)
            ):
                self.add(
                    path,
                    "must be an interface name (1..15 bytes, no '/', ':' or spaces), "
                    f"got {show(value)}",
                )
                return None
            return value

        return check

    def abspath(self, *, max_bytes: int | None = None) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string (absolute path), {got(value)}")
                return None
            if not posixpath.isabs(value) or "\x00" in value:
                self.add(path, f"must be an absolute path, got {show(value)}")
                return None
            if max_bytes is not None and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
                self.add(path, f"must be at most {max_bytes} bytes long (socket path limit)")
                return None
            return value

        return check

    def listen(self, value: object, path: str) -> tuple[IPAddress, int] | None:
        """A TCP listening address: "ADDRESS:PORT", an IPv6 address in brackets."""
        if not isinstance(value, str):
            self.add(path, f'must be a string "ADDRESS:PORT", {got(value)}')
            return None
        host, sep, port_text = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            host = ""  # an IPv6 address without brackets: the port is ambiguous
        address = parse_ip(host) if sep else None
        if address is None or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self.add(
                path,
                f'must be "ADDRESS:PORT" (IPv6 in brackets, port 1-65535), got {show(value)}',
            )
            return None
        if address.is_multicast:
            self.add(path, f"must not be a multicast address, got {address}")
            return None
        return (address, int(port_text))

    def argv(self, value: object, path: str) -> tuple[str, ...] | None:
        """A command: a string split like a shell would, or a list of strings."""
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                self.add(path, f"cannot split into arguments: {exc}")
                return None
        elif isinstance(value, list):
            words = []
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    self.add(f"{path}[{i}]", f"must be a string, {got(item)}")
                    return None
                words.append(item)
        else:
            self.add(path, f"must be a string or an array of strings, {got(value)}")
            return None
        if not words:
            self.add(path, "must not be empty")
            return None
        if any("\x00" in w for w in words):
            self.add(path, "must not contain NUL characters")
            return None
        if not posixpath.isabs(words[0]):
            self.add(path, f"the program must be an absolute path, got {show(words[0])}")
            return None
        return tuple(words)

    def ip(self, value: object, path: str) -> IPAddress | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string (IP address), {got(value)}")
            return None
        address = parse_ip(value)
        if address is None:
            self.add(path, f"must be an IPv4 or IPv6 address, got {show(value)}")
            return None
        if address.is_unspecified or address.is_multicast:
            kind = "unspecified" if address.is_unspecified else "multicast"
            self.add(path, f"must be a unicast address, got {kind} {address}")
            return None
        return address

    def ip_in(self, text: str, value: object, path: str, form: str) -> IPAddress | None:
        """The unicast address ``text`` taken out of ``value``: an address that is not
        unicast is a problem of its own, anything else one of ``value`` not being ``form``."""
        address = self.ip(text, path) if parse_ip(text) is not None else None
        if address is None and not self.bad(path):
            self.add(path, f"must be {form}, got {show(value)}")
        return address

    def table(self, value: object, path: str) -> Mapping[str, object] | None:
        if not isinstance(value, Mapping):
            self.add(path, f"must be a table, {got(value)}")
            return None
        return cast(Mapping[str, object], value)

    def array(self, value: object, path: str) -> list[object] | None:
        if not isinstance(value, list | tuple):
            self.add(path, f"must be an array, {got(value)}")
            return None
        return list(value)

    def tables(self, value: object, path: str, toml_name: str) -> list[Mapping[str, object] | None]:
        """An array of tables; an entry that is not a table is a problem and becomes None."""
        if isinstance(value, Mapping):
            self.add(path, f"must be an array of tables ([[{toml_name}]]), got a single table")
            return []
        items = self.array(value, path)
        if items is None:
            return []
        return [self.table(item, f"{path}[{i}]") for i, item in enumerate(items)]

    def unique_list(self, value: object, path: str, item: Check[T]) -> list[T] | None:
        """An array whose items pass ``item`` and are not repeated."""
        items = self.array(value, path)
        if items is None:
            return None
        out: list[T] = []
        for i, raw in enumerate(items):
            checked = item(raw, f"{path}[{i}]")
            if checked is None:
                continue
            if checked in out:
                self.add(f"{path}[{i}]", f"duplicate {show(raw)}")
                continue
            out.append(checked)
        return out

    def ip_of_family(
        self, value: object, path: str, family: int | None, whose: str
    ) -> IPAddress | None:
        address = self.ip(value, path)
        if address is None:
            return None
        if family is not None and address.version != family:
            self.add(
                path,
                f"must be IPv{family} like {whose}, got IPv{address.version} {show(value)}",
            )
            return None
        return address


# --------------------------------------------------------------------------- small parsers


def present(items: Sequence[T | None]) -> list[T]:
    return [x for x in items if x is not None]


def parse_ip(text: str) -> IPAddress | None:
    if "%" in text or text != text.strip():
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def split_endpoint(text: str) -> tuple[str | None, str | None]:
    """Split "ip:port", "[v6]:port", "[v6]", "ip" into (host, port or None)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None, None
        host, rest = text[1:close], text[close + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return None, None
        return host, rest[1:]
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    if ":" in text:  # bare IPv6: no port possible without brackets
        return text, None
    return text, None


def dotted_prefix(text: str) -> int | None:
    """Prefix length of a contiguous dotted IPv4 netmask, None if it is not one."""
    try:
        mask = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    inverted = ~mask & 0xFFFFFFFF
    if inverted & (inverted + 1):
        return None
    return 32 - inverted.bit_length()
