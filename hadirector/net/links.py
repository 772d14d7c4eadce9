"""Link state for the agent: which interfaces are usable, and when that changes.

What it does: ``LinkWatcher()`` does no I/O; ``await open()`` subscribes a trio netlink
socket to ``RTMGRP_LINK`` *before* dumping every link, so no change between the dump and
the first notification is missed. A link is *up* when it is administratively up and has
carrier (``IFF_UP`` and ``IFF_RUNNING``, i.e. operstate UP or UNKNOWN); a deleted link is
down. ``changes()`` yields a ``LinkChange(ifname, up)`` each time that boolean flips
(including deletion, creation and rename), in kernel order; a deletion is always reported,
even of a link that was down already (a second ``up=False``: ``index_of`` or ``incarnation``
tell a deletion). ``is_up(ifname)`` answers from the same state after reading any
notifications already queued, so it is current even when nobody iterates ``changes()``;
transitions it consumes are kept for ``changes()``, not lost.
``is_up`` never blocks and never raises: if reading the queue fails, or finds that the
kernel dropped notifications (ENOBUFS), it answers from the last known state and leaves the
re-dump to ``changes()``, which then reports the differences. ``changes()`` never ends on a
transient netlink error (a failed read or re-dump): it waits ``RETRY_S`` and dumps again.

``incarnation(ifname)`` counts the links that have carried a name: it goes up each time a
link of that name appears (created, or renamed to it), so whoever opened something on the
interface can tell it was deleted and created again since, even when the kernel gave the
new one the same ifindex (it may). Read from notifications, it misses a delete and re-create
with the same index that fell entirely within lost notifications (a re-dump cannot see it).

Latency: the kernel reports carrier changes of stacked devices (veth, VLAN, bond) at once;
for a physical NIC, carrier events can be rate-limited by the kernel's link-watch (up to 1 s).

Also here: ``LinkUnavailable``, the OSError the sending adapters (``vrrp_socket``,
``announce``) raise when the kernel says the link is down, gone or has no usable address —
"can't send now", not a bug.

What it must not do: decide anything about VRRP (the agent maps link state to priority or
FAULT), or poll.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import AsyncIterator
from typing import NamedTuple

import trio

from hadirector.net.netlink import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTMGRP_LINK,
    EventsLost,
    LinkInfo,
    Message,
    NetlinkSocket,
    ifinfomsg,
)

__all__ = ["LINK_UNAVAILABLE_ERRNOS", "RETRY_S", "LinkChange", "LinkUnavailable", "LinkWatcher"]

# errnos from send paths that mean "the link cannot carry this now" rather than a bug.
LINK_UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENETDOWN, errno.ENETUNREACH, errno.ENODEV, errno.ENXIO, errno.EADDRNOTAVAIL}
)

_MAX_PENDING_CHANGES = 4096
RETRY_S = 0.1  # changes(): wait after a failed netlink read or re-dump, then dump again
_DUMP_FLAGS = NLM_F_REQUEST | NLM_F_DUMP


class LinkUnavailable(OSError):
    """The interface is down, gone, or lacks the address to send from: can't send now."""


class LinkChange(NamedTuple):
    """One flip of an interface's usability."""

    ifname: str
    up: bool


