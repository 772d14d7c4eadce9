"""Every netlink exchange of the IPVS adapter is bounded, and a sync daemon's stop does not
wait for an answer the kernel may never send.

The chaos soak found an agent whose sync task stood still for 20 minutes and which could
not stop: a VRRP master for a few milliseconds started the kernel's master sync daemon and
stopped it again before the daemon's kernel thread first ran. The kernel's thread stop then
says EINTR, and for EINTR netlink sends nothing back, not even the ACK asked for (in the
VM: every time, tests/vm/test_sync_kernel.py). The adapter waited for that ACK for ever,
holding its lock, and the sync component's lock above it.

Here the kernel's side of the socket is played by a small fake over a datagram socket
pair: it answers, or it does not, as the real one does in each case.
"""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from hadirector.errors import KernelError
from hadirector.ipvs import genl
from hadirector.ipvs.kernel import IpvsKernel
from hadirector.ipvs.types import SyncState
from hadirector.sync.kernel import SyncKernel

FAMILY = 0x20


class FakeKernel:
    """The kernel's end: daemons started and listed; ``silent`` answers nothing at all;
    ``eintr_stop`` stops a daemon without an answer (its thread had not run yet);
    ``stop_fails`` leaves the daemon running and answers nothing."""

    def __init__(self, *, silent: bool = False, eintr_stop: bool = True) -> None:
        self.silent = silent
        self.eintr_stop = eintr_stop
        self.stop_fails = False
        self.running: dict[SyncState, bytes] = {}
        self.requests: list[tuple[int, int]] = []  # (genl command, flags)

    async def serve(self, sock: trio.socket.SocketType) -> None:
        while True:
            data = await sock.recv(65536)
            out = []
            for message in genl.parse_messages(data):
                cmd = message.payload[0]
                self.requests.append((cmd, message.flags))
                if self.silent:
                    continue
                out += self.handle(cmd, message)
            if out:
                await sock.send(b"".join(out))

    def handle(self, cmd: int, message: genl.NetlinkMessage) -> list[bytes]:
        seq, flags = message.seq, message.flags
        top = genl.parse_attrs(message.payload[4:])
        if cmd == genl.IPVS_CMD_GET_DAEMON:
            replies = [
                genl.encode_message(FAMILY, genl.NLM_F_MULTI, seq, genl.genl_body(cmd, attr))
                for attr in self.running.values()
            ]
            done = genl.encode_message(genl.NLMSG_DONE, genl.NLM_F_MULTI, seq, bytes(4))
            return [*replies, done]
        state = SyncState(genl.decode_daemon(top).state)
        if cmd == genl.IPVS_CMD_NEW_DAEMON:
            self.running[state] = genl.daemon_attr(state, "eth1", 7)
        elif cmd == genl.IPVS_CMD_DEL_DAEMON:
            if self.stop_fails:
                return []
            self.running.pop(state, None)
            if self.eintr_stop:
                return []  # netlink_rcv_skb: no ACK, no error for EINTR
        if not flags & genl.NLM_F_ACK:
            return []
        header = struct.pack("=IHHII", 16, FAMILY, flags, seq, 0)
        return [genl.encode_message(genl.NLMSG_ERROR, 0, seq, struct.pack("=i", 0) + header)]


async def _adapter(
    nursery: trio.Nursery, fake: FakeKernel
) -> tuple[IpvsKernel, trio.socket.SocketType]:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    kernel = IpvsKernel()
    kernel._sock = trio.socket.from_stdlib_socket(mine)
    kernel._family_id = FAMILY
    other = trio.socket.from_stdlib_socket(theirs)
    nursery.start_soon(fake.serve, other)
    return kernel, other


def test_a_kernel_that_does_not_answer_is_a_clear_error_and_frees_the_adapter() -> None:
    fake = FakeKernel(silent=True)

    async def main() -> tuple[str, float]:
        async with trio.open_nursery() as nursery:
            kernel, other = await _adapter(nursery, fake)
            started = trio.current_time()
            with pytest.raises(KernelError) as info:
                await SyncKernel(kernel).daemons()
            waited = trio.current_time() - started
            assert kernel._sock is None  # retired: a late reply cannot be misread
            assert not kernel._lock.locked()
            nursery.cancel_scope.cancel()
            other.close()
        return str(info.value), waited

    text, waited = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert text.startswith("list sync daemons: no answer from the kernel to a netlink request")
    assert waited == 10.0  # REPLY_TIMEOUT_S, on the virtual clock


def test_a_stop_the_kernel_leaves_unanswered_returns_once_the_listing_shows_it_gone() -> None:
    fake = FakeKernel(eintr_stop=True)

    async def main() -> list[SyncState]:
        async with trio.open_nursery() as nursery:
            kernel, other = await _adapter(nursery, fake)
            sync = SyncKernel(kernel)
            await sync.start_daemon(SyncState.MASTER, "eth1", 7)
            await sync.stop_daemon(SyncState.MASTER)  # the kernel answers only the listing
            listed = [d.state for d in await sync.daemons()]
            # Asked the old way (DEL_DAEMON with an ACK), the same stop goes unanswered.
            await sync.start_daemon(SyncState.BACKUP, "eth1", 7)
            with pytest.raises(KernelError, match="no answer from the kernel"):
                await kernel.command("stop", genl.IPVS_CMD_DEL_DAEMON, genl.daemon_attr(
                    SyncState.BACKUP))  # fmt: skip
            nursery.cancel_scope.cancel()
            other.close()
        return listed

    listed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert listed == []
    del_flags = [flags for cmd, flags in fake.requests if cmd == genl.IPVS_CMD_DEL_DAEMON]
    assert del_flags[0] == genl.NLM_F_REQUEST  # the stop itself asks for no ACK
    assert fake.running == {}


def test_a_stop_the_kernel_did_not_do_is_an_error() -> None:
    fake = FakeKernel()
    fake.stop_fails = True

    async def main() -> str:
        async with trio.open_nursery() as nursery:
            kernel, other = await _adapter(nursery, fake)
            sync = SyncKernel(kernel)
            await sync.start_daemon(SyncState.BACKUP, "eth1", 7)
            with pytest.raises(KernelError) as info:
                await sync.stop_daemon(SyncState.BACKUP)
            nursery.cancel_scope.cancel()
            other.close()
        return str(info.value)

    text = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert text == "stop sync backup daemon: the kernel still lists it after the stop"
