"""Announcer against the real kernel: a VIP moves from A to B, B announces it, and a client's
neighbour entry follows; a watcher captures the frames and tshark checks them."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from hadirector.config.schema import VirtualAddress
from hadirector.net.addresses import AddressManager
from hadirector.net.announce import Announcer, SharedAnnouncers
from hadirector.net.links import LinkUnavailable
from tests.netns.lab import Capture, Lab, Node, bare_lab

pytestmark = pytest.mark.netns

VIP4 = ipaddress.IPv4Address("192.0.2.100")
VIP6 = ipaddress.IPv6Address("2001:db8:0:1::100")


@pytest.fixture
def lab() -> Iterator[Lab]:
    with bare_lab() as instance:
        yield instance


class Director:
    """One node that can hold the VIP: its address manager and announcer."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.addresses = AddressManager()
        with node.netns.entered():
            trio.run(self.addresses.open)
            self.announcer = Announcer.open(node.ifname)

    def take(self, vip: VirtualAddress) -> None:
        assert trio.run(self.addresses.add, vip)

    def give_up(self, vip: VirtualAddress) -> None:
        assert trio.run(self.addresses.remove, vip)

    def close(self) -> None:
        self.announcer.close()
        self.addresses.close()


def _topology(lab: Lab) -> tuple[Director, Director, Node, Node]:
    a = lab.node("a", ipv4=["192.0.2.11/24"], ipv6=["2001:db8:0:1::11/64"])
    b = lab.node("b", ipv4=["192.0.2.12/24"], ipv6=["2001:db8:0:1::12/64"])
    client = lab.node("c", ipv4=["192.0.2.13/24"], ipv6=["2001:db8:0:1::13/64"])
    watcher = lab.node("w")
    return Director(a), Director(b), client, watcher


