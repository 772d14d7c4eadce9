"""Authenticated adverts between two hadirector peers: an HMAC-SHA256 trailer (opt-in).

VRRPv3 dropped authentication (RFC 5798 §9) and v2's simple text password (RFC 3768 §5.3.6)
proves nothing. When both directors of a pair run hadirector, an operator can give them a
shared key; every advert then carries, after the VRRP packet::

    magic  b"HDA1"                                    4 bytes
    seq    sender's sequence number, big-endian       8 bytes
    mac    HMAC-SHA256(key, src + dst + packet + magic + seq)   32 bytes

``src``/``dst`` are the packed IP header addresses, so an advert cannot be replayed with
other addresses or reflected. ``seq`` must strictly increase per sender; the sender
supplies it (the socket adapter uses wall-clock nanoseconds so that a restarted peer keeps
increasing) and the receiver enforces it with ``ReplayGuard`` after ``verify``.

The trailer is off by default and must never be sent to a peer that is not hadirector
(keepalived would refuse the length). ``verify`` raises ``DecodeError("auth", ...)`` for
anything it cannot accept; the VRRP packet it returns still goes through ``codec.decode``.

Pure: standard library only (hmac, hashlib), no I/O, no clock. MACs are compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import string
import struct

from hadirector.errors import DecodeError
from hadirector.vrrp.codec import IPAddress

__all__ = ["MAGIC", "MIN_KEY_LEN", "TRAILER_LEN", "ReplayGuard", "load_key", "sign", "verify"]

MAGIC = b"HDA1"
_SEQ_LEN = 8
_MAC_LEN = 32
TRAILER_LEN = len(MAGIC) + _SEQ_LEN + _MAC_LEN  # 44
MIN_KEY_LEN = 32
_MAX_SEQ = (1 << 64) - 1
_HEX_DIGITS = frozenset(string.hexdigits)


def _mac(key: bytes, src: IPAddress, dst: IPAddress, packet: bytes, seq_bytes: bytes) -> bytes:
    message = src.packed + dst.packed + packet + MAGIC + seq_bytes
    return hmac.new(key, message, hashlib.sha256).digest()


def _check_addresses(src: IPAddress, dst: IPAddress) -> None:
    if src.version != dst.version:
        raise ValueError(f"src {src} and dst {dst} are of different families")


def sign(packet: bytes, *, key: bytes, seq: int, src: IPAddress, dst: IPAddress) -> bytes:
    """``packet`` followed by its trailer. ``ValueError`` for an empty packet, a short key,
    a sequence number outside 0..2**64-1 or mixed address families (our bugs)."""
    if not packet:
        raise ValueError("nothing to sign")
    if len(key) < MIN_KEY_LEN:
        raise ValueError(f"key must be at least {MIN_KEY_LEN} bytes, got {len(key)}")
    if not 0 <= seq <= _MAX_SEQ:
        raise ValueError(f"sequence number out of range: {seq}")
    _check_addresses(src, dst)
    packet = bytes(packet)
    seq_bytes = struct.pack("!Q", seq)
    return packet + MAGIC + seq_bytes + _mac(key, src, dst, packet, seq_bytes)


def verify(data: bytes, *, key: bytes, src: IPAddress, dst: IPAddress) -> tuple[bytes, int]:
    """``(packet, seq)`` if ``data`` ends with a trailer whose MAC ``key`` produced for this
    ``src``/``dst``; otherwise ``DecodeError("auth", ...)``. Replay is the caller's check
    (``ReplayGuard``)."""
    data = bytes(data)
    if len(data) <= TRAILER_LEN:
        raise DecodeError("auth", f"{len(data)} bytes cannot hold a packet and its trailer")
    if src.version != dst.version:
        raise DecodeError("auth", f"src {src} and dst {dst} differ in family")
    packet_len = len(data) - TRAILER_LEN
    packet = data[:packet_len]
    magic = data[packet_len : packet_len + len(MAGIC)]
    seq_bytes = data[packet_len + len(MAGIC) : packet_len + len(MAGIC) + _SEQ_LEN]
    carried = data[-_MAC_LEN:]
    if magic != MAGIC:
        raise DecodeError("auth", "no authentication trailer")
    expected = _mac(key, src, dst, packet, seq_bytes)
    if not hmac.compare_digest(carried, expected):
        raise DecodeError("auth", "MAC does not verify")
    seq: int = struct.unpack("!Q", seq_bytes)[0]
    return packet, seq


class ReplayGuard:
    """Highest sequence number accepted per source address; refuses anything not above it.

    Feed it only adverts that passed ``verify``: sources without a valid MAC never get an
    entry, so the table holds at most the authenticated peers.
    """

    __slots__ = ("_highest",)

    def __init__(self) -> None:
        self._highest: dict[IPAddress, int] = {}

    def accept(self, src: IPAddress, seq: int) -> bool:
        """True, and remember ``seq``, if it is above every earlier one from ``src``."""
        last = self._highest.get(src)
        if last is not None and seq <= last:
            return False
        self._highest[src] = seq
        return True

    def highest(self, src: IPAddress) -> int | None:
        """The highest sequence number accepted from ``src``, if any."""
        return self._highest.get(src)

    def forget(self, src: IPAddress) -> None:
        """Drop what is known of ``src`` (for example when the key changes on reload)."""
        self._highest.pop(src, None)


def load_key(content: str | bytes) -> bytes:
    """The HMAC key from a key file's content.

    Hex: if the content, stripped of surrounding whitespace, is all hex digits, it must be an
    even number (64 or more) of them, i.e. at least 32 bytes. Otherwise raw: the content
    exactly as given (a ``str`` as UTF-8), at least 32 bytes. Anything else raises
    ``ValueError`` (the message never shows the key).
    """
    raw = content.encode() if isinstance(content, str) else bytes(content)
    stripped = raw.strip()
    if not stripped:
        raise ValueError("key is empty (or only whitespace)")
    if stripped.isascii() and _HEX_DIGITS.issuperset(stripped.decode("ascii")):
        # All hex digits: a hex key, never a raw one (a mistyped hex key must not be taken
        # for a weaker raw key that happens to be long enough).
        if len(stripped) % 2 or len(stripped) < 2 * MIN_KEY_LEN:
            raise ValueError(
                f"hex key must be an even number (>= {2 * MIN_KEY_LEN}) of hex digits,"
                f" got {len(stripped)}"
            )
        return bytes.fromhex(stripped.decode("ascii"))
    if len(raw) < MIN_KEY_LEN:
        raise ValueError(
            f"key must be at least {MIN_KEY_LEN} raw bytes or {2 * MIN_KEY_LEN} hex digits,"
            f" got {len(raw)} bytes"
        )
    return raw
