"""VRRP on the wire: raw IP protocol 112 sockets, multicast or unicast, IPv4 or IPv6.

What it does: ``VrrpSockets`` is the registry every VRRP instance of the agent opens its
endpoint from: ``open(interface=, family=, vrid=, ...)`` returns a ``VrrpSocket`` (one per
instance: its source, destinations, ``send`` and ``receive``), and all the endpoints on
one (interface, family) share two raw sockets pinned to that interface with
``SO_BINDTODEVICE``:

- one *receive* socket, not bound to any address (a raw socket bound to a unicast address
  never sees the multicast adverts), joined to 224.0.0.18 / ff02::12 on the interface's
  index while at least one endpoint on it is in multicast mode. A classic BPF socket
  filter (net/vrrp_filter.py) lets through only the VRIDs of the endpoints open on it, and
  is replaced whenever one opens or closes (a reload): adverts of other routers on the link
  never reach Python. One task per receive socket (or the hot path's thread) reads every
  datagram (all it holds per wake-up, ``READ_BATCH`` at most before it yields; in the
  thread, a socket for one VRID one datagram per readiness, epoll reporting it again while
  it holds more), reads its VRID and queues it for the endpoint of that VRID only, or
  hands it at once to the endpoint's listener. A datagram for a VRID no endpoint has
  (queued before the filter changed) is counted in ``unknown_vrid`` and dropped; one too
  short to hold a VRID, or whose IPv4 header does not parse, in ``malformed``;
- one *send* socket, with TTL / hop limit 255 for multicast *and* unicast (RFC 5798
  §5.1.1.3 / §5.1.2.5), multicast loop off, the outgoing interface set, and DSCP CS6
  (internetwork control). It is bound to no address: each packet carries its endpoint's
  source in ``IP_PKTINFO`` / ``IPV6_PKTINFO``, so endpoints with different sources
  (``unicast_src``) share it; the first IPv4 multicast (source, group) asked for is the
  socket's own (``IP_MULTICAST_IF`` with that source, ``connect`` to the group), sent to
  with a plain ``send`` (``_Port._connect_default``). A socket filter that drops
  everything keeps it from queueing the adverts that arrive: only the receive socket reads.

The sockets are opened with the first endpoint on (interface, family) and closed with the
last (``VrrpSocket.close``). An interface deleted and created again is another interface
even with the same name and ifindex (multicast membership went with the old one): the
caller passes the interface's ``incarnation`` and an ``open`` for a newer one, or for a
name whose ifindex changed, gets new sockets while the endpoints still on the old ones
keep them until they close. The receive tasks run in ``VrrpSockets.run()``'s nursery
(sockets opened before it starts get their task when it does); given the agent's hot path
thread (``VrrpSockets(loop)``, agent/hotloop.py), the receive sockets are read there
instead (``_Port.read_ready``: a batch per readiness, a pause of
``RECEIVE_ERROR_BACKOFF_S`` after an error), and a packet for an endpoint that does not
listen yet is queued in trio.

``VrrpSocket.receive()`` returns a ``Received(payload, src, dst, ttl, stamp_ns)``: the VRRP
bytes, the IP source and destination, the IPv4 TTL or IPv6 hop limit exactly as received
(checking it is the agent's job: it knows multicast from unicast), and when the kernel
received it (``SO_TIMESTAMPNS``: CLOCK_REALTIME nanoseconds; the agent counts the advert's
timers from there, not from when its thread got to the socket). IPv4 datagrams arrive
with their header and are parsed by ``vrrp.codec.parse_ipv4``; IPv6 gets the destination
and hop limit from ``IPV6_PKTINFO`` and ``IPV6_HOPLIMIT`` ancillary data. An endpoint does
not get packets whose source is its own address (counted in ``own_skipped``) nor, in
unicast mode, multicast ones (for another endpoint or another socket on the host; an
unbound IPv6 raw socket sees them whatever ``IPV6_MULTICAST_ALL`` says). Each endpoint
queues at most ``ENDPOINT_QUEUE`` packets (more are counted in ``queue_full`` and dropped).
``send(payload, dst)`` sends one VRRP packet from the endpoint's source (``send_nowait``
only if the socket takes it at once: the agent's wake-up task sends adverts so); the IPv6
checksum is the codec's (``IPV6_CHECKSUM`` is not set). While the link is down or gone, or the
source address is missing, ``open`` and ``send`` raise ``LinkUnavailable`` (an OSError).
One task receives from an endpoint at a time; any number may send (they take turns).
``listen(callback)`` replaces ``receive``: each packet is then handed to the callback, in
the receive task, as it is read (the agent's instances take them this way: no task wake-up
per packet). ``listen(callback, again)`` adds a shortcut for the steady state, IPv4 only: when
every endpoint of a VRID took the last datagram of that VRID through its listener and has
a shortcut, the same datagram again (but for the IP ID and checksum: a peer's next
advert; the parse cache gives the same parsed packet object) goes to their
``again(packet, stamp_ns)``, with no ``Received`` built and nothing checked again (its
source, destination and TTL are those of the last one, so are the endpoints' own-source
and unicast decisions); ``again`` answers False when it cannot take the shortcut, and the
endpoint is then handed the packet as any other. The memory is forgotten when an
endpoint of the VRID comes, goes or starts listening.

What it must not do: decode or validate VRRP beyond the VRID (the codec and the agent do),
read the clock, or open a socket per packet or per instance.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import ipaddress
import math
import socket
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from hadirector import logs
from hadirector.errors import DecodeError
from hadirector.net import vrrp_filter
from hadirector.net.links import LINK_UNAVAILABLE_ERRNOS, LinkUnavailable
from hadirector.net.netlink import (
    IFA_F_SECONDARY,
    AddressInfo,
    addresses_blocking,
    close_socket,
    link_by_name_blocking,
    nonblocking_call,
)
from hadirector.vrrp import codec

if TYPE_CHECKING:
    from hadirector.agent.hotloop import HotLoop

__all__ = [
    "VRRP_MULTICAST_V4",
    "VRRP_MULTICAST_V6",
    "VRRP_PROTOCOL",
    "IPAddress",
    "Received",
    "VrrpSocket",
    "VrrpSockets",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

VRRP_PROTOCOL = 112
VRRP_MULTICAST_V4 = ipaddress.IPv4Address("224.0.0.18")
VRRP_MULTICAST_V6 = ipaddress.IPv6Address("ff02::12")
VRRP_TTL = 255
DSCP_CS6_TOS = 0xC0
NO_ADDRESS = errno.EADDRNOTAVAIL
ENDPOINT_QUEUE = 256
# Datagrams read per wake-up of a receive task before it lets other tasks run.
READ_BATCH = 64
RECEIVE_ERROR_BACKOFF_S = 0.2

# Linux constants the socket module does not export on every Python.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_ATTACH_FILTER = 26
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # also its cmsg type
# ioctl: the length of the datagram at the head of the receive queue, 0 when it is empty.
SIOCINQ = 0x541B
_NOTHING_QUEUED = bytes(4)

_RECV_BUFFER_BYTES = 65535
_RCVBUF_BYTES = 1 << 21
_TIMESPEC = struct.Struct("@ll")
_STAMP_BUFFER_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)
_ANC_BUFFER_BYTES = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4) + _STAMP_BUFFER_BYTES


def _stamp_ns(data: bytes) -> int | None:
    """A ``SCM_TIMESTAMPNS`` (``struct timespec``) as integer nanoseconds."""
    if len(data) < _TIMESPEC.size:
        return None
    sec, nsec = _TIMESPEC.unpack_from(data)
    return int(sec) * 1_000_000_000 + int(nsec)


# sendmsg's address and ancillary data for one (source, destination).
_SendArgs = tuple[tuple[str, int] | tuple[str, int, int, int], list[tuple[int, int, bytes]]]
# An endpoint's steady-state shortcut, ``again(packet, stamp_ns)`` (module docstring), and
# the endpoint whose it is.
_SteadyListener = Callable[["codec.Ipv4Packet", "int | None"], bool]
_Steady = tuple[_SteadyListener, "VrrpSocket"]


class Received(NamedTuple):
    """One received VRRP packet: its bytes and the IP fields the agent checks (a tuple:
    built for every packet, and a tuple is the cheapest object to build)."""

    payload: bytes
    src: IPAddress
    dst: IPAddress
    ttl: int  # IPv4 TTL or IPv6 hop limit
    # When the kernel received it (SO_TIMESTAMPNS: CLOCK_REALTIME, ns); None if not given.
    stamp_ns: int | None = None


_new_tuple = tuple.__new__
_TS_SIZE = _TIMESPEC.size
_TS_UNPACK = _TIMESPEC.unpack_from

# Peers are few: their address objects are built once, not per packet (bounded, so a flood
# of spoofed sources cannot grow it).
_ipv6 = functools.lru_cache(maxsize=1024)(ipaddress.IPv6Address)


@functools.lru_cache(maxsize=1024)
def _ipv6_text(text: str) -> ipaddress.IPv6Address:
    """The source of a datagram as recvmsg gives it (``fe80::1%eth0``)."""
    return ipaddress.IPv6Address(text.split("%", 1)[0])


def _link_unavailable(exc: OSError, what: str) -> OSError:
    if exc.errno in LINK_UNAVAILABLE_ERRNOS:
        return LinkUnavailable(exc.errno, f"{what}: {exc.strerror}")
    return exc


def _attach_filter(sock: socket.socket, program: list[vrrp_filter.Instruction]) -> None:
    """Attach (or replace) the socket's classic BPF program."""
    code = vrrp_filter.pack(program)
    buffer = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }; the kernel
    # copies the program during the call.
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _pick_ipv4_source(ifname: str, addresses: list[AddressInfo]) -> ipaddress.IPv4Address:
    """The interface's primary IPv4 address: first non-secondary, usable; else the first."""
    candidates = [a for a in addresses if a.interface.version == 4]
    for info in candidates:
        if not info.flags & IFA_F_SECONDARY and info.usable:
            return ipaddress.IPv4Address(info.interface.ip)
    if candidates:
        return ipaddress.IPv4Address(candidates[0].interface.ip)
    raise LinkUnavailable(NO_ADDRESS, f"{ifname} has no IPv4 address to send VRRP from")


