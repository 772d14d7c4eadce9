"""Bulk resync, the I/O: read this director's connection table and send it as sync messages.

A backup sync daemon in the kernel takes any version 1 message for its sync id that reaches
its multicast group and port on its interface, whoever sent it; so the master sends its
whole table (sync/table.py builds the entries, sync/codec.py the messages) from an ordinary
UDP socket to the sync group, out of the sync interface, and the entries land in the
joiner's kernel table as if the master's sync daemon had sent them one by one.

The last message is a DONE control message (sync/codec.py) with the count of entries: a
kernel backup daemon ignores it, and a joining agent listening on the same group and port
(``join_group``) learns that its resync has arrived.

Messages are paced (a short pause every ``BURST`` messages) so that a table of tens of
thousands of entries does not overrun the receiver's socket buffer. This module sequences
I/O only; what to send is decided in sync/table.py.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from pathlib import Path

import trio

from hadirector.errors import DecodeError
from hadirector.ipvs.model import Entry, ServiceKey
from hadirector.sync import codec, table
from hadirector.sync.codec import DEFAULT_PORT

PROC_CONN = Path("/proc/net/ip_vs_conn")
BURST = 16
PAUSE_S = 0.002
# UDP payload when the interface MTU is not known: the kernel's own floor for sync messages
# is far below; 1472 fits an Ethernet MTU of 1500 with IPv4 and UDP headers.
DEFAULT_MAXLEN = 1472
# A listener's receive buffer: a resync of 50,000 entries (~1,250 datagrams) queued whole.
RCVBUF = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33  # Linux asm-generic/socket.h; the socket module does not name it
#: A joiner repeats its REQUEST this often until the DONE arrives (or resync_timeout).
REQUEST_EVERY_S = 1.0
#: After a DONE the master ignores REQUESTs this long (repeats sent before the joiner heard
#: the DONE); below REQUEST_EVERY_S, so a joiner's next REQUEST is heard.
QUIET_AFTER_DONE_S = 0.5


@dataclass(frozen=True)
class Sent:
    """What one resync sent (for the log and ``status``)."""

    entries: int
    templates: int
    skipped: int
    messages: int
    seconds: float


def read_proc_conn(path: Path = PROC_CONN) -> str:
    """The connection table of this network namespace, as the kernel lists it."""
    return path.read_text()


def payload_size(ifname: str, ipv6: bool) -> int:
    """The largest sync message for ``ifname`` (its MTU less the IP and UDP headers)."""
    try:
        mtu = int(Path(f"/sys/class/net/{ifname}/mtu").read_text())
    except (OSError, ValueError):
        return DEFAULT_MAXLEN
    return max(mtu - (40 if ipv6 else 20) - 8, 256)


def open_sender(ifname: str, group: str, ttl: int = 1) -> socket.socket:
    """A UDP socket that multicasts out of ``ifname`` (no loop back to this host)."""
    v6 = isinstance(ip_address(group), IPv6Address)
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        configure_sender(sock, socket.if_nametoindex(ifname), group, ttl)
    except BaseException:
        sock.close()
        raise
    return sock


def configure_sender(sock: socket.socket, index: int, group: str, ttl: int = 1) -> None:
    """Make ``sock`` multicast out of interface ``index`` with ``ttl``, not looped back."""
    v6 = isinstance(ip_address(group), IPv6Address)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    else:
        mreqn = struct.pack("4s4si", bytes(4), bytes(4), index)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)


def join_group(sock: socket.socket, index: int, group: str, port: int = DEFAULT_PORT) -> None:
    """Bind ``sock`` (UDP) to ``group``:``port`` and join the group on interface ``index``.

    SO_REUSEADDR lets it share the port with the kernel's backup daemon, which sets the
    same on its own socket: both then receive every message sent to the group. The
    receive buffer is raised (``RCVBUF``; beyond net.core.rmem_max where the process may)
    so that a whole resync fits in it while the agent is busy elsewhere.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:  # no CAP_NET_ADMIN: as much as rmem_max allows
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    if isinstance(ip_address(group), IPv6Address):
        sock.bind((group, port, 0, index))
        mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    else:
        sock.bind((group, port))
        mreqn = socket.inet_aton(group) + bytes(4) + struct.pack("i", index)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)


async def send_messages(
    sock: socket.socket, messages: Sequence[bytes], group: str, port: int = DEFAULT_PORT
) -> None:
    """Send ``messages`` to ``group``:``port``, paced."""
    tsock = trio.socket.from_stdlib_socket(sock)
    for number, message in enumerate(messages, 1):
        await tsock.sendto(message, (group, port))
        if number % BURST == 0:
            await trio.sleep(PAUSE_S)


async def resync(
    ipvs_table: dict[ServiceKey, Entry],
    *,
    ifname: str,
    syncid: int,
    group: str = codec.DEFAULT_GROUP,
    port: int = DEFAULT_PORT,
    ttl: int = 1,
    maxlen: int = 0,
    proc_text: str | None = None,
    sock: socket.socket | None = None,
) -> Sent:
    """Read the connection table (or use ``proc_text``) and send it whole; what was sent.

    Reading, parsing and packing run in a worker thread: for tens of thousands of entries
    they take seconds of CPU on a slow machine, and the agent's loop (its VRRP adverts
    above all) must go on meanwhile, or the joiner declares the master down before the
    resync arrives."""
    started = time.monotonic()
    v6 = isinstance(ip_address(group), IPv6Address)
    maxlen = maxlen or payload_size(ifname, v6)
    messages, sent = await trio.to_thread.run_sync(_build, ipvs_table, syncid, maxlen, proc_text)
    if sock is not None:  # the caller's, already configured (e.g. made in another netns)
        await send_messages(sock, messages, group, port)
    else:
        with open_sender(ifname, group, ttl) as own:
            await send_messages(own, messages, group, port)
    return Sent(**sent, seconds=time.monotonic() - started)


