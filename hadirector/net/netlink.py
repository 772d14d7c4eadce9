"""rtnetlink sockets driven by trio, and the few rtnetlink messages the adapters exchange.

What it does:
- ``NetlinkSocket``: one ``AF_NETLINK``/``NETLINK_ROUTE`` socket in non-blocking mode, waited
  on with ``trio.lowlevel.wait_readable``. ``request()`` sends one message and collects the
  answer (an ACK, a single reply or a multi-part dump), matching replies by sequence number so
  that replies left over by a cancelled request are skipped. ``receive()`` returns the next
  batch of multicast notifications for a socket subscribed to ``RTMGRP_*`` groups.
- ``request_blocking()``: the same exchange on a short-lived blocking socket, for the few
  synchronous ``open()`` paths (name to index, primary address) that run once at start-up.
- ``nonblocking_call()``: the trio wait-and-retry loop every adapter in ``hadirector.net``
  uses around its own non-blocking sockets (raw IP, packet).
- The messages, encoded and decoded here with ``struct`` (linux/rtnetlink.h,
  linux/if_link.h, linux/if_addr.h): ``ifinfomsg()``, ``ifaddrmsg()`` and ``rtmsg()`` build a
  request body (the fixed header, then attributes); ``LinkInfo``, ``AddressInfo`` and
  ``route_type()`` read what the adapters need from a received one. Only these three kinds
  and only the attributes below are known: anything else is carried undecoded. (pyroute2
  would do it, but importing it costs a tenth of a second and a third of the agent's memory
  at start; tests/unit/test_netlink_codec.py holds this codec to pyroute2's bytes.)

Kernel errors come back as ``OSError`` with the errno and, when the kernel supplied one,
its extended-ack text. Lost notifications (``ENOBUFS`` on a subscribed socket) raise
``EventsLost`` so the caller can resynchronise with a dump.

What it must not do: start threads, hold per-thread state, or know anything about VRRP. It
is an adapter: the pure core never imports it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

__all__ = [
    "NLM_F_ACK",
    "NLM_F_DUMP",
    "NLM_F_REQUEST",
    "AddressInfo",
    "EventsLost",
    "LinkInfo",
    "Message",
    "NetlinkSocket",
    "addresses_blocking",
    "close_socket",
    "ifaddrmsg",
    "ifinfomsg",
    "link_by_name_blocking",
    "nonblocking_call",
    "request_blocking",
    "route_type",
    "rtmsg",
]

T = TypeVar("T")

# linux/netlink.h
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# linux/rtnetlink.h: message types and multicast groups
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100

# Attributes: linux/if_link.h (IFLA_*), linux/if_addr.h (IFA_*), linux/rtnetlink.h (RTA_*)
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_FLAGS = 8
RTA_DST = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_NLA = struct.Struct("=HH")  # nlattr: length, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
#                                       scope, type, flags
_U32 = struct.Struct("=I")
_RECV_BUFFER_BYTES = 1 << 16
_SUBSCRIBER_RCVBUF_BYTES = 1 << 20


class EventsLost(Exception):
    """The kernel dropped notifications (ENOBUFS): resynchronise with a dump."""


@dataclass(frozen=True)
class Message:
    """One rtnetlink message: its header's type, flags and sequence number, and its body
    (what follows the header: the fixed part, then attributes), undecoded."""

    msg_type: int
    flags: int
    seq: int
    payload: bytes


async def nonblocking_call(
    sock: socket.socket, operation: Callable[[], T], *, writable: bool = False
) -> T:
    """Run ``operation`` (a non-blocking socket call) until it stops raising BlockingIOError.

    Waits for readability (or writability) between tries. Behaves as a trio checkpoint: a
    cancellation raised before the first try is delivered, and a call that succeeds at once
    still yields to the scheduler.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    waited = False
    while True:
        try:
            result = operation()
        except BlockingIOError:
            waited = True
            if writable:
                await trio.lowlevel.wait_writable(sock)
            else:
                await trio.lowlevel.wait_readable(sock)
            continue
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return result


