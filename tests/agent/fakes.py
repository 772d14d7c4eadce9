"""Recording fakes of the agent's adapters on a simulated L2 segment, driven in virtual time.

A ``Lab`` holds wires (L2 segments), hosts (one director each: addresses, links, announcers,
IPVS, VRRP endpoints) and a single event ledger shared by all of them, so that a test can ask
"who held VIP X at time t" or "did the taker announce before the giver removed" across
agents. Every record carries ``trio.current_time()`` (virtual under ``MockClock``) and a
global sequence number: events at the same virtual instant keep the order they happened in.

``run_lab(test)`` runs ``await test(lab)`` in ``trio.run`` with
``MockClock(autojump_threshold=0)``: timers fire in exact virtual time and the whole test
takes milliseconds of real time.

These fakes stand in for the kernel only; the agent, its VRRP machine, codec, auth and sync
groups run for real. They send nothing outside the process.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing
from structlog.contextvars import bind_contextvars, bound_contextvars

from hadirector.agent import Agent
from hadirector.config.load import load_text
from hadirector.config.schema import Config
from hadirector.errors import DecodeError, KernelError
from hadirector.ports import Adapters
from hadirector.status import IpvsStatus
from hadirector.vrrp import auth, codec
from hadirector.vrrp.machine import VrrpMachine

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MCAST_V4 = ipaddress.IPv4Address("224.0.0.18")
MCAST_V6 = ipaddress.IPv6Address("ff02::12")
INTRUDER = "intruder"

_active_lab: Lab | None = None


def active_lab() -> Lab | None:
    """The lab of the running test (the log recorder in conftest.py files into it)."""
    return _active_lab


# -- the ledger ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One recorded effect: ``kind`` is add/remove/vanish (VIPs), garp/na (announcements),
    link, transition or a log event name."""

    seq: int
    time: float
    host: str
    kind: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """What a VRRP socket hands the agent: payload and the IP fields it checks."""

    payload: bytes
    src: IPAddress
    dst: IPAddress
    ttl: int = 255
    stamp_ns: int | None = None  # when the "kernel" received it (Wire.stamps)


@dataclass
class Frame:
    """One packet put on a wire, with where it went."""

    seq: int
    time: float
    sender: str
    src: IPAddress
    dst: IPAddress
    payload: bytes
    ttl: int
    delivered_to: list[str] = field(default_factory=list)

    def advert(self, *, hmac: bool = False) -> codec.Advert | None:
        """The advert this frame carries (trailer stripped when ``hmac``), or None."""
        payload = self.payload[: -auth.TRAILER_LEN] if hmac else self.payload
        try:
            return codec.decode(payload, src=self.src, dst=self.dst)
        except DecodeError:
            return None


# -- the wire ----------------------------------------------------------------------------


