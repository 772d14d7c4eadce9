"""The agent's anycast component: health verdicts in, host routes in the BGP table out.

The health checker calls ``poke()`` after every probe that decided something new (a first
probe, a first success, an up/down change); the announcer's task then asks the pure
``anycast.decide`` which addresses to announce and adds or removes their routes through
the TUN device (``anycast.device``), withdrawals first. BIRD learns the table (kernel
protocol, ``learn``) and announces or withdraws over BGP.

Start: the device is created before anything is decided, and nothing is announced until
every check has probed once. Stop (SIGTERM): ``withdraw_all()`` removes every route
first; the supervisor then waits ``withdraw_delay`` before the process exits (the address
stays on ``lo`` throughout, so flows still arriving during the withdrawal are served).
A crash or SIGKILL closes the device's descriptor: the kernel deletes the device and its
routes, and BIRD withdraws them.

This module decides nothing of its own: decisions are ``decide.py``'s.
"""

from __future__ import annotations

import trio

from hadirector import logs
from hadirector.anycast.decide import Verdict, decide
from hadirector.anycast.device import AnycastDevice, DeviceError
from hadirector.checks.runner import HealthChecker
from hadirector.config.schema import Config, IPAddress
from hadirector.status import AnycastAddressStatus, AnycastStatus

RETRY_S = 1.0  # a route change the kernel refused is tried again after this long
RESYNC_S = 5.0  # how often the table is compared with what should be there


class Announcer:
    """Keeps the anycast table true to the health verdicts."""

    def __init__(self, config: Config, checks: HealthChecker) -> None:
        self.config = config
        self.checks = checks
        self.log = logs.get(component="anycast")
        self.device: AnycastDevice | None = None
        self.error: str | None = None
        self.verdicts: tuple[Verdict, ...] = decide(
            config, set(), set(), first_round_done=False, stopping=False
        )
        self.first_round_done = False
        self.stopping = False
        self._wake = trio.Event()
        self._lock = trio.Lock()

    @property
    def wanted(self) -> bool:
        return bool(self.config.anycast_servers)

    def poke(self) -> None:
        """Something the decision depends on changed: decide again soon."""
        self._wake.set()

    def update(self, config: Config) -> None:
        """A reload: the new configuration is decided on at once (a changed device or
        table is taken by re-creating the device: withdraw, then announce again)."""
        self.config = config
        self.poke()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                async with self._lock:
                    ok = await self._step()
                with trio.move_on_after(RETRY_S if not ok else RESYNC_S) as waited:
                    await self._wake.wait()
                self._wake = trio.Event()
                if waited.cancelled_caught and ok:
                    async with self._lock:
                        await self._resync()
        finally:
            if self.device is not None:
                self.device.close()

    async def _step(self) -> bool:
        """Decide and apply once; False when something should be tried again."""
        if self.stopping:
            return True
        await self._ensure_device()
        if not self.first_round_done and self.checks.all_probed:
            self.first_round_done = True
        self.verdicts = decide(
            self.config,
            self.checks.down,
            self.checks.unproven,
            first_round_done=self.first_round_done,
            stopping=False,
        )
        if self.device is None:
            return not self.wanted
        return await self._apply({v.address for v in self.verdicts if v.announce})

    async def _resync(self) -> None:
        """Put back what was removed behind the agent's back: a route deleted or flushed
        from the table, or the device itself deleted (then made again)."""
        dev = self.device
        if dev is None or self.stopping:
            return
        if not dev.alive():
            self.log.warning("anycast.device_lost", device=dev.name, effect="made again")
            dev.close()
            self.device = None
            return  # the next step makes it again and announces
        try:
            missing = dev.routes - await dev.present()
        except OSError as exc:
            self.log.error("anycast.read_failed", error=str(exc))
            return
        for address in sorted(missing, key=str):
            dev.routes.discard(address)
            self.log.warning("anycast.route_lost", address=str(address), effect="added again")
        if missing:
            await self._apply(dev.routes | missing)

    async def _ensure_device(self) -> None:
        settings = self.config.anycast
        dev = self.device
        if dev is not None and (
            not self.wanted or (dev.name, dev.table) != (settings.device, settings.route_table)
        ):
            await self._apply(set())
            dev.close()
            self.device = None
            self.log.info("anycast.device_closed", device=dev.name)
        if self.device is None and self.wanted:
            device = AnycastDevice(settings.device, settings.route_table)
            try:
                await device.open()
            except DeviceError as exc:
                if self.error != str(exc):
                    self.log.error("anycast.device_failed", error=str(exc), effect="not announced")
                self.error = str(exc)
                return
            self.error = None
            self.device = device
            self.log.info("anycast.device", device=device.name, table=device.table)

    async def _apply(self, wanted: set[IPAddress]) -> bool:
        dev = self.device
        if dev is None:
            return True
        ok = True
        reasons = {v.address: v.reason for v in self.verdicts}
        # Withdrawals first: a director never announces more than it should, even briefly.
        for address in sorted(dev.routes - wanted, key=str):
            try:
                await dev.remove(address)
                self.log.warning(
                    "anycast.withdrawn", address=str(address), reason=reasons.get(address, "")
                )
            except OSError as exc:
                ok = False
                self.log.error("anycast.withdraw_failed", address=str(address), error=str(exc))
        for address in sorted(wanted - dev.routes, key=str):
            try:
                await dev.add(address)
                self.log.info(
                    "anycast.announced", address=str(address), reason=reasons.get(address, "")
                )
            except OSError as exc:
                ok = False
                self.log.error("anycast.announce_failed", address=str(address), error=str(exc))
        return ok

    async def withdraw_all(self) -> None:
        """Stop announcing: remove every route now (SIGTERM), and decide no more."""
        async with self._lock:
            self.stopping = True
            self.verdicts = decide(self.config, set(), set(), first_round_done=True, stopping=True)
            await self._apply(set())

    def status(self) -> AnycastStatus:
        """This component's part of the agent's status snapshot."""
        if not self.wanted:
            return AnycastStatus()
        settings = self.config.anycast
        announced = self.device.routes if self.device is not None else set()
        return AnycastStatus(
            device=settings.device,
            route_table=settings.route_table,
            error=self.error,
            addresses=tuple(
                AnycastAddressStatus(
                    str(v.address),
                    v.address in announced,
                    v.reason if self.error is None else f"no device: {self.error}",
                )
                for v in self.verdicts
            ),
        )