class LinkWatcher:
    """Tracks every link's up/down state from rtnetlink notifications."""

    def __init__(self) -> None:
        """No I/O here: ``await open()`` subscribes and reads the current links."""
        self._sock: NetlinkSocket | None = None
        self._requests: NetlinkSocket | None = None  # re-dumps from changes()
        self._sync_requests: NetlinkSocket | None = None  # re-dumps from is_up()
        self._links: dict[int, LinkInfo] = {}
        self._incarnations: dict[str, int] = {}
        self._pending: deque[LinkChange] = deque(maxlen=_MAX_PENDING_CHANGES)
        self._stale = False  # notifications were lost: changes() must re-dump
        self._stale_event = trio.Event()  # set with _stale, wakes changes()
        self._pending_event = trio.Event()  # set when is_up() & co. queued a change

    async def open(self) -> None:
        """Subscribe to link notifications, then dump the current links."""
        if self._sock is not None:
            return
        self._open_sockets()
        assert self._requests is not None
        try:
            self._load(await _dump_links(self._requests))
        except BaseException:
            self.close()
            raise

    def open_blocking(self) -> None:
        """``open()`` for callers outside trio (tests, one-shot tools)."""
        if self._sock is not None:
            return
        self._open_sockets()
        assert self._sync_requests is not None
        try:
            self._load(self._sync_requests.request_now(ifinfomsg(), RTM_GETLINK, _DUMP_FLAGS))
        except BaseException:
            self.close()
            raise

    def _open_sockets(self) -> None:
        self._sock = NetlinkSocket.open(RTMGRP_LINK)  # subscribe first, then dump
        self._requests = NetlinkSocket.open()
        self._sync_requests = NetlinkSocket.open()

    def _load(self, replies: list[Message]) -> None:
        for message in replies:
            if message.msg_type == RTM_NEWLINK:
                info = LinkInfo.from_message(message)
                self._links[info.index] = info
                self._incarnations[info.name] = self._incarnations.get(info.name, 0) + 1

    def _socket(self) -> NetlinkSocket:
        if self._sock is None:
            raise RuntimeError("LinkWatcher used before open()")
        return self._sock

    def close(self) -> None:
        for sock in (self._sock, self._requests, self._sync_requests):
            if sock is not None:
                sock.close()
        self._sock = self._requests = self._sync_requests = None

    def _apply(self, info: LinkInfo) -> None:
        old = self._links.get(info.index)
        if not info.deleted and (old is None or old.name != info.name):
            self._incarnations[info.name] = self._incarnations.get(info.name, 0) + 1
        if info.deleted:
            self._links.pop(info.index, None)
        else:
            self._links[info.index] = info
        if old is not None and old.name != info.name and old.up:
            self._pending.append(LinkChange(old.name, False))
            old = None  # the new name starts from "down"
        was_up = old.up if old is not None else False
        if info.up != was_up:
            self._pending.append(LinkChange(info.name, info.up))
        elif info.deleted and old is not None:
            # Deleted while down (the kernel reports the link down just before deleting
            # it): said again, so that a consumer that saw "down" learns it is gone.
            self._pending.append(LinkChange(info.name, False))

    def _apply_messages(self, messages: list[Message]) -> None:
        for message in messages:
            if message.msg_type in (RTM_NEWLINK, RTM_DELLINK):
                self._apply(LinkInfo.from_message(message))

    def _resync(self, replies: list[Message]) -> None:
        self._resync_infos([LinkInfo.from_message(m) for m in replies if m.msg_type == RTM_NEWLINK])

    def _resync_infos(self, infos: list[LinkInfo]) -> None:
        """Replace the state with a fresh dump, queueing a change for every flip."""
        fresh = {info.index: info for info in infos}
        # Links gone or renamed first: a dump may list a new owner of a name before the
        # renamed link that used to hold it.
        for index, old in list(self._links.items()):
            new = fresh.get(index)
            if new is None or new.name != old.name:
                self._apply(LinkInfo(old.index, old.name, 0, old.mac, deleted=True))
        for info in fresh.values():
            self._apply(info)

    def _mark_stale(self) -> None:
        self._stale = True
        self._stale_event.set()

    def _drain(self) -> None:
        """Apply queued notifications without waiting; on any failure, leave it to changes()."""
        if self._sock is None:
            return
        try:
            messages = self._sock.receive_pending()
        except (EventsLost, OSError):
            self._mark_stale()
            return
        self._apply_messages(messages)
        if self._pending:
            self._pending_event.set()  # changes() delivers it now, not at the next message

    def is_up(self, ifname: str) -> bool:
        """True if ``ifname`` exists, is up and has carrier, as of the notifications so far.

        Never blocks, never raises: after lost notifications it answers from the last
        known state until ``changes()`` has re-dumped.
        """
        self._drain()
        return any(info.name == ifname and info.up for info in self._links.values())

    def index_of(self, ifname: str) -> int | None:
        """The current ifindex of ``ifname``, or None if there is no such link."""
        self._drain()
        for info in self._links.values():
            if info.name == ifname:
                return info.index
        return None

    def incarnation(self, ifname: str) -> int:
        """How many links have carried ``ifname`` so far (0: never seen): it changes when
        the interface is deleted and created again, whatever ifindex the new one got."""
        self._drain()
        return self._incarnations.get(ifname, 0)

    async def changes(self) -> AsyncIterator[LinkChange]:
        """Yield each flip of a link's up state, forever (one consumer at a time).

        A transient netlink error never ends it: it re-dumps (after ``RETRY_S`` if the
        read or the dump failed) and reports what changed meanwhile.
        """
        sock = self._socket()
        while True:
            while self._pending:
                yield self._pending.popleft()
            if self._stale:
                await self._redump()
                continue
            try:
                messages = await self._receive_unless_stale(sock)
            except EventsLost:
                self._mark_stale()
                continue
            except OSError:
                self._mark_stale()
                await trio.sleep(RETRY_S)
                continue
            self._apply_messages(messages)

    async def _redump(self) -> None:
        """Replace the state with a fresh dump; on failure wait ``RETRY_S`` (still stale)."""
        assert self._requests is not None
        self._stale = False
        self._stale_event = trio.Event()
        try:
            replies = await _dump_links(self._requests)
        except OSError:
            self._mark_stale()
            await trio.sleep(RETRY_S)
            return
        self._resync(replies)

    async def _receive_unless_stale(self, sock: NetlinkSocket) -> list[Message]:
        """The next notifications, or [] as soon as ``is_up()`` finds some were lost or
        queued a change of its own."""
        received: list[list[Message]] = []
        failed: list[Exception] = []
        stale_event = self._stale_event
        self._pending_event = pending_event = trio.Event()
        if self._pending:
            return []

        async with trio.open_nursery() as nursery:

            async def receive() -> None:
                try:
                    received.append(await sock.receive())
                except (EventsLost, OSError) as exc:
                    failed.append(exc)
                nursery.cancel_scope.cancel()

            async def wait_stale() -> None:
                await stale_event.wait()
                nursery.cancel_scope.cancel()

            async def wait_pending() -> None:
                await pending_event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(receive)
            nursery.start_soon(wait_stale)
            nursery.start_soon(wait_pending)
        if failed:
            raise failed[0]
        return received[0] if received else []


async def _dump_links(sock: NetlinkSocket) -> list[Message]:
    return await sock.request(ifinfomsg(), RTM_GETLINK, _DUMP_FLAGS)
