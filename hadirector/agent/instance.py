"""One VRRP instance at run time: its driver task, socket endpoint, VIPs and announcements.

Every input of an instance (an accepted advert, a link change, a new effective priority, a
sync-group command, a stop, a reconfiguration, a VIP to put back) is posted to it, so the
pure state machine is driven by one task, in order, with ``trio.current_time()`` as its
clock. Control events travel on a queue that never drops and are served before adverts,
which travel on a bounded one (a flood drops adverts, counted, never a stop or a link
change). Two shortcuts, both while the driver is parked with nothing queued: an advert
that arrives is handed to the machine by the receive task of its socket (no wake-up per
advert: a backup's Master_Down deadline just moves), and a deadline that comes is served by
the agent's wake-up task (agent/wakeups.py), which runs the machine's timers and sends the
adverts they answer without waiting (a master's advert wakes no driver). With the real
adapters both shortcuts run in the hot path's thread (agent/hotloop.py), which never runs
while trio does: they read the clock through ``agent.wakeups.now`` and wake the driver
through ``call_in_trio``, after queueing the event in order. Anything else the
machine answers is posted to the driver as a control event; an advert arriving while the
driver is busy waits in the queue behind its work. Every VIP change is made by the driver,
as vrrp/vips.py decides, with one exception in where: a takeover's VIP adds, first
announcement and first advert are made by the hot path that found the takeover (the
driver parked, nothing else touching the instance: ``_take_over_now``), the rest is the
driver's. The machine answers with actions, which the driver performs in the
order given: send an advert, acquire the VIPs (add, then announce), release them, report a
transition (log, notify scripts, sync group).

Received adverts go through the receive checks of vrrp/receive.py (RFC 5798 §7.1) before
the machine sees them; the answer's reason is counted and logged here, at most once a second
per reason, and a rejected advert changes nothing. Adverts are built by vrrp/send.py; the
driver only sends them.

An interface deleted and created again (ifdown/ifup of a VLAN or bond, a re-created veth)
gets a new ifindex, and everything opened on the old one is dead. vrrp/iface.py follows it:
the deletion is a link down (FAULT; a master's VIPs went with the interface), said once;
when a link of the same name comes up, the endpoint is re-opened on the new index before the
instance leaves FAULT; without a source address yet it stays in FAULT, says why once, and
tries again when an address appears (at the latest every ``REOPEN_RETRY_S``).

This module does no protocol reasoning of its own: decisions live in the pure core.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from hadirector import logs
from hadirector.alerts import notify
from hadirector.config.schema import VrrpInstance
from hadirector.errors import KernelError
from hadirector.ports import AnnouncerPort, VrrpEndpoint
from hadirector.preflight import read_hmac_keys
from hadirector.vrrp import auth, codec, iface, receive, send, timers, vips
from hadirector.vrrp.group import SyncGroup
from hadirector.vrrp.machine import (
    AcquireAddresses,
    MachineConfig,
    ReleaseAddresses,
    SendAdvert,
    State,
    Transition,
    VrrpMachine,
)

if TYPE_CHECKING:
    from hadirector.agent.supervisor import Agent

# Adverts queued for an instance's driver beyond this many are dropped (and counted); control
# events have no bound.
ADVERT_QUEUE = 1024
# A re-created interface without a source address yet: try the VRRP socket again this often.
REOPEN_RETRY_S = iface.REOPEN_RETRY_S


def _seconds_to_cs(seconds: float) -> int:
    return round(seconds * 100)


def machine_config(cfg: VrrpInstance, primary: Any) -> MachineConfig:
    """The state machine's parameters for one configured instance."""
    return MachineConfig(
        vrid=cfg.vrid,
        priority=cfg.priority,
        advert_interval_cs=cfg.advert_interval_cs,
        version=cfg.version,
        preempt=cfg.preempt,
        preempt_delay_cs=_seconds_to_cs(cfg.preempt_delay_s),
        primary_address=primary,
        max_adopted_interval_cs=cfg.max_adopted_interval_cs,
        handover_hold_cs=_seconds_to_cs(cfg.handover_hold_s),
    )


class RateLimitedLog:
    """Log a repeated event at most once per ``period_s`` per key, with the count since;
    ``clock`` is the monotonic time in seconds (the driver's: ``trio.current_time``)."""

    def __init__(
        self, log: Any, period_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = log
        self._period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, key: str, event: str, **fields: Any) -> None:
        now = self._clock()
        if now - self._last.get(key, -math.inf) < self._period_s:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        self._log.warning(event, suppressed=suppressed, **fields)


def _arrived_by(event: tuple[Any, ...], deadline: float) -> bool:
    """Whether a queued ``("advert", advert, source, arrived)`` reached the host by
    ``deadline`` (one without its arrival time: no)."""
    return len(event) > 3 and event[3] is not None and event[3] <= deadline


