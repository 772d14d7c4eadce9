"""AddressManager against the real kernel, inside a namespace; checked with iproute2."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator

import pytest
import trio

from hadirector.config.schema import VirtualAddress
from hadirector.errors import KernelError
from hadirector.net.addresses import AddressManager, AddressRemoved
from hadirector.net.netlink import NetlinkSocket
from tests.netns.lab import Lab, Node, bare_lab

pytestmark = pytest.mark.netns


@pytest.fixture
def lab() -> Iterator[Lab]:
    with bare_lab() as instance:
        yield instance


def vip(text: str, dev: str = "eth0", label: str | None = None) -> VirtualAddress:
    return VirtualAddress(ipaddress.ip_interface(text), dev, label)


def _manager(node: Node) -> AddressManager:
    manager = AddressManager()
    with node.netns.entered():
        trio.run(manager.open)
    return manager


def _ip_addr(node: Node, dev: str = "eth0") -> str:
    return node.netns.ip("addr", "show", "dev", dev).stdout


def test_ipv4_add_and_remove_are_idempotent_and_keep_the_label(lab: Lab) -> None:
    a = lab.node("a", ipv4=["192.0.2.11/24"])
    manager = _manager(a)
    v = vip("192.0.2.100/32", label="eth0:vip")

    async def main() -> None:
        assert await manager.add(v) is True
        assert re.search(r"inet 192\.0\.2\.100/32 .*eth0:vip", _ip_addr(a))
        assert await manager.add(v) is False
        listed = await manager.list("eth0")
        assert [(i.interface, i.label) for i in listed if i.interface.version == 4] == [
            (ipaddress.ip_interface("192.0.2.11/24"), "eth0"),
            (ipaddress.ip_interface("192.0.2.100/32"), "eth0:vip"),
        ]
        assert await manager.remove(v) is True
        assert "192.0.2.100" not in _ip_addr(a)
        assert await manager.remove(v) is False

    try:
        trio.run(main)
    finally:
        manager.close()


def test_ipv6_vip_is_added_without_dad(lab: Lab) -> None:
    a = lab.node("a", dad=True)
    manager = _manager(a)

    async def main() -> None:
        # DAD is on in this namespace: an address added the usual way is tentative...
        a.netns.ip("addr", "add", "2001:db8:0:1::5/64", "dev", "eth0")
        assert re.search(r"2001:db8:0:1::5/64 .*tentative", _ip_addr(a))
        # ...while the VIP is usable at once.
        assert await manager.add(vip("2001:db8:0:1::100/64")) is True
        line = next(x for x in _ip_addr(a).splitlines() if "2001:db8:0:1::100/64" in x)
        assert "tentative" not in line and "nodad" in line
        (info,) = [
            i for i in await manager.list("eth0") if str(i.interface) == "2001:db8:0:1::100/64"
        ]
        assert info.usable and info.label is None
        assert await manager.add(vip("2001:db8:0:1::100/64")) is False
        assert await manager.remove(vip("2001:db8:0:1::100/64")) is True
        assert await manager.remove(vip("2001:db8:0:1::100/64")) is False

    try:
        trio.run(main)
    finally:
        manager.close()


def test_kernel_refusals_name_the_address_and_device(lab: Lab) -> None:
    a = lab.node("a")
    manager = _manager(a)

    async def main() -> None:
        with pytest.raises(KernelError, match=r"192\.0\.2\.100/32 to nosuch0"):
            await manager.add(vip("192.0.2.100/32", dev="nosuch0"))
        assert await manager.remove(vip("192.0.2.100/32", dev="nosuch0")) is False
        # A label longer than IFNAMSIZ is refused by the kernel's attribute policy.
        with pytest.raises(KernelError, match=r"192\.0\.2\.101/32 to eth0"):
            await manager.add(vip("192.0.2.101/32", label="eth0:" + "x" * 20))
        with pytest.raises(KernelError, match="nosuch0"):
            await manager.list("nosuch0")

    try:
        trio.run(main)
    finally:
        manager.close()


def test_add_now_adds_an_ipv4_vip_in_the_call_and_leaves_ipv6_to_add(lab: Lab) -> None:
    """``add_now`` (a takeover in the hot path's thread): the IPv4 VIP is there when the
    call returns, without trio (called outside any run); False when it was there; the
    kernel's refusals as ``add``'s; an IPv6 VIP is not its to add (None, nothing done). The
    VIP it added is watched like ``add``'s: deleted behind our back, it is reported."""
    a = lab.node("a")
    manager = _manager(a)
    v = vip("192.0.2.100/32", label="eth0:vip")
    try:
        assert manager.add_now(v) is True
        assert re.search(r"inet 192\.0\.2\.100/32 .*eth0:vip", _ip_addr(a))
        assert manager.add_now(v) is False
        with pytest.raises(KernelError, match=r"192\.0\.2\.101/32 to nosuch0"):
            manager.add_now(vip("192.0.2.101/32", dev="nosuch0"))
        with pytest.raises(KernelError, match=r"192\.0\.2\.102/32 to eth0"):
            manager.add_now(vip("192.0.2.102/32", label="eth0:" + "x" * 20))
        assert manager.add_now(vip("2001:db8:0:1::100/64")) is None
        assert "2001:db8:0:1::100" not in _ip_addr(a)

        # Subscribed since open(): the notification waits for watch() in the socket.
        a.netns.ip("addr", "del", "192.0.2.100/32", "dev", "eth0")

        async def first_removed() -> AddressRemoved:
            async for removed in manager.watch():
                return removed
            raise AssertionError("watch() ended")

        removed = trio.run(first_removed)
        assert str(removed) == "192.0.2.100/32" and removed.dev == "eth0"
    finally:
        manager.close()


def test_watch_reports_vips_deleted_behind_our_back_only(lab: Lab) -> None:
    a = lab.node("a", ipv4=["192.0.2.11/24"])
    manager = _manager(a)
    mine4, mine6 = vip("192.0.2.100/32"), vip("2001:db8:0:1::100/64")
    own_removal = vip("192.0.2.101/32")
    last = vip("192.0.2.103/32")  # removed by hand last: its report closes the sequence

    async def main() -> None:
        events: list[AddressRemoved] = []

        async def collect() -> None:
            async for event in manager.watch():
                events.append(event)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect)
                for v in (mine4, mine6, own_removal, last):
                    assert await manager.add(v)
                assert await manager.remove(own_removal)  # ours: not reported
                a.netns.ip("addr", "add", "192.0.2.102/32", "dev", "eth0")
                a.netns.ip("addr", "del", "192.0.2.102/32", "dev", "eth0")  # never held
                a.netns.ip("addr", "del", "192.0.2.100/32", "dev", "eth0")
                a.netns.ip("addr", "del", "2001:db8:0:1::100/64", "dev", "eth0")
                a.netns.ip("addr", "del", "192.0.2.103/32", "dev", "eth0")
                # The kernel reports in order on one socket: once the last removal is in,
                # every earlier change has been seen (and nothing else may be among them).
                while not events or events[-1].vip != last:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        assert [str(e) for e in events] == [
            "192.0.2.100/32",
            "2001:db8:0:1::100/64",
            "192.0.2.103/32",
        ]
        assert events[0].vip == mine4 and events[0].dev == "eth0"
        # Re-adding puts it back under watch.
        assert await manager.add(mine4) is True

    try:
        trio.run(main)
    finally:
        manager.close()


