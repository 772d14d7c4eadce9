"""Virtual addresses (VIPs) on interfaces, over a trio rtnetlink socket.

What it does: ``AddressManager`` adds and removes VIPs with RTM_NEWADDR / RTM_DELADDR on its
own non-blocking netlink socket (``hadirector.net.netlink`` encodes and decodes the
messages; no threads). A VIP is anything with ``.interface`` (an
``IPv4Interface``/``IPv6Interface``: address and prefix length), ``.dev`` (interface name)
and ``.label`` (IPv4 label or None; the kernel keeps labels for IPv4 only).

- ``add(vip)`` returns True if it added the address, False if it was already there
  (EEXIST). IPv6 VIPs are added with ``IFA_F_NODAD``: no duplicate address detection delay
  during a takeover. Even so the kernel acknowledges an IPv6 address before it can receive:
  its local route is inserted afterwards, from the address-configuration work queue (late
  on a busy machine), and packets drawn by an announcement sent meanwhile are dropped. So
  ``add`` returns only once a route lookup for the address answers "local" (at most
  ``IPV6_READY_TIMEOUT_S``). IPv4 addresses receive as soon as the add is acknowledged.
- ``add_now(vip)`` is ``add`` for a thread that must not wait (the VRRP hot path taking
  over, agent/instance.py): the request sent and its answer read there and then, on a
  netlink socket of its own (the kernel answers an address change inside the send), True
  or False as ``add``; None, with nothing changed, for an IPv6 VIP (it waits for its local
  route: ``add``).
- ``remove(vip)`` returns True if it removed the address, False if it was not there
  (EADDRNOTAVAIL, or the device is gone).
- Any other refusal raises ``KernelError`` naming the address and the device.
- ``list(ifname)`` returns the addresses on an interface (``AddressInfo``: address with
  prefix, label, IFA_F_* flags), both families, in the kernel's order.
- ``watch()`` yields an ``AddressRemoved`` whenever an address this manager added (and has
  not removed since) disappears behind its back — ``ip addr del``, a flush, the interface
  going away — so the agent can put it back. Its own ``remove()`` calls are not reported. If
  the kernel drops notifications, ``watch()`` re-lists the addresses and reports every held
  VIP that is missing. A transient netlink error (a failed read or re-listing) never ends
  ``watch()``: it waits ``WATCH_RETRY_S`` and re-lists until that works.
- ``on_address_added(listener)``: while ``watch()`` runs, ``listener()`` is called whenever
  an address appears or changes anywhere (and after lost notifications), so that whoever
  waits for an interface to get a usable address can look again at once.

Interface names are resolved to indexes through netlink and cached; the cache is refreshed
from link notifications (delete, rename, re-create) read before each lookup.

What it must not do: decide which VIPs should exist (the agent and the VRRP machine do),
announce them (``announce``), or touch addresses it was not asked about.
"""

from __future__ import annotations

import builtins
import errno
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from hadirector.errors import KernelError
from hadirector.net.netlink import (
    IFA_ADDRESS,
    IFA_F_NODAD,
    IFA_FLAGS,
    IFA_LABEL,
    IFA_LOCAL,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    RTA_DST,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
    AddressInfo,
    EventsLost,
    IPInterface,
    LinkInfo,
    Message,
    NetlinkSocket,
    address_dump_request,
    asciiz,
    ifaddrmsg,
    link_request,
    route_type,
    rtmsg,
    u32,
)

__all__ = ["AddressManager", "AddressRemoved", "Vip"]

NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTN_LOCAL = 2
IPV6_READY_TIMEOUT_S = 1.0
IPV6_READY_POLL_S = 0.001
# add_now: the kernel answers inside the send; this only bounds a kernel that does not.
NOW_TIMEOUT_S = 1.0
WATCH_RETRY_S = 0.1  # watch(): wait after a failed netlink read or re-listing


class Vip(Protocol):
    """What the manager needs to know about a virtual address."""

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface: ...

    @property
    def dev(self) -> str: ...

    @property
    def label(self) -> str | None: ...


