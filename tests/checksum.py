"""The Internet checksum (RFC 1071) and the pseudo-headers VRRP's checksum covers, written
once for every test and tool under tests/ and bench/.

It is the tests' own arithmetic, independent of hadirector's (hadirector.vrrp.codec): tests
check what hadirector puts on the wire against it, never the codec against itself.
Standard library only: tests/netns/prober.py, a program run on its own, imports it.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

VRRP_PROTOCOL = 112


def ones_complement_sum(data: bytes) -> int:
    """The one's complement sum of ``data`` as 16-bit big-endian words (an odd length is
    padded with a zero byte), carries folded back in."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the one's complement of the one's complement sum of ``data``. A packet
    whose checksum field is right sums (with its pseudo-header) to a checksum of 0."""
    return ~ones_complement_sum(data) & 0xFFFF


def pseudo_header(
    src: str | IPv4Address | IPv6Address,
    dst: str | IPv4Address | IPv6Address,
    length: int,
    protocol: int = VRRP_PROTOCOL,
) -> bytes:
    """The pseudo-header for an upper-layer packet of ``length`` bytes from ``src`` to
    ``dst``: IPv4 (RFC 768 layout: src, dst, zero, protocol, 16-bit length) or IPv6
    (RFC 8200 §8.1: src, dst, 32-bit length, three zero bytes, next header)."""
    source, destination = ip_address(src), ip_address(dst)
    if source.version == 4:
        return source.packed + destination.packed + bytes([0, protocol]) + length.to_bytes(2, "big")
    return (
        source.packed + destination.packed + length.to_bytes(4, "big") + bytes([0, 0, 0, protocol])
    )
