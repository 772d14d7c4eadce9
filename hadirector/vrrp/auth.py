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

Key rotation: a ``KeyRing`` holds the signing key and keys that are only accepted. Adverts
are signed with the signing key; ``KeyRing.verify`` tries the signing key, then each accepted
key, and says which one verified (by index, never the key). Two peers rotate by first
accepting the new key on both, then signing with it on both, then dropping the old one: at no
step does one refuse what the other signs.

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
from collections.abc import Sequence

from hadirector.errors import DecodeError
from hadirector.vrrp.codec import IPAddress

__all__ = [
    "MAGIC",
    "MIN_KEY_LEN",
    "TRAILER_LEN",
    "KeyRing",
    "ReplayGuard",
    "load_key",
    "sign",
    "verify",
]

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


def _split(data: bytes, src: IPAddress, dst: IPAddress) -> tuple[bytes, bytes, bytes]:
    """``(packet, seq_bytes, mac)`` of a trailed advert, or ``DecodeError("auth", ...)``."""
    if len(data) <= TRAILER_LEN:
        raise DecodeError("auth", f"{len(data)} bytes cannot hold a packet and its trailer")
    if src.version != dst.version:
        raise DecodeError("auth", f"src {src} and dst {dst} differ in family")
    packet_len = len(data) - TRAILER_LEN
    magic = data[packet_len : packet_len + len(MAGIC)]
    if magic != MAGIC:
        raise DecodeError("auth", "no authentication trailer")
    seq_bytes = data[packet_len + len(MAGIC) : packet_len + len(MAGIC) + _SEQ_LEN]
    return data[:packet_len], seq_bytes, data[-_MAC_LEN:]


def verify(data: bytes, *, key: bytes, src: IPAddress, dst: IPAddress) -> tuple[bytes, int]:
    """``(packet, seq)`` if ``data`` ends with a trailer whose MAC ``key`` produced for this
    ``src``/``dst``; otherwise ``DecodeError("auth", ...)``. Replay is the caller's check
    (``ReplayGuard``)."""
    packet, seq, _ = KeyRing(key).verify(data, src=src, dst=dst)
    return packet, seq


class KeyRing:
    """The signing key and the keys accepted besides it (during a rotation).

    ``keys[0]`` is the signing key, ``keys[i]`` for i >= 1 the i-th accepted one. Equal rings
    compare equal; the repr never shows key material. ``ValueError`` for a key shorter than
    ``MIN_KEY_LEN`` (the loader's job to prevent: our bug).
    """

    __slots__ = ("_keys",)

    def __init__(self, signing: bytes, accepted: Sequence[bytes] = ()) -> None:
        keys = (bytes(signing), *(bytes(k) for k in accepted))
        for key in keys:
            if len(key) < MIN_KEY_LEN:
                raise ValueError(f"key must be at least {MIN_KEY_LEN} bytes, got {len(key)}")
        self._keys = keys

    @property
    def signing(self) -> bytes:
        """The key adverts are signed with."""
        return self._keys[0]

    @property
    def accepted(self) -> tuple[bytes, ...]:
        """The keys that verify but never sign."""
        return self._keys[1:]

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyRing):
            return NotImplemented
        return self._keys == other._keys

    def __hash__(self) -> int:
        return hash(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(<signing key>, <{len(self._keys) - 1} accepted>)"

    def sign(self, packet: bytes, *, seq: int, src: IPAddress, dst: IPAddress) -> bytes:
        """``sign`` with the signing key."""
        return sign(packet, key=self._keys[0], seq=seq, src=src, dst=dst)

    def verify(self, data: bytes, *, src: IPAddress, dst: IPAddress) -> tuple[bytes, int, int]:
        """``(packet, seq, index)``: ``index`` of the key whose MAC the trailer carries (0 the
        signing key, i the i-th accepted key); ``DecodeError("auth", ...)`` if none does.

        Every key is tried, in constant time each, whatever matched before."""
        data = bytes(data)
        packet, seq_bytes, carried = _split(data, src, dst)
        found: int | None = None
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(carried, _mac(key, src, dst, packet, seq_bytes)):
                found = index if found is None else found
        if found is None:
            raise DecodeError("auth", "MAC does not verify")
        seq: int = struct.unpack("!Q", seq_bytes)[0]
        return packet, seq, found


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
        """Drop what is known of ``src``. A key change keeps the table: the peer's sequence
        numbers go on increasing across a rotation."""
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
