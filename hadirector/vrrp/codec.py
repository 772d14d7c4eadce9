"""VRRP advertisement codec: RFC 5798 (VRRPv3, IPv4/IPv6) and RFC 3768 (VRRPv2, IPv4).

Turns an ``Advert`` into the bytes of a VRRP packet (the IP payload) and back, with the
checksum rules of each version:

- v2 (RFC 3768 §5.3.8): Internet checksum over the VRRP packet alone.
- v3 over IPv6 (RFC 5798 §5.2.8): Internet checksum over the IPv6 pseudo-header
  (RFC 8200 §8.1: source, destination, upper-layer length, next header 112) and the packet.
- v3 over IPv4: with the IPv4 pseudo-header (source, destination, zero, protocol 112,
  length) as RFC 5798 asks and keepalived 2.2.7 always does, or over the packet alone like
  v2 (FRR's ``no ... checksum-with-ipv4-pseudoheader``): chosen by ``v3_ipv4_pseudo_header``.
  ``dst`` enters only the checksum: keepalived's ``old_unicast_checksum`` (unicast v3 adverts
  whose pseudo-header names 224.0.0.18 instead of the peer) is read and written by passing
  ``MCAST_V4`` as ``dst``.

``decode`` is the trust boundary for bytes from the wire: whatever it is given, it returns
an ``Advert`` or raises ``DecodeError`` with a short reason tag ("short", "version", "type",
"vrid", "family", "count", "length", "checksum", "auth", "interval"). ``encode`` validates
its input and raises ``ValueError`` for out-of-range fields, which would be our own bug.

``parse_ipv4`` splits a datagram read from a raw IPv4 socket (which delivers the IP header)
into the fields the VRRP receive checks need. ``internet_checksum`` and ``pseudo_header``
are shared with other packet builders (for example ICMPv6 neighbour advertisements).

This module is pure: no I/O, no clock, no sockets, standard library only. It knows nothing
of VRRP state (VRID or priority semantics, timers, TTL policy): the state machine decides
what a well-formed advert means.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from hadirector.errors import DecodeError

__all__ = [
    "AUTH_NONE",
    "AUTH_SIMPLE_TEXT",
    "MCAST_V4",
    "MCAST_V6",
    "TYPE_ADVERTISEMENT",
    "VRRP_PROTO",
    "Advert",
    "IPAddress",
    "Ipv4Packet",
    "Ipv4Parser",
    "decode",
    "encode",
    "internet_checksum",
    "parse_ipv4",
    "pseudo_header",
    "v2_password",
]

IPAddress = IPv4Address | IPv6Address

VRRP_PROTO = 112
MCAST_V4 = IPv4Address("224.0.0.18")
MCAST_V6 = IPv6Address("ff02::12")

TYPE_ADVERTISEMENT = 1
AUTH_NONE = 0
AUTH_SIMPLE_TEXT = 1
AUTH_IP_AH = 2  # RFC 2338 IP Authentication Header: recognised, never accepted

_HEADER_LEN = 8
_V2_AUTH_DATA_LEN = 8
_V3_MAX_INTERVAL_CS = 0x0FFF
_V2_MAX_INTERVAL_S = 0xFF
_MAX_COUNT = 0xFF

# The addresses of IPv4 headers: peers are few, so each is built once (bounded, so a flood
# of spoofed sources cannot grow it).
_ipv4 = functools.lru_cache(maxsize=1024)(IPv4Address)


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRP advertisement, version-neutral.

    ``interval_cs`` is in centiseconds for both versions: v3 carries it as is (12 bits,
    1..4095); v2 carries whole seconds (``interval_cs`` must be a multiple of 100, 1..255 s).
    ``addresses`` are all of one family, the family of the IP packet that carries them.
    ``auth_type``/``auth_data`` exist on the wire only in v2: 0 = none (``auth_data`` empty),
    1 = simple text password (``auth_data`` exactly 8 bytes, NUL-padded: ``v2_password``).
    """

    version: int
    vrid: int
    priority: int
    interval_cs: int
    addresses: tuple[IPAddress, ...]
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""


@dataclass(frozen=True, slots=True)
class Ipv4Packet:
    """The fields of an IPv4 datagram that VRRP reception looks at."""

    src: IPv4Address
    dst: IPv4Address
    ttl: int
    protocol: int
    payload: bytes


# --- checksums -------------------------------------------------------------------------


