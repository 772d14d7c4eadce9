"""A director's connection table as sync entries: what a bulk resync sends (pure).

The kernel's IPVS netlink family lists services and real servers but no connections; the
connection table, persistence templates included, is read from ``/proc/net/ip_vs_conn``
(what ``ipvsadm -L -c -n`` shows), one line per entry after a heading::

    Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
    TCP C0000202 9C40 CB00710A 0050 C0000202 1F90 ESTABLISHED     897
    TCP C0000202 0000 CB00710A 0050 C0000202 1F90 NONE            297

Protocol by name, IPv4 addresses and all ports as hexadecimal, IPv6 addresses in the
kernel's full colon form, the protocol state by name, the seconds left, and for an entry
of a persistence engine its name and data (not carried: see below).

The file shows neither the connection flags nor the firewall mark, so :func:`sync_entries`
takes them from the director's own IPVS table (the real server's forwarding method, the
service's firewall mark and persistence timeout). A template is recognised by its state:
templates are ``NONE`` or ``ASSURED``, which no TCP or UDP connection shows once a packet
has passed (protocol ``IP`` entries are firewall-mark templates, the mark in the virtual
address field). Timeouts: a connection is sent with timeout 0, so the receiver arms it
with its own protocol timeout for the state, as for any new connection; a template with
the service's persistence timeout (so a template is kept at most one period longer than
on the sender). Entries that cannot be placed (a service or real server no longer in the
table, an unknown state name, a persistence-engine entry) are counted, not sent.

This module is part of the pure core: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from hadirector.ipvs.model import DestKey, Entry, ServiceKey
from hadirector.sync import codec
from hadirector.sync.codec import Conn

__all__ = ["ProcConn", "Resync", "parse_proc_conn", "sync_entries"]

PROTOCOLS = {"IP": 0, "ICMP": 1, "TCP": 6, "UDP": 17, "ICMPv6": 58, "SCTP": 132}
TCP_STATES = {
    "NONE": 0,
    "ESTABLISHED": 1,
    "SYN_SENT": 2,
    "SYN_RECV": 3,
    "FIN_WAIT": 4,
    "TIME_WAIT": 5,
    "CLOSE": 6,
    "CLOSE_WAIT": 7,
    "LAST_ACK": 8,
    "LISTEN": 9,
    "SYNACK": 10,
}
UDP_STATES = {"UDP": 0}
SCTP_STATES = {"ESTABLISHED": 7}
TEMPLATE_STATES = {"NONE": 0, "ASSURED": 1}
STATES_BY_PROTOCOL = {6: TCP_STATES, 17: UDP_STATES, 132: SCTP_STATES}


@dataclass(frozen=True)
class ProcConn:
    """One line of /proc/net/ip_vs_conn."""

    protocol: int
    caddr: IPv4Address | IPv6Address
    cport: int
    vaddr: IPv4Address | IPv6Address
    vport: int
    daddr: IPv4Address | IPv6Address
    dport: int
    state: str
    expires_s: int
    pe_name: str = ""

    @property
    def template(self) -> bool:
        return self.protocol == 0 or self.state in TEMPLATE_STATES


def _address(text: str) -> IPv4Address | IPv6Address:
    if ":" in text:
        return IPv6Address(text)
    return IPv4Address(int(text, 16))


def parse_proc_conn(text: str) -> tuple[list[ProcConn], int]:
    """The entries of a /proc/net/ip_vs_conn listing, and how many lines were not understood."""
    entries: list[ProcConn] = []
    bad = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "Pro":
            continue
        try:
            proto_name, caddr, cport, vaddr, vport, daddr, dport, state, expires = fields[:9]
            protocol = PROTOCOLS.get(proto_name)
            if protocol is None and proto_name.startswith("IP_"):
                protocol = int(proto_name[3:])
            if protocol is None:
                raise ValueError(proto_name)
            entries.append(
                ProcConn(
                    protocol,
                    _address(caddr),
                    int(cport, 16),
                    _address(vaddr),
                    int(vport, 16),
                    _address(daddr),
                    int(dport, 16),
                    state,
                    int(expires),
                    fields[9] if len(fields) > 9 else "",
                )
            )
        except ValueError:
            bad += 1
    return entries, bad


@dataclass(frozen=True)
class Resync:
    """What a bulk resync sends: entries (connections and templates) and what it left out."""

    conns: tuple[Conn, ...]
    templates: int
    skipped: int


def _dest_matches(key: DestKey, daddr: IPv4Address | IPv6Address, dport: int) -> bool:
    return ip_address(key.address) == daddr and (dport == 0 or key.port == dport)


def _place(
    entry: ProcConn, table: Mapping[ServiceKey, Entry]
) -> tuple[ServiceKey, Entry, DestKey] | None:
    """The service and real server an entry belongs to, or None."""
    family = 6 if isinstance(entry.vaddr, IPv6Address) else 4
    candidates: list[ServiceKey] = []
    if entry.protocol != 0:
        direct = ServiceKey.virtual(entry.protocol, str(entry.vaddr), entry.vport)
        if direct in table:
            candidates.append(direct)
        candidates += [  # port-zero and FTP templates carry virtual port 0
            k
            for k in table
            if not k.is_fwmark
            and k != direct
            and k.protocol == entry.protocol
            and ip_address(k.address) == entry.vaddr
            and (entry.vport == 0 or k.port == 0)
        ]
        candidates += [k for k in table if k.is_fwmark and k.family == family]
    else:  # a firewall-mark template: the mark sits in the address field
        mark = int.from_bytes(entry.vaddr.packed[:4], "big")
        candidates += [k for k in table if k.is_fwmark and k.fwmark == mark]
    for key in candidates:
        for dest_key in table[key].dests:
            if _dest_matches(dest_key, entry.daddr, entry.dport):
                return key, table[key], dest_key
    return None


def sync_entries(entries: Iterable[ProcConn], table: Mapping[ServiceKey, Entry]) -> Resync:
    """The sync entries for ``entries`` (read from /proc) of a director whose IPVS table is
    ``table``; see the module text for what is taken from where."""
    conns: list[Conn] = []
    templates = skipped = 0
    for entry in entries:
        placed = _place(entry, table) if not entry.pe_name else None
        if placed is None:
            skipped += 1
            continue
        key, service_entry, dest_key = placed
        forwarding = service_entry.dests[dest_key].forwarding & codec.F_FWD_MASK
        if entry.template:
            state = TEMPLATE_STATES.get(entry.state, 0)
            flags = codec.F_TEMPLATE | forwarding
            timeout = max(service_entry.service.timeout_s, entry.expires_s)
            templates += 1
        else:
            states = STATES_BY_PROTOCOL.get(entry.protocol, {})
            if entry.state not in states:
                skipped += 1
                continue
            state = states[entry.state]
            flags = forwarding
            if entry.protocol == 6 and entry.state != "ESTABLISHED":
                flags |= codec.F_INACTIVE
            timeout = 0
        conns.append(
            Conn(
                protocol=entry.protocol,
                caddr=entry.caddr,
                cport=entry.cport,
                vaddr=entry.vaddr,
                vport=entry.vport,
                daddr=entry.daddr,
                dport=entry.dport,
                flags=flags,
                state=state,
                fwmark=key.fwmark,
                timeout=timeout,
            )
        )
    return Resync(tuple(conns), templates, skipped)
