"""The desired IPVS table as plain values: services, destinations, and the kernel's numbers.

A table maps a :class:`ServiceKey` (what identifies a virtual service to the kernel) to an
:class:`Entry`: the service's attributes (:class:`Service`) and its destinations
(``DestKey -> Dest``). Every attribute the kernel shows back on a dump is here, with the
numeric values of ``include/uapi/linux/ip_vs.h``, so that the same types describe both what
the configuration wants and what the kernel has, and the two can be compared.

``desired_from_config`` builds a table from configuration objects (duck-typed: anything with
the attribute names of ``hadirector.config.schema.VirtualServer`` / ``RealServer``).

This module is part of the pure core: it must not do I/O, read clocks, or import anything but
the standard library.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from hadirector.errors import ConfigError, Problem

# --- numbers from include/uapi/linux/ip_vs.h and the IP protocol registry -------------------

IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132
#: Protocol number of a firewall-mark service (the kernel keys it by mark, not protocol).
IPPROTO_NONE = 0

PROTOCOL_BY_NAME: Mapping[str, int] = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "sctp": IPPROTO_SCTP}
PROTOCOL_NAME: Mapping[int, str] = {v: k for k, v in PROTOCOL_BY_NAME.items()}

# Linux address family numbers (the kernel and ipvsadm sort by these).
AF_INET = 2
AF_INET6 = 10

SVC_F_PERSISTENT = 0x1
#: Kernel-internal "service is in the hash table"; shows up on dumps, never compared.
SVC_F_HASHED = 0x2
SVC_F_ONEPACKET = 0x4
SVC_F_SCHED1 = 0x8
SVC_F_SCHED2 = 0x10
SVC_F_SCHED3 = 0x20
SVC_F_SCHED_MASK = SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3

#: Scheduler flag names (ipvsadm ``-b``) and the bit each sets.
SCHED_FLAG_BITS: Mapping[str, int] = {
    "sh-fallback": SVC_F_SCHED1,
    "sh-port": SVC_F_SCHED2,
    "mh-fallback": SVC_F_SCHED1,
    "mh-port": SVC_F_SCHED2,
    "flag-1": SVC_F_SCHED1,
    "flag-2": SVC_F_SCHED2,
    "flag-3": SVC_F_SCHED3,
}

FWD_MASQ = 0
FWD_LOCALNODE = 1
FWD_TUNNEL = 2
FWD_DROUTE = 3
FWD_BYPASS = 4

#: Configuration forwarding names -> kernel method. FULLNAT is masquerade in IPVS; the
#: source NAT half lives in nftables, outside this table.
FORWARDING_BY_NAME: Mapping[str, int] = {
    "nat": FWD_MASQ,
    "fullnat": FWD_MASQ,
    "dr": FWD_DROUTE,
    "tun": FWD_TUNNEL,
}

TUN_TYPE_IPIP = 0
TUN_TYPE_GUE = 1
TUN_TYPE_GRE = 2
TUN_TYPE_BY_NAME: Mapping[str, int] = {
    "ipip": TUN_TYPE_IPIP,
    "gue": TUN_TYPE_GUE,
    "gre": TUN_TYPE_GRE,
}
TUN_TYPE_NAME: Mapping[int, str] = {v: k for k, v in TUN_TYPE_BY_NAME.items()}

#: Tunnel encapsulation flag bits; "nocsum" is the absence of both.
TUN_F_NOCSUM = 0x0
TUN_F_CSUM = 0x1
TUN_F_REMCSUM = 0x2
TUN_FLAG_BY_NAME: Mapping[str, int] = {
    "nocsum": TUN_F_NOCSUM,
    "csum": TUN_F_CSUM,
    "remcsum": TUN_F_REMCSUM,
}

NETMASK_V4_HOST = 0xFFFFFFFF
NETMASK_V6_HOST = 128


def default_netmask(family: int) -> int:
    """The kernel's per-client netmask: all-ones mask for IPv4, prefix length 128 for IPv6."""
    return NETMASK_V4_HOST if family == 4 else NETMASK_V6_HOST


def netmask_from_prefix(family: int, prefix_len: int) -> int:
    """Kernel netmask value for a prefix length: a 32-bit mask (IPv4) or the length (IPv6)."""
    if family == 4:
        if not 0 <= prefix_len <= 32:
            raise ValueError(f"IPv4 prefix length must be 0..32, got {prefix_len}")
        return (NETMASK_V4_HOST << (32 - prefix_len)) & NETMASK_V4_HOST
    if not 0 <= prefix_len <= 128:
        raise ValueError(f"IPv6 prefix length must be 0..128, got {prefix_len}")
    return prefix_len


