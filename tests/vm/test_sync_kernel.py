"""The kernel's connection-sync daemons driven by SyncKernel (inside the VM).

Two namespaces joined by a veth pair stand for two directors: a master daemon in one and
a backup daemon in the other, read back through GET_DAEMON and through ``ipvsadm --list
--daemon``; then a connection made through the master's IPVS shows up on the backup.
"""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator

import pytest
import trio

from hadirector.ipvs import model
from hadirector.ipvs.kernel import IpvsKernel, IpvsOpError
from hadirector.ipvs.model import Dest, DestKey, Service, ServiceKey
from hadirector.ipvs.types import SyncDaemon, SyncState
from hadirector.sync.kernel import SyncKernel

from .lvslab import Lab, in_netns, run

pytestmark = pytest.mark.vm


@pytest.fixture
def directors(ipvs_modules: None) -> Iterator[tuple[str, str]]:
    """Namespaces a and b, linked by veth a0 (192.0.2.1) <-> b0 (192.0.2.2)."""
    with Lab() as lab:
        a, b = lab.netns("a"), lab.netns("b")
        lab.link(a, "a0", b, "b0")
        for ns, dev, addr in ((a, "a0", "192.0.2.1/24"), (b, "b0", "192.0.2.2/24")):
            lab.ip(ns, "addr", "add", addr, "dev", dev)
        yield a, b


def test_master_and_backup_start_read_back_and_stop(directors: tuple[str, str]) -> None:
    a, b = directors

    async def main() -> tuple[list[SyncDaemon], list[SyncDaemon], list[SyncDaemon]]:
        async with IpvsKernel(a) as ka, IpvsKernel(b) as kb:
            sync_a, sync_b = SyncKernel(ka), SyncKernel(kb)
            await sync_a.start_daemon(SyncState.MASTER, "a0", 7)
            await sync_b.start_daemon(
                SyncState.BACKUP, "b0", 7, mcast_group="239.1.2.3", mcast_port=8849, mcast_ttl=3
            )
            read_a, read_b = await sync_a.daemons(), await sync_b.daemons()
            await sync_a.stop_daemon(SyncState.MASTER)
            await sync_b.stop_daemon(SyncState.BACKUP)
            return read_a, read_b, await sync_a.daemons() + await sync_b.daemons()

    # ipvsadm is read while the daemons run, from a second trio run.
    read_a, read_b, after_stop = trio.run(main)
    [master] = read_a
    [backup] = read_b
    assert (master.state, master.ifname, master.syncid) == (SyncState.MASTER, "a0", 7)
    assert (master.mcast_group, master.mcast_port, master.mcast_ttl) == ("224.0.0.81", 8848, 1)
    assert master.sync_maxlen > 0
    assert (backup.state, backup.ifname, backup.syncid) == (SyncState.BACKUP, "b0", 7)
    assert (backup.mcast_group, backup.mcast_port, backup.mcast_ttl) == ("239.1.2.3", 8849, 3)
    assert after_stop == []


def test_ipvsadm_sees_the_daemons_we_start(directors: tuple[str, str]) -> None:
    a, b = directors

    async def start() -> None:
        async with IpvsKernel(a) as ka, IpvsKernel(b) as kb:
            await SyncKernel(ka).start_daemon(SyncState.MASTER, "a0", 3, mcast_port=8850)
            await SyncKernel(kb).start_daemon(SyncState.BACKUP, "b0", 3, mcast_port=8850)

    trio.run(start)
    listing_a = in_netns(a, "ipvsadm", "--list", "--daemon")
    listing_b = in_netns(b, "ipvsadm", "--list", "--daemon")
    assert "master sync daemon (mcast=a0, syncid=3" in listing_a
    assert "port=8850" in listing_a
    assert "backup sync daemon (mcast=b0, syncid=3" in listing_b


def test_daemon_errors_are_clear(directors: tuple[str, str]) -> None:
    a, _ = directors

    async def main() -> list[IpvsOpError]:
        caught = []
        async with IpvsKernel(a) as ka:
            sync = SyncKernel(ka)
            await sync.stop_daemon(SyncState.BACKUP)  # not running: fine by default
            with pytest.raises(IpvsOpError) as info:
                await sync.stop_daemon(SyncState.BACKUP, missing_ok=False)
            caught.append(info.value)
            await sync.start_daemon(SyncState.MASTER, "a0", 1)
            with pytest.raises(IpvsOpError) as info:
                await sync.start_daemon(SyncState.MASTER, "a0", 1)
            caught.append(info.value)
            with pytest.raises(IpvsOpError) as info:
                await sync.start_daemon(SyncState.BACKUP, "nosuchdev0", 1)
            caught.append(info.value)
        return caught

    caught = trio.run(main)
    assert caught[0].errno == errno.ESRCH
    assert str(caught[0]).startswith("stop sync backup daemon:")
    assert caught[1].errno == errno.EEXIST
    assert str(caught[1]).startswith("start sync master daemon on a0 (syncid 1): File exists")
    assert caught[2].errno == errno.ENODEV
    assert "nosuchdev0" in str(caught[2])


