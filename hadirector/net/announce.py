"""Announcing a VIP's new home: gratuitous ARP (IPv4) and unsolicited Neighbor Advertisement
(IPv6), hand-built frames on one packet socket per interface.

What it does: ``Announcer.open(interface)`` opens one ``AF_PACKET``/``SOCK_RAW`` socket bound
to the interface with protocol 0 (it sends, it never receives) and reads the interface's MAC
(from the socket's own address) and IPv6 link-local address (netlink). Sending is a single
non-blocking ``send()`` of a ready frame: no scapy, no socket per frame (~20 µs a frame).

- ``send_garp(ipv4)`` sends a gratuitous ARP *request* (RFC 5227 §3 "ARP Announcement", what
  keepalived sends): Ethernet broadcast, opcode 1, sender = target protocol address = the
  VIP, sender hardware address = our MAC, target hardware address 00:00:00:00:00:00.
  ``send_garp(ipv4, reply=True)`` sends the gratuitous *reply* variant instead (opcode 2,
  target hardware address = our MAC, as ``arping -A``), for neighbours that only learn from
  replies. Linux neighbours update an existing entry from either.
- ``send_unsolicited_na(ipv6)`` sends an ICMPv6 Neighbor Advertisement (RFC 4861 §4.4, §7.2.6)
  to ff02::1 (Ethernet 33:33:00:00:00:01), hop limit 255, Router and Solicited flags clear,
  Override set, target = the VIP, with a Target Link-Layer Address option; source = the
  interface's link-local (the VIP itself if the interface has none); checksum computed here.

Frames shorter than the Ethernet minimum are zero-padded to 60 bytes. The MAC and link-local
follow the interface: the announcer reads queued link/IPv6-address notifications for its
interface before each send (one non-blocking ``recv``) and re-reads both when something
changed; ``refresh()`` does the same on demand. The interface is followed by name: if it is
deleted (the kernel then unbinds the packet socket) and one with the same name appears, with
a new ifindex or the old one, the socket is bound to it again before the next send. While
the link is down or gone the sends raise ``LinkUnavailable``; a full transmit queue raises
``BlockingIOError`` (the agent counts it; the next repeat of the announcement covers it).

What it must not do: decide when or how often to announce (the agent does, from the
configuration), or block: both sends are plain synchronous calls that never wait.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Callable

from hadirector.net.links import LINK_UNAVAILABLE_ERRNOS, LinkUnavailable
from hadirector.net.netlink import (
    NLM_F_REQUEST,
    RTM_DELADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
    AddressInfo,
    EventsLost,
    LinkInfo,
    Message,
    NetlinkSocket,
    addresses_blocking,
    close_socket,
    link_by_name_blocking,
    link_request,
    message_index,
)
from hadirector.vrrp.codec import internet_checksum

__all__ = ["Announcer", "SharedAnnouncers", "build_garp", "build_unsolicited_na"]

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_BROADCAST = b"\xff" * 6
ETH_ALL_NODES = bytes.fromhex("333300000001")
ETH_MIN_FRAME = 60  # without the FCS
ARP_REQUEST = 1
ARP_REPLY = 2
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
ND_OPT_TARGET_LLADDR = 2
NA_FLAG_OVERRIDE = 0x20000000
ALL_NODES = ipaddress.IPv6Address("ff02::1")
HOP_LIMIT = 255


def _pad(frame: bytes) -> bytes:
    return frame.ljust(ETH_MIN_FRAME, b"\0")


def build_garp(mac: bytes, address: ipaddress.IPv4Address, *, reply: bool = False) -> bytes:
    """The Ethernet frame of a gratuitous ARP request (or reply) for ``address``."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet MAC has 6 bytes, got {len(mac)}")
    ip = address.packed
    target_mac = mac if reply else b"\0" * 6
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        1,  # hardware type: Ethernet
        0x0800,  # protocol type: IPv4
        6,
        4,
        ARP_REPLY if reply else ARP_REQUEST,
        mac,
        ip,
        target_mac,
        ip,
    )
    return _pad(ETH_BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp)