def internet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum: one's complement of the one's complement sum of 16-bit
    big-endian words (an odd trailing byte is padded with zero). Returns 0..0xFFFF.

    Summing a packet that already carries a correct checksum gives 0.
    """
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    # One struct.unpack of all words and a built-in sum, then folding the carries: the same
    # sum as adding word by word with end-around carry, far faster in CPython.
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: IPAddress, dst: IPAddress, protocol: int, length: int) -> bytes:
    """The pseudo-header an upper-layer checksum covers.

    IPv4 (RFC 768 layout): source, destination, zero, protocol, 16-bit length.
    IPv6 (RFC 8200 §8.1): source, destination, 32-bit length, three zero bytes, next header.
    """
    if src.version != dst.version:
        raise ValueError(f"pseudo-header with mixed families: {src} -> {dst}")
    if not 0 <= protocol <= 0xFF:
        raise ValueError(f"protocol out of range: {protocol}")
    if src.version == 4:
        if not 0 <= length <= 0xFFFF:
            raise ValueError(f"IPv4 upper-layer length out of range: {length}")
        return src.packed + dst.packed + struct.pack("!BBH", 0, protocol, length)
    if not 0 <= length <= 0xFFFFFFFF:
        raise ValueError(f"IPv6 upper-layer length out of range: {length}")
    return src.packed + dst.packed + struct.pack("!I3xB", length, protocol)


def _checksum_prefix(
    version: int, src: IPAddress, dst: IPAddress, length: int, v3ph: bool
) -> bytes:
    """What the checksum covers in front of the VRRP packet (empty for v2 and v3-as-v2)."""
    if version == 2:
        return b""
    if src.version == 4 and not v3ph:
        return b""
    return pseudo_header(src, dst, VRRP_PROTO, length)


# --- encode ----------------------------------------------------------------------------


def v2_password(secret: str | bytes) -> bytes:
    """The 8-byte v2 simple-text authentication data for ``secret`` (1..8 bytes, NUL-padded).

    Longer secrets are refused rather than silently cut: the operator would believe in a
    password the wire does not carry.
    """
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not 1 <= len(raw) <= _V2_AUTH_DATA_LEN:
        raise ValueError(f"v2 password must be 1..8 bytes, got {len(raw)}")
    return raw.ljust(_V2_AUTH_DATA_LEN, b"\x00")


def _validate(advert: Advert, src: IPAddress, dst: IPAddress) -> None:
    if advert.version not in (2, 3):
        raise ValueError(f"VRRP version must be 2 or 3, got {advert.version}")
    if not 1 <= advert.vrid <= 0xFF:
        raise ValueError(f"vrid must be 1..255, got {advert.vrid}")
    if not 0 <= advert.priority <= 0xFF:
        raise ValueError(f"priority must be 0..255, got {advert.priority}")
    if not isinstance(src, IPv4Address | IPv6Address) or not isinstance(
        dst, IPv4Address | IPv6Address
    ):
        raise ValueError(f"src and dst must be IP addresses, got {src!r}, {dst!r}")
    if src.version != dst.version:
        raise ValueError(f"src {src} and dst {dst} are of different families")
    if not 1 <= len(advert.addresses) <= _MAX_COUNT:
        raise ValueError(f"an advert carries 1..255 addresses, got {len(advert.addresses)}")
    for address in advert.addresses:
        if not isinstance(address, IPv4Address | IPv6Address) or address.version != src.version:
            raise ValueError(f"address {address!r} is not of the family of src {src}")
    if advert.version == 2:
        if src.version != 4:
            raise ValueError("VRRPv2 is IPv4 only")
        if advert.interval_cs % 100 or not 1 <= advert.interval_cs // 100 <= _V2_MAX_INTERVAL_S:
            raise ValueError(
                f"v2 interval must be whole seconds 1..255 (as cs), got {advert.interval_cs}"
            )
        if advert.auth_type == AUTH_NONE:
            if advert.auth_data:
                raise ValueError("v2 auth_type 0 carries no auth_data")
        elif advert.auth_type == AUTH_SIMPLE_TEXT:
            if len(advert.auth_data) != _V2_AUTH_DATA_LEN:
                raise ValueError(
                    f"v2 simple-text auth_data must be 8 bytes, got {len(advert.auth_data)}"
                )
        else:
            raise ValueError(f"v2 auth_type must be 0 or 1, got {advert.auth_type}")
    else:
        if not 1 <= advert.interval_cs <= _V3_MAX_INTERVAL_CS:
            raise ValueError(f"v3 interval must be 1..4095 cs, got {advert.interval_cs}")
        if advert.auth_type != AUTH_NONE or advert.auth_data:
            raise ValueError("VRRPv3 has no authentication fields")


def encode(
    advert: Advert, *, src: IPAddress, dst: IPAddress, v3_ipv4_pseudo_header: bool = True
) -> bytes:
    """The VRRP packet (IP payload) for ``advert`` sent from ``src`` to ``dst``.

    ``src``/``dst`` are the IP header's addresses (they enter the v3 checksum).
    Raises ``ValueError`` if a field is out of range or families do not agree.
    """
    _validate(advert, src, dst)
    count = len(advert.addresses)
    addresses = b"".join(a.packed for a in advert.addresses)
    if advert.version == 2:
        # RFC 3768 §5.1: Version|Type, VRID, Priority, Count, Auth Type, Adver Int (s),
        # Checksum, addresses, 8 bytes of authentication data.
        head = struct.pack(
            "!BBBBBBH",
            (2 << 4) | TYPE_ADVERTISEMENT,
            advert.vrid,
            advert.priority,
            count,
            advert.auth_type,
            advert.interval_cs // 100,
            0,
        )
        auth = advert.auth_data if advert.auth_type == AUTH_SIMPLE_TEXT else bytes(8)
        packet = head + addresses + auth
    else:
        # RFC 5798 §5.1: Version|Type, VRID, Priority, Count, rsvd(4)|Max Adver Int(12),
        # Checksum, addresses.
        head = struct.pack(
            "!BBBBHH",
            (3 << 4) | TYPE_ADVERTISEMENT,
            advert.vrid,
            advert.priority,
            count,
            advert.interval_cs & _V3_MAX_INTERVAL_CS,
            0,
        )
        packet = head + addresses
    prefix = _checksum_prefix(advert.version, src, dst, len(packet), v3_ipv4_pseudo_header)
    checksum = internet_checksum(prefix + packet)
    return packet[:6] + struct.pack("!H", checksum) + packet[8:]


# --- decode ----------------------------------------------------------------------------


def decode(
    payload: bytes,
    *,
    src: IPAddress,
    dst: IPAddress,
    v3_ipv4_pseudo_header: bool = True,
) -> Advert:
    """The ``Advert`` in ``payload`` (a VRRP packet, the IP payload) received from ``src``
    for ``dst``, or ``DecodeError``.

    Checks, in order: length of the fixed header, version (2 or 3), type (advertisement),
    VRID (1..255), address family (src, dst; v2 is IPv4 only), address count (at least one),
    exact length for that count (no trailing bytes), checksum, then v2 authentication type
    (0 or 1; 2 = IP Authentication Header is refused) and a non-zero interval. The v3
    reserved bits are ignored (RFC 5798 §5.2.5); so is v2 authentication data of type 0.
    """
    data = bytes(payload)
    if len(data) < _HEADER_LEN:
        raise DecodeError("short", f"{len(data)} bytes, a VRRP header has {_HEADER_LEN}")
    version = data[0] >> 4
    vtype = data[0] & 0x0F
    vrid, priority, count = data[1], data[2], data[3]
    if version not in (2, 3):
        raise DecodeError("version", f"version {version}")
    if vtype != TYPE_ADVERTISEMENT:
        raise DecodeError("type", f"type {vtype}, only 1 (advertisement) exists")
    if vrid == 0:
        raise DecodeError("vrid", "VRID 0 is not a virtual router")
    if not isinstance(src, IPv4Address | IPv6Address) or not isinstance(
        dst, IPv4Address | IPv6Address
    ):
        raise DecodeError("family", f"src {src!r} / dst {dst!r} are not IP addresses")
    if src.version != dst.version:
        raise DecodeError("family", f"src {src} and dst {dst} differ in family")
    if version == 2 and src.version != 4:
        raise DecodeError("family", f"VRRPv2 from IPv6 source {src}")
    if count == 0:
        raise DecodeError("count", "an advert carries at least one address")
    address_len = 4 if src.version == 4 else 16
    trailer_len = _V2_AUTH_DATA_LEN if version == 2 else 0
    expected = _HEADER_LEN + count * address_len + trailer_len
    if len(data) != expected:
        raise DecodeError(
            "length",
            f"{len(data)} bytes, v{version} with {count} IPv{src.version} addresses has {expected}",
        )
    prefix = _checksum_prefix(version, src, dst, len(data), v3_ipv4_pseudo_header)
    if internet_checksum(prefix + data) != 0:
        carried = struct.unpack_from("!H", data, 6)[0]
        raise DecodeError("checksum", f"carried {carried:#06x} does not verify")
    raw_addresses = data[_HEADER_LEN : _HEADER_LEN + count * address_len]
    addresses: tuple[IPAddress, ...]
    if address_len == 4:
        addresses = tuple(
            IPv4Address(raw_addresses[i : i + 4]) for i in range(0, len(raw_addresses), 4)
        )
    else:
        addresses = tuple(
            IPv6Address(raw_addresses[i : i + 16]) for i in range(0, len(raw_addresses), 16)
        )
    if version == 2:
        auth_type, interval_s = data[4], data[5]
        if auth_type == AUTH_IP_AH:
            raise DecodeError("auth", "auth type 2 (IP Authentication Header) is not supported")
        if auth_type not in (AUTH_NONE, AUTH_SIMPLE_TEXT):
            raise DecodeError("auth", f"unknown auth type {auth_type}")
        if interval_s == 0:
            raise DecodeError("interval", "advert interval 0 s")
        auth_data = data[-_V2_AUTH_DATA_LEN:] if auth_type == AUTH_SIMPLE_TEXT else b""
        return Advert(2, vrid, priority, interval_s * 100, addresses, auth_type, auth_data)
    interval_cs = struct.unpack_from("!H", data, 4)[0] & _V3_MAX_INTERVAL_CS
    if interval_cs == 0:
        raise DecodeError("interval", "max advert interval 0 cs")
    return Advert(3, vrid, priority, interval_cs, addresses)


# --- IPv4 datagrams from a raw socket --------------------------------------------------


def parse_ipv4(datagram: bytes) -> Ipv4Packet:
    """The fields of an IPv4 datagram as a raw socket delivers it (header included).

    Validates version 4, header length (IHL 5..15, within the datagram), total length
    (at least the header, at most the buffer; bytes past it are link padding and dropped),
    no fragmentation (raw sockets receive reassembled datagrams), and the header checksum.
    Raises ``DecodeError`` on anything wrong.
    """
    data = bytes(datagram)
    if len(data) < 20:
        raise DecodeError("short", f"{len(data)} bytes, an IPv4 header has at least 20")
    version, ihl = data[0] >> 4, data[0] & 0x0F
    if version != 4:
        raise DecodeError("version", f"IP version {version}")
    header_len = ihl * 4
    if ihl < 5:
        raise DecodeError("length", f"IHL {ihl} is below the minimum 5")
    if header_len > len(data):
        raise DecodeError("short", f"header of {header_len} bytes in {len(data)}")
    total_len, flags_fragment, ttl, protocol = struct.unpack_from("!2xH2xHBB", data)
    if total_len < header_len:
        raise DecodeError("length", f"total length {total_len} < header length {header_len}")
    if total_len > len(data):
        raise DecodeError("short", f"total length {total_len} but {len(data)} bytes")
    if flags_fragment & 0x3FFF:  # MF flag or a fragment offset
        raise DecodeError("fragment", "a fragment of a datagram")
    if internet_checksum(data[:header_len]) != 0:
        raise DecodeError("checksum", "IPv4 header checksum does not verify")
    return Ipv4Packet(
        src=_ipv4(data[12:16]),
        dst=_ipv4(data[16:20]),
        ttl=ttl,
        protocol=protocol,
        payload=data[header_len:total_len],
    )


class Ipv4Parser:
    """``parse_ipv4`` with a memory, for datagrams a raw socket delivers.

    A peer sends the same datagram every interval but for the IPv4 identification and the
    header checksum. A datagram without IP options whose other bytes (total length, flags
    and fragment offset, TTL, protocol, addresses, VRRP payload) were parsed before gets
    that parse again: every check of ``parse_ipv4`` is a function of those bytes but the
    header checksum, which the kernel verified before it delivered the datagram (Linux
    ``ip_rcv``). At most ``limit`` parses are kept (forgotten all at once when full:
    spoofed sources or contents only make it parse anew)."""

    __slots__ = ("_known", "_limit")

    def __init__(self, limit: int = 256) -> None:
        self._known: dict[bytes, Ipv4Packet] = {}
        self._limit = limit

    def known(self, datagram: bytes) -> Ipv4Packet | None:
        """The parse of a datagram the same as one parsed before (as ``parse`` would answer
        it), or None: call ``parse``."""
        if type(datagram) is bytes and len(datagram) >= 20 and datagram[0] == 0x45:
            return self._known.get(datagram[2:4] + datagram[6:10] + datagram[12:])
        return None

    def parse(self, datagram: bytes) -> Ipv4Packet:
        """What ``parse_ipv4`` answers (``DecodeError`` included), for a datagram the
        kernel delivered."""
        key = None
        if type(datagram) is bytes and len(datagram) >= 20 and datagram[0] == 0x45:  # no options
            key = datagram[2:4] + datagram[6:10] + datagram[12:]
            known = self._known.get(key)
            if known is not None:
                return known
        packet = parse_ipv4(datagram)
        if key is not None:
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[key] = packet
        return packet