def test_a_daemon_stopped_right_after_its_start_is_stopped_and_answered(
    directors: tuple[str, str],
) -> None:
    """A VRRP master for a few milliseconds starts the master daemon and stops it again.
    Stopped before its kernel thread first ran, the kernel's stop says EINTR and answers
    nothing, not even the ACK asked for (in this VM: every time); an adapter waiting for
    that ACK held its lock for ever (the soak's stuck agent). The stop is answered by the
    listing sent with it, and the adapter stays usable."""
    a, _ = directors

    async def main() -> list[list[SyncDaemon]]:
        after = []
        async with IpvsKernel(a) as ka:
            ka.reply_timeout_s = 60.0  # far beyond: a stop must not wait for a reply at all
            sync = SyncKernel(ka)
            for state in (SyncState.MASTER, SyncState.BACKUP) * 3:
                await sync.start_daemon(state, "a0", 9)
                with trio.fail_after(30):
                    await sync.stop_daemon(state)
                after.append(await sync.daemons())
            await sync.start_daemon(SyncState.BACKUP, "a0", 9)
            after.append(await sync.daemons())
            await sync.stop_daemon(SyncState.BACKUP)
        return after

    after = trio.run(main)
    assert after[:6] == [[]] * 6
    assert [d.state for d in after[6]] == [SyncState.BACKUP]


def test_connections_reach_the_backup(directors: tuple[str, str]) -> None:
    """A TCP connection through the master's IPVS appears in the backup's table."""
    a, b = directors
    vip = ServiceKey.virtual("tcp", "203.0.113.10", 80)
    real = DestKey.of("192.0.2.2", 8080)
    # The "client" is the master's own namespace: a local connection to the VIP.
    run("ip", "-n", a, "addr", "add", "203.0.113.10/32", "dev", "lo")
    run("ip", "-n", b, "route", "add", "default", "via", "192.0.2.1")
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, "python3", "-c", _ACCEPT_LOOP],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"

        async def setup() -> None:
            async with IpvsKernel(a) as ka, IpvsKernel(b) as kb:
                for kernel in (ka, kb):
                    await kernel.add_service(vip, Service("rr", model.SVC_F_PERSISTENT, 300))
                    await kernel.add_dest(vip, real, Dest(model.FWD_MASQ, 1))
                await SyncKernel(ka).start_daemon(SyncState.MASTER, "a0", 9)
                await SyncKernel(kb).start_daemon(SyncState.BACKUP, "b0", 9)

        trio.run(setup)
        in_netns(a, "python3", "-c", _CONNECT % "203.0.113.10")
        backup_conns = _connections_once_listed(b, "203.0.113.10:80")
        assert "203.0.113.10:80" in backup_conns, backup_conns
        assert "192.0.2.2:8080" in backup_conns
    finally:
        server.kill()
        server.wait()


def _connections_once_listed(ns: str, vip: str, timeout_s: float = 30.0) -> str:
    """``ipvsadm -L -n -c`` in ``ns``, polled until it lists ``vip`` (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        listing = in_netns(ns, "ipvsadm", "-L", "-n", "-c")
        if vip in listing or time.monotonic() > deadline:
            return listing
        time.sleep(0.5)


_ACCEPT_LOOP = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.2", 8080))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hello")
    c.close()
"""

_CONNECT = """
import socket
c = socket.create_connection(("%s", 80), timeout=10)
assert c.recv(5) == b"hello"
c.close()
"""


def test_ipv6_group_carries_ipv6_connections(directors: tuple[str, str]) -> None:
    """Daemons on an IPv6 multicast group: read back as such, and an IPv6 connection through
    the master's IPVS reaches the backup's table over IPv6 sync messages."""
    a, b = directors
    group, port = "ff02::8848", 8848
    vip = ServiceKey.virtual("tcp", "2001:db8:10::10", 80)
    real = DestKey.of("2001:db8:1::2", 8080)
    for ns, dev, addr in ((a, "a0", "2001:db8:1::1/64"), (b, "b0", "2001:db8:1::2/64")):
        run("ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad")
    run("ip", "-n", a, "addr", "add", "2001:db8:10::10/128", "dev", "lo")
    run("ip", "-n", b, "route", "add", "default", "via", "2001:db8:1::1")
    # The daemons bind to the interface's link-local address: wait until it is usable.
    for ns, dev in ((a, "a0"), (b, "b0")):
        deadline = time.monotonic() + 10
        while "tentative" in in_netns(ns, "ip", "-6", "addr", "show", "dev", dev, "scope", "link"):
            assert time.monotonic() < deadline, f"{dev}: link-local address still tentative"
            time.sleep(0.1)
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, "python3", "-c", _ACCEPT_LOOP6],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"

        async def setup() -> tuple[list[SyncDaemon], list[SyncDaemon]]:
            async with IpvsKernel(a) as ka, IpvsKernel(b) as kb:
                for kernel in (ka, kb):
                    await kernel.add_service(
                        vip, Service("rr", model.SVC_F_PERSISTENT, 300, netmask=128)
                    )
                    await kernel.add_dest(vip, real, Dest(model.FWD_MASQ, 1))
                sync_a, sync_b = SyncKernel(ka), SyncKernel(kb)
                await sync_a.start_daemon(SyncState.MASTER, "a0", 11, mcast_group=group)
                await sync_b.start_daemon(SyncState.BACKUP, "b0", 11, mcast_group=group)
                return await sync_a.daemons(), await sync_b.daemons()

        [master], [backup] = trio.run(setup)
        assert (master.mcast_group, master.mcast_port) == (group, port)
        assert (backup.mcast_group, backup.mcast_port) == (group, port)
        in_netns(a, "python3", "-c", _CONNECT % "2001:db8:10::10")
        backup_conns = _connections_once_listed(b, "[2001:db8:10::10]:80")
        assert "[2001:db8:10::10]:80" in backup_conns, backup_conns
        assert "[2001:db8:1::2]:8080" in backup_conns
    finally:
        server.kill()
        server.wait()


_ACCEPT_LOOP6 = _ACCEPT_LOOP.replace("socket.socket()", "socket.socket(socket.AF_INET6)").replace(
    '("192.0.2.2", 8080)', '("2001:db8:1::2", 8080)'
)
