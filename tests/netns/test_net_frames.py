"""The adapters' byte-level pieces, without a kernel: announce frames refereed by scapy, and
the netlink reply collector (sequence matching, errors, extended-ack text)."""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.net.announce import build_garp, build_unsolicited_na
from hadirector.net.netlink import (
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    _Collector,
    split_messages,
)

scapy_all = pytest.importorskip("scapy.all")

VIP6 = ipaddress.IPv6Address("2001:db8:0:1::100")
macs = st.binary(min_size=6, max_size=6)
ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6s = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@given(mac=macs, address=ipv4s, reply=st.booleans())
def test_garp_frames_parse_as_gratuitous_arp(mac: bytes, address: object, reply: bool) -> None:
    assert isinstance(address, ipaddress.IPv4Address)
    frame = scapy_all.Ether(build_garp(mac, address, reply=reply))
    arp = frame[scapy_all.ARP]
    assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == _mac_text(mac)
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
    assert arp.op == (2 if reply else 1)
    assert arp.hwsrc == _mac_text(mac)
    assert arp.psrc == arp.pdst == str(address)
    assert arp.hwdst == (_mac_text(mac) if reply else "00:00:00:00:00:00")


@given(mac=macs, source=ipv6s, target=ipv6s)
def test_na_frames_parse_with_a_valid_checksum(mac: bytes, source: object, target: object) -> None:
    assert isinstance(source, ipaddress.IPv6Address)
    assert isinstance(target, ipaddress.IPv6Address)
    raw = build_unsolicited_na(mac, source, target)
    frame = scapy_all.Ether(raw)
    ip6 = frame[scapy_all.IPv6]
    na = frame[scapy_all.ICMPv6ND_NA]
    assert frame.dst == "33:33:00:00:00:01" and frame.src == _mac_text(mac)
    assert (ip6.nh, ip6.hlim, ip6.dst) == (58, 255, "ff02::1")
    assert ipaddress.IPv6Address(ip6.src) == source
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert ipaddress.IPv6Address(na.tgt) == target
    assert frame[scapy_all.ICMPv6NDOptDstLLAddr].lladdr == _mac_text(mac)
    # scapy recomputes the checksum when it is deleted: it must agree with ours.
    received = na.cksum
    del na.cksum
    rebuilt = scapy_all.Ether(bytes(frame))[scapy_all.ICMPv6ND_NA].cksum
    assert received == rebuilt


def test_frame_builders_match_known_bytes() -> None:
    mac = bytes.fromhex("02005e005301")
    garp = build_garp(mac, ipaddress.IPv4Address("192.0.2.100"))
    assert (
        garp.hex()
        == (
            "ffffffffffff"
            "02005e005301"
            "0806"  # Ethernet
            "0001"
            "0800"
            "06"
            "04"
            "0001"  # ARP: Ethernet/IPv4, request
            "02005e005301"
            "c0000264"
            "000000000000"
            "c0000264"
        )
        + "00" * 18
    )  # padded to 60 bytes
    na = build_unsolicited_na(mac, ipaddress.IPv6Address("fe80::1"), VIP6)
    assert len(na) == 14 + 40 + 32
    assert na[:14].hex() == "33330000000102005e00530186dd"
    assert na[14:22].hex() == "6000000000203aff"  # payload 32, ICMPv6, hop limit 255
    assert na[54] == 136 and na[58:62].hex() == "20000000"  # NA, flags: Override only
    assert na[62:78] == VIP6.packed and na[78:86].hex() == "020102005e005301"


def _nlmsg(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    data = struct.pack("=IHHII", 16 + len(payload), msg_type, flags, seq, 0) + payload
    return data + b"\0" * (-len(data) % 4)


def _error(seq: int, code: int, ext_msg: bytes | None = None) -> bytes:
    echoed = struct.pack("=IHHII", 16, 20, 5, seq, 0)
    payload = struct.pack("=i", code) + echoed
    flags = 0x100  # capped
    if ext_msg is not None:
        attr = struct.pack("=HH", 4 + len(ext_msg) + 1, 1) + ext_msg + b"\0"
        payload += attr + b"\0" * (-len(attr) % 4)
        flags |= 0x200
    return _nlmsg(2, flags, seq, payload)


def test_collector_skips_replies_to_other_requests_and_stops_at_done() -> None:
    collector = _Collector(seq=7, flags=NLM_F_REQUEST | NLM_F_DUMP)
    # A leftover from a cancelled request (seq 6), a notification (seq 0), then ours.
    collector.feed(_error(6, -errno.EEXIST) + _nlmsg(16, 0, 0, b"\0" * 16))
    assert not collector.done and collector.replies == []
    collector.feed(_nlmsg(99, 2, 7, b"abcd") + _nlmsg(99, 2, 7, b"efgh"))
    assert not collector.done and len(collector.replies) == 2
    collector.feed(_nlmsg(3, 2, 7, b"\0\0\0\0"))  # NLMSG_DONE
    assert collector.done


def test_collector_turns_errors_into_oserror_with_the_kernel_text() -> None:
    ack = _Collector(seq=3, flags=NLM_F_REQUEST | NLM_F_ACK)
    ack.feed(_error(3, 0))
    assert ack.done and ack.replies == []
    failing = _Collector(seq=4, flags=NLM_F_REQUEST | NLM_F_ACK)
    with pytest.raises(OSError, match="Attribute failed policy validation") as info:
        failing.feed(_error(4, -errno.ERANGE, b"Attribute failed policy validation"))
    assert info.value.errno == errno.ERANGE


@given(st.lists(st.tuples(st.integers(16, 200), st.binary(max_size=40)), max_size=8))
def test_split_messages_round_trips(messages: list[tuple[int, bytes]]) -> None:
    data = b"".join(_nlmsg(t, 0, n, p) for n, (t, p) in enumerate(messages))
    split = split_messages(data)
    assert [(t, seq) for t, _f, seq, _raw in split] == [
        (t, n) for n, (t, _p) in enumerate(messages)
    ]
    assert [raw[16:] for *_x, raw in split] == [p for _t, p in messages]
