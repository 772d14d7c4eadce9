"""VrrpSockets and their endpoints against the real kernel: namespaces on a bridge.

Adverts are real VRRP packets from the project's codec, so the receiving side and tshark
(watching from a third namespace) can both check them. Each node has its own registry
(``VrrpSockets``), run by ``_run`` next to the test's coroutine; endpoints are for VRID 51
unless a test says otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from hadirector.agent.hotloop import HotLoop
from hadirector.net.links import LinkUnavailable
from hadirector.net.vrrp_socket import (
    VRRP_MULTICAST_V4,
    VRRP_MULTICAST_V6,
    IPAddress,
    Received,
    VrrpSocket,
    VrrpSockets,
)
from hadirector.vrrp import codec
from tests.netns.lab import Capture, Lab, Node, bare_lab, wait_for

pytestmark = pytest.mark.netns

A4, B4, C4 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
A6, B6 = "2001:db8:0:1::11", "2001:db8:0:1::12"
VIP4 = ipaddress.IPv4Address("192.0.2.100")
VIP6 = ipaddress.IPv6Address("2001:db8:0:1::100")


# The registry of each node (by namespace name) of the running test.
_registries: dict[str, VrrpSockets] = {}


@pytest.fixture
def lab() -> Iterator[Lab]:
    _registries.clear()
    try:
        with bare_lab() as instance:
            yield instance
    finally:
        _registries.clear()


def _registry(node: Node) -> VrrpSockets:
    return _registries.setdefault(node.netns.name, VrrpSockets())


def _run(main: Callable[[], Awaitable[None]]) -> None:
    """``trio.run(main)`` with every node's registry serving its sockets meanwhile."""
    _run_registries(list(_registries.values()), main)


def _run_registries(
    registries: list[VrrpSockets],
    main: Callable[[], Awaitable[None]],
    loops: Sequence[HotLoop] = (),
) -> None:
    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            for loop in loops:
                await nursery.start(loop.run)
            for registry in registries:
                await nursery.start(registry.run)
            await main()
            nursery.cancel_scope.cancel()

    trio.run(serve)


def _advert(sock: VrrpSocket, dst: IPAddress, priority: int) -> bytes:
    vip = VIP4 if sock.family == 4 else VIP6
    advert = codec.Advert(version=3, vrid=51, priority=priority, interval_cs=100, addresses=(vip,))
    return codec.encode(advert, src=sock.local_address, dst=dst)


async def _receive_within(sock: VrrpSocket, timeout_s: float) -> Received | None:
    with trio.move_on_after(timeout_s):
        return await sock.receive()
    return None


