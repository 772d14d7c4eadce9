"""Unit tests of the VRRP advert codec (hadirector.vrrp.codec).

Known vectors are written field by field from the layouts of RFC 5798 §5.1 (v3) and
RFC 3768 §5.1 (v2), with checksums computed by hand (arithmetic in the comments) and by the
tests' own checksum (tests/checksum.py). Properties (hypothesis): round trips for
every version/family/checksum mode, and that decode answers any bytes with an Advert or
DecodeError only, and refuses every single-bit corruption, truncation and extension of a
valid packet.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hadirector.errors import DecodeError
from hadirector.vrrp.codec import (
    MCAST_V4,
    MCAST_V6,
    Advert,
    IPAddress,
    Ipv4Packet,
    Ipv4Parser,
    decode,
    encode,
    internet_checksum,
    parse_ipv4,
    pseudo_header,
    v2_password,
)
from tests.checksum import internet_checksum as ref_checksum
from tests.checksum import ones_complement_sum as ones_sum
from tests.checksum import pseudo_header as ref_pseudo

# --- the tests' own checksum (tests/checksum.py), independent of the codec's ------------


def set_checksum(packet: bytes, prefix: bytes = b"") -> bytes:
    """``packet`` with its checksum field (bytes 6-7) made right for ``prefix + packet``."""
    zeroed = packet[:6] + b"\x00\x00" + packet[8:]
    return zeroed[:6] + ref_checksum(prefix + zeroed).to_bytes(2, "big") + zeroed[8:]


S4 = IPv4Address("192.0.2.1")
S6 = IPv6Address("fe80::1")

# --- known vectors ---------------------------------------------------------------------


def test_v2_vector_field_by_field() -> None:
    advert = Advert(2, vrid=1, priority=100, interval_cs=100, addresses=(ip_address("192.0.2.1"),))
    expected = bytes(
        [
            0x21,  # version 2, type 1
            0x01,  # VRID 1
            0x64,  # priority 100
            0x01,  # count 1
            0x00,  # auth type 0
            0x01,  # adver int 1 s
            0xB8,  # checksum, by hand: 0x2101 + 0x6401 + 0x0001 + 0xc000 = 0x14503 -> 0x4504;
            0xFA,  #   + 0x0201 = 0x4705; ~0x4705 = 0xb8fa
            0xC0, 0x00, 0x02, 0x01,  # 192.0.2.1
            0, 0, 0, 0, 0, 0, 0, 0,  # authentication data (none)
        ]
    )  # fmt: skip
    assert ref_checksum(expected) == 0
    assert encode(advert, src=S4, dst=MCAST_V4) == expected
    assert decode(expected, src=S4, dst=MCAST_V4) == advert


def test_v2_simple_text_vector() -> None:
    advert = Advert(
        2, 7, 150, 300, (ip_address("192.0.2.10"), ip_address("192.0.2.11")), 1, b"secret\0\0"
    )
    body = (
        bytes([0x21, 7, 150, 2, 1, 3, 0, 0])
        + bytes([192, 0, 2, 10, 192, 0, 2, 11])
        + b"secret\x00\x00"
    )
    expected = set_checksum(body)
    wire = encode(advert, src=S4, dst=MCAST_V4)
    assert wire == expected
    assert decode(wire, src=S4, dst=MCAST_V4) == advert
    # The v2 checksum has no pseudo-header: the destination does not enter it.
    assert decode(wire, src=S4, dst=IPv4Address("192.0.2.2")) == advert


def test_v3_ipv4_vector_with_pseudo_header() -> None:
    advert = Advert(
        3, vrid=51, priority=100, interval_cs=100, addresses=(ip_address("192.0.2.10"),)
    )
    expected = bytes(
        [
            0x31,  # version 3, type 1
            0x33,  # VRID 51
            0x64,  # priority 100
            0x01,  # count 1
            0x00,  # rsvd 0 | max adver int high 4 bits
            0x64,  # max adver int low 8 bits: 100 cs
            # checksum, by hand: pseudo-header c000 0201 e000 0012 0070 000c sums to 0xa290;
            # + 0x3133 + 0x6401 + 0x0064 + 0xc000 + 0x020a = 0xfa33; ~0xfa33 = 0x05cc
            0x05, 0xCC,
            0xC0, 0x00, 0x02, 0x0A,  # 192.0.2.10
        ]
    )  # fmt: skip
    assert ref_checksum(ref_pseudo(S4, MCAST_V4, 12) + expected) == 0
    assert encode(advert, src=S4, dst=MCAST_V4) == expected
    assert decode(expected, src=S4, dst=MCAST_V4) == advert


def test_v3_ipv4_vector_without_pseudo_header() -> None:
    advert = Advert(
        3, vrid=51, priority=100, interval_cs=100, addresses=(ip_address("192.0.2.10"),)
    )
    # by hand: 0x3133 + 0x6401 + 0x0064 + 0xc000 + 0x020a = 0x157a2 -> 0x57a3; ~ = 0xa85c
    expected = bytes([0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0xA8, 0x5C, 0xC0, 0x00, 0x02, 0x0A])
    assert ref_checksum(expected) == 0
    assert encode(advert, src=S4, dst=MCAST_V4, v3_ipv4_pseudo_header=False) == expected
    assert decode(expected, src=S4, dst=MCAST_V4, v3_ipv4_pseudo_header=False) == advert


def test_v3_ipv6_vector() -> None:
    vips = (ip_address("fe80::1:2"), ip_address("2001:db8::10"))
    advert = Advert(3, vrid=200, priority=255, interval_cs=4095, addresses=vips)
    body = (
        bytes([0x31, 200, 255, 2])
        + bytes([0x0F, 0xFF])  # rsvd 0, max adver int 4095 cs
        + b"\x00\x00"
        + vips[0].packed
        + vips[1].packed
    )
    expected = set_checksum(body, ref_pseudo(S6, MCAST_V6, len(body)))
    wire = encode(advert, src=S6, dst=MCAST_V6)
    assert wire == expected
    assert decode(wire, src=S6, dst=MCAST_V6) == advert
    # v3 over IPv6 has no mode without the pseudo-header: the flag does not apply.
    assert encode(advert, src=S6, dst=MCAST_V6, v3_ipv4_pseudo_header=False) == expected


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to 0xddf2 after carries.
    data = bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])
    assert internet_checksum(data) == ~0xDDF2 & 0xFFFF
    # An odd length is padded with a zero byte.
    assert internet_checksum(b"\x01") == ~0x0100 & 0xFFFF


@given(st.binary(max_size=300))
def test_internet_checksum_matches_reference(data: bytes) -> None:
    assert internet_checksum(data) == ref_checksum(data)


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 0xFFFF))
def test_pseudo_header_ipv4(src: IPv4Address, dst: IPv4Address, length: int) -> None:
    assert pseudo_header(src, dst, 112, length) == ref_pseudo(src, dst, length)


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 0xFFFF))
def test_pseudo_header_ipv6(src: IPv6Address, dst: IPv6Address, length: int) -> None:
    assert pseudo_header(src, dst, 112, length) == ref_pseudo(src, dst, length)


# --- strategies ------------------------------------------------------------------------

Family = Literal[4, 6]
FAMILIES: tuple[Family, ...] = (4, 6)
vrids = st.integers(1, 255)
priorities = st.integers(0, 255)


@st.composite
def v2_cases(draw: st.DrawFn) -> tuple[Advert, IPAddress, IPAddress, bool]:
    auth_type = draw(st.sampled_from([0, 1]))
    auth_data = draw(st.binary(min_size=8, max_size=8)) if auth_type == 1 else b""
    advert = Advert(
        2,
        draw(vrids),
        draw(priorities),
        draw(st.integers(1, 255)) * 100,
        tuple(draw(st.lists(st.ip_addresses(v=4), min_size=1, max_size=20))),
        auth_type,
        auth_data,
    )
    dst = draw(st.one_of(st.just(MCAST_V4), st.ip_addresses(v=4)))
    return advert, draw(st.ip_addresses(v=4)), dst, draw(st.booleans())


@st.composite
def v3_cases(
    draw: st.DrawFn, family: Family | None = None
) -> tuple[Advert, IPAddress, IPAddress, bool]:
    v: Family = family if family is not None else draw(st.sampled_from(FAMILIES))
    mcast = MCAST_V4 if v == 4 else MCAST_V6
    advert = Advert(
        3,
        draw(vrids),
        draw(priorities),
        draw(st.integers(1, 4095)),
        tuple(draw(st.lists(st.ip_addresses(v=v), min_size=1, max_size=20))),
    )
    dst = draw(st.one_of(st.just(mcast), st.ip_addresses(v=v)))
    return advert, draw(st.ip_addresses(v=v)), dst, draw(st.booleans())


any_case = st.one_of(v2_cases(), v3_cases())


# --- round trips -----------------------------------------------------------------------


@given(any_case)
def test_round_trip(case: tuple[Advert, IPAddress, IPAddress, bool]) -> None:
    advert, src, dst, pseudo = case
    wire = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    assert decode(wire, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo) == advert
    # Layout: header + addresses (+ 8 bytes of v2 authentication data), count in byte 3.
    alen = 4 if src.version == 4 else 16
    assert len(wire) == 8 + alen * len(advert.addresses) + (8 if advert.version == 2 else 0)
    assert wire[0] == advert.version << 4 | 1
    assert wire[1:4] == bytes([advert.vrid, advert.priority, len(advert.addresses)])
    # The checksum verifies with the test's own arithmetic.
    prefix = b""
    if advert.version == 3 and (src.version == 6 or pseudo):
        prefix = ref_pseudo(src, dst, len(wire))
    assert ref_checksum(prefix + wire) == 0


@given(v3_cases(family=4))
def test_checksum_modes_refuse_each_other(case: tuple[Advert, IPAddress, IPAddress, bool]) -> None:
    advert, src, dst, _ = case
    length = 8 + 4 * len(advert.addresses)
    # If the pseudo-header sums to zero (mod 0xffff) both modes give the same checksum:
    # a one-in-65535 coincidence of addresses the property cannot cover.
    assume(ones_sum(ref_pseudo(src, dst, length)) not in (0, 0xFFFF))
    with_ph = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=True)
    without_ph = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=False)
    assert with_ph != without_ph
    with pytest.raises(DecodeError) as err:
        decode(with_ph, src=src, dst=dst, v3_ipv4_pseudo_header=False)
    assert err.value.reason == "checksum"
    with pytest.raises(DecodeError) as err:
        decode(without_ph, src=src, dst=dst, v3_ipv4_pseudo_header=True)
    assert err.value.reason == "checksum"


def test_v3_checksum_binds_the_destination() -> None:
    advert = Advert(3, 1, 100, 100, (ip_address("192.0.2.10"),))
    wire = encode(advert, src=S4, dst=MCAST_V4)
    with pytest.raises(DecodeError) as err:
        decode(wire, src=S4, dst=IPv4Address("192.0.2.2"))
    assert err.value.reason == "checksum"
    wire6 = encode(Advert(3, 1, 100, 100, (ip_address("2001:db8::1"),)), src=S6, dst=MCAST_V6)
    with pytest.raises(DecodeError) as err:
        decode(wire6, src=IPv6Address("fe80::2"), dst=MCAST_V6)
    assert err.value.reason == "checksum"


# --- decode: only DecodeError, whatever the bytes --------------------------------------

addresses_any = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


def decode_or_reject(data: bytes, src: IPAddress, dst: IPAddress, pseudo: bool) -> Advert | None:
    try:
        return decode(data, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    except DecodeError as exc:
        assert exc.reason
        return None


@given(st.binary(max_size=600), addresses_any, addresses_any, st.booleans())
@example(b"", MCAST_V4, MCAST_V4, True)
@example(b"\x31\x01\x64\x00\x00\x64\x00\x00", S4, MCAST_V4, True)
def test_decode_arbitrary_bytes(data: bytes, src: IPAddress, dst: IPAddress, pseudo: bool) -> None:
    decode_or_reject(data, src, dst, pseudo)


@st.composite
def checksum_fixed_garbage(draw: st.DrawFn) -> tuple[bytes, IPAddress, IPAddress, bool]:
    """Random header fields and body with a correct checksum, to reach the checks that come
    after it (auth type, interval, reserved bits)."""
    v = draw(st.sampled_from(FAMILIES))
    src = draw(st.ip_addresses(v=v))
    dst = draw(st.ip_addresses(v=v))
    version = draw(st.sampled_from([2, 3, 2, 3, 0, 1, 4, 15]))
    vtype = draw(st.sampled_from([1, 1, 1, 0, 2, 15]))
    count = draw(st.integers(0, 6))
    alen = 4 if v == 4 else 16
    body_len = count * alen + (8 if version == 2 else 0) + draw(st.sampled_from([0, 0, 0, 1, 4]))
    packet = (
        bytes([version << 4 | vtype, draw(st.integers(0, 255)), draw(st.integers(0, 255)), count])
        + draw(st.binary(min_size=2, max_size=2))
        + b"\x00\x00"
        + draw(st.binary(min_size=body_len, max_size=body_len))
    )
    pseudo = draw(st.booleans())
    prefix = b""
    if version == 3 and (v == 6 or pseudo):
        prefix = ref_pseudo(src, dst, len(packet))
    return set_checksum(packet, prefix), src, dst, pseudo


@given(checksum_fixed_garbage())
def test_decode_checksum_fixed_garbage(case: tuple[bytes, IPAddress, IPAddress, bool]) -> None:
    data, src, dst, pseudo = case
    advert = decode_or_reject(data, src, dst, pseudo)
    if advert is None:
        return
    # Whatever decode accepts is what the bytes say.
    assert advert.version == data[0] >> 4
    assert (advert.vrid, advert.priority, len(advert.addresses)) == (data[1], data[2], data[3])
    assert all(a.version == src.version for a in advert.addresses)
    if advert.version == 3:
        assert advert.interval_cs == (data[4] & 0x0F) << 8 | data[5]
    else:
        assert advert.interval_cs == data[5] * 100
        assert advert.auth_type == data[4]
    # and it re-encodes to a packet that decodes to the same advert
    again = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    assert decode(again, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo) == advert


@given(any_case, st.data())
def test_every_single_bit_flip_is_refused(
    case: tuple[Advert, IPAddress, IPAddress, bool], data: st.DataObject
) -> None:
    advert, src, dst, pseudo = case
    wire = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    flipped = bytearray(wire)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(DecodeError):
        decode(bytes(flipped), src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)


@given(any_case, st.data())
def test_truncation_is_refused(
    case: tuple[Advert, IPAddress, IPAddress, bool], data: st.DataObject
) -> None:
    advert, src, dst, pseudo = case
    wire = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(DecodeError) as err:
        decode(wire[:cut], src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    assert err.value.reason in ("short", "length", "count")


@given(any_case, st.binary(min_size=1, max_size=64))
def test_extension_is_refused(
    case: tuple[Advert, IPAddress, IPAddress, bool], extra: bytes
) -> None:
    advert, src, dst, pseudo = case
    wire = encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    with pytest.raises(DecodeError) as err:
        decode(wire + extra, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    assert err.value.reason == "length"


# --- decode: each rejection, with a checksum that is otherwise right -------------------

V3_OK = bytes([0x31, 1, 100, 1, 0x00, 100, 0, 0, 192, 0, 2, 10])
V2_OK = bytes([0x21, 1, 100, 1, 0, 1, 0, 0, 192, 0, 2, 10]) + bytes(8)


def v3_wire(raw: bytes) -> bytes:
    return set_checksum(raw, ref_pseudo(S4, MCAST_V4, len(raw)))


def reject_reason(data: bytes, src: IPAddress = S4, dst: IPAddress = MCAST_V4) -> str:
    with pytest.raises(DecodeError) as err:
        decode(data, src=src, dst=dst)
    return err.value.reason


def test_valid_baselines_decode() -> None:
    assert decode(v3_wire(V3_OK), src=S4, dst=MCAST_V4).interval_cs == 100
    assert decode(set_checksum(V2_OK), src=S4, dst=MCAST_V4).interval_cs == 100


def test_rejects_short() -> None:
    assert reject_reason(b"") == "short"
    assert reject_reason(V3_OK[:7]) == "short"


@pytest.mark.parametrize("version", [0, 1, 4, 15])
def test_rejects_version(version: int) -> None:
    raw = bytes([version << 4 | 1]) + V3_OK[1:]
    assert reject_reason(v3_wire(raw)) == "version"


@pytest.mark.parametrize("vtype", [0, 2, 15])
def test_rejects_type(vtype: int) -> None:
    assert reject_reason(v3_wire(bytes([0x30 | vtype]) + V3_OK[1:])) == "type"
    assert reject_reason(set_checksum(bytes([0x20 | vtype]) + V2_OK[1:])) == "type"


def test_rejects_vrid_zero() -> None:
    assert reject_reason(v3_wire(V3_OK[:1] + b"\x00" + V3_OK[2:])) == "vrid"


def test_rejects_count_zero() -> None:
    assert reject_reason(v3_wire(V3_OK[:3] + b"\x00" + V3_OK[4:8])) == "count"


def test_rejects_count_not_matching_length() -> None:
    assert reject_reason(v3_wire(V3_OK[:3] + b"\x02" + V3_OK[4:])) == "length"
    assert reject_reason(set_checksum(V2_OK[:-8])) == "length"  # v2 without auth data


def test_rejects_bad_checksum() -> None:
    good = v3_wire(V3_OK)
    bad = good[:6] + bytes([good[6] ^ 0x01, good[7]]) + good[8:]
    assert reject_reason(bad) == "checksum"


def test_rejects_family_mismatch() -> None:
    wire = v3_wire(V3_OK)
    assert reject_reason(wire, src=S4, dst=MCAST_V6) == "family"
    assert reject_reason(wire, src=S6, dst=MCAST_V4) == "family"
    # VRRPv2 exists over IPv4 only.
    v2_from_v6 = set_checksum(bytes([0x21, 1, 100, 1, 0, 1, 0, 0]) + bytes(16) + bytes(8))
    assert reject_reason(v2_from_v6, src=S6, dst=MCAST_V6) == "family"
    # IPv6 addresses in a packet from an IPv4 source do not fit its count.
    v6_body = bytes([0x31, 1, 100, 1, 0, 100, 0, 0]) + IPv6Address("2001:db8::1").packed
    assert reject_reason(v3_wire(v6_body)) == "length"


@pytest.mark.parametrize("auth_type", [2, 3, 255])
def test_rejects_v2_auth_type(auth_type: int) -> None:
    raw = V2_OK[:4] + bytes([auth_type]) + V2_OK[5:]
    assert reject_reason(set_checksum(raw)) == "auth"


def test_rejects_interval_zero() -> None:
    assert reject_reason(v3_wire(V3_OK[:4] + b"\x00\x00" + V3_OK[6:])) == "interval"
    # the reserved bits do not make an interval
    assert reject_reason(v3_wire(V3_OK[:4] + b"\xf0\x00" + V3_OK[6:])) == "interval"
    assert reject_reason(set_checksum(V2_OK[:5] + b"\x00" + V2_OK[6:])) == "interval"


def test_v3_reserved_bits_are_ignored() -> None:
    advert = decode(v3_wire(V3_OK[:4] + b"\xa0\x64" + V3_OK[6:]), src=S4, dst=MCAST_V4)
    assert advert == Advert(3, 1, 100, 100, (IPv4Address("192.0.2.10"),))


def test_v2_auth_data_ignored_for_type_none() -> None:
    raw = V2_OK[:12] + b"leftover"
    advert = decode(set_checksum(raw), src=S4, dst=MCAST_V4)
    assert (advert.auth_type, advert.auth_data) == (0, b"")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    wire = v3_wire(V3_OK)
    expected = decode(wire, src=S4, dst=MCAST_V4)
    assert decode(bytearray(wire), src=S4, dst=MCAST_V4) == expected  # type: ignore[arg-type]
    assert decode(memoryview(wire), src=S4, dst=MCAST_V4) == expected  # type: ignore[arg-type]


# --- encode: our own bugs are ValueError -----------------------------------------------

V4_VIP = (IPv4Address("192.0.2.10"),)


@pytest.mark.parametrize(
    ("advert", "src", "dst"),
    [
        (Advert(1, 1, 100, 100, V4_VIP), S4, MCAST_V4),
        (Advert(3, 0, 100, 100, V4_VIP), S4, MCAST_V4),
        (Advert(3, 256, 100, 100, V4_VIP), S4, MCAST_V4),
        (Advert(3, 1, -1, 100, V4_VIP), S4, MCAST_V4),
        (Advert(3, 1, 256, 100, V4_VIP), S4, MCAST_V4),
        (Advert(3, 1, 100, 0, V4_VIP), S4, MCAST_V4),
        (Advert(3, 1, 100, 4096, V4_VIP), S4, MCAST_V4),
        (Advert(3, 1, 100, 100, ()), S4, MCAST_V4),
        (Advert(3, 1, 100, 100, V4_VIP * 256), S4, MCAST_V4),
        (Advert(3, 1, 100, 100, V4_VIP), S4, MCAST_V6),
        (Advert(3, 1, 100, 100, V4_VIP), S6, MCAST_V6),
        (Advert(3, 1, 100, 100, (*V4_VIP, IPv6Address("2001:db8::1"))), S4, MCAST_V4),
        (Advert(3, 1, 100, 100, V4_VIP, auth_type=1, auth_data=b"12345678"), S4, MCAST_V4),
        (Advert(2, 1, 100, 150, V4_VIP), S4, MCAST_V4),
        (Advert(2, 1, 100, 0, V4_VIP), S4, MCAST_V4),
        (Advert(2, 1, 100, 25600, V4_VIP), S4, MCAST_V4),
        (Advert(2, 1, 100, 100, (IPv6Address("2001:db8::1"),)), S6, MCAST_V6),
        (Advert(2, 1, 100, 100, V4_VIP, auth_type=1, auth_data=b"short"), S4, MCAST_V4),
        (Advert(2, 1, 100, 100, V4_VIP, auth_type=0, auth_data=b"12345678"), S4, MCAST_V4),
        (Advert(2, 1, 100, 100, V4_VIP, auth_type=2, auth_data=b"12345678"), S4, MCAST_V4),
    ],
)
def test_encode_refuses_out_of_range(advert: Advert, src: IPAddress, dst: IPAddress) -> None:
    with pytest.raises(ValueError):
        encode(advert, src=src, dst=dst)


def test_encode_limits_accepted() -> None:
    for advert in (
        Advert(3, 255, 255, 4095, V4_VIP * 255),
        Advert(3, 1, 0, 1, V4_VIP),
        Advert(2, 255, 0, 25500, V4_VIP * 255),
    ):
        assert decode(encode(advert, src=S4, dst=MCAST_V4), src=S4, dst=MCAST_V4) == advert


def test_v2_password() -> None:
    assert v2_password("secret") == b"secret\x00\x00"
    assert v2_password(b"12345678") == b"12345678"
    for bad in ("", "123456789"):
        with pytest.raises(ValueError):
            v2_password(bad)


# --- parse_ipv4 ------------------------------------------------------------------------


def ipv4_datagram(
    payload: bytes,
    *,
    src: IPv4Address = S4,
    dst: IPv4Address = MCAST_V4,
    ttl: int = 255,
    protocol: int = 112,
    options: bytes = b"",
    flags_fragment: int = 0,
) -> bytes:
    ihl = 5 + len(options) // 4
    header = (
        bytes([0x40 | ihl, 0xC0])
        + (ihl * 4 + len(payload)).to_bytes(2, "big")
        + b"\x12\x34"  # identification
        + flags_fragment.to_bytes(2, "big")
        + bytes([ttl, protocol, 0, 0])
        + src.packed
        + dst.packed
        + options
    )
    header = header[:10] + ref_checksum(header).to_bytes(2, "big") + header[12:]
    return header + payload


def test_parse_ipv4_fields() -> None:
    payload = v3_wire(V3_OK)
    packet = parse_ipv4(ipv4_datagram(payload, ttl=254))
    assert packet == Ipv4Packet(S4, MCAST_V4, 254, 112, payload)
    assert decode(packet.payload, src=packet.src, dst=packet.dst).vrid == 1


def test_parse_ipv4_with_options_and_padding() -> None:
    payload = b"abcdefgh"
    datagram = ipv4_datagram(payload, options=bytes([0x94, 0x04, 0, 0]))  # router alert
    assert parse_ipv4(datagram).payload == payload
    # bytes past the total length (link-layer padding) are not payload
    assert parse_ipv4(datagram + bytes(10)).payload == payload


def test_parse_ipv4_rejections() -> None:
    good = ipv4_datagram(b"payload!")

    def reason(data: bytes) -> str:
        with pytest.raises(DecodeError) as err:
            parse_ipv4(data)
        return err.value.reason

    assert reason(good[:19]) == "short"
    assert reason(b"\x60" + good[1:]) == "version"
    # IHL 4, with a checksum that is right for it
    bad_ihl = bytearray(good)
    bad_ihl[0] = 0x44
    bad_ihl[10:12] = b"\x00\x00"
    bad_ihl[10:12] = ref_checksum(bytes(bad_ihl[:20])).to_bytes(2, "big")
    assert reason(bytes(bad_ihl)) == "length"
    assert reason(good[:-1]) == "short"  # total length beyond the buffer
    corrupt = bytearray(good)
    corrupt[8] ^= 0x01  # TTL, covered by the header checksum
    assert reason(bytes(corrupt)) == "checksum"
    assert reason(ipv4_datagram(b"x" * 8, flags_fragment=0x2000)) == "fragment"  # MF
    assert reason(ipv4_datagram(b"x" * 8, flags_fragment=0x0001)) == "fragment"  # offset
    # DF alone is fine
    assert parse_ipv4(ipv4_datagram(b"x" * 8, flags_fragment=0x4000)).payload == b"x" * 8
    # header length beyond the buffer
    assert reason(ipv4_datagram(b"", options=bytes(40))[:40]) == "short"


def _with_identification(datagram: bytes, ident: int) -> bytes:
    """``datagram`` with another IPv4 identification and its header checksum redone."""
    header_len = (datagram[0] & 0x0F) * 4
    header = bytearray(datagram[:header_len])
    header[4:6] = ident.to_bytes(2, "big")
    header[10:12] = b"\x00\x00"
    header[10:12] = ref_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + datagram[header_len:]


def test_ipv4_parser_remembers_a_peers_datagram() -> None:
    parser = Ipv4Parser(limit=4)
    first = ipv4_datagram(v3_wire(V3_OK))
    packet = parser.parse(first)
    assert packet == parse_ipv4(first)
    # The next advert of the same peer: only the identification and checksum differ.
    assert parser.parse(_with_identification(first, 0x4321)) is packet
    # Any other byte is another datagram, parsed in full.
    other_ttl = ipv4_datagram(v3_wire(V3_OK), ttl=254)
    assert parser.parse(other_ttl).ttl == 254
    with pytest.raises(DecodeError) as err:
        parser.parse(ipv4_datagram(b"x" * 8, flags_fragment=0x2000))
    assert err.value.reason == "fragment"
    # IP options: never remembered (parsed every time).
    with_options = ipv4_datagram(b"abcdefgh", options=bytes([0x94, 0x04, 0, 0]))
    assert parser.parse(with_options) is not parser.parse(with_options)
    # Bounded: full, it forgets and starts again.
    for ttl in range(200, 210):
        assert parser.parse(ipv4_datagram(b"abcdefgh", ttl=ttl)).ttl == ttl
    assert len(parser._known) <= 4


@given(
    st.lists(
        st.tuples(
            st.binary(min_size=0, max_size=24),
            st.integers(0, 255),
            st.integers(0, 0xFFFF),
            st.sampled_from([0, 0x4000, 0x2000, 0x0001]),
            st.sampled_from([b"", bytes([0x94, 0x04, 0, 0])]),
            st.integers(0, 3),
        ),
        max_size=12,
    )
)
def test_ipv4_parser_answers_as_parse_ipv4(
    cases: list[tuple[bytes, int, int, int, bytes, int]],
) -> None:
    """Datagrams as the kernel delivers them (header checksums right), several alike: the
    parser answers what parse_ipv4 does, errors included."""
    parser = Ipv4Parser(limit=3)
    for payload, ttl, ident, flags_fragment, options, padding in cases:
        datagram = _with_identification(
            ipv4_datagram(payload, ttl=ttl, flags_fragment=flags_fragment, options=options),
            ident,
        ) + bytes(padding)
        try:
            expected = parse_ipv4(datagram)
        except DecodeError as exc:
            with pytest.raises(DecodeError) as err:
                parser.parse(datagram)
            assert err.value.reason == exc.reason
            continue
        assert parser.parse(datagram) == expected


@given(st.binary(max_size=120))
@example(bytes([0x4F]) + bytes(19))
def test_parse_ipv4_arbitrary_bytes(data: bytes) -> None:
    try:
        packet = parse_ipv4(data)
    except DecodeError:
        return
    assert packet.payload == data[(data[0] & 0x0F) * 4 : int.from_bytes(data[2:4], "big")]


@given(
    st.binary(max_size=64),
    st.ip_addresses(v=4),
    st.ip_addresses(v=4),
    st.integers(0, 255),
    st.integers(0, 255),
)
def test_parse_ipv4_round_trip(
    payload: bytes, src: IPv4Address, dst: IPv4Address, ttl: int, protocol: int
) -> None:
    packet = parse_ipv4(ipv4_datagram(payload, src=src, dst=dst, ttl=ttl, protocol=protocol))
    assert packet == Ipv4Packet(src, dst, ttl, protocol, payload)


# --- adverts captured from a real peer -------------------------------------------------
# Sent by keepalived 2.2.7 (Debian 12) in network namespaces, captured with tcpdump on the
# other end of a veth pair: whole IP datagrams. Interoperability in bytes.

KEEPALIVED_V2_PASS = bytes.fromhex(
    "45c0002800010000ff701891c0000201e00000122135960101014917c00002647365637265740000"
)
KEEPALIVED_V3_MCAST = bytes.fromhex(
    "45c0002400010000ff701895c0000201e00000123133640200324339c0000264c0000265"
)
KEEPALIVED_V3_UNICAST = bytes.fromhex(
    "45c0002000010000ff7036a9c0000201c000020231366401003223b1c0000264"
)
# with `old_unicast_checksum`: the pseudo-header names 224.0.0.18, not the unicast peer
KEEPALIVED_V3_OLD_UNICAST = bytes.fromhex(
    "45c0002000010000ff7036a9c0000201c000020231376401003205a0c0000264"
)
KEEPALIVED_V3_IPV6 = bytes.fromhex(
    "6c0c3960001870ff"
    "fe80000000000000e43a36fffe30333c"
    "ff020000000000000000000000000012"
    "313864010032f115"
    "20010db8000000000000000000000100"
)
VIP = IPv4Address("192.0.2.100")


def test_keepalived_v2_simple_text() -> None:
    packet = parse_ipv4(KEEPALIVED_V2_PASS)
    assert (packet.src, packet.dst, packet.ttl, packet.protocol) == (S4, MCAST_V4, 255, 112)
    advert = decode(packet.payload, src=packet.src, dst=packet.dst)
    assert advert == Advert(2, 53, 150, 100, (VIP,), 1, b"secret\x00\x00")
    assert advert.auth_data == v2_password("secret")
    assert encode(advert, src=packet.src, dst=packet.dst) == packet.payload


def test_keepalived_v3_multicast() -> None:
    packet = parse_ipv4(KEEPALIVED_V3_MCAST)
    advert = decode(packet.payload, src=packet.src, dst=packet.dst)
    assert advert == Advert(3, 51, 100, 50, (VIP, IPv4Address("192.0.2.101")))
    assert encode(advert, src=packet.src, dst=packet.dst) == packet.payload
    # keepalived 2.2.7 puts the pseudo-header in v3/IPv4 checksums
    with pytest.raises(DecodeError):
        decode(packet.payload, src=packet.src, dst=packet.dst, v3_ipv4_pseudo_header=False)


def test_keepalived_v3_unicast() -> None:
    packet = parse_ipv4(KEEPALIVED_V3_UNICAST)
    assert packet.dst == IPv4Address("192.0.2.2")
    advert = decode(packet.payload, src=packet.src, dst=packet.dst)
    assert advert == Advert(3, 54, 100, 50, (VIP,))
    assert encode(advert, src=packet.src, dst=packet.dst) == packet.payload


def test_keepalived_v3_old_unicast_checksum() -> None:
    packet = parse_ipv4(KEEPALIVED_V3_OLD_UNICAST)
    with pytest.raises(DecodeError) as err:
        decode(packet.payload, src=packet.src, dst=packet.dst)
    assert err.value.reason == "checksum"
    # `dst` enters only the checksum: naming the group address reads the old form.
    advert = decode(packet.payload, src=packet.src, dst=MCAST_V4)
    assert advert == Advert(3, 55, 100, 50, (VIP,))
    assert encode(advert, src=packet.src, dst=MCAST_V4) == packet.payload


def test_keepalived_v3_ipv6() -> None:
    datagram = KEEPALIVED_V3_IPV6
    assert datagram[0] >> 4 == 6 and datagram[6] == 112 and datagram[7] == 255
    src, dst = IPv6Address(datagram[8:24]), IPv6Address(datagram[24:40])
    payload = datagram[40:]
    assert len(payload) == int.from_bytes(datagram[4:6], "big")
    advert = decode(payload, src=src, dst=dst)
    assert advert == Advert(3, 56, 100, 50, (IPv6Address("2001:db8::100"),))
    assert encode(advert, src=src, dst=dst) == payload