def test_interface_recreated_or_renamed_is_resolved_again(lab: Lab) -> None:
    a = lab.node("a")
    a.netns.ip("link", "add", "d0", "type", "veth", "peer", "name", "d0p")
    manager = _manager(a)
    v = vip("192.0.2.100/32", dev="d0")

    async def main() -> None:
        first = await manager.index_of("d0")
        assert await manager.add(v)
        a.netns.ip("link", "del", "d0")
        a.netns.ip("link", "add", "d0", "type", "veth", "peer", "name", "d0p")
        assert await manager.index_of("d0") != first
        assert await manager.add(v) is True
        assert "192.0.2.100/32" in _ip_addr(a, "d0")
        # Rename d0 away and make a new d0: the name must follow the new link.
        a.netns.ip("link", "set", "d0", "name", "d1")
        a.netns.ip("link", "add", "d0", "type", "veth", "peer", "name", "d2p")
        assert await manager.add(v) is True
        assert "192.0.2.100/32" in _ip_addr(a, "d0")
        assert "192.0.2.100/32" in _ip_addr(a, "d1")

    try:
        trio.run(main)
    finally:
        manager.close()


def test_many_concurrent_changes_share_one_socket(lab: Lab) -> None:
    a = lab.node("a")
    manager = _manager(a)
    vips = [vip(f"198.51.100.{n}/32") for n in range(1, 65)]

    async def main() -> None:
        results: list[bool] = []

        async def add(v: VirtualAddress) -> None:
            results.append(await manager.add(v))

        async with trio.open_nursery() as nursery:
            for v in vips:
                nursery.start_soon(add, v)
        assert results == [True] * len(vips)
        present = {str(i.interface) for i in await manager.list("eth0")}
        assert present >= {str(v.interface) for v in vips}

    try:
        trio.run(main)
    finally:
        manager.close()