def prefix_from_netmask(family: int, netmask: int) -> int:
    """Inverse of :func:`netmask_from_prefix`; ValueError for a non-contiguous IPv4 mask."""
    if family == 6:
        return netmask
    inverted = ~netmask & NETMASK_V4_HOST
    if inverted & (inverted + 1):
        raise ValueError(f"IPv4 netmask {ipaddress.IPv4Address(netmask)} is not contiguous")
    return 32 - inverted.bit_length()


@functools.lru_cache(maxsize=65536)
def canonical_address(text: str) -> str:
    """An address in one spelling (``ipaddress`` compressed form); ValueError if invalid."""
    return ipaddress.ip_address(text.strip()).compressed


@functools.lru_cache(maxsize=65536)
def _parsed(address: str) -> tuple[int, int]:
    """(family, integer value) of a textual address; cached: tables repeat addresses, and
    parsing dominated planning a large table."""
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def address_family(address: str) -> int:
    """4 or 6 for a textual address."""
    return _parsed(address)[0]


# --- keys and attributes ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceKey:
    """What names a virtual service to the kernel.

    Either protocol/address/port (``fwmark == 0``) or a firewall mark and family
    (``protocol == IPPROTO_NONE``, ``address == ""``, ``port == 0``).
    """

    family: int
    protocol: int
    address: str
    port: int
    fwmark: int = 0

    @classmethod
    def virtual(cls, protocol: int | str, address: str, port: int) -> ServiceKey:
        """A protocol/address/port service; the address is normalised."""
        proto = PROTOCOL_BY_NAME[protocol] if isinstance(protocol, str) else protocol
        addr = canonical_address(address)
        return cls(address_family(addr), proto, addr, port, 0)

    @classmethod
    def mark(cls, fwmark: int, family: int = 4) -> ServiceKey:
        """A firewall-mark service of the given address family."""
        return cls(family, IPPROTO_NONE, "", 0, fwmark)

    @property
    def is_fwmark(self) -> bool:
        return self.fwmark != 0

    def sort_key(self) -> tuple[int, int, int, int, int]:
        """Numeric order: family, mark, protocol, address, port."""
        addr = _parsed(self.address)[1] if self.address else 0
        return (self.family, self.fwmark, self.protocol, addr, self.port)

    def __str__(self) -> str:
        fam = "" if self.family == 4 else " ipv6"
        if self.is_fwmark:
            return f"fwmark {self.fwmark}{fam}"
        host = self.address if self.family == 4 else f"[{self.address}]"
        return f"{PROTOCOL_NAME.get(self.protocol, str(self.protocol))} {host}:{self.port}"


@dataclass(frozen=True)
class DestKey:
    """What names a destination (real server) within a service: address and port."""

    address: str
    port: int

    @classmethod
    def of(cls, address: str, port: int) -> DestKey:
        return cls(canonical_address(address), port)

    @property
    def family(self) -> int:
        return address_family(self.address)

    def sort_key(self) -> tuple[int, int, int]:
        family, value = _parsed(self.address)
        return (family, value, self.port)

    def __str__(self) -> str:
        host = self.address if self.family == 4 else f"[{self.address}]"
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Service:
    """Kernel-visible attributes of a virtual service (everything but its key and dests).

    ``flags`` are ``SVC_F_*`` bits; ``netmask`` is a 32-bit mask as an integer for IPv4
    (``0xffffff00`` for /24) and a prefix length for IPv6, as the kernel keeps it;
    ``timeout_s`` is the persistence timeout. ``pe_name`` is the persistence engine
    ("" for none, "sip").
    """

    scheduler: str = "wlc"
    flags: int = 0
    timeout_s: int = 0
    netmask: int = NETMASK_V4_HOST
    pe_name: str = ""

    @property
    def persistent(self) -> bool:
        return bool(self.flags & SVC_F_PERSISTENT)

    def effective(self) -> Service:
        """The attributes that change the kernel's behaviour, in one spelling.

        Drops the kernel-internal HASHED bit, and timeout/netmask/engine of a
        non-persistent service (the kernel keeps them but never uses them). Two services
        with equal ``effective()`` need no edit.
        """
        flags = self.flags & ~SVC_F_HASHED
        if flags & SVC_F_PERSISTENT:
            return Service(self.scheduler, flags, self.timeout_s, self.netmask, self.pe_name)
        return Service(self.scheduler, flags, 0, 0, "")


