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

Whether any service has quorum is a VRRP tracking input (``track_quorum``): ``on_quorum``
is called when it changes.

Decisions are ipvs/pool.py's; this module gathers inputs and performs what it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hadirector import logs
from hadirector.alerts import notify
from hadirector.checks.risefall import Change
from hadirector.config.schema import Config, RealServer, VirtualServer
from hadirector.ipvs import model, pool
from hadirector.ports import IpvsPort

Pair = pool.Pair
Subscriber = Callable[[pool.PoolEvent], None]


class PoolKeeper:
    """Quorum, sorry servers, drained servers and per-server hooks of every service."""

    def __init__(
        self,
        config: Config,
        ipvs: IpvsPort,
        notifier: notify.NotifyRunner,
        on_quorum: Callable[[bool], None],
    ) -> None:
        self.config = config
        self.ipvs = ipvs
        self.notifier = notifier
        self.on_quorum = on_quorum
        self.core = pool.Pools()
        self.down: set[Pair] = set()
        self.drained: set[Pair] = set()
        self.subscribers: list[Subscriber] = []
        self.log = logs.get(component="pools")
        self._servers = _servers_of(config)
        self._any_quorum = True

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

    def start(self, down: set[Pair]) -> None:
        """The servers that start down (``alpha``): evaluated before the first reconcile."""
        self.down = set(down)
        self._evaluate()

    def set_down(self, down: set[Any]) -> None:
        """The failed servers, from the health checker."""
        self.down = set(down)
        self._evaluate()

    def update(self, config: Config) -> None:
        """A reload: servers no longer configured are forgotten, quorum re-evaluated."""
        self.config = config
        self._servers = _servers_of(config)
        self.drained &= set(self._servers)
        self._evaluate()

    def on_check_change(self, key: Pair, spec: Any, change: Change) -> None:
        """One check changed state: the server's command and the event."""
        service, server = key
        found = self._servers.get(key)
        argv = None
        if found is not None:
            argv = found[1].notify_up if change.up else found[1].notify_down
        emit = self.log.info if change.up else self.log.warning
        emit(
            "pool.server_up" if change.up else "pool.server_down",
            service=str(service),
            server=str(server),
            cause="check",
            reason=change.reason,
            notify=argv is not None,
        )
        if argv is not None:
            word = "up" if change.up else "down"
            what = f"real_server {server} of {service} {word}"
            self.notifier.submit(
                [notify.NotifyJob(argv, what, self.config.global_.notify_timeout_s)]
            )
        self._emit(pool.ServerChange(service, server, change.up, "check", change.reason))

    # -- evaluation -------------------------------------------------------------------

    def _evaluate(self) -> None:
        services = self.config.virtual_servers
        changes = self.core.update(services, self.down | self.drained)
        by_key = {model.service_key_of(vs): vs for vs in services}
        for change in changes:
            vs = by_key[change.service]
            self._quorum_change(vs, change)
        self.ipvs.set_health(set(self.down), drained=frozenset(self.drained), lost=self.core.lost)
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


def _servers_of(config: Config) -> dict[Pair, tuple[VirtualServer, RealServer]]:
    """Every (service, real server) pair of a configuration, with its configuration."""
    out: dict[Pair, tuple[VirtualServer, RealServer]] = {}
    for vs in config.virtual_servers:
        skey = model.service_key_of(vs)
        for rs in vs.real_servers:
            out[(skey, model.dest_key_of(vs, rs))] = (vs, rs)
    return out
