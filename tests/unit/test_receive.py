"""Unit tests of the receive checks (hadirector.vrrp.receive), one per rejection reason,
each citing the rule it enforces; hypothesis checks that no byte string makes ``check``
raise, and that what it accepts is a decodable advert of our VRID."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.vrrp import auth, codec, receive
from hadirector.vrrp.codec import MCAST_V4, MCAST_V6, Advert, IPAddress
from hadirector.vrrp.receive import Accepted, NotOurs, ReceivePolicy, Rejected, check

PEER = IPv4Address("192.0.2.2")
STRANGER = IPv4Address("192.0.2.66")
US = IPv4Address("192.0.2.1")
VIP = IPv4Address("192.0.2.100")
PEER6 = IPv6Address("fe80::2")
VIP6 = IPv6Address("2001:db8::100")
KEY = bytes(range(32))
OLD_KEY = bytes(range(1, 33))

V3 = ReceivePolicy(vrid=51, version=3, advert_interval_cs=100, max_adopted_interval_cs=400)
V2 = ReceivePolicy(
    vrid=51,
    version=2,
    advert_interval_cs=100,
    max_adopted_interval_cs=100,
    v2_auth_data=codec.v2_password("secret"),
)


def packet(
    *,
    vrid: int = 51,
    priority: int = 200,
    interval_cs: int = 100,
    version: int = 3,
    src: IPAddress = PEER,
    dst: IPAddress = MCAST_V4,
    auth_type: int = 0,
    auth_data: bytes = b"",
    checksum_dst: IPAddress | None = None,
) -> bytes:
    address = VIP if src.version == 4 else VIP6
    advert = Advert(version, vrid, priority, interval_cs, (address,), auth_type, auth_data)
    return codec.encode(advert, src=src, dst=checksum_dst or dst)


def run(
    data: bytes,
    policy: ReceivePolicy = V3,
    *,
    src: IPAddress = PEER,
    dst: IPAddress = MCAST_V4,
    ttl: int = 255,
    keys: auth.KeyRing | None = None,
    replay: auth.ReplayGuard | None = None,
) -> receive.Result:
    return check(data, src=src, dst=dst, ttl=ttl, policy=policy, keys=keys, replay=replay)


def test_valid_advert_is_accepted() -> None:
    result = run(packet())
    assert result == Accepted(Advert(3, 51, 200, 100, (VIP,)))


def test_valid_ipv6_advert_is_accepted() -> None:
    result = run(packet(src=PEER6, dst=MCAST_V6), src=PEER6, dst=MCAST_V6)
    assert isinstance(result, Accepted) and result.advert.addresses == (VIP6,)


@pytest.mark.parametrize("ttl", [0, 1, 64, 254])
def test_rfc5798_7_1_ttl_must_be_255(ttl: int) -> None:
    # RFC 5798 §7.1: "MUST verify that the IPv4 TTL / IPv6 Hop Limit is 255".
    result = run(packet(), ttl=ttl)
    assert isinstance(result, Rejected) and result.reason == "ttl"
    assert str(ttl) in result.detail


def test_ttl_is_checked_before_anything_else() -> None:
    # Even garbage with a bad TTL is refused for its TTL: the cheapest check comes first.
    assert run(b"\xff", ttl=1) == Rejected("ttl", "ttl/hop limit 1, must be 255")


def test_rfc5798_7_1_version_must_be_the_configured_one() -> None:
    # RFC 5798 §7.1: "MUST verify that the VRRP version field is 3" (2 for a v2 router).
    v2_advert = packet(version=2, auth_type=1, auth_data=codec.v2_password("secret"))
    result = run(v2_advert, V3)
    assert isinstance(result, Rejected) and result.reason == "version"
    result = run(packet(), V2)
    assert isinstance(result, Rejected) and result.reason == "version"


def test_rfc5798_7_1_checksum_must_verify() -> None:
    # RFC 5798 §7.1: "MUST verify that the VRRP checksum is correct".
    data = packet()
    (checksum,) = struct.unpack_from("!H", data, 6)
    bad = data[:6] + struct.pack("!H", checksum ^ 0x0101) + data[8:]
    result = run(bad)
    assert isinstance(result, Rejected) and result.reason == "checksum"


def test_rfc5798_7_1_length_must_match_the_count() -> None:
    # RFC 5798 §7.1: "MUST verify that the received packet contains the complete VRRP
    # packet (including fixed fields, and IPvX address(es))".
    result = run(packet() + b"\0\0\0\0")
    assert isinstance(result, Rejected) and result.reason == "length"
    result = run(packet()[:5])
    assert isinstance(result, Rejected) and result.reason == "short"


def test_rfc5798_7_1_type_must_be_advertisement() -> None:
    # RFC 5798 §5.2.2: type 1 (ADVERTISEMENT) is the only one; others are discarded.
    data = packet()
    result = run(bytes([0x32]) + data[1:])
    assert isinstance(result, Rejected) and result.reason == "type"


def test_rfc5798_7_1_other_vrid_is_not_ours_not_an_error() -> None:
    # RFC 5798 §7.1: "MUST verify that the VRID is configured on the receiving interface
    # and the local router is not the IPvX address owner"; other virtual routers share the
    # segment, so this is counted apart from the rejections.
    assert run(packet(vrid=52)) == NotOurs(52)


def test_accept_from_refuses_other_sources() -> None:
    # Unicast peers (or an explicit list): an advert from anyone else is refused.
    policy = replace(V3, accept_from=frozenset({PEER}))
    assert isinstance(run(packet(), policy), Accepted)
    result = run(packet(src=STRANGER), policy, src=STRANGER)
    assert result == Rejected("source", "not an allowed peer")


def test_rfc3768_7_1_v2_authentication_must_match() -> None:
    # RFC 3768 §7.1: "MUST perform authentication specified by Auth Type"; §5.3.6.1: the
    # simple text password must equal the configured one.
    good = packet(version=2, auth_type=1, auth_data=codec.v2_password("secret"))
    assert isinstance(run(good, V2), Accepted)
    wrong = packet(version=2, auth_type=1, auth_data=codec.v2_password("other"))
    result = run(wrong, V2)
    assert isinstance(result, Rejected) and result.reason == "auth"
    none = packet(version=2)
    result = run(none, V2)
    assert isinstance(result, Rejected) and result.reason == "auth"
    # Configured without a password, a password-carrying advert is refused too.
    no_auth = replace(V2, v2_auth_data=None)
    assert isinstance(run(none, no_auth), Accepted)
    result = run(good, no_auth)
    assert isinstance(result, Rejected) and result.reason == "auth"


def test_rfc3768_7_1_v2_interval_must_equal_ours() -> None:
    # RFC 3768 §7.1: "MUST verify that the Adver Interval in the packet is the same as the
    # locally configured for this virtual router".
    data = packet(version=2, interval_cs=200, auth_type=1, auth_data=codec.v2_password("secret"))
    result = run(data, V2)
    assert isinstance(result, Rejected) and result.reason == "interval_mismatch"


@pytest.mark.parametrize("interval_cs", [401, 4095])
def test_v3_interval_above_the_adoption_bound_is_refused(interval_cs: int) -> None:
    # RFC 5798 §6.4.2 adopts the master's interval; a bound keeps a forged huge interval
    # from stretching a backup's Master_Down_Interval.
    result = run(packet(interval_cs=interval_cs))
    assert isinstance(result, Rejected) and result.reason == "interval_out_of_bounds"
    assert isinstance(run(packet(interval_cs=400)), Accepted)


def test_interval_rejection_alone() -> None:
    common = {"advert_interval_cs": 100, "max_adopted_interval_cs": 400}
    assert receive.interval_rejection(version=3, interval_cs=400, **common) is None
    assert receive.interval_rejection(version=3, interval_cs=0, **common) is not None
    assert receive.interval_rejection(version=2, interval_cs=100, **common) is None
    assert receive.interval_rejection(version=2, interval_cs=300, **common) is not None


def test_hmac_unsigned_or_wrongly_signed_is_refused() -> None:
    ring = auth.KeyRing(KEY)
    result = run(packet(), keys=ring, replay=auth.ReplayGuard())
    assert isinstance(result, Rejected) and result.reason == "auth"
    signed_other = auth.sign(packet(), key=OLD_KEY, seq=1, src=PEER, dst=MCAST_V4)
    result = run(signed_other, keys=ring, replay=auth.ReplayGuard())
    assert isinstance(result, Rejected) and result.reason == "auth"


def test_hmac_accepted_reports_seq_and_key_and_leaves_the_guard_to_the_caller() -> None:
    ring = auth.KeyRing(KEY, [OLD_KEY])
    guard = auth.ReplayGuard()
    signed = auth.sign(packet(), key=OLD_KEY, seq=7, src=PEER, dst=MCAST_V4)
    result = run(signed, keys=ring, replay=guard)
    assert result == Accepted(Advert(3, 51, 200, 100, (VIP,)), hmac_seq=7, hmac_key_index=1)
    assert guard.highest(PEER) is None  # read, never written, by the check
    guard.accept(PEER, 7)
    # The same packet again, or an older sequence number: a replay.
    assert run(signed, keys=ring, replay=guard) == Rejected("replay", "sequence 7 not newer")
    older = auth.sign(packet(), key=KEY, seq=6, src=PEER, dst=MCAST_V4)
    result = run(older, keys=ring, replay=guard)
    assert isinstance(result, Rejected) and result.reason == "replay"
    newer = auth.sign(packet(), key=KEY, seq=8, src=PEER, dst=MCAST_V4)
    result = run(newer, keys=ring, replay=guard)
    assert isinstance(result, Accepted) and (result.hmac_seq, result.hmac_key_index) == (8, 0)


def test_hmac_is_checked_before_decoding() -> None:
    # A trailer that verifies is required before the VRRP packet is even looked at.
    result = run(b"junk" * 20, keys=auth.KeyRing(KEY), replay=auth.ReplayGuard())
    assert isinstance(result, Rejected) and result.reason == "auth"


def test_old_unicast_checksum_is_accepted_and_flagged_only_with_the_fallback() -> None:
    # keepalived's old unicast form: the v3 checksum over a pseudo-header naming 224.0.0.18
    # although the packet went to the peer's unicast address.
    old_form = packet(dst=US, checksum_dst=MCAST_V4)
    result = run(old_form, dst=US)
    assert isinstance(result, Rejected) and result.reason == "checksum"
    fallback = replace(V3, old_checksum_fallback=True)
    result = run(old_form, fallback, dst=US)
    assert isinstance(result, Accepted) and result.old_checksum
    result = run(packet(dst=US), fallback, dst=US)
    assert isinstance(result, Accepted) and not result.old_checksum


@given(data=st.binary(max_size=120), ttl=st.sampled_from([255, 1]))
def test_no_input_raises(data: bytes, ttl: int) -> None:
    result = run(data, ttl=ttl)
    if isinstance(result, Accepted):
        assert result.advert.vrid == 51
        assert codec.decode(data, src=PEER, dst=MCAST_V4) == result.advert
    else:
        assert isinstance(result, Rejected | NotOurs)


def test_checker_answers_what_check_answers() -> None:
    checker = receive.Checker()
    good = packet()
    first = checker.check(good, src=PEER, dst=MCAST_V4, ttl=255, policy=V3)
    assert isinstance(first, Accepted) and first == run(good)
    # The same packet again: the same answer, not decoded again.
    assert checker.check(good, src=PEER, dst=MCAST_V4, ttl=255, policy=V3) is first
    # Anything different is checked in full: TTL, source, bytes, policy.
    assert checker.check(good, src=PEER, dst=MCAST_V4, ttl=254, policy=V3) == Rejected(
        "ttl", "ttl/hop limit 254, must be 255"
    )
    stranger = checker.check(good, src=STRANGER, dst=MCAST_V4, ttl=255, policy=V3)
    assert isinstance(stranger, Rejected) and stranger.reason == "checksum"
    lower = packet(priority=100)
    assert checker.check(lower, src=PEER, dst=MCAST_V4, ttl=255, policy=V3) == run(lower)
    strict = replace(V3, accept_from=frozenset({STRANGER}))
    assert checker.check(lower, src=PEER, dst=MCAST_V4, ttl=255, policy=strict) == Rejected(
        "source", "not an allowed peer"
    )
    assert checker.check(good, src=PEER, dst=MCAST_V4, ttl=255, policy=V3) == first


def test_checker_verifies_every_hmac_packet() -> None:
    # With HMAC the replay guard decides: the same bytes twice are a replay.
    ring = auth.KeyRing(KEY)
    guard = auth.ReplayGuard()
    signed = ring.sign(packet(), seq=5, src=PEER, dst=MCAST_V4)
    checker = receive.Checker()
    first = checker.check(
        signed, src=PEER, dst=MCAST_V4, ttl=255, policy=V3, keys=ring, replay=guard
    )
    assert isinstance(first, Accepted) and first.hmac_seq == 5
    guard.accept(PEER, 5)
    again = checker.check(
        signed, src=PEER, dst=MCAST_V4, ttl=255, policy=V3, keys=ring, replay=guard
    )
    assert again == Rejected("replay", "sequence 5 not newer")
