"""From the agent's objects to alert events and conditions (alerts/events.py, dispatch.py).

The agent calls these on a transition, a sync group settling, a real server's check
changing, and after a reload; they read the agent's state (instances, groups, the
checker) and return immediately, leaving delivery to dispatch.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from hadirector.alerts.dispatch import Condition
from hadirector.alerts.events import Event, Peer
from hadirector.ipvs.model import dest_key_of

if TYPE_CHECKING:
    from hadirector.agent.instance import Instance
    from hadirector.agent.supervisor import Agent

INSTANCE_FAULT = "HadirectorInstanceFault"
GROUP_FAULT = "HadirectorSyncGroupFault"
SERVER_DOWN = "HadirectorRealServerDown"
QUORUM_LOST = "HadirectorQuorumLost"


def _now_states(agent: Agent) -> tuple[str, ...]:
    out = [f"{n}={i.state.value}" for n, i in sorted(agent.instances.items())]
    for name, group in sorted(agent.groups.items()):
        if group.settled is not None:
            out.append(f"group {name}={group.settled.value}")
    return tuple(out)


def instance_event(
    agent: Agent, inst: Instance, old: str, new: str, reason: str, priority: int | None
) -> Event:
    cfg = inst.cfg
    now = agent.alerts.wall()
    peer = None
    if inst.last_peer is not None:
        src, prio, heard = inst.last_peer
        peer = Peer(str(src), prio, max(0.0, trio.current_time() - heard))
    where: tuple[tuple[str, str], ...] = (
        ("interface", cfg.interface),
        ("VRID", str(cfg.vrid)),
        ("VIPs", " ".join(str(v.interface) for v in cfg.virtual_addresses)),
        ("priority", f"{priority if priority is not None else 0} (configured {cfg.priority})"),
    )
    group = agent.group_of.get(cfg.name)
    if group is not None:
        where += (("sync group", group),)
    return Event(
        kind="instance",
        name=cfg.name,
        old=old,
        new=new,
        reason=reason,
        director=agent.alerts.director,
        at=now,
        since_s=agent.alerts.since("instance", cfg.name, now),
        where=where,
        peer=peer,
        now=_now_states(agent),
        smtp_alert=cfg.smtp_alert,
    )


def group_event(agent: Agent, name: str, old: str | None, new: str) -> Event:
    gcfg = next((g for g in agent.config.sync_groups if g.name == name), None)
    now = agent.alerts.wall()
    members = " ".join(gcfg.instances) if gcfg is not None else ""
    return Event(
        kind="group",
        name=name,
        old=old or "INIT",
        new=new,
        reason="every member settled" if new != "FAULT" else "a member is in FAULT",
        director=agent.alerts.director,
        at=now,
        since_s=agent.alerts.since("group", name, now),
        where=(("members", members),),
        now=_now_states(agent),
        smtp_alert=gcfg.smtp_alert if gcfg is not None else True,
    )


def server_event(
    agent: Agent, service: str, server: str, up: bool, cause: str, reason: str
) -> Event:
    """A real server left (``up`` False) or rejoined rotation; ``cause`` is ``check`` (its
    health check) or ``drain`` (the operator)."""
    now = agent.alerts.wall()
    name = f"{service} {server}"
    vs = next((v for v in agent.config.virtual_servers if str(v.key) == service), None)
    how = ("cause", cause)
    if cause == "check" and vs is not None:
        rs = next((r for r in vs.real_servers if str(dest_key_of(vs, r)) == server), None)
        if rs is not None and rs.check is not None:
            how = ("check", rs.check.type)
    return Event(
        kind="real_server",
        name=name,
        old="DOWN" if up else "UP",
        new="UP" if up else "DOWN",
        reason=reason,
        director=agent.alerts.director,
        at=now,
        since_s=agent.alerts.since("real_server", name, now),
        where=(("service", service), ("server", server), how),
        now=_now_states(agent),
        smtp_alert=vs.smtp_alert if vs is not None else True,
    )


def quorum_event(agent: Agent, service: str, up: bool, live_weight: int, quorum: int) -> Event:
    """A virtual service gained (``up``) or lost quorum (the pool keeper decides)."""
    now = agent.alerts.wall()
    if up:
        agent.alerts.quorum_lost.pop(service, None)
    else:
        agent.alerts.quorum_lost[service] = (live_weight, quorum)
    vs = next((v for v in agent.config.virtual_servers if str(v.key) == service), None)
    return Event(
        kind="service",
        name=service,
        old="QUORUM LOST" if up else "QUORUM",
        new="QUORUM" if up else "QUORUM LOST",
        reason=f"live weight {live_weight}, quorum {quorum}",
        director=agent.alerts.director,
        at=now,
        since_s=agent.alerts.since("service", service, now),
        where=(("service", service),),
        now=_now_states(agent),
        smtp_alert=vs.smtp_alert if vs is not None else True,
    )


def quorum_conditions(agent: Agent) -> list[Condition]:
    """The configured services without quorum here."""
    configured = {str(v.key) for v in agent.config.virtual_servers}
    out = []
    for service, (live, quorum) in sorted(agent.alerts.quorum_lost.items()):
        if service not in configured:
            continue
        out.append(
            Condition(
                QUORUM_LOST,
                (("service", service),),
                f"virtual service {service} lost quorum on {agent.alerts.director}",
                f"The live weight of {service}'s real servers is {live}, below its quorum "
                f"{quorum}: its sorry server (if any) answers instead.",
            )
        )
    return out


def instance_conditions(agent: Agent) -> tuple[list[Condition], list[Condition]]:
    """The instances and groups in FAULT here: they cannot take over."""
    insts = []
    for name, inst in sorted(agent.instances.items()):
        if inst.state.value != "FAULT":
            continue
        reasons = ", ".join(agent._fault_reasons(inst)) or "fault"
        insts.append(
            Condition(
                INSTANCE_FAULT,
                (("vrrp_instance", name), ("interface", inst.cfg.interface)),
                f"VRRP instance {name} is in FAULT on {agent.alerts.director}",
                f"{name} (VRID {inst.cfg.vrid} on {inst.cfg.interface}) cannot take over here: "
                f"{reasons}. If the peer fails too, nobody holds its addresses.",
            )
        )
    groups = []
    for name, group in sorted(agent.groups.items()):
        if group.settled is not None and group.settled.value == "FAULT":
            groups.append(
                Condition(
                    GROUP_FAULT,
                    (("sync_group", name),),
                    f"sync group {name} is in FAULT on {agent.alerts.director}",
                    f"A member of {name} is in FAULT: the group cannot take over here.",
                )
            )
    return insts, groups


def server_conditions(agent: Agent, down: set[Any]) -> list[Condition]:
    """The real servers whose checks fail, by (service key, destination key)."""
    out = []
    for skey, dkey in sorted(down, key=lambda k: (str(k[0]), str(k[1]))):
        service, server = str(skey), str(dkey)
        out.append(
            Condition(
                SERVER_DOWN,
                (("service", service), ("real_server", server)),
                f"real server {server} of {service} is down",
                f"The health check of {server} in {service} fails on "
                f"{agent.alerts.director}: it is out of rotation.",
                severity="warning",
            )
        )
    return out
