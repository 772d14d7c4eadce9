"""The agent's IPVS component: keeps the kernel's table true to the configuration.

At start it opens the kernel adapter (a kernel without IPVS is reported once, clearly, and
the agent goes on doing VRRP), loads the schedulers the configuration names (a service whose
scheduler the kernel lacks is refused with its name and left out, the rest is applied),
turns on the sysctls NAT and FULLNAT need (saying so), sets the global timeouts, writes the
agent's own nftables table (PFMC marks, FULLNAT SNAT), then reconciles: the pure planner
compares desired and actual and returns the minimal operations, so a restart that finds
the table already right writes nothing, and a reload touches only what changed. The same
reconcile runs every ``reconcile_interval`` and repairs drift (entries changed or deleted
by hand), logging what it repaired.

Services not in the configuration are never touched unless ``own_whole_table`` is set;
services this process configured and a reload removed are deleted.

Real servers whose health checks fail (``set_health``, from checks/runner.py) are quiesced
(weight 0) or left out (deleted) as their service's ``health_action`` says; drained servers
are quiesced; a service without quorum puts its sorry server in place of its real servers
(ipvs/pool.py decides, the agent's pool keeper says which services lack quorum). Such a
change (reason ``health``: a check down or up, a drain, a slow-start step, a dynamic
weight) is written at once as a direct edit of just the destinations it changes, without
reading the table: the manager keeps the table it last wrote (``known``) and the pure
``reconcile.plan_edits`` turns the new desired table into those operations (one
IPVS_CMD_SET_DEST per changed weight, in every member service of a group). A change that is
not one of destinations only, a failed write, or no ``known`` table (after a failed read or
write) falls back to the full reconcile at once, which reads the table and repairs; the
periodic full reconcile goes on repairing drift as before. A reload is always a full
reconcile, in order with health changes (one task does both).

Decisions live in ipvs/model.py and ipvs/reconcile.py; this module only sequences I/O.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hadirector import logs
from hadirector.config.schema import Config, VirtualServer
from hadirector.errors import ConfigError, IpvsUnavailable, KernelError
from hadirector.ipvs import model, pool, reconcile
from hadirector.ipvs.types import Timeouts
from hadirector.status import IpvsStatus, sorted_strs

if TYPE_CHECKING:
    from hadirector.ipvs.kernel import IpvsKernel

# The kernel adapter (generic netlink) and nftables are imported when the manager runs, not
# with this module: the agent builds the manager before its VRRP instances start, and their
# first advert does not wait for IPVS code (tests/unit/test_start_imports.py).

SYSCTL_ROOT = Path("/proc/sys")
#: Above this many writes in one reconcile, per-operation events give way to one summary.
PER_OP_LOG_LIMIT = 200

OP_EVENTS = {
    reconcile.AddService: "ipvs.service.add",
    reconcile.EditService: "ipvs.service.edit",
    reconcile.DelService: "ipvs.service.del",
    reconcile.AddDest: "ipvs.dest.add",
    reconcile.EditDest: "ipvs.dest.edit",
    reconcile.DelDest: "ipvs.dest.del",
}


def needed_sysctls(services: Iterable[VirtualServer]) -> dict[str, str]:
    """The sysctls the configured forwarding methods need (key path under /proc/sys)."""
    wanted: dict[str, str] = {}
    for vs in services:
        methods = {vs.forwarding} | {rs.forwarding for rs in vs.real_servers}
        if vs.sorry_server is not None:
            methods.add(vs.sorry_server.forwarding)
        if methods & {"nat", "fullnat"}:
            if vs.family == 4:
                wanted["net/ipv4/ip_forward"] = "1"
            else:
                wanted["net/ipv6/conf/all/forwarding"] = "1"
        if "fullnat" in methods:
            wanted["net/ipv4/vs/conntrack"] = "1"
    return wanted


# The manager's counters (status and metrics), every one from 0.
COUNTERS = ("reconciles", "edits", "writes", "errors")


def idle_status() -> IpvsStatus:
    """What a manager with nothing to manage reports (no virtual servers, not owning the
    table): the status of an agent that has not built one."""
    return IpvsStatus(
        available=None,
        configured_services=0,
        services=(),
        refused=(),
        counters=dict.fromkeys(COUNTERS, 0),
    )


class IpvsManager:
    """Owns the IPVS table of this network namespace for the agent."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = logs.get(component="ipvs")
        self.kernel: IpvsKernel | None = None
        self.available: bool | None = None
        self.owned: set[model.ServiceKey] = set()
        self.refused: set[model.ServiceKey] = set()
        self.down: set[tuple[model.ServiceKey, model.DestKey]] = set()
        self.drained: frozenset[tuple[model.ServiceKey, model.DestKey]] = frozenset()
        self.lost: frozenset[model.ServiceKey] = frozenset()  # services without quorum
        self.ramp: dict[tuple[model.ServiceKey, model.DestKey], int] = {}  # slow start
        self.weights: dict[tuple[model.ServiceKey, model.DestKey], int] = {}  # dynamic
        self._reload_pending = False  # a wake-up for a new config (not just health)
        self._health_at: float | None = None  # time.monotonic() of the first unwritten change
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        # This agent's services as it last wrote them in full (None: unknown, after a
        # failed read or write): what a health change is planned against, unread.
        self.known: dict[model.ServiceKey, model.Entry] | None = None
        self._wake = trio.Event()
        self.last_reconcile_monotonic: float | None = None  # time.monotonic(), for status

    @property
    def wanted(self) -> bool:
        return bool(self.config.virtual_servers) or self.config.ipvs.own_whole_table

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            if self.wanted and self.available is None:
                await self._open()
                if self.available:
                    await self._prepare()
                    await self.reconcile("start")
            if not started:
                task_status.started()
                started = True
            interval = self.config.ipvs.reconcile_interval_s if self.available else math.inf
            with trio.move_on_after(interval):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = trio.Event()
                reload, self._reload_pending = self._reload_pending, False
                if self.available and reload:
                    await self._prepare()
                    await self.reconcile("reload")
                elif self.available and not await self.edit("health"):
                    await self.reconcile("health")
            elif self.available:
                await self.reconcile("periodic")

    async def _open(self) -> None:
        from hadirector.ipvs import kernel

        self.kernel = kernel.IpvsKernel()
        try:
            await self.kernel.open()
        except IpvsUnavailable as exc:
            self.available = False
            self.log.error(
                "ipvs.unavailable",
                error=str(exc),
                virtual_servers=len(self.config.virtual_servers),
                effect="VRRP runs; no virtual service is programmed",
            )
            return
        except KernelError as exc:
            self.available = False
            self.log.error("ipvs.open_failed", error=str(exc))
            return
        self.available = True
        self.log.info("ipvs.open", virtual_servers=len(self.config.virtual_servers))

    def update(self, config: Config) -> None:
        """A reload: remember what we owned, take the new configuration, reconcile soon."""
        old_keys = set(self.owned)
        self.config = config
        self.owned = old_keys
        if self.wanted and self.available is False:
            self.available = None  # try again: maybe the module can load now
        self._reload_pending = True
        self._wake.set()

    def status(self) -> IpvsStatus:
        """This component's part of the agent's status snapshot."""
        age = self.last_reconcile_monotonic
        return IpvsStatus(
            available=self.available,
            configured_services=len(self.config.virtual_servers),
            services=sorted_strs(self.owned),
            refused=sorted_strs(self.refused),
            last_reconcile_age_s=None if age is None else round(time.monotonic() - age, 3),
            counters=self.counters,
        )

    def traffic(self) -> dict[model.ServiceKey, Any]:
        """Traffic counters of the services this agent programs, as of the last reconcile
        (``ServiceTraffic`` by service; empty without IPVS)."""
        read = self.kernel.traffic if self.kernel is not None else {}
        return {key: t for key, t in read.items() if key in self.owned}

    def set_health(
        self,
        down: set[tuple[model.ServiceKey, model.DestKey]],
        *,
        drained: frozenset[tuple[model.ServiceKey, model.DestKey]] = frozenset(),
        lost: frozenset[model.ServiceKey] = frozenset(),
        ramp: Mapping[tuple[model.ServiceKey, model.DestKey], int] | None = None,
        weights: Mapping[tuple[model.ServiceKey, model.DestKey], int] | None = None,
    ) -> None:
        """Real servers whose checks fail (from the health checker), those drained by the
        operator, and the services without quorum; reconcile soon.

        Each service's ``health_action`` decides for a failed server: quiesce (weight 0) or
        remove; drained servers are quiesced; slow-starting servers get their ``ramp``
        weight; ipvs/pool.py places sorry servers.
        """
        self.down = set(down)
        self.drained = frozenset(drained)
        self.lost = frozenset(lost)
        self.ramp = dict(ramp or {})
        self.weights = dict(weights or {})
        if self._health_at is None:
            self._health_at = time.monotonic()
        self._wake.set()

    async def _prepare(self) -> None:
        """Schedulers, sysctls, timeouts and the nftables table for the current config."""
        from hadirector.ipvs import kernel, nft

        self.refused = set()
        warned: set[str] = set()
        for vs in self.config.virtual_servers:
            try:
                warning = await kernel.ensure_scheduler(vs.scheduler)
                if warning and vs.scheduler not in warned:
                    warned.add(vs.scheduler)
                    self.log.warning("ipvs.module_not_loaded", detail=warning)
            except KernelError as exc:
                key = model.service_key_of(vs)
                self.refused.add(key)
                self.log.error("ipvs.service_refused", service=str(key), error=str(exc))
        for key_path, value in needed_sysctls(self.config.virtual_servers).items():
            self._sysctl(key_path, value)
        settings = self.config.ipvs
        if any(
            t is not None
            for t in (settings.timeout_tcp_s, settings.timeout_tcpfin_s, settings.timeout_udp_s)
        ):
            assert self.kernel is not None
            timeouts = Timeouts(
                settings.timeout_tcp_s or 0,
                settings.timeout_tcpfin_s or 0,
                settings.timeout_udp_s or 0,
            )
            try:
                await self.kernel.set_timeouts(timeouts)
                self.log.info(
                    "ipvs.timeouts",
                    tcp_s=timeouts.tcp_s,
                    tcpfin_s=timeouts.tcpfin_s,
                    udp_s=timeouts.udp_s,
                )
            except KernelError as exc:
                self.log.error("ipvs.timeouts_failed", error=str(exc))
        error = await nft.apply(self.config.virtual_servers)
        if error:
            self.log.error("ipvs.nft_failed", error=error)
        else:
            rules = nft.render(self.config.virtual_servers)
            self.log.info(
                "ipvs.nft",
                table=f"inet {nft.TABLE}",
                rules=0 if rules is None else rules.count("\n") - 1,
            )

    def _sysctl(self, key_path: str, value: str) -> None:
        path = SYSCTL_ROOT / key_path
        try:
            current = path.read_text().strip()
            if current != value:
                path.write_text(value)
                self.log.warning(
                    "ipvs.sysctl",
                    key=key_path.replace("/", "."),
                    old=current,
                    new=value,
                    reason="needed by the configured forwarding",
                )
        except OSError as exc:
            key = key_path.replace("/", ".")
            self.log.error(
                "ipvs.sysctl_failed",
                key=key,
                value=value,
                error=str(exc),
                detail=f"cannot set {key} = {value}, which the configured forwarding needs; "
                f"set it at boot: echo '{key} = {value}' > /etc/sysctl.d/90-hadirector.conf",
            )

    def desired(self) -> dict[model.ServiceKey, model.Entry]:
        table = model.desired_from_config(self.config.virtual_servers)
        for key in self.refused:
            table.pop(key, None)
        removing = {
            model.service_key_of(vs)
            for vs in self.config.virtual_servers
            if vs.health_action == "remove"
        }
        removed = {pair for pair in self.down if pair[0] in removing}
        table = model.apply_health(table, self.down - removed, quiesce=True)
        table = model.apply_health(table, removed, quiesce=False)
        return pool.apply(
            table,
            self.config.virtual_servers,
            lost=self.lost,
            drained=self.drained,
            ramp=self.ramp,
            weights=self.weights,
        )

    async def edit(self, reason: str) -> bool:
        """Write a health change as direct destination edits against ``known`` (no table
        read); False when a full reconcile must do it (nothing known, a change beyond
        destinations, a write that failed: then ``known`` is forgotten)."""
        assert self.kernel is not None
        if self.known is None:
            return False
        try:
            desired = self.desired()
        except ConfigError:
            return False  # the full reconcile logs it
        ops = reconcile.plan_edits(desired, self.known)
        if ops is None:
            return False
        requests, dumps = self.kernel.requests, self.kernel.dumps
        changed_at, self._health_at = self._health_at, None
        started = time.monotonic()
        errors: list[Any] = []
        if ops:
            try:
                errors = await self.kernel.apply(ops)
            except KernelError as exc:
                self.known = None
                self.counters["errors"] += 1
                self.log.error(
                    "ipvs.apply_failed", error=str(exc), operations=len(ops), reason=reason
                )
                return False
        if ops:
            self.counters["edits"] += 1
        self._log_ops(ops, errors, reason)
        if errors:
            self.known = None  # the kernel differs from what we wrote: read it, repair
            return False
        self.known = desired
        done = time.monotonic()
        self._log_reconciled(
            reason,
            desired,
            len(ops),
            0,
            path="edit",
            requests=self.kernel.requests - requests,
            dumps=self.kernel.dumps - dumps,
            # from the change handed in (set_health) to the kernel's acknowledgement, and
            # the part of it this method took (plan and write)
            since_change_ms=None if changed_at is None else round(1000 * (done - changed_at), 1),
            edit_ms=round(1000 * (done - started), 1),
        )
        return True

    def _log_ops(self, ops: list[Any], errors: list[Any], reason: str) -> None:
        failed = {id(e.op) for e in errors}
        # Each write is an event; a bulk load (thousands on a cold start) is summed up per
        # kind instead, so logging does not double its time.
        kinds: Counter[str] = Counter(OP_EVENTS[type(op)] for op in ops if id(op) not in failed)
        if len(ops) <= PER_OP_LOG_LIMIT:
            for op in ops:
                if id(op) not in failed:
                    self.log.info(OP_EVENTS[type(op)], op=reconcile.describe(op), reason=reason)
        else:
            self.log.info("ipvs.bulk", reason=reason, operations=dict(sorted(kinds.items())))
        for error in errors:
            self.log.error("ipvs.op_failed", op=error.what, error=str(error), reason=reason)
        self.counters["writes"] += len(ops) - len(errors)
        self.counters["errors"] += len(errors)

    async def reconcile(self, reason: str) -> list[Any]:
        """Bring the kernel to the desired table; return the operations written."""
        assert self.kernel is not None
        self.known = None  # until this reconcile has written all it planned
        self._health_at = None
        try:
            desired = self.desired()
        except ConfigError as exc:  # the loader should have refused this configuration
            self.log.error("ipvs.config_error", problems=[str(p) for p in exc.problems])
            return []
        requests, dumps = self.kernel.requests, self.kernel.dumps
        try:
            actual = await self.kernel.table()
        except KernelError as exc:
            self.counters["errors"] += 1
            self.log.error("ipvs.read_failed", error=str(exc))
            return []
        ops = reconcile.plan(
            desired,
            actual,
            own_whole_table=self.config.ipvs.own_whole_table,
            owned=self.owned,
        )
        self.counters["reconciles"] += 1
        self.last_reconcile_monotonic = time.monotonic()
        if not ops:
            self.owned = set(desired)
            self.known = dict(desired)
            self._log_reconciled(
                reason,
                desired,
                0,
                0,
                path="full",
                requests=self.kernel.requests - requests,
                dumps=self.kernel.dumps - dumps,
            )
            return []
        try:
            errors = await self.kernel.apply(ops)
        except KernelError as exc:  # the socket failed (e.g. ENOBUFS): try again next time
            self.counters["errors"] += 1
            self.log.error("ipvs.apply_failed", error=str(exc), operations=len(ops), reason=reason)
            self.owned |= set(desired)
            return []
        self._log_ops(ops, errors, reason)
        if reason == "periodic":
            self.log.warning("ipvs.drift_repaired", operations=len(ops) - len(errors))
        # A service whose delete failed is still ours: the next reconcile tries again.
        undeleted = {e.op.key for e in errors if isinstance(e.op, reconcile.DelService)}
        self.owned = set(desired) | undeleted
        if not errors:
            self.known = dict(desired)
        self._log_reconciled(
            reason,
            desired,
            len(ops) - len(errors),
            len(errors),
            path="full",
            requests=self.kernel.requests - requests,
            dumps=self.kernel.dumps - dumps,
        )
        return ops

    def _log_reconciled(
        self,
        reason: str,
        desired: dict[model.ServiceKey, model.Entry],
        written: int,
        failed: int,
        *,
        path: str,
        requests: int,
        dumps: int,
        **timing: float | None,
    ) -> None:
        """Say when the table is in step after start, reload or a health change (periodic
        runs stay quiet): ``path`` ``edit`` (direct edits, no read) or ``full`` (read,
        plan, write); ``requests`` and ``dumps``: the generic netlink requests it took."""
        if reason == "periodic":
            return
        self.log.info(
            "ipvs.reconciled",
            reason=reason,
            services=len(desired),
            refused=len(self.refused),
            written=written,
            failed=failed,
            path=path,
            requests=requests,
            dumps=dumps,
            **timing,
        )

    async def aclose(self) -> None:
        if self.kernel is not None:
            await self.kernel.aclose()
