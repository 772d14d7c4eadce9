"""The IPVS connection-sync protocol, version 1: pure encode and decode.

This is the format the kernel's sync daemons speak (UDP, by default to 224.0.0.81:8848): a
*master* daemon sends messages, a *backup* daemon turns each entry into a connection (or a
persistence template) in its own IPVS table. hadirector speaks it to send a whole
connection table to a joining director at once (bulk resync, sync/resync.py) and in tests
to read what a kernel master sends. All fields are big-endian.

Message (8-byte header, then ``count`` entries)::

    0: reserved, must be 0     1: sync id          2-3: size of the whole message
    4: count of entries        5: version (1)      6-7: spare, must be 0

Entry (24 bytes, then three IPv4 or three IPv6 addresses, then optional parameters)::

    0: type (bit 0 set: IPv6)  1: IP protocol      2-3: version (top 4 bits, 0) | size (12 bits)
    4-7: connection flags (IP_VS_CONN_F_*)         8-9: protocol state
    10-11: client port   12-13: virtual port   14-15: real server port
    16-19: firewall mark      20-23: timeout in seconds (0: the receiver's default)
    then client, virtual and real server address

An entry's ``size`` counts its own bytes (header, addresses, parameters) but not the padding
that puts the next entry on a 4-byte boundary. A parameter is ``type, length, data``
(length 1..255): 1 sequence adjustment (24 bytes: in and out, each init_seq, delta,
previous_delta), 2 persistence-engine data (up to 255 bytes), 3 persistence-engine name (up
to 16 bytes). A type with bit 0x40 set may be skipped by a receiver that does not know it;
any other unknown type makes the message invalid.

hadirector's own control messages (bulk resync, sync/bulk.py) are version 1 messages with
no entry and a 12-byte trailer that a kernel receiver ignores (it checks the header's size
against the datagram and then reads ``count`` entries, here none)::

    8-11: "HDRS"    12: kind (1: resync request, 2: resync done)    13-15: 0
    16-19: entries sent (done) or 0 (request)

Version 0 messages (first byte = entry count) are not decoded: the kernel sends version 1
unless ``net.ipv4.vs.sync_version`` is set to 0.

:func:`decode` raises only :class:`hadirector.errors.DecodeError` (reason ``sync.*``) for any
bytes that are not one valid version 1 message; it is stricter than the kernel's receiver
(which ignores unknown type bits and bytes after the last entry). This module is part of the
pure core: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from hadirector.errors import DecodeError

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_PORT",
    "Conn",
    "Control",
    "Message",
    "SeqAdjust",
    "decode",
    "encode",
    "encode_control",
    "pack",
    "peek",
]

DEFAULT_GROUP = "224.0.0.81"
DEFAULT_GROUP_V6 = "ff02::8848"
DEFAULT_PORT = 8848
VERSION = 1

HEADER = struct.Struct("!BBHBbH")
ENTRY = struct.Struct("!BBHIHHHHII")  # type .. timeout: 24 bytes
SEQ = struct.Struct("!IIIIII")
HEADER_LEN = HEADER.size  # 8
ENTRY_V4_LEN = ENTRY.size + 12  # 36
ENTRY_V6_LEN = ENTRY.size + 48  # 72

TYPE_INET6 = 0x01
SIZE_MASK = 0x0FFF
VERSION_SHIFT = 12
MAX_ENTRY = SIZE_MASK
MAX_MESSAGE = 0xFFFF
MAX_COUNT = 0xFF

OPT_SEQ = 1
OPT_PE_DATA = 2
OPT_PE_NAME = 3
OPT_SKIPPABLE = 0x40
PE_DATA_MAX = 255
PE_NAME_MAX = 16

# Connection flags (IP_VS_CONN_F_*) that matter to a sync receiver.
F_MASQ = 0x0000
F_LOCALNODE = 0x0001
F_TUNNEL = 0x0002
F_DROUTE = 0x0003
F_FWD_MASK = 0x0007
F_SYNC = 0x0020
F_NOOUTPUT = 0x0080
F_INACTIVE = 0x0100
F_OUT_SEQ = 0x0200
F_IN_SEQ = 0x0400
F_NO_CPORT = 0x0800
F_TEMPLATE = 0x1000

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class SeqAdjust:
    """TCP sequence adjustment of one direction (used by application helpers, e.g. FTP)."""

    init_seq: int = 0
    delta: int = 0
    previous_delta: int = 0


@dataclass(frozen=True)
class Conn:
    """One sync entry: a connection, or a persistence template (``F_TEMPLATE`` in flags).

    The three addresses are all IPv4 or all IPv6. ``seq`` is (incoming, outgoing) or None
    (no parameter); ``pe_data`` / ``pe_name`` are None when absent (never empty).
    """

    protocol: int
    caddr: Address
    cport: int
    vaddr: Address
    vport: int
    daddr: Address
    dport: int
    flags: int = 0
    state: int = 0
    fwmark: int = 0
    timeout: int = 0
    seq: tuple[SeqAdjust, SeqAdjust] | None = None
    pe_data: bytes | None = None
    pe_name: bytes | None = None

    @property
    def ipv6(self) -> bool:
        return isinstance(self.caddr, IPv6Address)

    @property
    def template(self) -> bool:
        return bool(self.flags & F_TEMPLATE)


CONTROL_MAGIC = b"HDRS"
CONTROL = struct.Struct("!4sB3xI")
REQUEST = 1
DONE = 2


@dataclass(frozen=True)
class Control:
    """A hadirector control message: ``kind`` REQUEST or DONE, ``entries`` sent (DONE)."""

    kind: int
    entries: int = 0


@dataclass(frozen=True)
class Message:
    syncid: int
    conns: tuple[Conn, ...] = field(default_factory=tuple)
    control: Control | None = None


def encode_control(syncid: int, control: Control) -> bytes:
    """A control message (no entries: a kernel backup daemon takes it and does nothing)."""
    _check_range("sync id", syncid, 8)
    if control.kind not in (REQUEST, DONE):
        raise ValueError(f"unknown control kind {control.kind}")
    _check_range("entries", control.entries, 32)
    size = HEADER_LEN + CONTROL.size
    return HEADER.pack(0, syncid, size, 0, VERSION, 0) + CONTROL.pack(
        CONTROL_MAGIC, control.kind, control.entries
    )


def _check_range(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} out of range for {bits} bits")


def encode_conn(conn: Conn) -> bytes:
    """One entry, unpadded. Raises ValueError for a field that does not fit."""
    v6 = conn.ipv6
    addrs = (conn.caddr, conn.vaddr, conn.daddr)
    want = IPv6Address if v6 else IPv4Address
    if not all(isinstance(a, want) for a in addrs):
        raise ValueError("client, virtual and real server address must be of one family")
    for name, value, bits in (
        ("protocol", conn.protocol, 8),
        ("flags", conn.flags, 32),
        ("state", conn.state, 16),
        ("cport", conn.cport, 16),
        ("vport", conn.vport, 16),
        ("dport", conn.dport, 16),
        ("fwmark", conn.fwmark, 32),
        ("timeout", conn.timeout, 32),
    ):
        _check_range(name, value, bits)
    params = bytearray()
    if conn.seq is not None:
        values = [v for s in conn.seq for v in (s.init_seq, s.delta, s.previous_delta)]
        for v in values:
            _check_range("sequence value", v, 32)
        params += bytes((OPT_SEQ, SEQ.size)) + SEQ.pack(*values)
    for kind, data, most in (
        (OPT_PE_DATA, conn.pe_data, PE_DATA_MAX),
        (OPT_PE_NAME, conn.pe_name, PE_NAME_MAX),
    ):
        if data is not None:
            if not 1 <= len(data) <= most:
                raise ValueError(f"parameter {kind} must be 1..{most} bytes, got {len(data)}")
            params += bytes((kind, len(data))) + data
    size = (ENTRY_V6_LEN if v6 else ENTRY_V4_LEN) + len(params)
    if size > MAX_ENTRY:  # cannot happen with the limits above; kept as a guard
        raise ValueError(f"entry of {size} bytes exceeds {MAX_ENTRY}")
    head = ENTRY.pack(
        TYPE_INET6 if v6 else 0,
        conn.protocol,
        size,
        conn.flags,
        conn.state,
        conn.cport,
        conn.vport,
        conn.dport,
        conn.fwmark,
        conn.timeout,
    )
    return head + b"".join(a.packed for a in addrs) + bytes(params)


def _pad(n: int) -> int:
    return (-n) & 3


def encode(syncid: int, conns: Sequence[Conn]) -> bytes:
    """One message of ``conns`` (at most 255, at most 65535 bytes) for sync id ``syncid``."""
    _check_range("sync id", syncid, 8)
    if len(conns) > MAX_COUNT:
        raise ValueError(f"at most {MAX_COUNT} entries per message, got {len(conns)}")
    body = bytearray()
    for conn in conns:
        body += bytes(_pad(len(body))) + encode_conn(conn)
    size = HEADER_LEN + len(body)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(0, syncid, size, len(conns), VERSION, 0) + bytes(body)


def pack(syncid: int, conns: Iterable[Conn], maxlen: int) -> list[bytes]:
    """``conns`` in as few messages as fit ``maxlen`` bytes each (and 255 entries each).

    ``maxlen`` is the UDP payload size (the kernel uses the sync interface's MTU less the
    IP and UDP headers). Order is kept. Raises ValueError if one entry alone does not fit.
    """
    messages: list[bytes] = []
    batch: list[Conn] = []
    length = HEADER_LEN
    for conn in conns:
        entry = len(encode_conn(conn))
        need = _pad(length) + entry
        if batch and (length + need > maxlen or len(batch) == MAX_COUNT):
            messages.append(encode(syncid, batch))
            batch, length = [], HEADER_LEN
            need = entry
        if length + need > maxlen:
            raise ValueError(f"an entry of {entry} bytes does not fit in {maxlen}-byte messages")
        batch.append(conn)
        length += need
    if batch:
        messages.append(encode(syncid, batch))
    return messages


def _bad(reason: str, detail: str = "") -> DecodeError:
    return DecodeError(f"sync.{reason}", detail)


def _decode_params(
    data: bytes, start: int, end: int
) -> tuple[tuple[SeqAdjust, SeqAdjust] | None, bytes | None, bytes | None]:
    seq: tuple[SeqAdjust, SeqAdjust] | None = None
    found: dict[int, bytes] = {}
    p = start
    while p < end:
        if p + 2 > end:
            raise _bad("param_truncated", f"at byte {p}")
        kind, length = data[p], data[p + 1]
        p += 2
        if length == 0 or p + length > end:
            raise _bad("param_length", f"parameter {kind} of length {length} at byte {p - 2}")
        value = data[p : p + length]
        base = kind & ~OPT_SKIPPABLE
        if base in found or (base == OPT_SEQ and seq is not None):
            raise _bad("param_repeated", f"parameter {base}")
        if base == OPT_SEQ:
            if length != SEQ.size:
                raise _bad("param_length", f"sequence parameter of {length} bytes")
            v = SEQ.unpack(value)
            seq = (SeqAdjust(*v[:3]), SeqAdjust(*v[3:]))
        elif base == OPT_PE_DATA:
            found[base] = value
        elif base == OPT_PE_NAME:
            if length > PE_NAME_MAX:
                raise _bad("param_length", f"persistence engine name of {length} bytes")
            found[base] = value
        elif not kind & OPT_SKIPPABLE:
            raise _bad("param_unknown", f"mandatory parameter {kind}")
        p += length
    return seq, found.get(OPT_PE_DATA), found.get(OPT_PE_NAME)


def _decode_conn(data: bytes, p: int) -> tuple[Conn, int]:
    """The entry at ``p`` and the offset after it (unpadded)."""
    if p + ENTRY_V4_LEN > len(data):
        raise _bad("truncated", f"entry at byte {p}")
    kind, proto, ver_size, flags, state, cport, vport, dport, fwmark, timeout = ENTRY.unpack_from(
        data, p
    )
    if ver_size >> VERSION_SHIFT:
        raise _bad("entry_version", str(ver_size >> VERSION_SHIFT))
    if kind & ~TYPE_INET6:
        raise _bad("entry_type", str(kind))
    size = ver_size & SIZE_MASK
    v6 = bool(kind & TYPE_INET6)
    base = ENTRY_V6_LEN if v6 else ENTRY_V4_LEN
    end = p + size
    if size < base or end > len(data):
        raise _bad("entry_size", f"{size} bytes at byte {p}")
    q = p + ENTRY.size
    addrs: list[Address]
    if v6:
        addrs = [IPv6Address(data[q + i : q + i + 16]) for i in (0, 16, 32)]
    else:
        addrs = [IPv4Address(data[q + i : q + i + 4]) for i in (0, 4, 8)]
    seq, pe_data, pe_name = _decode_params(data, p + base, end)
    conn = Conn(
        protocol=proto,
        caddr=addrs[0],
        cport=cport,
        vaddr=addrs[1],
        vport=vport,
        daddr=addrs[2],
        dport=dport,
        flags=flags,
        state=state,
        fwmark=fwmark,
        timeout=timeout,
        seq=seq,
        pe_data=pe_data,
        pe_name=pe_name,
    )
    return conn, end


def peek(data: bytes) -> tuple[int, int]:
    """The sync id and entry count of the version 1 message in ``data``, from its header
    alone (DecodeError if the header is not one's): for a receiver that only counts
    entries and leaves them to the kernel."""
    if len(data) < HEADER_LEN:
        raise _bad("truncated", f"{len(data)} bytes")
    reserved, syncid, size, count, version, spare = HEADER.unpack_from(data)
    if reserved != 0 or version != VERSION or spare != 0:
        raise _bad("version", f"not a version 1 message (first byte {reserved}, version {version})")
    if size != len(data):
        raise _bad("size", f"header says {size} bytes, datagram has {len(data)}")
    return syncid, count


def decode(data: bytes) -> Message:
    """The version 1 message in ``data`` (one UDP payload); DecodeError if it is not one."""
    syncid, count = peek(data)
    conns: list[Conn] = []
    p = HEADER_LEN
    for _ in range(count):
        p += _pad(p)
        conn, p = _decode_conn(data, p)
        conns.append(conn)
    if count == 0 and len(data) == HEADER_LEN + CONTROL.size:
        magic, kind, entries = CONTROL.unpack_from(data, HEADER_LEN)
        if magic == CONTROL_MAGIC and kind in (REQUEST, DONE) and data[13:16] == bytes(3):
            return Message(syncid, (), Control(kind, entries))
    if p != len(data):
        raise _bad("trailing", f"{len(data) - p} bytes after the last entry")
    return Message(syncid, tuple(conns))
