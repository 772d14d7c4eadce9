"""Link state for the agent: which interfaces are usable, and when that changes.

What it does: ``LinkWatcher()`` does no I/O; ``await open()`` subscribes a trio netlink
socket to ``RTMGRP_LINK`` *before* dumping every link, so no change between the dump and
the first notification is missed. A link is *up* when it is administratively up and has
carrier (``IFF_UP`` and ``IFF_RUNNING``, i.e. operstate UP or UNKNOWN); a deleted link is
down. ``changes()`` yields a ``LinkChange(ifname, up)`` each time that boolean flips
(including deletion, creation and rename), in kernel order. ``is_up(ifname)`` answers from
the same state after reading any notifications already queued, so it is current even when
nobody iterates ``changes()``; transitions it consumes are kept for ``changes()``, not lost.
If the kernel drops notifications (ENOBUFS) the watcher re-dumps and reports the
differences.

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

from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from hadirector.net.netlink import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    EventsLost,
    LinkInfo,
    Message,
    NetlinkSocket,
)

__all__ = ["LINK_UNAVAILABLE_ERRNOS", "LinkChange", "LinkUnavailable", "LinkWatcher"]

# errnos from send paths that mean "the link cannot carry this now" rather than a bug.
LINK_UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENETDOWN, errno.ENETUNREACH, errno.ENODEV, errno.ENXIO, errno.EADDRNOTAVAIL}
)

_MAX_PENDING_CHANGES = 4096
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
        self._pending: deque[LinkChange] = deque(maxlen=_MAX_PENDING_CHANGES)

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
            self._load(self._sync_requests.request_now(ifinfmsg(), RTM_GETLINK, _DUMP_FLAGS))
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

    def _drain(self) -> None:
        try:
            self._apply_messages(self._socket().receive_pending())
        except EventsLost:
            assert self._sync_requests is not None
            self._resync(self._sync_requests.request_now(ifinfmsg(), RTM_GETLINK, _DUMP_FLAGS))

    def is_up(self, ifname: str) -> bool:
        """True if ``ifname`` exists, is up and has carrier, as of the notifications so far."""
        self._drain()
        return any(info.name == ifname and info.up for info in self._links.values())

    def index_of(self, ifname: str) -> int | None:
        """The current ifindex of ``ifname``, or None if there is no such link."""
        self._drain()
        for info in self._links.values():
            if info.name == ifname:
                return info.index
        return None

    async def changes(self) -> AsyncIterator[LinkChange]:
        """Yield each flip of a link's up state, forever (one consumer at a time)."""
        while True:
            while self._pending:
                yield self._pending.popleft()
            try:
                messages = await self._socket().receive()
            except EventsLost:
                assert self._requests is not None
                self._resync(await _dump_links(self._requests))
                continue
            self._apply_messages(messages)


async def _dump_links(sock: NetlinkSocket) -> list[Message]:
    return await sock.request(ifinfmsg(), RTM_GETLINK, _DUMP_FLAGS)