def _build(
    ipvs_table: dict[ServiceKey, Entry], syncid: int, maxlen: int, proc_text: str | None
) -> tuple[list[bytes], dict[str, int]]:
    """The messages of a resync, DONE last, and their counts for ``Sent`` (CPU work, run in
    a worker thread: no trio calls)."""
    text = read_proc_conn() if proc_text is None else proc_text
    entries, bad = table.parse_proc_conn(text)
    built = table.sync_entries(entries, ipvs_table)
    messages = codec.pack(syncid, built.conns, maxlen)
    done = codec.encode_control(syncid, codec.Control(codec.DONE, len(built.conns)))
    counts = {
        "entries": len(built.conns),
        "templates": built.templates,
        "skipped": built.skipped + bad,
        "messages": len(messages),
    }
    return [*messages, done], counts


# --- the exchange: a joiner asks, the master answers ----------------------------------------


@dataclass(frozen=True)
class Arrival:
    """A resync as the joiner saw it: entries received, entries the master said it sent,
    and seconds from the request to the DONE message."""

    received: int
    announced: int
    seconds: float


def _matches(message: codec.Message, syncid: int) -> bool:
    return message.syncid == syncid


async def request_resync(
    sock: socket.socket, syncid: int, group: str = codec.DEFAULT_GROUP, port: int = DEFAULT_PORT
) -> None:
    """Ask the master for a bulk resync (a REQUEST control message to the sync group)."""
    message = codec.encode_control(syncid, codec.Control(codec.REQUEST))
    await send_messages(sock, [message], group, port)


async def ask_resync(
    listener: socket.socket,
    sender: socket.socket,
    syncid: int,
    group: str = codec.DEFAULT_GROUP,
    port: int = DEFAULT_PORT,
    every_s: float = REQUEST_EVERY_S,
) -> Arrival:
    """Ask for a resync (REQUEST) and again every ``every_s`` until its DONE is heard on
    ``listener``; the arrival. The caller bounds the wait (resync_timeout).

    One REQUEST is easily lost: the peer becomes master at the instant this director
    becomes backup (a preemption), and its answering task does not listen yet; or the
    sync link drops it. The master drops repeats that were queued while it answered."""
    started = time.monotonic()
    arrival: Arrival | None = None
    failure: OSError | None = None
    async with trio.open_nursery() as nursery:

        async def repeat() -> None:
            while True:
                with contextlib.suppress(OSError):  # e.g. the link is down: try again
                    await request_resync(sender, syncid, group, port)
                await trio.sleep(every_s)

        nursery.start_soon(repeat)
        try:
            arrival = await wait_for_resync(listener, syncid, started)
        except OSError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    assert arrival is not None
    return arrival


async def wait_for_resync(listener: socket.socket, syncid: int, started: float) -> Arrival:
    """Entries heard on ``listener`` (``join_group``) until a DONE for ``syncid``; the caller
    bounds the wait (``trio.move_on_after(resync_timeout)``). ``started``: monotonic time
    of the request. Messages that do not decode are skipped."""
    tsock = trio.socket.from_stdlib_socket(listener)
    received = 0
    while True:
        data = await tsock.recv(65535)
        try:
            # Entries are counted from the headers only (the kernel's backup daemon takes
            # them in): decoding tens of thousands here would keep the queue from being
            # read fast enough, and the DONE at its end could be dropped.
            seen, count = codec.peek(data)
            if seen != syncid:
                continue
            if count:
                received += count
                continue
            message = codec.decode(data)
        except DecodeError:
            continue
        if message.control is not None and message.control.kind == codec.DONE:
            return Arrival(received, message.control.entries, time.monotonic() - started)


async def answer_requests(
    listener: socket.socket, syncid: int, respond: Callable[[], Awaitable[object]]
) -> None:
    """On the master: run ``respond`` (a bulk resync) for each REQUEST heard for ``syncid``,
    one after the other.

    A joiner repeats its REQUEST until the DONE (``ask_resync``): what queued while a
    response was sent, and what comes in the ``QUIET_AFTER_DONE_S`` after it (repeats
    already on their way), is dropped; a joiner that asked meanwhile asks again."""
    tsock = trio.socket.from_stdlib_socket(listener)
    quiet_until = -1.0
    while True:
        data = await tsock.recv(65535)
        try:
            message = codec.decode(data)
        except DecodeError:
            continue
        if message.control != codec.Control(codec.REQUEST) or not _matches(message, syncid):
            continue
        if trio.current_time() < quiet_until:
            continue
        await respond()
        _drain(listener)
        quiet_until = trio.current_time() + QUIET_AFTER_DONE_S


def _drain(sock: socket.socket) -> int:
    """Drop every datagram queued on ``sock``; how many."""
    dropped = 0
    while True:
        try:
            sock.recv(65535, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return dropped
        dropped += 1
