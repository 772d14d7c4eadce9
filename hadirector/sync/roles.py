"""Which kernel sync daemons should run, and the stop/start steps that get there.

Connection sync follows the VRRP state that decides it (one instance, or a sync group), as
keepalived's ``lvs_sync_daemon`` does: a director that is not master (starting, BACKUP,
FAULT) runs the *backup* daemon and receives the master's connection table; the master runs
the *master* daemon and sends; a stopped agent runs neither. On every change the daemon of
the old role is stopped before the one of the new role is started. With ``both`` (anycast
directors, no VRRP) the master and the backup daemon run together until the agent stops.

``plan`` compares what the kernel reports running with what is wanted and returns the
minimal steps: a daemon running with other parameters (interface, sync id, multicast
group/port/TTL, a configured message size) is stopped and started again, so a restart that
finds the right daemon already running (left by a crashed run) does nothing.

This module is part of the pure core: no I/O, no clock, stdlib and hadirector's pure types
only. It must not talk to the kernel (sync/daemon.py does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from hadirector.config.schema import SyncDaemonSettings
from hadirector.ipvs.types import SyncDaemon, SyncState

__all__ = ["Start", "Stop", "desired", "matches", "plan", "role_for"]


@dataclass(frozen=True)
class Start:
    """Start one daemon (``sync_maxlen`` 0: the kernel's choice)."""

    spec: SyncDaemon


@dataclass(frozen=True)
class Stop:
    """Stop the daemon of one role; ``reason`` says why (for the log)."""

    state: SyncState
    reason: str


Step = Start | Stop


def role_for(vrrp_state: str | None) -> SyncState | None:
    """The daemon role for a VRRP state value (None: not known yet, treated as backup).

    MASTER sends; INIT, BACKUP and FAULT receive; STOPPED runs no daemon.
    """
    if vrrp_state == "MASTER":
        return SyncState.MASTER
    if vrrp_state == "STOPPED":
        return None
    return SyncState.BACKUP


def desired(settings: SyncDaemonSettings | None, vrrp_state: str | None) -> tuple[SyncDaemon, ...]:
    """The daemons that should run for ``settings`` when the deciding state is ``vrrp_state``."""
    if settings is None:
        return ()
    if settings.both:  # anycast directors: send and receive, whatever VRRP says
        return tuple(_spec(settings, role) for role in (SyncState.MASTER, SyncState.BACKUP))
    role = role_for(vrrp_state)
    if role is None:
        return ()
    return (_spec(settings, role),)


def _spec(settings: SyncDaemonSettings, role: SyncState) -> SyncDaemon:
    return SyncDaemon(
        state=role,
        ifname=settings.interface,
        syncid=settings.syncid,
        sync_maxlen=settings.maxlen,
        mcast_group=str(settings.mcast_group),
        mcast_port=settings.mcast_port,
        mcast_ttl=settings.mcast_ttl,
    )


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def matches(running: SyncDaemon, spec: SyncDaemon) -> bool:
    """True when the running daemon is the one ``spec`` describes (a ``sync_maxlen`` of 0
    in ``spec`` accepts whatever size the kernel chose)."""
    return (
        running.state is spec.state
        and running.ifname == spec.ifname
        and running.syncid == spec.syncid
        and (spec.sync_maxlen == 0 or running.sync_maxlen == spec.sync_maxlen)
        and _same_address(running.mcast_group, spec.mcast_group)
        and running.mcast_port == spec.mcast_port
        and running.mcast_ttl == spec.mcast_ttl
    )


def plan(running: Iterable[SyncDaemon], wanted: Iterable[SyncDaemon]) -> list[Step]:
    """Steps from ``running`` to ``wanted``: every stop first, then every start.

    Stops come first so that a role change never has both roles running on the way, and a
    daemon whose parameters changed is free to start again. Steps are ordered by role
    (master first) so that the plan does not depend on the kernel's listing order.
    """
    wanted_by_state = {spec.state: spec for spec in wanted}
    stops: list[Step] = []
    kept: set[SyncState] = set()
    for daemon in sorted(running, key=lambda d: d.state):
        spec = wanted_by_state.get(daemon.state)
        if spec is None:
            stops.append(Stop(daemon.state, "role not wanted"))
        elif not matches(daemon, spec):
            stops.append(Stop(daemon.state, "parameters changed"))
        else:
            kept.add(daemon.state)
    starts: list[Step] = [
        Start(spec) for state, spec in sorted(wanted_by_state.items()) if state not in kept
    ]
    return stops + starts