class Instance:
    """One VRRP instance at run time: socket, machine, VIPs, announcements."""

    def __init__(self, agent: Agent, cfg: VrrpInstance) -> None:
        self.agent = agent
        self.cfg = cfg
        self.log = logs.get(instance=cfg.name)
        # The hot path's clock: trio's, readable from the thread agent/hotloop.py runs it in.
        self._now = agent.wakeups.now
        self.rejects = RateLimitedLog(self.log, clock=self._now)
        self.counters: Counter[str] = Counter()
        # Two queues: control events (never dropped) are served before adverts (bounded,
        # dropped and counted when full); ``post`` wakes the driver.
        self._control: deque[tuple[Any, ...]] = deque()
        self._adverts: deque[tuple[Any, ...]] = deque()
        self._wake = trio.Event()
        # A wake-up of the driver asked from the hot path's thread and not yet run in trio.
        self._wake_pending = False
        # The driver is parked with nothing queued: an accepted advert is then handed to
        # the machine at once by the receive path (``_on_packet``), and a due deadline by
        # the agent's wake-up task (``_on_wakeup``); only what needs the driver wakes it.
        self._idle = False
        # The earliest time this instance asked the wake-up task for (inf: none pending).
        self._wakeup_at = math.inf
        self.machine: VrrpMachine | None = None
        self.sock: VrrpEndpoint | None = None
        # One announcer per device a VIP lives on (a VIP's `dev` may differ from the
        # instance's interface: it is announced where it is).
        self.announcers: dict[str, AnnouncerPort] = {}
        # Signing key and accepted keys; set at start or by a reload, None without HMAC.
        self.hmac_keys: auth.KeyRing | None = None
        # The files hmac_keys came from, in the same order (signing key first), and which
        # key (index) last verified an advert from each source.
        self._hmac_files: tuple[str, ...] = ()
        self._hmac_key_of: dict[Any, int] = {}
        self.replay = auth.ReplayGuard()
        # The receive checks' view of self.cfg, rebuilt when a reload changes it.
        self._policy_of: VrrpInstance | None = None
        self._policy: receive.ReceivePolicy | None = None
        self._checker = receive.Checker()  # remembers the last advert accepted
        # How adverts are written (rebuilt when the configuration or the peer's checksum
        # form changes), and the builder that encodes each set of packets once.
        self._send_policy_of: tuple[VrrpInstance, bool] | None = None
        self._send_policy: send.SendPolicy | None = None
        self._builder = send.Builder()
        self._hmac_seq = 0
        # The master's short path (``_on_wakeup``): the packets of its last advert without
        # HMAC, and what they were built from (compared by identity).
        self._sent_key: tuple[object, ...] | None = None
        self._sent_packets: tuple[tuple[bytes, Any], ...] = ()
        # The backup's short path (``_on_packet``): the payload object (the socket's parse
        # cache hands the same one for the same datagram), the receive policy and the advert
        # of the last packet the checks accepted without HMAC or old checksum.
        self._accepted_last: tuple[bytes, receive.ReceivePolicy, codec.Advert] | None = None
        # A unicast peer was heard using keepalived's old v3 checksum: answer in that form,
        # as keepalived does (one configured with old_unicast_checksum drops the RFC form).
        self.peer_old_checksum = False
        # The last accepted advert: (source, priority, trio time), for alerts' peer view.
        self.last_peer: tuple[Any, int, float] | None = None
        # The VIPs this instance holds, and the decisions that change them (vrrp/vips.py).
        self.vips = vips.VipOwnership()
        self._announce_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        # The interface gone, back, the socket re-opened on it or a retry due (vrrp/iface.py).
        self.follower = iface.InterfaceFollower(REOPEN_RETRY_S)
        # The interface's incarnation (links.incarnation) the VRRP socket was opened on.
        self._sock_incarnation = 0
        self.done = trio.Event()
        # Set once the instance has its first state (the machine started), or is waiting
        # for its interface, an address on it or its keys: the agent reports READY then.
        self.first_state = trio.Event()
        # What the instance waits for before its machine can start (None: not waiting).
        self.waiting_for: str | None = None
        self.stop_requested = False
        self.group: SyncGroup | None = None

    # -- life cycle -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.machine.state if self.machine else State.INIT

    @property
    def holding(self) -> frozenset[str]:
        """The VIPs held (address/prefix): added, and not released since."""
        return self.vips.held

    def post(self, *event: Any) -> None:
        """Queue an event for the driver. An ``("advert", advert, source[, arrived])`` goes on
        the bounded advert queue (dropped and counted when it is full); anything else is a
        control event (stop, link, address, priority, force, reconfigure, VIP repairs, the
        actions of an advert ``_on_packet`` handed to the machine): never dropped, and
        served before any queued advert."""
        kind = event[0]
        if kind == "advert":
            if len(self._adverts) >= ADVERT_QUEUE:
                self.counters["adverts_dropped"] += 1
                self.rejects.warning("advert_queue", "vrrp.advert_queue_full", limit=ADVERT_QUEUE)
                return
            self._adverts.append(event)
        else:
            if kind == "stop":
                self.stop_requested = True
            self._control.append(event)
        self._idle = False
        self._wake_driver()

    def _wake_driver(self) -> None:
        """Set the driver's wake-up event, in trio: the hot path may run in a thread of its
        own (agent/hotloop.py), which then only asks (once until it has run); the events are
        queued already, in the order they happened."""
        if not self._wake_pending:
            self._wake_pending = True
            self.agent.wakeups.call_in_trio(self._wake_now)

    def _wake_now(self) -> None:
        self._wake_pending = False
        self._wake.set()

    def _wake_at(self) -> float:
        """When the driver must wake without an event: the machine's next timer, or a
        re-open retry."""
        return self._wake_window()[1]

    def _wake_window(self) -> tuple[float, float]:
        """From when the driver's next timer may run (a master's advert a little early,
        vrrp/machine.py ``timer_window``) and when it must: inf for no timer."""
        assert self.machine is not None
        window = self.machine.timer_window()
        retry_at = self.follower.next_deadline()
        if window is None:
            return (math.inf, math.inf) if retry_at is None else (retry_at, retry_at)
        if retry_at is None:
            return window
        return min(window[0], retry_at), min(window[1], retry_at)

    def _ask_wakeup(self) -> None:
        """Be called back (``_on_wakeup``) for the next timer, unless an earlier call is
        pending (it will ask again for the rest)."""
        early, at = self._wake_window()
        if at < self._wakeup_at:
            self._wakeup_at = at
            self.agent.wakeups.call_at(at, self._on_wakeup, early, self._moved_wakeup)

    def _moved_wakeup(self) -> tuple[float, float] | None:
        """For the wake-up task, before it sleeps: the timer window now, if the driver is
        parked (a backup's Master_Down deadline moved with the adverts it heard); the
        request is then moved there, and it is the one pending."""
        if not self._idle:
            return None  # the driver serves its deadlines itself, and asks when it parks
        assert self.machine is not None
        window = self.machine.timer_window()  # (``_wake_window`` without a retry pending)
        if window is None or self.follower.retry_at is not None:
            window = self._wake_window()
        if window[1] < self._wakeup_at:
            return None  # earlier than asked (asked again already, or about to): as it is
        self._wakeup_at = window[1]
        return window

    def _on_wakeup(self, now: float) -> None:
        """A deadline this instance asked for, in the agent's wake-up task.

        A busy driver serves its deadlines itself. A parked one is left parked when the
        deadline moved later (asked again) and when the machine's timers only send
        adverts (sent here); anything else is handed to the driver, in order."""
        self._wakeup_at = math.inf
        if not self._idle:
            return
        assert self.machine is not None
        if self.follower.retry_at is None:
            # A master's steady state: its lone Adver_Timer due (vrrp/machine.py
            # ``advert_tick``), the advert sent, the next wake-up asked; nothing else.
            tick = self.machine.advert_tick(now)
            if tick is not None:
                advert, early, at = tick
                not_sent = self._send_now(advert)
                if not_sent:
                    self.post("perform", [_SendPackets(tuple(not_sent))])
                else:
                    # Asked without ``current``: a master's next Adver_Timer does not move
                    # later while it stays parked, so the wake-up task need not ask before
                    # each wait; if it does move (a reload, another state), the wake-up
                    # comes early and asks again (below).
                    self._wakeup_at = at
                    self.agent.wakeups.call_at(at, self._on_wakeup, early)
                return
        if now < self._wake_window()[0]:
            self._ask_wakeup()
            return
        assert self.machine is not None
        if self.follower.due(now):
            self._idle = False
            self._wake_driver()  # the driver re-opens the socket
            return
        actions: list[Any] = self.machine.timer(now)
        if all(type(a) is SendAdvert for a in actions):
            unsent: list[tuple[bytes, Any]] = []
            for advert in actions:
                unsent.extend(self._send_advert_now(advert.priority, advert.interval_cs))
            if not unsent:
                self._ask_wakeup()
                return
            actions = [_SendPackets(tuple(unsent))]
        self._hand_to_driver(actions)

    def _hand_to_driver(self, actions: list[Any]) -> None:
        """The machine's answer to a timer or an advert, from the hot path (the driver is
        parked): a takeover's first steps here and now (``_take_over_now``), the rest, or
        all of it, posted to the driver."""
        if not any(type(a) is AcquireAddresses for a in actions):
            self.post("perform", actions)
            return
        actions = self._take_over_now(actions)
        i = next((i for i, a in enumerate(actions) if type(a) is not _Acquired), len(actions))
        took = actions[i] if i < len(actions) else None
        if not (isinstance(took, Transition) and _takes_over(took)):
            self.post("perform", actions)
            return
        # On the wire: the sync group is told now, not in the driver's report, so that a
        # member it makes master takes over here too (``command``) if its driver is parked.
        # Posted first: a command the group sends back to this instance queues behind.
        actions[i] = _Report(took)
        self.post("perform", actions)
        self.agent.command_members(self, took)

    def command(self, target: State, reason: str) -> None:
        """A sync group's command (``force``). Handed to the machine at once when the
        driver is parked with nothing queued (as the receive path hands it an advert): a
        takeover's first steps are then made here and now (``_hand_to_driver``), beside
        the member that made the group move, not after a wake-up of this driver.
        Otherwise posted, in order."""
        if not self._idle:
            self.post("force", target, reason)
            return
        assert self.machine is not None
        actions = self.machine.force(target, self._now(), reason)
        if actions:
            self._hand_to_driver(actions)
        else:
            self._ask_wakeup()

    def _take_over_now(self, actions: list[Any]) -> list[Any]:
        """Perform the leading VIP adds, announcement and adverts of ``actions`` here and
        now, without waiting; what is left, for the driver.

        Called by the hot path while the driver is parked (``_hand_to_driver``): a taker's
        VIPs, first gratuitous ARP and first advert go out in the wake-up that found its
        Master_Down timer due, not after a hand-over to trio (in the production agent the
        hot path runs in a thread of its own, agent/hotloop.py, and waking trio costs
        0.3-0.5 ms). The VIP changes are still the driver's: the same ownership decisions
        (vrrp/vips.py ``acquire``) and the same adds (``_add_vip_now``), made while the
        driver is parked and nothing else touches the instance. What needs trio (the
        ``vip.added`` log line and the announcement task, the transition's report) is left
        for the driver, in order: ``_Acquired``, then the rest. It stops at the first step
        that would wait: a VIP that cannot be added at once (IPv6: its local route,
        net/addresses.py) is left with the VIPs after it for the driver (``_AcquireRest``,
        which announces once they are all added), as is an advert the socket cannot take
        now (``_SendPackets``) and what follows it."""
        rest = list(actions)
        done: list[Any] = []
        while rest:
            action = rest[0]
            if type(action) is AcquireAddresses:
                added, later = self._acquire_now()
                if later:
                    rest[0] = _AcquireRest(tuple(added), tuple(later))
                    break
                self._announce_once(self._held_vips())
                done.append(_Acquired(tuple(added)))
            elif type(action) is SendAdvert:
                unsent = self._send_advert_now(action.priority, action.interval_cs)
                if unsent:
                    rest[0] = _SendPackets(tuple(unsent))
                    break
            else:
                break
            rest.pop(0)
        return done + rest

    async def _next_event(self) -> tuple[Any, ...] | None:
        """The next event for the driver, None when a timer (``_wake_at``) is due first.

        Control events come first, then a due timer, then adverts: a flood of adverts
        delays neither a stop, a link change or a reload, nor the machine's timers. An
        advert that reached the host before the due timer's deadline is served before it
        (the machine counts it from its arrival): a backup whose driver was busy past its
        Master_Down deadline while its master's adverts queued must not time out."""
        waited = False
        while True:
            if self._control:
                event = self._control.popleft()
            elif trio.current_time() >= (deadline := self._wake_at()):
                if not (self._adverts and _arrived_by(self._adverts[0], deadline)):
                    return None
                event = self._adverts.popleft()
            elif self._adverts:
                event = self._adverts.popleft()
            else:
                # Parked until an event. The deadline is the wake-up task's, which runs
                # the machine's timers itself while the driver is parked (a master's
                # advert), as the receive path hands adverts to the machine (a backup's
                # Master_Down timer moves with every advert it hears: no wake-up for that).
                self._wake = trio.Event()
                self._ask_wakeup()
                self._idle = True
                try:
                    await self._wake.wait()
                finally:
                    self._idle = False
                waited = True
                continue
            if not waited:
                await trio.lowlevel.checkpoint()  # a busy queue must not starve other tasks
            return event

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            # A takeover told to the sync group and never reported (the driver cancelled
            # in between) must not hold the group's report back for good.
            self.agent.forget_unreported(self.cfg.name)
            self.first_state.set()
            self.done.set()

    def _waiting(self, what: str | None) -> None:
        """Note what the instance waits for (None: nothing any more); the first time, this
        is its first state."""
        if what != self.waiting_for:
            self.waiting_for = what
            self.agent.update_status()
        if what is not None:
            self.first_state.set()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        cfg = self.cfg
        # VIPs left behind by a crashed run: a backup must not answer for them. Removed
        # before anything can wait (a missing interface), so a restart never leaves them up.
        for vip in cfg.virtual_addresses:
            try:
                await self.agent.addresses.remove(vip)
            except KernelError as exc:
                self.log.error("vip.remove_failed", vip=str(vip.interface), error=str(exc))
        # Started now: a missing interface must not hold up the agent (nor SIGTERM).
        task_status.started()
        sock = await self._open_socket()
        if sock is None:
            return
        self.sock = sock
        if cfg.hmac_key_file and not await self._load_hmac_keys():
            return
        self._open_announcers()
        self.machine = VrrpMachine(machine_config(cfg, self.sock.local_address))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._start_receiver()
            now = trio.current_time()
            self.log.info(
                "vrrp.start",
                interface=cfg.interface,
                vrid=cfg.vrid,
                version=cfg.version,
                priority=cfg.priority,
                advert_interval_s=cfg.advert_interval_cs / 100,
                source=str(self.sock.local_address),
                destinations=[str(d) for d in self.sock.destinations],
            )
            await self._perform(self.machine.start(now))
            prio = self.agent.effective_priority(cfg)
            if prio != cfg.priority:
                await self._perform(self.machine.set_priority(prio, trio.current_time()))
            if not self.agent.links.is_up(cfg.interface):
                await self._perform(self.machine.set_link(False, trio.current_time()))
            self.first_state.set()
            await self._drive()
            nursery.cancel_scope.cancel()
        self.sock.close()

    async def _load_hmac_keys(self) -> bool:
        """Read the HMAC keys, retrying each second while one is unreadable or invalid (or
        until a reload hands keys over); False if stopped."""
        attempt = 0
        while not self.stop_requested:
            if self.hmac_keys is not None:
                return True
            ring, problems = read_hmac_keys(self.cfg, f"vrrp_instance[{self.cfg.name}]")
            if ring is not None:
                self.hmac_keys = ring
                self._hmac_files = _hmac_files(self.cfg)
                self._waiting(None)
                return True
            self._waiting("HMAC keys")
            if attempt == 0:
                self.log.error(
                    "vrrp.hmac_key_failed", problems=[str(p) for p in problems], retry_s=1.0
                )
            attempt += 1
            await trio.sleep(1.0)
        return False

    def set_hmac_keys(self, ring: auth.KeyRing, cfg: VrrpInstance) -> None:
        """Use these keys from now on (a reload): the socket, machine, replay guard and send
        sequence go on. ``cfg`` names the files they were read from (for the log)."""
        if ring == self.hmac_keys:
            return
        started = self.hmac_keys is not None
        self.hmac_keys = ring
        self._accepted_last = None
        self._hmac_files = _hmac_files(cfg)
        self._hmac_key_of.clear()
        if started:
            self.counters["hmac_keys_changed"] += 1
            self.log.info(
                "vrrp.hmac_keys_changed",
                signing=cfg.hmac_key_file,
                accepted=list(cfg.hmac_accept_key_files),
            )

    def _open_endpoint(self) -> VrrpEndpoint:
        """Open the VRRP socket, noting which incarnation of the interface it is tied to."""
        cfg = self.cfg
        # Read before opening: a re-creation in between makes the socket look stale
        # (re-opened once more for nothing), never the other way round.
        incarnation = self.agent.links.incarnation(cfg.interface)
        sock = self.agent.vrrp_sockets.open(
            interface=cfg.interface,
            family=cfg.family,
            vrid=cfg.vrid,
            unicast_peers=cfg.unicast_peers,
            unicast_src=cfg.unicast_src,
            incarnation=incarnation,
        )
        self._sock_incarnation = incarnation
        return sock

    def _socket_stale(self) -> bool:
        """The interface the socket was opened on was deleted since (it may have come back
        under the same name, even with the same ifindex: the socket is dead all the same)."""
        assert self.sock is not None
        links = self.agent.links
        name = self.cfg.interface
        return (
            links.incarnation(name) != self._sock_incarnation
            or links.index_of(name) != self.sock.ifindex
        )

    async def _open_socket(self) -> VrrpEndpoint | None:
        """Open the VRRP socket, retrying each second; None if stopped meanwhile."""
        cfg = self.cfg
        attempt = 0
        while not self.stop_requested:
            try:
                sock = self._open_endpoint()
            except OSError as exc:
                self._waiting(f"{cfg.interface}: {exc.strerror or exc}")
                if attempt == 0:
                    self.log.error(
                        "vrrp.socket_error",
                        interface=cfg.interface,
                        error=str(exc),
                        retry_s=1.0,
                    )
                attempt += 1
                await trio.sleep(1.0)
            else:
                self._waiting(None)
                return sock
        return None

    async def _drive(self) -> None:
        assert self.machine is not None
        machine = self.machine
        while machine.state is not State.STOPPED:
            event = await self._next_event()
            now = trio.current_time()
            if event is not None:
                actions = self._dispatch(event, now)
            elif self.follower.due(now):
                actions = self._retry_reopen(now)
            else:
                actions = machine.timer(now)
            await self._perform(actions)

    # -- the interface: down, gone, back ----------------------------------------------

    def _on_link(self, up: bool, now: float) -> list[Any]:
        """The instance's interface went down or came up (perhaps as a new interface)."""
        present = self.agent.links.index_of(self.cfg.interface) is not None
        return self._follow(
            self.follower.link(up, stale=self._socket_stale(), present=present), now
        )

    @property
    def waiting_for_address(self) -> bool:
        """The interface came back without what the VRRP socket needs: a retry is due."""
        return self.follower.waiting_for_address

    def _retry_reopen(self, now: float) -> list[Any]:
        links = self.agent.links
        name = self.cfg.interface
        commands = self.follower.retry(
            link_up=links.is_up(name),
            stale=self._socket_stale(),
            present=links.index_of(name) is not None,
        )
        return self._follow(commands, now)

    def _follow(self, commands: Sequence[iface.IfaceCommand], now: float) -> list[Any]:
        """Perform what vrrp/iface.py decided about the interface; the machine's actions."""
        assert self.machine is not None and self.sock is not None
        cfg = self.cfg
        actions: list[Any] = []
        pending = deque(commands)
        error = ""
        old = self.sock
        while pending:
            cmd = pending.popleft()
            if isinstance(cmd, iface.SetLink):
                actions.extend(self.machine.set_link(cmd.up, now))
            elif isinstance(cmd, iface.InterfaceGone):
                self.log.warning(
                    "vrrp.interface_gone",
                    interface=cfg.interface,
                    ifindex=self.sock.ifindex,
                    action="FAULT until an interface of this name is up again",
                )
            elif isinstance(cmd, iface.Reopen):
                try:
                    sock = self._open_endpoint()
                except OSError as exc:
                    error = str(exc)
                    pending.extend(self.follower.reopen_failed(now))
                    continue
                old = self._use_socket(sock, now)
                pending.extend(self.follower.reopened())
            elif isinstance(cmd, iface.NotReady):
                self.log.warning(
                    "vrrp.interface_not_ready",
                    interface=cfg.interface,
                    ifindex=self.agent.links.index_of(cfg.interface),
                    error=error,
                    action=f"FAULT; retrying when an address appears, at least every "
                    f"{cmd.retry_s} s",
                )
            elif isinstance(cmd, iface.Reopened):
                self.log.info(
                    "vrrp.socket_reopened",
                    interface=cfg.interface,
                    old_ifindex=old.ifindex,
                    ifindex=self.sock.ifindex,
                    source=str(self.sock.local_address),
                    destinations=[str(d) for d in self.sock.destinations],
                    failed_attempts=cmd.failed_attempts,
                )
            else:  # pragma: no cover - a new command without a handler is our bug
                raise AssertionError(f"unhandled interface command {cmd!r}")
        return actions

    def _use_socket(self, sock: VrrpEndpoint, now: float) -> VrrpEndpoint:
        """Receive and send on ``sock`` (opened on the re-created interface) from now on;
        the old socket, closed."""
        assert self.machine is not None and self.sock is not None
        old = self.sock
        self.sock = sock
        self._start_receiver()
        old.close()
        self._open_announcers()  # one that could not open before may open now
        if sock.local_address != old.local_address:
            # In FAULT this changes only the primary address the machine compares with.
            self.machine.reconfigure(machine_config(self.cfg, sock.local_address), now)
        return old

    def _dispatch(self, event: tuple[Any, ...], now: float) -> list[Any]:
        assert self.machine is not None
        machine = self.machine
        kind = event[0]
        if kind == "advert":
            advert, source = event[1], event[2]
            arrived = event[3] if len(event) > 3 else now  # when it reached the host
            return machine.receive(
                priority=advert.priority,
                interval_cs=advert.interval_cs,
                source=source,
                now=min(now, arrived),
            )
        if kind == "perform":
            performed: list[Any] = event[1]  # the machine's answer to an advert _on_packet gave it
            return performed
        if kind == "link":
            return self._on_link(event[1], now)
        if kind == "address":
            # An address appeared somewhere: if waiting for one to re-open, try now.
            return self._retry_reopen(now) if self.follower.waiting_for_address else []
        if kind == "priority":
            # Computed now, from the configuration this machine was built with: a reload's
            # reconfigure may still be queued behind this event.
            return machine.set_priority(self.agent.effective_priority(self.cfg), now)
        if kind == "force":
            return machine.force(event[1], now, event[2])
        if kind == "hold_preempt":  # seconds from now, or None: release (bulk resync)
            return machine.hold_preempt(None if event[1] is None else now + event[1])
        if kind == "stop":
            stopped = machine.stop(now)
            if machine.draining:
                # Priority 0 sent: the VIPs stay until the taker is heard, but announcing
                # them now (a burst or refresh due) would draw the clients back from it.
                self._stop_announcing()
            return stopped
        if kind == "reconfigure":
            return self._reconfigure(event[1], now)
        if kind == "readd":
            links = self.agent.links
            decided = self.vips.readd(
                machine.state, self.cfg.virtual_addresses, event[1], links.is_up
            )
            return [_VipChanges(tuple(decided))] if decided else []
        if kind == "restore_vips_on":
            restore = self.vips.restore_on(
                machine.state, self.cfg.virtual_addresses, self.cfg.interface, event[1]
            )
            return [_VipChanges(tuple(restore))] if restore else []
        raise AssertionError(f"unknown event {kind!r}")

    def _reconfigure(self, new: VrrpInstance, now: float) -> list[Any]:
        assert self.machine is not None and self.sock is not None
        old = self.cfg
        self.cfg = new
        self._open_announcers()  # a VIP may now live on another device
        actions: list[Any] = list(
            self.machine.reconfigure(machine_config(new, self.sock.local_address), now)
        )
        # A VIP the same reload gave to another instance is that instance's now.
        elsewhere = [
            v
            for i in self.agent.config.vrrp_instances
            if i.name != new.name
            for v in i.virtual_addresses
        ]
        changes = self.vips.reload(
            self.machine.state, old.virtual_addresses, new.virtual_addresses, elsewhere
        )
        if changes:
            actions.append(_VipChanges(tuple(changes)))
        self.log.info("config.instance_updated")
        return actions

    # -- actions ----------------------------------------------------------------------

    async def _perform(self, actions: Sequence[Any]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                await self._send_advert(action.priority, action.interval_cs)
            elif isinstance(action, AcquireAddresses):
                added, later = self._acquire_now()
                await self._acquire_rest(added, later)
            elif isinstance(action, _AcquireRest):
                await self._acquire_rest(list(action.added), action.commands)
            elif isinstance(action, _Acquired):
                self._acquired(list(action.added))
            elif isinstance(action, ReleaseAddresses):
                await self._release()
            elif isinstance(action, Transition):
                if _takes_over(action):
                    # A takeover, announced already (the actions before this one). Its
                    # sync group's other members are told first (the group's commands),
                    # then every driver taking over at this moment adds and announces its
                    # VIPs before this one reports (log lines, scripts, alerts, the
                    # group's own report: ~0.5 ms, more under load).
                    self.agent.command_members(self, action)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    self._on_transition(action, commanded=True)
                else:
                    self._on_transition(action)
            elif isinstance(action, _Report):
                # A takeover the hot path made, its group told (``_hand_to_driver``).
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._on_transition(action.transition, commanded=True)
            elif isinstance(action, _VipChanges):
                await self._apply_vips(action.commands)
            elif isinstance(action, _SendPackets):
                await self._send_packets(action.packets)
            else:  # pragma: no cover - a new action type without a handler is our bug
                raise AssertionError(f"unhandled action {action!r}")

    def _build_advert(self, priority: int, interval_cs: int) -> tuple[tuple[bytes, Any], ...]:
        """The packets vrrp/send.py builds for this priority and interval."""
        assert self.sock is not None
        built = self._builder.build(
            self._current_send_policy(),
            priority=priority,
            interval_cs=interval_cs,
            src=self.sock.local_address,
            destinations=self.sock.destinations,
            keys=self.hmac_keys,
            last_seq=self._hmac_seq,
            now_ns=self.agent.wall_clock_ns() if self.hmac_keys is not None else 0,
        )
        self._hmac_seq = built.last_seq
        return built.packets

    async def _send_advert(self, priority: int, interval_cs: int) -> None:
        """Send the adverts vrrp/send.py builds for this priority and interval."""
        await self._send_packets(self._build_advert(priority, interval_cs))

    async def _send_packets(self, packets: Sequence[tuple[bytes, Any]]) -> None:
        assert self.sock is not None
        for payload, dst in packets:
            try:
                await self.sock.send(payload, dst)
                self.counters["adverts_sent"] += 1
            except OSError as exc:
                self._send_failed(dst, exc)

    def _send_advert_now(self, priority: int, interval_cs: int) -> list[tuple[bytes, Any]]:
        """Send the adverts without waiting; those the socket could not take now."""
        return self._send_packets_now(self._build_advert(priority, interval_cs))

    def _send_now(self, advert: SendAdvert) -> list[tuple[bytes, Any]]:
        """``_send_advert_now`` for the machine's ``advert``, with the packets built for the
        same advert value, configuration, peer checksum form and socket (no HMAC: signed
        adverts differ every time) sent again as they are."""
        sock = self.sock
        assert sock is not None
        if self.hmac_keys is not None:
            return self._send_advert_now(advert.priority, advert.interval_cs)
        cfg, old_form = self.cfg, self.peer_old_checksum
        key = (advert, cfg, old_form, sock, sock.local_address, sock.destinations)
        if key != self._sent_key:
            self._sent_packets = self._build_advert(advert.priority, advert.interval_cs)
            self._sent_key = key
        return self._send_packets_now(self._sent_packets)

    def _send_packets_now(self, packets: Iterable[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
        """Send built advert ``packets`` in order without waiting; from the first the socket
        could not take now, those left (a failed send is counted and logged, not kept)."""
        sock = self.sock
        assert sock is not None
        counters = self.counters
        unsent: list[tuple[bytes, Any]] = []
        for payload, dst in packets:
            if unsent:
                unsent.append((payload, dst))
                continue
            try:
                if not sock.send_nowait(payload, dst):
                    unsent.append((payload, dst))
                    continue
                counters["adverts_sent"] += 1
            except OSError as exc:
                self._send_failed(dst, exc)
        return unsent

    def _send_failed(self, dst: Any, exc: OSError) -> None:
        self.counters["send_errors"] += 1
        self.rejects.warning("send", "vrrp.send_failed", dst=str(dst), error=str(exc))

    def _current_send_policy(self) -> send.SendPolicy:
        of = (self.cfg, self.peer_old_checksum)
        if self._send_policy is None or self._send_policy_of != of:
            self._send_policy = send_policy(self.cfg, peer_old_checksum=self.peer_old_checksum)
            self._send_policy_of = of
        return self._send_policy

    def _acquire_now(self) -> tuple[list[str], list[vips.AddVip]]:
        """Entering MASTER: add the VIPs vrrp/vips.py names, each at once while that can be
        done (``_add_vip_now``); the VIPs added, and the commands left from the first that
        must wait."""
        added: list[str] = []
        commands = self.vips.acquire(self.cfg.virtual_addresses)
        for i, cmd in enumerate(commands):
            outcome = self._add_vip_now(cmd)
            if isinstance(outcome, _Wait):
                return added, commands[i:]
            if outcome:
                added.append(vips.key(cmd.vip))
        return added, []

    async def _acquire_rest(self, added: list[str], commands: Sequence[vips.AddVip]) -> None:
        """Add what ``_acquire_now`` left (waiting where it must), then announce."""
        for cmd in commands:
            if await self._add_vip(cmd):
                added.append(vips.key(cmd.vip))
        # First announcement now, before the first advert (make-before-break) and before
        # any logging. Only what we hold: announcing an address the kernel refused would
        # draw traffic to a black hole.
        self._announce_once(self._held_vips())
        self._acquired(added)

    def _acquired(self, added: list[str]) -> None:
        """After a takeover's adds and first announcement: the log line, and the rest of
        the burst, the delayed burst and the refresh in the background."""
        if added:
            self.log.info("vip.added", vips=added)
        self._start_announcer(first_done=True)

    def _add_vip_now(self, cmd: vips.AddVip) -> bool | _Wait | None:
        """``_add_vip`` without waiting: the same outcomes, or ``_WAIT`` (nothing done)
        when the address port cannot add this VIP at once (net/addresses.py ``add_now``)."""
        try:
            added = self.agent.addresses.add_now(cmd.vip)
        except KernelError as exc:
            self._add_failed(cmd, exc)
            return None
        if added is None:
            return _WAIT
        self.vips.added(cmd)
        return added

    async def _add_vip(self, cmd: vips.AddVip) -> bool | None:
        """Add a VIP and report the outcome to the ownership: whether it was added now
        (False: it was there already), None if the add failed (logged). (A takeover adds
        at once where it can: ``_acquire_now``.)"""
        try:
            added = await self.agent.addresses.add(cmd.vip)
        except KernelError as exc:
            self._add_failed(cmd, exc)
            return None
        self.vips.added(cmd)
        return bool(added)

    def _add_failed(self, cmd: vips.AddVip, exc: KernelError) -> None:
        failure = self.vips.add_failed(cmd, link_up=self.agent.links.is_up(cmd.vip.dev))
        if isinstance(failure, vips.LostWithLink):
            self._lost_with_link(failure)
        else:
            self.log.error("vip.add_failed", vip=vips.key(cmd.vip), error=str(exc))

    async def _remove_vip(self, cmd: vips.RemoveVip) -> bool | None:
        """Remove a VIP (no longer held, whatever the outcome): whether it was there, None
        if the removal failed (logged)."""
        try:
            removed = await self.agent.addresses.remove(cmd.vip)
        except KernelError as exc:
            self.vips.removed(cmd)
            self.log.error("vip.remove_failed", vip=vips.key(cmd.vip), error=str(exc))
            return None
        self.vips.removed(cmd)
        return bool(removed)

    def _lost_with_link(self, lost: vips.LostWithLink) -> None:
        self.log.info("vip.lost_with_link", vip=vips.key(lost.vip), interface=lost.vip.dev)

    def _start_announcer(self, *, first_done: bool) -> None:
        if self._announce_scope is not None:
            self._announce_scope.cancel()
        scope = trio.CancelScope()
        self._announce_scope = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._announce_task, scope, first_done)

    def _held_vips(self) -> list[Any]:
        """The configured VIPs held now: a reload may have added or removed some."""
        return self.vips.held_vips(self.cfg.virtual_addresses)

    async def _announce_task(self, scope: trio.CancelScope, first_done: bool) -> None:
        cfg = self.cfg
        with scope:
            repeat = cfg.garp_master_repeat - (1 if first_done else 0)
            for _ in range(repeat):
                await trio.sleep(cfg.garp_interval_s)
                self._announce_once(self._held_vips())
            if cfg.garp_master_delay_s > 0:
                await trio.sleep(cfg.garp_master_delay_s)
                # The instances that became master together repeat together: one task
                # makes the calls due (agent/repeats.py), not one sleep per instance.
                await self.agent.repeats.repeat(
                    lambda: self._announce_once(self._held_vips()),
                    cfg.garp_master_repeat,
                    cfg.garp_interval_s,
                    scope,
                )
            if cfg.garp_master_refresh_s > 0:
                while True:
                    await trio.sleep(cfg.garp_master_refresh_s)
                    self._announce_once(self._held_vips())

    def _open_announcers(self) -> None:
        """An announcer for the instance's interface and every device its VIPs use."""
        for dev in dict.fromkeys(
            [self.cfg.interface, *(v.dev for v in self.cfg.virtual_addresses)]
        ):
            if dev in self.announcers:
                continue
            try:
                self.announcers[dev] = self.agent.adapters.open_announcer(dev)
            except OSError as exc:
                self.log.error("vip.announcer_unavailable", interface=dev, error=str(exc))

    def _announce_once(self, vips: Sequence[Any]) -> None:
        for vip in vips:
            ip = vip.interface.ip
            announcer = self.announcers.get(vip.dev)
            if announcer is None:
                continue
            try:
                if ip.version == 4:
                    announcer.send_garp(ip)
                else:
                    announcer.send_unsolicited_na(ip)
                self.counters["announcements"] += 1
            except OSError as exc:
                self.counters["announce_errors"] += 1
                self.rejects.warning("announce", "vip.announce_failed", vip=str(ip), error=str(exc))

    async def release_now(self) -> None:
        """Remove the VIPs at once, whatever the machine says (a stop that timed out)."""
        await self._release()
        self.log.warning("vip.released_on_timeout")

    def _stop_announcing(self) -> None:
        if self._announce_scope is not None:
            self._announce_scope.cancel()
            self._announce_scope = None

    async def _release(self) -> None:
        self._stop_announcing()
        removed = []
        for cmd in self.vips.release(self.cfg.virtual_addresses):
            if await self._remove_vip(cmd):
                removed.append(vips.key(cmd.vip))
        if removed:
            self.log.info("vip.removed", vips=removed)

    async def _apply_vips(self, commands: Sequence[vips.VipCommand]) -> None:
        """Perform the VIP changes vrrp/vips.py decided on a reload, a VIP deleted behind
        our back (posted as ``("readd", vip)`` by the VIP watcher) or a device up again
        (``("restore_vips_on", ifname)`` by the link watcher). Run by the driver like every
        VIP change: a release decided meanwhile waits for these adds, then removes them."""
        announce = []
        restored = []
        for cmd in commands:
            if isinstance(cmd, vips.Forget):
                continue  # another instance's now: left in place
            if isinstance(cmd, vips.LostWithLink):
                self._lost_with_link(cmd)
                continue
            text = vips.key(cmd.vip)
            if isinstance(cmd, vips.RemoveVip):
                if await self._remove_vip(cmd) is not None:
                    self.log.info("vip.removed", vips=[text], reason="reload")
                continue
            added = await self._add_vip(cmd)
            if added is None:
                continue
            if cmd.reason == "reload":
                announce.append(cmd.vip)
                self.log.info("vip.added", vips=[text], reason="reload")
            elif cmd.reason == "readd":
                announce.append(cmd.vip)
                self.log.warning("vip.readded", vip=text, reason="deleted externally")
            elif added:  # restored on a device up again (not announced if it was there)
                announce.append(cmd.vip)
                restored.append(cmd.vip)
        if announce:
            self._announce_once(announce)
        if restored:
            self.log.warning(
                "vip.readded",
                vips=[vips.key(v) for v in restored],
                reason=f"{restored[0].dev} up again",
            )

    def _on_transition(self, tr: Transition, *, commanded: bool = False) -> None:
        """Report a transition: log, notify scripts, connection sync, alerts, the sync
        group (``commanded``: its members were told already, ``Agent.command_members``),
        systemd's STATUS."""
        assert self.machine is not None
        priority = self.machine.effective_priority
        if tr.old is tr.new:
            # A member held in FAULT by its sync group reporting a fault of its own: the
            # group must learn it, operators already know the state.
            self.log.debug("vrrp.fault_reason", state=tr.new.value, reason=tr.reason)
            self.agent.on_member_transition(self, tr)
            return
        if tr.old is State.MASTER:
            # No more announcements from here, though the VIPs may stay a moment longer (a
            # handover hold, a stopping master waiting for its successor): a burst due now
            # would draw the clients back from the new master.
            self._stop_announcing()
        self.log.info(
            "vrrp.transition",
            old=tr.old.value,
            new=tr.new.value,
            reason=tr.reason,
            priority=priority,
        )
        self.counters[f"to_{tr.new.value.lower()}"] += 1
        timeout_s = self.agent.config.global_.notify_timeout_s
        self.agent.notifier.submit(
            notify.jobs_for(
                self.cfg.notify, "INSTANCE", self.cfg.name, tr.new.value, priority, timeout_s
            )
        )
        self.agent.on_instance_state(self.cfg.name, tr.new.value)
        self.agent.on_instance_alert(self, tr, priority)
        self.agent.on_member_transition(self, tr, commanded=commanded)
        self.agent.update_status()

    # -- receive path -----------------------------------------------------------------

    def _start_receiver(self) -> None:
        """Receive from the current socket (the previous one, if any, is closed after)."""
        assert self.sock is not None
        self.sock.listen(self._on_packet, self._on_again)

    def _on_packet(self, received: Any) -> None:
        """One packet for this instance, in the receive task of its socket.

        The receive checks run here. An accepted advert goes to the machine at once when
        the driver is parked with nothing queued (the machine is then driven by nobody
        else); the actions it answers, if any, are queued for the driver, which performs
        them before anything else. Otherwise the advert is queued behind what the driver
        has to do, in order."""
        if self._on_again(received, received.stamp_ns):
            return
        now = self._now()
        advert = self._accept(received, now)
        if advert is None:
            return
        # Its timers count from when it reached the host (the kernel's time stamp).
        stamp_ns = received.stamp_ns
        if stamp_ns is not None:
            age_s = (kernel_stamp_clock_ns() - stamp_ns) / 1e9
            now = timers.arrival_time(now, age_s, advert.interval_cs)
        if not self._idle:
            self.post("advert", advert, received.src, now)
            return
        self._to_machine(advert, received.src, now)

    def _on_again(self, heard: Any, stamp_ns: int | None) -> bool:
        """A backup's steady state, in one call: ``heard`` (a ``Received``, or the parsed
        packet the socket's shortcut hands over: net/vrrp_socket.py ``listen``) is the
        datagram its master sent last time, byte for byte (the socket's parse cache gave
        the same payload object, so the same source, destination and TTL), which the
        receive checks accepted (vrrp/receive.py, RFC 5798 §7.1) under the same policy,
        without HMAC: the same verdict, counted and remembered as ``_accept`` does; the
        machine asked in one call whether it is the same advert in the same state
        (vrrp/machine.py ``receive_again``). False, nothing done, when it is not that
        case: the packet takes the whole path (``_on_packet``)."""
        last = self._accepted_last
        if (
            last is None
            or heard.payload is not last[0]
            or not self._idle
            or self.hmac_keys is not None
            or self._policy is not last[1]
            or self._policy_of is not self.cfg
        ):
            return False
        now = self._now()
        advert = last[2]
        src = heard.src
        self.counters["adverts_accepted"] += 1
        self.last_peer = (src, advert.priority, now)
        # Its timers count from when it reached the host (the kernel's time stamp).
        if stamp_ns is not None:
            age_s = (kernel_stamp_clock_ns() - stamp_ns) / 1e9
            now = timers.arrival_time(now, age_s, advert.interval_cs)
        assert self.machine is not None
        down_at = self.machine.receive_again(advert.priority, advert.interval_cs, src, now)
        if down_at is None:
            self._to_machine(advert, src, now)
        elif down_at < self._wakeup_at:
            self._ask_wakeup()
        return True

    def _to_machine(self, advert: codec.Advert, src: Any, now: float) -> None:
        """An accepted advert to the machine, the driver parked: its actions handed to the
        driver, or the next wake-up asked."""
        assert self.machine is not None
        actions = self.machine.receive(
            priority=advert.priority,
            interval_cs=advert.interval_cs,
            source=src,
            now=now,
        )
        if actions:
            self._hand_to_driver(actions)
        else:
            self._ask_wakeup()

    def _reject(self, reason: str, src: Any, detail: str = "") -> None:
        self.counters[f"rejected_{reason}"] += 1
        self.rejects.warning(
            reason, "vrrp.advert_rejected", reason=reason, source=str(src), detail=detail
        )

    @property
    def _receive_policy(self) -> receive.ReceivePolicy:
        if self._policy is None or self._policy_of is not self.cfg:
            self._policy = receive_policy(self.cfg)
            self._policy_of = self.cfg
        return self._policy

    def _accept(self, received: Any, now: float) -> codec.Advert | None:
        """The receive checks (vrrp/receive.py) on one packet read at ``now``; None when it
        is dropped.

        Counts and logs what the checks answered, commits the HMAC sequence number."""
        src = received.src
        result = self._checker.check(
            received.payload,
            src=src,
            dst=received.dst,
            ttl=received.ttl,
            policy=self._receive_policy,
            keys=self.hmac_keys,
            replay=self.replay,
        )
        if isinstance(result, receive.Rejected):
            self._reject(result.reason, src, result.detail)
            return None
        if isinstance(result, receive.NotOurs):
            self.counters["other_vrid"] += 1
            return None
        if result.hmac_seq is not None:
            self.replay.accept(src, result.hmac_seq)
            key_index = result.hmac_key_index or 0
            if key_index:
                self.counters["hmac_verified_by_accepted_key"] += 1
            if self._hmac_key_of.get(src) != key_index:
                # Says when a peer moves to another key (a rotation), never the key itself.
                self._hmac_key_of[src] = key_index
                self.log.info(
                    "vrrp.hmac_peer_key",
                    source=str(src),
                    key_index=key_index,
                    key_file=self._hmac_files[key_index],
                )
        if result.old_checksum:
            self.counters["old_unicast_checksum_seen"] += 1
            if not self.cfg.old_unicast_checksum and not self.peer_old_checksum:
                self.peer_old_checksum = True
                self.log.info("vrrp.old_unicast_checksum_detected", source=str(src))
        self.counters["adverts_accepted"] += 1
        self.last_peer = (src, result.advert.priority, now)
        if self.hmac_keys is None and not result.old_checksum and result.hmac_seq is None:
            self._accepted_last = (received.payload, self._receive_policy, result.advert)
        else:
            self._accepted_last = None
        return result.advert


# The clock the kernel's receive time stamps (SO_TIMESTAMPNS) are on: CLOCK_REALTIME. Not
# the agent's injected wall clock: the age of an advert is this clock's now less its stamp.
kernel_stamp_clock_ns = time.time_ns


def receive_policy(cfg: VrrpInstance) -> receive.ReceivePolicy:
    """What one configured instance accepts (vrrp/receive.py)."""
    return receive.ReceivePolicy(
        vrid=cfg.vrid,
        version=cfg.version,
        advert_interval_cs=cfg.advert_interval_cs,
        max_adopted_interval_cs=cfg.max_adopted_interval_cs,
        accept_from=frozenset(cfg.accept_from),
        v2_auth_data=_v2_auth_data(cfg),
        v3_ipv4_pseudo_header=cfg.v3_checksum_pseudo_header,
        old_checksum_fallback=cfg.unicast and cfg.family == 4,
    )


def send_policy(cfg: VrrpInstance, *, peer_old_checksum: bool = False) -> send.SendPolicy:
    """How one configured instance writes its adverts (vrrp/send.py)."""
    return send.SendPolicy(
        version=cfg.version,
        vrid=cfg.vrid,
        addresses=tuple(v.interface.ip for v in cfg.virtual_addresses),
        v2_auth_data=_v2_auth_data(cfg),
        v3_ipv4_pseudo_header=cfg.v3_checksum_pseudo_header,
        old_checksum=cfg.old_unicast_checksum or peer_old_checksum,
    )


def _v2_auth_data(cfg: VrrpInstance) -> bytes | None:
    """The v2 simple-text password as sent (8 bytes), None without one (or in v3)."""
    if cfg.version == 2 and cfg.auth_type == "pass" and cfg.auth_pass:
        return codec.v2_password(cfg.auth_pass)
    return None


@dataclass(frozen=True)
class _VipChanges:
    """Internal action: VIP changes decided by vrrp/vips.py, for the driver to perform."""

    commands: tuple[vips.VipCommand, ...]


@dataclass(frozen=True)
class _AcquireRest:
    """Internal action: a takeover's adds the hot path could not make at once (``added``:
    those it made), for the driver to make, then announce (``_take_over_now``)."""

    added: tuple[str, ...]
    commands: tuple[vips.AddVip, ...]


@dataclass(frozen=True)
class _Acquired:
    """Internal action: a takeover's VIPs added and announced by the hot path (``added``:
    those it added now); the driver logs them and starts the announcement task."""

    added: tuple[str, ...]


@dataclass(frozen=True)
class _Report:
    """Internal action: report a takeover the hot path made and told the sync group of
    (``_hand_to_driver``)."""

    transition: Transition


def _takes_over(tr: Transition) -> bool:
    return tr.new is State.MASTER and tr.old is not State.MASTER


class _Wait:
    """``_add_vip_now``'s answer when the VIP cannot be added without waiting."""


_WAIT = _Wait()


@dataclass(frozen=True)
class _SendPackets:
    """Internal action: advert packets built and not yet sent (the socket could not take
    them without waiting), for the driver to send."""

    packets: tuple[tuple[bytes, Any], ...]


def _hmac_files(cfg: VrrpInstance) -> tuple[str, ...]:
    """The HMAC key files of an instance, signing key first (as in ``auth.KeyRing``)."""
    return (cfg.hmac_key_file, *cfg.hmac_accept_key_files) if cfg.hmac_key_file else ()