class Wire:
    """A simulated L2 segment carrying VRRP packets between endpoints.

    Multicast packets reach every other multicast endpoint of the same family; unicast
    packets reach the endpoint whose local address is the destination. ``delay_s`` delays
    every delivery; with ``stamps`` each packet carries its send time as a kernel receive
    time stamp would (``Received.stamp_ns``, on the virtual clock: a test puts the agent's
    ``kernel_stamp_clock_ns`` on it too); ``cut(a, b)`` drops everything between two hosts
    (both ways), ``isolate(a)`` drops everything to and from a host, ``heal()`` undoes
    both; ``drop``, a predicate of (frame, receiving endpoint), loses chosen packets. A
    host's link being down (``FakeLinks``) drops its packets too. ``frames`` keeps
    everything sent, with the hosts each packet reached.
    """

    def __init__(self, lab: Lab, name: str, delay_s: float = 0.0) -> None:
        self.lab = lab
        self.name = name
        self.delay_s = delay_s
        self.stamps = False
        self.endpoints: list[FakeEndpoint] = []
        self.frames: list[Frame] = []
        self._cuts: set[frozenset[str]] = set()
        self._isolated: set[str] = set()
        self.drop: Callable[[Frame, FakeEndpoint], bool] | None = None

    # partitions
    def cut(self, a: str, b: str) -> None:
        self._cuts.add(frozenset((a, b)))

    def isolate(self, host: str) -> None:
        self._isolated.add(host)

    def heal(self) -> None:
        self._cuts.clear()
        self._isolated.clear()

    def _blocked(self, a: str, b: str) -> bool:
        return a in self._isolated or b in self._isolated or frozenset((a, b)) in self._cuts

    def transmit(
        self,
        payload: bytes,
        *,
        src: IPAddress,
        dst: IPAddress,
        sender: str,
        ttl: int = 255,
        exclude: FakeEndpoint | None = None,
    ) -> Frame:
        now = trio.current_time()
        stamp_ns = round(now * 1e9) if self.stamps else None
        frame = Frame(next(self.lab.seq), now, sender, src, dst, bytes(payload), ttl)
        self.frames.append(frame)
        if exclude is not None and not exclude.link_up():
            return frame
        for ep in self.endpoints:
            if ep is exclude or ep.closed or ep.family != dst.version:
                continue
            if dst.is_multicast:
                if not ep.multicast:
                    continue
            elif ep.local_address != dst:
                continue
            if self._blocked(sender, ep.host.name) or not ep.link_up():
                continue
            if self.drop is not None and self.drop(frame, ep):
                continue
            frame.delivered_to.append(ep.host.name)
            ep.deliver(now + self.delay_s, Received(frame.payload, src, dst, ttl, stamp_ns))
        return frame

    def inject(
        self,
        payload: bytes,
        *,
        src: IPAddress,
        dst: IPAddress = MCAST_V4,
        ttl: int = 255,
        sender: str = INTRUDER,
    ) -> Frame:
        """Put raw bytes on the wire from a third party (spoofed or malformed adverts)."""
        return self.transmit(payload, src=src, dst=dst, sender=sender, ttl=ttl)

    def adverts_from(self, host: str, *, hmac: bool = False) -> list[tuple[Frame, codec.Advert]]:
        """The decodable adverts ``host`` sent, in order."""
        out = []
        for frame in self.frames:
            if frame.sender == host:
                advert = frame.advert(hmac=hmac)
                if advert is not None:
                    out.append((frame, advert))
        return out


class FakeEndpoint:
    """A VRRP socket on a wire (the ``VrrpEndpoint`` protocol)."""

    def __init__(
        self,
        host: Host,
        wire: Wire,
        interface: str,
        local_address: IPAddress,
        destinations: tuple[IPAddress, ...],
    ) -> None:
        self.host = host
        self.wire = wire
        self.interface = interface
        self.local_address = local_address
        self.destinations = destinations
        self.family = local_address.version
        self.multicast = destinations[0].is_multicast
        self.ifindex = host.links.index_of(interface) or 0
        self.incarnation = host.links.incarnation(interface)
        self.closed = False
        self._queue: list[tuple[float, int, Received]] = []
        self._wakeup = trio.Event()
        self._pump_scope = trio.CancelScope()
        self.sent = 0

    def link_up(self) -> bool:
        """Up, and still the interface it was opened on (not a re-created one)."""
        links = self.host.links
        return links.is_up(self.interface) and links.incarnation(self.interface) == self.incarnation

    def deliver(self, at: float, packet: Received) -> None:
        heapq.heappush(self._queue, (at, next(self.host.lab.seq), packet))
        self._wakeup.set()

    async def send(self, payload: bytes, dst: IPAddress) -> None:
        if self.closed:
            raise OSError("socket closed")
        self.sent += 1
        self.wire.transmit(
            payload, src=self.local_address, dst=dst, sender=self.host.name, exclude=self
        )

    def send_nowait(self, payload: bytes, dst: IPAddress) -> bool:
        if self.closed:
            raise OSError("socket closed")
        self.sent += 1
        self.wire.transmit(
            payload, src=self.local_address, dst=dst, sender=self.host.name, exclude=self
        )
        return True

    async def receive(self) -> Received:
        while True:
            if self.closed:
                await trio.sleep_forever()
            now = trio.current_time()
            if self._queue and self._queue[0][0] <= now:
                return heapq.heappop(self._queue)[2]
            deadline = self._queue[0][0] if self._queue else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()

    def listen(
        self,
        listener: Callable[[Received], None],
        again: Callable[[Any, int | None], bool] | None = None,
    ) -> None:
        """Hand each packet to ``listener`` from the host's VRRP receive task (as the
        shared socket's reader does), from the time it is due (``again`` is not used:
        every packet goes to ``listener``, which takes the shortcut itself when it can)."""
        self.host.start_pump(self._pump, listener)

    async def _pump(self, listener: Callable[[Received], None]) -> None:
        with self._pump_scope:
            while True:
                listener(await self.receive())

    def close(self) -> None:
        self.closed = True
        self._pump_scope.cancel()
        if self in self.wire.endpoints:
            self.wire.endpoints.remove(self)


