"""Unit tests of the HMAC advert trailer (hadirector.vrrp.auth).

The trailer layout is rebuilt here byte by byte with hmac/hashlib (magic, big-endian
sequence number, HMAC-SHA256 over src + dst + packet + magic + seq) and compared with
``sign``; hypothesis checks that every corruption, truncation, wrong key or wrong address
is refused with DecodeError("auth"), and ReplayGuard against a model of its rule.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.errors import DecodeError
from hadirector.vrrp.auth import TRAILER_LEN, ReplayGuard, load_key, sign, verify
from hadirector.vrrp.codec import MCAST_V4, MCAST_V6, Advert, IPAddress, decode, encode

KEY = bytes(range(32))
S4 = IPv4Address("192.0.2.1")
S6 = IPv6Address("fe80::1")


def test_trailer_layout_by_hand() -> None:
    packet = encode(Advert(3, 1, 100, 100, (IPv4Address("192.0.2.10"),)), src=S4, dst=MCAST_V4)
    seq = 0x0102030405060708
    signed = sign(packet, key=KEY, seq=seq, src=S4, dst=MCAST_V4)
    seq_bytes = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    message = bytes([192, 0, 2, 1]) + bytes([224, 0, 0, 18]) + packet + b"HDA1" + seq_bytes
    mac = hmac.new(KEY, message, hashlib.sha256).digest()
    assert signed == packet + b"HDA1" + seq_bytes + mac
    assert TRAILER_LEN == 44 == len(signed) - len(packet)
    assert verify(signed, key=KEY, src=S4, dst=MCAST_V4) == (packet, seq)
    assert decode(packet, src=S4, dst=MCAST_V4).vrid == 1


def test_rfc4231_case_2_primitive() -> None:
    # The MAC primitive is HMAC-SHA256 as RFC 4231 test case 2 defines it.
    mac = hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest()
    assert mac == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


packets = st.binary(min_size=1, max_size=200)
seqs = st.integers(0, 2**64 - 1)
keys = st.binary(min_size=32, max_size=80)
v4_pairs = st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4))
v6_pairs = st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=6))
pairs = st.one_of(v4_pairs, v6_pairs)


@given(packets, keys, seqs, pairs)
def test_sign_verify_round_trip(
    packet: bytes, key: bytes, seq: int, pair: tuple[IPAddress, IPAddress]
) -> None:
    src, dst = pair
    signed = sign(packet, key=key, seq=seq, src=src, dst=dst)
    assert len(signed) == len(packet) + TRAILER_LEN
    assert verify(signed, key=key, src=src, dst=dst) == (packet, seq)


@given(packets, keys, seqs, pairs, st.data())
def test_any_bit_flip_is_refused(
    packet: bytes, key: bytes, seq: int, pair: tuple[IPAddress, IPAddress], data: st.DataObject
) -> None:
    src, dst = pair
    signed = bytearray(sign(packet, key=key, seq=seq, src=src, dst=dst))
    bit = data.draw(st.integers(0, len(signed) * 8 - 1))
    signed[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(DecodeError) as err:
        verify(bytes(signed), key=key, src=src, dst=dst)
    assert err.value.reason == "auth"


@given(packets, keys, seqs, pairs, st.data())
def test_truncation_is_refused(
    packet: bytes, key: bytes, seq: int, pair: tuple[IPAddress, IPAddress], data: st.DataObject
) -> None:
    src, dst = pair
    signed = sign(packet, key=key, seq=seq, src=src, dst=dst)
    cut = data.draw(st.integers(0, len(signed) - 1))
    with pytest.raises(DecodeError) as err:
        verify(signed[:cut], key=key, src=src, dst=dst)
    assert err.value.reason == "auth"


@given(packets, keys, keys, seqs, pairs)
def test_wrong_key_is_refused(
    packet: bytes, key: bytes, other: bytes, seq: int, pair: tuple[IPAddress, IPAddress]
) -> None:
    src, dst = pair
    signed = sign(packet, key=key, seq=seq, src=src, dst=dst)
    if hmac.new(key, b"", hashlib.sha256).digest() == hmac.new(other, b"", hashlib.sha256).digest():
        return  # the same key (HMAC pads short keys with zeros: trailing NULs do not count)
    with pytest.raises(DecodeError):
        verify(signed, key=other, src=src, dst=dst)


@given(packets, seqs, pairs, pairs)
def test_other_addresses_are_refused(
    packet: bytes, seq: int, pair: tuple[IPAddress, IPAddress], other: tuple[IPAddress, IPAddress]
) -> None:
    signed = sign(packet, key=KEY, seq=seq, src=pair[0], dst=pair[1])
    if other == pair:
        return
    with pytest.raises(DecodeError) as err:
        verify(signed, key=KEY, src=other[0], dst=other[1])
    assert err.value.reason == "auth"


def test_reflection_is_refused() -> None:
    peer = IPv4Address("192.0.2.2")
    signed = sign(b"advert", key=KEY, seq=1, src=S4, dst=peer)
    with pytest.raises(DecodeError):
        verify(signed, key=KEY, src=peer, dst=S4)


def test_unsigned_packet_is_refused() -> None:
    packet = encode(Advert(3, 1, 100, 100, (IPv6Address("2001:db8::1"),)), src=S6, dst=MCAST_V6)
    with pytest.raises(DecodeError) as err:
        verify(packet + bytes(TRAILER_LEN), key=KEY, src=S6, dst=MCAST_V6)
    assert err.value.reason == "auth"
    with pytest.raises(DecodeError):
        verify(packet, key=KEY, src=S6, dst=MCAST_V6)


@given(st.binary(max_size=200), pairs)
def test_verify_arbitrary_bytes(data: bytes, pair: tuple[IPAddress, IPAddress]) -> None:
    with pytest.raises(DecodeError) as err:
        verify(data, key=KEY, src=pair[0], dst=pair[1])
    assert err.value.reason == "auth"


def test_verify_mixed_families_is_decode_error() -> None:
    signed = sign(b"x", key=KEY, seq=1, src=S4, dst=MCAST_V4)
    with pytest.raises(DecodeError):
        verify(signed, key=KEY, src=S4, dst=MCAST_V6)


@pytest.mark.parametrize(
    ("packet", "key", "seq", "src", "dst"),
    [
        (b"", KEY, 1, S4, MCAST_V4),
        (b"x", KEY[:31], 1, S4, MCAST_V4),
        (b"x", KEY, -1, S4, MCAST_V4),
        (b"x", KEY, 2**64, S4, MCAST_V4),
        (b"x", KEY, 1, S4, MCAST_V6),
    ],
)
def test_sign_refuses_bad_input(
    packet: bytes, key: bytes, seq: int, src: IPAddress, dst: IPAddress
) -> None:
    with pytest.raises(ValueError):
        sign(packet, key=key, seq=seq, src=src, dst=dst)


# --- ReplayGuard -----------------------------------------------------------------------


def test_replay_guard_basics() -> None:
    guard = ReplayGuard()
    a, b = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")
    assert guard.accept(a, 10)
    assert not guard.accept(a, 10)  # the same advert again
    assert not guard.accept(a, 9)
    assert guard.accept(b, 5)  # sources are independent
    assert guard.accept(a, 11)
    assert guard.highest(a) == 11
    assert guard.highest(IPv6Address("fe80::1")) is None
    guard.forget(a)
    assert guard.accept(a, 1)


sources = st.sampled_from(
    [IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), IPv6Address("fe80::1")]
)


@given(st.lists(st.tuples(sources, st.integers(0, 20)), max_size=60))
def test_replay_guard_against_model(events: list[tuple[IPAddress, int]]) -> None:
    guard = ReplayGuard()
    seen: dict[IPAddress, list[int]] = {}
    for src, seq in events:
        expected = all(seq > earlier for earlier in seen.get(src, []))
        assert guard.accept(src, seq) is expected
        seen.setdefault(src, []).append(seq)
    # Accepted sequence numbers per source form a strictly increasing series.
    for src, series in seen.items():
        if series:
            assert guard.highest(src) == max(series)


# --- load_key --------------------------------------------------------------------------


def test_load_key_hex() -> None:
    hex_key = "00112233445566778899aabbccddeeff" * 2
    assert load_key(hex_key) == bytes.fromhex(hex_key)
    assert load_key(hex_key.upper() + "\n") == bytes.fromhex(hex_key)
    assert load_key(("  " + hex_key + "\r\n").encode()) == bytes.fromhex(hex_key)
    assert len(load_key("ab" * 48)) == 48


def test_load_key_raw() -> None:
    raw = bytes(range(200, 232))
    assert load_key(raw) == raw
    phrase = "correct horse battery staple, really long"
    assert load_key(phrase) == phrase.encode()
    assert load_key(phrase + "\n") == (phrase + "\n").encode()  # raw keys are taken as is


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   \n",
        "a" * 63,  # all hex, too short: never taken as a raw key
        "a" * 65,  # odd number of hex digits
        "deadbeef",
        b"short raw key",
        "x" * 31,
    ],
)
def test_load_key_refuses(content: str | bytes) -> None:
    with pytest.raises(ValueError):
        load_key(content)


@given(st.binary(min_size=32, max_size=100))
def test_load_key_raw_or_refused(raw: bytes) -> None:
    try:
        key = load_key(raw)
    except ValueError:
        # only all-hex content of a bad length, or whitespace only, is refused at this size
        stripped = raw.strip()
        assert not stripped or all(chr(c) in "0123456789abcdefABCDEF" for c in stripped)
        return
    assert len(key) >= 32
