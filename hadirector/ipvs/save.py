"""Render an IPVS table as ``ipvsadm -S -n`` prints it, byte for byte.

The text is what ``ipvsadm -R`` reads back, so a table dumped by the agent can be restored by
stock tools, and a table read from the kernel can be compared with ``ipvsadm -S -n`` output.
Facts about ipvsadm 1.31 (Debian 12) this follows, each checked byte for byte against the
real ipvsadm on the Debian 6.1 kernel in the VM (``tests/unit/test_ipvs_save_kernel.py``):

- one service line ``-A <svc> -s <scheduler>``, then ``-p <timeout>`` when persistent, with
  ``-M <netmask>`` when the mask is not the per-host one (dotted quad for IPv4, a prefix
  length for IPv6), ``--pe <engine>``, ``-o`` (one-packet), ``-b <flags>`` (sh/mh flag
  names, else ``flag-N``), in that order;
- then one line per destination ``-a <svc> -r <addr:port> <-g|-i|-m> -w <weight>``, tunnel
  destinations followed by ``--tun-type``, ``--tun-port`` (GUE) and the checksum option
  (GUE/GRE). Thresholds are *not* saved by ipvsadm;
- ``<svc>`` is ``-t|-u|--sctp-service addr:port`` or ``-f <mark>`` (``-f <mark> -6`` for an
  IPv6 mark); IPv6 addresses are bracketed and spelled as glibc's ``inet_ntop`` spells them;
- ipvsadm sorts services and destinations (libipvs ``ipvs_cmp_services`` /
  ``ipvs_cmp_dests`` under glibc's merge sort): ``ipvsadm_order`` reproduces that, quirks
  included (differences computed in wrapping 32-bit arithmetic).

``format_save`` prints in the order it is given; ``format_table`` sorts as ipvsadm does.

This module is part of the pure core: no I/O, no clock, standard library only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from hadirector.ipvs.model import (
    AF_INET,
    AF_INET6,
    FWD_MASQ,
    FWD_TUNNEL,
    IPPROTO_TCP,
    IPPROTO_UDP,
    NETMASK_V4_HOST,
    NETMASK_V6_HOST,
    SVC_F_ONEPACKET,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    SVC_F_SCHED3,
    SVC_F_SCHED_MASK,
    TUN_F_CSUM,
    TUN_F_REMCSUM,
    TUN_TYPE_GRE,
    TUN_TYPE_GUE,
    TUN_TYPE_NAME,
    Dest,
    DestKey,
    Service,
    ServiceKey,
    Table,
)

#: One service as the save format needs it: key, attributes, destinations in print order.
SavedService = tuple[ServiceKey, Service, Sequence[tuple[DestKey, Dest]]]

_T = TypeVar("_T")


def inet_ntop(address: str) -> str:
    """An address spelled as glibc's ``inet_ntop`` spells it.

    Same as Python's compressed form except for IPv4-compatible (``::a.b.c.d``) and
    IPv4-mapped (``::ffff:a.b.c.d``) IPv6 addresses, which glibc writes with a dotted tail.
    """
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return str(ip)
    value = int(ip)
    high = value >> 32
    tail = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if high == 0 and value >> 16:  # six zero words, then a non-zero seventh
        return f"::{tail}"
    if high == 0xFFFF:
        return f"::ffff:{tail}"
    return ip.compressed


def _addrport(address: str, port: int) -> str:
    host = inet_ntop(address)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _c_int(value: int) -> int:
    """``value`` as C's ``int`` would hold it (32-bit two's complement)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def service_spec(key: ServiceKey) -> str:
    """The virtual-service options naming ``key``: ``-t 192.0.2.1:80``, ``-f 5 -6``."""
    if key.is_fwmark:
        mark = _c_int(key.fwmark)
        return f"-f {mark} -6" if key.family == 6 else f"-f {mark}"
    switch = {IPPROTO_TCP: "-t", IPPROTO_UDP: "-u"}.get(key.protocol, "--sctp-service")
    return f"{switch} {_addrport(key.address, key.port)}"


def sched_flags_text(scheduler: str, flags: int) -> str:
    """Scheduler flags as ipvsadm names them: ``sh-fallback,sh-port``, else ``flag-N``."""
    if scheduler in ("sh", "mh"):
        names = [f"{scheduler}-fallback", f"{scheduler}-port", "flag-3"]
    else:
        names = ["flag-1", "flag-2", "flag-3"]
    bits = (SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3)
    return ",".join(name for name, bit in zip(names, bits, strict=True) if flags & bit)


def service_rule(key: ServiceKey, service: Service) -> str:
    """The ``-A`` line for a service (no newline)."""
    out = [f"-A {service_spec(key)} -s {service.scheduler}"]
    if service.persistent:
        out.append(f" -p {service.timeout_s & 0xFFFFFFFF}")
        if key.family == 4 and service.netmask != NETMASK_V4_HOST:
            out.append(f" -M {ipaddress.IPv4Address(service.netmask & NETMASK_V4_HOST)}")
        elif key.family == 6 and service.netmask != NETMASK_V6_HOST:
            out.append(f" -M {_c_int(service.netmask)}")
    if service.pe_name:
        out.append(f" --pe {service.pe_name}")
    if service.flags & SVC_F_ONEPACKET:
        out.append(" -o")
    if service.flags & SVC_F_SCHED_MASK:
        out.append(f" -b {sched_flags_text(service.scheduler, service.flags)}")
    return "".join(out)


