"""A status snapshot as the agent builds it, for the tests of the snapshot's wire form and of
the CLI that prints it: one instance in FAULT, a group, IPVS, checks, notify."""

from __future__ import annotations

from hadirector.status import (
    AgentStatus,
    ChecksStatus,
    InstanceStatus,
    IpvsStatus,
    NotifyStatus,
    SyncGroupStatus,
)


def snapshot() -> AgentStatus:
    return AgentStatus(
        router_id="dir-a",
        version="0.1.0",
        pid=4242,
        uptime_s=12.5,
        stopping=False,
        instances=(
            InstanceStatus(
                name="VI_1",
                state="FAULT",
                interface="eth0",
                vrid=51,
                version=3,
                family=4,
                unicast=False,
                source=None,
                priority=150,
                effective_priority=None,
                advert_interval_cs=100,
                master_adver_interval_cs=None,
                vips=("192.0.2.100/24",),
                vips_held=(),
                fault_reasons=("link down",),
                counters={"to_fault": 1, "adverts_sent": 3, "rejected_ttl": 2},
                machine_counters={"split_brain_won": 1},
            ),
        ),
        sync_groups=(SyncGroupStatus("G", None, {"VI_1": "FAULT"}),),
        ipvs=IpvsStatus(True, 1, ("tcp 192.0.2.100:80",), (), 0.5, {"reconciles": 1}),
        checks=ChecksStatus(2, ("tcp 192.0.2.100:80 10.0.0.1:80",)),
        notify=NotifyStatus(0, 1),
    )
