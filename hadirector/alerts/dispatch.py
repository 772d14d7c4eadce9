"""Alert delivery: email, webhook and Alertmanager, off the VRRP and check paths.

The agent calls ``Alerts.event`` (a state change) and ``Alerts.set_conditions`` (what holds
now: instances in FAULT, real servers down) from its own tasks; both return at once. Each
destination has its own task and its own bounded queue (``[alerts] queue``: when full, the
oldest event is dropped and counted), so a mail server that stalls delays neither VRRP,
the checks, nor the other destinations.

A delivery that fails is retried with exponential backoff (``RETRY_FIRST_S`` doubling up
to ``RETRY_MAX_S``) until it succeeds, is refused for good (``DeliveryError.permanent``:
logged and dropped), or the queue pushes it out. An unreachable destination is logged at
once and then at most once per ``UNREACHABLE_LOG_PERIOD_S`` (with the number of failures
in between); its recovery is logged once. On a graceful stop ``flush`` delivers what is
queued within ``[alerts] flush_timeout``, without backoff waits, and gives up on the rest
(logged with the count).

Alertmanager is not a queue of events but a set of alerts that hold: each firing alert is
posted with an ``endsAt`` a few repeat intervals ahead and posted again every
``repeat_interval`` (so Alertmanager keeps it, and drops it by itself if the agent dies);
a cleared one is posted once more with ``endsAt`` = now, which resolves it. A graceful stop
resolves every alert the agent posted.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from hadirector import logs
from hadirector.alerts import events
from hadirector.alerts.events import Event
from hadirector.config.schema import AlertmanagerAlerts, AlertsConfig, EmailAlerts, WebhookAlerts


class _LazyModule:
    """A module imported on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    from hadirector.alerts import transport
else:
    # smtplib, ssl, urllib and email are imported with the first delivery, not at start.
    transport = _LazyModule("hadirector.alerts.transport")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
UNREACHABLE_LOG_PERIOD_S = 60.0
# An Alertmanager alert's endsAt while it fires: this many repeat intervals ahead.
ENDS_AT_INTERVALS = 4


@dataclass(frozen=True)
class Condition:
    """An alert that holds: Alertmanager labels (without the agent's own) and annotations."""

    alertname: str
    labels: tuple[tuple[str, str], ...]
    summary: str
    description: str
    severity: str = "critical"

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.alertname, self.labels)


@dataclass
class DestinationStats:
    """What a destination did: delivered, failed attempts, dropped (queue full, refused)."""

    delivered: int = 0
    failures: int = 0
    dropped: int = 0
    queued: int = 0


class _Destination:
    """One destination's queue and delivery task (email or webhook)."""

    name = ""

    def __init__(self, queue: int, clock: Callable[[], float]) -> None:
        self.retry_first_s = RETRY_FIRST_S
        self.retry_max_s = RETRY_MAX_S
        self.items: deque[Any] = deque()
        self.limit = queue
        self.stats = DestinationStats()
        self.log = logs.get(component="alerts", destination=self.name)
        self._wake = trio.Event()
        self._clock = clock
        self._down_since: float | None = None
        self._last_logged = -math.inf
        self._unlogged = 0
        self.limiter = trio.CapacityLimiter(1)  # one worker thread at a time

    def put(self, item: Any) -> None:
        if len(self.items) >= self.limit:
            self.items.popleft()
            self.stats.dropped += 1
            self.log.error("alerts.dropped", reason="queue full", queue=self.limit)
        self.items.append(item)
        self.stats.queued = len(self.items)
        self._wake.set()

    async def deliver(self, item: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self, item: Any) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    async def run(self) -> None:
        backoff = self.retry_first_s
        while True:
            if not self.items:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            if await self._attempt(self.items[0]):
                backoff = self.retry_first_s
                continue
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_max_s)

    async def _attempt(self, item: Any) -> bool:
        """Try the oldest item once; True when it left the queue (delivered or refused)."""
        try:
            await self.deliver(item)
        except transport.DeliveryError as exc:
            self.stats.failures += 1
            if exc.permanent:
                self._pop(item)
                self.stats.dropped += 1
                self.log.error("alerts.refused", what=self.describe(item), error=str(exc))
                return True
            self._unreachable(str(exc))
            return False
        self._pop(item)
        self.stats.delivered += 1
        if self._down_since is not None:
            self.log.info(
                "alerts.reachable",
                down_s=round(self._clock() - self._down_since, 1),
                failures_unlogged=self._unlogged,
            )
            self._down_since = None
            self._unlogged = 0
            self._last_logged = -math.inf
        self.log.info("alerts.delivered", what=self.describe(item))
        return True

    def _pop(self, item: Any) -> None:
        if self.items and self.items[0] is item:
            self.items.popleft()
        self.stats.queued = len(self.items)

    def _unreachable(self, error: str) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        if now - self._last_logged < UNREACHABLE_LOG_PERIOD_S:
            self._unlogged += 1
            return
        self.log.error(
            "alerts.unreachable",
            error=error,
            queued=len(self.items),
            failures_unlogged=self._unlogged,
        )
        self._last_logged = now
        self._unlogged = 0

    async def flush(self, deadline: float) -> None:
        """Deliver what is queued, without backoff, until ``deadline`` (trio time)."""
        with trio.move_on_at(deadline):
            while self.items:
                if not await self._attempt(self.items[0]):
                    await trio.sleep(0.1)  # the server is down: try again shortly


