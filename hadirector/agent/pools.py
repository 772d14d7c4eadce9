"""The pool keeper: between the health checker and the IPVS manager, for every service.

It is told of each check change (``on_check_change``) and of the set of failed servers
(``set_down``); it keeps the operator's drained servers; it asks the pure core
(ipvs/pool.py) which services have quorum, and hands the IPVS manager the failed servers,
the drained ones and the services without quorum (where a sorry server goes in). It runs
the commands: a real server's ``notify_up`` / ``notify_down`` on its check's change, a
service's ``quorum_up`` / ``quorum_down`` when quorum is gained or lost, on the agent's
notify runner (argv, own process group, timeout, in order). It logs one event per change
and tells its subscribers (``subscribe``) the same as ``ipvs.pool`` events:

- ``pool.server_down`` / ``pool.server_up``: service, server, cause (``check``), reason;
- ``pool.quorum_lost`` / ``pool.quorum_gained``: service, live_weight, quorum, hysteresis,
  threshold, sorry_server (the sorry server going in or out, or null).

A server that comes back (its check recovers, or it is undrained) in a service with
``slow_start`` climbs to its weight in steps (ipvs/pool.py ``SlowStart``; logged as
``pool.slow_start``): ``run`` hands IPVS each next weight when it is due.

Start (and a reload adding services) is deterministic: a service's quorum is first
decided once each of its servers has a first check result (``start`` and ``update`` are
given the servers whose checks have none yet; ``on_probed`` is told as each gets one), or
at once for a service whose servers have no check. Until then it is pending (ipvs/pool.py):
no ``pool.quorum_*`` event, no command, no sorry server, and it counts as having quorum.

Whether any service has quorum is a VRRP tracking input (``track_quorum``): ``on_quorum``
is called when it changes.

Drained servers (``drain``, from the control socket's ``drain`` / ``undrain``) are kept at
weight 0 and count nothing towards quorum; the set is written to ``<state_dir>/drained.json``
at each change and read back at start, so it survives reloads and restarts. A drain logs
``pool.drain`` / ``pool.undrain`` (service, server), and ``pool.server_down`` /
``pool.server_up`` with cause ``drain`` when the server really leaves or rejoins rotation
(not when its check holds it down anyway). A check change of a drained server still runs
its ``notify_*`` command but is no rotation change: no ``pool.server_*`` event.

Decisions are ipvs/pool.py's; this module gathers inputs and performs what it answers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from hadirector import logs
from hadirector.alerts import notify
from hadirector.checks.risefall import Change
from hadirector.config.schema import Config, RealServer, VirtualServer
from hadirector.ipvs import model, pool
from hadirector.ports import IpvsPort

Pair = pool.Pair
DRAINED_FILE = "drained.json"
Subscriber = Callable[[pool.PoolEvent], None]


class PoolKeeper:
    """Quorum, sorry servers, drained servers and per-server hooks of every service."""

    def __init__(
        self,
        config: Config,
        ipvs: IpvsPort,
        notifier: notify.NotifyRunner,
        on_quorum: Callable[[bool], None],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.ipvs = ipvs
        self.notifier = notifier
        self.on_quorum = on_quorum
        self.core = pool.Pools()
        self.slow = pool.SlowStart()
        self.clock = clock or trio.current_time
        self._wake = trio.Event()
        self.down: set[Pair] = set()
        self.drained: set[Pair] = set()
        self.weights: dict[Pair, int] = {}  # set by dynamic-weight script checks
        self.subscribers: list[Subscriber] = []
        self.log = logs.get(component="pools")
        self._servers = _servers_of(config)
        self._groups = _groups_of(config)
        self._any_quorum = True
        # Servers without a first check result, by the pending service they hold back.
        self._unsettled: dict[model.ServiceKey, set[model.DestKey]] = {}

    def subscribe(self, callback: Subscriber) -> None:
        """Be told of every pool event (``pool.ServerChange``, ``pool.QuorumChange``)."""
        self.subscribers.append(callback)

    def _emit(self, event: pool.PoolEvent) -> None:
        for callback in list(self.subscribers):
            try:
                callback(event)
            except Exception as exc:  # a subscriber's bug must not stop the pools
                self.log.error("pool.subscriber_failed", error=repr(exc))

    # -- inputs -----------------------------------------------------------------------

    def start(self, down: set[Pair], unsettled: set[Pair] | None = None) -> None:
        """The servers that start down (``alpha``) and those drained before a restart:
        evaluated before the first reconcile. ``unsettled``: the servers whose checks have
        no result yet (their services' quorum waits for them)."""
        self.down = set(down)
        self.drained = self._load_drained()
        self._hold(unsettled or set())
        self._evaluate()

    def _hold(self, unsettled: set[Pair]) -> None:
        """Services not decided yet wait for these servers' first check results."""
        self._unsettled = {}
        for service, server in unsettled:
            if service not in self.core.up:
                self._unsettled.setdefault(service, set()).add(server)

    def on_probed(self, key: Pair) -> None:
        """Every check of a server has its first result (the health checker's
        ``on_probed``): a service waiting for nothing else is decided now."""
        settled = False
        for member in self._groups.get(key[0], (key[0],)):
            waiting = self._unsettled.get(member)
            if waiting is not None and key[1] in waiting:
                waiting.discard(key[1])
                if not waiting:
                    del self._unsettled[member]
                    settled = True
        if settled:
            self._evaluate()

    def drain(self, service: str, server: str, drained: bool) -> tuple[bool, str]:
        """The operator drains (or undrains) one real server of one service: (done, what
        happened or why not)."""
        found = pool.find_server(self.config.virtual_servers, service, server)
        if isinstance(found, str):
            return False, found
        skey, dkey = found
        word = "drained" if drained else "undrained"
        if (found in self.drained) == drained:
            return True, f"{skey} {dkey} was already {word}"
        # A server of a virtual_server_group is drained in every service of the group.
        pairs = [(member, dkey) for member in self._groups.get(skey, (skey,))]
        found = pairs[0]
        for pair in pairs:
            if drained:
                self.drained.add(pair)
                self.slow.cancel(pair)
            else:
                self.drained.discard(pair)
                if pair not in self.down:
                    self._begin_slow_start(pair)
        saved = self._save_drained()
        self.log.warning(
            "pool.drain" if drained else "pool.undrain",
            service=str(skey),
            server=str(dkey),
            saved=saved,
        )
        if found not in self.down:  # a server its check holds down stays out either way
            self._server_event(found, not drained, "drain", f"{word} by the operator", False)
        self._evaluate()
        text = f"{word} {skey} {dkey}"
        if not saved:
            text += f" (not saved to {self._drained_path()}: lost at restart)"
        return True, text

    def set_down(self, down: set[Any]) -> None:
        """The failed servers, from the health checker."""
        self.down = set(down)
        self._evaluate()

    def update(self, config: Config, unsettled: set[Pair] | None = None) -> None:
        """A reload: servers no longer configured are forgotten, quorum re-evaluated; a
        service it adds waits for its ``unsettled`` servers' first check results."""
        self.config = config
        self._hold(unsettled or set())
        self._servers = _servers_of(config)
        self._groups = _groups_of(config)
        self.slow.forget(set(self._servers))
        self.weights = {p: w for p, w in self.weights.items() if p in self._servers}
        kept = self.drained & set(self._servers)
        if kept != self.drained:
            self.drained = kept
            self._save_drained()
        self._evaluate()

    def on_check_change(self, key: Pair, spec: Any, change: Change) -> None:
        """One check changed state: the server's command and the event."""
        service, server = key
        found = self._servers.get(key)
        argv = None
        if found is not None:
            argv = found[1].notify_up if change.up else found[1].notify_down
        if argv is not None:
            word = "up" if change.up else "down"
            what = f"real_server {server} of {service} {word}"
            self.notifier.submit(
                [notify.NotifyJob(argv, what, self.config.global_.notify_timeout_s)]
            )
        if key not in self.drained:  # a drained server is out of rotation either way
            self._server_event(key, change.up, "check", change.reason, argv is not None)
            if change.up:
                self._begin_slow_start(key)
        if not change.up:
            self.slow.cancel(key)

    def on_check_weight(self, key: Pair, spec: Any, weight: int | None) -> None:
        """A dynamic-weight script set the server's weight (None: back to configured)."""
        for member in self._groups.get(key[0], (key[0],)):
            pair = (member, key[1])
            if weight is None:
                self.weights.pop(pair, None)
            else:
                self.weights[pair] = weight
        self._evaluate()

    def _begin_slow_start(self, key: Pair) -> None:
        found = self._servers.get(key)
        if found is None:
            return
        vs, rs = found
        if vs.slow_start_s <= 0 or rs.weight <= 1:
            return
        if self.slow.begin(key, self.clock(), rs.weight, vs.slow_start_s):
            self.log.info(
                "pool.slow_start",
                service=str(key[0]),
                server=str(key[1]),
                weight=rs.weight,
                seconds=vs.slow_start_s,
            )

    def _server_event(self, key: Pair, up: bool, cause: str, reason: str, queued: bool) -> None:
        service, server = key
        emit = self.log.info if up else self.log.warning
        emit(
            "pool.server_up" if up else "pool.server_down",
            service=str(service),
            server=str(server),
            cause=cause,
            reason=reason,
            notify=queued,
        )
        self._emit(pool.ServerChange(service, server, up, cause, reason))

    # -- drained servers on disk ------------------------------------------------------

    def _drained_path(self) -> Path:
        return Path(self.config.global_.state_dir) / DRAINED_FILE

    def _save_drained(self) -> bool:
        """Write the drained set (atomically); False when it could not be written."""
        path = self._drained_path()
        pairs = sorted([str(s), str(d)] for s, d in self.drained)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"drained": pairs}) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            self.log.error("pool.drain_save_failed", path=str(path), error=str(exc))
            return False
        return True

    def _load_drained(self) -> set[Pair]:
        """The drained set a previous run left; entries no longer configured are dropped."""
        path = self._drained_path()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            self.log.error("pool.drain_load_failed", path=str(path), error=str(exc))
            return set()
        pairs = data.get("drained") if isinstance(data, dict) else None
        out: set[Pair] = set()
        for item in pairs if isinstance(pairs, list) else []:
            if not (
                isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
            ):
                continue
            found = pool.find_server(self.config.virtual_servers, item[0], item[1])
            if isinstance(found, str):
                self.log.warning(
                    "pool.drain_forgotten", service=item[0], server=item[1], reason=found
                )
            else:
                out.add(found)
        if out:
            self.log.warning("pool.drained_at_start", servers=sorted(f"{s} {d}" for s, d in out))
        return out

    async def run(self) -> None:
        """Hand IPVS each slow-starting server's next weight when it is due."""
        while True:
            deadline = self.slow.next_deadline(self.clock())
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = trio.Event()
            else:
                self._evaluate()

    # -- evaluation -------------------------------------------------------------------

    def _evaluate(self) -> None:
        services = self.config.virtual_servers
        unsettled = {(s, d) for s, servers in self._unsettled.items() for d in servers}
        changes = self.core.update(services, self.down | self.drained, self.weights, unsettled)
        by_key = {model.service_key_of(vs): vs for vs in services}
        for change in changes:
            vs = by_key[change.service]
            members = self._groups.get(change.service)
            if members is not None and change.service != members[0]:
                continue  # a group's services share one pool: said once, for the first
            self._quorum_change(vs, change)
        self.ipvs.set_health(
            set(self.down),
            drained=frozenset(self.drained),
            lost=self.core.lost,
            ramp=self.slow.weights(self.clock()) if self.slow.started else {},
            weights=dict(self.weights),
        )
        self._wake.set()
        any_quorum = self.core.any_quorum()
        if any_quorum != self._any_quorum:
            self._any_quorum = any_quorum
            self.on_quorum(any_quorum)

    def _quorum_change(self, vs: VirtualServer, change: pool.QuorumChange) -> None:
        sorry = None
        if vs.sorry_server is not None:
            sorry_key = pool.sorry_dest(vs)
            assert sorry_key is not None
            sorry = str(sorry_key[0])
        emit = self.log.info if change.up else self.log.warning
        emit(
            "pool.quorum_gained" if change.up else "pool.quorum_lost",
            service=str(change.service),
            live_weight=change.live_weight,
            quorum=change.quorum,
            hysteresis=change.hysteresis,
            threshold=change.threshold,
            sorry_server=sorry,
            group=vs.group,
        )
        argv = vs.quorum_up if change.up else vs.quorum_down
        if argv is not None:
            what = f"virtual_server {change.service} quorum {'up' if change.up else 'down'}"
            self.notifier.submit(
                [notify.NotifyJob(argv, what, self.config.global_.notify_timeout_s)]
            )
        self._emit(change)

    @property
    def any_quorum(self) -> bool:
        return self._any_quorum

    def drained_names(self) -> tuple[str, ...]:
        """The drained servers as ``"service server"``, sorted (for the status)."""
        return tuple(sorted(f"{s} {d}" for s, d in self.drained))

    def lost_names(self) -> tuple[str, ...]:
        """The services without quorum, sorted (for the status)."""
        return tuple(sorted(str(k) for k in self.core.lost))


def _groups_of(config: Config) -> dict[model.ServiceKey, tuple[model.ServiceKey, ...]]:
    """Each service of a virtual_server_group -> every service of the group, in order."""
    members: dict[str, list[model.ServiceKey]] = {}
    for vs in config.virtual_servers:
        if vs.group is not None:
            members.setdefault(vs.group, []).append(model.service_key_of(vs))
    return {key: tuple(keys) for keys in members.values() for key in keys}


def _servers_of(config: Config) -> dict[Pair, tuple[VirtualServer, RealServer]]:
    """Every (service, real server) pair of a configuration, with its configuration."""
    out: dict[Pair, tuple[VirtualServer, RealServer]] = {}
    for vs in config.virtual_servers:
        skey = model.service_key_of(vs)
        for rs in vs.real_servers:
            out[(skey, model.dest_key_of(vs, rs))] = (vs, rs)
    return out
