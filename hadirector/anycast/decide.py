"""Which anycast addresses a director announces, and why (not): the pure decision.

An address is announced while every ``anycast = true`` virtual server on it has at least
``anycast_min_servers`` live real servers. A real server is live when its configured
weight is above 0 and, if it is checked, its check says up (rise/fall) and has succeeded
at least once since the agent started it (a server whose first probes fail is not live
even while its hysteresis has not fallen yet). Nothing is announced before the first
check round has decided (every check probed once) nor while the agent stops.

Inputs come in as values (the configuration, the failed and the unproven checks, two
flags); the result is one ``Verdict`` per address, in address order. Pure: no I/O, no
clock, standard library and the pure core only.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from hadirector.config.schema import Config, IPAddress, VirtualServer
from hadirector.ipvs import model

CheckKey = tuple[model.ServiceKey, model.DestKey]


@dataclass(frozen=True)
class Verdict:
    """One address: announce it or not, and a one-line reason an operator can read."""

    address: IPAddress
    announce: bool
    reason: str


def live_servers(vs: VirtualServer, down: Set[CheckKey], unproven: Set[CheckKey]) -> int:
    """How many of ``vs``'s real servers can take traffic now."""
    skey = model.service_key_of(vs)
    live = 0
    for rs in vs.real_servers:
        if rs.weight <= 0:
            continue
        key = (skey, model.dest_key_of(vs, rs))
        if rs.check is not None and (key in down or key in unproven):
            continue
        live += 1
    return live


def decide(
    config: Config,
    down: Set[CheckKey],
    unproven: Set[CheckKey],
    *,
    first_round_done: bool,
    stopping: bool,
) -> tuple[Verdict, ...]:
    """The verdict for every anycast address of ``config``.

    ``down``: checks whose hysteresis says down; ``unproven``: checks without a success
    yet; ``first_round_done``: every check present at start has probed once;
    ``stopping``: the agent is withdrawing before it exits."""
    services: dict[IPAddress, list[VirtualServer]] = {}
    for vs in config.anycast_servers:
        assert vs.address is not None  # the loader allows anycast on address services only
        services.setdefault(vs.address, []).append(vs)
    verdicts: list[Verdict] = []
    for address in sorted(services, key=lambda a: (a.version, int(a))):
        if stopping:
            verdicts.append(Verdict(address, False, "stopping: withdrawn before exit"))
            continue
        if not first_round_done:
            verdicts.append(Verdict(address, False, "starting: first check round not decided"))
            continue
        short: list[str] = []
        parts: list[str] = []
        for vs in sorted(services[address], key=lambda v: model.service_key_of(v).sort_key()):
            live = live_servers(vs, down, unproven)
            text = (
                f"{model.service_key_of(vs)}: {live} of {len(vs.real_servers)} "
                f"real servers up, needs {vs.anycast_min_servers}"
            )
            parts.append(text)
            if live < vs.anycast_min_servers:
                short.append(text)
        if short:
            verdicts.append(Verdict(address, False, "; ".join(short)))
        else:
            verdicts.append(Verdict(address, True, "; ".join(parts)))
    return tuple(verdicts)