# -- per-host adapters --------------------------------------------------------------------


class FakeAddresses:
    """VIPs on one host (the ``AddressesPort`` protocol), every change in the lab ledger."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.held: dict[str, Any] = {}
        self.opened = 0
        # VIPs the "kernel" refuses to add or to remove (KernelError).
        self.refuse_add: set[str] = set()
        self.refuse_remove: set[str] = set()
        self._send, self._receive = trio.open_memory_channel[Any](100)
        self.address_listener: Callable[[], None] | None = None

    def on_address_added(self, listener: Callable[[], None]) -> None:
        self.address_listener = listener

    async def open(self) -> None:
        self.opened += 1

    def _check(self, verb: str, key: str) -> None:
        if key in (self.refuse_add if verb == "add" else self.refuse_remove):
            self.host.lab.record(self.host.name, f"{verb}_refused", key)
            raise KernelError(f"cannot {verb} {key}: Operation not permitted")

    async def add(self, vip: Any) -> bool:
        return self._add(vip, at_once=False)

    def add_now(self, vip: Any) -> bool | None:
        """As the kernel adapter: IPv6 VIPs wait for their local route (``add``)."""
        if vip.interface.version != 4:
            return None
        return self._add(vip, at_once=True)

    def _add(self, vip: Any, *, at_once: bool) -> bool:
        """Add (recorded with ``at_once``: whether by ``add_now``)."""
        key = str(vip.interface)
        self._check("add", key)
        if self.host.links.index_of(vip.dev) is None:
            self.host.lab.record(self.host.name, "add_refused", key)
            raise KernelError(f"cannot add {key} to {vip.dev}: No such device")
        if key in self.held:
            return False
        self.held[key] = vip
        self.host.lab.record(self.host.name, "add", key, dev=vip.dev, at_once=at_once)
        return True

    async def remove(self, vip: Any) -> bool:
        key = str(vip.interface)
        self._check("remove", key)
        if key not in self.held:
            return False
        del self.held[key]
        self.host.lab.record(self.host.name, "remove", key, dev=vip.dev)
        return True

    @property
    def log(self) -> list[tuple[float, str, str]]:
        """(time, "add"/"remove"/"vanish", vip) on this host, in order."""
        return [
            (e.time, e.kind, e.subject)
            for e in self.host.lab.events
            if e.host == self.host.name and e.kind in ("add", "remove", "vanish")
        ]

    def vanish(self, vip_text: str) -> None:
        """Someone else deleted the VIP (``ip addr del``): drop it and tell the watcher."""
        vip = self.held.pop(vip_text)
        self.host.lab.record(self.host.name, "vanish", vip_text)
        self._send.send_nowait(vip.interface)

    async def watch(self) -> AsyncIterator[Any]:
        async for removed in self._receive:
            yield removed


class FakeLinks:
    """Link states of one host (the ``LinksPort`` protocol); every link is up unless set.

    Every name has an ifindex (numbered on first use) and an incarnation; ``delete`` takes
    the link away (down, no index), ``create`` brings it back as a new incarnation, with a
    new index or, as the kernel may do, the old one."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.state: dict[str, bool] = {}
        self.indexes: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.incarnations: dict[str, int] = {}
        self._next_index = itertools.count(2)
        self._send, self._receive = trio.open_memory_channel[tuple[str, bool]](100)

    def index_of(self, ifname: str) -> int | None:
        if ifname in self.deleted:
            return None
        if ifname not in self.indexes:
            self.indexes[ifname] = next(self._next_index)
        return self.indexes[ifname]

    def incarnation(self, ifname: str) -> int:
        return self.incarnations.get(ifname, 1)

    def delete(self, ifname: str) -> None:
        self.set(ifname, False)
        self.deleted.add(ifname)
        self.host.lab.record(self.host.name, "link_deleted", ifname)

    def create(self, ifname: str, *, up: bool = True, same_index: bool = False) -> int:
        """A new link of that name (a new index unless ``same_index``), up if ``up``."""
        self.deleted.discard(ifname)
        self.incarnations[ifname] = self.incarnation(ifname) + 1
        if not same_index or ifname not in self.indexes:
            self.indexes[ifname] = next(self._next_index)
        index = self.indexes[ifname]
        self.host.lab.record(self.host.name, "link_created", ifname, ifindex=index)
        self.state[ifname] = False
        if up:
            self.set(ifname, True)
        return index

    async def open(self) -> None:
        # A fresh watcher sees only changes after it opened (like a netlink subscription).
        self._send, self._receive = trio.open_memory_channel[tuple[str, bool]](100)

    def is_up(self, ifname: str) -> bool:
        return ifname not in self.deleted and self.state.get(ifname, True)

    def set(self, ifname: str, up: bool) -> None:
        if self.is_up(ifname) == up:
            return
        self.state[ifname] = up
        self.host.lab.record(self.host.name, "link", ifname, up=up)
        self._send.send_nowait((ifname, up))

    async def changes(self) -> AsyncIterator[tuple[str, bool]]:
        async for change in self._receive:
            yield change