@dataclass(frozen=True)
class Dest:
    """Kernel-visible attributes of a destination.

    ``forwarding`` is a ``FWD_*`` method; thresholds are connection counts (0 = unset);
    the tunnel fields matter for ``FWD_TUNNEL`` only (port for GUE, flags for GUE/GRE).
    The 6.1 kernel reports back the method it was given, also for a destination address
    that is local (it does not turn it into LOCALNODE: seen in the VM).
    """

    forwarding: int = FWD_DROUTE
    weight: int = 1
    upper_threshold: int = 0
    lower_threshold: int = 0
    tunnel_type: int = TUN_TYPE_IPIP
    tunnel_port: int = 0
    tunnel_flags: int = TUN_F_NOCSUM

    def effective(self) -> Dest:
        """The attributes that change the kernel's behaviour, in one spelling."""
        if self.forwarding != FWD_TUNNEL:
            return Dest(self.forwarding, self.weight, self.upper_threshold, self.lower_threshold)
        port = self.tunnel_port if self.tunnel_type == TUN_TYPE_GUE else 0
        flags = self.tunnel_flags if self.tunnel_type in (TUN_TYPE_GUE, TUN_TYPE_GRE) else 0
        return Dest(
            self.forwarding,
            self.weight,
            self.upper_threshold,
            self.lower_threshold,
            self.tunnel_type,
            port,
            flags,
        )


class Entry(NamedTuple):
    """One virtual service of a table: its attributes and its destinations."""

    service: Service
    dests: Mapping[DestKey, Dest]


#: A whole IPVS table (desired or actual).
Table = Mapping[ServiceKey, Entry]


def entries_equal(a: Entry, b: Entry) -> bool:
    """True when two entries need no write to turn one into the other."""
    if a.service.effective() != b.service.effective():
        return False
    if a.dests.keys() != b.dests.keys():
        return False
    return all(a.dests[k].effective() == b.dests[k].effective() for k in a.dests)


def tables_equal(a: Table, b: Table) -> bool:
    """True when two tables need no write to turn one into the other."""
    return a.keys() == b.keys() and all(entries_equal(a[k], b[k]) for k in a)


# --- from configuration -----------------------------------------------------------------------


class RealServerLike(Protocol):
    """The attributes of ``hadirector.config.schema.RealServer`` this module reads."""

    @property
    def address(self) -> Any: ...
    @property
    def port(self) -> int | None: ...
    @property
    def weight(self) -> int: ...
    @property
    def upper_threshold(self) -> int | None: ...
    @property
    def lower_threshold(self) -> int | None: ...
    @property
    def forwarding(self) -> str: ...


class VirtualServerLike(Protocol):
    """The attributes of ``hadirector.config.schema.VirtualServer`` this module reads."""

    @property
    def protocol(self) -> str | None: ...
    @property
    def address(self) -> Any: ...
    @property
    def port(self) -> int | None: ...
    @property
    def fwmark(self) -> int | None: ...
    @property
    def family(self) -> int: ...
    @property
    def scheduler(self) -> str: ...
    @property
    def scheduler_flags(self) -> Sequence[str]: ...
    @property
    def one_packet(self) -> bool: ...
    @property
    def forwarding(self) -> str: ...
    @property
    def persistence_timeout_s(self) -> int | None: ...
    @property
    def persistence_netmask(self) -> int | None: ...
    @property
    def tunnel_type(self) -> str | None: ...
    @property
    def tunnel_port(self) -> int | None: ...
    @property
    def tunnel_flags(self) -> Sequence[str]: ...
    @property
    def real_servers(self) -> Sequence[RealServerLike]: ...


def service_key_of(vs: VirtualServerLike) -> ServiceKey:
    """The kernel key of a configured virtual server."""
    if vs.fwmark:
        return ServiceKey.mark(int(vs.fwmark), int(vs.family))
    if vs.protocol is None or vs.address is None:
        raise ValueError("a virtual server needs a firewall mark or protocol and address")
    return ServiceKey.virtual(vs.protocol, str(vs.address), int(vs.port or 0))


def service_of(vs: VirtualServerLike) -> Service:
    """The kernel attributes of a configured virtual server."""
    family = int(vs.family)
    flags = 0
    for name in vs.scheduler_flags or ():
        flags |= SCHED_FLAG_BITS[name]
    if vs.one_packet:
        flags |= SVC_F_ONEPACKET
    timeout_s = int(vs.persistence_timeout_s or 0)
    netmask = default_netmask(family)
    if timeout_s > 0:
        flags |= SVC_F_PERSISTENT
        if vs.persistence_netmask is not None:
            netmask = netmask_from_prefix(family, int(vs.persistence_netmask))
    return Service(scheduler=vs.scheduler, flags=flags, timeout_s=timeout_s, netmask=netmask)


