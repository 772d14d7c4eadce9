"""VRRP on the wire: raw IP protocol 112 sockets, multicast or unicast, IPv4 or IPv6.

What it does: ``VrrpSocket.open()`` opens two raw sockets pinned to one interface with
``SO_BINDTODEVICE``:

- a *receive* socket that is not bound to any address (a raw socket bound to a unicast
  address never sees the multicast adverts), joined to 224.0.0.18 / ff02::12 on the
  interface's index in multicast mode. In unicast mode it does not join, and multicast
  packets it still gets because another socket on the host joined the group (an unbound
  IPv6 raw socket sees them whatever ``IPV6_MULTICAST_ALL`` says) are skipped;
- a *send* socket bound to ``local_address`` so the kernel puts the right source in the IP
  header, with TTL / hop limit 255 for multicast *and* unicast (RFC 5798 §5.1.1.3 / §5.1.2.5),
  multicast loop off, the outgoing interface set, and DSCP CS6 (internetwork control). A
  socket-filter that drops everything keeps it from queueing the unicast adverts addressed
  to it: only the receive socket reads.

``receive()`` returns a ``Received(payload, src, dst, ttl)``: the VRRP bytes, the IP source
and destination, and the IPv4 TTL or IPv6 hop limit exactly as received (checking it is the
agent's job: it knows multicast from unicast). IPv4 datagrams arrive with their header and
are parsed by ``vrrp.codec.parse_ipv4``; an IPv4 header that does not parse is counted in
``malformed`` and skipped. IPv6 gets the destination and hop limit from ``IPV6_PKTINFO`` and
``IPV6_HOPLIMIT`` ancillary data. Packets whose source is our own ``local_address`` are
skipped (and counted in ``own_skipped``). ``send(payload, dst)`` sends one VRRP packet; the
IPv6 checksum is the codec's (``IPV6_CHECKSUM`` is not set). While the link is down or gone,
or the source address is missing, ``send`` raises ``LinkUnavailable`` (an OSError). One task
receives at a time; any number may send (they take turns).

What it must not do: decode or validate VRRP (the codec and the agent do), read the clock,
or open a socket per packet. If the interface is deleted and created again, this socket is
dead even if the new interface got the same ifindex (its multicast membership went with the
old one): the agent closes it and opens a new one (``ifindex`` says which it was opened on).
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from hadirector.errors import DecodeError
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

__all__ = [
    "VRRP_MULTICAST_V4",
    "VRRP_MULTICAST_V6",
    "VRRP_PROTOCOL",
    "IPAddress",
    "Received",
    "VrrpSocket",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

VRRP_PROTOCOL = 112
VRRP_MULTICAST_V4 = ipaddress.IPv4Address("224.0.0.18")
VRRP_MULTICAST_V6 = ipaddress.IPv6Address("ff02::12")
VRRP_TTL = 255
DSCP_CS6_TOS = 0xC0
NO_ADDRESS = errno.EADDRNOTAVAIL

# Linux constants the socket module does not export on every Python.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_ATTACH_FILTER = 26
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)

_RECV_BUFFER_BYTES = 65535
_RCVBUF_BYTES = 1 << 20
_ANC_BUFFER_BYTES = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)
_DROP_ALL_FILTER = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, accept 0 bytes


@dataclass(frozen=True)
class Received:
    """One received VRRP packet: its bytes and the IP fields the agent checks."""

    payload: bytes
    src: IPAddress
    dst: IPAddress
    ttl: int  # IPv4 TTL or IPv6 hop limit


def _link_unavailable(exc: OSError, what: str) -> OSError:
    if exc.errno in LINK_UNAVAILABLE_ERRNOS:
        return LinkUnavailable(exc.errno, f"{what}: {exc.strerror}")
    return exc


def _attach_drop_all(sock: socket.socket) -> None:
    """Attach a classic BPF program that accepts nothing: the socket never queues input."""
    program = ctypes.create_string_buffer(_DROP_ALL_FILTER, len(_DROP_ALL_FILTER))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
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


class VrrpSocket:
    """Send and receive VRRP packets on one interface (see the module docstring)."""

    def __init__(
        self,
        *,
        interface: str,
        ifindex: int,
        family: int,
        local_address: IPAddress,
        destinations: tuple[IPAddress, ...],
        receiver: socket.socket,
        sender: socket.socket,
    ) -> None:
        self.interface = interface
        self.ifindex = ifindex
        self.family = family
        self.local_address: IPAddress = local_address
        self.destinations: tuple[IPAddress, ...] = destinations
        self._receiver = receiver
        self._sender = sender
        self.multicast = destinations[0].is_multicast
        self.malformed = 0
        self.own_skipped = 0
        self._send_lock = trio.Lock()  # senders queue here rather than share one fd wait

    @classmethod
    def open(
        cls,
        *,
        interface: str,
        family: int,
        unicast_peers: Sequence[IPAddress] = (),
        unicast_src: IPAddress | None = None,
    ) -> VrrpSocket:
        """Open the receive and send sockets on ``interface`` for ``family`` (4 or 6).

        With ``unicast_peers`` adverts go to each peer instead of the multicast group (and
        no group is joined). Raises ``LinkUnavailable`` if there is no address to send from
        and ``OSError(ENODEV)`` if the interface does not exist.
        """
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, got {family!r}")
        for peer in unicast_peers:
            if peer.version != family:
                raise ValueError(f"unicast peer {peer} is not IPv{family}")
        if unicast_src is not None and unicast_src.version != family:
            raise ValueError(f"unicast_src {unicast_src} is not IPv{family}")
        link = link_by_name_blocking(interface)
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        local: IPAddress
        if unicast_src is not None:
            local = unicast_src
        else:
            addresses = addresses_blocking(af, link.index)
            if family == 4:
                local = _pick_ipv4_source(interface, addresses)
            else:
                local = _pick_ipv6_source(interface, addresses)
        multicast = not unicast_peers
        destinations: tuple[IPAddress, ...]
        if multicast:
            destinations = (VRRP_MULTICAST_V4 if family == 4 else VRRP_MULTICAST_V6,)
        else:
            destinations = tuple(unicast_peers)
        receiver = socket.socket(af, socket.SOCK_RAW, VRRP_PROTOCOL)
        sender: socket.socket | None = None
        try:
            sender = socket.socket(af, socket.SOCK_RAW, VRRP_PROTOCOL)
            device = interface.encode()
            for sock in (receiver, sender):
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device)
                sock.setblocking(False)
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
            _attach_drop_all(sender)
            if family == 4:
                cls._setup_ipv4(receiver, sender, link.index, local, multicast)
            else:
                cls._setup_ipv6(receiver, sender, link.index, local, multicast)
        except OSError as exc:
            receiver.close()
            if sender is not None:
                sender.close()
            raise _link_unavailable(exc, f"VRRP socket on {interface} from {local}") from exc
        return cls(
            interface=interface,
            ifindex=link.index,
            family=family,
            local_address=local,
            destinations=destinations,
            receiver=receiver,
            sender=sender,
        )

    @staticmethod
    def _setup_ipv4(
        receiver: socket.socket,
        sender: socket.socket,
        ifindex: int,
        local: IPAddress,
        multicast: bool,
    ) -> None:
        mreqn = struct.pack("4s4si", VRRP_MULTICAST_V4.packed, b"\0\0\0\0", ifindex)
        # Only groups this socket joined, not every group some other socket joined here.
        receiver.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        if multicast:
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DSCP_CS6_TOS)
        sender.bind((str(local), 0))

    @staticmethod
    def _setup_ipv6(
        receiver: socket.socket,
        sender: socket.socket,
        ifindex: int,
        local: IPAddress,
        multicast: bool,
    ) -> None:
        receiver.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        receiver.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        if multicast:
            mreq = struct.pack("16sI", VRRP_MULTICAST_V6.packed, ifindex)
            receiver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sender.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, DSCP_CS6_TOS)
        scope = ifindex if local.is_link_local else 0
        sender.bind((str(local), 0, 0, scope))

    def _sockaddr(self, dst: IPAddress) -> tuple[str, int] | tuple[str, int, int, int]:
        if dst.version == 4:
            return (str(dst), 0)
        scope = self.ifindex if (dst.is_link_local or dst.is_multicast) else 0
        return (str(dst), 0, 0, scope)

    async def send(self, payload: bytes, dst: IPAddress) -> None:
        """Send one VRRP packet to ``dst``; LinkUnavailable while the link can't carry it."""
        if dst.version != self.family:
            raise ValueError(f"destination {dst} is not IPv{self.family}")
        address = self._sockaddr(dst)
        sender = self._sender
        async with self._send_lock:
            try:
                await nonblocking_call(
                    sender, lambda: sender.sendto(payload, address), writable=True
                )
            except OSError as exc:
                raise _link_unavailable(exc, f"VRRP send on {self.interface} to {dst}") from exc

    async def receive(self) -> Received:
        """Wait for the next VRRP packet from someone else on this interface."""
        while True:
            if self.family == 4:
                received = await self._receive_ipv4()
            else:
                received = await self._receive_ipv6()
            if received is None:
                continue
            if received.src == self.local_address:
                self.own_skipped += 1
                continue
            if not self.multicast and received.dst.is_multicast:
                continue  # unicast mode: multicast adverts are for other sockets
            return received

    async def _receive_ipv4(self) -> Received | None:
        receiver = self._receiver
        datagram = await nonblocking_call(receiver, lambda: receiver.recv(_RECV_BUFFER_BYTES))
        try:
            packet = codec.parse_ipv4(datagram)
        except DecodeError:
            self.malformed += 1
            return None
        return Received(packet.payload, packet.src, packet.dst, packet.ttl)

    async def _receive_ipv6(self) -> Received | None:
        receiver = self._receiver
        payload, ancillary, _flags, address = await nonblocking_call(
            receiver, lambda: receiver.recvmsg(_RECV_BUFFER_BYTES, _ANC_BUFFER_BYTES)
        )
        dst: ipaddress.IPv6Address | None = None
        hop_limit: int | None = None
        for level, kind, data in ancillary:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == IPV6_PKTINFO and len(data) >= 16:
                dst = ipaddress.IPv6Address(bytes(data[:16]))
            elif kind == IPV6_HOPLIMIT and len(data) >= 4:
                (hop_limit,) = struct.unpack("i", data[:4])
        if dst is None or hop_limit is None:
            self.malformed += 1
            return None
        src = ipaddress.IPv6Address(str(address[0]).split("%", 1)[0])
        return Received(bytes(payload), src, dst, hop_limit)

    def close(self) -> None:
        """Close both sockets (wakes any task blocked in receive/send with ClosedResourceError)."""
        close_socket(self._receiver)
        close_socket(self._sender)
