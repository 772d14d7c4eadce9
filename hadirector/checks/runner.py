"""Scheduling of health checks: one scheduler task for every check, one short task per probe.

The services of one ``virtual_server_group`` share one check per real server (run for the
group's first service; its verdict holds for every member).

A server may have several checks (``check`` as an array): each runs as its own task, and
the server is down while any of them is; the ``on_change`` hook hears the server's change
(its first check failing, its last one passing), ``check.down``/``check.up`` each check's.

Each check probes on a fixed cadence: the n-th probe is due at ``start + n * interval``
(a slow probe does not push later ones back, and there is no random jitter). The due times
of all checks wait in one heap served by one task: it sleeps until the earliest, then
starts a probe task for every check due by then or within ``BATCH_S`` after (a probe may
start up to 2 ms early, so thousands of checks a second cost a few hundred wake-ups, not
one timer and cancel scope per check), at most ``BATCH_MAX`` per wake-up (a backlog
drains in slices, each after the agent's other tasks had their turn, so VRRP adverts are
not held behind it); when a probe ends its task puts the check's next due time back in
the heap. First probes
of the configured checks are spread evenly over one interval so a thousand checks do not
fire in one burst, or, with ``warmup``, start at a random time within it. With
``delay_before_retry``, a failed probe of a server still up is followed by the next one
that much later (then the cadence goes on from there), so ``fall`` failures take it out
sooner than ``fall`` intervals. Results go through the rise/fall hysteresis
(risefall.py); a change is logged (``check.down`` / ``check.up`` with service, server
and reason), told to the ``on_change`` hook (the agent's pool keeper: per-server notify
scripts and events), and the set of failed servers is handed to the health sink (the
pool keeper, which hands it to ``IpvsManager.set_health``).

A server starts up (in rotation) unless its check sets ``alpha``: then it starts down and
needs ``rise`` successes to come in, on start and when a reload adds it.

On reload (``update``) checks are matched by service, server and check settings: an
unchanged check keeps its schedule, a changed one is restarted keeping the server's state,
a removed one stops (a probe in flight is cancelled) and its server no longer counts as
down.

This module schedules and reports; probing is probes.py, the hysteresis risefall.py.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from hadirector import logs
from hadirector.checks import probes
from hadirector.checks.risefall import Change, RiseFall
from hadirector.config.schema import Config, HealthCheck, IPAddress
from hadirector.ipvs import model

CheckKey = tuple[model.ServiceKey, model.DestKey]
#: One check task: its server's key and the check's place among the server's checks.
RunKey = tuple[model.ServiceKey, model.DestKey, int]
HealthSink = Callable[[set[CheckKey]], None]
#: Told of each state change of one check: its key, its spec and the change.
ChangeHook = Callable[[CheckKey, "CheckSpec", Change], None]
#: Told when a dynamic-weight script sets (or stops setting: None) a server's weight.
WeightHook = Callable[[CheckKey, "CheckSpec", int | None], None]
Prober = Callable[[HealthCheck, IPAddress, int | None], Awaitable[probes.ProbeResult]]


@dataclass(frozen=True)
class CheckSpec:
    """Everything one check task needs; equal specs mean the task can keep running."""

    service: str  # for logs
    server: str  # for logs
    address: IPAddress
    port: int | None
    check: HealthCheck
    # Services of the same virtual_server_group that share this check's verdict.
    members: tuple[model.ServiceKey, ...] = ()


def specs_from_config(config: Config) -> dict[RunKey, CheckSpec]:
    """The checks a configuration asks for, by (service, destination, index) key."""
    out: dict[RunKey, CheckSpec] = {}
    grouped: dict[str, list[model.ServiceKey]] = {}
    for vs in config.virtual_servers:
        if vs.group is not None:
            grouped.setdefault(vs.group, []).append(model.service_key_of(vs))
    for vs in config.virtual_servers:
        skey = model.service_key_of(vs)
        members: tuple[model.ServiceKey, ...] = ()
        if vs.group is not None:
            keys = grouped[vs.group]
            if skey != keys[0]:
                continue  # one check per real server of a group: its first service's
            members = tuple(keys[1:])
        for rs in vs.real_servers:
            dkey = model.dest_key_of(vs, rs)
            for index, check in enumerate(rs.checks):
                spec = CheckSpec(str(skey), str(dkey), rs.address, rs.port, check, members)
                out[(skey, dkey, index)] = spec
    return out


# Upper bounds (seconds) of the probe duration histogram's buckets (metrics.py).
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Durations:
    """A histogram of probe durations: counts per bucket, sum and count."""

    def __init__(self) -> None:
        # One more than the buckets: the last counts durations above every bound.
        self._counts = [0] * (len(DURATION_BUCKETS_S) + 1)
        self.count = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_s += seconds
        self._counts[bisect.bisect_left(DURATION_BUCKETS_S, seconds)] += 1

    @property
    def buckets(self) -> list[int]:
        """Cumulative counts: for each bound, the probes that took at most that long."""
        return list(itertools.accumulate(self._counts[:-1]))


def reason_class(reason: str) -> str:
    """A probe's failure reason without its numbers and details, for a metric label:
    "status 500" -> "status", "timeout 1.0 s" -> "timeout", "tls: ..." -> "tls"."""
    word = re.sub(r"[:\d].*$", "", reason, flags=re.S).strip().lower()
    return re.sub(r"[^a-z]+", "_", word).strip("_") or "error"


#: A probe may start this much before it is due, with the others of the same wake-up.
BATCH_S = 0.002
#: At most this many probes start per wake-up; more due wait for the next (at once, after
#: every other runnable task of the agent has had its turn: a backlog of checks, after the
#: process was starved of CPU, must not hold a VRRP advert behind thousands of probes).
BATCH_MAX = 32


class _Running:
    def __init__(self, key: RunKey, spec: CheckSpec, up: bool | None) -> None:
        self.key = key
        self.pair: CheckKey = (key[0], key[1])
        self.spec = spec
        self.hysteresis = RiseFall(spec.check.rise, spec.check.fall, up=up)
        self.stopped = False
        self.probing: trio.CancelScope | None = None  # the probe in flight, if any
        self.probes = 0
        self.durations = Durations()
        self.failures: dict[str, int] = {}  # failed probes by reason_class
        self.ever_ok = False  # a probe has succeeded since the task started (anycast)
        self.weight: int | None = None  # a dynamic-weight script's last weight


class HealthChecker:
    """Runs every configured check and reports the failed servers to ``sink``."""

    def __init__(
        self,
        config: Config,
        sink: HealthSink,
        *,
        prober: Prober = probes.probe,
        on_change: ChangeHook | None = None,
        rng: random.Random | None = None,
        on_weight: WeightHook | None = None,
    ) -> None:
        self.on_weight = on_weight
        self.rng = rng or random.Random()
        self.sink = sink
        self.on_change = on_change
        self.prober = prober
        self.log = logs.get(component="checks")
        self.running: dict[RunKey, _Running] = {}
        self._specs = specs_from_config(config)
        self._nursery: trio.Nursery | None = None
        self._reported: set[CheckKey] = set()  # the sink starts knowing of no failure
        # The running checks that hold their server down, kept as they change: a change
        # costs the failed servers' count, not a walk over every check.
        self._holding: dict[RunKey, _Running] = {}
        # The next due time of every check: (due, sequence, check), served by run().
        self._heap: list[tuple[float, int, _Running]] = []
        self._seq = itertools.count()
        self._wake: trio.CancelScope | None = None  # the scheduler's sleep, while it sleeps
        # Called after a probe that decided something new for anycast (a check's first
        # probe or first success, an up/down change); see hadirector/anycast/.
        self.on_verdict: Callable[[], None] | None = None
        # Called once every check of a server has its first result (the pool keeper
        # decides a service's quorum only then), with the server's key.
        self.on_probed: Callable[[CheckKey], None] | None = None

    @property
    def down(self) -> set[CheckKey]:
        """The servers one of whose checks holds them down (in every service of a
        virtual_server_group)."""
        out: set[CheckKey] = set()
        for (s, d, _), r in self._holding.items():
            out.add((s, d))
            out.update((m, d) for m in r.spec.members)
        return out

    def _hold(self, entry: _Running) -> None:
        """Keep ``_holding`` in step with the entry's state (after any change of it)."""
        if entry.hysteresis.up:
            self._holding.pop(entry.key, None)
        else:
            self._holding[entry.key] = entry

    @property
    def unproven(self) -> set[CheckKey]:
        """Servers with a check without a successful probe yet (in every service of a
        virtual_server_group)."""
        out: set[CheckKey] = set()
        for (s, d, _), r in self.running.items():
            if not r.ever_ok:
                out.add((s, d))
                out.update((m, d) for m in r.spec.members)
        return out

    def unprobed(self, config: Config | None = None) -> set[CheckKey]:
        """Servers with a check that has no result yet (in every service of a
        virtual_server_group): before ``run``, every server with a check. With ``config``
        (a reload about to be applied): as they will be once ``update`` has run."""
        specs = self._specs if config is None else specs_from_config(config)
        out: set[CheckKey] = set()
        for key, spec in specs.items():
            entry = self.running.get(key)
            if entry is None or entry.probes == 0:
                out.add((key[0], key[1]))
                out.update((m, key[1]) for m in spec.members)
        return out

    @property
    def all_probed(self) -> bool:
        """Every running check has probed at least once."""
        return all(r.probes > 0 for r in self.running.values())

    def down_at_start(self) -> set[CheckKey]:
        """The servers that start down (``alpha``), known before any check task runs: the
        first IPVS reconcile must not put them in rotation even for a moment."""
        out: set[CheckKey] = set()
        for (s, d, _), spec in self._specs.items():
            if spec.check.alpha:
                out.add((s, d))
                out.update((m, d) for m in spec.members)
        return out

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._apply(self._specs)
            task_status.started()
            heap = self._heap
            while True:
                with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                    self._wake = scope
                    await trio.sleep_forever()
                self._wake = None
                horizon = trio.current_time() + BATCH_S
                started = 0
                while heap and heap[0][0] <= horizon and started < BATCH_MAX:
                    due, _, entry = heapq.heappop(heap)
                    if not entry.stopped:
                        nursery.start_soon(self._probe, entry, due)
                        started += 1

    def _schedule(self, entry: _Running, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        wake = self._wake
        if wake is not None and due < wake.deadline:
            wake.deadline = due

    @staticmethod
    def _stop(entry: _Running) -> None:
        entry.stopped = True
        if entry.probing is not None:
            entry.probing.cancel()

    def update(self, config: Config) -> None:
        """A reload: restart only the checks whose settings changed."""
        self._specs = specs_from_config(config)
        if self._nursery is not None:
            self._apply(self._specs)

    def _apply(self, specs: dict[RunKey, CheckSpec]) -> None:
        assert self._nursery is not None
        gone = [k for k in self.running if k not in specs]
        for key in gone:
            self._stop(self.running.pop(key))
            self._holding.pop(key, None)
        stopped = len(gone)
        fresh = [k for k, s in specs.items() if k not in self.running or self.running[k].spec != s]
        started = trio.current_time()
        for i, key in enumerate(sorted(fresh, key=_sort_key)):
            spec = specs[key]
            old = self.running.pop(key, None)
            up: bool | None = not spec.check.alpha  # a new server starts up, or down with alpha
            if old is not None:
                self._stop(old)
                up = old.hysteresis.up
            entry = _Running(key, spec, up)
            if old is not None:
                entry.ever_ok, entry.probes = old.ever_ok, old.probes
            self.running[key] = entry
            self._hold(entry)
            if spec.check.warmup_s is not None:  # keepalived's warmup: a random start
                offset_s = self.rng.uniform(0.0, spec.check.warmup_s)
            else:
                offset_s = spec.check.interval_s * i / len(fresh)
            self._schedule(entry, started + offset_s)
        self._report()
        if fresh or stopped:
            self.log.info(
                "check.configured", checks=len(self.running), started=len(fresh), stopped=stopped
            )

    def _report(self) -> None:
        down = self.down
        if down != self._reported:
            self._reported = down
            self.sink(set(down))

    async def _probe(self, entry: _Running, due: float) -> None:
        """One probe of one check, its verdict, and the check's next due time."""
        if entry.stopped:
            return  # stopped between its wake-up and this task's start
        spec = entry.spec
        with trio.CancelScope() as scope:
            entry.probing = scope
            began = trio.current_time()
            try:
                result = await self.prober(spec.check, spec.address, spec.port)
            except Exception as exc:  # a probe bug must not take the agent down
                self.log.error(
                    "check.error", service=spec.service, server=spec.server, error=repr(exc)
                )
                result = probes.ProbeResult(False, f"error: {exc!r}")
            entry.probing = None
        if scope.cancelled_caught or entry.stopped:
            return  # stopped by a reload: its replacement (if any) probes on
        now = trio.current_time()
        entry.probes += 1
        entry.durations.observe(now - began)
        ok = result.ok
        if not ok:
            cls = reason_class(result.reason)
            entry.failures[cls] = entry.failures.get(cls, 0) + 1
        news = entry.probes == 1 or (ok and not entry.ever_ok)
        if ok:
            entry.ever_ok = True
        change = entry.hysteresis.update(ok, result.reason)
        if spec.check.dynamic_weight:
            weight = result.weight if ok else None
            if weight != entry.weight:
                entry.weight = weight
                self.log.info(
                    "check.weight", service=spec.service, server=spec.server, weight=weight
                )
                if self.on_weight is not None:
                    self.on_weight(entry.pair, spec, weight)
        if change is not None:
            self._changed(entry, change)
        if entry.probes == 1 and self.on_probed is not None and self._probed(entry.key):
            self.on_probed(entry.pair)
        if (news or change is not None) and self.on_verdict is not None:
            self.on_verdict()
        check = spec.check
        retry_s = check.delay_before_retry_s
        if retry_s is not None and not ok and entry.hysteresis.up:
            self._schedule(entry, now + retry_s)  # a server still up is probed again soon
            return
        due += check.interval_s
        if due <= now:  # a probe overran (should not: timeout < interval): skip ahead
            due += math.ceil((now - due) / check.interval_s) * check.interval_s
        self._schedule(entry, due)

    def _changed(self, entry: _Running, change: Change) -> None:
        spec = entry.spec
        pair = entry.pair
        was_down = pair in self._reported
        self._hold(entry)
        emit = self.log.info if change.up else self.log.warning
        emit(
            "check.up" if change.up else "check.down",
            service=spec.service,
            server=spec.server,
            check=spec.check.type,
            reason=change.reason,
        )
        # The server changes when its first check fails or its last one passes.
        if self.on_change is not None and (pair in self.down) != was_down:
            self.on_change(pair, spec, change)
        self._report()

    def _probed(self, key: RunKey) -> bool:
        """Every check of this key's server has a result."""
        index = 0
        while (entry := self.running.get((key[0], key[1], index))) is not None:
            if entry.probes == 0:
                return False
            index += 1
        return True


def _sort_key(key: RunKey) -> tuple[object, ...]:
    return (key[0].sort_key(), key[1].sort_key(), key[2])
