"""Real-server pools: live weight, quorum with hysteresis, the sorry server, drained servers.

A virtual service's pool is its real servers. A server is *live* when its health check
does not hold it down and the operator has not drained it; the pool's *live weight* is the
sum of its live servers' configured weights. Quorum follows keepalived's rule:

- a pool with quorum loses it when its live weight is 0 or below ``quorum - hysteresis``;
- a pool without quorum gains it when its live weight reaches ``quorum + hysteresis``.

A service seen for the first time is taken to have quorum, so one that starts (or is
added by a reload) below ``quorum`` loses it at once: its ``quorum_down`` runs and its
sorry server goes in. "At once" means when its servers' states are known: a service with
a server whose health check has no result yet (``unsettled``) is *pending*: no decision,
no event, no command, no sorry server, and it counts as having quorum, until every check
of each of its servers has given its first result (a server without a check is known
from the start: in rotation). Once decided, a service is never pending again.

While a service lacks quorum and has a ``sorry_server``, the sorry server is in rotation
with its own weight and forwarding method and every real server is out (quiesced with
weight 0, or deleted, as the service's ``health_action`` says), as keepalived does. With
quorum the sorry server is deleted, or kept with weight 0 when ``inhibit`` is set. A
service without a sorry server keeps its table as health checks leave it: quorum then
only runs the commands and feeds VRRP tracking (``track_quorum``).

Drained servers (``hadirector drain``) stay in the table with weight 0, whatever the
service's ``health_action``: their established connections finish.

Slow start (``slow_start`` seconds, keepalived has none): a server that comes back (its
check recovers, or it is undrained) starts at a share of its weight (at least 1) and
climbs to its configured weight in at most ``SLOW_START_STEPS`` equal steps over that
time, so least-connection schedulers do not flood it; ``SlowStart`` keeps the ramps, the
caller wakes at ``next_deadline``.

``Pools`` is the state: fed the services and the servers that are out, it answers the
quorum changes; ``apply`` turns a desired table into the one to program.

This module is part of the pure core: no I/O, no clock reads, standard library only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from hadirector.ipvs.model import (
    FORWARDING_BY_NAME,
    FWD_TUNNEL,
    TUN_F_NOCSUM,
    TUN_TYPE_IPIP,
    Dest,
    DestKey,
    Entry,
    ServiceKey,
    VirtualServerLike,
    _tunnel_of,
    dest_key_of,
    service_key_of,
)

Pair = tuple[ServiceKey, DestKey]


class SorryServerLike(Protocol):
    """The attributes of ``hadirector.config.schema.SorryServer`` this module reads."""

    @property
    def address(self) -> Any: ...
    @property
    def port(self) -> int | None: ...
    @property
    def forwarding(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def inhibit(self) -> bool: ...


class PoolServiceLike(VirtualServerLike, Protocol):
    """The attributes of ``hadirector.config.schema.VirtualServer`` this module reads."""

    @property
    def health_action(self) -> str: ...
    @property
    def quorum(self) -> int: ...
    @property
    def hysteresis(self) -> int: ...
    @property
    def sorry_server(self) -> SorryServerLike | None: ...


def next_quorum(up: bool, live_weight: int, quorum: int, hysteresis: int) -> bool:
    """Whether a pool has quorum after its live weight became ``live_weight``."""
    if up:
        return not (live_weight == 0 or live_weight < quorum - hysteresis)
    return live_weight >= quorum + hysteresis


def live_weight(
    vs: PoolServiceLike, out: Collection[Pair], weights: Mapping[Pair, int] | None = None
) -> int:
    """The sum of the weights of the service's servers not in ``out``: configured, or the
    one a dynamic-weight check set (``weights``)."""
    key = service_key_of(vs)
    weights = weights or {}
    total = 0
    for rs in vs.real_servers:
        pair = (key, dest_key_of(vs, rs))
        if pair not in out:
            total += weights.get(pair, int(rs.weight))
    return total


@dataclass(frozen=True)
class QuorumChange:
    """A service gained (``up``) or lost quorum, with the figures that decided it."""

    service: ServiceKey
    up: bool
    live_weight: int
    quorum: int
    hysteresis: int

    @property
    def threshold(self) -> int:
        """The live weight the decision was made against."""
        return self.quorum + self.hysteresis if self.up else self.quorum - self.hysteresis


class Pools:
    """The quorum state of every configured service."""

    def __init__(self) -> None:
        self.up: dict[ServiceKey, bool] = {}
        self.live: dict[ServiceKey, int] = {}
        # Services not decided yet: a server of theirs has a check without a result.
        self.pending: frozenset[ServiceKey] = frozenset()

    @property
    def lost(self) -> frozenset[ServiceKey]:
        """The services without quorum."""
        return frozenset(key for key, up in self.up.items() if not up)

    def any_quorum(self) -> bool:
        """True while some service has quorum or is pending, or when there is no service."""
        return not self.up or bool(self.pending) or any(self.up.values())

    def update(
        self,
        services: Iterable[PoolServiceLike],
        out: Collection[Pair],
        weights: Mapping[Pair, int] | None = None,
        unsettled: Collection[Pair] = (),
    ) -> list[QuorumChange]:
        """Re-evaluate every service given the servers that are ``out`` (down or drained);
        forget services no longer configured; return the changes in configuration order.

        A service not decided before with a server in ``unsettled`` (a check without a
        first result) stays pending: left out of ``up`` and ``live``, no change."""
        changes: list[QuorumChange] = []
        up: dict[ServiceKey, bool] = {}
        live: dict[ServiceKey, int] = {}
        pending: set[ServiceKey] = set()
        for vs in services:
            key = service_key_of(vs)
            if (
                unsettled
                and key not in self.up
                and any((key, dest_key_of(vs, rs)) in unsettled for rs in vs.real_servers)
            ):
                pending.add(key)
                continue
            weight = live_weight(vs, out, weights)
            before = self.up.get(key, True)
            now = next_quorum(before, weight, int(vs.quorum), int(vs.hysteresis))
            up[key], live[key] = now, weight
            if now != before:
                changes.append(QuorumChange(key, now, weight, int(vs.quorum), int(vs.hysteresis)))
        self.up, self.live, self.pending = up, live, frozenset(pending)
        return changes


def sorry_dest(vs: PoolServiceLike) -> tuple[DestKey, Dest] | None:
    """The sorry server's destination key and attributes (weight as configured)."""
    sorry = vs.sorry_server
    if sorry is None:
        return None
    port = sorry.port if sorry.port is not None else (0 if vs.fwmark else int(vs.port or 0))
    key = DestKey.of(str(sorry.address), int(port))
    method = FORWARDING_BY_NAME[sorry.forwarding or vs.forwarding]
    tunnel = _tunnel_of(sorry, vs) if method == FWD_TUNNEL else (TUN_TYPE_IPIP, 0, TUN_F_NOCSUM)
    return key, Dest(
        forwarding=method,
        weight=int(sorry.weight),
        tunnel_type=tunnel[0],
        tunnel_port=tunnel[1],
        tunnel_flags=tunnel[2],
    )