class _Steps(trio.abc.Instrument):
    """Counts the times trio resumes one task (each pass of its scheduler for it)."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


def test_a_vip_change_takes_one_pass_of_the_scheduler(lab: Lab) -> None:
    """The kernel answers an address change inside the send: the request yields once (its
    checkpoint) and sends and reads its answer without a scheduler pass for each, so a
    taker's VIP is added, and a sync group's next VIP follows, without waiting for trio's
    other tasks twice more. A dump still yields between its parts."""
    a = lab.node("a")
    manager = _manager(a)
    first, second = vip("198.51.100.1/32"), vip("198.51.100.2/32")

    async def main() -> None:
        assert await manager.add(first) is True  # the socket opened, the index known
        steps = _Steps(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(steps)
        try:
            assert await manager.add(second) is True
            added = steps.steps
            assert await manager.add(second) is False  # EEXIST, an error answer
            refused = steps.steps - added
            assert await manager.remove(second) is True
            removed = steps.steps - added - refused
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert (added, refused, removed) == (1, 1, 1)
        assert "198.51.100.1/32" in _ip_addr(a)
        assert "198.51.100.2/32" not in _ip_addr(a)

    try:
        trio.run(main)
    finally:
        manager.close()


def test_watch_survives_lost_notifications_and_a_failing_relisting(lab: Lab) -> None:
    """ENOBUFS, then a re-listing that fails for a while: watch() waits, re-lists, reports."""
    a = lab.node("a", ipv4=["192.0.2.11/24"])
    manager = _manager(a)
    mine = vip("192.0.2.100/32")

    async def main() -> None:
        assert await manager.add(mine)
        assert manager._events is not None and manager._requests is not None
        # A tiny receive buffer makes the kernel drop notifications; a closed request
        # socket stands for a listing the kernel cannot answer now.
        sock = socket.socket(fileno=manager._events.fileno())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        sock.detach()
        working = manager._requests
        broken = NetlinkSocket.open()
        broken.close()
        manager._requests = broken
        for i in range(32):
            a.netns.ip("addr", "add", f"198.51.100.{i + 1}/32", "dev", "eth0")
        a.netns.ip("addr", "del", "192.0.2.100/32", "dev", "eth0")

        async def repair() -> None:
            await trio.sleep(0.5)
            manager._requests = working

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(repair)
                event = await manager.watch().__anext__()
        assert event.vip == mine

    try:
        trio.run(main)
    finally:
        manager.close()
