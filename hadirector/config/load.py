"""Strict TOML loading: text -> validated, defaulted, resolved ``schema.Config``.

Strict means: an unknown key, a wrong type or an out-of-range value is a problem, reported
with its key path in index form (``vrrp_instance[0].priority: must be 1..255, got 300``).
Every problem in the file is collected and raised at once as one ``ConfigError``; a TOML
syntax error is a single problem carrying its line and column. Nothing but ``ConfigError``
escapes for any input (anything else is a bug in this module).

Validation happens in three passes: each table on its own (types, ranges, defaults), each
object with itself (family of addresses, version rules, forwarding options), then the
whole file (references between tables, uniqueness). A cross check is skipped when a value
it depends on already has a problem, so one mistake is reported once.

This module must not import anything outside the standard library, read the clock or do
I/O; the one exception is ``load_path``, a thin wrapper that reads the file's bytes.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import posixpath
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

from hadirector.config.schema import (
    CHECK_TYPES,
    FORWARDINGS,
    HEALTH_ACTIONS,
    LOG_LEVELS,
    MAX_V3_INTERVAL_CS,
    PROTOCOLS,
    SCHEDULER_FLAGS,
    SCHEDULERS,
    TUNNEL_FLAGS,
    TUNNEL_TYPES,
    Config,
    Family,
    FwmarkMatch,
    GlobalConfig,
    HealthCheck,
    IPAddress,
    IPInterface,
    IpvsSettings,
    NotifyScripts,
    RealServer,
    ServiceKey,
    SyncDaemonSettings,
    SyncGroup,
    TrackFile,
    TrackRef,
    TrackScript,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
)
from hadirector.errors import ConfigError, Problem

__all__ = ["load_mapping", "load_path", "load_text"]

T = TypeVar("T")
Check = Callable[[object, str], T | None]

INT32_MAX: Final = 2**31 - 1
UINT32_MAX: Final = 2**32 - 1
IFNAMSIZ: Final = 16  # kernel limit including the NUL: names are 1..15 bytes
SUN_PATH_MAX: Final = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")
_ABSENT: Final = object()
_NOTIFY_KEYS: Final = ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop")

TOP_KEYS: Final = (
    "global",
    "vrrp_instance",
    "sync_group",
    "track_script",
    "track_file",
    "ipvs",
    "virtual_server",
)
GLOBAL_KEYS: Final = (
    "router_id",
    "log_level",
    "control_socket",
    "notify_timeout",
    "state_dir",
    "realtime_priority",
    "metrics_listen",
)
INSTANCE_KEYS: Final = (
    "name",
    "interface",
    "vrid",
    "priority",
    "advert_interval",
    "version",
    "preempt",
    "preempt_delay",
    "virtual_addresses",
    "unicast_src",
    "unicast_peers",
    "accept_from",
    "max_adopted_interval",
    "v3_checksum_pseudo_header",
    "old_unicast_checksum",
    "auth_type",
    "auth_pass",
    "hmac_key_file",
    "hmac_accept_key_files",
    "garp_master_repeat",
    "garp_interval",
    "garp_master_delay",
    "garp_master_refresh",
    "handover_hold",
    "track_interfaces",
    "track_scripts",
    "track_files",
    *_NOTIFY_KEYS,
)
VIP_KEYS: Final = ("address", "dev", "label")
TRACK_REF_KEYS: Final = ("name", "weight")
GROUP_KEYS: Final = ("name", "instances", *_NOTIFY_KEYS)
SCRIPT_KEYS: Final = ("name", "script", "interval", "timeout", "weight", "rise", "fall")
FILE_KEYS: Final = ("name", "path", "weight")
IPVS_KEYS: Final = (
    "own_whole_table",
    "timeout_tcp",
    "timeout_tcpfin",
    "timeout_udp",
    "reconcile_interval",
    "sync",
)
SYNC_KEYS: Final = (
    "interface",
    "instance",
    "group",
    "syncid",
    "maxlen",
    "mcast_group",
    "mcast_port",
    "mcast_ttl",
)
SYNC_MAXLEN_MAX: Final = 65507  # the largest UDP payload over IPv4
VS_KEYS: Final = (
    "address",
    "fwmark",
    "family",
    "protocol",
    "scheduler",
    "scheduler_flags",
    "one_packet",
    "forwarding",
    "persistence_timeout",
    "persistence_netmask",
    "tunnel_type",
    "tunnel_port",
    "tunnel_flags",
    "fullnat_source",
    "match",
    "health_action",
    "check",
    "real_server",
)
MATCH_KEYS: Final = ("address", "protocol", "ports")
RS_KEYS: Final = ("address", "weight", "upper_threshold", "lower_threshold", "forwarding", "check")
CHECK_KEYS: Final = (
    "type",
    "port",
    "interval",
    "timeout",
    "rise",
    "fall",
    "path",
    "expect_status",
    "expect_body",
    "host",
    "tls_verify",
    "script",
    "alpha",
)
# Check keys that apply to some check types only.
CHECK_KEY_TYPES: Final = {
    "path": ("http", "https"),
    "expect_status": ("http", "https"),
    "expect_body": ("http", "https"),
    "host": ("http", "https"),
    "tls_verify": ("https",),
    "script": ("script",),
}
HTTP_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


# --------------------------------------------------------------------------- public API


def load_path(path: str | Path) -> Config:
    """Read and load a TOML configuration file; raises ``ConfigError`` listing every problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(Problem("", f"{path}: cannot read: {exc.strerror or exc}")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            Problem("", f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})")
        ) from None
    return load_text(text, source=str(path))


