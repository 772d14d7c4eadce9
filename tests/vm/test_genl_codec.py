"""The IPVS generic netlink codec, on the host: kernel byte layouts and decode robustness.

Known-answer tests pin the byte orders of ``include/uapi/linux/ip_vs.h`` that are easy to get
wrong (ports big-endian, IPv4 netmask as a network-order mask, IPv6 netmask as a host-order
prefix length, sync port host-order); the VM tests check the same against the kernel.
Property tests check that what the encoder writes decodes to the same objects, and that no
byte string makes the decoder fail with anything but DecodeError.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.errors import DecodeError
from hadirector.ipvs import genl, model
from hadirector.ipvs.model import Dest, DestKey, Service, ServiceKey
from hadirector.ipvs.types import SyncState


def attrs_of(nested: bytes) -> dict[int, bytes]:
    """The children of one nested attribute."""
    [(_, inner)] = genl.parse_attrs(nested).items()
    return genl.parse_attrs(inner)


def test_service_attribute_layout() -> None:
    key = ServiceKey.virtual("tcp", "192.0.2.1", 80)
    service = Service("rr", model.SVC_F_PERSISTENT, 300, 0xFFFFFF00)
    attrs = attrs_of(genl.service_attr(key, service))
    assert attrs[genl.IPVS_SVC_ATTR_AF] == struct.pack("=H", 2)
    assert attrs[genl.IPVS_SVC_ATTR_PROTOCOL] == struct.pack("=H", 6)
    assert attrs[genl.IPVS_SVC_ATTR_ADDR] == bytes([192, 0, 2, 1])
    assert attrs[genl.IPVS_SVC_ATTR_PORT] == b"\x00\x50"
    assert attrs[genl.IPVS_SVC_ATTR_SCHED_NAME] == b"rr\0"
    assert attrs[genl.IPVS_SVC_ATTR_FLAGS] == struct.pack("=II", 1, 0xFFFFFFFF)
    assert attrs[genl.IPVS_SVC_ATTR_TIMEOUT] == struct.pack("=I", 300)
    assert attrs[genl.IPVS_SVC_ATTR_NETMASK] == b"\xff\xff\xff\x00"


def test_ipv6_netmask_is_a_host_order_prefix_length() -> None:
    key = ServiceKey.mark(9, 6)
    attrs = attrs_of(genl.service_attr(key, Service("sh", 1, 60, 64)))
    assert attrs[genl.IPVS_SVC_ATTR_AF] == struct.pack("=H", 10)
    assert attrs[genl.IPVS_SVC_ATTR_FWMARK] == struct.pack("=I", 9)
    assert attrs[genl.IPVS_SVC_ATTR_NETMASK] == struct.pack("=I", 64)
    assert genl.IPVS_SVC_ATTR_ADDR not in attrs


def test_service_key_attribute_names_only_the_key() -> None:
    key = ServiceKey.virtual("udp", "2001:db8::5", 53)
    attrs = attrs_of(genl.service_key_attr(key))
    assert set(attrs) == {
        genl.IPVS_SVC_ATTR_AF,
        genl.IPVS_SVC_ATTR_PROTOCOL,
        genl.IPVS_SVC_ATTR_ADDR,
        genl.IPVS_SVC_ATTR_PORT,
    }
    assert attrs[genl.IPVS_SVC_ATTR_ADDR] == bytes.fromhex("20010db8000000000000000000000005")


def test_dest_attribute_always_carries_the_whole_destination() -> None:
    dest = Dest(model.FWD_TUNNEL, 5, 100, 10, model.TUN_TYPE_GUE, 6080, model.TUN_F_CSUM)
    attrs = attrs_of(genl.dest_attr(DestKey.of("198.51.100.1", 8080), dest))
    assert attrs[genl.IPVS_DEST_ATTR_PORT] == struct.pack("!H", 8080)
    assert attrs[genl.IPVS_DEST_ATTR_FWD_METHOD] == struct.pack("=I", 2)
    assert attrs[genl.IPVS_DEST_ATTR_WEIGHT] == struct.pack("=I", 5)
    assert attrs[genl.IPVS_DEST_ATTR_U_THRESH] == struct.pack("=I", 100)
    assert attrs[genl.IPVS_DEST_ATTR_L_THRESH] == struct.pack("=I", 10)
    assert attrs[genl.IPVS_DEST_ATTR_TUN_TYPE] == b"\x01"
    assert attrs[genl.IPVS_DEST_ATTR_TUN_PORT] == struct.pack("!H", 6080)
    assert attrs[genl.IPVS_DEST_ATTR_TUN_FLAGS] == struct.pack("=H", 1)
    # Even a plain weight change sends forwarding and thresholds (SET_DEST replaces).
    plain = attrs_of(genl.dest_attr(DestKey.of("198.51.100.1", 80), Dest(model.FWD_MASQ, 0)))
    assert plain[genl.IPVS_DEST_ATTR_FWD_METHOD] == struct.pack("=I", 0)
    assert genl.IPVS_DEST_ATTR_U_THRESH in plain and genl.IPVS_DEST_ATTR_L_THRESH in plain


def test_daemon_attribute_layout() -> None:
    attrs = attrs_of(
        genl.daemon_attr(
            SyncState.BACKUP, "eth1", 7, mcast_group="239.1.2.3", mcast_port=8849, mcast_ttl=2
        )
    )
    assert attrs[genl.IPVS_DAEMON_ATTR_STATE] == struct.pack("=I", 2)
    assert attrs[genl.IPVS_DAEMON_ATTR_MCAST_IFN] == b"eth1\0"
    assert attrs[genl.IPVS_DAEMON_ATTR_SYNC_ID] == struct.pack("=I", 7)
    assert attrs[genl.IPVS_DAEMON_ATTR_MCAST_GROUP] == bytes([239, 1, 2, 3])
    assert attrs[genl.IPVS_DAEMON_ATTR_MCAST_PORT] == struct.pack("=H", 8849)
    assert attrs[genl.IPVS_DAEMON_ATTR_MCAST_TTL] == b"\x02"
    stop = attrs_of(genl.daemon_attr(SyncState.MASTER))
    assert set(stop) == {genl.IPVS_DAEMON_ATTR_STATE}


def test_error_message_with_extended_ack_text() -> None:
    inner = struct.pack("=IHHII", 36, 0x20, 5, 9, 0)
    tlv = genl.nla_string(genl.NLMSGERR_ATTR_MSG, "Attribute failed policy validation")
    payload = struct.pack("=i", -22) + inner + tlv
    flags = genl.NLM_F_CAPPED | genl.NLM_F_ACK_TLVS
    [message] = genl.parse_messages(genl.encode_message(genl.NLMSG_ERROR, flags, 9, payload))
    assert genl.parse_error(message) == (22, "Attribute failed policy validation")
    ack = genl.parse_messages(
        genl.encode_message(genl.NLMSG_ERROR, 0, 3, struct.pack("=i", 0) + inner)
    )
    assert genl.parse_error(ack[0]) == (0, "")


def test_several_messages_in_one_datagram() -> None:
    data = b"".join(
        genl.encode_message(0x22, genl.NLM_F_MULTI, seq, genl.genl_body(4, b"x" * seq))
        for seq in range(1, 6)
    )
    messages = genl.parse_messages(data)
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5]
    assert [len(m.payload) - 4 for m in messages] == [1, 2, 3, 4, 5]


addresses_v4 = st.ip_addresses(v=4).map(str)
addresses_v6 = st.ip_addresses(v=6).map(lambda a: a.compressed)
ports = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def service_keys(draw: st.DrawFn) -> ServiceKey:
    family = draw(st.sampled_from([4, 6]))
    if draw(st.booleans()):
        return ServiceKey.mark(draw(st.integers(1, 2**32 - 1)), family)
    address = draw(addresses_v4 if family == 4 else addresses_v6)
    protocol = draw(st.sampled_from([6, 17, 132]))
    return ServiceKey(family, protocol, address, draw(ports), 0)


@given(
    key=service_keys(),
    scheduler=st.sampled_from(["rr", "wlc", "mh", "sh"]),
    flags=st.integers(0, 0x3F),
    timeout_s=u32,
    netmask=u32,
    pe_name=st.sampled_from(["", "sip"]),
)
def test_service_decodes_to_what_was_encoded(
    key: ServiceKey, scheduler: str, flags: int, timeout_s: int, netmask: int, pe_name: str
) -> None:
    service = Service(scheduler, flags, timeout_s, netmask, pe_name)
    state = genl.decode_service(genl.parse_attrs(genl.service_attr(key, service)))
    assert state.key == key
    assert state.service == Service(
        scheduler, flags & ~model.SVC_F_HASHED, timeout_s, netmask, pe_name
    )


@given(
    address=st.one_of(addresses_v4, addresses_v6),
    port=ports,
    forwarding=st.integers(0, 4),
    weight=u32,
    upper=u32,
    lower=u32,
    tun_type=st.integers(0, 2),
    tun_port=ports,
    tun_flags=st.integers(0, 3),
)
def test_dest_decodes_to_what_was_encoded(
    address: str,
    port: int,
    forwarding: int,
    weight: int,
    upper: int,
    lower: int,
    tun_type: int,
    tun_port: int,
    tun_flags: int,
) -> None:
    key = DestKey.of(address, port)
    dest = Dest(forwarding, weight, upper, lower, tun_type, tun_port, tun_flags)
    state = genl.decode_dest(genl.parse_attrs(genl.dest_attr(key, dest)), 4)
    assert (state.key, state.dest) == (key, dest)


@given(
    state=st.sampled_from(list(SyncState)),
    ifname=st.text("abcdefghij0123456789.-", min_size=1, max_size=15),
    syncid=st.integers(0, 255),
    maxlen=st.integers(1, 65535),
    group=st.one_of(
        st.ip_addresses(v=4, network="224.0.0.0/4").map(str),
        st.ip_addresses(v=6, network="ff00::/8").map(lambda a: a.compressed),
    ),
    port=st.integers(1, 65535),
    ttl=st.integers(1, 255),
)
def test_daemon_decodes_to_what_was_encoded(
    state: SyncState, ifname: str, syncid: int, maxlen: int, group: str, port: int, ttl: int
) -> None:
    attr = genl.daemon_attr(
        state,
        ifname,
        syncid,
        sync_maxlen=maxlen,
        mcast_group=group,
        mcast_port=port,
        mcast_ttl=ttl,
    )
    daemon = genl.decode_daemon(genl.parse_attrs(attr))
    assert (daemon.state, daemon.ifname, daemon.syncid) == (state, ifname, syncid)
    assert (daemon.sync_maxlen, daemon.mcast_group, daemon.mcast_port, daemon.mcast_ttl) == (
        maxlen,
        group,
        port,
        ttl,
    )


@given(st.binary(max_size=200))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    for decode in (
        lambda: genl.parse_messages(data),
        lambda: genl.decode_service({genl.IPVS_CMD_ATTR_SERVICE: data}),
        lambda: genl.decode_dest({genl.IPVS_CMD_ATTR_DEST: data}, 4),
        lambda: genl.decode_daemon({genl.IPVS_CMD_ATTR_DAEMON: data}),
    ):
        with contextlib.suppress(DecodeError):
            decode()


def test_names_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="interface name too long"):
        genl.daemon_attr(SyncState.MASTER, "x" * 16, 1)
    with pytest.raises(ValueError, match="scheduler name too long"):
        genl.service_attr(ServiceKey.mark(1), Service("s" * 16))


def _stats(attr_type: int, wide: bool, values: tuple[int, int, int, int, int]) -> bytes:
    """A stats attribute as the kernel writes it: STATS64 all u64; STATS u32 counters but
    the byte counts (u64)."""
    kids = []
    for counter, value in zip(range(1, 6), values, strict=True):
        fmt = "=Q" if wide or counter in (4, 5) else "=I"
        kids.append(genl.nla(counter, struct.pack(fmt, value)))
    return genl.nla_nested(attr_type, kids)


def test_traffic_counters_of_a_destination_prefer_the_64_bit_form() -> None:
    dest = genl.dest_attr(DestKey("10.0.0.5", 80), Dest(weight=3))
    inner = genl.parse_attrs(dest)[genl.IPVS_CMD_ATTR_DEST]
    big = 2**40 + 7
    both = inner + _stats(genl.IPVS_DEST_ATTR_STATS, False, (1, 2, 3, 4, 5))
    both += _stats(genl.IPVS_DEST_ATTR_STATS64, True, (big, big + 1, big + 2, big + 3, big + 4))
    state = genl.decode_dest({genl.IPVS_CMD_ATTR_DEST: both}, 4)
    assert state.stats is not None
    assert (state.stats.connections, state.stats.packets_in, state.stats.bytes_out) == (
        big,
        big + 1,
        big + 4,
    )
    only32 = inner + _stats(genl.IPVS_DEST_ATTR_STATS, False, (9, 8, 7, 2**33, 5))
    state = genl.decode_dest({genl.IPVS_CMD_ATTR_DEST: only32}, 4)
    assert state.stats is not None
    assert (state.stats.connections, state.stats.packets_out, state.stats.bytes_in) == (
        9,
        7,
        2**33,
    )
    # Not part of a destination's identity: equal with or without counters.
    assert state == genl.decode_dest({genl.IPVS_CMD_ATTR_DEST: inner}, 4)
    assert genl.decode_dest({genl.IPVS_CMD_ATTR_DEST: inner}, 4).stats is None


def test_traffic_counters_of_a_service() -> None:
    key = ServiceKey(4, 6, "192.0.2.10", 80, 0)
    svc = genl.service_attr(key, Service(scheduler="wrr"))
    inner = genl.parse_attrs(svc)[genl.IPVS_CMD_ATTR_SERVICE]
    raw = inner + _stats(genl.IPVS_SVC_ATTR_STATS64, True, (40, 200, 160, 12000, 9000))
    state = genl.decode_service({genl.IPVS_CMD_ATTR_SERVICE: raw})
    assert state.key == key and state.stats is not None
    assert state.stats.connections == 40 and state.stats.bytes_in == 12000