class FakeAnnouncer:
    """GARP / unsolicited NA on one interface (the ``AnnouncerPort`` protocol), recorded."""

    def __init__(self, host: Host, interface: str) -> None:
        self.host = host
        self.interface = interface

    def send_garp(self, address: ipaddress.IPv4Address) -> None:
        self.host.lab.record(self.host.name, "garp", str(address), interface=self.interface)

    def send_unsolicited_na(self, address: ipaddress.IPv6Address) -> None:
        self.host.lab.record(self.host.name, "na", str(address), interface=self.interface)


class FakeIpvs:
    """The IPVS component (the ``IpvsPort`` protocol): records the configurations it got."""

    def __init__(self, host: Host, config: Config) -> None:
        self.host = host
        self.configs: list[Config] = [config]
        self.health: list[set[Any]] = []
        self.health_before_run: list[bool] = []  # per set_health: was run() not started yet
        self.pool_states: list[tuple[frozenset[Any], frozenset[Any]]] = []  # drained, lost
        self.started = False

    async def run(self) -> None:
        self.started = True
        await trio.sleep_forever()

    def update(self, config: Config) -> None:
        self.configs.append(config)

    def set_health(
        self,
        down: set[Any],
        *,
        drained: frozenset[Any] = frozenset(),
        lost: frozenset[Any] = frozenset(),
        ramp: Any = None,
        weights: Any = None,
    ) -> None:
        self.health.append(set(down))
        self.pool_states.append((frozenset(drained), frozenset(lost)))
        self.health_before_run.append(not self.started)

    def status(self) -> IpvsStatus:
        return IpvsStatus()  # not used: no kernel table behind the fake


