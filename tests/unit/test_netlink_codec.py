"""The rtnetlink messages of hadirector/net/netlink.py against pyroute2 as the referee.

The adapters once built and read these messages with pyroute2's classes; the codec now does
it with ``struct`` so that the agent does not import pyroute2. Each request body the adapters
send is encoded both ways and must be the same bytes; messages encoded by pyroute2 (with
attributes the adapters ignore around the ones they read) must decode to what pyroute2
decodes. Real kernel dumps are compared the same way in tests/netns/test_net_links.py.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.net import netlink
from hadirector.net.addresses import AddressManager
from hadirector.net.netlink import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    AddressInfo,
    LinkInfo,
    Message,
)

pyroute2_netlink = pytest.importorskip("pyroute2.netlink")
rtnl = pytest.importorskip("pyroute2.netlink.rtnl")
ifinfmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifinfmsg").ifinfmsg
ifaddrmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifaddrmsg").ifaddrmsg
rtmsg = pytest.importorskip("pyroute2.netlink.rtnl.rtmsg").rtmsg


def pyroute2_bytes(body: Any, msg_type: int, flags: int, seq: int) -> bytes:
    """A whole message (header and body) as pyroute2 encodes it."""
    body["header"]["type"] = msg_type
    body["header"]["flags"] = flags
    body["header"]["sequence_number"] = seq
    body["header"]["pid"] = 0
    body.encode()
    return bytes(body.data)


def ours(body: bytes, msg_type: int, flags: int, seq: int) -> bytes:
    return netlink._encode(body, msg_type, flags, seq)


def message(data: bytes) -> Message:
    """Our view of one encoded message, through the same splitting the sockets use."""
    [(msg_type, flags, seq, raw)] = netlink.split_messages(data)
    return netlink._decode(msg_type, flags, seq, raw)


def decoded(cls: Any, data: bytes) -> Any:
    body = cls(data)
    body.decode()
    return body


# -- constants -------------------------------------------------------------------------------


def test_constants_are_the_kernel_values_pyroute2_knows() -> None:
    names = [
        "RTM_NEWLINK",
        "RTM_DELLINK",
        "RTM_GETLINK",
        "RTM_NEWADDR",
        "RTM_DELADDR",
        "RTM_GETADDR",
        "RTM_NEWROUTE",
        "RTM_GETROUTE",
        "RTMGRP_LINK",
        "RTMGRP_IPV4_IFADDR",
        "RTMGRP_IPV6_IFADDR",
    ]
    assert {n: getattr(netlink, n) for n in names} == {n: getattr(rtnl, n) for n in names}
    names = ["NLM_F_ACK", "NLM_F_DUMP", "NLM_F_REQUEST"]
    names += ["NLMSG_DONE", "NLMSG_ERROR", "NLMSG_NOOP", "NLMSG_OVERRUN"]
    assert {n: getattr(netlink, n) for n in names} == {
        n: getattr(pyroute2_netlink, n) for n in names
    }
    attributes = {
        ifinfmsg: ["IFLA_ADDRESS", "IFLA_IFNAME"],
        ifaddrmsg: ["IFA_ADDRESS", "IFA_LOCAL", "IFA_LABEL", "IFA_FLAGS"],
        rtmsg: ["RTA_DST"],
    }
    for cls, names in attributes.items():
        # pyroute2's attribute tables are positional: entry i is attribute type i
        assert [cls.nla_map[getattr(netlink, n)][0] for n in names] == names


# -- requests: the same bytes --------------------------------------------------------------

ifnames = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/:"),
    min_size=1,
    max_size=15,
)
seqs = st.integers(1, 0x7FFFFFFF)
indexes = st.integers(1, 0x7FFFFFFF)


@given(ifnames, seqs)
def test_link_by_name_request(name: str, seq: int) -> None:
    body = ifinfmsg()
    body["attrs"] = [("IFLA_IFNAME", name)]
    flags = netlink.NLM_F_REQUEST
    assert ours(netlink.link_request(name), RTM_GETLINK, flags, seq) == pyroute2_bytes(
        body, RTM_GETLINK, flags, seq
    )


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_dump_requests(family: int) -> None:
    flags = netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
    assert ours(netlink.ifinfomsg(), RTM_GETLINK, flags, 3) == pyroute2_bytes(
        ifinfmsg(), RTM_GETLINK, flags, 3
    )
    body = ifaddrmsg()
    body["family"] = family
    assert ours(netlink.address_dump_request(family), RTM_GETADDR, flags, 4) == pyroute2_bytes(
        body, RTM_GETADDR, flags, 4
    )


@given(indexes, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_link_change_request(index: int, flags: int, change: int) -> None:
    body = ifinfmsg()
    body["index"] = index
    body["flags"] = flags
    body["change"] = change
    ack = netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
    assert ours(
        netlink.ifinfomsg(index=index, flags=flags, change=change), RTM_NEWLINK, ack, 9
    ) == pyroute2_bytes(body, RTM_NEWLINK, ack, 9)


class _Vip:
    def __init__(self, interface: Any, label: str | None) -> None:
        self.interface = interface
        self.dev = "eth0"
        self.label = label


def _pyroute2_address_body(vip: _Vip, index: int, *, adding: bool) -> Any:
    """How the address manager built its RTM_NEWADDR / RTM_DELADDR body with pyroute2."""
    interface = vip.interface
    body = ifaddrmsg()
    body["family"] = socket.AF_INET if interface.version == 4 else socket.AF_INET6
    body["prefixlen"] = interface.network.prefixlen
    body["index"] = index
    body["scope"] = 0
    address = str(interface.ip)
    attrs: list[tuple[str, Any]] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
    if interface.version == 4:
        if adding and vip.label:
            attrs.append(("IFA_LABEL", vip.label))
    elif adding:
        body["flags"] = netlink.IFA_F_NODAD
        attrs.append(("IFA_FLAGS", netlink.IFA_F_NODAD))
    body["attrs"] = attrs
    return body


v4_interfaces = st.builds(
    lambda a, p: ipaddress.ip_interface((ipaddress.IPv4Address(a), p)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
v6_interfaces = st.builds(
    lambda a, p: ipaddress.ip_interface((ipaddress.IPv6Address(a), p)),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
interfaces = st.one_of(v4_interfaces, v6_interfaces)
# An address message's IFA_ADDRESS, and perhaps an IFA_LOCAL of the same family.
address_pairs = st.one_of(
    st.tuples(v4_interfaces, st.one_of(st.none(), v4_interfaces)),
    st.tuples(v6_interfaces, st.one_of(st.none(), v6_interfaces)),
)


@given(interfaces, st.one_of(st.none(), ifnames), indexes, st.booleans(), seqs)
def test_vip_add_and_remove_requests(
    interface: Any, label: str | None, index: int, adding: bool, seq: int
) -> None:
    vip = _Vip(interface, label)
    msg_type = RTM_NEWADDR if adding else RTM_DELADDR
    flags = netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
    assert ours(
        AddressManager._message(vip, index, adding=adding), msg_type, flags, seq
    ) == pyroute2_bytes(_pyroute2_address_body(vip, index, adding=adding), msg_type, flags, seq)


@given(interfaces)
def test_route_lookup_request(interface: Any) -> None:
    address = interface.ip
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    body = rtmsg()
    body["family"] = family
    body["dst_len"] = address.max_prefixlen
    body["attrs"] = [("RTA_DST", str(address))]
    ours_body = netlink.rtmsg(
        family=family, dst_len=address.max_prefixlen, attrs=[(netlink.RTA_DST, address.packed)]
    )
    flags = netlink.NLM_F_REQUEST
    assert ours(ours_body, RTM_GETROUTE, flags, 5) == pyroute2_bytes(body, RTM_GETROUTE, flags, 5)


# -- notifications and replies: the same reading -------------------------------------------

macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


@given(
    indexes,
    st.integers(0, 0xFFFFFFFF),
    ifnames,
    st.one_of(st.none(), macs),
    st.integers(0, 0xFFFF),
    st.booleans(),
)
def test_link_messages_read_as_pyroute2_reads_them(
    index: int, flags: int, name: str, mac: str | None, mtu: int, deleted: bool
) -> None:
    body = ifinfmsg()
    body["index"] = index
    body["flags"] = flags
    body["ifi_type"] = 1
    attrs: list[tuple[str, Any]] = [("IFLA_MTU", mtu), ("IFLA_IFNAME", name)]
    if mac is not None:
        attrs += [("IFLA_ADDRESS", mac), ("IFLA_BROADCAST", "ff:ff:ff:ff:ff:ff")]
    attrs.append(("IFLA_TXQLEN", 1000))
    body["attrs"] = attrs
    msg_type = RTM_DELLINK if deleted else RTM_NEWLINK
    data = pyroute2_bytes(body, msg_type, 0, 0)
    reference = decoded(ifinfmsg, data)
    assert LinkInfo.from_message(message(data)) == LinkInfo(
        index=int(reference["index"]),
        name=str(reference.get_attr("IFLA_IFNAME") or ""),
        flags=int(reference["flags"]),
        mac=reference.get_attr("IFLA_ADDRESS"),
        deleted=deleted,
    )
    assert netlink.message_index(message(data)) == index


@given(
    address_pairs,
    st.one_of(st.none(), ifnames),
    st.integers(0, 0xFF),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
    st.integers(0, 0xFF),
    indexes,
    st.booleans(),
)
def test_address_messages_read_as_pyroute2_reads_them(
    addresses: tuple[Any, Any],
    label: str | None,
    flags: int,
    wide_flags: int | None,
    scope: int,
    index: int,
    deleted: bool,
) -> None:
    interface, local = addresses
    body = ifaddrmsg()
    body["family"] = socket.AF_INET if interface.version == 4 else socket.AF_INET6
    body["prefixlen"] = interface.network.prefixlen
    body["flags"] = flags
    body["scope"] = scope
    body["index"] = index
    attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", str(interface.ip))]
    if local is not None:
        attrs.append(("IFA_LOCAL", str(local.ip)))
    if label is not None:
        attrs.append(("IFA_LABEL", label))
    attrs.append(("IFA_CACHEINFO", {"ifa_preferred": 1, "ifa_valid": 2}))
    if wide_flags is not None:
        attrs.append(("IFA_FLAGS", wide_flags))
    body["attrs"] = attrs
    msg_type = RTM_DELADDR if deleted else RTM_NEWADDR
    data = pyroute2_bytes(body, msg_type, 0, 0)
    reference = decoded(ifaddrmsg, data)
    raw = reference.get_attr("IFA_LOCAL") or reference.get_attr("IFA_ADDRESS")
    reference_flags = reference.get_attr("IFA_FLAGS")
    assert AddressInfo.from_message(message(data)) == AddressInfo(
        index=int(reference["index"]),
        interface=ipaddress.ip_interface(f"{raw}/{reference['prefixlen']}"),
        label=reference.get_attr("IFA_LABEL"),
        flags=int(reference_flags if reference_flags is not None else reference["flags"]),
        scope=int(reference["scope"]),
        deleted=deleted,
    )
    assert netlink.message_index(message(data)) == index


@given(st.integers(0, 0xFF), interfaces)
def test_route_type_reads_as_pyroute2_reads_it(route_type: int, interface: Any) -> None:
    body = rtmsg()
    body["family"] = socket.AF_INET if interface.version == 4 else socket.AF_INET6
    body["dst_len"] = interface.ip.max_prefixlen
    body["type"] = route_type
    body["table"] = 255
    body["attrs"] = [("RTA_TABLE", 255), ("RTA_DST", str(interface.ip)), ("RTA_OIF", 1)]
    data = pyroute2_bytes(body, RTM_NEWROUTE, 0, 0)
    assert netlink.route_type(message(data)) == decoded(rtmsg, data)["type"] == route_type


def test_attributes_skip_a_truncated_tail_and_keep_the_first_of_a_repeated_type() -> None:
    first = netlink.attribute(netlink.IFLA_IFNAME, b"a\0")
    again = netlink.attribute(netlink.IFLA_IFNAME, b"b\0")
    truncated = struct.pack("=HH", 40, netlink.IFLA_ADDRESS) + b"\x01\x02"
    assert netlink.attributes(first + again + truncated, 0) == {netlink.IFLA_IFNAME: b"a\0"}


def test_an_address_message_without_an_address_is_a_clear_error() -> None:
    body = netlink.ifaddrmsg(family=socket.AF_INET, prefixlen=24, index=3)
    with pytest.raises(ValueError, match="without an address"):
        AddressInfo.from_message(Message(RTM_NEWADDR, 0, 0, body))
