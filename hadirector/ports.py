"""The agent's adapters behind small Protocols, and the bundle the agent is built from.

The agent only ever talks to these shapes; ``Adapters.real()`` gives the kernel-backed
implementations (net/, ipvs/manager.py), tests give recording fakes on a simulated wire
(tests/agent/). Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hadirector.status import IpvsStatus

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ReceivedPacket(Protocol):
    payload: bytes
    src: IPAddress
    dst: IPAddress
    ttl: int
    stamp_ns: int | None  # the kernel's receive time stamp (CLOCK_REALTIME ns), if any


class VrrpEndpoint(Protocol):
    """A VRRP endpoint: send a VRRP packet to a destination, receive the next one of its
    VRID (the shared socket it lives on hands it only those).

    ``ifindex`` is the index of the interface it was opened on: an interface deleted and
    created again under the same name has another one, and this socket is then dead."""

    local_address: IPAddress
    destinations: tuple[IPAddress, ...]
    ifindex: int

    async def send(self, payload: bytes, dst: IPAddress) -> None: ...

    def send_nowait(self, payload: bytes, dst: IPAddress) -> bool:
        """Send if the socket takes it without waiting (True); False: nothing sent."""

    def listen(
        self,
        listener: Callable[[Any], None],
        again: Callable[[Any, int | None], bool] | None = None,
    ) -> None:
        """Hand every packet of its VRID to ``listener`` (synchronously, as it arrives);
        ``again(packet, stamp_ns)``, if given, may be handed a packet the same as the
        last one instead (a shortcut: False when it does not take it, and ``listener``
        then gets it; net/vrrp_socket.py)."""

    def close(self) -> None: ...


class VrrpSocketsPort(Protocol):
    """Where instances get their VRRP endpoints: one receive and one send socket per
    (interface, family), shared, demultiplexed by VRID (net/vrrp_socket.py). ``run`` serves
    the shared sockets (their receive tasks) in the agent's nursery.

    ``incarnation`` says which interface of that name the caller means: a newer one than
    the shared sockets were opened on gets new sockets."""

    def open(
        self,
        *,
        interface: str,
        family: int,
        vrid: int,
        unicast_peers: Sequence[IPAddress] = (),
        unicast_src: IPAddress | None = None,
        incarnation: int = 0,
    ) -> VrrpEndpoint: ...

    async def run(self, *, task_status: Any = ...) -> None: ...


class WakeupsPort(Protocol):
    """Where the instances' deadlines are served, and their hot path runs (agent/wakeups.py
    in trio, agent/hotloop.py in a thread of its own). ``now`` is trio's clock, readable
    from the callbacks; ``call_in_trio`` runs what needs trio (waking a driver) in trio."""

    def call_at(
        self,
        at: float,
        callback: Callable[[float], None],
        early: float | None = None,
        current: Callable[[], tuple[float, float] | None] | None = None,
    ) -> None: ...

    def now(self) -> float: ...

    def call_in_trio(self, fn: Callable[[], None]) -> None: ...

    def threads(self) -> list[int]: ...

    async def run(self, *, task_status: Any = ...) -> None: ...


class AnnouncerPort(Protocol):
    """Gratuitous ARP / unsolicited NA on one interface."""

    def send_garp(self, address: ipaddress.IPv4Address) -> None: ...

    def send_unsolicited_na(self, address: ipaddress.IPv6Address) -> None: ...


class AddressesPort(Protocol):
    """VIPs on interfaces: add/remove (False = already so), and vanished-VIP events; while
    ``watch()`` runs, a listener hears of any address appearing (to retry what waited).
    ``add_now`` adds without waiting (a takeover in the hot path's thread): as ``add``, or
    None, with nothing done, for a VIP it cannot add that way (``add`` then)."""

    async def open(self) -> None: ...

    async def add(self, vip: Any) -> bool: ...

    def add_now(self, vip: Any) -> bool | None: ...

    async def remove(self, vip: Any) -> bool: ...

    def watch(self) -> AsyncIterator[Any]: ...

    def on_address_added(self, listener: Callable[[], None]) -> None: ...


class LinksPort(Protocol):
    """Link states and their changes as (ifname, up) pairs; the current ifindex of a name
    (None while there is no such interface) and its incarnation (a count that changes
    when the interface is deleted and created again, even with the same ifindex)."""

    async def open(self) -> None: ...

    def is_up(self, ifname: str) -> bool: ...

    def index_of(self, ifname: str) -> int | None: ...

    def incarnation(self, ifname: str) -> int: ...

    def changes(self) -> AsyncIterator[Any]: ...


class IpvsPort(Protocol):
    """The IPVS component: runs in the agent's nursery, takes reloads, reports its status."""

    async def run(self) -> None: ...

    def update(self, config: Any) -> None: ...

    def set_health(
        self,
        down: set[Any],
        *,
        drained: frozenset[Any] = ...,
        lost: frozenset[Any] = ...,
        ramp: Any = ...,
        weights: Any = ...,
    ) -> None: ...

    def status(self) -> IpvsStatus: ...


@dataclass
class Adapters:
    """Factories for everything the agent touches outside the pure core."""

    vrrp_sockets: Callable[[], VrrpSocketsPort]
    open_announcer: Callable[[str], AnnouncerPort]
    addresses: Callable[[], AddressesPort]
    links: Callable[[], LinksPort]
    ipvs: Callable[[Any], IpvsPort]
    # None: agent/wakeups.py, the instances' hot path in trio (what tests under trio's
    # virtual clock need); real(): agent/hotloop.py, which also reads the VRRP sockets.
    wakeups: Callable[[], WakeupsPort] | None = None

    @classmethod
    def real(cls) -> Adapters:
        from hadirector.agent.hotloop import HotLoop
        from hadirector.net.addresses import AddressManager
        from hadirector.net.announce import SharedAnnouncers
        from hadirector.net.links import LinkWatcher
        from hadirector.net.vrrp_socket import VrrpSockets

        loop = HotLoop()  # the deadlines and the VRRP receive sockets, in one thread
        return cls(
            vrrp_sockets=lambda: VrrpSockets(loop),
            open_announcer=SharedAnnouncers(),  # one announcer per interface
            addresses=AddressManager,
            links=LinkWatcher,
            ipvs=_ipvs_manager,
            wakeups=lambda: loop,
        )


def _ipvs_manager(config: Any) -> IpvsPort:
    """The real IPVS manager, its module imported when an agent first needs one (the agent
    builds it only for a configuration with an LVS side: agent/supervisor.py)."""
    from hadirector.ipvs.manager import IpvsManager

    return IpvsManager(config)
