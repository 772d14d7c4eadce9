"""LinkWatcher against the real kernel: carrier loss on a veth, admin down, delete, rename."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from hadirector.net.links import LinkChange, LinkWatcher
from hadirector.net.netlink import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    RTM_NEWLINK,
    NetlinkSocket,
    ifinfomsg,
    link_by_name_blocking,
)
from tests.netns.lab import Lab, Node, bare_lab

pytestmark = pytest.mark.netns

IFF_UP = 0x1


@pytest.fixture
def lab() -> Iterator[Lab]:
    with bare_lab() as instance:
        yield instance


def _watcher(node: Node) -> LinkWatcher:
    watcher = LinkWatcher()
    with node.netns.entered():
        trio.run(watcher.open)
    return watcher


async def _next_change(changes: object, timeout_s: float = 5.0) -> LinkChange:
    with trio.fail_after(timeout_s):
        return await changes.__anext__()  # type: ignore[attr-defined, no-any-return]


def test_carrier_loss_on_the_peer_is_seen_at_once(lab: Lab) -> None:
    a = lab.node("a")
    watcher = _watcher(a)
    with lab.switch.entered():
        port_index = link_by_name_blocking(a.port).index
        switch_netlink = NetlinkSocket.open()

    async def set_port(up: bool) -> None:
        body = ifinfomsg(index=port_index, flags=IFF_UP if up else 0, change=IFF_UP)
        await switch_netlink.request(body, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)

    async def main() -> list[float]:
        assert watcher.is_up("eth0")
        changes = watcher.changes()
        delays: list[float] = []
        for up in (False, True, False, True):
            started = time.perf_counter()
            await set_port(up)
            change = await _next_change(changes)
            delays.append(time.perf_counter() - started)
            assert change == LinkChange("eth0", up)
            assert watcher.is_up("eth0") is up
        return delays

    try:
        delays = trio.run(main)
    finally:
        watcher.close()
        switch_netlink.close()
    # Measured, not asserted (a loaded CI core can delay any one flip): ~1-10 ms here.
    print(f"carrier flips seen after {[round(d * 1000, 1) for d in delays]} ms")


def test_admin_down_delete_create_and_rename_are_reported(lab: Lab) -> None:
    a = lab.node("a")
    watcher = _watcher(a)

    async def main() -> None:
        changes = watcher.changes()
        assert not watcher.is_up("nosuch0")
        a.netns.ip("link", "set", "eth0", "down")
        assert await _next_change(changes) == LinkChange("eth0", False)
        a.netns.ip("link", "set", "eth0", "up")
        assert await _next_change(changes) == LinkChange("eth0", True)
        # A new veth pair inside the node: both ends up -> both report up.
        a.netns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
        a.netns.ip("link", "set", "v1", "up")
        a.netns.ip("link", "set", "v0", "up")
        seen = {await _next_change(changes), await _next_change(changes)}
        assert seen == {LinkChange("v0", True), LinkChange("v1", True)}
        # Rename needs the link down: v0 goes down (so v1 loses carrier), then appears as
        # w0 once up again (and v1 regains carrier).
        a.netns.ip("link", "set", "v0", "down")
        seen = {await _next_change(changes), await _next_change(changes)}
        assert seen == {LinkChange("v0", False), LinkChange("v1", False)}
        a.netns.ip("link", "set", "v0", "name", "w0")
        a.netns.ip("link", "set", "w0", "up")
        seen = {await _next_change(changes), await _next_change(changes)}
        assert seen == {LinkChange("w0", True), LinkChange("v1", True)}
        assert watcher.is_up("w0") and not watcher.is_up("v0")
        # Deleting one end removes both.
        a.netns.ip("link", "del", "w0")
        seen = {await _next_change(changes), await _next_change(changes)}
        assert seen == {LinkChange("w0", False), LinkChange("v1", False)}
        assert not watcher.is_up("w0")

    try:
        trio.run(main)
    finally:
        watcher.close()


def test_is_up_does_not_swallow_changes(lab: Lab) -> None:
    a = lab.node("a")
    watcher = LinkWatcher()
    with a.netns.entered():
        watcher.open_blocking()
    try:
        a.set_carrier(False)
        deadline = time.monotonic() + 5
        while watcher.is_up("eth0"):
            assert time.monotonic() < deadline
            time.sleep(0.005)

        async def main() -> None:
            # The flip that is_up() read first is still delivered to changes().
            assert await _next_change(watcher.changes()) == LinkChange("eth0", False)

        trio.run(main)
    finally:
        watcher.close()


def test_lost_notifications_neither_block_nor_break_is_up(lab: Lab) -> None:
    """After ENOBUFS, is_up() answers at once from what it knew; changes() re-dumps."""
    a = lab.node("a")
    watcher = LinkWatcher()
    with a.netns.entered():
        watcher.open_blocking()
    try:
        assert watcher.is_up("eth0")
        assert watcher._sock is not None and watcher._sync_requests is not None
        # A tiny receive buffer makes the kernel drop notifications; a closed request
        # socket stands for a dump that cannot be answered now.
        sock = socket.socket(fileno=watcher._sock.fileno())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        sock.detach()
        watcher._sync_requests.close()
        for i in range(16):
            a.netns.ip("link", "add", f"d{i}", "type", "veth", "peer", "name", f"e{i}")
        a.set_carrier(False)
        time.sleep(0.2)
        started = time.monotonic()
        watcher.is_up("eth0")  # last known state, whatever it is: no exception, no wait
        watcher.is_up("eth0")
        assert time.monotonic() - started < 0.05

        async def main() -> None:
            changes = watcher.changes()
            while await _next_change(changes) != LinkChange("eth0", False):
                pass

        trio.run(main)
        assert not watcher.is_up("eth0")
    finally:
        watcher.close()


def test_blocking_request_on_a_descriptor_above_1023() -> None:
    """An agent with a few hundred instances holds over a thousand descriptors: a blocking
    netlink request must work on a socket numbered past select()'s limit."""
    import os

    from hadirector.net.netlink import addresses_blocking

    fillers = []
    try:
        while not fillers or fillers[-1] < 1100:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
        sock = NetlinkSocket.open()
        try:
            assert sock.fileno() > 1023
            found = addresses_blocking(socket.AF_INET, socket.if_nametoindex("lo"), sock=sock)
            assert "127.0.0.1" in [str(a.interface.ip) for a in found]
        finally:
            sock.close()
    finally:
        for fd in fillers:
            os.close(fd)