class EmailDestination(_Destination):
    """One mail per event, over SMTP in a worker thread (transport.py)."""

    name = "email"

    def __init__(self, cfg: EmailAlerts, queue: int, clock: Callable[[], float]) -> None:
        super().__init__(queue, clock)
        self.cfg = cfg

    async def deliver(self, item: Event) -> None:
        cfg = self.cfg
        msg = transport.build_mail(cfg, events.subject(item), events.body(item), item.at)
        # Every socket operation is bounded by cfg.timeout_s; the whole delivery too (a
        # server trickling bytes): the thread is then abandoned and ends at its next timeout.
        with trio.move_on_after(cfg.timeout_s * 6) as scope:
            await trio.to_thread.run_sync(
                transport.send_mail, cfg, msg, limiter=self.limiter, abandon_on_cancel=True
            )
        if scope.cancelled_caught:
            raise transport.DeliveryError("timed out")

    def describe(self, item: Event) -> str:
        return events.subject(item)


class WebhookDestination(_Destination):
    """One JSON document per event, POSTed in a worker thread (transport.py)."""

    name = "webhook"

    def __init__(self, cfg: WebhookAlerts, queue: int, clock: Callable[[], float]) -> None:
        super().__init__(queue, clock)
        self.cfg = cfg

    async def deliver(self, item: Event) -> None:
        cfg = self.cfg
        body = json.dumps(events.document(item)).encode()
        with trio.move_on_after(cfg.timeout_s * 3) as scope:
            await trio.to_thread.run_sync(
                transport.post_json,
                cfg.url,
                body,
                cfg.headers,
                cfg.timeout_s,
                limiter=self.limiter,
                abandon_on_cancel=True,
            )
        if scope.cancelled_caught:
            raise transport.DeliveryError("timed out")

    def describe(self, item: Event) -> str:
        return events.subject(item)


@dataclass
class _Posted:
    """An alert as last posted to Alertmanager: since when it fires, resolved when."""

    condition: Condition
    starts_at: float
    ends_at: float | None = None  # set once it cleared: posted resolved until delivered


@dataclass
class AlertmanagerState:
    """The alerts that fire and the resolutions still to post (pure bookkeeping)."""

    firing: dict[Any, _Posted] = field(default_factory=dict)
    resolving: dict[Any, _Posted] = field(default_factory=dict)

    def set(self, kind: str, conditions: list[Condition], now: float) -> bool:
        """Replace the conditions of ``kind`` (an alertname); True when anything changed."""
        wanted = {c.key: c for c in conditions}
        changed = False
        for key in [k for k, p in self.firing.items() if p.condition.alertname == kind]:
            if key not in wanted:
                posted = self.firing.pop(key)
                posted.ends_at = now
                self.resolving[key] = posted
                changed = True
        for key, cond in wanted.items():
            if key not in self.firing:
                self.resolving.pop(key, None)
                self.firing[key] = _Posted(cond, now)
                changed = True
            elif self.firing[key].condition != cond:
                self.firing[key].condition = cond  # same alert, new words
        return changed

    def resolve_all(self, now: float) -> None:
        for key, posted in self.firing.items():
            posted.ends_at = now
            self.resolving[key] = posted
        self.firing.clear()