class FakeVrrpSockets:
    """The registry of VRRP endpoints (the ``VrrpSocketsPort`` protocol) of one host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.open = host.open_vrrp_endpoint

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the endpoints' receive tasks (``FakeEndpoint.listen``) until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self.host.vrrp_nursery = nursery
                pending, self.host.pending_pumps = self.host.pending_pumps, []
                for pump, listener in pending:
                    nursery.start_soon(pump, listener)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.host.vrrp_nursery = None


class Host:
    """One director: its interfaces on wires and the fakes its agent is built from."""

    def __init__(self, lab: Lab, name: str, interfaces: dict[str, tuple[Wire, str]]) -> None:
        self.lab = lab
        self.name = name
        self.interfaces: dict[str, tuple[Wire, IPAddress | None]] = {
            ifname: (wire, ipaddress.ip_address(addr))
            for ifname, (wire, addr) in interfaces.items()
        }
        self.addresses = FakeAddresses(self)
        self.links = FakeLinks(self)
        self.ipvs: list[FakeIpvs] = []
        self.endpoints: list[FakeEndpoint] = []
        # The host's wall clock in nanoseconds (HMAC send sequences); None: the real one.
        self.wall_clock_ns: Callable[[], int] | None = None
        # The running agent's VRRP receive tasks (FakeVrrpSockets.run), and those asked for
        # before it runs.
        self.vrrp_nursery: trio.Nursery | None = None
        self.pending_pumps: list[tuple[Callable[..., Awaitable[None]], Any]] = []

    def start_pump(self, pump: Callable[..., Awaitable[None]], listener: Any) -> None:
        if self.vrrp_nursery is None:
            self.pending_pumps.append((pump, listener))
        else:
            self.vrrp_nursery.start_soon(pump, listener)

    def open_vrrp_endpoint(
        self,
        *,
        interface: str,
        family: int,
        vrid: int,
        unicast_peers: Sequence[IPAddress] = (),
        unicast_src: IPAddress | None = None,
        incarnation: int = 0,
    ) -> FakeEndpoint:
        """An endpoint of its own per instance (the wire delivers it every VRID: the
        kernel's sharing and filtering are tested in tests/netns)."""
        if interface not in self.interfaces or self.links.index_of(interface) is None:
            raise OSError(19, f"no such device: {interface}")
        wire, address = self.interfaces[interface]
        local = unicast_src if unicast_src is not None else address
        if local is None or local.version != family:
            raise OSError(99, f"no IPv{family} address on {interface}")
        destinations: tuple[IPAddress, ...] = (
            tuple(unicast_peers) if unicast_peers else (MCAST_V4 if family == 4 else MCAST_V6,)
        )
        ep = FakeEndpoint(self, wire, interface, local, destinations)
        wire.endpoints.append(ep)
        self.endpoints.append(ep)
        return ep

    def delete_interface(self, ifname: str) -> None:
        """``ip link del``: the link goes, and every VIP on it with it."""
        self.links.delete(ifname)
        for key, vip in list(self.addresses.held.items()):
            if vip.dev == ifname:
                self.addresses.vanish(key)

    def create_interface(
        self, ifname: str, address: str | None, *, up: bool = True, same_index: bool = False
    ) -> int:
        """The link is created again (new index) on the same wire, with ``address`` or none
        yet (``set_address`` gives it one later); returns the new index."""
        if ifname in self.interfaces:  # not for a device VRRP does not run on (a dummy)
            wire, _old = self.interfaces[ifname]
            self.interfaces[ifname] = (wire, ipaddress.ip_address(address) if address else None)
        return self.links.create(ifname, up=up, same_index=same_index)

    def set_address(self, ifname: str, address: str, *, notify: bool = True) -> None:
        """``ip addr add``: the interface gets ``address`` (the kernel's notification is
        heard by the address watcher unless ``notify`` is false, as if lost)."""
        wire, _old = self.interfaces[ifname]
        self.interfaces[ifname] = (wire, ipaddress.ip_address(address))
        if notify and self.addresses.address_listener is not None:
            self.addresses.address_listener()

    def _make_ipvs(self, config: Any) -> FakeIpvs:
        ipvs = FakeIpvs(self, config)
        self.ipvs.append(ipvs)
        return ipvs

    def adapters(self) -> Adapters:
        return Adapters(
            vrrp_sockets=lambda: FakeVrrpSockets(self),
            open_announcer=lambda ifname: FakeAnnouncer(self, ifname),
            addresses=lambda: self.addresses,
            links=lambda: self.links,
            ipvs=self._make_ipvs,
        )

    def agent(self, config: str | Config, config_path: Path | None = None) -> Agent:
        cfg = load_text(config) if isinstance(config, str) else config
        return Agent(
            cfg, config_path=config_path, adapters=self.adapters(), wall_clock_ns=self.wall_clock_ns
        )

    def held(self) -> set[str]:
        return set(self.addresses.held)


class Running:
    """An agent running in the lab's nursery."""

    def __init__(self, host: Host, agent: Agent) -> None:
        self.host = host
        self.agent = agent
        self.returned = trio.Event()
        self.returned_at: float | None = None
        self.scope = trio.CancelScope()
        self.stop_requested = False

    def state(self, instance: str) -> str:
        return self.agent.instances[instance].state.value

    def instance(self, instance: str) -> Any:
        return self.agent.instances[instance]

    def machine(self, instance: str) -> VrrpMachine:
        machine = self.agent.instances[instance].machine
        assert machine is not None, f"{instance} has not started"
        return machine

    def stop(self) -> None:
        """SIGTERM: graceful handover."""
        self.stop_requested = True
        self.agent.request_stop()

    def kill(self) -> None:
        """SIGKILL: the process vanishes (its VIPs stay on the interface, as in the kernel)."""
        self.scope.cancel()
        for ep in self.host.endpoints:
            ep.close()

    async def wait(self) -> None:
        await self.returned.wait()

    async def reload(self) -> None:
        """SIGHUP: re-read the configuration file (logged as this host)."""
        with bound_contextvars(host=self.host.name):
            await self.agent.reload()

    async def apply_config(self, config: str | Config) -> None:
        with bound_contextvars(host=self.host.name):
            await self.agent.apply_config(load_text(config) if isinstance(config, str) else config)


class Lab:
    """Wires, hosts and the shared ledger of one test."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.seq = itertools.count()
        self.events: list[Event] = []
        self.wires: dict[str, Wire] = {}
        self.hosts: dict[str, Host] = {}

    # construction
    def wire(self, name: str = "lan", delay_s: float = 0.0) -> Wire:
        wire = Wire(self, name, delay_s)
        self.wires[name] = wire
        return wire

    def host(self, name: str, interfaces: dict[str, tuple[Wire, str]]) -> Host:
        host = Host(self, name, interfaces)
        self.hosts[name] = host
        return host

    async def start(
        self,
        host: Host,
        config: str | Config,
        config_path: Path | None = None,
        *,
        prepare: Callable[[Agent], None] | None = None,
    ) -> Running:
        """Build an agent on ``host`` and run it in the background (``prepare`` is given
        the agent before it runs, e.g. to replace its health checker's prober)."""
        running = Running(host, host.agent(config, config_path))
        if prepare is not None:
            prepare(running.agent)

        async def run() -> None:
            bind_contextvars(host=host.name)  # inherited by every task the agent starts
            try:
                with running.scope:
                    await running.agent.run(handle_signals=False)
            finally:
                running.returned_at = trio.current_time()
                running.returned.set()

        self.nursery.start_soon(run)
        await trio.sleep(0)
        return running

    # recording
    def record(self, host: str, kind: str, subject: str, **detail: Any) -> Event:
        event = Event(next(self.seq), trio.current_time(), host, kind, subject, detail)
        self.events.append(event)
        return event

    def record_log(self, event_dict: Mapping[str, Any]) -> None:
        host = str(event_dict.get("host", "?"))
        name = str(event_dict.get("event", ""))
        detail = {k: v for k, v in event_dict.items() if k not in ("event", "host")}
        if name == "vrrp.transition":
            self.record(host, "transition", str(event_dict.get("instance")), **detail)
        else:
            self.record(host, name, str(event_dict.get("instance", "")), **detail)

    # queries
    def find(
        self, kind: str, *, host: str | None = None, subject: str | None = None
    ) -> list[Event]:
        return [
            e
            for e in self.events
            if e.kind == kind
            and (host is None or e.host == host)
            and (subject is None or e.subject == subject)
        ]

    def transitions(
        self, host: str | None = None, instance: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(host, old, new) for every reported transition, in order."""
        return [
            (e.host, e.detail["old"], e.detail["new"])
            for e in self.find("transition", host=host, subject=instance)
        ]

    def holders(self, vip: str, at: float | None = None) -> set[str]:
        """Hosts holding ``vip`` at virtual time ``at`` (after every event at ``at``)."""
        held: set[str] = set()
        for e in self._vip_events(vip):
            if at is not None and e.time > at:
                break
            _apply(held, e)
        return held

    def _vip_events(self, vip: str) -> list[Event]:
        return [
            e for e in self.events if e.subject == vip and e.kind in ("add", "remove", "vanish")
        ]

    def coverage_gaps(self, vip: str, start: float, end: float) -> list[tuple[float, float]]:
        """Spans within [start, end] when no host held ``vip``, in event order: a remove
        followed by an add at the same instant is a gap of zero length (break-before-make)."""
        held: set[str] = set()
        events = self._vip_events(vip)
        for e in events:
            if e.time >= start:
                break
            _apply(held, e)
        gaps: list[tuple[float, float]] = []
        # Nobody holding it when the window opens is a gap only if it lasts: a window may
        # start at the very instant of the first add.
        gap_from: float | None = None if held else start
        initial_gap = gap_from is not None
        for e in events:
            if not start <= e.time <= end:
                continue
            _apply(held, e)
            if not held and gap_from is None:
                gap_from = e.time
            elif held and gap_from is not None:
                if e.time > gap_from or initial_gap is False:
                    gaps.append((gap_from, e.time))
                gap_from = None
            initial_gap = False
        if gap_from is not None and (end > gap_from or not initial_gap):
            gaps.append((gap_from, end))
        return gaps


def _apply(held: set[str], event: Event) -> None:
    if event.kind == "add":
        held.add(event.host)
    else:
        held.discard(event.host)


def run_lab(test: Callable[[Lab], Awaitable[None]], *, timeout_s: float = 600.0) -> Lab:
    """Run ``await test(lab)`` under a MockClock that jumps to the next timer at once."""
    global _active_lab
    lab_box: list[Lab] = []

    async def main() -> None:
        global _active_lab
        async with trio.open_nursery() as nursery:
            lab = Lab(nursery)
            lab_box.append(lab)
            _active_lab = lab
            with trio.fail_after(timeout_s):  # virtual seconds: a stuck test fails, not hangs
                await test(lab)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:  # a plain failure reads better than a nursery's group
            raise leaves[0] from None
        raise
    finally:
        _active_lab = None
    return lab_box[0]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += _leaves(exc)
        else:
            out.append(exc)
    return out


# -- building adverts -----------------------------------------------------------------------


def advert_bytes(
    *,
    vrid: int,
    priority: int,
    src: IPAddress,
    dst: IPAddress = MCAST_V4,
    interval_cs: int = 10,
    version: int = 3,
    addresses: Iterable[IPAddress] | None = None,
    auth_type: int = 0,
    auth_data: bytes = b"",
) -> bytes:
    """A well-formed advert as a peer would send it."""
    advert = codec.Advert(
        version,
        vrid,
        priority,
        interval_cs,
        tuple(addresses) if addresses is not None else (ipaddress.ip_address("192.0.2.100"),),
        auth_type,
        auth_data,
    )
    return codec.encode(advert, src=src, dst=dst)


def instance_toml(
    *,
    name: str = "VI_1",
    interface: str = "eth0",
    vrid: int = 51,
    priority: int,
    vips: Sequence[str] = ("192.0.2.100/24",),
    advert_interval_s: float = 0.1,
    extra: str = "",
) -> str:
    """One ``[[vrrp_instance]]`` table."""
    vip_list = ", ".join(f'"{v}"' for v in vips)
    return (
        "[[vrrp_instance]]\n"
        f'name = "{name}"\n'
        f'interface = "{interface}"\n'
        f"vrid = {vrid}\n"
        f"priority = {priority}\n"
        f"advert_interval = {advert_interval_s}\n"
        f"virtual_addresses = [{vip_list}]\n"
        f"{extra}\n"
    )


def pair(
    lab: Lab, *, delay_s: float = 0.0, extra_interfaces: Sequence[str] = ()
) -> tuple[Wire, Host, Host]:
    """Two directors a (192.0.2.1) and b (192.0.2.2) on one segment, eth0."""
    wire = lab.wire("lan", delay_s)
    a = lab.host("a", {"eth0": (wire, "192.0.2.1")})
    b = lab.host("b", {"eth0": (wire, "192.0.2.2")})
    for ifname in extra_interfaces:
        a.links.state.setdefault(ifname, True)
        b.links.state.setdefault(ifname, True)
    return wire, a, b