def apply(
    table: Mapping[ServiceKey, Entry],
    services: Iterable[PoolServiceLike],
    *,
    lost: Collection[ServiceKey],
    drained: Collection[Pair],
    ramp: Mapping[Pair, int] | None = None,
    weights: Mapping[Pair, int] | None = None,
) -> dict[ServiceKey, Entry]:
    """The table to program: drained servers at weight 0, slow-starting servers at their
    ``ramp`` weight (never above what the table has), and for each service with a sorry
    server, the sorry server in place of its real servers while it lacks quorum (``lost``),
    out of the way (deleted, or weight 0 with ``inhibit``) otherwise.

    ``weights`` (a dynamic-weight check's) replace the configured weight of a server in
    rotation. ``table`` already has health applied (failed servers quiesced or left out)."""
    ramp = ramp or {}
    weights = weights or {}
    out: dict[ServiceKey, Entry] = dict(table)
    for key, entry in table.items():
        touched = drained, ramp, weights
        if any((key, d) in pairs for d in entry.dests for pairs in touched):
            dests = {}
            for d, dest in entry.dests.items():
                if (key, d) in drained:
                    dest = replace(dest, weight=0)
                else:
                    if (key, d) in weights and dest.weight > 0:  # not while quiesced
                        dest = replace(dest, weight=weights[(key, d)])
                    if (key, d) in ramp:
                        dest = replace(dest, weight=min(dest.weight, ramp[(key, d)]))
                dests[d] = dest
            out[key] = Entry(entry.service, dests)
    for vs in services:
        sorry = sorry_dest(vs)
        if sorry is None:
            continue
        key = service_key_of(vs)
        current = out.get(key)
        if current is None:  # refused by the kernel adapter: nothing to program
            continue
        skey, sdest = sorry
        assert vs.sorry_server is not None
        if key in lost:
            if vs.health_action == "remove":
                dests = {}
            else:
                dests = {d: replace(dest, weight=0) for d, dest in current.dests.items()}
            dests[skey] = sdest
        else:
            dests = dict(current.dests)
            if vs.sorry_server.inhibit:
                dests[skey] = replace(sdest, weight=0)
        out[key] = Entry(current.service, dests)
    return out


@dataclass(frozen=True)
class ServerChange:
    """A real server went in or out of rotation in one service.

    ``cause`` is ``check`` (its health check: ``reason`` says why, e.g. ``connect
    refused``) or ``drain`` (the operator: ``hadirector drain`` / ``undrain``)."""

    service: ServiceKey
    server: DestKey
    up: bool
    cause: str
    reason: str