def _open(node: Node, family: int, vrid: int = 51, **kwargs: object) -> VrrpSocket:
    with node.netns.entered():
        return _registry(node).open(interface=node.ifname, family=family, vrid=vrid, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", [4, 6])
def test_multicast_adverts_arrive_with_ttl_255_and_own_are_not_seen(lab: Lab, family: int) -> None:
    a = lab.node("a", ipv4=[f"{A4}/24"], ipv6=[f"{A6}/64"])
    b = lab.node("b", ipv4=[f"{B4}/24"], ipv6=[f"{B6}/64"])
    sock_a = _open(a, family)
    sock_b = _open(b, family)
    group = VRRP_MULTICAST_V4 if family == 4 else VRRP_MULTICAST_V6
    expected_a = ipaddress.ip_address(A4 if family == 4 else a.link_local())
    expected_b = ipaddress.ip_address(B4 if family == 4 else b.link_local())
    assert sock_a.local_address == expected_a
    assert sock_a.destinations == (group,)

    async def main() -> None:
        with trio.fail_after(10):
            from_a = _advert(sock_a, group, 100)
            sent_ns = time.time_ns()
            await sock_a.send(from_a, group)
            got = await sock_b.receive()
            read_ns = time.time_ns()
            # (The kernel's receive time stamp aside: checked below.)
            assert got._replace(stamp_ns=None) == Received(from_a, expected_a, group, 255)
            # The kernel's receive time stamp (SO_TIMESTAMPNS, CLOCK_REALTIME): between the
            # send and the read.
            assert got.stamp_ns is not None
            assert sent_ns <= got.stamp_ns <= read_ns
            codec.decode(got.payload, src=got.src, dst=got.dst)  # the checksum survived
            # A's own advert never comes back to A; B's does reach A.
            assert await _receive_within(sock_a, 0.3) is None
            from_b = _advert(sock_b, group, 200)
            await sock_b.send(from_b, group)
            back = await sock_a.receive()
            assert back._replace(stamp_ns=None) == Received(from_b, expected_b, group, 255)

    try:
        _run(main)
    finally:
        sock_a.close()
        sock_b.close()


def test_send_nowait_repeats_and_a_closed_endpoint_refuses(lab: Lab) -> None:
    """``send_nowait`` keeps its destination's arguments between adverts (by identity):
    the same advert three times, each received as sent, with the peer's IPv4 header parsed
    once and remembered; after ``close`` it refuses."""
    a = lab.node("a", ipv4=[f"{A4}/24"])
    b = lab.node("b", ipv4=[f"{B4}/24"])
    sock_a = _open(a, 4)
    sock_b = _open(b, 4)
    group = VRRP_MULTICAST_V4
    advert = _advert(sock_a, group, 100)

    async def main() -> None:
        with trio.fail_after(10):
            got = []
            for _ in range(3):
                assert sock_a.send_nowait(advert, group)
                got.append(await sock_b.receive())
            assert [g._replace(stamp_ns=None) for g in got] == [
                Received(advert, ipaddress.ip_address(A4), group, 255)
            ] * 3
            assert all(g.stamp_ns is not None for g in got)
            # The same peer's datagrams, but for their IPv4 identification: one parse.
            assert got[0].payload is got[1].payload is got[2].payload
        sock_a.close()
        with pytest.raises(trio.ClosedResourceError):
            sock_a.send_nowait(advert, group)

    try:
        _run(main)
    finally:
        sock_a.close()
        sock_b.close()


@pytest.mark.parametrize("family", [4, 6])
def test_unicast_adverts_reach_only_the_peer(lab: Lab, family: int) -> None:
    a = lab.node("a", ipv4=[f"{A4}/24"], ipv6=[f"{A6}/64"])
    b = lab.node("b", ipv4=[f"{B4}/24"], ipv6=[f"{B6}/64"])
    c = lab.node("c", ipv4=[f"{C4}/24"], ipv6=["2001:db8:0:1::13/64"])
    a_addr = ipaddress.ip_address(A4 if family == 4 else A6)
    b_addr = ipaddress.ip_address(B4 if family == 4 else B6)
    sock_a = _open(a, family, unicast_peers=[b_addr], unicast_src=a_addr)
    sock_b = _open(b, family, unicast_peers=[a_addr], unicast_src=b_addr)
    sock_c = _open(c, family)  # a multicast listener on the same wire
    sockets = [sock_a, sock_b, sock_c]
    assert sock_a.destinations == (b_addr,)
    assert sock_a.local_address == a_addr
    count = 20

    async def main() -> None:
        with trio.fail_after(10):
            for n in range(count):
                await sock_a.send(_advert(sock_a, b_addr, 100 + n), b_addr)
            for n in range(count):
                got = await sock_b.receive()
                assert (got.src, got.dst, got.ttl) == (a_addr, b_addr, 255)
                assert codec.decode(got.payload, src=got.src, dst=got.dst).priority == 100 + n
            await sock_b.send(_advert(sock_b, a_addr, 7), a_addr)
            got = await sock_a.receive()
            assert (got.src, got.dst, got.ttl) == (b_addr, a_addr, 255)
            assert await _receive_within(sock_c, 0.3) is None
            # B also joins the group for another instance: a multicast advert reaches that
            # socket, not B's unicast-mode one.
            sockets.append(sock_b_multicast := _open(b, family))
            group = sock_c.destinations[0]
            await sock_c.send(_advert(sock_c, group, 9), group)
            assert (await sock_b_multicast.receive()).dst == group
            assert await _receive_within(sock_b, 0.3) is None
            # Only the receive socket reads: the send socket must not have queued the
            # unicast adverts addressed to it (it would fill up and never be drained).
            raw = b.netns.run("cat", f"/proc/net/raw{'' if family == 4 else '6'}").stdout
            queues = re.findall(r"^\s*\d+: \S+ \S+ \S+ \S+:(\S+)", raw, re.MULTILINE)
            assert len(queues) == 2 and all(int(q, 16) == 0 for q in queues), raw

    try:
        _run(main)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("family", [4, 6])
def test_link_down_is_link_unavailable_and_sockets_work_again_after(lab: Lab, family: int) -> None:
    a = lab.node("a", ipv4=[f"{A4}/24"])
    b = lab.node("b", ipv4=[f"{B4}/24"])
    sock_a = _open(a, family)
    sock_b = _open(b, family)
    group = sock_a.destinations[0]

    async def deliver(sender: VrrpSocket, receiver: VrrpSocket) -> None:
        # Like VRRP itself, repeat: the bridge forwards again only once its port has seen
        # the carrier come back, a moment after `ip link set up` returns.
        with trio.fail_after(5):
            while True:
                try:
                    await sender.send(_advert(sender, group, 100), group)
                except LinkUnavailable:
                    # IPv6: the link-local source is tentative again (DAD) after "up".
                    await trio.sleep(0.05)
                    continue
                got = await _receive_within(receiver, 0.05)
                if got is not None:
                    assert got.src == sender.local_address
                    return

    async def exchange() -> None:
        await deliver(sock_a, sock_b)
        await deliver(sock_b, sock_a)

    async def main() -> None:
        await exchange()
        for node in (a, b):  # admin down and up on either side: the group is joined again
            node.netns.ip("link", "set", node.ifname, "down")
            if node is a:
                with pytest.raises(LinkUnavailable):
                    await sock_a.send(_advert(sock_a, group, 100), group)
            node.netns.ip("link", "set", node.ifname, "up")
            await exchange()

    try:
        _run(main)
    finally:
        sock_a.close()
        sock_b.close()


def test_open_without_an_address_is_link_unavailable(lab: Lab) -> None:
    a = lab.node("a")
    with pytest.raises(LinkUnavailable), a.netns.entered():
        VrrpSockets().open(interface=a.ifname, family=4, vrid=51)
    with pytest.raises(OSError), a.netns.entered():
        VrrpSockets().open(interface="nosuch0", family=4, vrid=51)
    with pytest.raises(LinkUnavailable, match=r"192\.0\.2\.99"), a.netns.entered():
        VrrpSockets().open(
            interface=a.ifname,
            family=4,
            vrid=51,
            unicast_peers=[ipaddress.IPv4Address(B4)],
            unicast_src=ipaddress.IPv4Address("192.0.2.99"),
        )


@pytest.mark.parametrize("family", [4, 6])
def test_adverts_are_well_formed_on_the_wire(lab: Lab, family: int, tmp_path: Path) -> None:
    a = lab.node("a", ipv4=[f"{A4}/24"])
    watcher = lab.node("w")
    sock = _open(a, family)
    group = VRRP_MULTICAST_V4 if family == 4 else VRRP_MULTICAST_V6

    async def main() -> None:
        for priority in (100, 150, 254):
            await sock.send(_advert(sock, group, priority), group)

    try:
        with Capture(
            watcher.netns, watcher.ifname, "ip proto 112 or ip6", tmp_path / "v.pcap"
        ) as cap:
            _run(main)
            cap.wait_frames("vrrp", 3)
    finally:
        sock.close()
    ttl_field = "ip.ttl" if family == 4 else "ipv6.hlim"
    src_field = "ip.src" if family == 4 else "ipv6.src"
    dst_field = "ip.dst" if family == 4 else "ipv6.dst"
    rows = cap.fields(
        "vrrp",
        ttl_field,
        src_field,
        dst_field,
        "vrrp.prio",
        "vrrp.ip_addr" if family == 4 else "vrrp.ipv6_addr",
    )
    assert [r[0] for r in rows] == ["255"] * 3
    assert {r[1] for r in rows} == {str(sock.local_address)}
    assert {r[2] for r in rows} == {str(group)}
    assert [r[3] for r in rows] == ["100", "150", "254"]
    assert cap.problems() == ""


KEEPALIVED_CONF = """\
global_defs {{
    router_id {router_id}
    vrrp_version 3
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 200
    advert_int 0.1
    virtual_ipaddress {{
        {vip}
    }}
}}
"""


@pytest.mark.keepalived
@pytest.mark.parametrize("family", [4, 6])
def test_keepalived_adverts_are_received(lab: Lab, family: int, tmp_path: Path) -> None:
    if shutil.which("keepalived") is None:
        pytest.skip("needs keepalived")
    a = lab.node("a", ipv4=[f"{A4}/24"])
    k = lab.node("k", ipv4=[f"{B4}/24"])
    vip = f"{VIP4}/32" if family == 4 else f"{VIP6}/64"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF.format(router_id="k", vip=vip))
    sock = _open(a, family)
    k.netns.spawn(
        "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
        "--pid", str(tmp_path / "k.pid"), "--vrrp_pid", str(tmp_path / "kv.pid"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    expected_src = ipaddress.ip_address(B4 if family == 4 else k.link_local())
    group = VRRP_MULTICAST_V4 if family == 4 else VRRP_MULTICAST_V6

    async def main() -> None:
        with trio.fail_after(15):  # keepalived starts as backup and claims master after ~0.4 s
            got = await sock.receive()
        assert (got.src, got.dst, got.ttl) == (expected_src, group, 255)
        advert = codec.decode(got.payload, src=got.src, dst=got.dst)
        assert (advert.vrid, advert.priority, advert.interval_cs) == (51, 200, 10)
        assert advert.addresses == (VIP4 if family == 4 else VIP6,)

    try:
        _run(main)
    finally:
        sock.close()


def _queued_bytes(node: Node, sock: socket.socket, family: int) -> int:
    """What the kernel holds in ``sock``'s receive queue (/proc/net/raw's rx_queue)."""
    table = node.netns.run("cat", f"/proc/net/raw{'' if family == 4 else '6'}").stdout
    inode = str(os.fstat(sock.fileno()).st_ino)
    for line in table.splitlines()[1:]:
        fields = line.split()
        if fields[9] == inode:
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"socket {inode} not in {node.netns.name}'s raw table")


@pytest.mark.parametrize("family", [4, 6])
def test_a_batch_reads_every_queued_datagram_then_stops(lab: Lab, family: int) -> None:
    """One ``read_batch`` hands over every datagram the receive socket holds, in order, and
    stops when it holds no more (it asks the queue, SIOCINQ, instead of reading until a
    read fails): nothing is left behind for a later wake-up."""
    a = lab.node("a", ipv4=[f"{A4}/24"], ipv6=[f"{A6}/64"])
    b = lab.node("b", ipv4=[f"{B4}/24"], ipv6=[f"{B6}/64"])
    sock_a = _open(a, family)
    sock_b = _open(b, family)
    try:
        group = VRRP_MULTICAST_V4 if family == 4 else VRRP_MULTICAST_V6
        got: list[Received] = []
        sock_b.listen(got.append)  # no receive task runs: only read_batch below reads
        receiver = sock_b._port.receiver
        adverts = [_advert(sock_a, group, priority) for priority in (100, 101, 102)]
        assert sock_a.send_nowait(adverts[0], group)
        one = wait_for(
            lambda: _queued_bytes(b, receiver, family) or None, 10, "the first datagram queued"
        )
        for advert in adverts[1:]:
            assert sock_a.send_nowait(advert, group)
        wait_for(
            lambda: _queued_bytes(b, receiver, family) >= 3 * one, 10, "three datagrams queued"
        )
        assert sock_b._port.read_batch() is None
        assert [g.payload for g in got] == adverts
        assert _queued_bytes(b, receiver, family) == 0
    finally:
        sock_a.close()
        sock_b.close()


def test_a_repeated_datagram_takes_the_listeners_shortcut(lab: Lab) -> None:
    """IPv4: a datagram the same as the last one of its VRID (a peer's next advert: only
    the IP ID and checksum differ) goes to the endpoint's ``again`` with its kernel time
    stamp, no ``Received`` built; when ``again`` declines it, the listener gets it as any
    other; a different datagram, or one after another endpoint of the VRID opened, goes
    to the listener (the shortcut's memory is forgotten)."""
    a = lab.node("a", ipv4=[f"{A4}/24"])
    b = lab.node("b", ipv4=[f"{B4}/24"])
    sock_a = _open(a, 4)
    sock_b = _open(b, 4)
    other: VrrpSocket | None = None
    group = VRRP_MULTICAST_V4
    got: list[tuple[str, bytes, int | None]] = []
    answers: list[bool] = []

    def again(packet: codec.Ipv4Packet, stamp_ns: int | None) -> bool:
        assert packet.src == ipaddress.ip_address(A4) and packet.dst == group
        if answers.pop(0):
            got.append(("again", packet.payload, stamp_ns))
            return True
        return False

    def listener(received: Received) -> None:
        got.append(("listener", received.payload, received.stamp_ns))

    def exchange(advert: bytes, answer: bool | None = None) -> tuple[str, bytes, int | None]:
        if answer is not None:
            answers.append(answer)
        before = len(got)
        assert sock_a.send_nowait(advert, group)
        receiver = sock_b._port.receiver
        wait_for(lambda: _queued_bytes(b, receiver, 4) or None, 10, "the datagram queued")
        assert sock_b._port.read_batch() is None
        assert len(got) == before + 1 and answers == []
        return got[-1]

    try:
        sock_b.listen(listener, again)  # no receive task runs: only read_batch reads
        p100, p101 = _advert(sock_a, group, 100), _advert(sock_a, group, 101)
        assert exchange(p100)[:2] == ("listener", p100)
        assert exchange(p100, True)[:2] == ("again", p100)
        declined = exchange(p100, False)
        assert declined[:2] == ("listener", p100)
        assert exchange(p101)[:2] == ("listener", p101)
        assert exchange(p101, True)[:2] == ("again", p101)
        stamps = [stamp for _how, _payload, stamp in got]
        assert all(stamp is not None for stamp in stamps)
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        # Another endpoint of VRID 51 on b, without a shortcut, and b's first one opened
        # again after it: both listeners get every datagram, the same again included
        # (the shortcut needs every endpoint of the VRID to have one).
        other = _open(b, 4)
        also: list[Received] = []
        other.listen(also.append)
        sock_b.close()
        sock_b = _open(b, 4)
        sock_b.listen(listener, again)
        assert exchange(p101)[:2] == ("listener", p101)
        assert exchange(p101)[:2] == ("listener", p101)
        assert [r.payload for r in also] == [p101, p101]
        assert (sock_b._port.unknown_vrid, sock_b._port.malformed) == (0, 0)
    finally:
        for sock in (sock_a, sock_b, other):
            if sock is not None:
                sock.close()


def _raw_sockets(node: Node, family: int) -> int:
    """Raw sockets of this process in ``node``'s namespace (the kernel's table there)."""
    table = node.netns.run("cat", f"/proc/net/raw{'' if family == 4 else '6'}").stdout
    inodes = {line.split()[9] for line in table.splitlines()[1:] if line.strip()}
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue  # closed meanwhile (the directory's own fd)
        match = re.fullmatch(r"socket:\[(\d+)\]", str(target))
        if match:
            mine.add(match.group(1))
    return len(inodes & mine)


@pytest.mark.parametrize("reader", ["trio", "thread"])
@pytest.mark.parametrize("unicast", [False, True], ids=["multicast", "unicast"])
@pytest.mark.parametrize("family", [4, 6])
def test_one_shared_socket_per_interface_receives_only_its_vrids(
    lab: Lab, family: int, unicast: bool, reader: str
) -> None:
    """Two agents' worth of VRIDs on one link: each registry's one receive socket gets only
    the VRIDs of its endpoints (the kernel filter: nothing reaches Python as an unknown VRID),
    and follows a reload (one VRID closed, another opened). ``thread``: the first agent's
    socket is read by the hot path's thread (agent/hotloop.py), as in the agent."""
    a = lab.node("a", ipv4=[f"{A4}/24"], ipv6=[f"{A6}/64"])
    b = lab.node("b", ipv4=[f"{B4}/24"], ipv6=[f"{B6}/64"])
    a_addr = ipaddress.ip_address(A4 if family == 4 else A6)
    b_addr = ipaddress.ip_address(B4 if family == 4 else B6)
    mode: dict[str, Any] = {}
    if unicast:
        mode = {"unicast_peers": [b_addr], "unicast_src": a_addr}
    loops = [HotLoop()] if reader == "thread" else []
    first, second = VrrpSockets(*loops), VrrpSockets()  # two agents on dir-a
    with a.netns.entered():
        ours = {v: first.open(interface=a.ifname, family=family, vrid=v, **mode) for v in (1, 2, 3)}
        theirs = {
            v: second.open(interface=a.ifname, family=family, vrid=v, **mode) for v in (4, 5, 6)
        }
    peer_mode = {"unicast_peers": [a_addr], "unicast_src": b_addr} if unicast else {}
    peer = VrrpSockets()
    with b.netns.entered():
        senders = {
            v: peer.open(interface=b.ifname, family=family, vrid=v, **peer_mode)
            for v in range(1, 8)
        }
    if family == 6 and not unicast:
        a.wait_ipv6_ready()
        b.wait_ipv6_ready()
    # Three endpoints, one receive and one send socket, for each agent.
    assert [p.endpoint_count for p in first.ports()] == [3]
    assert _raw_sockets(a, family) == 4

    def advert(vrid: int, sender: VrrpSocket) -> bytes:
        vip = VIP4 if family == 4 else VIP6
        body = codec.Advert(version=3, vrid=vrid, priority=100, interval_cs=100, addresses=(vip,))
        return codec.encode(body, src=sender.local_address, dst=sender.destinations[0])

    async def send_all(vrids: Sequence[int]) -> None:
        for vrid in vrids:
            sender = senders[vrid]
            await sender.send(advert(vrid, sender), sender.destinations[0])

    async def heard(endpoint: VrrpSocket) -> int:
        with trio.fail_after(10):
            got = await endpoint.receive()
        return codec.decode(got.payload, src=got.src, dst=got.dst).vrid

    async def main() -> None:
        for _ in range(5):
            await send_all(range(1, 8))
            for vrid, endpoint in (ours | theirs).items():
                assert await heard(endpoint) == vrid
        # A reload on the first agent: VRID 2 goes, VRID 7 comes.
        ours.pop(2).close()
        with a.netns.entered():
            ours[7] = first.open(interface=a.ifname, family=family, vrid=7, **mode)
        await send_all(range(1, 8))
        for vrid, endpoint in ours.items():
            assert await heard(endpoint) == vrid
        # The other VRIDs were on the wire all along (the second agent heard its own), and
        # none of them reached Python on the first agent's socket.
        for port in first.ports() + second.ports():
            assert (port.unknown_vrid, port.malformed) == (0, 0)
        assert _raw_sockets(a, family) == 4
        for endpoint in theirs.values():
            endpoint.close()
        assert _raw_sockets(a, family) == 2  # closed with the last endpoint
        assert second.ports() == []

    try:
        _run_registries([first, second, peer], main, loops)
    finally:
        for endpoint in [*ours.values(), *theirs.values(), *senders.values()]:
            endpoint.close()


def test_the_group_is_sent_to_by_a_plain_send_and_other_pairs_keep_their_source(
    lab: Lab,
) -> None:
    """The first IPv4 multicast (source, destination) of a port becomes its send socket's
    own (multicast source and connected peer): those adverts go out with ``send``. A
    unicast endpoint on the same port, from another of the node's addresses, still sends
    with its own source (``IP_PKTINFO`` over the socket's): the peer hears each advert
    from the source its endpoint has, again after the other pair has sent."""
    a = lab.node("a", ipv4=[f"{A4}/24", f"{C4}/24"])
    b = lab.node("b", ipv4=[f"{B4}/24"])
    group_sock = _open(a, 4, vrid=51)
    peer_sock = _open(
        a,
        4,
        vrid=52,
        unicast_peers=[ipaddress.ip_address(B4)],
        unicast_src=ipaddress.ip_address(C4),
    )
    hear_group = _open(b, 4, vrid=51)
    hear_peer = _open(b, 4, vrid=52, unicast_peers=[ipaddress.ip_address(C4)])
    port = _registry(a).ports()[0]
    group = VRRP_MULTICAST_V4
    to_group = _advert(group_sock, group, 100)
    vip = codec.Advert(version=3, vrid=52, priority=100, interval_cs=100, addresses=(VIP4,))
    to_peer = codec.encode(vip, src=peer_sock.local_address, dst=ipaddress.ip_address(B4))

    async def main() -> None:
        with trio.fail_after(10):
            for _ in range(2):
                assert group_sock.send_nowait(to_group, group)
                assert port.connected_args is not None
                got = await hear_group.receive()
                assert (got.payload, got.src, got.dst) == (
                    to_group,
                    ipaddress.ip_address(A4),
                    group,
                )
                assert peer_sock.send_nowait(to_peer, ipaddress.ip_address(B4))
                got = await hear_peer.receive()
                assert (got.payload, got.src) == (to_peer, ipaddress.ip_address(C4))
                assert got.dst == ipaddress.ip_address(B4)
            # The arguments of 300 other pairs (more than the cache holds: it is emptied
            # on the way): the group's are still the connected ones, sent with ``send``.
            src = group_sock.local_address
            for i in range(300):
                port._send_args(src, ipaddress.ip_address(f"10.99.{i >> 8}.{i & 255}"))
            assert port._send_args(src, group) is port.connected_args
            assert group_sock.send_nowait(to_group, group)
            got = await hear_group.receive()
            assert (got.payload, got.src) == (to_group, ipaddress.ip_address(A4))

    try:
        _run(main)
    finally:
        for sock in (group_sock, peer_sock, hear_group, hear_peer):
            sock.close()
