"""Turn ipvsadm rules into ``[[virtual_server]]`` TOML for hadirector's configuration.

Reads what ``ipvsadm -S`` writes and what people keep in shell scripts: one ipvsadm
invocation per line, with or without the leading ``ipvsadm``, short or long options, bundled
short options (``-At``), blank lines and ``#`` comments. Rules are replayed in order as
ipvsadm would: ``-A``/``-E``/``-D`` add, replace and delete services, ``-a``/``-e``/``-d`` the
same for real servers, ``-C`` clears. The result is TOML text in the configuration's schema;
a service's ``forwarding`` is the method most of its real servers use, the others get their
own ``forwarding``.

Every problem is collected and raised at once as a ConfigError, one ``line N: ...`` per
problem. The TOML is checked by loading it with the configuration loader, so what this
returns is a configuration hadirector accepts.

``parse_rules`` gives the replayed table itself (model types), for comparisons.

This module is part of the pure core: no I/O, no clock, standard library only (and the pure
configuration loader, to check its own output).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hadirector.errors import ConfigError, Problem
from hadirector.ipvs.model import (
    FWD_DROUTE,
    FWD_MASQ,
    FWD_TUNNEL,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PROTOCOL_NAME,
    SCHED_FLAG_BITS,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    SVC_F_SCHED3,
    TUN_F_CSUM,
    TUN_F_NOCSUM,
    TUN_F_REMCSUM,
    TUN_TYPE_BY_NAME,
    TUN_TYPE_GRE,
    TUN_TYPE_GUE,
    TUN_TYPE_IPIP,
    TUN_TYPE_NAME,
    Dest,
    DestKey,
    Entry,
    Service,
    ServiceKey,
    default_netmask,
    netmask_from_prefix,
    prefix_from_netmask,
)

MAX_PERSISTENCE_TIMEOUT_S = 86400 * 31  # ipvsadm's limit
#: What ipvsadm 1.31 sets for a bare ``-p`` (libipvs IPVS_SVC_PERSISTENT_TIMEOUT, 6 minutes;
#: its manual says 300, the binary does 360: checked on the real kernel in the VM).
IPVSADM_DEFAULT_PERSISTENCE_TIMEOUT_S = 360
INT32_MAX = 2**31 - 1

# canonical option name -> takes an argument? (None = optional argument)
_OPTIONS: dict[str, bool | None] = {
    # commands
    "add-service": False,
    "edit-service": False,
    "delete-service": False,
    "clear": False,
    "add-server": False,
    "edit-server": False,
    "delete-server": False,
    # virtual service
    "tcp-service": True,
    "udp-service": True,
    "sctp-service": True,
    "fwmark-service": True,
    "ipv6": False,
    # service parameters
    "scheduler": True,
    "persistent": None,
    "netmask": True,
    "pe": True,
    "sched-flags": True,
    "ops": False,
    # real server parameters
    "real-server": True,
    "gatewaying": False,
    "ipip": False,
    "masquerading": False,
    "weight": True,
    "u-threshold": True,
    "l-threshold": True,
    "tun-type": True,
    "tun-port": True,
    "tun-nocsum": False,
    "tun-csum": False,
    "tun-remcsum": False,
    # harmless
    "numeric": False,
}

_SHORT: dict[str, str] = {
    "A": "add-service",
    "E": "edit-service",
    "D": "delete-service",
    "C": "clear",
    "a": "add-server",
    "e": "edit-server",
    "d": "delete-server",
    "t": "tcp-service",
    "u": "udp-service",
    "f": "fwmark-service",
    "6": "ipv6",
    "s": "scheduler",
    "p": "persistent",
    "M": "netmask",
    "b": "sched-flags",
    "o": "ops",
    "r": "real-server",
    "g": "gatewaying",
    "i": "ipip",
    "m": "masquerading",
    "w": "weight",
    "x": "u-threshold",
    "y": "l-threshold",
    "n": "numeric",
}

#: ipvsadm commands that are not table rules: named so the error says what they are.
_NOT_RULES = {
    "L": "list",
    "l": "list",
    "Z": "zero",
    "R": "restore",
    "S": "save",
    "h": "help",
    "v": "version",
    "list": "list",
    "zero": "zero",
    "restore": "restore",
    "save": "save",
    "help": "help",
    "version": "version",
    "set": "set (timeouts: use [ipvs] timeout_tcp/timeout_tcpfin/timeout_udp)",
    "start-daemon": "start-daemon (connection sync is configured in hadirector itself)",
    "stop-daemon": "stop-daemon (connection sync is configured in hadirector itself)",
}

_COMMANDS = (
    "add-service",
    "edit-service",
    "delete-service",
    "clear",
    "add-server",
    "edit-server",
    "delete-server",
)
_SERVICE_OPTS = ("tcp-service", "udp-service", "sctp-service", "fwmark-service")
_SERVICE_PARAMS = ("scheduler", "persistent", "netmask", "pe", "sched-flags", "ops")
_SERVER_PARAMS = (
    "gatewaying",
    "ipip",
    "masquerading",
    "weight",
    "u-threshold",
    "l-threshold",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
)


class _LineError(Exception):
    """One problem on the line being parsed."""


@dataclass
class _Server:
    dest: Dest
    line: int


@dataclass
class _Virtual:
    service: Service
    line: int
    servers: dict[DestKey, _Server] = field(default_factory=dict)


# --- tokens ------------------------------------------------------------------------------------


def _options(tokens: list[str]) -> list[tuple[str, str | None]]:
    """(canonical name, argument) pairs from one line's tokens; _LineError on the first bad one."""
    out: list[tuple[str, str | None]] = []
    i = 0

    def take_argument(name: str, attached: str | None, shown: str) -> str | None:
        nonlocal i
        takes = _OPTIONS[name]
        if takes is False:
            if attached:
                raise _LineError(f"option {shown} takes no value")
            return None
        if attached:
            return attached
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if takes is None:  # optional: only a following word that is not an option
            if nxt is not None and not nxt.startswith("-"):
                i += 1
                return nxt
            return None
        if nxt is None:
            raise _LineError(f"option {shown} needs a value")
        i += 1
        return nxt

    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok[2:].partition("=")
            if name in _NOT_RULES:
                raise _LineError(f"--{name}: not a rule, {_NOT_RULES[name]}")
            if name not in _OPTIONS:
                raise _LineError(f"unknown option --{name}")
            out.append((name, take_argument(name, value if eq else None, f"--{name}")))
        elif tok.startswith("-") and len(tok) > 1:
            j = 1
            while j < len(tok):
                letter = tok[j]
                if letter in _NOT_RULES:
                    raise _LineError(f"-{letter}: not a rule, {_NOT_RULES[letter]}")
                if letter not in _SHORT:
                    raise _LineError(f"unknown option -{letter}")
                name = _SHORT[letter]
                rest = tok[j + 1 :]
                if _OPTIONS[name] is False:
                    out.append((name, None))
                    j += 1
                    continue
                out.append((name, take_argument(name, rest or None, f"-{letter}")))
                break
        else:
            raise _LineError(f"unexpected argument {tok!r}")
        i += 1
    return out