#: What the pool keeper tells its subscribers (the agent's alerting reads these).
PoolEvent = ServerChange | QuorumChange


def _service_names(key: ServiceKey) -> set[str]:
    """The spellings an operator may use for a service: ``tcp 192.0.2.1:80`` (as logged),
    ``192.0.2.1:80`` and ``tcp:192.0.2.1:80``; ``fwmark 7`` (``fwmark 7 ipv6``)."""
    names = {str(key)}
    if not key.is_fwmark:
        host = key.address if key.family == 4 else f"[{key.address}]"
        proto = str(key).split(" ", 1)[0]
        names |= {f"{host}:{key.port}", f"{proto}:{host}:{key.port}"}
    return names


def find_server(services: Iterable[PoolServiceLike], service: str, server: str) -> Pair | str:
    """The configured (service, real server) an operator named, or why none matches.

    ``service`` as :func:`_service_names` spells it (without a protocol it must name one
    service only); ``server`` as ``address:port`` (``[v6]:port``), or a bare address
    when that service has one real server at that address."""
    wanted = " ".join(service.split()).lower()
    matches = [vs for vs in services if wanted in _service_names(service_key_of(vs))]
    if not matches:
        return f"no virtual server {service!r} in the configuration"
    if len(matches) > 1:
        names = ", ".join(str(service_key_of(vs)) for vs in matches)
        return f"{service!r} names several virtual servers ({names}): give the protocol"
    vs = matches[0]
    key = service_key_of(vs)
    text = server.strip()
    found = []
    for rs in vs.real_servers:
        dkey = dest_key_of(vs, rs)
        if text in (str(dkey), dkey.address):
            found.append(dkey)
    if not found:
        return f"no real server {server!r} in {key}"
    if len(found) > 1:
        return f"{server!r} names several real servers of {key}: give the port"
    return key, found[0]


# --- slow start --------------------------------------------------------------------------

#: A recovering server's weight climbs in at most this many equal steps.
SLOW_START_STEPS = 10


def _steps(weight: int) -> int:
    return max(1, min(int(weight), SLOW_START_STEPS))


def _done(steps: int, elapsed_s: float, slow_start_s: float) -> int:
    """Whole steps behind a ramp (a step's own deadline counts as reached, whatever the
    float rounding of ``now - start``)."""
    return int(max(elapsed_s, 0.0) * steps / slow_start_s + 1e-9)


def ramp_weight(weight: int, elapsed_s: float, slow_start_s: float) -> int:
    """The weight of a server ``elapsed_s`` into its slow start: ``weight / steps`` (at
    least 1) in the first step, one more share each step, ``weight`` in the last one."""
    if slow_start_s <= 0 or elapsed_s >= slow_start_s or weight <= 1:
        return int(weight)
    steps = _steps(weight)
    done = min(_done(steps, elapsed_s, slow_start_s), steps - 1)
    return max(1, weight * (done + 1) // steps)


def ramp_next_s(weight: int, elapsed_s: float, slow_start_s: float) -> float | None:
    """How long after its start the server's weight next changes (None: no more)."""
    if slow_start_s <= 0 or weight <= 1:
        return None
    steps = _steps(weight)
    done = _done(steps, elapsed_s, slow_start_s)
    if done + 1 >= steps:
        return None
    return (done + 1) * slow_start_s / steps


class SlowStart:
    """Servers ramping up after recovery: when each started, and their weights now."""

    def __init__(self) -> None:
        self.started: dict[Pair, tuple[float, int, float]] = {}  # start, weight, duration

    def begin(self, pair: Pair, now: float, weight: int, slow_start_s: float) -> bool:
        """A server came back at ``now``; True when it ramps (slow start on, weight > 1)."""
        if slow_start_s <= 0 or weight <= 1:
            self.started.pop(pair, None)
            return False
        self.started[pair] = (now, int(weight), float(slow_start_s))
        return True

    def cancel(self, pair: Pair) -> None:
        """The server went out again (down or drained): no ramp left."""
        self.started.pop(pair, None)

    def weights(self, now: float) -> dict[Pair, int]:
        """The ramping servers' weights at ``now``; finished ramps are forgotten."""
        out: dict[Pair, int] = {}
        for pair, (start, weight, duration) in list(self.started.items()):
            if now - start >= duration:
                del self.started[pair]
            else:
                out[pair] = ramp_weight(weight, now - start, duration)
        return out

    def next_deadline(self, now: float) -> float | None:
        """When the next weight changes (None: nothing ramps)."""
        times = [
            start + step
            for start, weight, duration in self.started.values()
            if (step := ramp_next_s(weight, now - start, duration)) is not None
        ]
        return min(times, default=None)

    def forget(self, keep: Collection[Pair]) -> None:
        """Drop servers no longer configured (a reload)."""
        for pair in [p for p in self.started if p not in keep]:
            del self.started[pair]
