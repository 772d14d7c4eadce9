"""The agent: one ``hadirector run`` process, wired in one trio root nursery.

The nursery holds: a driver task per VRRP instance (agent/instance.py), the shared VRRP
sockets' receive tasks, the link watcher, the VIP watcher, tracking tasks
(agent/tracking.py), the notify runner, the alerts (alerts/dispatch.py), the IPVS manager,
the connection-sync daemons, the health checker (which feeds the IPVS manager the failed
real servers, and the alerts each server going down or up), the signal loop, the watchdog
and, for ``hadirector run``, the control socket and metrics.

SIGTERM hands over gracefully (priority 0, make-before-break: the VIPs stay until the peer is
heard as master, see vrrp/machine.py) and exits 0; SIGHUP re-reads the configuration and
applies only what changed (config/diff.py is the plan), keeping the running configuration
when the new file is invalid. A SIGHUP also re-reads every HMAC key file, changed paths or
not, and hands the keys to the running instances in place (same socket, machine, replay
guard and send sequence); a key file that cannot be read or holds no valid key refuses the
reload as a whole. Only turning HMAC on or off restarts an instance. Sync groups are
vrrp/group.py's: the agent forwards member transitions and performs the commands.

This module does no protocol reasoning of its own: decisions live in the pure core.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hadirector import __version__, logs, sdnotify, security
from hadirector.agent.instance import Instance
from hadirector.agent.repeats import Repeats
from hadirector.agent.tracking import Tracking
from hadirector.agent.wakeups import Wakeups
from hadirector.alerts import notify
from hadirector.config import load as config_load
from hadirector.config.schema import Config, VrrpInstance
from hadirector.errors import ConfigError, Problem
from hadirector.ports import Adapters, IpvsPort, WakeupsPort
from hadirector.preflight import preflight, read_hmac_keys
from hadirector.vrrp import auth
from hadirector.vrrp.group import SyncGroup
from hadirector.vrrp.machine import State, Transition

if TYPE_CHECKING:
    # The optional parts, imported when built (see "optional parts" below), and the
    # status snapshot's types, imported when a status is asked for.
    from hadirector.agent.pools import PoolKeeper
    from hadirector.alerts.dispatch import Alerts
    from hadirector.anycast.announcer import Announcer
    from hadirector.checks.runner import HealthChecker
    from hadirector.status import AgentStatus, InstanceStatus
    from hadirector.sync.daemon import SyncDaemons

STOP_TIMEOUT_S = 15.0


def wants_lvs(config: Config) -> bool:
    """Whether ``config`` needs the IPVS manager, pool keeper, health checker and anycast
    announcer: virtual servers, a whole IPVS table to own, or an instance tracking quorum
    (the pool keeper tells it that there is none)."""
    return (
        bool(config.virtual_servers)
        or config.ipvs.own_whole_table
        or any(i.track_quorum is not None for i in config.vrrp_instances)
    )


def wants_alerts(config: Config) -> bool:
    """Whether ``config`` has an alert destination (without one, alerts cost nothing)."""
    alerts = config.alerts
    return any(d is not None for d in (alerts.email, alerts.webhook, alerts.alertmanager))


def wants_sync(config: Config) -> bool:
    """Whether ``config`` runs the kernel's connection-sync daemons (``[ipvs.sync]``)."""
    return config.ipvs.sync is not None


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
        # Members that told their group of a transition (``command_members``) and have not
        # reported it yet.
        self._unreported: set[str] = set()
        self.group_of: dict[str, str] = {}
        self.notifier = notify.NotifyRunner()
        self.addresses = self.adapters.addresses()
        self.links = self.adapters.links()
        self.tracking = Tracking(self.links, self._retrack)
        # One receive and one send socket per (interface, family), shared by the instances.
        self.vrrp_sockets = self.adapters.vrrp_sockets()
        # The instances' deadlines, served by one task (agent/wakeups.py) or, with the real
        # adapters, by a thread that also reads the VRRP sockets (agent/hotloop.py).
        self.wakeups: WakeupsPort = (
            self.adapters.wakeups() if self.adapters.wakeups is not None else Wakeups()
        )
        # The instances' spaced GARP repeats, made by one task (agent/repeats.py).
        self.repeats = Repeats()
        self._nursery: trio.Nursery | None = None
        # The optional parts (alerts, connection sync, and the LVS side: IPVS manager, pool
        # keeper, health checker, anycast announcer) are built now when the configuration
        # has them, else when first used (a reload that adds them), never by a status request.
        self._alerts: Alerts | None = None
        self._sync: SyncDaemons | None = None
        self._lvs: _Lvs | None = None
        self._launched = False  # the VRRP instances started: parts built now run at once
        self._pools_started = False
        # Instance and group changes before the alerts were built: their ``since`` times.
        self._changes_before_alerts: dict[tuple[str, str], float] = {}
        if wants_alerts(config):
            self._build_alerts(config)
        if wants_sync(config):
            self._build_sync(config)
        if wants_lvs(config):
            self._build_lvs(config)
        self.stopping = False
        self._stop_requested = trio.Event()
        self._reload_lock = trio.Lock()  # the one lock: SIGHUP and the control socket
        # Why the last reload was refused (shown in STATUS= until a reload succeeds).
        self.reload_refused = ""
        self.started_monotonic = time.monotonic()

    # -- optional parts -----------------------------------------------------------------
    #
    # Built only when the configuration has them (wants_*), or when first asked for (the
    # properties below: a reload that adds them; not a status or metrics request, which
    # reports a part not built as idle). A VRRP-only
    # agent thus imports none of their modules before its first advert. A part built once
    # the agent runs is started at once, as it would have been at start; one built before
    # the instances started is started where the start order puts it (``run``).

    def _build_alerts(self, config: Config) -> Alerts:
        from hadirector.alerts.dispatch import Alerts

        alerts = Alerts(config.alerts, config.global_.router_id or socket.gethostname())
        for (kind, name), at in self._changes_before_alerts.items():
            alerts.since(kind, name, at)
        self._changes_before_alerts.clear()
        self._alerts = alerts
        if self._nursery is not None:
            self._nursery.start_soon(alerts.run)
        return alerts

    def _build_sync(self, config: Config) -> SyncDaemons:
        from hadirector.sync.daemon import SyncDaemons

        sync = SyncDaemons(config)
        sync.hold_preempt = self._hold_preempt  # while a bulk resync is awaited
        # The states it would have heard had it been there from the start.
        for name, inst in self.instances.items():
            if inst.state is not State.INIT:
                sync.on_instance(name, inst.state.value)
        for name, group in self.groups.items():
            if group.settled is not None:
                sync.on_group(name, group.settled.value)
        self._sync = sync
        if self._launched and self._nursery is not None:
            self._nursery.start_soon(sync.run)
        return sync

    def _build_lvs(self, config: Config) -> _Lvs:
        from hadirector.agent.pools import PoolKeeper
        from hadirector.anycast.announcer import Announcer
        from hadirector.checks.runner import HealthChecker

        ipvs = self.adapters.ipvs(config)
        # Quorum, sorry servers, drained servers and per-server hooks, between the checks
        # and IPVS; its events feed the alerts.
        pools = PoolKeeper(config, ipvs, self.notifier, self.tracking.set_quorum)
        pools.subscribe(self._on_pool_event)
        checks = HealthChecker(
            config,
            self._on_health,
            on_change=pools.on_check_change,
            on_weight=pools.on_check_weight,
        )
        # Anycast addresses follow the check verdicts (hadirector/anycast/).
        anycast = Announcer(config, checks)
        checks.on_verdict = anycast.poke
        checks.on_probed = pools.on_probed  # quorum waits for first results
        lvs = _Lvs(ipvs, pools, checks, anycast)
        self._lvs = lvs
        if self._launched and self._nursery is not None:
            self._start_pools()
            for task in (ipvs.run, anycast.run, checks.run, pools.run):
                self._nursery.start_soon(task)
        return lvs

    def _start_pools(self) -> None:
        """The pool keeper's first evaluation: servers whose checks start them down (alpha)
        are out from the first reconcile; a pool's quorum is decided once its servers'
        checks have first results."""
        if self._lvs is not None and not self._pools_started:
            self._pools_started = True
            self._lvs.pools.start(self._lvs.checks.down_at_start(), self._lvs.checks.unprobed())

    def built_parts(self) -> tuple[str, ...]:
        """Which optional parts exist so far: ``alerts``, ``sync``, ``lvs``."""
        parts = {"alerts": self._alerts, "sync": self._sync, "lvs": self._lvs}
        return tuple(name for name, part in parts.items() if part is not None)

    @property
    def alerts(self) -> Alerts:
        return self._alerts if self._alerts is not None else self._build_alerts(self.config)

    @property
    def sync(self) -> SyncDaemons:
        return self._sync if self._sync is not None else self._build_sync(self.config)

    def _lvs_part(self) -> _Lvs:
        return self._lvs if self._lvs is not None else self._build_lvs(self.config)

    @property
    def ipvs(self) -> IpvsPort:
        return self._lvs_part().ipvs

    @property
    def pools(self) -> PoolKeeper:
        return self._lvs_part().pools

    @property
    def checks(self) -> HealthChecker:
        return self._lvs_part().checks

    @property
    def anycast(self) -> Announcer:
        return self._lvs_part().anycast

    # -- tracking ---------------------------------------------------------------------

    def effective_priority(self, cfg: VrrpInstance) -> int | None:
        """Priority after tracking (None = FAULT), from the current tracked states."""
        return self.tracking.effective_priority(cfg)

    def _retrack(self) -> None:
        if self.stopping:
            # A graceful stop hands over; a tracked change now must not turn it into a
            # fault (VIPs dropped before the peer took over). systemd's stop signals the
            # whole control group: a track script running then dies and reads as failed.
            return
        for name, inst in self.instances.items():
            # From the running configuration: on reload an instance's queued "reconfigure"
            # has not been applied yet, and its old priority must not win over the new one.
            cfg = self.config.instance(name) or inst.cfg
            inst.post("priority", self.effective_priority(cfg))

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
                self.tracking.set_interface(ifname, up)

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
        """Failed real servers from the health checker go to the pools, then IPVS."""
        from hadirector.alerts import wiring

        self.pools.set_down(down)
        self.alerts.set_conditions(wiring.SERVER_DOWN, wiring.server_conditions(self, down))

    def drain(self, service: str, server: str, drained: bool) -> tuple[bool, str]:
        """The control socket's ``drain`` / ``undrain`` (agent/pools.py)."""
        return self.pools.drain(service, server, drained)

    # -- alerts (alerts/wiring.py builds, alerts/dispatch.py delivers) ----------------

    def _on_pool_event(self, event: Any) -> None:
        """The pool keeper's events (ipvs/pool.py): a server in or out of rotation, a
        service's quorum."""
        from hadirector.ipvs import pool

        if isinstance(event, pool.ServerChange):
            self.on_server_change(event.service, event.server, event.up, event.cause, event.reason)
        elif isinstance(event, pool.QuorumChange):
            self.on_quorum_change(event.service, event.up, event.live_weight, event.quorum)

    def on_server_change(
        self, service: Any, server: Any, up: bool, cause: str, reason: str
    ) -> None:
        """A real server left or rejoined rotation (``cause``: its check, or the operator):
        the alerts' event. The pool keeper's ``ServerChange`` carries the same fields."""
        from hadirector.alerts import wiring

        self.alerts.event(wiring.server_event(self, str(service), str(server), up, cause, reason))

    def on_quorum_change(self, service: Any, up: bool, live_weight: int, quorum: int) -> None:
        """A service lost or regained quorum (the pool keeper's ``QuorumChange``): the
        alerts' event and Alertmanager's condition."""
        from hadirector.alerts import wiring

        self.alerts.event(wiring.quorum_event(self, str(service), up, live_weight, quorum))
        self.alerts.set_conditions(wiring.QUORUM_LOST, wiring.quorum_conditions(self))

    def on_instance_alert(self, inst: Instance, tr: Transition, priority: int | None) -> None:
        if self._alerts is None:  # no destination: only when it changed is remembered
            self._changes_before_alerts[("instance", inst.cfg.name)] = time.time()
            return
        from hadirector.alerts import wiring

        self._alerts.event(
            wiring.instance_event(self, inst, tr.old.value, tr.new.value, tr.reason, priority)
        )
        self._alert_conditions()

    def on_instance_state(self, name: str, state: str) -> None:
        """An instance's new state, for the connection-sync daemons (if there are any)."""
        if self._sync is not None:
            self._sync.on_instance(name, state)

    def _alert_conditions(self) -> None:
        if self._alerts is None:
            return
        from hadirector.alerts import wiring

        insts, groups = wiring.instance_conditions(self)
        self.alerts.set_conditions(wiring.INSTANCE_FAULT, insts)
        self.alerts.set_conditions(wiring.GROUP_FAULT, groups)

    def _hold_preempt(self, seconds: float | None) -> None:
        """Hold (or release: None) preemption of the instances that decide connection sync."""
        settings = self.config.ipvs.sync
        if settings is None:
            return
        names = [settings.instance] if settings.instance is not None else []
        for g in self.config.sync_groups:
            if g.name == settings.group:
                names = list(g.instances)
        for name in names:
            instance = self.instances.get(name)
            if instance is not None:
                instance.post("hold_preempt", seconds)

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

    def command_members(self, inst: Instance, tr: Transition) -> None:
        """Tell the sync group of ``inst`` its transition and post the group's commands to
        the other members, before ``inst`` reports it (a taker: agent/instance.py
        ``_perform``), so that they take over beside it, not after its report. The
        group's own report waits until every member told this way has reported
        (``on_member_transition``), so the log and scripts keep their order: each member's
        transition, then the group's."""
        name = self.group_of.get(inst.cfg.name)
        if name is None:
            return
        self._unreported.add(inst.cfg.name)
        self._command_members(name, inst, tr)

    def forget_unreported(self, member: str) -> None:
        """``member``'s driver ended: a transition it told its group of (``command_members``)
        will not be reported; the group's report no longer waits for it."""
        self._unreported.discard(member)

    def _command_members(self, name: str, inst: Instance, tr: Transition) -> None:
        commands = self.groups[name].on_transition(inst.cfg.name, tr.new)
        for member, target in [] if self.stopping else commands:
            other = self.instances.get(member)
            if other is not None and other.state is not target:
                other.command(target, f"sync group {name}")

    def on_member_transition(
        self, inst: Instance, tr: Transition, *, commanded: bool = False
    ) -> None:
        """A member's transition, reported (``commanded``: its group was told already,
        ``command_members``): the group's commands, and its own report once its members
        share a state."""
        name = self.group_of.get(inst.cfg.name)
        if name is None:
            return
        if commanded:
            self._unreported.discard(inst.cfg.name)
        else:
            self._command_members(name, inst, tr)
        group = self.groups[name]
        if any(m in self._unreported for m in group.members):
            return  # a member told the group and has not reported yet: the group reports after
        before = group.settled
        settled = group.settle()
        if settled is not None:
            state = settled.value
            if self._alerts is not None:
                from hadirector.alerts import wiring

                self._alerts.event(
                    wiring.group_event(self, name, before.value if before else None, state)
                )
                self._alert_conditions()
            else:
                self._changes_before_alerts[("group", name)] = time.time()
            if self._sync is not None:
                self._sync.on_group(name, state)
            gcfg = next(g for g in self.config.sync_groups if g.name == name)
            self.log.info("vrrp.group_transition", group=name, new=state)
            self.notifier.submit(
                notify.jobs_for(
                    gcfg.notify, "GROUP", name, state, 0, self.config.global_.notify_timeout_s
                )
            )

    # -- status -----------------------------------------------------------------------

    def update_status(self) -> None:
        """systemd's STATUS= (``systemctl status``): each instance's state, what an instance
        waits for, and a refused reload until the next one succeeds."""
        parts = []
        for name, inst in sorted(self.instances.items()):
            waiting = f" (waiting for {inst.waiting_for})" if inst.waiting_for else ""
            parts.append(f"{name}={inst.state.value}{waiting}")
        text = ", ".join(parts)
        if self.reload_refused:
            text += f"; {self.reload_refused}"
        sdnotify.notify(f"STATUS={text}")

    def status(self) -> AgentStatus:
        """The status snapshot: what the control socket, metrics and ``hadirector status``
        report (hadirector/status.py)."""
        from hadirector.ipvs.manager import idle_status as idle_ipvs_status
        from hadirector.status import (
            AgentStatus,
            AnycastStatus,
            ChecksStatus,
            NotifyStatus,
            SyncGroupStatus,
        )

        cfg = self.config
        # A part not built (the configuration has none of it) reports what it would report
        # idle; asking does not build it (a status or metrics request has no side effect).
        lvs = self._lvs
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
            ipvs=lvs.ipvs.status() if lvs is not None else idle_ipvs_status(),
            checks=(
                ChecksStatus(
                    running=len(lvs.checks.running),
                    down=tuple(
                        sorted(f"{service} {server}" for service, server in lvs.checks.down)
                    ),
                    drained=lvs.pools.drained_names(),
                    quorum_lost=lvs.pools.lost_names(),
                )
                if lvs is not None
                else ChecksStatus()
            ),
            notify=NotifyStatus(self.notifier.pending, self.notifier.failures),
            anycast=lvs.anycast.status() if lvs is not None else AnycastStatus(),
            resync=(self._sync.resync_status(time.monotonic()) if self._sync is not None else None),
        )

    def runtime_metrics(self) -> list[Any]:
        """Metrics read from the running parts (real servers, checks, alerts), for the
        metrics endpoint beside the status snapshot's (metrics.py)."""
        from hadirector import metrics

        lvs = self._lvs  # parts not built export nothing, and are not built by asking
        return metrics.runtime_metrics(
            self.config,
            lvs.checks if lvs is not None else None,
            self._alerts,
            self._sync,
            lvs.ipvs if lvs is not None else None,
            lvs.pools if lvs is not None else None,
        )

    @staticmethod
    def _instance_status(inst: Instance) -> InstanceStatus:
        """One VRRP instance's part of the status snapshot."""
        from hadirector.status import InstanceStatus

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
        for event, fields in security.startup_warnings(self.config, self.config_path):
            self.log.warning(event, **fields)
        for event, fields in security.startup_notes(self.config):
            self.log.info(event, **fields)
        self._script_identity()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if handle_signals:
                nursery.start_soon(self._signal_loop)
            nursery.start_soon(self.notifier.run)
            if self._alerts is not None:  # built later, it starts itself
                await nursery.start(self._alerts.run)
            nursery.start_soon(self._link_loop)
            nursery.start_soon(self._vip_watch_loop)
            await nursery.start(self.vrrp_sockets.run)
            nursery.start_soon(self.wakeups.run)  # requests made before it runs wait in its heap
            nursery.start_soon(self.repeats.run)
            self.tracking.start(nursery, self.config)
            # Pools first: an instance tracking quorum starts knowing whether there is any.
            self._start_pools()
            for cfg in self.config.vrrp_instances:
                await self._start_instance(cfg)
            # Each instance's first state (its machine started, its first timer set; or what
            # it waits for: its interface, an address, its keys) before anything else: the
            # first advert waits for none of what follows (the collector's pass over the
            # start's objects, IPVS, checks, the control socket and metrics with their
            # imports).
            for inst in list(self.instances.values()):
                await inst.first_state.wait()
            self._tune_process()
            # IPVS after VRRP: programming a large table must not delay the first advert.
            # From here on a part built later starts at once (_build_*).
            self._launched = True
            lvs, sync = self._lvs, self._sync
            if lvs is not None:
                self._start_pools()  # if it was built while the instances started
                nursery.start_soon(lvs.ipvs.run)
            if sync is not None:
                nursery.start_soon(sync.run)
            if lvs is not None:
                await nursery.start(lvs.anycast.run)
                nursery.start_soon(lvs.checks.run)
                nursery.start_soon(lvs.pools.run)
            if operations:
                from hadirector.control.server import Operations

                glob = self.config.global_
                gid = (
                    None if glob.status_group is None else security.resolve_group(glob.status_group)
                )
                ops = Operations(self, status_gid=gid)
                await nursery.start(ops.run, glob.control_socket, glob.metrics_listen)
            # READY once every instance has its first state (or waits for its interface,
            # an address or its keys: a director booting before its network must not hold
            # up the boot), as waited for above: `systemctl start` returns then.
            self.update_status()
            sdnotify.notify("READY=1")
            nursery.start_soon(self._watchdog)
            await self._stop_requested.wait()
            await self.shutdown()
            nursery.cancel_scope.cancel()
        self._nursery = None  # a part built from now on (a late status) is not started

    def _tune_process(self) -> None:
        """Freeze start-up garbage out of the collector; real-time scheduling if configured.

        ``hadirector run`` starts with the collector off (cli.py): it is turned on here,
        once the instances have their first state, after one pass over what the start
        left."""
        gc.collect()
        gc.freeze()  # fewer and shorter collections on the advert path
        gc.enable()
        prio = self.config.global_.realtime_priority
        if prio:
            try:
                policy = os.SCHED_RR | os.SCHED_RESET_ON_FORK
                # This thread, and the VRRP hot path's (agent/hotloop.py) if it has one.
                for tid in (0, *self.wakeups.threads()):
                    os.sched_setscheduler(tid, policy, os.sched_param(prio))
                self.log.info("agent.realtime", policy="SCHED_RR", priority=prio)
            except OSError as exc:
                self.log.error("agent.realtime_failed", priority=prio, error=str(exc))

    def _script_identity(self) -> None:
        """Scripts started from now on run as the configuration's ``script_user``."""
        identity, problems = security.script_identity(self.config)
        if problems:  # preflight refused these already; only a racing passwd edit lands here
            self.log.error("security.script_user_failed", problems=[str(p) for p in problems])
            return
        security.set_script_identity(identity)
        self.log.info("security.scripts_run_as", user=identity.describe())

    def request_stop(self) -> None:
        """Ask the agent to hand over and exit (what SIGTERM does).

        The stop has begun from here on (tracked changes and reloads are ignored), not from
        when the run task gets to ``shutdown()``."""
        self.stopping = True
        self._stop_requested.set()

    async def _start_instance(self, cfg: VrrpInstance) -> None:
        assert self._nursery is not None
        inst = Instance(self, cfg)
        self.instances[cfg.name] = inst
        await self._nursery.start(inst.run)

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
        # Anycast first: withdraw, and exit only withdraw_delay later (the addresses stay
        # on lo, so flows still routed here meanwhile are served).
        withdrawn_at = trio.current_time()
        anycast = self._lvs.anycast if self._lvs is not None else None
        if anycast is not None and anycast.wanted:
            await anycast.withdraw_all()
            self.log.info("anycast.draining", delay_s=self.config.anycast.withdraw_delay_s)
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
        if self._sync is not None:
            await self._sync.stop()
        async with trio.open_nursery() as drains:  # scripts and alerts at once, each bounded
            drains.start_soon(self.notifier.drain, self.config.global_.notify_timeout_s)
            if self._alerts is not None:
                drains.start_soon(self._alerts.flush, self.config.alerts.flush_timeout_s)
        if anycast is not None and anycast.wanted:
            await trio.sleep_until(withdrawn_at + self.config.anycast.withdraw_delay_s)
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
            reasons = [str(p) for p in exc.problems]
            self.log.error("config.reload_failed", problems=reasons, kept="running configuration")
            more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
            first = reasons[0] if reasons else str(exc)
            self.reload_refused = f"reload refused, previous configuration running: {first}{more}"
            self.update_status()
            sdnotify.notify("READY=1")
            return reasons
        await self.apply_config(new, hmac_keys=hmac_keys)
        self.reload_refused = ""
        self.update_status()
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
        # A part the new configuration has and the running one has not is built now as it
        # would have been at start (from the running configuration), and then takes the
        # new one like the parts already there.
        if self._alerts is None and wants_alerts(new):
            self._build_alerts(old)
        if self._sync is None and wants_sync(new):
            self._build_sync(old)
        if self._lvs is None and wants_lvs(new):
            self._build_lvs(old)
        self.config = new
        self._script_identity()
        # The reload plan: which instances stop, restart or are updated in place.
        from hadirector.config import diff as config_diff  # a reload's, not the start's

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
            assert self._nursery is not None
            self.tracking.start(self._nursery, self.config)
        self._retrack()
        lvs = self._lvs
        if lvs is not None:
            lvs.ipvs.update(new)
            lvs.pools.update(new, lvs.checks.unprobed(new))
        if self._sync is not None:
            self._sync.update(new)
        if lvs is not None:
            lvs.checks.update(new)
        if self._alerts is not None:
            self._alerts.update(new.alerts)
            self._alert_conditions()
        if lvs is not None:
            lvs.anycast.update(new)
        self.log.info("config.reloaded", instances=sorted(new_by_name))


@dataclasses.dataclass(frozen=True)
class _Lvs:
    """The LVS side, built together: the IPVS manager, the pool keeper between the health
    checker and IPVS, and the anycast announcer following the checks' verdicts."""

    ipvs: IpvsPort
    pools: PoolKeeper
    checks: HealthChecker
    anycast: Announcer


def _wall_clock_ns() -> int:
    """The default wall clock, read through this module's ``time`` at each call."""
    return time.time_ns()


async def run_agent(config: Config, config_path: Path | None) -> None:
    """Entry point used by the CLI."""
    agent = Agent(config, config_path)
    await agent.run(operations=True)
