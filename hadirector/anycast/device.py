"""The anycast TUN device and the announced addresses' routes through it.

The agent opens ``/dev/net/tun`` and creates its device with TUNSETIFF and without
TUNSETPERSIST: the device lives only as long as the agent's file descriptor, so when the
process dies (SIGKILL, a crash, the OOM killer) the kernel deletes the device and with it
every route through it, and the BGP speaker that learns the table withdraws them. No stale
announcement survives the agent.

Each announced address is one host route ``ADDRESS/32 dev DEVICE table T`` (``/128`` for
IPv6), added and removed over rtnetlink (protocol ``static``, scope link); ``present()``
lists what the kernel holds, ``alive()`` says whether the device is still ours. Nothing is ever
read from or written to the device: no packet is routed through table T (no rule points to
it); it only carries routes.

An adapter: it does I/O and decides nothing.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct

from hadirector.config.schema import IPAddress
from hadirector.net import netlink

# linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
_IFREQ = struct.Struct("16sH22x")  # ifr_name, ifr_flags, rest of the union
# linux/if.h, linux/rtnetlink.h
IFF_UP = 0x1
RTM_DELROUTE = 25
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
RTA_OIF = 4
RTA_TABLE = 15
RT_TABLE_COMPAT = 252  # rtm_table when the table id does not fit a byte (RTA_TABLE holds it)
RTPROT_STATIC = 4
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
_RTMSG = struct.Struct("=BBBBBBBBI")
_U32 = struct.Struct("=I")
TUN_PATH = "/dev/net/tun"


class DeviceError(Exception):
    """The device could not be created or brought up (the message says why)."""


class AnycastDevice:
    """The TUN device, held open, and the routes through it."""

    def __init__(self, name: str, table: int) -> None:
        self.name = name
        self.table = table
        self.fd: int | None = None
        self.index = 0
        self._sock: netlink.NetlinkSocket | None = None
        self.routes: set[IPAddress] = set()  # added by us and not removed since

    async def open(self) -> None:
        """Create the device (gone with this process) and bring it up."""
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise DeviceError(f"cannot open {TUN_PATH}: {exc.strerror}") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(self.name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            hint = (
                " (in use: another agent, or a persistent device of that name)"
                if exc.errno in (errno.EBUSY, errno.EINVAL, errno.EPERM)
                else ""
            )
            raise DeviceError(
                f"cannot create TUN device {self.name}: {exc.strerror}{hint}"
            ) from None
        self.fd = fd
        self.index = socket.if_nametoindex(self.name)
        self._sock = netlink.NetlinkSocket.open()
        try:
            await self._sock.request(
                netlink.ifinfomsg(index=self.index, flags=IFF_UP, change=IFF_UP),
                netlink.RTM_NEWLINK,
                netlink.NLM_F_REQUEST | netlink.NLM_F_ACK,
            )
        except OSError as exc:
            self.close()
            raise DeviceError(f"cannot bring {self.name} up: {exc.strerror}") from None

    def _route(self, address: IPAddress) -> bytes:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        table = self.table if self.table < 256 else RT_TABLE_COMPAT
        fixed = _RTMSG.pack(
            family, address.max_prefixlen, 0, 0, table, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST, 0
        )
        attrs = [
            (netlink.RTA_DST, address.packed),
            (RTA_OIF, netlink.u32(self.index)),
            (RTA_TABLE, netlink.u32(self.table)),
        ]
        return fixed + b"".join(netlink.attribute(k, v) for k, v in attrs)

    async def add(self, address: IPAddress) -> None:
        """Put ``address``'s host route in the table (replacing one that is there)."""
        assert self._sock is not None
        flags = netlink.NLM_F_REQUEST | netlink.NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        await self._sock.request(self._route(address), netlink.RTM_NEWROUTE, flags)
        self.routes.add(address)

    async def remove(self, address: IPAddress) -> None:
        """Delete ``address``'s host route (already gone is fine)."""
        assert self._sock is not None
        try:
            await self._sock.request(
                self._route(address), RTM_DELROUTE, netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
            )
        except OSError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                raise
        self.routes.discard(address)

    def alive(self) -> bool:
        """The device is still ours (not deleted behind our back: ``ip link del``)."""
        try:
            return socket.if_nametoindex(self.name) == self.index
        except OSError:
            return False

    async def present(self) -> set[IPAddress]:
        """The host routes through the device in the table now, as the kernel lists them."""
        assert self._sock is not None
        found: set[IPAddress] = set()
        flags = netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
        for family in (socket.AF_INET, socket.AF_INET6):
            body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
            for message in await self._sock.request(body, netlink.RTM_GETROUTE, flags):
                if message.msg_type != netlink.RTM_NEWROUTE:
                    continue
                attrs = netlink.attributes(message.payload, _RTMSG.size)
                table = attrs.get(RTA_TABLE)
                oif = attrs.get(RTA_OIF)
                dst = attrs.get(netlink.RTA_DST)
                if table is None or oif is None or dst is None:
                    continue
                if _U32.unpack(table)[0] != self.table:
                    continue
                if _U32.unpack(oif)[0] != self.index:
                    continue
                if len(dst) in (4, 16):
                    found.add(ipaddress.ip_address(dst))
        return found

    def close(self) -> None:
        """Close the device: the kernel deletes it and its routes."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.routes.clear()