def _tunnel_of(obj: object, fallback: object) -> tuple[int, int, int]:
    """Tunnel type, port and flags of a real server, falling back to its virtual server's."""

    def pick(name: str) -> Any:
        value = getattr(obj, name, None)
        return value if value is not None else getattr(fallback, name, None)

    type_name = pick("tunnel_type") or "ipip"
    port = int(pick("tunnel_port") or 0)
    flags = 0
    for name in pick("tunnel_flags") or ():
        flags |= TUN_FLAG_BY_NAME[name]
    return TUN_TYPE_BY_NAME[type_name], port, flags


def dest_key_of(vs: VirtualServerLike, rs: RealServerLike) -> DestKey:
    """A real server's key: its port, else the service port (0 for firewall-mark services)."""
    port = rs.port if rs.port is not None else (0 if vs.fwmark else int(vs.port or 0))
    return DestKey.of(str(rs.address), int(port))


def dest_of(vs: VirtualServerLike, rs: RealServerLike) -> Dest:
    """The kernel attributes of a configured real server."""
    method_name = rs.forwarding or vs.forwarding
    method = FORWARDING_BY_NAME[method_name]
    tun_type, tun_port, tun_flags = (
        _tunnel_of(rs, vs) if method == FWD_TUNNEL else (TUN_TYPE_IPIP, 0, TUN_F_NOCSUM)
    )
    return Dest(
        forwarding=method,
        weight=int(rs.weight),
        upper_threshold=int(rs.upper_threshold or 0),
        lower_threshold=int(rs.lower_threshold or 0),
        tunnel_type=tun_type,
        tunnel_port=tun_port,
        tunnel_flags=tun_flags,
    )


def desired_from_config(vs_list: Iterable[VirtualServerLike]) -> dict[ServiceKey, Entry]:
    """The IPVS table a configuration asks for.

    Raises ConfigError listing every virtual server that would collide with another on
    the same kernel key and every real server listed twice in one service (the loader
    should have caught these; the table cannot hold them).
    """
    table: dict[ServiceKey, Entry] = {}
    problems: list[Problem] = []
    for i, vs in enumerate(vs_list):
        path = f"virtual_server[{i}]"
        try:
            key = service_key_of(vs)
            service = service_of(vs)
        except (KeyError, ValueError) as exc:
            problems.append(Problem(path, f"cannot map to IPVS: {exc}"))
            continue
        if key in table:
            problems.append(Problem(path, f"duplicate virtual service {key}"))
            continue
        dests: dict[DestKey, Dest] = {}
        for j, rs in enumerate(vs.real_servers):
            rs_path = f"{path}.real_server[{j}]"
            try:
                dkey = dest_key_of(vs, rs)
                dest = dest_of(vs, rs)
            except (KeyError, ValueError) as exc:
                problems.append(Problem(rs_path, f"cannot map to IPVS: {exc}"))
                continue
            if dkey in dests:
                problems.append(Problem(rs_path, f"duplicate real server {dkey}"))
                continue
            dests[dkey] = dest
        table[key] = Entry(service, dests)
    if problems:
        raise ConfigError(problems)
    return table


def apply_health(
    table: Table,
    down: Collection[tuple[ServiceKey, DestKey]],
    *,
    quiesce: bool,
) -> dict[ServiceKey, Entry]:
    """The table with failed real servers taken out of rotation.

    ``down`` names (service, real server) pairs whose health checks fail. With ``quiesce``
    they stay with weight 0 (established connections drain, no new ones arrive); without,
    they are left out of the table (the reconciler deletes them from the kernel).
    """
    if not down:
        return dict(table)
    out: dict[ServiceKey, Entry] = {}
    for key, entry in table.items():
        dests: dict[DestKey, Dest] = {}
        for dkey, dest in entry.dests.items():
            if (key, dkey) not in down:
                dests[dkey] = dest
            elif quiesce:
                dests[dkey] = replace(dest, weight=0)
        out[key] = Entry(entry.service, dests)
    return out


def sorted_services(table: Table) -> list[ServiceKey]:
    """The keys of a table in deterministic numeric order."""
    return sorted(table, key=ServiceKey.sort_key)


def sorted_dests(dests: Mapping[DestKey, Dest]) -> list[DestKey]:
    """The destination keys of a service in deterministic numeric order."""
    return sorted(dests, key=DestKey.sort_key)