def _forwarding_switch(method: int) -> str:
    if method == FWD_MASQ:
        return "-m"
    if method == FWD_TUNNEL:
        return "-i"
    return "-g"  # direct routing; also how ipvsadm shows a local-node destination


def _tunnel_checksum_option(flags: int) -> str:
    if flags & TUN_F_REMCSUM:
        return "--tun-remcsum"
    if flags & TUN_F_CSUM:
        return "--tun-csum"
    return "--tun-nocsum"


def dest_rule(key: ServiceKey, dest_key: DestKey, dest: Dest) -> str:
    """The ``-a`` line for a destination of service ``key`` (no newline)."""
    line = (
        f"-a {service_spec(key)} -r {_addrport(dest_key.address, dest_key.port)} "
        f"{_forwarding_switch(dest.forwarding)} -w {_c_int(dest.weight)}"
    )
    if dest.forwarding != FWD_TUNNEL:
        return line
    tun_name = TUN_TYPE_NAME.get(dest.tunnel_type, "ipip")
    if dest.tunnel_type == TUN_TYPE_GUE:
        return (
            f"{line} --tun-type {tun_name} --tun-port {dest.tunnel_port} "
            f"{_tunnel_checksum_option(dest.tunnel_flags)}"
        )
    if dest.tunnel_type == TUN_TYPE_GRE:
        return f"{line} --tun-type {tun_name} {_tunnel_checksum_option(dest.tunnel_flags)}"
    return f"{line} --tun-type {tun_name}"


def format_save(services: Iterable[SavedService] | Table) -> str:
    """The save text for services and destinations, in the order given.

    A whole table (a mapping, as the kernel adapter's ``table()`` returns) is first put in
    ipvsadm's order, as :func:`format_table` does.
    """
    if isinstance(services, Mapping):
        services = ipvsadm_order(services)
    lines: list[str] = []
    for key, service, dests in services:
        lines.append(service_rule(key, service))
        lines.extend(dest_rule(key, dkey, dest) for dkey, dest in dests)
    return "".join(line + "\n" for line in lines)


# --- ipvsadm's order --------------------------------------------------------------------------


def _glibc_msort(items: list[_T], cmp: Callable[[_T, _T], int]) -> list[_T]:
    """glibc 2.36 ``qsort``: top-down merge sort, first half ``n // 2``, ties to the left.

    Reproduced rather than ``sorted`` so that a comparison that is not a total order (as
    ipvsadm's is, for addresses more than 2**31 apart) gives ipvsadm's answer too.
    """
    n = len(items)
    if n <= 1:
        return list(items)
    left = _glibc_msort(items[: n // 2], cmp)
    right = _glibc_msort(items[n // 2 :], cmp)
    out: list[_T] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def _address_diff(family: int, a: str, b: str) -> int:
    """libipvs: difference of host-order 32-bit words, each wrapped to C ``int``."""
    if family == 6:
        x, y = int(ipaddress.IPv6Address(a)), int(ipaddress.IPv6Address(b))
        for shift in (96, 64, 32, 0):
            r = _c_int(((x >> shift) & 0xFFFFFFFF) - ((y >> shift) & 0xFFFFFFFF))
            if r:
                return r
        return 0
    if not a or not b:
        return 0
    return _c_int(int(ipaddress.IPv4Address(a)) - int(ipaddress.IPv4Address(b)))


def _af(family: int) -> int:
    return AF_INET6 if family == 6 else AF_INET


def _cmp_services(a: ServiceKey, b: ServiceKey) -> int:
    r = _c_int(a.fwmark - b.fwmark)
    if r:
        return r
    r = _af(a.family) - _af(b.family)
    if r:
        return r
    r = a.protocol - b.protocol
    if r:
        return r
    if a.is_fwmark:  # no address on a mark service: the kernel reports zeros
        return 0
    r = _address_diff(a.family, a.address, b.address)
    if r:
        return r
    return a.port - b.port


def _cmp_dests(a: DestKey, b: DestKey) -> int:
    fa, fb = a.family, b.family
    if fa != fb:  # mixed-family tunnel destinations: IPv4 first (kernel >= 5.3 only)
        return _af(fa) - _af(fb)
    r = _address_diff(fa, a.address, b.address)
    if r:
        return r
    return a.port - b.port


def ipvsadm_order(table: Table) -> list[SavedService]:
    """The services and destinations of ``table`` in the order ``ipvsadm -S`` prints them.

    The input's iteration order is the order the sort starts from (the kernel's dump order
    when the table was read from the kernel); it only matters in the wrap-around cases.
    """
    out: list[SavedService] = []
    for key in _glibc_msort(list(table), _cmp_services):
        entry = table[key]
        dkeys = _glibc_msort(list(entry.dests), _cmp_dests)
        out.append((key, entry.service, [(dk, entry.dests[dk]) for dk in dkeys]))
    return out


def format_table(table: Table) -> str:
    """``ipvsadm -S -n`` for a whole table: sorted as ipvsadm sorts, then formatted."""
    return format_save(ipvsadm_order(table))
