"""The agent's connection-sync component: the kernel's sync daemons follow VRRP.

With ``[ipvs.sync]`` configured, the deciding VRRP instance (or sync group) picks the role
of the kernel's IPVS sync daemon in this network namespace (sync/roles.py decides): at
start the *backup* daemon runs (this director receives the peer's connection table); on
becoming master the backup daemon is stopped and the *master* daemon started; on BACKUP or
FAULT the reverse; on stop both are stopped. A persistent client's template and every
established NAT connection thus already exist on the new master when a failover happens.

Each change wakes one task that reads what the kernel runs, asks ``roles.plan`` for the
steps and performs them, logging ``sync.master`` / ``sync.backup`` (a daemon started) and
``sync.stopped``. A kernel error is logged (``sync.start_failed`` / ``sync.stop_failed``)
and retried every ``RETRY_INTERVAL_S`` while the kernel is out of step; it is never fatal.
A kernel without IPVS is reported once (``sync.unavailable``) and VRRP goes on.

Bulk resync (``bulk_resync``, on by default; not with ``both``): while the role is
master, a task listens on the sync group for a joiner's REQUEST and answers each with the
whole connection table (sync/bulk.py; ``sync.resync_sent`` with entries, templates,
skipped, messages, seconds). Each time the role becomes backup (start, restart, a master
stepping down), the agent sends REQUEST and waits for the master's DONE up to
``resync_timeout_s``: ``sync.resync_arrived`` (entries, seconds) or ``sync.resync_timeout``.
``last_resync`` keeps the latest of these. While the joiner waits, preemption of the
deciding instances is held (``hold_preempt``, set by the agent; VrrpMachine.hold_preempt):
a joiner of higher priority takes over only once its resync has arrived or the wait ran
out, whichever comes first (both logs say ``preempt="released"``). Resync errors are
logged (``sync.resync_failed``) and never fatal.

This module only sequences I/O; it must not decide roles itself, and it must not hold up
VRRP (it runs as its own task and never blocks a VRRP instance).
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from hadirector import logs
from hadirector.config.schema import Config, SyncDaemonSettings
from hadirector.errors import IpvsUnavailable, KernelError
from hadirector.ipvs.types import SyncState
from hadirector.status import ResyncStatus
from hadirector.sync import roles

if TYPE_CHECKING:
    from hadirector.ipvs.kernel import IpvsKernel
    from hadirector.sync.kernel import SyncKernel

RETRY_INTERVAL_S = 5.0
#: Longest the agent's stop waits for the daemons to be stopped (each kernel exchange is
#: bounded too: ipvs/kernel.py REPLY_TIMEOUT_S).
STOP_TIMEOUT_S = 12.0

ROLE_EVENTS = {SyncState.MASTER: "sync.master", SyncState.BACKUP: "sync.backup"}


def _real_kernel() -> IpvsKernel:
    from hadirector.ipvs.kernel import IpvsKernel

    return IpvsKernel()


class SyncDaemons:
    """Drives the kernel's sync daemons of this namespace from VRRP state changes."""

    def __init__(
        self, config: Config, kernel_factory: Callable[[], IpvsKernel] = _real_kernel
    ) -> None:
        self.settings: SyncDaemonSettings | None = config.ipvs.sync
        self.log = logs.get(component="sync")
        self._kernel_factory = kernel_factory
        self._kernel: IpvsKernel | None = None
        self.available: bool | None = None  # None: not tried yet
        self.instance_states: dict[str, str] = {}
        self.group_states: dict[str, str] = {}
        self.stopping = False
        self.counters: dict[str, int] = {"starts": 0, "stops": 0, "errors": 0}
        self._wake = trio.Event()
        self._lock = trio.Lock()
        self._in_step = True
        self._touched = False  # this process started or stopped a daemon
        self._failures: dict[SyncState, str] = {}  # last error logged per role
        # The latest resync sent or asked for: (role, arrived, entries, seconds, when).
        self.last_resync: tuple[str, bool, int, float, float] | None = None
        # The resync task follows (role, backup daemon starts): a joiner asks again each
        # time its kernel's backup daemon was (re)started, which lost what came meanwhile
        # (e.g. master for a few milliseconds, back to backup within one apply).
        self._resync_key: tuple[SyncState | None, int] = (None, 0)
        self._backup_starts = 0
        self._resync_scope: trio.CancelScope | None = None
        # Holds (seconds) or releases (None) preemption of the deciding instances while a
        # resync is awaited; set by the agent.
        self.hold_preempt: Callable[[float | None], None] | None = None

    # -- inputs (synchronous: called from VRRP tasks, never block them) ----------------

    def on_instance(self, name: str, state: str) -> None:
        """A VRRP instance changed state (state value: MASTER, BACKUP, FAULT, ...)."""
        self.instance_states[name] = state
        if self.settings is not None and self.settings.instance == name:
            self._wake.set()

    def on_group(self, name: str, state: str) -> None:
        """A sync group's members all reached ``state``."""
        self.group_states[name] = state
        if self.settings is not None and self.settings.group == name:
            self._wake.set()

    def update(self, config: Config) -> None:
        """A reload: new settings (or none), applied soon."""
        if config.ipvs.sync != self.settings:
            self.settings = config.ipvs.sync
            if self.settings is not None and self.available is False:
                self.available = None  # try again: maybe the module can load now
            self._wake.set()

    @property
    def in_step(self) -> bool:
        """The kernel's daemons were found (or made) as the deciding state wants."""
        return self._in_step and self.available is not False

    @property
    def deciding_state(self) -> str | None:
        """The current state of whatever decides (None: not known yet)."""
        settings = self.settings
        if settings is None:
            return None
        if settings.group is not None:
            return self.group_states.get(settings.group)
        if settings.instance is not None:
            return self.instance_states.get(settings.instance)
        return None

    # -- the task ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            while not self.stopping:
                await self.apply()
                self._follow_resync(nursery)
                wait_s = math.inf if self._in_step else RETRY_INTERVAL_S
                with trio.move_on_after(wait_s):
                    await self._wake.wait()
                self._wake = trio.Event()
            nursery.cancel_scope.cancel()

    # -- bulk resync -------------------------------------------------------------------

    def resync_status(self, now: float) -> ResyncStatus | None:
        """The last resync for ``hadirector status`` (None: none yet)."""
        if self.last_resync is None:
            return None
        role, arrived, entries, seconds, when = self.last_resync
        return ResyncStatus(role, arrived, entries, seconds, round(now - when, 3))

    def _resync_wanted(self) -> SyncState | None:
        settings = self.settings
        if self.stopping or settings is None or settings.both or not settings.bulk_resync:
            return None
        if not self.available:
            return None
        return roles.role_for(self.deciding_state)

    def _follow_resync(self, nursery: trio.Nursery) -> None:
        """Start the resync task of the current role when the role changed."""
        role = self._resync_wanted()
        key = (role, self._backup_starts if role is SyncState.BACKUP else 0)
        if key == self._resync_key:
            return
        if self._resync_scope is not None:
            self._resync_scope.cancel()
            self._resync_scope = None
        self._resync_key = key
        if role is None or self.settings is None:
            return
        scope = trio.CancelScope()
        self._resync_scope = scope
        task = self._answer if role is SyncState.MASTER else self._ask
        nursery.start_soon(task, self.settings, scope)

    def _sockets(self, settings: SyncDaemonSettings) -> tuple[socket.socket, socket.socket]:
        from hadirector.sync import bulk

        group = str(settings.mcast_group)
        family = socket.AF_INET6 if ":" in group else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_DGRAM)
        try:
            bulk.join_group(
                listener, socket.if_nametoindex(settings.interface), group, settings.mcast_port
            )
            sender = bulk.open_sender(settings.interface, group, settings.mcast_ttl)
        except BaseException:
            listener.close()
            raise
        return listener, sender

    async def _answer(self, settings: SyncDaemonSettings, scope: trio.CancelScope) -> None:
        from hadirector.sync import bulk

        with scope:
            try:
                listener, sender = self._sockets(settings)
            except OSError as exc:
                self.log.error("sync.resync_failed", role="master", error=str(exc))
                return
            with listener, sender:

                async def respond() -> None:
                    kernel = self._kernel
                    if kernel is None:
                        return
                    try:
                        sent = await bulk.resync(
                            await kernel.table(),
                            ifname=settings.interface,
                            syncid=settings.syncid,
                            group=str(settings.mcast_group),
                            port=settings.mcast_port,
                            ttl=settings.mcast_ttl,
                            maxlen=settings.maxlen,
                            sock=sender,
                        )
                    except (OSError, KernelError, ValueError) as exc:
                        self.log.error("sync.resync_failed", role="master", error=str(exc))
                        return
                    self.last_resync = (
                        "master",
                        True,
                        sent.entries,
                        round(sent.seconds, 3),
                        time.monotonic(),
                    )
                    self.log.info(
                        "sync.resync_sent",
                        entries=sent.entries,
                        templates=sent.templates,
                        skipped=sent.skipped,
                        messages=sent.messages,
                        seconds=round(sent.seconds, 3),
                    )

                await bulk.answer_requests(listener, settings.syncid, respond)

    async def _ask(self, settings: SyncDaemonSettings, scope: trio.CancelScope) -> None:
        from hadirector.sync import bulk

        with scope:
            try:
                listener, sender = self._sockets(settings)
            except OSError as exc:
                self.log.error("sync.resync_failed", role="backup", error=str(exc))
                return
            with listener, sender:
                arrival = None
                if self.hold_preempt is not None:
                    self.hold_preempt(settings.resync_timeout_s)
                try:
                    with trio.move_on_after(settings.resync_timeout_s):
                        arrival = await bulk.ask_resync(
                            listener,
                            sender,
                            settings.syncid,
                            str(settings.mcast_group),
                            settings.mcast_port,
                        )
                except OSError as exc:
                    self.log.error("sync.resync_failed", role="backup", error=str(exc))
                    return
                finally:
                    if self.hold_preempt is not None:
                        self.hold_preempt(None)
                if arrival is None:
                    self.last_resync = (
                        "backup",
                        False,
                        0,
                        settings.resync_timeout_s,
                        time.monotonic(),
                    )
                    self.log.warning(
                        "sync.resync_timeout",
                        waited_s=settings.resync_timeout_s,
                        preempt="released",
                        effect="only connections the kernel's daemons send reach this director",
                    )
                    return
                self.last_resync = (
                    "backup",
                    True,
                    arrival.received,
                    round(arrival.seconds, 3),
                    time.monotonic(),
                )
                self.log.info(
                    "sync.resync_arrived",
                    entries=arrival.received,
                    announced=arrival.announced,
                    seconds=round(arrival.seconds, 3),
                    preempt="released",
                )

    async def stop(self) -> None:
        """The agent is stopping: stop both daemons, then close the kernel socket. Bounded
        (``STOP_TIMEOUT_S``, ``sync.stop_timeout``): an agent can always stop."""
        self.stopping = True
        self._wake.set()
        with trio.move_on_after(STOP_TIMEOUT_S) as scope:
            await self.apply()
            async with self._lock:
                if self._kernel is not None:
                    await self._kernel.aclose()
                    self._kernel = None
        if scope.cancelled_caught:
            self.log.error(
                "sync.stop_timeout",
                timeout_s=STOP_TIMEOUT_S,
                effect="the kernel's sync daemons may still run",
            )

    async def apply(self) -> None:
        """Bring the kernel's daemons in step with the deciding state (never raises)."""
        async with self._lock:
            wanted = () if self.stopping else roles.desired(self.settings, self.deciding_state)
            if not wanted and not self._touched and self.settings is None:
                self._in_step = True
                return  # sync not configured and never started: leave the kernel alone
            kernel = await self._open()
            if kernel is None:
                self._in_step = True
                return
            try:
                running = await self._control(kernel).daemons()
            except KernelError as exc:
                self._fail(None, "sync.read_failed", str(exc))
                return
            steps = roles.plan(running, wanted)
            ok = True
            for step in steps:
                ok = await self._perform(kernel, step) and ok
            self._in_step = ok

    async def _open(self) -> IpvsKernel | None:
        if self.available is False:
            return None
        if self._kernel is not None:
            return self._kernel
        kernel = self._kernel_factory()
        try:
            await kernel.open()
        except IpvsUnavailable as exc:
            self.available = False
            self.log.error(
                "sync.unavailable",
                error=str(exc),
                effect="VRRP runs; connections are not synchronised",
            )
            return None
        except KernelError as exc:
            self._fail(None, "sync.open_failed", str(exc))
            return None
        self.available = True
        self._kernel = kernel
        return kernel

    @staticmethod
    def _control(kernel: IpvsKernel) -> SyncKernel:
        from hadirector.sync.kernel import SyncKernel

        return SyncKernel(kernel)

    async def _perform(self, kernel: IpvsKernel, step: roles.Step) -> bool:
        sync = self._control(kernel)
        self._touched = True
        if isinstance(step, roles.Stop):
            try:
                await sync.stop_daemon(step.state)
            except KernelError as exc:
                self._fail(step.state, "sync.stop_failed", str(exc), role=step.state.name)
                return False
            self.counters["stops"] += 1
            self.log.info(
                "sync.stopped",
                role=step.state.name.lower(),
                reason="agent stopping" if self.stopping else step.reason,
                vrrp_state=self.deciding_state,
            )
            return True
        spec = step.spec
        try:
            await sync.start_daemon(
                spec.state,
                spec.ifname,
                spec.syncid,
                sync_maxlen=spec.sync_maxlen,
                mcast_group=spec.mcast_group,
                mcast_port=spec.mcast_port,
                mcast_ttl=spec.mcast_ttl,
            )
        except KernelError as exc:
            self._fail(
                spec.state,
                "sync.start_failed",
                str(exc),
                role=spec.state.name.lower(),
                interface=spec.ifname,
                syncid=spec.syncid,
                retry_s=RETRY_INTERVAL_S,
            )
            return False
        self._failures.pop(spec.state, None)
        self.counters["starts"] += 1
        if spec.state is SyncState.BACKUP:
            self._backup_starts += 1
        self.log.info(
            ROLE_EVENTS[spec.state],
            interface=spec.ifname,
            syncid=spec.syncid,
            mcast_group=spec.mcast_group,
            mcast_port=spec.mcast_port,
            vrrp_state=self.deciding_state,
        )
        return True

    def _fail(self, state: SyncState | None, event: str, error: str, **fields: Any) -> None:
        """Log a failure, once per role and error text while it repeats; retry later."""
        self.counters["errors"] += 1
        self._in_step = False
        if state is not None:
            if self._failures.get(state) == error:
                return
            self._failures[state] = error
        self.log.error(event, error=error, **fields)