async def _at_once_or_wait(
    sock: socket.socket, operation: Callable[[], T], *, writable: bool = False
) -> T:
    """``operation()`` if it succeeds at once, with no checkpoint (the caller has one);
    else ``nonblocking_call``, which waits for the socket."""
    try:
        return operation()
    except BlockingIOError:
        return await nonblocking_call(sock, operation, writable=writable)


def close_socket(sock: socket.socket) -> None:
    """Close ``sock``, first waking any trio task waiting on it (works outside trio too)."""
    if sock.fileno() < 0:
        return
    with contextlib.suppress(RuntimeError):  # outside trio.run nobody can be waiting
        trio.lowlevel.notify_closing(sock)
    sock.close()


def split_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split one netlink datagram into (type, flags, seq, raw message) tuples."""
    out: list[tuple[int, int, int, bytes]] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, msg_type, flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            break
        out.append((msg_type, flags, seq, bytes(data[offset : offset + length])))
        offset += (length + 3) & ~3
    return out


def _error_from(raw: bytes, flags: int) -> OSError | None:
    """Decode an NLMSG_ERROR: None for an ACK (error 0), else an OSError with ext-ack text."""
    (code,) = struct.unpack_from("=i", raw, _HEADER.size)
    if code == 0:
        return None
    err = -code
    text = os.strerror(err)
    if flags & NLM_F_ACK_TLVS:
        # Skip the echoed request: just its header when capped, else the whole request.
        echoed_len = _HEADER.unpack_from(raw, _HEADER.size + 4)[0]
        offset = _HEADER.size + 4 + (_HEADER.size if flags & NLM_F_CAPPED else echoed_len)
        offset = (offset + 3) & ~3
        while offset + 4 <= len(raw):
            nla_len, nla_type = struct.unpack_from("=HH", raw, offset)
            if nla_len < 4:
                break
            if nla_type & 0x3FFF == NLMSGERR_ATTR_MSG:
                message = raw[offset + 4 : offset + nla_len].split(b"\0", 1)[0]
                text = f"{text} ({message.decode('utf-8', 'replace')})"
                break
            offset += (nla_len + 3) & ~3
    return OSError(err, text)


def _decode(msg_type: int, flags: int, seq: int, raw: bytes) -> Message:
    return Message(msg_type, flags, seq, raw[_HEADER.size :])


def _encode(body: bytes, msg_type: int, flags: int, seq: int) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), msg_type, flags, seq, 0) + body


def _new_socket(groups: int, *, blocking: bool, rcvbuf_bytes: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        if rcvbuf_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        sock.bind((0, groups))
        sock.setblocking(blocking)
    except BaseException:
        sock.close()
        raise
    return sock


class _Collector:
    """Accumulates the replies to one request; says when the exchange is complete."""

    def __init__(self, seq: int, flags: int) -> None:
        self.seq = seq
        self.dump = bool(flags & NLM_F_DUMP)
        self.want_ack = bool(flags & NLM_F_ACK)
        self.replies: list[Message] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        for msg_type, flags, seq, raw in split_messages(data):
            if seq != self.seq or msg_type in (NLMSG_NOOP, NLMSG_OVERRUN):
                continue  # a notification, or a leftover from a cancelled request
            if msg_type == NLMSG_ERROR:
                error = _error_from(raw, flags)
                if error is not None:
                    raise error
                self.done = True
            elif msg_type == NLMSG_DONE:
                self.done = True
            else:
                self.replies.append(_decode(msg_type, flags, seq, raw))
                if not self.dump and not self.want_ack:
                    self.done = True


class NetlinkSocket:
    """A NETLINK_ROUTE socket for trio: requests with matched replies, or subscriptions."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0
        self._lock = trio.Lock()

    @classmethod
    def open(cls, groups: int = 0) -> NetlinkSocket:
        """Open a socket; ``groups`` is an ``RTMGRP_*`` bit mask to subscribe to (0 = none)."""
        rcvbuf = _SUBSCRIBER_RCVBUF_BYTES if groups else None
        return cls(_new_socket(groups, blocking=False, rcvbuf_bytes=rcvbuf))

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        close_socket(self._sock)

    def _next_seq(self) -> int:
        self._seq = (self._seq % 0x7FFFFFFF) + 1
        return self._seq

    async def request(self, body: bytes, msg_type: int, flags: int) -> list[Message]:
        """Send ``body`` (e.g. from ``ifaddrmsg()``) as ``msg_type``; return the replies.

        ``flags`` should include ``NLM_F_REQUEST`` and either ``NLM_F_ACK`` (a change),
        ``NLM_F_DUMP`` (a listing), or neither (a single GET). Raises OSError on a kernel error.
        """
        async with self._lock:  # the request's checkpoint
            seq = self._next_seq()
            data = _encode(body, msg_type, flags, seq)
            sock = self._sock
            collector = _Collector(seq, flags)
            # The kernel handles a request inside the send and queues its answer before the
            # send returns: a change (a VIP added) or a single GET is sent and answered
            # without a pass of trio's scheduler for each call (0.1-0.3 ms on a loaded VM,
            # and another VIP's add waited for them). A dump's parts still yield between
            # them; a call that would block waits, as before.
            # (NLM_F_EXCL, which a VIP add sets, is NLM_F_DUMP's bit 0x200 in another role.)
            dump = (flags & NLM_F_DUMP) == NLM_F_DUMP and not flags & NLM_F_ACK
            call = nonblocking_call if dump else _at_once_or_wait
            await call(sock, lambda: sock.send(data), writable=True)
            while not collector.done:
                try:
                    chunk = await call(sock, lambda: sock.recv(_RECV_BUFFER_BYTES))
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:
                        continue  # only notifications are dropped; our reply is still queued
                    raise
                collector.feed(chunk)
            return collector.replies

    def request_now(
        self, body: bytes, msg_type: int, flags: int, *, timeout_s: float = 2.0
    ) -> list[Message]:
        """``request()`` that blocks the thread until answered (or TimeoutError).

        Only for a socket that no trio task is using: it would take that task's replies.
        """
        seq = self._next_seq()
        self._sock.send(_encode(body, msg_type, flags, seq))
        collector = _Collector(seq, flags)
        deadline = time.monotonic() + timeout_s
        # poll, not select: select cannot watch a descriptor numbered 1024 or more, which an
        # agent with a few hundred instances reaches.
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while not collector.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise TimeoutError(f"no netlink answer within {timeout_s} s")
            try:
                collector.feed(self._sock.recv(_RECV_BUFFER_BYTES))
            except BlockingIOError:
                continue
        return collector.replies

    def _parse_notifications(self, data: bytes) -> list[Message]:
        return [
            _decode(msg_type, flags, seq, raw)
            for msg_type, flags, seq, raw in split_messages(data)
            if msg_type not in (NLMSG_NOOP, NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN)
        ]

    async def receive(self) -> list[Message]:
        """Wait for the next datagram of notifications; raise EventsLost on ENOBUFS."""
        try:
            data = await nonblocking_call(self._sock, lambda: self._sock.recv(_RECV_BUFFER_BYTES))
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                raise EventsLost("netlink notifications were dropped") from exc
            raise
        return self._parse_notifications(data)

    def receive_pending(self) -> list[Message]:
        """Return every notification already queued, without waiting.

        Raises EventsLost if the kernel dropped some (ENOBUFS); the queue is usable after.
        """
        out: list[Message] = []
        while True:
            try:
                data = self._sock.recv(_RECV_BUFFER_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    raise EventsLost("netlink notifications were dropped") from exc
                raise
            out.extend(self._parse_notifications(data))


def request_blocking(
    body: bytes, msg_type: int, flags: int, *, timeout_s: float = 2.0
) -> list[Message]:
    """Synchronous ``request()`` on a fresh socket, for start-up paths outside trio's loop.

    The socket lives in the calling thread's network namespace at the time of the call.
    """
    sock = _new_socket(0, blocking=True, rcvbuf_bytes=None)
    try:
        sock.settimeout(timeout_s)
        sock.send(_encode(body, msg_type, flags, 1))
        collector = _Collector(1, flags)
        while not collector.done:
            collector.feed(sock.recv(_RECV_BUFFER_BYTES))
        return collector.replies
    finally:
        sock.close()


# --- the messages: request bodies, and decoded views of replies and notifications ---------

IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
RT_SCOPE_LINK = 253

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Attributes = Sequence[tuple[int, bytes]]


def attribute(kind: int, value: bytes) -> bytes:
    """One netlink attribute (nlattr), padded to 4 bytes."""
    length = _NLA.size + len(value)
    return _NLA.pack(length, kind) + value + b"\0" * (-length % 4)


def asciiz(text: str) -> bytes:
    """A NUL-terminated string attribute value (IFLA_IFNAME, IFA_LABEL)."""
    return text.encode() + b"\0"


def u32(value: int) -> bytes:
    """A native-endian 32-bit attribute value (IFA_FLAGS)."""
    return _U32.pack(value)


def _with_attributes(fixed: bytes, attrs: Attributes) -> bytes:
    return fixed + b"".join(attribute(kind, value) for kind, value in attrs)


def ifinfomsg(
    *, family: int = 0, index: int = 0, flags: int = 0, change: int = 0, attrs: Attributes = ()
) -> bytes:
    """A link message body (struct ifinfomsg, then ``attrs`` as (IFLA_*, value) pairs)."""
    return _with_attributes(_IFINFOMSG.pack(family, 0, index, flags, change), attrs)


def ifaddrmsg(
    *,
    family: int,
    prefixlen: int = 0,
    flags: int = 0,
    scope: int = 0,
    index: int = 0,
    attrs: Attributes = (),
) -> bytes:
    """An address message body (struct ifaddrmsg, then ``attrs`` as (IFA_*, value) pairs)."""
    return _with_attributes(_IFADDRMSG.pack(family, prefixlen, flags, scope, index), attrs)


def rtmsg(*, family: int, dst_len: int = 0, attrs: Attributes = ()) -> bytes:
    """A route message body (struct rtmsg, the other fields 0, then (RTA_*, value) pairs)."""
    return _with_attributes(_RTMSG.pack(family, dst_len, 0, 0, 0, 0, 0, 0, 0), attrs)


def attributes(payload: bytes, offset: int) -> dict[int, bytes]:
    """The attributes from ``offset`` on, by type; the first of a repeated type wins. A
    truncated attribute ends the list (the kernel never sends one)."""
    out: dict[int, bytes] = {}
    while offset + _NLA.size <= len(payload):
        length, kind = _NLA.unpack_from(payload, offset)
        if length < _NLA.size or offset + length > len(payload):
            break
        out.setdefault(kind & NLA_TYPE_MASK, payload[offset + _NLA.size : offset + length])
        offset += (length + 3) & ~3
    return out


def _string(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class LinkInfo:
    """What the adapters need from an RTM_NEWLINK/RTM_DELLINK message."""

    index: int
    name: str
    flags: int  # IFF_* bits
    mac: str | None  # "aa:bb:cc:dd:ee:ff" (IFLA_ADDRESS), or None for links without one
    deleted: bool = False

    @property
    def up(self) -> bool:
        """Administratively up and with carrier (IFF_UP and IFF_RUNNING); False if deleted."""
        return not self.deleted and bool(self.flags & IFF_UP) and bool(self.flags & IFF_RUNNING)

    @classmethod
    def from_message(cls, message: Message) -> LinkInfo:
        _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(message.payload)
        attrs = attributes(message.payload, _IFINFOMSG.size)
        mac = attrs.get(IFLA_ADDRESS)
        return cls(
            index=index,
            name=_string(attrs.get(IFLA_IFNAME)) or "",
            flags=flags,
            mac=":".join(f"{octet:02x}" for octet in mac) if mac else None,
            deleted=message.msg_type == RTM_DELLINK,
        )


@dataclass(frozen=True)
class AddressInfo:
    """What the adapters need from an RTM_NEWADDR/RTM_DELADDR message."""

    index: int
    interface: IPInterface
    label: str | None  # IPv4 only (IFA_LABEL); None for IPv6
    flags: int  # IFA_F_* bits (the 32-bit IFA_FLAGS attribute when present)
    scope: int
    deleted: bool = False

    @property
    def usable(self) -> bool:
        """Neither tentative (DAD pending), DAD-failed nor deprecated."""
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED)

    @classmethod
    def from_message(cls, message: Message) -> AddressInfo:
        _family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(message.payload)
        attrs = attributes(message.payload, _IFADDRMSG.size)
        # IPv4: IFA_LOCAL is the address (IFA_ADDRESS is the peer on point-to-point links).
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw is None:
            raise ValueError(f"address message without an address (index {index})")
        wide_flags = attrs.get(IFA_FLAGS)
        return cls(
            index=index,
            interface=ipaddress.ip_interface(f"{ipaddress.ip_address(raw)}/{prefixlen}"),
            label=_string(attrs.get(IFA_LABEL)),
            flags=_U32.unpack(wide_flags)[0] if wide_flags is not None else flags,
            scope=scope,
            deleted=message.msg_type == RTM_DELADDR,
        )


def message_index(message: Message) -> int | None:
    """The interface index a link or address message is about (None for other kinds)."""
    if message.msg_type in (RTM_NEWLINK, RTM_DELLINK):
        return int(_IFINFOMSG.unpack_from(message.payload)[2])
    if message.msg_type in (RTM_NEWADDR, RTM_DELADDR):
        return int(_IFADDRMSG.unpack_from(message.payload)[4])
    return None


def route_type(message: Message) -> int:
    """The route type (RTN_*) of an RTM_NEWROUTE message."""
    return int(_RTMSG.unpack_from(message.payload)[7])


def link_request(ifname: str) -> bytes:
    """An RTM_GETLINK body asking for one link by name."""
    return ifinfomsg(attrs=[(IFLA_IFNAME, asciiz(ifname))])


def address_dump_request(family: int) -> bytes:
    """An RTM_GETADDR dump body for one address family (AF_INET / AF_INET6)."""
    return ifaddrmsg(family=family)


def link_by_name_blocking(ifname: str) -> LinkInfo:
    """Look a link up by name (synchronously). Raises OSError(ENODEV) if there is none."""
    replies = request_blocking(link_request(ifname), RTM_GETLINK, NLM_F_REQUEST)
    for message in replies:
        if message.msg_type == RTM_NEWLINK:
            return LinkInfo.from_message(message)
    raise OSError(errno.ENODEV, f"no link named {ifname}")


def addresses_blocking(
    family: int, index: int, *, sock: NetlinkSocket | None = None
) -> list[AddressInfo]:
    """Addresses of one family on the link with ``index``, in the kernel's order.

    With ``sock`` the dump goes over that socket (``request_now``: no task may be using it),
    so it reads the namespace the socket was opened in; otherwise over a fresh socket.
    """
    body = address_dump_request(family)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    if sock is not None:
        replies = sock.request_now(body, RTM_GETADDR, flags)
    else:
        replies = request_blocking(body, RTM_GETADDR, flags)
    return [
        info
        for info in (AddressInfo.from_message(m) for m in replies if m.msg_type == RTM_NEWADDR)
        if info.index == index
    ]