def _touch(client: Node, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Make the client resolve ``address`` (one UDP datagram to it)."""
    family = "AF_INET" if address.version == 4 else "AF_INET6"
    client.netns.python(
        "import socket, time\n"
        f"s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
        f"s.sendto(b'x', ('{address}', 9))\n"
        "time.sleep(0.2)\n"
    )


def _neighbour_mac(client: Node, address: object) -> str | None:
    out = client.netns.ip("neigh", "show", str(address), "dev", client.ifname).stdout
    match = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return match.group(1) if match else None


def _wait_neighbour(client: Node, address: object, mac: str, timeout_s: float = 3) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := _neighbour_mac(client, address)) != mac:
        assert time.monotonic() < deadline, f"{address}: client has {seen}, expected {mac}"
        time.sleep(0.02)


def test_gratuitous_arp_moves_the_client_and_is_well_formed(lab: Lab, tmp_path: Path) -> None:
    a, b, client, watcher = _topology(lab)
    vip = VirtualAddress(ipaddress.ip_interface(f"{VIP4}/32"), "eth0")
    try:
        a.take(vip)
        _touch(client, VIP4)
        _wait_neighbour(client, VIP4, a.node.mac)
        with Capture(watcher.netns, "eth0", "arp", tmp_path / "garp.pcap") as cap:
            a.give_up(vip)
            b.take(vip)
            b.announcer.send_garp(VIP4)
            _wait_neighbour(client, VIP4, b.node.mac)
            # And back to A with the reply variant.
            b.give_up(vip)
            a.take(vip)
            a.announcer.send_garp(VIP4, reply=True)
            _wait_neighbour(client, VIP4, a.node.mac)
            cap.wait_frames(f"arp.src.proto_ipv4 == {VIP4} && arp.isgratuitous == 1", 2)
    finally:
        a.close()
        b.close()
    rows = cap.fields(
        f"arp.src.proto_ipv4 == {VIP4}",
        "eth.dst",
        "eth.src",
        "arp.opcode",
        "arp.src.hw_mac",
        "arp.dst.hw_mac",
        "arp.dst.proto_ipv4",
        "arp.isgratuitous",
        "frame.len",
    )
    bmac, amac = b.node.mac, a.node.mac
    gratuitous = [r for r in rows if r[6] == "1"]
    assert gratuitous == [
        ["ff:ff:ff:ff:ff:ff", bmac, "1", bmac, "00:00:00:00:00:00", str(VIP4), "1", "60"],
        ["ff:ff:ff:ff:ff:ff", amac, "2", amac, amac, str(VIP4), "1", "60"],
    ]
    # The VIP moving between two MACs is the point here, not a duplicate-address fault.
    assert cap.problems("-o", "arp.detect_duplicate_ips:FALSE") == ""


def test_unsolicited_na_moves_the_client_and_is_well_formed(lab: Lab, tmp_path: Path) -> None:
    a, b, client, watcher = _topology(lab)
    vip = VirtualAddress(ipaddress.ip_interface(f"{VIP6}/64"), "eth0")
    try:
        a.take(vip)
        _touch(client, VIP6)
        _wait_neighbour(client, VIP6, a.node.mac)
        with Capture(watcher.netns, "eth0", "icmp6", tmp_path / "na.pcap") as cap:
            a.give_up(vip)
            b.take(vip)
            b.announcer.send_unsolicited_na(VIP6)
            _wait_neighbour(client, VIP6, b.node.mac)
            cap.wait_frames("icmpv6.type == 136 && icmpv6.nd.na.flag.s == 0", 1)
    finally:
        a.close()
        b.close()
    rows = cap.fields(
        "icmpv6.type == 136 && icmpv6.nd.na.flag.s == 0",
        "eth.dst",
        "eth.src",
        "ipv6.src",
        "ipv6.dst",
        "ipv6.hlim",
        "icmpv6.nd.na.flag.r",
        "icmpv6.nd.na.flag.o",
        "icmpv6.nd.na.target_address",
        "icmpv6.opt.linkaddr",
        "icmpv6.checksum.status",
    )
    bmac = b.node.mac
    assert rows == [
        [
            "33:33:00:00:00:01",
            bmac,
            b.node.link_local(),
            "ff02::1",
            "255",
            "0",
            "1",
            str(VIP6),
            bmac,
            "1",  # tshark: checksum good
        ]
    ]
    assert cap.problems() == ""


def test_announcer_follows_mac_and_link_local_changes_and_reports_link_down(
    lab: Lab, tmp_path: Path
) -> None:
    a = lab.node("a", ipv4=["192.0.2.11/24"])
    watcher = lab.node("w")
    with a.netns.entered():
        announcer = Announcer.open("eth0")
    old_mac, old_link_local = a.mac, a.link_local()
    new_mac = "02:00:5e:00:53:01"
    new_link_local = "fe80::5eff:fe00:5301"  # EUI-64 of the new MAC
    try:
        with Capture(watcher.netns, "eth0", "arp or icmp6", tmp_path / "m.pcap") as cap:
            announcer.send_garp(VIP4)
            announcer.send_unsolicited_na(VIP6)
            # Down, new MAC, up: the link-local is regenerated from the new MAC. No refresh()
            # call: the announcer notices both changes by itself.
            a.netns.ip("link", "set", "eth0", "down")
            a.netns.ip("link", "set", "eth0", "address", new_mac)
            a.netns.ip("link", "set", "eth0", "up")
            assert a.link_local() == new_link_local
            announcer.send_garp(VIP4)
            announcer.send_unsolicited_na(VIP6)
            cap.wait_frames("arp", 2)
            cap.wait_frames("icmpv6.type == 136", 2)
        a.netns.ip("link", "set", "eth0", "down")
        with pytest.raises(LinkUnavailable):
            announcer.send_garp(VIP4)
    finally:
        announcer.close()
    assert cap.fields("arp", "arp.src.hw_mac") == [[old_mac], [new_mac]]
    assert cap.fields("icmpv6.type == 136", "ipv6.src", "icmpv6.opt.linkaddr") == [
        [old_link_local, old_mac],
        [new_link_local, new_mac],
    ]


def test_shared_announcers_one_per_interface_repeats_same_frames(lab: Lab, tmp_path: Path) -> None:
    """The agent's announcers: every instance on an interface gets the same one (one packet
    socket), a repeat sends the very frame of the first send, and an interface that is not
    there yet fails to open and opens once it is."""
    a = lab.node("a", ipv4=["192.0.2.11/24"])
    watcher = lab.node("w")
    shared = SharedAnnouncers()
    try:
        with a.netns.entered():
            first = shared("eth0")
            assert shared("eth0") is first
            with pytest.raises(OSError):
                shared("late0")
            a.netns.ip("link", "add", "late0", "type", "veth", "peer", "name", "late1")
            late = shared("late0")
            assert late is not first and shared("late0") is late
        with Capture(watcher.netns, "eth0", "arp or icmp6", tmp_path / "s.pcap") as cap:
            for announcer in (first, shared("eth0"), first):
                announcer.send_garp(VIP4)
                announcer.send_unsolicited_na(VIP6)
            cap.wait_frames("arp", 3)
            cap.wait_frames("icmpv6.type == 136", 3)
    finally:
        shared.close()
    assert cap.fields("arp", "arp.src.hw_mac", "arp.src.proto_ipv4") == [[a.mac, str(VIP4)]] * 3
    assert cap.fields("icmpv6.type == 136", "icmpv6.nd.na.target_address") == [[str(VIP6)]] * 3