class AlertmanagerDestination:
    """Posts the firing and resolved alerts to Alertmanager's v2 API."""

    name = "alertmanager"

    def __init__(
        self,
        cfg: AlertmanagerAlerts,
        director: str,
        wall: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.cfg = cfg
        self.director = director
        self.wall = wall
        self.clock = clock
        self.state = AlertmanagerState()
        self.stats = DestinationStats()
        self.log = logs.get(component="alerts", destination=self.name)
        self._dirty = trio.Event()
        self._down_since: float | None = None
        self._last_logged = -math.inf
        self._unlogged = 0
        self.limiter = trio.CapacityLimiter(1)
        self.retry_first_s = RETRY_FIRST_S
        self.retry_max_s = RETRY_MAX_S

    def set_conditions(self, kind: str, conditions: list[Condition]) -> None:
        if self.state.set(kind, conditions, self.wall()):
            self._dirty.set()

    def payload(self) -> list[dict[str, Any]]:
        """The POST body: every firing alert (endsAt ahead) and every resolution."""
        now = self.wall()
        ahead = now + ENDS_AT_INTERVALS * self.cfg.repeat_interval_s
        out = []
        for posted in [*self.state.firing.values(), *self.state.resolving.values()]:
            cond = posted.condition
            labels = {
                "alertname": cond.alertname,
                "director": self.director,
                "severity": cond.severity,
                **dict(self.cfg.labels),
                **dict(cond.labels),
            }
            ends = posted.ends_at if posted.ends_at is not None else ahead
            out.append(
                {
                    "labels": labels,
                    "annotations": {"summary": cond.summary, "description": cond.description},
                    "startsAt": events.iso8601(posted.starts_at),
                    "endsAt": events.iso8601(ends),
                    "generatorURL": f"hadirector://{self.director}",
                }
            )
        return out

    async def post(self) -> None:
        resolving = dict(self.state.resolving)
        body = json.dumps(self.payload()).encode()
        url = self.cfg.url + "/api/v2/alerts"
        with trio.move_on_after(self.cfg.timeout_s * 3) as scope:
            await trio.to_thread.run_sync(
                transport.post_json,
                url,
                body,
                (),
                self.cfg.timeout_s,
                limiter=self.limiter,
                abandon_on_cancel=True,
            )
        if scope.cancelled_caught:
            raise transport.DeliveryError("timed out")
        for key, posted in resolving.items():
            if self.state.resolving.get(key) is posted:
                del self.state.resolving[key]

    async def _attempt(self) -> bool:
        try:
            await self.post()
        except transport.DeliveryError as exc:
            self.stats.failures += 1
            now = self.clock()
            if self._down_since is None:
                self._down_since = now
            if now - self._last_logged >= UNREACHABLE_LOG_PERIOD_S:
                self.log.error(
                    "alerts.unreachable",
                    error=str(exc),
                    firing=len(self.state.firing),
                    failures_unlogged=self._unlogged,
                )
                self._last_logged, self._unlogged = now, 0
            else:
                self._unlogged += 1
            return False
        self.stats.delivered += 1
        if self._down_since is not None:
            self.log.info("alerts.reachable", down_s=round(self.clock() - self._down_since, 1))
            self._down_since, self._last_logged, self._unlogged = None, -math.inf, 0
        return True

    async def run(self) -> None:
        backoff = self.retry_first_s
        while True:
            if not self.state.firing and not self.state.resolving:
                self._dirty = trio.Event()
                await self._dirty.wait()
            self._dirty = trio.Event()
            if await self._attempt():
                backoff = self.retry_first_s
                # Post again after repeat_interval while anything fires, or at once on news.
                with trio.move_on_after(self.cfg.repeat_interval_s):
                    await self._dirty.wait()
            else:
                with trio.move_on_after(backoff):
                    await self._dirty.wait()
                backoff = min(backoff * 2, self.retry_max_s)

    async def flush(self, deadline: float) -> None:
        """Resolve every alert posted and say so to Alertmanager, until ``deadline``."""
        self.state.resolve_all(self.wall())
        with trio.move_on_at(deadline):
            while self.state.resolving:
                if not await self._attempt():
                    await trio.sleep(0.1)


class Alerts:
    """The agent's alert destinations, from ``[alerts]``; no destination, no cost."""

    def __init__(
        self,
        cfg: AlertsConfig,
        director: str,
        *,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.director = director
        self.wall = wall
        self.clock = clock
        self.cfg = cfg
        self.email: EmailDestination | None = None
        self.webhook: WebhookDestination | None = None
        self.alertmanager: AlertmanagerDestination | None = None
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[str, trio.CancelScope] = {}
        self._changed_at: dict[tuple[str, str], float] = {}
        # Services without quorum: (live weight, quorum), by service (alerts/wiring.py).
        self.quorum_lost: dict[str, tuple[int, int]] = {}
        self._build(cfg)

    def since(self, kind: str, name: str, now: float) -> float | None:
        """Seconds since ``kind`` ``name`` last changed (None: not since the start), and
        remember ``now`` as its latest change."""
        before = self._changed_at.get((kind, name))
        self._changed_at[(kind, name)] = now
        return None if before is None else now - before

    def _build(self, cfg: AlertsConfig) -> None:
        if cfg.email is not None:
            self.email = EmailDestination(cfg.email, cfg.queue, self.clock)
        if cfg.webhook is not None:
            self.webhook = WebhookDestination(cfg.webhook, cfg.queue, self.clock)
        if cfg.alertmanager is not None:
            self.alertmanager = AlertmanagerDestination(
                cfg.alertmanager, self.director, self.wall, self.clock
            )

    @property
    def destinations(self) -> list[Any]:
        return [d for d in (self.email, self.webhook, self.alertmanager) if d is not None]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for dest in self.destinations:
                self._start(dest)
            task_status.started()
            await trio.sleep_forever()

    def _start(self, dest: Any) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._scopes[dest.name] = scope

        async def run() -> None:
            with scope:
                await dest.run()

        self._nursery.start_soon(run)

    def update(self, cfg: AlertsConfig) -> None:
        """A reload: a destination whose settings changed starts afresh (keeping its
        queue, and Alertmanager its alerts); one removed stops."""
        old = self.cfg
        self.cfg = cfg
        for name in ("email", "webhook", "alertmanager"):
            before, after = getattr(old, name), getattr(cfg, name)
            if before == after and old.queue == cfg.queue:
                continue
            dest = getattr(self, name)
            if dest is not None:
                self._scopes.pop(name).cancel()
            setattr(self, name, None)
            if after is None:
                continue
            if name == "email":
                fresh: Any = EmailDestination(after, cfg.queue, self.clock)
            elif name == "webhook":
                fresh = WebhookDestination(after, cfg.queue, self.clock)
            else:
                fresh = AlertmanagerDestination(after, self.director, self.wall, self.clock)
                if dest is not None:
                    fresh.state = dest.state
                    fresh._dirty.set()
            if dest is not None and name != "alertmanager":
                fresh.items.extend(list(dest.items)[-cfg.queue :])
            setattr(self, name, fresh)
            if self._nursery is not None:
                self._start(fresh)

    def event(self, ev: Event) -> None:
        """A change: queued for the mail (if its object has smtp_alert) and the webhook."""
        if self.email is not None and ev.smtp_alert:
            self.email.put(ev)
        if self.webhook is not None:
            self.webhook.put(ev)

    def set_conditions(self, alertname: str, conditions: list[Condition]) -> None:
        """What holds now for ``alertname`` (every alert of that name not listed clears)."""
        if self.alertmanager is not None:
            self.alertmanager.set_conditions(alertname, conditions)

    async def flush(self, timeout_s: float) -> None:
        """A graceful stop: deliver what is queued (and resolve Alertmanager's alerts),
        every destination at once, within ``timeout_s``."""
        deadline = trio.current_time() + timeout_s
        async with trio.open_nursery() as nursery:
            for dest in self.destinations:
                self._scopes[dest.name].cancel()  # its own loop would race the flush
                nursery.start_soon(dest.flush, deadline)
        left = {d.name: _left(d) for d in self.destinations if _left(d)}
        if left:
            logs.get(component="alerts").error(
                "alerts.flush_incomplete", timeout_s=timeout_s, undelivered=left
            )

    def stats(self) -> dict[str, DestinationStats]:
        return {d.name: d.stats for d in self.destinations}


def _left(dest: Any) -> int:
    if isinstance(dest, AlertmanagerDestination):
        return len(dest.state.resolving)
    return len(dest.items)