def test_kernel_dumps_decode_as_pyroute2_decodes_them(lab: Lab) -> None:
    """Real link and address dumps (veth, bridge, loopback; IPv4 with a label, IPv6 global
    and link-local): netlink.py's reading of every message is pyroute2's."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    from hadirector.net.netlink import (
        NLM_F_DUMP,
        RTM_GETADDR,
        RTM_GETLINK,
        AddressInfo,
        LinkInfo,
        Message,
        _encode,
        address_dump_request,
        ifinfomsg,
        request_blocking,
    )

    a = lab.node("a", ipv4=["192.0.2.11/24"], ipv6=["2001:db8::11/64"])
    a.netns.ip("addr", "add", "192.0.2.100/32", "dev", "eth0", "label", "eth0:vip")
    dump = NLM_F_REQUEST | NLM_F_DUMP

    def pyroute2_view(cls: Any, message: Message) -> Any:
        body = cls(_encode(message.payload, message.msg_type, message.flags, message.seq))
        body.decode()
        return body

    seen: dict[str, list[AddressInfo]] = {}
    for netns in (a.netns, lab.switch):
        with netns.entered():
            links = request_blocking(ifinfomsg(), RTM_GETLINK, dump)
            addresses = [
                m
                for family in (socket.AF_INET, socket.AF_INET6)
                for m in request_blocking(address_dump_request(family), RTM_GETADDR, dump)
            ]
        assert links
        for message in links:
            ref = pyroute2_view(ifinfmsg, message)
            assert LinkInfo.from_message(message) == LinkInfo(
                index=int(ref["index"]),
                name=str(ref.get_attr("IFLA_IFNAME") or ""),
                flags=int(ref["flags"]),
                mac=ref.get_attr("IFLA_ADDRESS"),
            )
        for message in addresses:
            ref = pyroute2_view(ifaddrmsg, message)
            raw = ref.get_attr("IFA_LOCAL") or ref.get_attr("IFA_ADDRESS")
            wide = ref.get_attr("IFA_FLAGS")
            assert AddressInfo.from_message(message) == AddressInfo(
                index=int(ref["index"]),
                interface=ipaddress.ip_interface(f"{raw}/{ref['prefixlen']}"),
                label=ref.get_attr("IFA_LABEL"),
                flags=int(wide if wide is not None else ref["flags"]),
                scope=int(ref["scope"]),
            )
        seen[netns.name] = [AddressInfo.from_message(m) for m in addresses]
    # What the comparison covered in the director's namespace: a label, both families.
    on_a = {str(info.interface): info.label for info in seen[a.netns.name]}
    assert on_a["192.0.2.100/32"] == "eth0:vip"
    assert on_a["2001:db8::11/64"] is None
    assert any(ipaddress.ip_interface(x).ip.is_link_local for x in on_a)