# --- values ------------------------------------------------------------------------------------


def _integer(text: str | None, what: str, low: int, high: int) -> int:
    if text is None or not re.fullmatch(r"[0-9]+", text):
        raise _LineError(f"{what} must be a number {low}..{high}, got {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise _LineError(f"{what} must be {low}..{high}, got {value}")
    return value


def _host_port(text: str, what: str) -> tuple[str, int | None]:
    """``a.b.c.d[:port]``, ``[v6][:port]`` or a bare IPv6 address -> (address, port)."""
    host: str
    port_text: str | None
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or (text[close + 1 :] and not text[close + 1 :].startswith(":")):
            raise _LineError(f"{what} {text!r} is not address[:port]")
        host, port_text = text[1:close], (text[close + 2 :] if text[close + 1 :] else None)
    elif text.count(":") > 1:
        host, port_text = text, None
    else:
        host, colon, after = text.partition(":")
        port_text = after if colon else None
    try:
        address = ipaddress.ip_address(host).compressed
    except ValueError:
        raise _LineError(
            f"{what} {text!r}: not a numeric IP address (host names are not resolved:"
            " save with ipvsadm -S -n)"
        ) from None
    if port_text is None:
        return address, None
    if not port_text.isdigit():
        raise _LineError(
            f"{what} {text!r}: port must be numeric (service names are not looked up:"
            " save with ipvsadm -S -n)"
        )
    return address, _integer(port_text, f"{what} port", 0, 65535)


def _netmask(text: str, family: int) -> int:
    """``-M``: dotted quad (IPv4) or prefix length (either family) -> kernel netmask."""
    if family == 4 and "." in text:
        try:
            mask = int(ipaddress.IPv4Address(text))
            prefix_from_netmask(4, mask)
        except ValueError:
            raise _LineError(f"netmask {text!r} is not a contiguous IPv4 netmask") from None
        return mask
    prefix = _integer(text, "netmask prefix length", 0, 32 if family == 4 else 128)
    return netmask_from_prefix(family, prefix)


def _sched_flags(text: str) -> int:
    flags = 0
    for name in text.split(","):
        if name not in SCHED_FLAG_BITS:
            raise _LineError(f"invalid scheduler flag {name!r}")
        flags |= SCHED_FLAG_BITS[name]
    return flags


# --- replay ------------------------------------------------------------------------------------


def _service_key(opts: dict[str, str | None]) -> ServiceKey:
    given = [o for o in _SERVICE_OPTS if o in opts]
    if not given:
        raise _LineError("no virtual service (-t, -u, --sctp-service or -f)")
    if len(given) > 1:
        raise _LineError("more than one virtual service given")
    which = given[0]
    value = opts[which] or ""
    if which == "fwmark-service":
        # ipvsadm -S prints marks with %d: 2**31 and above come out negative
        if value.startswith("-") and value[1:].isdigit():
            mark = _integer(value[1:], "negative fwmark", 1, 2**31) * -1 & 0xFFFFFFFF
        else:
            mark = _integer(value, "fwmark", 1, 2**32 - 1)
        return ServiceKey.mark(mark, 6 if "ipv6" in opts else 4)
    address, port = _host_port(value, "service address")
    proto = {"tcp-service": IPPROTO_TCP, "udp-service": IPPROTO_UDP}.get(which, IPPROTO_SCTP)
    return ServiceKey.virtual(proto, address, port or 0)


def _service_attrs(opts: dict[str, str | None], key: ServiceKey) -> Service:
    flags = 0
    timeout_s = 0
    netmask = default_netmask(key.family)
    if "persistent" in opts:
        flags |= SVC_F_PERSISTENT
        raw = opts["persistent"]
        timeout_s = (
            IPVSADM_DEFAULT_PERSISTENCE_TIMEOUT_S
            if raw is None
            else _integer(raw, "persistence timeout", 1, MAX_PERSISTENCE_TIMEOUT_S)
        )
    if opts.get("netmask") is not None:
        netmask = _netmask(opts["netmask"] or "", key.family)
    if "ops" in opts:
        flags |= SVC_F_ONEPACKET
    if opts.get("sched-flags") is not None:
        flags |= _sched_flags(opts["sched-flags"] or "")
    scheduler = opts.get("scheduler") or "wlc"
    return Service(scheduler, flags, timeout_s, netmask, opts.get("pe") or "")


def _dest_attrs(opts: dict[str, str | None]) -> Dest:
    methods = [m for m in ("gatewaying", "ipip", "masquerading") if m in opts]
    if len(methods) > 1:
        raise _LineError("more than one forwarding method (-g, -i, -m)")
    method = {"gatewaying": FWD_DROUTE, "ipip": FWD_TUNNEL, "masquerading": FWD_MASQ}[
        methods[0] if methods else "gatewaying"
    ]
    weight = _integer(opts.get("weight", "1"), "weight", 0, INT32_MAX)
    upper = _integer(opts.get("u-threshold", "0"), "upper threshold", 0, INT32_MAX)
    lower = _integer(opts.get("l-threshold", "0"), "lower threshold", 0, INT32_MAX)
    tun_opts = ("tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
    if method != FWD_TUNNEL:
        extra = [o for o in tun_opts if o in opts]
        if extra:
            raise _LineError(f"--{extra[0]} applies to tunnel (-i) real servers only")
        return Dest(method, weight, upper, lower)
    type_name = opts.get("tun-type") or "ipip"
    if type_name not in TUN_TYPE_BY_NAME:
        raise _LineError(f"unknown tunnel type {type_name!r} (ipip, gue or gre)")
    tun_type = TUN_TYPE_BY_NAME[type_name]
    port = 0
    if tun_type == TUN_TYPE_GUE:
        if "tun-port" not in opts:
            raise _LineError("--tun-type gue needs --tun-port")
        port = _integer(opts["tun-port"], "tunnel port", 1, 65535)
    elif "tun-port" in opts:
        raise _LineError("--tun-port applies to --tun-type gue only")
    csum = [o for o in ("tun-nocsum", "tun-csum", "tun-remcsum") if o in opts]
    if len(csum) > 1:
        raise _LineError(f"--{csum[0]} conflicts with --{csum[1]}")
    if csum and tun_type == TUN_TYPE_IPIP:
        raise _LineError(f"--{csum[0]} applies to gue and gre tunnels only")
    if csum == ["tun-remcsum"] and tun_type != TUN_TYPE_GUE:
        raise _LineError("--tun-remcsum applies to gue tunnels only")
    tun_flags = {"tun-csum": TUN_F_CSUM, "tun-remcsum": TUN_F_REMCSUM}.get(
        csum[0] if csum else "", TUN_F_NOCSUM
    )
    return Dest(method, weight, upper, lower, tun_type, port, tun_flags)


def _check_allowed(command: str, opts: dict[str, str | None]) -> None:
    allowed: tuple[str, ...] = (*_SERVICE_OPTS, "ipv6", "numeric")
    if command in ("add-service", "edit-service"):
        allowed += _SERVICE_PARAMS
    elif command in ("add-server", "edit-server"):
        allowed += ("real-server", *_SERVER_PARAMS)
    elif command == "delete-server":
        allowed += ("real-server",)
    elif command == "clear":
        allowed = ("numeric",)
    for name in opts:
        if name not in allowed and name not in _COMMANDS:
            raise _LineError(f"option --{name} does not go with --{command}")


def _replay_line(table: dict[ServiceKey, _Virtual], tokens: list[str], line_no: int) -> None:
    pairs = _options(tokens)
    commands = [name for name, _ in pairs if name in _COMMANDS]
    if not commands:
        raise _LineError("no command (-A, -E, -D, -a, -e, -d or -C)")
    if len(commands) > 1:
        raise _LineError(f"more than one command (--{commands[0]}, --{commands[1]})")
    opts: dict[str, str | None] = {}
    for name, value in pairs:
        if name in opts and name not in ("numeric",):
            raise _LineError(f"option --{name} given twice")
        opts[name] = value
    command = commands[0]
    _check_allowed(command, opts)
    if command == "clear":
        table.clear()
        return
    key = _service_key(opts)
    if command == "add-service":
        if key in table:
            raise _LineError(f"service {key} already exists (line {table[key].line})")
        table[key] = _Virtual(_service_attrs(opts, key), line_no)
        return
    if key not in table:
        raise _LineError(f"no such service {key}")
    virtual = table[key]
    if command == "edit-service":
        virtual.service = _service_attrs(opts, key)
        virtual.line = line_no
        return
    if command == "delete-service":
        del table[key]
        return
    if opts.get("real-server") is None:
        raise _LineError("no real server (-r)")
    address, port = _host_port(opts["real-server"] or "", "real server")
    if command == "delete-server":
        dkey = DestKey(address, port if port is not None else (0 if key.is_fwmark else key.port))
        if dkey not in virtual.servers:
            raise _LineError(f"no such real server {dkey} in {key}")
        del virtual.servers[dkey]
        return
    dest = _dest_attrs(opts)
    if port is None:
        port = 0 if key.is_fwmark else key.port
    if not key.is_fwmark and dest.forwarding in (FWD_DROUTE, FWD_TUNNEL):
        port = key.port  # ipvsadm: no port translation without masquerading
    dkey = DestKey(address, port)
    if command == "add-server":
        if dkey in virtual.servers:
            raise _LineError(
                f"real server {dkey} already in {key} (line {virtual.servers[dkey].line})"
            )
        virtual.servers[dkey] = _Server(dest, line_no)
    else:  # edit-server
        if dkey not in virtual.servers:
            raise _LineError(f"no such real server {dkey} in {key}")
        virtual.servers[dkey] = _Server(dest, line_no)


def _replay(text: str) -> dict[ServiceKey, _Virtual]:
    table: dict[ServiceKey, _Virtual] = {}
    problems: list[Problem] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        where = f"line {line_no}"
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            problems.append(Problem(where, f"cannot split into words: {exc}"))
            continue
        if tokens and (tokens[0] == "ipvsadm" or tokens[0].endswith("/ipvsadm")):
            tokens = tokens[1:]
        if not tokens:
            continue
        try:
            _replay_line(table, tokens, line_no)
        except _LineError as exc:
            problems.append(Problem(where, str(exc)))
    if problems:
        raise ConfigError(problems)
    return table


def parse_rules(text: str) -> dict[ServiceKey, Entry]:
    """The IPVS table that replaying ``text`` with ipvsadm would build (ConfigError if bad)."""
    return {
        key: Entry(v.service, {dk: s.dest for dk, s in v.servers.items()})
        for key, v in _replay(text).items()
    }


# --- TOML --------------------------------------------------------------------------------------


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(toml_string(i) for i in items) + "]"


def _endpoint(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return host if port is None else f"{host}:{port}"


_FORWARDING_NAME = {FWD_MASQ: "nat", FWD_DROUTE: "dr", FWD_TUNNEL: "tun"}


def _sched_flag_names(scheduler: str, flags: int) -> list[str]:
    names = []
    for bit, suffix in ((SVC_F_SCHED1, "fallback"), (SVC_F_SCHED2, "port")):
        if flags & bit:
            names.append(f"{scheduler}-{suffix}")
    return names


def _render_service(key: ServiceKey, v: _Virtual, problems: list[Problem]) -> list[str]:
    where = f"line {v.line}"
    svc = v.service
    lines = ["[[virtual_server]]"]
    if key.is_fwmark:
        lines.append(f"fwmark = {key.fwmark}")
        lines.append(f'family = "{"inet6" if key.family == 6 else "inet"}"')
    else:
        lines.append(f"address = {toml_string(_endpoint(key.address, key.port))}")
        lines.append(f"protocol = {toml_string(PROTOCOL_NAME[key.protocol])}")
    lines.append(f"scheduler = {toml_string(svc.scheduler)}")
    if svc.flags & (SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3):
        if svc.scheduler not in ("sh", "mh") or svc.flags & SVC_F_SCHED3:
            problems.append(Problem(where, f"scheduler flags do not apply to {svc.scheduler}"))
        else:
            lines.append(
                f"scheduler_flags = {_toml_list(_sched_flag_names(svc.scheduler, svc.flags))}"
            )
    if svc.flags & SVC_F_ONEPACKET:
        lines.append("one_packet = true")
    if svc.pe_name:
        problems.append(Problem(where, f"persistence engine {svc.pe_name!r} is not supported"))
    # forwarding: the method most servers use (first seen wins a tie)
    methods = [s.dest.forwarding for s in v.servers.values()]
    common = Counter(methods).most_common(1)[0][0] if methods else None
    if common is not None:
        lines.append(f"forwarding = {toml_string(_FORWARDING_NAME[common])}")
    if svc.persistent:
        lines.append(f"persistence_timeout = {svc.timeout_s}")
        if svc.netmask != default_netmask(key.family):
            if key.family == 4:
                lines.append(
                    f"persistence_netmask = {toml_string(str(ipaddress.IPv4Address(svc.netmask)))}"
                )
            else:
                lines.append(f"persistence_netmask = {svc.netmask}")
    tunnels = {
        (s.dest.tunnel_type, s.dest.tunnel_port, s.dest.tunnel_flags)
        for s in v.servers.values()
        if s.dest.forwarding == FWD_TUNNEL
    }
    if len(tunnels) > 1:
        problems.append(
            Problem(where, "tunnel options differ between its real servers (one set per service)")
        )
    if len(tunnels) == 1:
        tun_type, tun_port, tun_flags = next(iter(tunnels))
        lines.append(f"tunnel_type = {toml_string(TUN_TYPE_NAME[tun_type])}")
        if tun_type == TUN_TYPE_GUE:
            lines.append(f"tunnel_port = {tun_port}")
        if tun_type in (TUN_TYPE_GUE, TUN_TYPE_GRE):
            flag_name = {TUN_F_CSUM: "csum", TUN_F_REMCSUM: "remcsum"}.get(tun_flags, "nocsum")
            lines.append(f"tunnel_flags = {_toml_list([flag_name])}")
    for dkey, server in v.servers.items():
        d = server.dest
        lines.append("")
        lines.append("[[virtual_server.real_server]]")
        # port 0 of a mark service ("the packet's own port") is written as no port at all
        port = None if key.is_fwmark and dkey.port == 0 else dkey.port
        lines.append(f"address = {toml_string(_endpoint(dkey.address, port))}")
        lines.append(f"weight = {d.weight}")
        if d.upper_threshold:
            lines.append(f"upper_threshold = {d.upper_threshold}")
        if d.lower_threshold:
            lines.append(f"lower_threshold = {d.lower_threshold}")
        if d.forwarding != common:
            lines.append(f"forwarding = {toml_string(_FORWARDING_NAME[d.forwarding])}")
    return lines


_PATH_INDEX = re.compile(r"^virtual_server\[(\d+)\](?:\.real_server\[(\d+)\])?\.?(.*)$")


def _check_with_loader(
    toml_text: str,
    service_lines: list[int],
    server_lines: list[list[int]],
    check: Callable[[str], object],
) -> list[Problem]:
    """Problems the configuration loader finds in the TOML, mapped back to rule lines."""
    try:
        check(toml_text)
    except ConfigError as exc:
        out = []
        for p in exc.problems:
            m = _PATH_INDEX.match(p.path)
            if m is None:
                out.append(Problem("", f"{p.path}: {p.message}" if p.path else p.message))
                continue
            vs, rs, rest = int(m.group(1)), m.group(2), m.group(3)
            line = server_lines[vs][int(rs)] if rs is not None else service_lines[vs]
            detail = f"{rest}: {p.message}" if rest else p.message
            out.append(Problem(f"line {line}", detail))
        return out
    return []


def import_rules(text: str, *, header: bool = True) -> str:
    """TOML ``[[virtual_server]]`` tables equivalent to the ipvsadm rules in ``text``.

    Raises ConfigError with every problem (``line N: ...``): rules ipvsadm would refuse,
    and rules hadirector's configuration cannot express.
    """
    table = _replay(text)
    problems: list[Problem] = []
    blocks: list[str] = []
    service_lines: list[int] = []
    server_lines: list[list[int]] = []
    for key, virtual in table.items():
        blocks.append("\n".join(_render_service(key, virtual, problems)))
        service_lines.append(virtual.line)
        server_lines.append([s.line for s in virtual.servers.values()])
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: int(p.path.split()[1])))
    out = "\n\n".join(blocks) + "\n" if blocks else ""
    if header:
        out = "# Virtual servers imported from ipvsadm rules.\n\n" + out
    try:
        from hadirector.config.load import load_text
    except ImportError:  # pragma: no cover - the loader ships with the package
        return out
    problems = _check_with_loader(out, service_lines, server_lines, load_text)
    if problems:
        raise ConfigError(problems)
    return out


__all__ = ["import_rules", "parse_rules", "toml_string"]