def _pick_ipv6_source(ifname: str, addresses: list[AddressInfo]) -> ipaddress.IPv6Address:
    """The interface's link-local address, once duplicate address detection is done."""
    link_locals = [
        a for a in addresses if a.interface.version == 6 and a.interface.ip.is_link_local
    ]
    for info in link_locals:
        if info.usable:
            return ipaddress.IPv6Address(info.interface.ip)
    if link_locals:
        raise LinkUnavailable(
            errno.EADDRNOTAVAIL, f"{ifname}: link-local address still tentative (DAD)"
        )
    raise LinkUnavailable(
        errno.EADDRNOTAVAIL, f"{ifname} has no IPv6 link-local address to send VRRP from"
    )


def _check_source(interface: str, ifindex: int, local: IPAddress) -> None:
    """Raise what binding a socket on ``interface`` to ``local`` raises (EADDRNOTAVAIL when
    it is not an address of this host, or still tentative): the send socket is bound to no
    address, so this is where a missing source shows, as it did when each instance bound
    its own."""
    af = socket.AF_INET if local.version == 4 else socket.AF_INET6
    with socket.socket(af, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        if local.version == 4:
            probe.bind((str(local), 0))
        else:
            probe.bind((str(local), 0, 0, ifindex if local.is_link_local else 0))


class _Port:
    """The receive and send sockets of one (interface, family), shared by its endpoints."""

    def __init__(
        self, registry: VrrpSockets, interface: str, family: int, ifindex: int, incarnation: int
    ) -> None:
        self.registry = registry
        self.interface = interface
        self.family = family
        self.ifindex = ifindex
        self.incarnation = incarnation
        self.by_vrid: dict[int, list[VrrpSocket]] = {}
        self.multicast_members = 0
        self.joined = False
        self.malformed = 0
        self.unknown_vrid = 0
        self.receive_errors = 0
        self.filter_vrids: frozenset[int] = frozenset()
        self.reader_scope: trio.CancelScope | None = None
        self._error_logged = -math.inf
        self._send_lock = trio.Lock()  # senders queue here rather than share one fd wait
        # Senders holding or waiting for the lock (``send_nowait`` yields to them): a
        # count, not ``Lock.locked()``, a Python call per advert.
        self._send_queued = 0
        # The last (source, destination) sent to and its arguments: compared by identity,
        # no address hashing per advert.
        self._send_args_last: tuple[Any, Any, _SendArgs | None] = (None, None, None)
        self._send_args_cache: dict[tuple[IPAddress, IPAddress], _SendArgs] = {}
        # The arguments of the (source, destination) the send socket is connected to and
        # has as its multicast source (``_connect_default``): sent with a plain ``send``.
        self.connected_args: _SendArgs | None = None
        self._connected_pair: tuple[IPAddress, IPAddress] | None = None
        # parse_ipv4 with a memory: a peer's datagrams differ only in ID and checksum.
        self._ipv4 = codec.Ipv4Parser()
        # Per VRID: the parsed packet last handed to listeners, and the shortcuts of the
        # endpoints that took it (module docstring: ``listen(callback, again)``).
        self._steady: dict[int, tuple[codec.Ipv4Packet, tuple[_Steady, ...]]] = {}
        self._endpoints_changed = 0  # counts the comings, goings and listens (``forget``)
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        receiver = socket.socket(af, socket.SOCK_RAW, VRRP_PROTOCOL)
        try:
            sender = socket.socket(af, socket.SOCK_RAW, VRRP_PROTOCOL)
        except OSError:
            receiver.close()
            raise
        self.receiver = receiver
        self.sender = sender
        try:
            _attach_filter(receiver, vrrp_filter.vrid_filter((), family))  # nothing yet
            device = interface.encode()
            for sock in (receiver, sender):
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device)
                sock.setblocking(False)
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
            # Each datagram comes with the time the kernel received it: the agent counts an
            # advert's timers from there, not from when its thread got to read it.
            receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            _attach_filter(sender, vrrp_filter.vrid_filter((), family))
            if family == 4:
                self._setup_ipv4()
            else:
                self._setup_ipv6()
        except OSError as exc:
            self.close()
            raise _link_unavailable(exc, f"VRRP sockets on {interface}") from exc

    def _setup_ipv4(self) -> None:
        # Only groups this socket joined, not every group some other socket joined here.
        self.receiver.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sender = self.sender
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self._setup_multicast_if()
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DSCP_CS6_TOS)

    def _setup_multicast_if(self) -> None:
        mreqn = struct.pack("4s4si", VRRP_MULTICAST_V4.packed, b"\0\0\0\0", self.ifindex)
        self.sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)

    def _setup_ipv6(self) -> None:
        self.receiver.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        self.receiver.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        sender = self.sender
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        sender.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, DSCP_CS6_TOS)

    # -- membership and filter ----------------------------------------------------------

    @property
    def endpoint_count(self) -> int:
        return sum(len(eps) for eps in self.by_vrid.values())

    def _set_group(self, join: bool) -> None:
        if join == self.joined:
            return
        if self.family == 4:
            mreqn = struct.pack("4s4si", VRRP_MULTICAST_V4.packed, b"\0\0\0\0", self.ifindex)
            option = socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP
            self.receiver.setsockopt(socket.IPPROTO_IP, option, mreqn)
        else:
            mreq = struct.pack("16sI", VRRP_MULTICAST_V6.packed, self.ifindex)
            option = socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP
            self.receiver.setsockopt(socket.IPPROTO_IPV6, option, mreq)
        self.joined = join

    def _update(self) -> None:
        """Filter and group membership after an endpoint came or went."""
        vrids = frozenset(self.by_vrid)
        if vrids != self.filter_vrids:
            _attach_filter(self.receiver, vrrp_filter.vrid_filter(vrids, self.family))
            self.filter_vrids = vrids
        self._set_group(self.multicast_members > 0)

    def forget(self, vrid: int) -> None:
        """Forget the shortcut of ``vrid``: its endpoints or their listeners changed."""
        self._steady.pop(vrid, None)
        self._endpoints_changed += 1

    def add(self, endpoint: VrrpSocket) -> None:
        self.forget(endpoint.vrid)
        self.by_vrid.setdefault(endpoint.vrid, []).append(endpoint)
        if endpoint.multicast:
            self.multicast_members += 1
        try:
            self._update()
        except OSError as exc:
            self.remove(endpoint)
            raise _link_unavailable(exc, f"VRRP socket on {self.interface}") from exc

    def remove(self, endpoint: VrrpSocket) -> None:
        self.forget(endpoint.vrid)
        eps = self.by_vrid.get(endpoint.vrid, [])
        if endpoint not in eps:
            return
        eps.remove(endpoint)
        if not eps:
            del self.by_vrid[endpoint.vrid]
        if endpoint.multicast:
            self.multicast_members -= 1
        if not self.by_vrid:
            self.registry._port_closed(self)
            self.close()
            return
        # Failing means the interface is gone (a leave on a dead index fails): its socket
        # is dead too and the endpoints left on it re-open on the new one.
        with contextlib.suppress(OSError):
            self._update()

    def close(self) -> None:
        if self.reader_scope is not None:
            self.reader_scope.cancel()
        loop = self.registry.loop
        if loop is not None and not self.closed:
            loop.remove_reader(self.receiver.fileno())
        close_socket(self.receiver)
        close_socket(self.sender)

    @property
    def closed(self) -> bool:
        return self.receiver.fileno() < 0

    # -- sending ------------------------------------------------------------------------

    def _send_args(self, src: IPAddress, dst: IPAddress) -> _SendArgs:
        """sendmsg's address and ancillary data for ``src`` -> ``dst`` (built once)."""
        last = self._send_args_last
        if last[0] is src and last[1] is dst and last[2] is not None:  # the same objects
            return last[2]
        cached = self._send_args_cache.get((src, dst))
        if cached is not None:
            self._send_args_last = (src, dst, cached)
            return cached
        address: tuple[str, int] | tuple[str, int, int, int]
        if self.family == 4:
            address = (str(dst), 0)
            # struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
            info = struct.pack("i4s4s", self.ifindex, src.packed, b"\0\0\0\0")
            ancillary = [(socket.IPPROTO_IP, IP_PKTINFO, info)]
        else:
            scope = self.ifindex if (dst.is_link_local or dst.is_multicast) else 0
            address = (str(dst), 0, 0, scope)
            # struct in6_pktinfo { in6_addr ipi6_addr; int ipi6_ifindex; }
            info = struct.pack("16si", src.packed, self.ifindex)
            ancillary = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)]
        cache = self._send_args_cache
        if len(cache) >= 256:  # sources and peers are few; bounded anyway
            cache.clear()
            # The connected pair's are kept: they are what a plain ``send`` is chosen by.
            pair, connected = self._connected_pair, self.connected_args
            if pair is not None and connected is not None:
                cache[pair] = connected
        args = (address, ancillary)
        cache[(src, dst)] = args
        self._send_args_last = (src, dst, args)
        if self.connected_args is None and self.family == 4 and dst.is_multicast:
            self._connect_default(src, dst, args)
        return args

    def _connect_default(self, src: IPAddress, dst: IPAddress, args: _SendArgs) -> None:
        """Make ``src`` -> ``dst`` (the first IPv4 multicast pair asked for: the group, from
        the interface's address, the one every instance on the link most often sends
        with) the send socket's own: its multicast source (``IP_MULTICAST_IF``) and its
        peer (``connect``). Those adverts are then a ``send`` of the payload: no address,
        no ancillary data for Python to convert at each advert. Other pairs keep
        ``sendmsg`` with their ``IP_PKTINFO`` (which overrides the socket's source). Not
        done if the kernel refuses either (``sendmsg`` for all, as before)."""
        # struct ip_mreqn { in_addr imr_multiaddr; in_addr imr_address; int imr_ifindex; }
        mreqn = struct.pack("4s4si", b"\0\0\0\0", src.packed, self.ifindex)
        try:
            self.sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            self.sender.connect((str(dst), 0))
        except OSError:
            with contextlib.suppress(OSError):
                self._setup_multicast_if()
            return
        self.connected_args = args
        self._connected_pair = (src, dst)

    def send_nowait(
        self, payload: bytes, src: IPAddress, dst: IPAddress, args: _SendArgs | None = None
    ) -> bool:
        """Send at once if nobody waits to send and the socket takes it (True); ``args``:
        ``_send_args(src, dst)`` if the caller has them."""
        if self._send_queued:
            return False
        args = args or self._send_args(src, dst)
        try:
            if args is self.connected_args:
                self.sender.send(payload)  # (the socket's own source and peer)
            else:
                self.sender.sendmsg([payload], args[1], 0, args[0])
        except BlockingIOError:
            return False
        return True

    async def send(self, payload: bytes, src: IPAddress, dst: IPAddress) -> None:
        sender = self.sender
        # Nobody waits to send: try at once (a raw socket's buffer is rarely full).
        if self.send_nowait(payload, src, dst):
            return
        address, ancillary = self._send_args(src, dst)
        self._send_queued += 1
        try:
            async with self._send_lock:
                await nonblocking_call(
                    sender, lambda: sender.sendmsg([payload], ancillary, 0, address), writable=True
                )
        finally:
            self._send_queued -= 1

    # -- receiving ----------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Read every datagram and hand it to the endpoint of its VRID, in a trio task.

        Each wake-up drains what the socket holds (non-blocking reads until it has nothing,
        at most ``READ_BATCH`` before yielding to other tasks): one wake-up per burst, not
        per datagram."""
        receiver = self.receiver
        while not self.closed:
            try:
                await trio.lowlevel.wait_readable(receiver)
            except (trio.ClosedResourceError, OSError):
                return  # the last endpoint closed
            error = self.read_batch()
            if error is not None:
                if self.closed:
                    return
                self._receive_failed(error, trio.current_time())
                await trio.sleep(RECEIVE_ERROR_BACKOFF_S)

    def read_ready(self) -> None:
        """The receive socket is readable, in the hot path's thread (agent/hotloop.py): read
        a batch; after an error, stop reading for ``RECEIVE_ERROR_BACKOFF_S``."""
        if self.receiver.fileno() < 0:  # (``closed``, without a call of its own)
            return
        # A port for one VRID gets one advert per interval: one read, and epoll (level-
        # triggered) calls again at once if another waits; a port for several gets them
        # in bursts: read as a batch.
        error = self.read_one() if len(self.by_vrid) == 1 else self.read_batch()
        loop = self.registry.loop
        if error is None or self.closed or loop is None:
            return
        now = loop.now()
        self._receive_failed(error, now)
        fd = self.receiver.fileno()
        loop.remove_reader(fd)

        def again(_now: float) -> None:
            if not self.closed and self.receiver.fileno() == fd:
                loop.add_reader(fd, self.read_ready)

        loop.call_at(now + RECEIVE_ERROR_BACKOFF_S, again)

    def _receive_failed(self, error: OSError, now: float) -> None:
        self.receive_errors += 1
        if now - self._error_logged >= 1.0:
            self._error_logged = now
            logs.get(component="vrrp_socket", interface=self.interface, family=self.family).warning(
                "vrrp.receive_failed", error=str(error), count=self.receive_errors
            )

    def read_batch(self) -> OSError | None:
        """Read what the socket holds, ``READ_BATCH`` datagrams at most, and hand each to
        the endpoints of its VRID; the error that stopped it, if any.

        After each datagram the receive queue is asked whether another one waits
        (``SIOCINQ``), rather than read until a read fails: a failed read costs an
        exception (its message looked up and decoded), at every advert a backup hears."""
        receiver = self.receiver
        queued = bytearray(4)
        for _ in range(READ_BATCH):
            error = self.read_one()  # (nothing to read: the queue is found empty below)
            if error is not None:
                return error
            try:
                fcntl.ioctl(receiver, SIOCINQ, queued)
            except (OSError, ValueError):  # closed meanwhile (an endpoint's listener)
                return None
            if queued == _NOTHING_QUEUED:
                return None
        return None

    def read_one(self) -> OSError | None:
        """Read one datagram, if any, and hand it to the endpoints of its VRID; the error
        that stopped it, if any (no ``SIOCINQ`` asked: the caller's epoll reports the
        socket again while it holds more)."""
        try:
            if self.family == 4:
                self._read_ipv4()
                return None
            got = self._read_ipv6()
        except BlockingIOError:
            return None
        except OSError as exc:
            return exc
        if got is not None:
            vrid, received = got
            for endpoint in self.by_vrid.get(vrid, ()):
                endpoint._deliver(received)
        return None

    def _vrid(self, datagram: bytes) -> int | None:
        vrid = vrrp_filter.vrid_of(datagram, self.family)
        if vrid is None:
            self.malformed += 1
            return None
        if vrid not in self.by_vrid:
            self.unknown_vrid += 1
            return None
        return vrid

    def _read_ipv4(self) -> None:
        """Read one datagram (BlockingIOError if none) and hand it to the endpoints of its
        VRID: through their shortcut when it is the same as the last one (module
        docstring), else as a ``Received``."""
        datagram, ancillary, _flags, _address = self.receiver.recvmsg(
            _RECV_BUFFER_BYTES, _STAMP_BUFFER_BYTES
        )
        stamp = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TS_SIZE:
                sec, nsec = _TS_UNPACK(data)  # (``_stamp_ns``, inline)
                stamp = sec * 1_000_000_000 + nsec
        vrid: int | None
        packet = self._ipv4.known(datagram)
        if packet is not None:
            # Parsed before (the same bytes but for ID and checksum: a peer's next advert):
            # a 20-byte header, and the VRID where ``vrrp_filter.vrid_of`` found it then.
            vrid = datagram[21]
            steady = self._steady.get(vrid)
            if steady is not None and steady[0] is packet:
                for again, endpoint in steady[1]:
                    if not again(packet, stamp):
                        endpoint._deliver(_received(packet, stamp))
                return
            if vrid not in self.by_vrid:
                self.unknown_vrid += 1
                return
        else:
            vrid = self._vrid(datagram)
            if vrid is None:
                return
            try:
                packet = self._ipv4.parse(datagram)
            except DecodeError:
                self.malformed += 1
                return
        received = _received(packet, stamp)
        # Remembered for the shortcut only if every endpoint of the VRID took it through
        # its listener and has a shortcut (one that skipped it counts what it skips), and
        # none came, went or changed its listener meanwhile.
        changed = self._endpoints_changed
        takers: list[_Steady] | None = []
        for endpoint in self.by_vrid[vrid]:
            took = endpoint._deliver(received)
            shortcut = endpoint._again
            if took == _LISTENED and shortcut is not None and takers is not None:
                takers.append((shortcut, endpoint))
            else:
                takers = None
        if takers and changed == self._endpoints_changed:
            self._steady[vrid] = (packet, tuple(takers))
        else:
            self._steady.pop(vrid, None)

    def _read_ipv6(self) -> tuple[int, Received] | None:
        """One datagram, if any (BlockingIOError if none): its VRID and fields."""
        payload, ancillary, _flags, address = self.receiver.recvmsg(
            _RECV_BUFFER_BYTES, _ANC_BUFFER_BYTES
        )
        vrid = self._vrid(payload)
        if vrid is None:
            return None
        dst: ipaddress.IPv6Address | None = None
        hop_limit: int | None = None
        stamp = None
        for level, kind, data in ancillary:
            if level != socket.IPPROTO_IPV6:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    stamp = _stamp_ns(data)
                continue
            if kind == IPV6_PKTINFO and len(data) >= 16:
                dst = _ipv6(bytes(data[:16]))
            elif kind == IPV6_HOPLIMIT and len(data) >= 4:
                (hop_limit,) = struct.unpack("i", data[:4])
        if dst is None or hop_limit is None:
            self.malformed += 1
            return None
        src = _ipv6_text(str(address[0]))
        return vrid, Received(bytes(payload), src, dst, hop_limit, stamp)


def _received(packet: codec.Ipv4Packet, stamp: int | None) -> Received:
    """The ``Received`` of a parsed IPv4 datagram."""
    # (Received's own __new__ is a Python function: the tuple is built directly.)
    return _new_tuple(Received, (packet.payload, packet.src, packet.dst, packet.ttl, stamp))


# What ``VrrpSocket._deliver`` did with a packet.
_SKIPPED = 0  # not for this endpoint (its own source; multicast in unicast mode)
_LISTENED = 1  # handed to its listener
_QUEUED = 2  # queued (in trio) for its receive or its listener to come


class VrrpSocket:
    """One instance's VRRP endpoint on a shared (interface, family) port (module docstring)."""

    def __init__(
        self,
        port: _Port,
        *,
        vrid: int,
        local_address: IPAddress,
        destinations: tuple[IPAddress, ...],
    ) -> None:
        self._port = port
        self.interface = port.interface
        self.ifindex = port.ifindex
        self.family = port.family
        self.vrid = vrid
        self.local_address: IPAddress = local_address
        self.destinations: tuple[IPAddress, ...] = destinations
        self.multicast = destinations[0].is_multicast
        self.own_skipped = 0
        self.queue_full = 0
        self._inbox_send, self._inbox = trio.open_memory_channel[Received](ENDPOINT_QUEUE)
        self._listener: Callable[[Received], None] | None = None
        self._again: _SteadyListener | None = None
        # The last source seen that is not ours (compared by identity: no ipaddress == ).
        self._peer_seen: IPAddress | None = None
        self._last_send: tuple[IPAddress, IPAddress, _SendArgs] | None = None
        self.closed = False

    @property
    def malformed(self) -> int:
        """Datagrams the shared receive socket could not read a VRID from."""
        return self._port.malformed

    @property
    def unknown_vrid(self) -> int:
        """Datagrams on the shared receive socket for a VRID nobody runs there."""
        return self._port.unknown_vrid

    def _deliver(self, received: Received) -> int:
        """Hand ``received`` to the listener or queue it, unless it is not for this
        endpoint; which of the three it was (``_LISTENED``, ``_QUEUED``, ``_SKIPPED``)."""
        src = received.src
        if src is not self._peer_seen:  # (the socket reuses a peer's address object)
            if src == self.local_address:
                self.own_skipped += 1
                return _SKIPPED
            self._peer_seen = src
        if not self.multicast and received.dst.is_multicast:
            return _SKIPPED  # unicast mode: multicast adverts are for other endpoints
        if self._listener is not None:
            self._listener(received)
            return _LISTENED
        loop = self._port.registry.loop
        if loop is None:
            self._queue(received)
        else:  # read in the hot path's thread: the channel is trio's
            loop.call_in_trio(lambda: self._queue(received))
        return _QUEUED

    def _queue(self, received: Received) -> None:
        if self._listener is not None:  # listening since (in trio, after the queued ones)
            self._listener(received)
            return
        try:
            self._inbox_send.send_nowait(received)
        except trio.WouldBlock:
            self.queue_full += 1
        except trio.ClosedResourceError:
            pass

    async def send(self, payload: bytes, dst: IPAddress) -> None:
        """Send one VRRP packet to ``dst``; LinkUnavailable while the link can't carry it."""
        self._check_send(dst)
        try:
            await self._port.send(payload, self.local_address, dst)
        except OSError as exc:
            raise self._send_error(exc, dst) from exc

    def send_nowait(self, payload: bytes, dst: IPAddress) -> bool:
        """Send one VRRP packet to ``dst`` if the socket takes it without waiting (True);
        False when ``send`` would have to wait (nothing sent). Errors as ``send``.

        A master sends to the same destination from the same source every interval: the
        checked destination and its sendmsg arguments are kept, by identity (the objects
        are held, so an identity cannot be another address's)."""
        src = self.local_address
        last = self._last_send
        if last is not None and last[0] is dst and last[1] is src and not self.closed:
            args = last[2]
        else:
            self._check_send(dst)
            args = self._port._send_args(src, dst)
            self._last_send = (dst, src, args)
        port = self._port
        if port._send_queued:  # (``_Port.send_nowait``, inline)
            return False
        try:
            if args is port.connected_args:
                port.sender.send(payload)  # (the socket's own source and peer)
            else:
                port.sender.sendmsg([payload], args[1], 0, args[0])
        except BlockingIOError:
            return False
        except OSError as exc:
            raise self._send_error(exc, dst) from exc
        return True

    def _check_send(self, dst: IPAddress) -> None:
        if dst.version != self.family:
            raise ValueError(f"destination {dst} is not IPv{self.family}")
        if self.closed:
            raise trio.ClosedResourceError("VRRP endpoint closed")

    def _send_error(self, exc: OSError, dst: IPAddress) -> OSError:
        if exc.errno == errno.EINVAL:
            # The source in IP(V6)_PKTINFO is not an address of the host (any more), or
            # is tentative again (IPv6 DAD after the link came back up).
            return LinkUnavailable(
                NO_ADDRESS,
                f"VRRP send on {self.interface} to {dst}: source {self.local_address} "
                "not usable (missing or tentative)",
            )
        return _link_unavailable(exc, f"VRRP send on {self.interface} to {dst}")

    async def receive(self) -> Received:
        """Wait for the next VRRP packet of this endpoint's VRID from someone else."""
        return await self._inbox.receive()

    def listen(
        self, listener: Callable[[Received], None], again: _SteadyListener | None = None
    ) -> None:
        """From now on hand every packet ``receive`` would return to ``listener`` instead,
        at once, in the shared socket's receive task (the packets queued so far first);
        ``again``: the steady state's shortcut (module docstring). Neither may block;
        what they raise ends that task."""
        self._port.forget(self.vrid)
        self._listener = listener
        self._again = again
        while True:
            try:
                queued = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                return
            listener(queued)

    def close(self) -> None:
        """Leave the shared sockets (closed with the last endpoint); a task blocked in
        ``receive`` gets ClosedResourceError."""
        if self.closed:
            return
        self.closed = True
        self._port.remove(self)
        self._inbox.close()  # first: a blocked receive gets ClosedResourceError, not EOF
        self._inbox_send.close()


