"""Unit tests of advert building (hadirector.vrrp.send): what goes on the wire, per
destination, and that the receive checks of a peer configured alike accept it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hadirector.vrrp import auth, codec, receive, send
from hadirector.vrrp.codec import MCAST_V4, MCAST_V6, Advert
from hadirector.vrrp.send import SendPolicy, build, next_seq

US = IPv4Address("192.0.2.1")
PEERS = (IPv4Address("192.0.2.2"), IPv4Address("192.0.2.3"))
VIPS = (IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101"))
KEY = bytes(range(32))

V3 = SendPolicy(version=3, vrid=51, addresses=VIPS)


def test_rfc5798_5_1_v3_multicast_advert() -> None:
    built = build(V3, priority=150, interval_cs=100, src=US, destinations=(MCAST_V4,))
    assert built.last_seq == 0
    [(payload, dst)] = built.packets
    assert dst == MCAST_V4
    assert codec.decode(payload, src=US, dst=MCAST_V4) == Advert(3, 51, 150, 100, VIPS)


def test_v3_ipv6() -> None:
    us6, vip6 = IPv6Address("fe80::1"), IPv6Address("2001:db8::100")
    policy = SendPolicy(version=3, vrid=7, addresses=(vip6,))
    [(payload, _)] = build(
        policy, priority=100, interval_cs=10, src=us6, destinations=(MCAST_V6,)
    ).packets
    assert codec.decode(payload, src=us6, dst=MCAST_V6) == Advert(3, 7, 100, 10, (vip6,))


def test_one_packet_per_unicast_peer_with_its_own_checksum() -> None:
    # RFC 5798 §5.2.8: the v3 checksum covers a pseudo-header with the destination.
    built = build(V3, priority=0, interval_cs=100, src=US, destinations=PEERS)
    assert [dst for _, dst in built.packets] == list(PEERS)
    for payload, dst in built.packets:
        assert codec.decode(payload, src=US, dst=dst).priority == 0
    assert built.packets[0][0] != built.packets[1][0]


def test_old_checksum_form_toward_keepalived_peers() -> None:
    policy = SendPolicy(version=3, vrid=51, addresses=VIPS, old_checksum=True)
    [(payload, dst)] = build(
        policy, priority=100, interval_cs=100, src=US, destinations=PEERS[:1]
    ).packets
    assert dst == PEERS[0]
    assert codec.decode(payload, src=US, dst=MCAST_V4).vrid == 51  # checksum as if multicast
    fallback = receive.ReceivePolicy(
        vrid=51,
        version=3,
        advert_interval_cs=100,
        max_adopted_interval_cs=400,
        old_checksum_fallback=True,
    )
    result = receive.check(payload, src=US, dst=dst, ttl=255, policy=fallback)
    assert isinstance(result, receive.Accepted) and result.old_checksum


def test_rfc3768_5_3_6_v2_simple_text_password() -> None:
    password = codec.v2_password("secret")
    policy = SendPolicy(version=2, vrid=51, addresses=VIPS, v2_auth_data=password)
    [(payload, _)] = build(
        policy, priority=100, interval_cs=100, src=US, destinations=(MCAST_V4,)
    ).packets
    advert = codec.decode(payload, src=US, dst=MCAST_V4)
    assert (advert.version, advert.auth_type, advert.auth_data) == (2, 1, password)
    # v3 carries no authentication (RFC 5798 §9) even if the configuration names one.
    v3 = SendPolicy(version=3, vrid=51, addresses=VIPS, v2_auth_data=password)
    assert send.advert(v3, priority=1, interval_cs=100).auth_type == codec.AUTH_NONE


def test_rfc5798_5_2_6_at_most_255_addresses() -> None:
    many = tuple(IPv4Address(int(IPv4Address("10.0.0.0")) + i) for i in range(300))
    policy = SendPolicy(version=3, vrid=51, addresses=many)
    [(payload, _)] = build(
        policy, priority=100, interval_cs=100, src=US, destinations=(MCAST_V4,)
    ).packets
    assert codec.decode(payload, src=US, dst=MCAST_V4).addresses == many[:255]


def test_hmac_signed_with_increasing_sequence_numbers() -> None:
    ring = auth.KeyRing(KEY)
    built = build(
        V3,
        priority=100,
        interval_cs=100,
        src=US,
        destinations=PEERS,
        keys=ring,
        last_seq=0,
        now_ns=1_000,
    )
    seqs = [ring.verify(p, src=US, dst=d)[1] for p, d in built.packets]
    assert seqs == [1_000, 1_001] and built.last_seq == 1_001
    # A clock stepped back: the sequence still increases.
    again = build(
        V3,
        priority=100,
        interval_cs=100,
        src=US,
        destinations=PEERS[:1],
        keys=ring,
        last_seq=built.last_seq,
        now_ns=5,
    )
    [(payload, dst)] = again.packets
    assert ring.verify(payload, src=US, dst=dst)[1] == 1_002 == again.last_seq


def test_next_seq() -> None:
    assert next_seq(0, 10) == 10
    assert next_seq(10, 10) == 11
    assert next_seq(10, 3) == 11


def test_builder_answers_what_build_answers_and_encodes_each_set_once() -> None:
    builder = send.Builder()
    args = {"priority": 150, "interval_cs": 100, "src": US, "destinations": PEERS}
    first = builder.build(V3, **args)
    assert first == build(V3, **args)
    assert builder.build(V3, **args) is first  # the same inputs: nothing encoded again
    # Any input changed: built anew, as build would.
    for change in (
        {"priority": 0},
        {"interval_cs": 50},
        {"src": PEERS[0]},
        {"destinations": PEERS[:1]},
    ):
        changed = builder.build(V3, **{**args, **change})
        assert changed == build(V3, **{**args, **change})
    old_form = SendPolicy(version=3, vrid=51, addresses=VIPS, old_checksum=True)
    assert builder.build(old_form, **args) == build(old_form, **args)
    assert builder.build(V3, **args) == first


def test_builder_signs_every_hmac_packet_anew() -> None:
    ring = auth.KeyRing(KEY)
    builder = send.Builder()
    args = {"priority": 150, "interval_cs": 100, "src": US, "destinations": PEERS[:1]}
    one = builder.build(V3, keys=ring, last_seq=0, now_ns=7, **args)
    two = builder.build(V3, keys=ring, last_seq=one.last_seq, now_ns=7, **args)
    assert one.last_seq == 7 and two.last_seq == 8
    assert one.packets[0][0] != two.packets[0][0]