def build_unsolicited_na(
    mac: bytes, source: ipaddress.IPv6Address, target: ipaddress.IPv6Address
) -> bytes:
    """The Ethernet frame of an unsolicited NA (Override set) for ``target``, to ff02::1."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet MAC has 6 bytes, got {len(mac)}")
    option = struct.pack("!BB6s", ND_OPT_TARGET_LLADDR, 1, mac)  # length in units of 8 bytes
    body = struct.pack("!I16s", NA_FLAG_OVERRIDE, target.packed) + option
    length = 4 + len(body)  # type, code, checksum + body
    pseudo = source.packed + ALL_NODES.packed + struct.pack("!I3xB", length, IPPROTO_ICMPV6)
    unsummed = struct.pack("!BBH", ND_NEIGHBOR_ADVERT, 0, 0) + body
    checksum = internet_checksum(pseudo + unsummed)
    icmp = struct.pack("!BBH", ND_NEIGHBOR_ADVERT, 0, checksum) + body
    ipv6 = struct.pack(
        "!IHBB16s16s",
        0x60000000,  # version 6, traffic class 0, flow label 0
        length,
        IPPROTO_ICMPV6,
        HOP_LIMIT,
        source.packed,
        ALL_NODES.packed,
    )
    return _pad(ETH_ALL_NODES + mac + struct.pack("!H", ETH_P_IPV6) + ipv6 + icmp)


class Announcer:
    """Sends GARPs and unsolicited NAs on one interface (see the module docstring)."""

    def __init__(
        self,
        interface: str,
        ifindex: int,
        sock: socket.socket,
        events: NetlinkSocket,
        requests: NetlinkSocket,
    ) -> None:
        self.interface = interface
        self.ifindex = ifindex
        self._sock = sock
        self._events = events  # link and IPv6 address notifications, read before each send
        self._requests = requests  # address dumps for refresh()
        self.mac = b""
        self.link_local: ipaddress.IPv6Address | None = None
        # The frames sent so far, by what they announce: a repeat sends the same bytes
        # (emptied whenever the MAC or link-local may have changed).
        self._frames: dict[tuple[object, ...], bytes] = {}
        self.refresh()

    @classmethod
    def open(cls, interface: str) -> Announcer:
        """Open the packet socket on ``interface``; OSError(ENODEV) if there is none."""
        link = link_by_name_blocking(interface)
        events = NetlinkSocket.open(RTMGRP_LINK | RTMGRP_IPV6_IFADDR)
        requests = NetlinkSocket.open()
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.bind((interface, 0))
            sock.setblocking(False)
            return cls(interface, link.index, sock, events, requests)
        except BaseException:
            sock.close()
            events.close()
            requests.close()
            raise

    def refresh(self) -> None:
        """Re-read the interface's MAC and IPv6 link-local address."""
        self._frames.clear()
        self.mac = bytes(self._sock.getsockname()[4])[:6]
        link_locals = [
            info
            for info in addresses_blocking(socket.AF_INET6, self.ifindex, sock=self._requests)
            if info.interface.ip.is_link_local
        ]
        usable = [info for info in link_locals if info.usable] or link_locals
        ip = usable[0].interface.ip if usable else None
        self.link_local = ipaddress.IPv6Address(ip) if ip is not None else None

    def _bound(self) -> bool:
        """Whether the packet socket still has a device: the kernel unbinds it when the
        device is deleted (its name then reads as empty)."""
        return bool(self._sock.getsockname()[0])

    def _rebind(self) -> bool:
        """Bind to the interface that now carries our name; False while there is none."""
        try:
            replies = self._requests.request_now(
                link_request(self.interface), RTM_GETLINK, NLM_F_REQUEST
            )
            index = next(
                LinkInfo.from_message(m).index for m in replies if m.msg_type == RTM_NEWLINK
            )
            self._sock.bind((self.interface, 0))
        except (OSError, StopIteration):
            return False  # gone (ENODEV) or unreadable: sends say LinkUnavailable
        self.ifindex = index
        self.refresh()
        return True

    def _follow_interface(self) -> bool:
        """Refresh if the interface's MAC or IPv6 link-local changed since the last look;
        re-bind if the interface was deleted, or one of our name created again. Whether the
        socket is bound to a device now."""
        try:
            messages: list[Message] | None = self._events.receive_pending()
        except EventsLost:
            messages = None
        recreated = messages is None or any(
            m.msg_type == RTM_NEWLINK
            and message_index(m) != self.ifindex
            and LinkInfo.from_message(m).name == self.interface
            for m in messages
        )
        bound = self._bound()
        if (recreated or not bound) and self._rebind():
            return True
        if messages is None:
            self.refresh()
            return bound
        for message in messages:
            if message_index(message) != self.ifindex:
                continue
            if message.msg_type == RTM_NEWLINK:
                mac = LinkInfo.from_message(message).mac
                changed = mac is not None and mac.replace(":", "") != self.mac.hex()
            elif message.msg_type in (RTM_NEWADDR, RTM_DELADDR):
                changed = AddressInfo.from_message(message).interface.ip.is_link_local
            else:
                changed = False  # RTM_DELLINK: the socket is unbound, handled above
            if changed:
                self.refresh()
                return bound
        return bound

    def _require_ethernet(self, what: str, bound: bool) -> None:
        if not bound:
            raise LinkUnavailable(errno.ENODEV, f"{what}: {self.interface} is gone")
        if len(self.mac) != 6:
            raise OSError(errno.EOPNOTSUPP, f"{what}: {self.interface} is not an Ethernet link")

    def _send(self, frame: bytes, kind: str, address: object) -> None:
        try:
            self._sock.send(frame)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno in LINK_UNAVAILABLE_ERRNOS:
                message = f"{kind} for {address} on {self.interface}: {exc.strerror}"
                raise LinkUnavailable(exc.errno, message) from exc
            raise

    def send_garp(self, address: ipaddress.IPv4Address, *, reply: bool = False) -> None:
        """Broadcast one gratuitous ARP request (or, with ``reply``, reply) for ``address``."""
        bound = self._follow_interface()
        key = ("garp", address, reply)
        frame = self._frames.get(key)
        if frame is None or not bound:
            what = f"gratuitous ARP for {address}"
            self._require_ethernet(what, bound)
            frame = self._frames[key] = build_garp(self.mac, address, reply=reply)
        self._send(frame, "gratuitous ARP", address)

    def send_unsolicited_na(self, address: ipaddress.IPv6Address) -> None:
        """Send one unsolicited Neighbor Advertisement for ``address`` to all nodes."""
        bound = self._follow_interface()
        key = ("na", address)
        frame = self._frames.get(key)
        if frame is None or not bound:
            what = f"unsolicited NA for {address}"
            self._require_ethernet(what, bound)
            source = self.link_local if self.link_local is not None else address
            frame = self._frames[key] = build_unsolicited_na(self.mac, source, address)
        self._send(frame, "unsolicited NA", address)

    def close(self) -> None:
        close_socket(self._sock)
        self._events.close()
        self._requests.close()


class SharedAnnouncers:
    """The agent's announcers, one per interface, whichever instances announce there.

    Calling it opens the interface's announcer the first time (an interface that cannot be
    opened raises, and is tried again on the next call) and returns the same one after: its
    packet socket, netlink sockets and ready frames serve every instance with VIPs on the
    interface. An announcer follows its interface by name (deleted, created again), so
    sharing changes nothing in what is sent or when."""

    def __init__(self, opener: Callable[[str], Announcer] = Announcer.open) -> None:
        self._opener = opener
        self._by_interface: dict[str, Announcer] = {}

    def __call__(self, interface: str) -> Announcer:
        announcer = self._by_interface.get(interface)
        if announcer is None:
            announcer = self._by_interface[interface] = self._opener(interface)
        return announcer

    def close(self) -> None:
        for announcer in self._by_interface.values():
            announcer.close()
        self._by_interface.clear()