class VrrpSockets:
    """The registry of shared VRRP ports of one agent (see the module docstring)."""

    def __init__(self, loop: HotLoop | None = None) -> None:
        # The thread that reads the receive sockets (agent/hotloop.py); None: trio tasks.
        self.loop = loop
        self._ports: dict[tuple[str, int], _Port] = {}
        self._live: set[_Port] = set()  # _ports and older ones endpoints still use
        self._nursery: trio.Nursery | None = None
        self._pending: list[_Port] = []

    def ports(self) -> list[_Port]:
        """The current ports (one per interface and family in use)."""
        return list(self._ports.values())

    def open(
        self,
        *,
        interface: str,
        family: int,
        vrid: int,
        unicast_peers: Sequence[IPAddress] = (),
        unicast_src: IPAddress | None = None,
        incarnation: int = 0,
    ) -> VrrpSocket:
        """An endpoint for VRID ``vrid`` on ``interface`` for ``family`` (4 or 6).

        With ``unicast_peers`` adverts go to each peer instead of the multicast group.
        ``incarnation`` says which interface of that name the caller means (a newer one than
        the port's gets new sockets). Raises ``LinkUnavailable`` if there is no address to
        send from and ``OSError(ENODEV)`` if the interface does not exist.
        """
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, got {family!r}")
        if not 0 <= vrid <= 255:
            raise ValueError(f"VRID must be 0..255, got {vrid!r}")
        for peer in unicast_peers:
            if peer.version != family:
                raise ValueError(f"unicast peer {peer} is not IPv{family}")
        if unicast_src is not None and unicast_src.version != family:
            raise ValueError(f"unicast_src {unicast_src} is not IPv{family}")
        link = link_by_name_blocking(interface)
        local: IPAddress
        if unicast_src is not None:
            local = unicast_src
        else:
            af = socket.AF_INET if family == 4 else socket.AF_INET6
            addresses = addresses_blocking(af, link.index)
            if family == 4:
                local = _pick_ipv4_source(interface, addresses)
            else:
                local = _pick_ipv6_source(interface, addresses)
        try:
            _check_source(interface, link.index, local)
        except OSError as exc:
            raise _link_unavailable(exc, f"VRRP socket on {interface} from {local}") from exc
        destinations: tuple[IPAddress, ...]
        if unicast_peers:
            destinations = tuple(unicast_peers)
        else:
            destinations = (VRRP_MULTICAST_V4 if family == 4 else VRRP_MULTICAST_V6,)
        key = (interface, family)
        port = self._ports.get(key)
        if port is None or port.ifindex != link.index or port.incarnation != incarnation:
            port = _Port(self, interface, family, link.index, incarnation)
            self._ports[key] = port  # an older one lives on until its endpoints close
            self._live.add(port)
            self._start_reader(port)
        endpoint = VrrpSocket(port, vrid=vrid, local_address=local, destinations=destinations)
        port.add(endpoint)
        return endpoint

    def _start_reader(self, port: _Port) -> None:
        if self.loop is not None:
            self.loop.add_reader(port.receiver.fileno(), port.read_ready)
            return
        if self._nursery is None:
            self._pending.append(port)
            return
        port.reader_scope = trio.CancelScope()
        self._nursery.start_soon(self._read, port, port.reader_scope)

    @staticmethod
    async def _read(port: _Port, scope: trio.CancelScope) -> None:
        with scope:
            await port.read_loop()

    def _port_closed(self, port: _Port) -> None:
        self._live.discard(port)
        if self._ports.get((port.interface, port.family)) is port:
            del self._ports[(port.interface, port.family)]
        if port in self._pending:
            self._pending.remove(port)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the receive tasks until cancelled; the sockets are closed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                pending, self._pending = self._pending, []
                for port in pending:
                    if not port.closed:
                        self._start_reader(port)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for port in list(self._live):
                port.close()
            self._live.clear()
            self._ports.clear()