def load_text(text: str, source: str = "<string>") -> Config:
    """Load configuration from TOML text; raises ``ConfigError`` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_problem(text, source, str(exc))) from None
    return load_mapping(data)


def load_mapping(data: Mapping[str, object]) -> Config:
    """Validate an already parsed TOML document (as ``tomllib`` returns it)."""
    loader = _Loader()
    config = loader.document(data)
    if loader.problems or config is None:
        raise ConfigError(loader.problems or [Problem("", "invalid configuration")])
    return config


_AT_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_END_RE = re.compile(r"\s*\(at end of document\)$")


def _syntax_problem(text: str, source: str, message: str) -> Problem:
    m = _AT_RE.search(message)
    if m:
        line, column = int(m.group(1)), int(m.group(2))
        message = message[: m.start()]
    else:
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
        e = _END_RE.search(message)
        if e:
            message = message[: e.start()] + " at end of document"
    return Problem("", f"{source}: line {line}, column {column}: TOML syntax error: {message}")


# --------------------------------------------------------------------------- rendering


def _type_name(value: object) -> str:
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


def _show(value: object) -> str:
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
    return _type_name(value)


def _got(value: object) -> str:
    """'got <type> <value>' for type errors."""
    name = _type_name(value)
    shown = _show(value)
    return f"got {name}" if shown == name else f"got {name} {shown}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _quote(name: str) -> str:
    return _show(name)


# --------------------------------------------------------------------------- table reader


class _Table:
    """One TOML table: reports unknown keys, hands out values with their key paths."""

    def __init__(
        self, loader: _Loader, data: Mapping[str, object], path: str, keys: Sequence[str]
    ) -> None:
        self.loader = loader
        self.data = data
        self.path = path
        for key in data:
            if key not in keys:
                hint = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
                msg = f'unknown key (did you mean "{hint[0]}"?)' if hint else "unknown key"
                loader.add(_join(path, str(key)), msg)

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        return self.data.get(key, _ABSENT)

    def opt(self, key: str, check: Check[T], default: T) -> T:
        """The checked value, or ``default`` when absent or invalid (problem recorded)."""
        value = self.data.get(key, _ABSENT)
        if value is _ABSENT:
            return default
        result = check(value, self.at(key))
        return default if result is None else result

    def maybe(self, key: str, check: Check[T]) -> T | None:
        """The checked value, or None when absent or invalid (problem recorded)."""
        value = self.data.get(key, _ABSENT)
        if value is _ABSENT:
            return None
        return check(value, self.at(key))

    def req(self, key: str, check: Check[T]) -> T | None:
        """The checked value; a problem when absent."""
        value = self.data.get(key, _ABSENT)
        if value is _ABSENT:
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
        value = self.data.get(key, _ABSENT)
        if value is _ABSENT:
            return ()
        return tuple(self.loader.unique_list(value, self.at(key), item) or ())

    def bad(self, key: str) -> bool:
        return self.loader.bad(self.at(key))


# --------------------------------------------------------------------------- the loader


class _Loader:
    """Collects problems while turning a parsed document into a ``Config``."""

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

    # ---- scalar checks (each returns a Check: value, path -> result or None)

    def integer(self, lo: int, hi: int) -> Check[int]:
        def check(value: object, path: str) -> int | None:
            if isinstance(value, bool) or not isinstance(value, int):
                self.add(path, f"must be an integer, {_got(value)}")
                return None
            if not lo <= value <= hi:
                self.add(path, f"must be {lo}..{hi}, got {_show(value)}")
                return None
            return value

        return check

    def boolean(self) -> Check[bool]:
        def check(value: object, path: str) -> bool | None:
            if not isinstance(value, bool):
                self.add(path, f"must be true or false, {_got(value)}")
                return None
            return value

        return check

    def number(self, value: object, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"must be a number, {_got(value)}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"must be a finite number, got {_show(value)}")
            return None
        return value

    def seconds(self, lo: float, hi: float, *, lo_open: bool = False) -> Check[float]:
        """A duration in seconds (integer or float) within lo..hi (lo excluded if lo_open)."""

        def check(value: object, path: str) -> float | None:
            number = self.number(value, path)
            if number is None:
                return None
            if not (lo < number <= hi if lo_open else lo <= number <= hi):
                lower = f"more than {_num(lo)}" if lo_open else _num(lo)
                rng = f"{lower} and at most {_num(hi)}" if lo_open else f"{lower}..{_num(hi)}"
                self.add(path, f"must be {rng} seconds, got {_show(value)}")
                return None
            return float(number)

        return check

    def text(
        self, *, max_len: int | None = None, pattern: re.Pattern[str] | None = None
    ) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string, {_got(value)}")
                return None
            if not value:
                self.add(path, "must not be empty")
                return None
            if "\x00" in value:
                self.add(path, "must not contain NUL characters")
                return None
            if pattern is not None and not pattern.fullmatch(value):
                self.add(path, f"must match {pattern.pattern}, got {_show(value)}")
                return None
            if max_len is not None and len(value) > max_len:
                self.add(path, f"must be at most {max_len} characters, got {len(value)}")
                return None
            return value

        return check

    def choice(self, options: Sequence[str]) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string, {_got(value)}")
                return None
            if value not in options:
                self.add(path, f"must be one of {'|'.join(options)}, got {_show(value)}")
                return None
            return value

        return check

    def name(self) -> Check[str]:
        return self.text(pattern=NAME_RE, max_len=64)

    def ifname(self) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string (interface name), {_got(value)}")
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
                    f"got {_show(value)}",
                )
                return None
            return value

        return check

    def abspath(self, *, max_bytes: int | None = None) -> Check[str]:
        def check(value: object, path: str) -> str | None:
            if not isinstance(value, str):
                self.add(path, f"must be a string (absolute path), {_got(value)}")
                return None
            if not posixpath.isabs(value) or "\x00" in value:
                self.add(path, f"must be an absolute path, got {_show(value)}")
                return None
            if max_bytes is not None and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
                self.add(path, f"must be at most {max_bytes} bytes long (socket path limit)")
                return None
            return value

        return check

    def listen(self, value: object, path: str) -> tuple[IPAddress, int] | None:
        """A TCP listening address: "ADDRESS:PORT", an IPv6 address in brackets."""
        if not isinstance(value, str):
            self.add(path, f'must be a string "ADDRESS:PORT", {_got(value)}')
            return None
        host, sep, port_text = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            host = ""  # an IPv6 address without brackets: the port is ambiguous
        address = _parse_ip(host) if sep else None
        if address is None or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self.add(
                path,
                f'must be "ADDRESS:PORT" (IPv6 in brackets, port 1-65535), got {_show(value)}',
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
                    self.add(f"{path}[{i}]", f"must be a string, {_got(item)}")
                    return None
                words.append(item)
        else:
            self.add(path, f"must be a string or an array of strings, {_got(value)}")
            return None
        if not words:
            self.add(path, "must not be empty")
            return None
        if any("\x00" in w for w in words):
            self.add(path, "must not contain NUL characters")
            return None
        if not posixpath.isabs(words[0]):
            self.add(path, f"the program must be an absolute path, got {_show(words[0])}")
            return None
        return tuple(words)

    def ip(self, value: object, path: str) -> IPAddress | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string (IP address), {_got(value)}")
            return None
        address = _parse_ip(value)
        if address is None:
            self.add(path, f"must be an IPv4 or IPv6 address, got {_show(value)}")
            return None
        if address.is_unspecified or address.is_multicast:
            kind = "unspecified" if address.is_unspecified else "multicast"
            self.add(path, f"must be a unicast address, got {kind} {address}")
            return None
        return address

    def table(self, value: object, path: str) -> Mapping[str, object] | None:
        if not isinstance(value, Mapping):
            self.add(path, f"must be a table, {_got(value)}")
            return None
        return cast(Mapping[str, object], value)

    def array(self, value: object, path: str) -> list[object] | None:
        if not isinstance(value, list | tuple):
            self.add(path, f"must be an array, {_got(value)}")
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
                self.add(f"{path}[{i}]", f"duplicate {_show(raw)}")
                continue
            out.append(checked)
        return out

    def notify(self, t: _Table) -> NotifyScripts:
        return NotifyScripts(*(t.maybe(key, self.argv) for key in _NOTIFY_KEYS))

    # ---- the document

    def document(self, data: Mapping[str, object]) -> Config | None:
        top = _Table(self, data, "", TOP_KEYS)
        global_ = self.global_(top)
        ipvs = self.ipvs(top)
        # A track script or file with a problem keeps its name, so references to it from
        # instances do not add a second, misleading problem.
        scripts = [
            self.track_script(t, f"track_script[{i}]")
            for i, t in enumerate(self.section(top, "track_script"))
        ]
        files = [
            self.track_file(t, f"track_file[{i}]")
            for i, t in enumerate(self.section(top, "track_file"))
        ]
        script_by_name = self.unique_names(scripts, "track_script")
        file_by_name = self.unique_names(files, "track_file")

        instance_tables = self.section(top, "vrrp_instance")
        instances: list[VrrpInstance | None] = []
        instance_names: list[str | None] = []
        for i, t in enumerate(instance_tables):
            path = f"vrrp_instance[{i}]"
            inst, name = self.instance(t, path, script_by_name, file_by_name)
            instances.append(inst)
            instance_names.append(name)
        self.check_instances(instances, instance_names)

        groups = self.sync_groups(self.section(top, "sync_group"), instance_names)
        ipvs = self.check_sync(ipvs, instance_names, groups)
        vs_tables = self.section(top, "virtual_server")
        servers = [self.virtual_server(t, f"virtual_server[{i}]") for i, t in enumerate(vs_tables)]
        self.check_services(servers)

        if self.problems:
            return None
        return Config(
            global_=global_,
            vrrp_instances=tuple(_present(instances)),
            sync_groups=tuple(_present(groups)),
            track_scripts=tuple(_present([s for s, _ in scripts])),
            track_files=tuple(_present([f for f, _ in files])),
            ipvs=ipvs,
            virtual_servers=tuple(_present(servers)),
        )

    def section(self, top: _Table, key: str) -> list[Mapping[str, object] | None]:
        """A top-level array of tables ([[key]]), empty when absent."""
        return self.tables(top.raw(key), key, key) if top.has(key) else []

    def unique_names(
        self, objs: Sequence[tuple[TrackScript | TrackFile | None, str | None]], section: str
    ) -> dict[str, TrackScript | TrackFile | None]:
        seen: dict[str, TrackScript | TrackFile | None] = {}
        for i, (obj, name) in enumerate(objs):
            if name is None:
                continue
            if name in seen:
                self.add(f"{section}[{i}].name", f"duplicate name {_quote(name)}")
                continue
            seen[name] = obj
        return seen

    # ---- [global], [ipvs]

    def global_(self, top: _Table) -> GlobalConfig:
        if not top.has("global"):
            return GlobalConfig()
        data = self.table(top.raw("global"), "global")
        if data is None:
            return GlobalConfig()
        t = _Table(self, data, "global", GLOBAL_KEYS)
        default = GlobalConfig()
        return GlobalConfig(
            router_id=t.maybe("router_id", self.text(max_len=255)),
            log_level=cast(Any, t.opt("log_level", self.choice(LOG_LEVELS), "info")),
            control_socket=t.opt(
                "control_socket", self.abspath(max_bytes=SUN_PATH_MAX), default.control_socket
            ),
            notify_timeout_s=t.opt(
                "notify_timeout", self.seconds(0, 3600, lo_open=True), default.notify_timeout_s
            ),
            state_dir=t.opt("state_dir", self.abspath(), default.state_dir),
            realtime_priority=t.opt("realtime_priority", self.integer(0, 99), 0),
            metrics_listen=t.maybe("metrics_listen", self.listen),
        )

    def ipvs(self, top: _Table) -> IpvsSettings:
        if not top.has("ipvs"):
            return IpvsSettings()
        data = self.table(top.raw("ipvs"), "ipvs")
        if data is None:
            return IpvsSettings()
        t = _Table(self, data, "ipvs", IPVS_KEYS)
        default = IpvsSettings()
        timeout = self.integer(0, INT32_MAX)
        return IpvsSettings(
            own_whole_table=t.opt("own_whole_table", self.boolean(), default.own_whole_table),
            timeout_tcp_s=t.maybe("timeout_tcp", timeout),
            timeout_tcpfin_s=t.maybe("timeout_tcpfin", timeout),
            timeout_udp_s=t.maybe("timeout_udp", timeout),
            reconcile_interval_s=t.opt(
                "reconcile_interval",
                self.seconds(0, 86400, lo_open=True),
                default.reconcile_interval_s,
            ),
            sync=self.sync_daemon(t.raw("sync")) if t.has("sync") else None,
        )

    def sync_daemon(self, value: object) -> SyncDaemonSettings | None:
        """``[ipvs.sync]`` on its own; ``check_sync`` resolves whose state decides."""
        data = self.table(value, "ipvs.sync")
        if data is None:
            return None
        t = _Table(self, data, "ipvs.sync", SYNC_KEYS)
        default = SyncDaemonSettings(interface="")
        interface = t.req("interface", self.ifname())
        instance = t.maybe("instance", self.name())
        group = t.maybe("group", self.name())
        if t.has("instance") and t.has("group"):
            self.add(t.at("group"), "give either instance or group, not both")
        mcast_group = t.address("mcast_group", self.multicast_group)
        # Kept with a bad interface, so that check_sync still reports its own problems.
        return SyncDaemonSettings(
            interface=interface or "",
            instance=instance,
            group=group,
            syncid=t.opt("syncid", self.integer(0, 255), default.syncid),
            maxlen=t.opt("maxlen", self.integer(0, SYNC_MAXLEN_MAX), default.maxlen),
            mcast_group=default.mcast_group if mcast_group is None else mcast_group,
            mcast_port=t.opt("mcast_port", self.integer(1, 65535), default.mcast_port),
            mcast_ttl=t.opt("mcast_ttl", self.integer(1, 255), default.mcast_ttl),
        )

    def multicast_group(self, value: object, path: str) -> IPAddress | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string (multicast address), {_got(value)}")
            return None
        address = _parse_ip(value)
        if address is None or not address.is_multicast:
            self.add(path, f"must be an IPv4 or IPv6 multicast address, got {_show(value)}")
            return None
        return address

    def check_sync(
        self,
        ipvs: IpvsSettings,
        instance_names: Sequence[str | None],
        groups: Sequence[SyncGroup | None],
    ) -> IpvsSettings:
        """Resolve whose VRRP state decides the sync daemon's role (``[ipvs.sync]``)."""
        sync = ipvs.sync
        if sync is None:
            return ipvs
        if sync.group is not None:
            known_groups = {g.name for g in groups if g is not None}
            if sync.group not in known_groups:
                self.add("ipvs.sync.group", f"no [[sync_group]] named {_quote(sync.group)}")
            return ipvs
        if sync.instance is not None:
            if sync.instance not in instance_names:
                self.add(
                    "ipvs.sync.instance", f"no [[vrrp_instance]] named {_quote(sync.instance)}"
                )
            return ipvs
        if len(instance_names) != 1:
            self.add(
                "ipvs.sync.instance",
                "is required (or group) when there is not exactly one vrrp_instance, "
                f"got {len(instance_names)}",
            )
            return ipvs
        only = instance_names[0]
        if only is None:  # that instance has a problem of its own
            return ipvs
        return dataclasses.replace(ipvs, sync=dataclasses.replace(sync, instance=only))

    # ---- [[track_script]], [[track_file]]

    def track_script(
        self, data: Mapping[str, object] | None, path: str
    ) -> tuple[TrackScript | None, str | None]:
        if data is None:
            return None, None
        t = _Table(self, data, path, SCRIPT_KEYS)
        name = t.req("name", self.name())
        script = t.req("script", self.argv)
        interval_s = t.opt("interval", self.seconds(0, 86400, lo_open=True), 1.0)
        timeout_s = t.opt("timeout", self.seconds(0, 86400, lo_open=True), interval_s)
        weight = t.opt("weight", self.integer(-253, 253), 0)
        rise = t.opt("rise", self.integer(1, 1000), 1)
        fall = t.opt("fall", self.integer(1, 1000), 1)
        if name is None or script is None:
            return None, name
        return TrackScript(name, script, interval_s, timeout_s, weight, rise, fall), name

    def track_file(
        self, data: Mapping[str, object] | None, path: str
    ) -> tuple[TrackFile | None, str | None]:
        if data is None:
            return None, None
        t = _Table(self, data, path, FILE_KEYS)
        name = t.req("name", self.name())
        file_path = t.req("path", self.abspath())
        weight = t.opt("weight", self.integer(-253, 253), 1)
        if name is None or file_path is None:
            return None, name
        return TrackFile(name, file_path, weight), name

    # ---- [[vrrp_instance]]

    def instance(
        self,
        data: Mapping[str, object] | None,
        path: str,
        scripts: Mapping[str, TrackScript | TrackFile | None],
        files: Mapping[str, TrackScript | TrackFile | None],
    ) -> tuple[VrrpInstance | None, str | None]:
        if data is None:
            return None, None
        t = _Table(self, data, path, INSTANCE_KEYS)
        name = t.req("name", self.name())
        interface = t.req("interface", self.ifname())
        vrid = t.req("vrid", self.integer(1, 255))
        priority = t.req("priority", self.integer(1, 255))
        version = cast(Literal[2, 3], t.opt("version", self.version, 3))
        version_ok = not t.bad("version")
        preempt = t.opt("preempt", self.boolean(), True)
        preempt_delay_s = t.opt("preempt_delay", self.seconds(0, 1000), 0.0)
        if not preempt and preempt_delay_s > 0 and not t.bad("preempt"):
            self.add(t.at("preempt_delay"), "has no effect with preempt = false")

        # Addresses first: they decide the family every other address must have.
        vips = self.virtual_addresses(t, interface)
        families = {v.family for v in vips}
        family: Family | None = None
        if len(families) > 1:
            self.add(t.at("virtual_addresses"), "must all be one family (IPv4 or IPv6), got both")
        elif families:
            family = vips[0].family
        if family == 6 and version == 2 and version_ok:
            self.add(t.at("version"), "version 2 is IPv4 only; these virtual_addresses are IPv6")

        # Intervals.
        if version_ok:
            advert_cs = t.opt("advert_interval", self.interval(version), 100)
        else:  # the range depends on the version: only the type can be checked
            t.maybe("advert_interval", self.number)
            advert_cs = 100
        if t.has("max_adopted_interval") and version_ok and version == 2:
            self.add(t.at("max_adopted_interval"), "applies to version 3 only")
            max_adopted_cs = advert_cs
        elif version == 2:
            max_adopted_cs = advert_cs
        else:
            default_max = min(4 * advert_cs, MAX_V3_INTERVAL_CS)
            max_adopted_cs = t.opt("max_adopted_interval", self.interval(3), default_max)
            if (
                t.has("max_adopted_interval")
                and not t.bad("max_adopted_interval")
                and not t.bad("advert_interval")
                and max_adopted_cs < advert_cs
            ):
                self.add(
                    t.at("max_adopted_interval"),
                    f"must be >= advert_interval ({_cs(advert_cs)}), got {_cs(max_adopted_cs)}",
                )

        # Unicast and source filtering.
        def fam_ip(value: object, p: str) -> IPAddress | None:
            return self.ip_of_family(value, p, family, "the virtual_addresses")

        unicast_src: IPAddress | None = t.address("unicast_src", fam_ip)
        peers: tuple[IPAddress, ...] = t.many("unicast_peers", fam_ip)
        if unicast_src is not None and unicast_src in peers:
            raw_peers = cast(list[object], t.raw("unicast_peers"))
            idx = next(
                i
                for i, r in enumerate(raw_peers)
                if isinstance(r, str) and _parse_ip(r) == unicast_src
            )
            self.add(f"{t.at('unicast_peers')}[{idx}]", "must not be our own unicast_src")
        accept_from: tuple[IPAddress, ...] = t.many("accept_from", fam_ip)
        if not t.has("accept_from"):
            accept_from = peers

        # Checksum and authentication.
        pseudo = t.opt("v3_checksum_pseudo_header", self.boolean(), True)
        if not pseudo and family == 6:
            self.add(
                t.at("v3_checksum_pseudo_header"),
                "must be true for IPv6 (the IPv6 pseudo-header is always part of the checksum)",
            )
        old_unicast = t.opt("old_unicast_checksum", self.boolean(), False)
        if (
            old_unicast
            and family is not None
            and version_ok
            and (family != 4 or version != 3 or not peers)
        ):
            self.add(
                t.at("old_unicast_checksum"),
                "applies to IPv4 VRRPv3 with unicast_peers only",
            )
        auth_type = t.opt("auth_type", self.choice(("none", "pass")), "none")
        if auth_type != "none" and version == 3 and version_ok:
            self.add(t.at("auth_type"), "authentication exists in version 2 only")
        auth_pass = t.maybe("auth_pass", self.auth_pass)
        if auth_type == "pass" and auth_pass is None and not t.has("auth_pass"):
            self.add(t.at("auth_pass"), 'is required with auth_type = "pass"')
        if auth_type == "none" and auth_pass is not None and not t.bad("auth_type"):
            self.add(t.at("auth_pass"), 'applies only with auth_type = "pass"')
        hmac_key_file = t.maybe("hmac_key_file", self.abspath())
        hmac_accept: tuple[str, ...] = t.many("hmac_accept_key_files", self.abspath())
        if t.has("hmac_accept_key_files") and not t.has("hmac_key_file"):
            self.add(
                t.at("hmac_accept_key_files"),
                "needs hmac_key_file (accepted keys verify, only hmac_key_file signs)",
            )

        # Announcements and handover.
        garp_repeat = t.opt("garp_master_repeat", self.integer(1, 100), 5)
        garp_interval_s = t.opt("garp_interval", self.seconds(0, 10), 0.001)
        garp_delay_s = t.opt("garp_master_delay", self.seconds(0, 3600), 5.0)
        garp_refresh_s = t.opt("garp_master_refresh", self.seconds(0, 86400), 0.0)
        handover_hold_s = t.opt("handover_hold", self.seconds(0, 5), 0.1)

        # Tracking.
        track_ifs = self.track_refs(t, "track_interfaces", self.ifname(), None)
        track_scripts = self.track_refs(
            t, "track_scripts", self.ref(scripts, "track_script"), scripts
        )
        track_files = self.track_refs(t, "track_files", self.ref(files, "track_file"), files)
        notify = self.notify(t)

        if name is None or interface is None or vrid is None or priority is None or not vips:
            return None, name
        instance = VrrpInstance(
            name=name,
            interface=interface,
            vrid=vrid,
            priority=priority,
            virtual_addresses=tuple(vips),
            advert_interval_cs=advert_cs,
            version=version,
            preempt=preempt,
            preempt_delay_s=preempt_delay_s,
            unicast_src=unicast_src,
            unicast_peers=peers,
            accept_from=accept_from,
            max_adopted_interval_cs=max_adopted_cs,
            v3_checksum_pseudo_header=pseudo,
            old_unicast_checksum=old_unicast,
            auth_type=cast(Any, auth_type),
            auth_pass=auth_pass,
            hmac_key_file=hmac_key_file,
            hmac_accept_key_files=hmac_accept,
            garp_master_repeat=garp_repeat,
            garp_interval_s=garp_interval_s,
            garp_master_delay_s=garp_delay_s,
            garp_master_refresh_s=garp_refresh_s,
            handover_hold_s=handover_hold_s,
            track_interfaces=track_ifs,
            track_scripts=track_scripts,
            track_files=track_files,
            notify=notify,
        )
        return instance, name

    def version(self, value: object, path: str) -> int | None:
        if isinstance(value, bool) or value not in (2, 3) or not isinstance(value, int):
            self.add(path, f"must be 2 or 3, got {_show(value)}")
            return None
        return value

    def interval(self, version: int) -> Check[int]:
        """A VRRP interval in seconds -> centiseconds (v3: 0.01 steps, v2: whole seconds)."""

        def check(value: object, path: str) -> int | None:
            number = self.number(value, path)
            if number is None:
                return None
            if version == 2:
                if not 1 <= number <= 255:
                    self.add(path, f"must be 1..255 seconds (version 2), got {_show(value)}")
                    return None
                if not float(number).is_integer():
                    self.add(path, f"must be whole seconds in version 2, got {_show(value)}")
                    return None
                return int(number) * 100
            if not 0.01 <= number <= 40.95:
                self.add(path, f"must be 0.01..40.95 seconds, got {_show(value)}")
                return None
            centis = round(number * 100)
            if abs(number * 100 - centis) > 1e-6:
                self.add(path, f"must be a multiple of 0.01 seconds, got {_show(value)}")
                return None
            return int(centis)

        return check

    def auth_pass(self, value: object, path: str) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, {_got(value)}")
            return None
        if not value.isascii() or not value.isprintable() or not 1 <= len(value) <= 8:
            self.add(path, "must be 1..8 printable ASCII characters")
            return None
        return value

    def ip_of_family(
        self, value: object, path: str, family: int | None, whose: str
    ) -> IPAddress | None:
        address = self.ip(value, path)
        if address is None:
            return None
        if family is not None and address.version != family:
            self.add(
                path,
                f"must be IPv{family} like {whose}, got IPv{address.version} {_show(value)}",
            )
            return None
        return address

    def virtual_addresses(self, t: _Table, interface: str | None) -> list[VirtualAddress]:
        path = t.at("virtual_addresses")
        if not t.has("virtual_addresses"):
            self.add(path, "is required")
            return []
        items = self.array(t.raw("virtual_addresses"), path)
        if items is None:
            return []
        if not items:
            self.add(path, "must not be empty")
            return []
        out: list[VirtualAddress] = []
        for i, item in enumerate(items):
            vip = self.virtual_address(item, f"{path}[{i}]", interface)
            if vip is None:
                continue
            if any(v.address == vip.address for v in out):
                self.add(f"{path}[{i}]", f"duplicate address {vip.address}")
                continue
            out.append(vip)
        return out

    def virtual_address(
        self, value: object, path: str, interface: str | None
    ) -> VirtualAddress | None:
        if isinstance(value, str):
            iface = self.ip_interface(value, path)
            if iface is None:
                return None
            # A missing interface is reported elsewhere; keep the family for cross checks.
            return VirtualAddress(iface, interface or "", None)
        data = self.table(value, path)
        if data is None:
            return None
        t = _Table(self, data, path, VIP_KEYS)
        iface = cast(IPInterface | None, t.req("address", self.ip_interface))
        dev = t.opt("dev", self.ifname(), interface or "")
        label = t.maybe("label", self.text())
        if label is not None and iface is not None and dev is not None:
            if iface.version != 4:
                self.add(t.at("label"), "labels exist for IPv4 addresses only")
            elif not label.startswith(dev):
                self.add(t.at("label"), f"must start with the device name {_quote(dev)}")
            elif len(label.encode("utf-8")) >= IFNAMSIZ:
                self.add(t.at("label"), "must be at most 15 bytes (kernel limit)")
        if iface is None or dev is None:
            return None
        return VirtualAddress(iface, dev, label)

    def ip_interface(
        self, value: object, path: str
    ) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        if not isinstance(value, str):
            self.add(path, f'must be a string ("address/prefix"), {_got(value)}')
            return None
        addr_text, slash, prefix_text = value.partition("/")
        address = self.ip(addr_text, path) if _parse_ip(addr_text) is not None else None
        if address is None:
            if not self.bad(path):
                self.add(path, f'must be "address" or "address/prefix", got {_show(value)}')
            return None
        max_prefix = 32 if address.version == 4 else 128
        if slash:
            if not prefix_text.isdigit() or not 1 <= int(prefix_text) <= max_prefix:
                self.add(path, f"prefix must be 1..{max_prefix}, got {_show(value)}")
                return None
            prefix = int(prefix_text)
        else:
            prefix = max_prefix
        return ipaddress.ip_interface(f"{address}/{prefix}")

    def track_refs(
        self,
        t: _Table,
        key: str,
        name_check: Check[str],
        targets: Mapping[str, TrackScript | TrackFile | None] | None,
    ) -> tuple[TrackRef, ...]:
        """Entries "name" or {name, weight}; weight defaults to the target's (or 0)."""
        if not t.has(key):
            return ()
        path = t.at(key)
        items = self.array(t.raw(key), path)
        if items is None:
            return ()
        out: list[TrackRef] = []
        for i, item in enumerate(items):
            p = f"{path}[{i}]"
            weight: int | None = None
            if isinstance(item, Mapping):
                t = _Table(self, cast(Mapping[str, object], item), p, TRACK_REF_KEYS)
                name = t.req("name", name_check)
                weight = t.maybe("weight", self.integer(-253, 253))
            else:
                name = name_check(item, p)
            if name is None:
                continue
            if any(r.name == name for r in out):
                self.add(p, f"duplicate {_quote(name)}")
                continue
            if weight is None:
                target = targets.get(name) if targets is not None else None
                weight = target.weight if target is not None else 0
            out.append(TrackRef(name, weight))
        return tuple(out)

    def ref(
        self, targets: Mapping[str, TrackScript | TrackFile | None], section: str
    ) -> Check[str]:
        names = self.name()

        def check(value: object, path: str) -> str | None:
            name = names(value, path)
            if name is None:
                return None
            if name not in targets:
                self.add(path, f"no [[{section}]] named {_quote(name)}")
                return None
            return name

        return check

    def check_instances(
        self, instances: Sequence[VrrpInstance | None], names: Sequence[str | None]
    ) -> None:
        seen_names: dict[str, int] = {}
        for i, name in enumerate(names):
            if name is None:
                continue
            if name in seen_names:
                self.add(
                    f"vrrp_instance[{i}].name",
                    f"duplicate name {_quote(name)} (also vrrp_instance[{seen_names[name]}])",
                )
            else:
                seen_names[name] = i
        routers: dict[tuple[str, int, int], VrrpInstance] = {}
        vip_owner: dict[IPAddress, VrrpInstance] = {}
        for i, inst in enumerate(instances):
            if inst is None:
                continue
            router = (inst.interface, inst.vrid, inst.family)
            other = routers.get(router)
            if other is not None:
                self.add(
                    f"vrrp_instance[{i}].vrid",
                    f"vrid {inst.vrid} on {inst.interface} (IPv{inst.family}) is already used "
                    f"by instance {_quote(other.name)}",
                )
            else:
                routers[router] = inst
            for j, vip in enumerate(inst.virtual_addresses):
                owner = vip_owner.get(vip.address)
                if owner is not None and owner is not inst:
                    self.add(
                        f"vrrp_instance[{i}].virtual_addresses[{j}]",
                        f"{vip.address} is already a virtual address of instance "
                        f"{_quote(owner.name)}",
                    )
                else:
                    vip_owner[vip.address] = inst

    # ---- [[sync_group]]

    def sync_groups(
        self,
        tables: Sequence[Mapping[str, object] | None],
        instance_names: Sequence[str | None],
    ) -> list[SyncGroup | None]:
        known = {n for n in instance_names if n is not None}
        member_of: dict[str, str] = {}
        names: set[str] = set()
        out: list[SyncGroup | None] = []
        for i, data in enumerate(tables):
            path = f"sync_group[{i}]"
            if data is None:
                out.append(None)
                continue
            t = _Table(self, data, path, GROUP_KEYS)
            name = t.req("name", self.name())
            if name is not None:
                if name in names:
                    self.add(t.at("name"), f"duplicate name {_quote(name)}")
                names.add(name)
            members = t.req("instances", lambda v, p: self.unique_list(v, p, self.name()))
            if members is not None and not members and not t.bad("instances"):
                self.add(t.at("instances"), "must name at least one vrrp_instance")
            notify = self.notify(t)
            raw = t.raw("instances")
            for j, member in enumerate(members or []):
                # Index in the raw list (duplicates were dropped from members).
                k = raw.index(member) if isinstance(raw, list) else j
                p = f"{t.at('instances')}[{k}]"
                if member not in known:
                    self.add(p, f"no [[vrrp_instance]] named {_quote(member)}")
                elif member in member_of:
                    self.add(
                        p,
                        f"instance {_quote(member)} is already in sync_group "
                        f"{_quote(member_of[member])}",
                    )
                elif name is not None:
                    member_of[member] = name
            if name is None or not members:
                out.append(None)
                continue
            out.append(SyncGroup(name, tuple(members), notify))
        return out

    # ---- [[virtual_server]]

    def virtual_server(self, data: Mapping[str, object] | None, path: str) -> VirtualServer | None:
        if data is None:
            return None
        t = _Table(self, data, path, VS_KEYS)
        has_address, has_fwmark = t.has("address"), t.has("fwmark")
        address: IPAddress | None = None
        port: int | None = None
        fwmark: int | None = None
        family: Family | None = None
        protocol: str | None = None

        if has_address and has_fwmark:
            self.add(t.at("fwmark"), "address and fwmark are exclusive: use one")
        elif not has_address and not has_fwmark:
            self.add(path, "needs address (ip:port) or fwmark")
        if has_address and not has_fwmark:
            endpoint = t.req("address", self.endpoint(port_required=True, min_port=0))
            if endpoint is not None:
                address, port = endpoint
                family = 4 if address.version == 4 else 6
            if t.has("family"):
                self.add(t.at("family"), "applies to fwmark services only (address sets it)")
            protocol = t.opt("protocol", self.choice(PROTOCOLS), "tcp")
        elif has_fwmark and not has_address:
            fwmark = t.req("fwmark", self.integer(1, UINT32_MAX))
            fam_name = t.opt("family", self.choice(("inet", "inet6")), "inet")
            family = None if t.bad("family") else 4 if fam_name == "inet" else 6
            if t.has("protocol"):
                self.add(t.at("protocol"), "not with fwmark (the mark selects the traffic)")
        vs_ok = family is not None and (fwmark is not None or address is not None)

        scheduler = t.opt("scheduler", self.choice(SCHEDULERS), "wlc")
        flags = t.many("scheduler_flags", self.choice(tuple(SCHEDULER_FLAGS)))
        if not t.bad("scheduler"):
            for i, flag in enumerate(flags):
                if SCHEDULER_FLAGS[flag] != scheduler:
                    raw = t.raw("scheduler_flags")
                    k = raw.index(flag) if isinstance(raw, list) else i
                    self.add(
                        f"{t.at('scheduler_flags')}[{k}]",
                        f"{flag} needs scheduler {SCHEDULER_FLAGS[flag]}, got {scheduler}",
                    )
        one_packet = t.opt("one_packet", self.boolean(), False)
        if one_packet and protocol in ("tcp", "sctp") and not t.bad("protocol"):
            self.add(t.at("one_packet"), f"applies to udp or fwmark services only, not {protocol}")
        forwarding = t.opt("forwarding", self.choice(FORWARDINGS), "nat")
        persistence_s = t.opt("persistence_timeout", self.integer(0, INT32_MAX), 0)
        if port == 0 and persistence_s == 0 and not t.bad("persistence_timeout"):
            self.add(t.at("address"), "port 0 (all ports) needs persistence_timeout > 0")
        netmask = self.persistence_netmask(t, family)

        health_action = t.opt("health_action", self.choice(HEALTH_ACTIONS), "quiesce")
        default_check = t.maybe("check", lambda v, p: self.health_check(v, p, None))
        is_fwmark = has_fwmark and not has_address
        real_servers = self.real_servers(t, family, port, is_fwmark, forwarding, default_check)
        any_tun = forwarding == "tun" or any(r.forwarding == "tun" for r in real_servers)
        tunnel_type, tunnel_port, tunnel_flags = self.tunnel(t, any_tun)

        def fam_ip(value: object, p: str) -> IPAddress | None:
            return self.ip_of_family(value, p, family, "the service")

        fullnat_source = t.address("fullnat_source", fam_ip)
        if forwarding == "fullnat" and not t.has("fullnat_source") and not t.bad("forwarding"):
            self.add(t.at("fullnat_source"), 'is required with forwarding = "fullnat"')
        if t.has("fullnat_source") and forwarding != "fullnat" and not t.bad("forwarding"):
            self.add(t.at("fullnat_source"), 'applies only with forwarding = "fullnat"')
        match = None
        if t.has("match") and has_address:
            self.add(t.at("match"), "applies to fwmark services only")
        else:
            match = t.maybe("match", lambda v, p: self.fwmark_match(v, p, family))

        if not vs_ok or family is None:
            return None
        return VirtualServer(
            protocol=cast(Any, protocol),
            address=address,
            port=port,
            fwmark=fwmark,
            family=family,
            scheduler=scheduler,
            scheduler_flags=flags,
            one_packet=one_packet,
            forwarding=cast(Any, forwarding),
            persistence_timeout_s=persistence_s,
            persistence_netmask=netmask,
            tunnel_type=cast(Any, tunnel_type),
            tunnel_port=tunnel_port,
            tunnel_flags=tunnel_flags,
            fullnat_source=fullnat_source,
            match=match,
            real_servers=tuple(real_servers),
            health_action=cast(Any, health_action),
            check=default_check,
        )

    def endpoint(
        self, *, port_required: bool, min_port: int = 1
    ) -> Check[tuple[IPAddress, int | None]]:
        """ "ip:port" / "[v6]:port" (or a bare address when the port is optional)."""

        def check(value: object, path: str) -> tuple[IPAddress, int | None] | None:
            if not isinstance(value, str):
                self.add(path, f'must be a string ("ip:port"), {_got(value)}')
                return None
            form = (
                '"ip:port" or "[ipv6]:port"'
                if port_required
                else '"ip", "ip:port" or "[ipv6]:port"'
            )
            host, port_text = _split_endpoint(value)
            if host is None or (port_required and port_text is None):
                self.add(path, f"must be {form}, got {_show(value)}")
                return None
            address = self.ip(host, path) if _parse_ip(host) is not None else None
            if address is None:
                if not self.bad(path):
                    self.add(path, f"must be {form}, got {_show(value)}")
                return None
            if port_text is None:
                return address, None
            if not port_text.isdigit() or not min_port <= int(port_text) <= 65535:
                self.add(path, f"port must be {min_port}..65535, got {_show(value)}")
                return None
            return address, int(port_text)

        return check

    def persistence_netmask(self, t: _Table, family: int | None) -> int:
        default = 32 if family != 6 else 128
        if not t.has("persistence_netmask") or family is None:
            return default
        value, path = t.raw("persistence_netmask"), t.at("persistence_netmask")
        if family == 4:
            if not isinstance(value, str):
                self.add(path, f'must be a dotted IPv4 netmask like "255.255.255.0", {_got(value)}')
                return default
            prefix = _dotted_prefix(value)
            if prefix is None or prefix == 0:
                self.add(
                    path,
                    f"must be a contiguous IPv4 netmask 128.0.0.0..255.255.255.255, "
                    f"got {_show(value)}",
                )
                return default
            return prefix
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be an IPv6 prefix length 1..128, {_got(value)}")
            return default
        if not 1 <= value <= 128:
            self.add(path, f"must be 1..128, got {value}")
            return default
        return value

    def tunnel(self, t: _Table, any_tun: bool) -> tuple[str, int | None, tuple[str, ...]]:
        tunnel_type = t.opt("tunnel_type", self.choice(TUNNEL_TYPES), "ipip")
        tunnel_port = t.maybe("tunnel_port", self.integer(1, 65535))
        flags = t.many("tunnel_flags", self.choice(TUNNEL_FLAGS))
        if not any_tun:
            for key in ("tunnel_type", "tunnel_port", "tunnel_flags"):
                if t.has(key) and not t.bad(key):
                    self.add(t.at(key), 'applies only with forwarding = "tun"')
            return tunnel_type, tunnel_port, flags
        if not t.bad("tunnel_type"):
            if tunnel_type == "gue" and not t.has("tunnel_port"):
                self.add(t.at("tunnel_port"), 'is required with tunnel_type = "gue"')
            if tunnel_type != "gue" and t.has("tunnel_port"):
                self.add(t.at("tunnel_port"), 'applies only with tunnel_type = "gue"')
            if flags and tunnel_type == "ipip":
                self.add(t.at("tunnel_flags"), "ipip tunnels take no flags (gue or gre only)")
            elif "remcsum" in flags and tunnel_type == "gre":
                self.add(t.at("tunnel_flags"), "remcsum applies to gue tunnels only")
            elif len(flags) > 1:
                self.add(t.at("tunnel_flags"), "takes one of nocsum|csum|remcsum")
        return tunnel_type, tunnel_port, flags

    def fwmark_match(self, value: object, path: str, family: int | None) -> FwmarkMatch | None:
        data = self.table(value, path)
        if data is None:
            return None
        t = _Table(self, data, path, MATCH_KEYS)
        address = t.address(
            "address",
            lambda v, p: self.ip_of_family(v, p, family, "the service family"),
            required=True,
        )
        protocol = t.opt("protocol", self.choice(PROTOCOLS), "tcp")
        ports = t.many("ports", self.integer(1, 65535))
        if address is None:
            return None
        return FwmarkMatch(address, cast(Any, protocol), ports)

    def real_servers(
        self,
        vs: _Table,
        family: int | None,
        service_port: int | None,
        is_fwmark: bool,
        forwarding: str,
        default_check: HealthCheck | None = None,
    ) -> list[RealServer]:
        if not vs.has("real_server"):
            return []
        base = vs.at("real_server")
        tables = self.tables(vs.raw("real_server"), base, "virtual_server.real_server")
        out: list[RealServer] = []
        for i, data in enumerate(tables):
            path = f"{base}[{i}]"
            if data is None:
                continue
            t = _Table(self, data, path, RS_KEYS)
            # Ports: required for address services, except that a port-0 (all ports) service
            # may leave them out or use 0; optional for fwmark services.
            endpoint = t.req(
                "address",
                self.endpoint(
                    port_required=not is_fwmark and service_port != 0,
                    min_port=0 if service_port == 0 else 1,
                ),
            )
            weight = t.opt("weight", self.integer(0, INT32_MAX), 1)
            upper = t.opt("upper_threshold", self.integer(0, INT32_MAX), 0)
            lower = t.opt("lower_threshold", self.integer(0, INT32_MAX), 0)
            if lower > upper:  # the kernel refuses it (ERANGE), even with no upper limit
                self.add(
                    t.at("lower_threshold"),
                    f"must be <= upper_threshold ({upper}), got {lower}",
                )
            own = t.maybe("forwarding", self.rs_forwarding)
            resolved = own or forwarding
            check = default_check
            if t.has("check"):
                check = t.maybe("check", lambda v, p: self.health_check(v, p, default_check))
            if endpoint is None:
                continue
            address, port = endpoint
            if port is None and not is_fwmark:
                port = service_port
            if family is not None and address.version != family:
                self.add(
                    t.at("address"),
                    f"must be IPv{family} like the service, got IPv{address.version} {address}",
                )
                continue
            if (
                not is_fwmark
                and resolved in ("dr", "tun")
                and service_port is not None
                and port != service_port
            ):
                self.add(
                    t.at("address"),
                    f"port must be the service port {service_port} with {resolved} forwarding "
                    f"(no port translation), got {port}",
                )
                continue
            if any(r.key == (address, port) for r in out):
                self.add(t.at("address"), f"duplicate real server {_show(t.raw('address'))}")
                continue
            if check is not None and check.type != "script" and check.port is None and not port:
                where = t.at("check") if t.has("check") else vs.at("check")
                self.add(
                    f"{where}.port",
                    f"is required: real server {_show(t.raw('address'))} has no port to check",
                )
                check = None
            out.append(RealServer(address, port, weight, upper, lower, cast(Any, resolved), check))
        return out

    def health_check(
        self, value: object, path: str, base: HealthCheck | None
    ) -> HealthCheck | None:
        """A check table; keys it leaves out come from ``base`` (the service's default)."""
        data = self.table(value, path)
        if data is None:
            return None
        t = _Table(self, data, path, CHECK_KEYS)
        dflt = base or HealthCheck("tcp")
        if base is None:
            kind = t.req("type", self.choice(CHECK_TYPES))
        else:
            kind = t.opt("type", self.choice(CHECK_TYPES), str(base.type))
        port = t.maybe("port", self.integer(1, 65535))
        if port is None and not t.has("port"):
            port = dflt.port
        interval_s = t.opt("interval", self.seconds(0, 86400, lo_open=True), dflt.interval_s)
        if base is not None and base.timeout_s < interval_s:
            default_timeout_s = base.timeout_s
        else:
            default_timeout_s = min(1.0, interval_s / 2)
        timeout_s = t.opt("timeout", self.seconds(0, 86400, lo_open=True), default_timeout_s)
        if timeout_s >= interval_s and not t.bad("timeout") and not t.bad("interval"):
            self.add(
                t.at("timeout") if t.has("timeout") else t.at("interval"),
                f"timeout ({_num(timeout_s)} s) must be less than interval ({_num(interval_s)} s)",
            )
        rise = t.opt("rise", self.integer(1, 1000), dflt.rise)
        fall = t.opt("fall", self.integer(1, 1000), dflt.fall)
        http_path = t.opt("path", self.http_path, dflt.path)
        expect_status = t.opt("expect_status", self.statuses, dflt.expect_status)
        expect_body = t.maybe("expect_body", self.text(max_len=4096))
        if expect_body is None and not t.has("expect_body"):
            expect_body = dflt.expect_body
        host = t.maybe("host", self.text(max_len=255, pattern=HTTP_TOKEN_RE))
        if host is None and not t.has("host"):
            host = dflt.host
        tls_verify = t.opt("tls_verify", self.boolean(), dflt.tls_verify)
        alpha = t.opt("alpha", self.boolean(), dflt.alpha)
        script = t.maybe("script", self.argv)
        if script is None and not t.has("script"):
            script = dflt.script
        if kind is None or t.bad("type"):
            return None
        for key, kinds in CHECK_KEY_TYPES.items():
            if t.has(key) and kind not in kinds:
                self.add(t.at(key), f"applies to type {'|'.join(kinds)} only, not {kind}")
        if kind == "script" and script is None and not t.bad("script"):
            self.add(t.at("script"), 'is required with type = "script"')
        if kind not in ("http", "https"):  # keep resolved checks free of inapplicable values
            http_path, expect_status, expect_body, host = "/", (200,), None, None
        if kind != "https":
            tls_verify = False
        if kind != "script":
            script = None
        elif script is None:
            return None
        return HealthCheck(
            type=cast(Any, kind),
            port=port,
            interval_s=interval_s,
            timeout_s=timeout_s,
            rise=rise,
            fall=fall,
            path=http_path,
            expect_status=expect_status,
            expect_body=expect_body,
            host=host,
            tls_verify=tls_verify,
            script=script,
            alpha=alpha,
        )

    def http_path(self, value: object, path: str) -> str | None:
        text = self.text(max_len=1024)(value, path)
        if text is None:
            return None
        if not text.startswith("/") or not HTTP_TOKEN_RE.fullmatch(text):
            self.add(
                path,
                f'must start with "/" and hold no spaces or control characters, got {_show(value)}',
            )
            return None
        return text

    def statuses(self, value: object, path: str) -> tuple[int, ...] | None:
        """One HTTP status code or an array of them."""
        status = self.integer(100, 599)
        if not isinstance(value, list):
            one = status(value, path)
            return None if one is None else (one,)
        codes = self.unique_list(value, path, status)
        if codes is None:
            return None
        if not codes:
            self.add(path, "must not be empty")
            return None
        return tuple(codes)

    def rs_forwarding(self, value: object, path: str) -> str | None:
        if value == "fullnat":
            self.add(path, "fullnat is set per virtual_server, not per real server")
            return None
        return self.choice(("nat", "dr", "tun"))(value, path)

    def check_services(self, servers: Sequence[VirtualServer | None]) -> None:
        seen: dict[ServiceKey, int] = {}
        for i, vs in enumerate(servers):
            if vs is None:
                continue
            key = vs.key
            if key in seen:
                field = "fwmark" if vs.fwmark is not None else "address"
                self.add(
                    f"virtual_server[{i}].{field}",
                    f"duplicate service {_service_text(key)} (also virtual_server[{seen[key]}])",
                )
            else:
                seen[key] = i


# --------------------------------------------------------------------------- small parsers


def _service_text(key: ServiceKey) -> str:
    """A service as the loader names it: "tcp 192.0.2.1:80", "fwmark 7 inet6"."""
    if key.is_fwmark:
        return f"fwmark {key.fwmark} {'inet' if key.family == 4 else 'inet6'}"
    return str(key)


def _present(items: Sequence[T | None]) -> list[T]:
    return [x for x in items if x is not None]


def _parse_ip(text: str) -> IPAddress | None:
    if "%" in text or text != text.strip():
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_endpoint(text: str) -> tuple[str | None, str | None]:
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


def _dotted_prefix(text: str) -> int | None:
    """Prefix length of a contiguous dotted IPv4 netmask, None if it is not one."""
    try:
        mask = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    inverted = ~mask & 0xFFFFFFFF
    if inverted & (inverted + 1):
        return None
    return 32 - inverted.bit_length()


def _cs(centis: int) -> str:
    return f"{centis / 100:g}"
