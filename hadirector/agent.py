"""The agent: wires configuration, VRRP machines and the network adapters in one trio process.

Theory of operation. One root nursery holds: a task per VRRP instance (its receive loop and
its driver), the link watcher, the VIP watcher, tracking tasks (scripts, files), the notify
runner, the IPVS reconciler, the health checker (which feeds the reconciler the failed real
servers) and the signal loop. Every input of an instance (an accepted advert, a link change,
a new effective priority, a sync-group command, a stop, a reconfiguration, a VIP to put
back) is posted to it, so the pure state machine is driven by one task, in order, with
``trio.current_time()`` as its clock. Control events travel on a queue that never drops and
are served before adverts, which travel on a bounded one (a flood drops adverts, counted,
never a stop or a link change). Every VIP change is made by the instance's driver. The
machine answers with actions, which the driver performs in the order given: send an advert,
acquire the VIPs (add, then announce), release them, report a transition (log, notify
scripts, sync group).

Received adverts go through the receive checks of vrrp/receive.py (RFC 5798 §7.1) before
the machine sees them; the answer's reason is counted and logged here, at most once a second
per reason, and a rejected advert changes nothing. Adverts are built by vrrp/send.py; the
agent only sends them.

An interface deleted and created again (ifdown/ifup of a VLAN or bond, a re-created veth)
gets a new ifindex, and everything opened on the old one is dead. Its deletion is a link
down: the instance goes to FAULT (a master's VIPs went with the interface) and says once that
the interface is gone. When a link of the same name comes up, the instance re-opens its VRRP
socket on the new index (multicast membership or unicast setup, source address) before it
leaves FAULT; if the new interface has no address to send from yet it stays in FAULT, says
why once, and tries again when an address appears (at the latest every
``REOPEN_RETRY_S``). The announcers and the address manager
follow the name on their own (net/announce.py, net/addresses.py). Nothing else stops.

SIGTERM hands over gracefully (priority 0, make-before-break: the VIPs stay until the peer is
heard as master, see vrrp/machine.py) and exits 0; SIGHUP re-reads the configuration and
applies only what changed, keeping the running configuration when the new file is invalid.
A SIGHUP also re-reads every HMAC key file, changed paths or not, and hands the keys to the
running instances in place (same socket, machine, replay guard and send sequence); a key file
that cannot be read or holds no valid key refuses the reload as a whole. Only turning HMAC on
or off restarts an instance.

This module does no protocol reasoning of its own: decisions live in the pure core.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from hadirector import __version__, logs, sdnotify
from hadirector.alerts import notify
from hadirector.checks.risefall import RiseFall
from hadirector.checks.runner import HealthChecker
from hadirector.config import diff as config_diff
from hadirector.config import load as config_load
from hadirector.config.schema import Config, TrackScript, VrrpInstance
from hadirector.errors import ConfigError, KernelError, Problem
from hadirector.ports import Adapters, AnnouncerPort, VrrpEndpoint
from hadirector.preflight import preflight, read_hmac_keys
from hadirector.status import (
    AgentStatus,
    ChecksStatus,
    InstanceStatus,
    NotifyStatus,
    SyncGroupStatus,
)
from hadirector.sync.daemon import SyncDaemons
from hadirector.vrrp import auth, codec, iface, receive, send, track, vips
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

STOP_TIMEOUT_S = 15.0
# Adverts queued for an instance's driver beyond this many are dropped (and counted); control
# events have no bound.
ADVERT_QUEUE = 1024
RECEIVE_ERROR_BACKOFF_S = 0.2
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


@dataclass
class TrackStates:
    """Current tracked-resource states shared by every instance."""

    interfaces: dict[str, bool] = field(default_factory=dict)
    scripts: dict[str, bool] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)


class Instance:
    """One VRRP instance at run time: socket, machine, VIPs, announcements."""

    def __init__(self, agent: Agent, cfg: VrrpInstance) -> None:
        self.agent = agent
        self.cfg = cfg
        self.log = logs.get(instance=cfg.name)
        self.rejects = RateLimitedLog(self.log, clock=trio.current_time)
        self.counters: Counter[str] = Counter()
        # Two queues: control events (never dropped) are served before adverts (bounded,
        # dropped and counted when full); ``post`` wakes the driver.
        self._control: deque[tuple[Any, ...]] = deque()
        self._adverts: deque[tuple[Any, ...]] = deque()
        self._wake = trio.Event()
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
        self._hmac_seq = 0
        # A unicast peer was heard using keepalived's old v3 checksum: answer in that form,
        # as keepalived does (one configured with old_unicast_checksum drops the RFC form).
        self.peer_old_checksum = False
        # The VIPs this instance holds, and the decisions that change them (vrrp/vips.py).
        self.vips = vips.VipOwnership()
        self._announce_scope: trio.CancelScope | None = None
        self._receive_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        # The interface gone, back, the socket re-opened on it or a retry due (vrrp/iface.py).
        self.follower = iface.InterfaceFollower(REOPEN_RETRY_S)
        # The interface's incarnation (links.incarnation) the VRRP socket was opened on.
        self._sock_incarnation = 0
        self.done = trio.Event()
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
        """Queue an event for the driver. An ``("advert", advert, source)`` goes on the
        bounded advert queue (dropped and counted when it is full); anything else is a
        control event (stop, link, address, priority, force, reconfigure, VIP repairs):
        never dropped, and served before any queued advert."""
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
        self._wake.set()

    async def _next_event(self, wake_at: float) -> tuple[Any, ...] | None:
        """The next event for the driver, None when ``wake_at`` (a timer) is due first.

        Control events come first, then a due timer, then adverts: a flood of adverts
        delays neither a stop, a link change or a reload, nor the machine's timers."""
        waited = False
        while True:
            if self._control:
                event = self._control.popleft()
            elif trio.current_time() >= wake_at:
                return None
            elif self._adverts:
                event = self._adverts.popleft()
            else:
                self._wake = trio.Event()
                with trio.move_on_at(wake_at):
                    await self._wake.wait()
                waited = True
                continue
            if not waited:
                await trio.lowlevel.checkpoint()  # a busy queue must not starve other tasks
            return event

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            self.done.set()

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
                return True
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
                return self._open_endpoint()
            except OSError as exc:
                if attempt == 0:
                    self.log.error(
                        "vrrp.socket_error",
                        interface=cfg.interface,
                        error=str(exc),
                        retry_s=1.0,
                    )
                attempt += 1
                await trio.sleep(1.0)
        return None

    async def _drive(self) -> None:
        assert self.machine is not None
        machine = self.machine
        while machine.state is not State.STOPPED:
            deadline = machine.next_deadline()
            wake_at = min(
                math.inf if deadline is None else deadline,
                math.inf if (retry := self.follower.next_deadline()) is None else retry,
            )
            event = await self._next_event(wake_at)
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
            _, advert, source = event
            return machine.receive(
                priority=advert.priority, interval_cs=advert.interval_cs, source=source, now=now
            )
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
        if kind == "stop":
            return machine.stop(now)
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
                await self._acquire()
            elif isinstance(action, ReleaseAddresses):
                await self._release()
            elif isinstance(action, Transition):
                self._on_transition(action)
            elif isinstance(action, _VipChanges):
                await self._apply_vips(action.commands)
            else:  # pragma: no cover - a new action type without a handler is our bug
                raise AssertionError(f"unhandled action {action!r}")

    async def _send_advert(self, priority: int, interval_cs: int) -> None:
        """Send the adverts vrrp/send.py builds for this priority and interval."""
        assert self.sock is not None
        built = send.build(
            send_policy(self.cfg, peer_old_checksum=self.peer_old_checksum),
            priority=priority,
            interval_cs=interval_cs,
            src=self.sock.local_address,
            destinations=self.sock.destinations,
            keys=self.hmac_keys,
            last_seq=self._hmac_seq,
            now_ns=self.agent.wall_clock_ns() if self.hmac_keys is not None else 0,
        )
        self._hmac_seq = built.last_seq
        for payload, dst in built.packets:
            try:
                await self.sock.send(payload, dst)
                self.counters["adverts_sent"] += 1
            except OSError as exc:
                self.counters["send_errors"] += 1
                self.rejects.warning("send", "vrrp.send_failed", dst=str(dst), error=str(exc))

    async def _acquire(self) -> None:
        added = []
        for cmd in self.vips.acquire(self.cfg.virtual_addresses):
            if await self._add_vip(cmd):
                added.append(vips.key(cmd.vip))
        if added:
            self.log.info("vip.added", vips=added)
        # First announcement now, before the first advert (make-before-break); the rest of
        # the burst, the delayed burst and the refresh run in the background. Only what we
        # hold: announcing an address the kernel refused would draw traffic to a black hole.
        self._announce_once(self._held_vips())
        self._start_announcer(first_done=True)

    async def _add_vip(self, cmd: vips.AddVip) -> bool | None:
        """Add a VIP and report the outcome to the ownership: whether it was added now
        (False: it was there already), None if the add failed (logged)."""
        try:
            added = await self.agent.addresses.add(cmd.vip)
        except KernelError as exc:
            failure = self.vips.add_failed(cmd, link_up=self.agent.links.is_up(cmd.vip.dev))
            if isinstance(failure, vips.LostWithLink):
                self._lost_with_link(failure)
            else:
                self.log.error("vip.add_failed", vip=vips.key(cmd.vip), error=str(exc))
            return None
        self.vips.added(cmd)
        return bool(added)

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
                for _ in range(cfg.garp_master_repeat):
                    self._announce_once(self._held_vips())
                    await trio.sleep(cfg.garp_interval_s)
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

    async def _release(self) -> None:
        if self._announce_scope is not None:
            self._announce_scope.cancel()
            self._announce_scope = None
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

    def _on_transition(self, tr: Transition) -> None:
        assert self.machine is not None
        priority = self.machine.effective_priority
        if tr.old is tr.new:
            # A member held in FAULT by its sync group reporting a fault of its own: the
            # group must learn it, operators already know the state.
            self.log.debug("vrrp.fault_reason", state=tr.new.value, reason=tr.reason)
            self.agent.on_member_transition(self, tr)
            return
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
        self.agent.sync.on_instance(self.cfg.name, tr.new.value)
        self.agent.on_member_transition(self, tr)
        self.agent.update_status()

    # -- receive path -----------------------------------------------------------------

    def _start_receiver(self) -> None:
        """Receive from the current socket (stopping the loop reading the previous one)."""
        assert self._nursery is not None and self.sock is not None
        if self._receive_scope is not None:
            self._receive_scope.cancel()
        scope = trio.CancelScope()
        self._receive_scope = scope
        self._nursery.start_soon(self._receive_loop, scope, self.sock)

    async def _receive_loop(self, scope: trio.CancelScope, sock: VrrpEndpoint) -> None:
        with scope:
            while True:
                try:
                    received = await sock.receive()
                except trio.ClosedResourceError:
                    return  # replaced by a socket on a re-created interface
                except OSError as exc:
                    self.rejects.warning("recv", "vrrp.receive_failed", error=str(exc))
                    await trio.sleep(RECEIVE_ERROR_BACKOFF_S)
                    continue
                advert = self._accept(received)
                if advert is not None:
                    self.post("advert", advert, received.src)

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

    def _accept(self, received: Any) -> codec.Advert | None:
        """The receive checks (vrrp/receive.py) on one packet; None when it is dropped.

        Counts and logs what the checks answered, commits the HMAC sequence number."""
        src = received.src
        result = receive.check(
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
        return result.advert


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


class Agent:
    """Everything one ``hadirector run`` process does."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        adapters: Adapters | None = None,
        *,
        wall_clock_ns: Callable[[], int] | None = None,
    ) -> None:
        self.adapters = adapters or Adapters.real()
        # Wall-clock nanoseconds: the HMAC send sequence starts from it (vrrp/send.py).
        self.wall_clock_ns = wall_clock_ns or _wall_clock_ns
        self.config = config
        self.config_path = config_path
        self.log = logs.get(
            component="agent", router_id=config.global_.router_id or socket.gethostname()
        )
        self.instances: dict[str, Instance] = {}
        self.groups: dict[str, SyncGroup] = {}
        self.group_of: dict[str, str] = {}
        self.tracks = TrackStates()
        self.notifier = notify.NotifyRunner()
        self.addresses = self.adapters.addresses()
        self.links = self.adapters.links()
        # One receive and one send socket per (interface, family), shared by the instances.
        self.vrrp_sockets = self.adapters.vrrp_sockets()
        self.ipvs = self.adapters.ipvs(config)
        self.sync = SyncDaemons(config)
        self.checks = HealthChecker(config, self._on_health)
        self._nursery: trio.Nursery | None = None
        self._track_scope: trio.CancelScope | None = None
        self.stopping = False
        self._stop_requested = trio.Event()
        self._reload_lock = trio.Lock()  # the one lock: SIGHUP and the control socket
        self.started_monotonic = time.monotonic()

    # -- tracking ---------------------------------------------------------------------

    def effective_priority(self, cfg: VrrpInstance) -> int | None:
        """Priority after tracking (None = FAULT), from the current tracked states."""
        items: list[tuple[track.TrackSpec, Any]] = []
        for ref in cfg.track_interfaces:
            up = self.tracks.interfaces.get(ref.name, self.links.is_up(ref.name))
            items.append((track.TrackSpec("interface", ref.name, ref.weight), up))
        for ref in cfg.track_scripts:
            ok = self.tracks.scripts.get(ref.name, True)
            items.append((track.TrackSpec("script", ref.name, ref.weight), ok))
        for ref in cfg.track_files:
            value = self.tracks.files.get(ref.name, 0)
            items.append((track.TrackSpec("file", ref.name, ref.weight), value))
        return track.effective_priority(cfg.priority, items)

    def _retrack(self) -> None:
        for name, inst in self.instances.items():
            # From the running configuration: on reload an instance's queued "reconfigure"
            # has not been applied yet, and its old priority must not win over the new one.
            cfg = self.config.instance(name) or inst.cfg
            inst.post("priority", self.effective_priority(cfg))

    async def _track_script_loop(self, ts: TrackScript) -> None:
        log = logs.get(track_script=ts.name)
        hysteresis = RiseFall(ts.rise, ts.fall, up=None)
        while True:
            job = notify.NotifyJob(ts.script, f"track_script {ts.name}", ts.timeout_s)
            code = await notify.run_one(job, log, quiet=True)
            change = hysteresis.update(code == 0)
            if change is not None:
                self.tracks.scripts[ts.name] = change.up
                log.info("track.script", name=ts.name, ok=change.up, code=code)
                self._retrack()
            await trio.sleep(ts.interval_s)

    async def _track_file_loop(self, name: str, path: str) -> None:
        log = logs.get(track_file=name)
        last: int | None = None
        while True:
            try:
                value = int(Path(path).read_text().strip() or "0")
            except (OSError, ValueError) as exc:
                if last != 0:
                    log.warning("track.file_unreadable", name=name, path=path, error=str(exc))
                value = 0
            if value != last:
                last = value
                self.tracks.files[name] = value
                log.info("track.file", name=name, value=value)
                self._retrack()
            await trio.sleep(1.0)

    async def _link_loop(self) -> None:
        async for ifname, up in self.links.changes():
            if up:
                self.log.info("link.change", interface=ifname, up=up)
            else:
                deleted = self.links.index_of(ifname) is None
                self.log.info("link.change", interface=ifname, up=up, deleted=deleted)
            tracked = False
            for inst in list(self.instances.values()):
                if inst.cfg.interface == ifname:
                    inst.post("link", up)
                elif up:
                    inst.post("restore_vips_on", ifname)
                if any(ref.name == ifname for ref in inst.cfg.track_interfaces):
                    tracked = True
            if tracked:
                self.tracks.interfaces[ifname] = up
                self._retrack()

    def _on_address_added(self) -> None:
        for inst in self.instances.values():
            if inst.waiting_for_address:
                inst.post("address")

    async def _vip_watch_loop(self) -> None:
        self.addresses.on_address_added(self._on_address_added)
        async for removed in self.addresses.watch():
            for inst in self.instances.values():
                inst.post("readd", str(removed))

    def _on_health(self, down: set[Any]) -> None:
        """Failed real servers from the health checker go to the IPVS reconciler."""
        self.ipvs.set_health(down)

    # -- sync groups ------------------------------------------------------------------

    def _build_groups(self) -> None:
        """Sync groups of the current configuration. A reload keeps a group whose members
        did not change (it knows which member faulted on its own); a new or changed group
        learns its members' current states."""
        groups: dict[str, SyncGroup] = {}
        for g in self.config.sync_groups:
            old = self.groups.get(g.name)
            if old is not None and old.members == list(g.instances):
                groups[g.name] = old
                continue
            group = SyncGroup(g.name, list(g.instances), old.settled if old else None)
            for member in g.instances:
                inst = self.instances.get(member)
                if inst is not None and inst.state is not State.INIT:
                    group.on_transition(member, inst.state)
            groups[g.name] = group
        self.groups = groups
        self.group_of = {m: g.name for g in self.config.sync_groups for m in g.instances}

    def on_member_transition(self, inst: Instance, tr: Transition) -> None:
        name = self.group_of.get(inst.cfg.name)
        if name is None:
            return
        group = self.groups[name]
        commands = group.on_transition(inst.cfg.name, tr.new)
        for member, target in [] if self.stopping else commands:
            other = self.instances.get(member)
            if other is not None and other.state is not target:
                other.post("force", target, f"sync group {name}")
        settled = group.settle()
        if settled is not None:
            state = settled.value
            self.sync.on_group(name, state)
            gcfg = next(g for g in self.config.sync_groups if g.name == name)
            self.log.info("vrrp.group_transition", group=name, new=state)
            self.notifier.submit(
                notify.jobs_for(
                    gcfg.notify, "GROUP", name, state, 0, self.config.global_.notify_timeout_s
                )
            )

    # -- status -----------------------------------------------------------------------

    def update_status(self) -> None:
        text = ", ".join(f"{n}={i.state.value}" for n, i in sorted(self.instances.items()))
        sdnotify.notify(f"STATUS={text}")

    def status(self) -> AgentStatus:
        """The status snapshot: what the control socket, metrics and ``hadirector status``
        report (hadirector/status.py)."""
        cfg = self.config
        groups = []
        for g in cfg.sync_groups:
            members = {m: self.instances[m].state.value for m in g.instances if m in self.instances}
            group = self.groups.get(g.name)
            settled = group.settled if group is not None else None
            groups.append(SyncGroupStatus(g.name, settled and settled.value, members))
        return AgentStatus(
            router_id=cfg.global_.router_id or socket.gethostname(),
            version=__version__,
            pid=os.getpid(),
            uptime_s=round(time.monotonic() - self.started_monotonic, 3),
            stopping=self.stopping,
            instances=tuple(self._instance_status(i) for _, i in sorted(self.instances.items())),
            sync_groups=tuple(groups),
            ipvs=self.ipvs.status(),
            checks=ChecksStatus(
                running=len(self.checks.running),
                down=tuple(sorted(f"{service} {server}" for service, server in self.checks.down)),
            ),
            notify=NotifyStatus(self.notifier.pending, self.notifier.failures),
        )

    @staticmethod
    def _instance_status(inst: Instance) -> InstanceStatus:
        """One VRRP instance's part of the status snapshot."""
        cfg = inst.cfg
        machine = inst.machine
        return InstanceStatus(
            name=cfg.name,
            state=inst.state.value,
            interface=cfg.interface,
            vrid=cfg.vrid,
            version=cfg.version,
            family=cfg.family,
            unicast=cfg.unicast,
            source=str(inst.sock.local_address) if inst.sock is not None else None,
            priority=cfg.priority,
            effective_priority=machine.effective_priority if machine is not None else None,
            advert_interval_cs=cfg.advert_interval_cs,
            master_adver_interval_cs=(
                machine.master_adver_interval_cs if machine is not None else None
            ),
            vips=tuple(str(v.interface) for v in cfg.virtual_addresses),
            vips_held=tuple(sorted(inst.holding)),
            fault_reasons=Agent._fault_reasons(inst),
            counters=inst.counters,
            machine_counters=machine.counters if machine is not None else {},
        )

    @staticmethod
    def _fault_reasons(inst: Instance) -> tuple[str, ...]:
        """Why an instance is in FAULT (empty when it is not): the machine's own reasons (link
        down, tracking, sync group), and a re-created interface still without a source address."""
        machine = inst.machine
        if machine is None or inst.state is not State.FAULT:
            return ()
        reasons = list(machine.fault_reasons)
        if inst.waiting_for_address:
            reasons = [r for r in reasons if r != "link down"]
            reasons.insert(0, f"{inst.cfg.interface} re-created, no source address yet")
        return tuple(reasons)

    # -- main -------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True, operations: bool = False) -> None:
        """Run until stopped (SIGTERM/SIGINT or ``request_stop()``), then hand over and exit.

        ``operations``: also serve the control socket and metrics (control.Operations)."""
        await self.addresses.open()
        await self.links.open()
        self._build_groups()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if handle_signals:
                nursery.start_soon(self._signal_loop)
            nursery.start_soon(self.notifier.run)
            nursery.start_soon(self._link_loop)
            nursery.start_soon(self._vip_watch_loop)
            await nursery.start(self.vrrp_sockets.run)
            self._start_tracking()
            for cfg in self.config.vrrp_instances:
                await self._start_instance(cfg)
            self._tune_process()
            # IPVS after VRRP: programming a large table must not delay the first advert.
            # Servers whose checks start them down (alpha) are out from the first reconcile.
            self.ipvs.set_health(self.checks.down_at_start())
            nursery.start_soon(self.ipvs.run)
            nursery.start_soon(self.sync.run)
            nursery.start_soon(self.checks.run)
            if operations:
                from hadirector.control.server import Operations

                glob = self.config.global_
                await nursery.start(Operations(self).run, glob.control_socket, glob.metrics_listen)
            sdnotify.notify("READY=1")
            self.update_status()
            nursery.start_soon(self._watchdog)
            await self._stop_requested.wait()
            await self.shutdown()
            nursery.cancel_scope.cancel()

    def _tune_process(self) -> None:
        """Freeze start-up garbage out of the collector; real-time scheduling if configured."""
        gc.collect()
        gc.freeze()  # fewer and shorter collections on the advert path
        prio = self.config.global_.realtime_priority
        if prio:
            try:
                os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(prio))
                self.log.info("agent.realtime", policy="SCHED_RR", priority=prio)
            except OSError as exc:
                self.log.error("agent.realtime_failed", priority=prio, error=str(exc))

    def request_stop(self) -> None:
        """Ask the agent to hand over and exit (what SIGTERM does)."""
        self._stop_requested.set()

    async def _start_instance(self, cfg: VrrpInstance) -> None:
        assert self._nursery is not None
        inst = Instance(self, cfg)
        self.instances[cfg.name] = inst
        await self._nursery.start(inst.run)

    def _start_tracking(self) -> None:
        assert self._nursery is not None
        if self._track_scope is not None:
            self._track_scope.cancel()
        scope = trio.CancelScope()
        self._track_scope = scope

        async def tracking() -> None:
            with scope:
                async with trio.open_nursery() as n:
                    for ts in self.config.track_scripts:
                        n.start_soon(self._track_script_loop, ts)
                    for tf in self.config.track_files:
                        n.start_soon(self._track_file_loop, tf.name, tf.path)

        self._nursery.start_soon(tracking)

    async def _watchdog(self) -> None:
        period = sdnotify.watchdog_interval_s()
        if period is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await trio.sleep(period)

    async def _signal_loop(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                    continue
                self.log.info("agent.stopping", signal=signal.Signals(signum).name)
                self.request_stop()
                return

    def stop_timeout_s(self) -> float:
        """How long a graceful stop may take: the longest drain of a master (it waits up to
        a priority-1 peer's Master_Down_Interval, < 4 intervals, then the hold), plus slack."""
        drains = [
            4 * i.advert_interval_cs / 100 + i.handover_hold_s for i in self.config.vrrp_instances
        ]
        return max([STOP_TIMEOUT_S, *(d + 2.0 for d in drains)])

    async def shutdown(self) -> None:
        self.stopping = True
        sdnotify.notify("STOPPING=1")
        instances = list(self.instances.values())
        for inst in instances:
            inst.post("stop")
        timeout_s = self.stop_timeout_s()
        with trio.move_on_after(timeout_s) as scope:
            for inst in instances:
                await inst.done.wait()
        if scope.cancelled_caught:
            self.log.error("agent.stop_timeout", timeout_s=timeout_s)
            with trio.CancelScope(shield=True):
                for inst in instances:
                    if inst.holding:  # never leave a VIP up on a stopped director
                        await inst.release_now()
        await self.sync.stop()
        await self.notifier.drain(self.config.global_.notify_timeout_s)
        self.log.info("agent.stopped")

    async def reload(self) -> list[str]:
        """Re-read the configuration file and apply it (SIGHUP, control ``reload``).

        Returns the problems that kept the running configuration, or [] once applied."""
        if self.stopping:
            return ["the agent is stopping"]
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> list[str]:
        sdnotify.notify("RELOADING=1")
        try:
            if self.config_path is None:
                raise ConfigError("no configuration file to re-read")
            new = config_load.load_path(self.config_path)
            problems = preflight(new)
            if problems:
                raise ConfigError(problems)
            hmac_keys, problems = self._read_hmac_keys(new)
            if problems:  # a key file changed since preflight read it
                raise ConfigError(problems)
        except ConfigError as exc:
            self.log.error(
                "config.reload_failed",
                problems=[str(p) for p in exc.problems],
                kept="running configuration",
            )
            sdnotify.notify("READY=1")
            return [str(p) for p in exc.problems]
        await self.apply_config(new, hmac_keys=hmac_keys)
        sdnotify.notify("READY=1")
        return []

    @staticmethod
    def _read_hmac_keys(config: Config) -> tuple[dict[str, auth.KeyRing], list[Problem]]:
        """Every instance's HMAC keys read now, by instance name, and the problems."""
        rings: dict[str, auth.KeyRing] = {}
        problems: list[Problem] = []
        for i, inst in enumerate(config.vrrp_instances):
            ring, found = read_hmac_keys(inst, f"vrrp_instance[{i}]")
            problems.extend(found)
            if ring is not None:
                rings[inst.name] = ring
        return rings, problems

    async def apply_config(
        self, new: Config, *, hmac_keys: dict[str, auth.KeyRing] | None = None
    ) -> None:
        """Apply ``new`` in place of the running configuration. ``hmac_keys`` (by instance
        name) are the keys read and checked by the reload; without them they are read here,
        and an instance whose keys cannot be read keeps the ones it runs with."""
        if hmac_keys is None:
            hmac_keys, problems = self._read_hmac_keys(new)
            if problems:
                self.log.error(
                    "vrrp.hmac_key_failed",
                    problems=[str(p) for p in problems],
                    kept="running keys",
                )
        old = self.config
        self.config = new
        # The reload plan: which instances stop, restart or are updated in place.
        plan = config_diff.diff(old, new)
        stopped = {*plan.vrrp_instances.removed}
        stopped.update(c.name for c in plan.instance_changes if c.replaces)
        new_by_name = {i.name: i for i in new.vrrp_instances}
        self._build_groups()
        for name in (i.name for i in old.vrrp_instances):
            if name in stopped:
                inst = self.instances[name]
                inst.post("stop")
                await inst.done.wait()
                del self.instances[name]
                self.log.info("config.instance_removed", instance=name)
        for name, cfg in new_by_name.items():
            if name not in self.instances:
                await self._start_instance(cfg)
                self.log.info("config.instance_added", instance=name)
            elif plan.instance_change(name) is not None:
                self.instances[name].post("reconfigure", cfg)
            ring = hmac_keys.get(name)
            if ring is not None:
                # In place, before any advert is sent or checked with the old keys again.
                self.instances[name].set_hmac_keys(ring, cfg)
        if (old.track_scripts, old.track_files) != (new.track_scripts, new.track_files):
            self._start_tracking()
        self._retrack()
        self.ipvs.update(new)
        self.sync.update(new)
        self.checks.update(new)
        self.log.info("config.reloaded", instances=sorted(new_by_name))


def _wall_clock_ns() -> int:
    """The default wall clock, read through this module's ``time`` at each call."""
    return time.time_ns()


def _hmac_files(cfg: VrrpInstance) -> tuple[str, ...]:
    """The HMAC key files of an instance, signing key first (as in ``auth.KeyRing``)."""
    return (cfg.hmac_key_file, *cfg.hmac_accept_key_files) if cfg.hmac_key_file else ()


async def run_agent(config: Config, config_path: Path | None) -> None:
    """Entry point used by the CLI."""
    agent = Agent(config, config_path)
    await agent.run(operations=True)