@dataclass(frozen=True)
class AddressRemoved:
    """A held VIP vanished from its interface without this manager removing it."""

    vip: Vip
    interface: IPInterface
    dev: str

    def __str__(self) -> str:
        return str(self.interface)


def _where(vip: Vip, adding: bool) -> str:
    """What a change was, for an error: ``add 192.0.2.1/24 to eth0``."""
    if adding:
        return f"add {vip.interface} to {vip.dev}"
    return f"remove {vip.interface} from {vip.dev}"


def _family(interface: IPInterface) -> int:
    return socket.AF_INET if interface.version == 4 else socket.AF_INET6


class AddressManager:
    """Adds, removes, lists and watches addresses (see the module docstring)."""

    def __init__(self) -> None:
        """No I/O here: sockets open in ``open()`` (or on first use)."""
        self._requests: NetlinkSocket | None = None
        # add_now's: used only by calls that return before anyone else runs (request_now).
        self._now_requests: NetlinkSocket | None = None
        self._links: NetlinkSocket | None = None
        self._events: NetlinkSocket | None = None
        self._index_by_name: dict[str, int] = {}
        self._held: dict[tuple[int, IPInterface], Vip] = {}
        self._address_listener: Callable[[], None] | None = None

    async def open(self) -> None:
        """Open the request socket and subscribe to link and address notifications."""
        if self._requests is not None:
            return
        self._links = NetlinkSocket.open(RTMGRP_LINK)
        self._events = NetlinkSocket.open(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        self._requests = NetlinkSocket.open()
        self._now_requests = NetlinkSocket.open()

    def close(self) -> None:
        for sock in (self._requests, self._now_requests, self._links, self._events):
            if sock is not None:
                sock.close()
        self._requests = self._now_requests = self._links = self._events = None

    async def _request_socket(self) -> NetlinkSocket:
        if self._requests is None:
            await self.open()
        assert self._requests is not None
        return self._requests

    # -- interface name -> index ------------------------------------------------------

    def _refresh_index_cache(self) -> None:
        """Apply queued link notifications to the name -> index cache."""
        if self._links is None:
            return
        try:
            messages = self._links.receive_pending()
        except EventsLost:
            self._index_by_name.clear()
            return
        for message in messages:
            if message.msg_type not in (RTM_NEWLINK, RTM_DELLINK):
                continue
            info = LinkInfo.from_message(message)
            for name, index in list(self._index_by_name.items()):
                if index == info.index and (info.deleted or name != info.name):
                    del self._index_by_name[name]
            if info.deleted:
                self._index_by_name.pop(info.name, None)
            elif self._index_by_name.get(info.name, info.index) != info.index:
                del self._index_by_name[info.name]

    async def index_of(self, ifname: str) -> int:
        """The ifindex of ``ifname``; OSError(ENODEV) if there is no such interface."""
        self._refresh_index_cache()
        index = self._index_by_name.get(ifname)
        if index is not None:
            return index
        sock = await self._request_socket()
        replies = await sock.request(link_request(ifname), RTM_GETLINK, NLM_F_REQUEST)
        return self._index_from(ifname, replies)

    def _index_from(self, ifname: str, replies: Iterable[Message]) -> int:
        """The ifindex a RTM_GETLINK answer for ``ifname`` gives (kept); ENODEV if none."""
        for message in replies:
            if message.msg_type == RTM_NEWLINK:
                info = LinkInfo.from_message(message)
                self._index_by_name[ifname] = info.index
                return info.index
        raise OSError(errno.ENODEV, f"no interface named {ifname}")

    # -- changes ----------------------------------------------------------------------

    @staticmethod
    def _message(vip: Vip, index: int, *, adding: bool) -> bytes:
        interface = vip.interface
        address = interface.ip.packed
        attrs = [(IFA_LOCAL, address), (IFA_ADDRESS, address)]
        flags = 0
        if interface.version == 4:
            if adding and vip.label:
                attrs.append((IFA_LABEL, asciiz(vip.label)))
        elif adding:
            flags = IFA_F_NODAD
            attrs.append((IFA_FLAGS, u32(IFA_F_NODAD)))
        return ifaddrmsg(
            family=_family(interface),
            prefixlen=interface.network.prefixlen,
            flags=flags,
            scope=0,  # RT_SCOPE_UNIVERSE
            index=index,
            attrs=attrs,
        )

    def _prepare(self, vip: Vip, index: int, *, adding: bool) -> tuple[bytes, int, int]:
        """Note the change in ``_held`` (before it is made: its notification must find it);
        the request's body, type and flags."""
        key = (index, vip.interface)
        if adding:
            self._held[key] = vip
        else:
            self._held.pop(key, None)
        msg_type = RTM_NEWADDR if adding else RTM_DELADDR
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if adding else 0)
        return self._message(vip, index, adding=adding), msg_type, flags

    def _refused(self, vip: Vip, index: int, exc: OSError, *, adding: bool, attempt: int) -> bool:
        """The kernel refused a change: False when that means it was so already, True to
        try once more (a stale index, forgotten); KernelError otherwise."""
        if adding and exc.errno == errno.EEXIST:
            return False
        if not adding and exc.errno == errno.EADDRNOTAVAIL:
            return False
        key = (index, vip.interface)
        if exc.errno == errno.ENODEV and attempt == 1:
            self._index_by_name.pop(vip.dev, None)  # stale index: look it up again
            self._held.pop(key, None)
            return True
        if not adding and exc.errno == errno.ENODEV:
            return False
        self._held.pop(key, None)
        raise KernelError(f"cannot {_where(vip, adding)}: {exc.strerror}") from exc

    def _no_index(self, vip: Vip, exc: OSError, *, adding: bool) -> bool:
        """No index for the VIP's device: False for a removal (no device, so certainly no
        address on it); KernelError for an add."""
        if not adding and exc.errno == errno.ENODEV:
            return False
        raise KernelError(f"cannot {_where(vip, adding)}: {exc.strerror}") from exc

    async def _change(self, vip: Vip, *, adding: bool) -> bool:
        sock = await self._request_socket()
        for attempt in (1, 2):
            try:
                index = await self.index_of(vip.dev)
            except OSError as exc:
                return self._no_index(vip, exc, adding=adding)
            body, msg_type, flags = self._prepare(vip, index, adding=adding)
            try:
                await sock.request(body, msg_type, flags)
            except OSError as exc:
                if self._refused(vip, index, exc, adding=adding, attempt=attempt):
                    continue
                return False
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def add_now(self, vip: Vip) -> bool | None:
        """``add`` without waiting (module docstring): True if added, False if it was
        there already, KernelError otherwise; None for an IPv6 VIP (nothing done)."""
        if vip.interface.version != 4:
            return None
        if self._now_requests is None:
            self._now_requests = NetlinkSocket.open()
        sock = self._now_requests
        for attempt in (1, 2):
            try:
                index = self._index_now(vip.dev, sock)
            except OSError as exc:
                return self._no_index(vip, exc, adding=True)
            body, msg_type, flags = self._prepare(vip, index, adding=True)
            try:
                sock.request_now(body, msg_type, flags, timeout_s=NOW_TIMEOUT_S)
            except OSError as exc:
                if self._refused(vip, index, exc, adding=True, attempt=attempt):
                    continue
                return False
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def _index_now(self, ifname: str, sock: NetlinkSocket) -> int:
        """``index_of`` without waiting, over ``sock``."""
        self._refresh_index_cache()
        index = self._index_by_name.get(ifname)
        if index is not None:
            return index
        replies = sock.request_now(
            link_request(ifname), RTM_GETLINK, NLM_F_REQUEST, timeout_s=NOW_TIMEOUT_S
        )
        return self._index_from(ifname, replies)

    async def add(self, vip: Vip) -> bool:
        """Add ``vip``; True if added, False if it was already there. KernelError otherwise.

        An added IPv6 address is receivable when this returns (see the module docstring).
        """
        added = await self._change(vip, adding=True)
        if added and vip.interface.version == 6:
            await self._wait_local(vip.interface.ip)
        return added

    async def _wait_local(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Poll a route lookup for ``address`` until the kernel routes it locally, at most
        ``IPV6_READY_TIMEOUT_S`` (then go on: the address is there, only late)."""
        sock = await self._request_socket()
        deadline = trio.current_time() + IPV6_READY_TIMEOUT_S
        while True:
            body = rtmsg(
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                dst_len=address.max_prefixlen,
                attrs=[(RTA_DST, address.packed)],
            )
            try:
                replies = await sock.request(body, RTM_GETROUTE, NLM_F_REQUEST)
            except OSError:
                replies = []
            if any(m.msg_type == RTM_NEWROUTE and route_type(m) == RTN_LOCAL for m in replies):
                return
            if trio.current_time() >= deadline:
                return
            await trio.sleep(IPV6_READY_POLL_S)

    async def remove(self, vip: Vip) -> bool:
        """Remove ``vip``; True if removed, False if it was not there. KernelError otherwise."""
        return await self._change(vip, adding=False)

    async def _dump(self) -> list[AddressInfo]:
        sock = await self._request_socket()
        out: list[AddressInfo] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            replies = await sock.request(
                address_dump_request(family), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP
            )
            out.extend(AddressInfo.from_message(m) for m in replies if m.msg_type == RTM_NEWADDR)
        return out

    async def list(self, ifname: str) -> builtins.list[AddressInfo]:
        """Every address on ``ifname`` (IPv4 then IPv6). KernelError if there is no such link."""
        try:
            index = await self.index_of(ifname)
        except OSError as exc:
            raise KernelError(f"cannot list addresses of {ifname}: {exc.strerror}") from exc
        return [info for info in await self._dump() if info.index == index]

    # -- watching ---------------------------------------------------------------------

    def on_address_added(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from ``watch()``) when an address appears or changes."""
        self._address_listener = listener

    def _address_added(self) -> None:
        if self._address_listener is not None:
            self._address_listener()

    def _removed(self, messages: builtins.list[Message]) -> builtins.list[AddressRemoved]:
        out: builtins.list[AddressRemoved] = []
        if any(message.msg_type == RTM_NEWADDR for message in messages):
            self._address_added()
        for message in messages:
            if message.msg_type != RTM_DELADDR:
                continue
            info = AddressInfo.from_message(message)
            vip = self._held.pop((info.index, info.interface), None)
            if vip is not None:
                out.append(AddressRemoved(vip, vip.interface, vip.dev))
        return out

    async def _missing_after_loss(self) -> builtins.list[AddressRemoved]:
        """Held VIPs a fresh listing lacks; retried every ``WATCH_RETRY_S`` until it works."""
        while True:
            try:
                present = {(info.index, info.interface) for info in await self._dump()}
            except OSError:
                await trio.sleep(WATCH_RETRY_S)
                continue
            break
        out: builtins.list[AddressRemoved] = []
        for key, vip in list(self._held.items()):
            if key not in present:
                del self._held[key]
                out.append(AddressRemoved(vip, vip.interface, vip.dev))
        return out

    async def watch(self) -> AsyncIterator[AddressRemoved]:
        """Yield each held VIP that disappears behind our back, forever (one consumer)."""
        if self._events is None:
            await self.open()
        assert self._events is not None
        events = self._events
        while True:
            try:
                removed = self._removed(await events.receive())
            except EventsLost:
                removed = await self._missing_after_loss()
                self._address_added()
            except OSError:  # a failed read may have lost notifications too
                await trio.sleep(WATCH_RETRY_S)
                removed = await self._missing_after_loss()
                self._address_added()
            for event in removed:
                yield event
