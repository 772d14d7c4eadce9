"""A status snapshot and metric pages with every family the agent writes, for the metrics
tests and the monitoring tests (rules and dashboard name only exported metrics)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from hadirector.alerts.dispatch import Alerts
from hadirector.checks import probes
from hadirector.checks.runner import HealthChecker
from hadirector.config.load import load_text
from hadirector.ipvs import model, pool
from hadirector.ipvs.model import Dest, DestKey, ServiceKey
from hadirector.ipvs.types import DestState, ServiceTraffic, Stats
from hadirector.metrics import render, runtime_metrics
from hadirector.status import (
    AgentStatus,
    InstanceStatus,
    IpvsStatus,
    NotifyStatus,
    SyncGroupStatus,
)


def status_report() -> AgentStatus:
    """A snapshot as the agent builds it: one master instance, one group, IPVS."""
    return AgentStatus(
        router_id="dir-a",
        version="0.1.0",
        pid=4242,
        uptime_s=12.5,
        stopping=False,
        instances=(
            InstanceStatus(
                name="VI_1",
                state="MASTER",
                interface="eth0",
                vrid=51,
                version=3,
                family=4,
                unicast=False,
                source="192.0.2.1",
                priority=150,
                effective_priority=140,
                advert_interval_cs=100,
                master_adver_interval_cs=100,
                vips=("192.0.2.100/24",),
                vips_held=("192.0.2.100/24",),
                fault_reasons=(),
                counters={
                    "adverts_sent": 30,
                    "adverts_accepted": 2,
                    "rejected_checksum": 3,
                    "rejected_ttl": 1,
                    "to_backup": 1,
                    "to_master": 1,
                    "announcements": 10,
                },
                machine_counters={},
            ),
        ),
        sync_groups=(SyncGroupStatus("G", "MASTER", {"VI_1": "MASTER"}),),
        ipvs=IpvsStatus(
            available=True,
            configured_services=1,
            services=("tcp 192.0.2.100:80",),
            refused=(),
            last_reconcile_age_s=None,
            counters={"reconciles": 4, "writes": 3, "errors": 0},
        ),
        notify=NotifyStatus(pending=0, failures=2),
    )


RS_CONFIG = """
[[virtual_server]]
address = "192.0.2.10:80"
[virtual_server.check]
type = "tcp"
interval = 1
rise = 1
fall = 1
[[virtual_server.real_server]]
address = "10.0.0.5:80"
weight = 5
[[virtual_server.real_server]]
address = "10.0.0.6:80"
weight = 7
"""


class TrafficRead:
    """What ``IpvsManager.traffic()`` answers after reading the kernel: one service, two
    destinations, with the kernel's counters."""

    def traffic(self) -> dict[Any, ServiceTraffic]:
        skey = ServiceKey(4, 6, "192.0.2.10", 80, 0)
        return {
            skey: ServiceTraffic(
                Stats(40, 200, 160, 12000, 96000),
                (
                    DestState(
                        DestKey("10.0.0.5", 80),
                        Dest(weight=1),
                        2,
                        8,
                        0,
                        Stats(10, 50, 40, 3000, 24000),
                    ),
                    DestState(
                        DestKey("10.0.0.6", 80),
                        Dest(weight=3),
                        5,
                        25,
                        0,
                        Stats(30, 150, 120, 9000, 72000),
                    ),
                ),
            )
        }


def probed_page(
    config_text: str = RS_CONFIG,
    alerts_text: str = "",
    sync: Any = None,
    ipvs: Any = None,
    pools: Any = None,
) -> str:
    """The page of a checker run on the mock clock until both servers were probed twice:
    10.0.0.5 fails (refused, then a timeout), 10.0.0.6 passes; every probe takes 3 ms."""
    config = load_text(config_text)
    done = trio.Event()
    probed: dict[str, int] = {}

    async def prober(_check: Any, address: Any, _port: Any) -> probes.ProbeResult:
        n = probed[str(address)] = probed.get(str(address), 0) + 1
        await trio.sleep(0.003)
        if len(probed) == 2 and all(v >= 2 for v in probed.values()):
            done.set()
        if str(address) == "10.0.0.5":
            return probes.ProbeResult(False, "connect refused" if n == 1 else "timeout 1.0 s")
        return probes.ProbeResult(True, "ok")

    page = ""

    async def main() -> None:
        nonlocal page
        checker = HealthChecker(config, lambda _down: None, prober=prober)
        alerts = Alerts(load_text(alerts_text).alerts, "dir-a")
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await done.wait()
            page = render(
                status_report(), runtime_metrics(config, checker, alerts, sync, ipvs, pools)
            )
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return page


ALERTS_TEXT = """
[alerts.email]
to = "ops@example.org"
from = "dir-a@example.org"
server = "127.0.0.1:25"
[alerts.webhook]
url = "http://127.0.0.1:1/hook"
"""


def exported_page() -> str:
    """A page with every family the agent writes: VRRP, IPVS, notify, real servers and
    checks, alerts (email and webhook), the sync daemons, the IPVS traffic counters."""
    from hadirector.sync.daemon import SyncDaemons

    text = (
        RS_CONFIG
        + '[[vrrp_instance]]\nname = "web"\ninterface = "eth0"\nvrid = 1\npriority = 100\n'
        + 'virtual_addresses = ["192.0.2.1/24"]\n[ipvs.sync]\ninterface = "eth1"\n'
    )
    sync = SyncDaemons(load_text(text))
    sync.on_instance("web", "MASTER")
    return probed_page(text, ALERTS_TEXT, sync, TrafficRead(), PoolsRead(text))


class PoolsRead:
    """What the metrics read of the agent's pool keeper (agent/pools.py): the quorum state
    of the pure core, with 10.0.0.5 out and drained."""

    def __init__(self, config_text: str) -> None:
        config = load_text(config_text)
        vs = config.virtual_servers[0]
        out = {(vs.key, model.dest_key_of(vs, rs)) for rs in vs.real_servers[:1]}
        self.core = pool.Pools()
        self.core.update(config.virtual_servers, out)
        self.drained = out
