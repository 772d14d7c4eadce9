"""What the agent hands its alerts (alerts/wiring.py) when real things happen: the events of
a takeover after the master dies (with the peer's last advert), a sync group's change, the
conditions of an instance in FAULT, and a real server's check going down and up.

The agents run on the lab's fakes in virtual time; what they hand to ``Alerts`` is recorded
as it is handed (delivery itself is tested against real servers in test_alerts_email.py and
test_alerts_http.py).
"""

from __future__ import annotations

import trio
import trio.testing

from hadirector.alerts import wiring
from hadirector.alerts.dispatch import Condition
from hadirector.alerts.events import Event
from hadirector.checks import probes
from hadirector.checks.risefall import Change
from hadirector.checks.runner import CheckKey, CheckSpec, HealthChecker
from hadirector.config.load import load_text
from hadirector.config.schema import HealthCheck, IPAddress
from hadirector.ipvs.model import dest_key_of
from hadirector.vrrp.timers import master_down_interval_s
from tests.agent.fakes import Lab, Running, instance_toml, pair, run_lab
from tests.agent.helpers import sync_config, sync_hosts


class Recorder:
    def __init__(self, running: Running) -> None:
        self.events: list[Event] = []
        self.conditions: dict[str, list[Condition]] = {}
        alerts = running.agent.alerts
        alerts.event = self.events.append  # type: ignore[method-assign]
        alerts.set_conditions = self._set  # type: ignore[method-assign]

    def _set(self, name: str, conditions: list[Condition]) -> None:
        self.conditions[name] = conditions


def test_a_takeover_reports_the_dead_masters_last_advert() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        rec = Recorder(rb)
        await trio.sleep(2)
        assert rb.state("VI_1") == "BACKUP"
        rec.events.clear()  # the start's INIT -> BACKUP
        ra.kill()
        t_kill = trio.current_time()
        while rb.state("VI_1") != "MASTER":
            await trio.sleep(0.01)
        (ev,) = [e for e in rec.events if e.kind == "instance"]
        assert (ev.name, ev.old, ev.new) == ("VI_1", "BACKUP", "MASTER")
        assert ev.peer is not None
        assert (ev.peer.address, ev.peer.priority) == ("192.0.2.1", 200)
        # Heard last just before the kill, Master_Down_Interval before the takeover.
        assert ev.peer.age_s >= trio.current_time() - t_kill
        assert ev.peer.age_s <= master_down_interval_s(100, 10, 3) + 0.1
        assert ("interface", "eth0") in ev.where and ("VRID", "51") in ev.where
        assert ev.now == ("VI_1=MASTER",)
        assert "VRRP instance VI_1 is now MASTER (was BACKUP for" in _body(ev)

    run_lab(scenario)


def _body(ev: Event) -> str:
    from hadirector.alerts import events

    return events.body(ev)


def test_fault_is_a_condition_while_it_lasts_and_a_group_reports_once() -> None:
    async def scenario(lab: Lab) -> None:
        _, _, a, b = sync_hosts(lab)
        ra = await lab.start(a, sync_config(200))
        rb = await lab.start(b, sync_config(100))
        rec = Recorder(rb)
        await trio.sleep(2)
        rec.events.clear()  # the start's INIT -> BACKUP
        b.links.set("eth1", False)  # VI_2's link: VI_2 FAULT, the group follows
        group = rb.agent.groups["G1"]
        while group.settled is None or group.settled.value != "FAULT":
            await trio.sleep(0.01)
        await trio.sleep(0.5)
        faults = rec.conditions[wiring.INSTANCE_FAULT]
        assert [dict(c.labels)["vrrp_instance"] for c in faults] == ["VI_1", "VI_2"]
        assert "link down" in faults[1].description
        assert [dict(c.labels) for c in rec.conditions[wiring.GROUP_FAULT]] == [
            {"sync_group": "G1"}
        ]
        groups = [e for e in rec.events if e.kind == "group"]
        assert [(e.name, e.old, e.new) for e in groups] == [("G1", "BACKUP", "FAULT")]
        b.links.set("eth1", True)
        while rb.state("VI_2") != "BACKUP" or rb.state("VI_1") != "BACKUP":
            await trio.sleep(0.01)
        await trio.sleep(0.5)
        assert rec.conditions[wiring.INSTANCE_FAULT] == []
        assert rec.conditions[wiring.GROUP_FAULT] == []
        assert ra.state("VI_1") == "MASTER"

    run_lab(scenario)


def test_a_checks_change_is_reported_with_its_reason() -> None:
    config = load_text(
        """
[[virtual_server]]
address = "192.0.2.10:80"
[virtual_server.check]
type = "tcp"
interval = 1
rise = 1
fall = 1
[[virtual_server.real_server]]
address = "10.0.0.5:80"
"""
    )
    answers = [False, False, True]
    changes: list[tuple[str, str, str, str, bool, str]] = []

    async def prober(
        _check: HealthCheck, _addr: IPAddress, _port: int | None
    ) -> probes.ProbeResult:
        ok = answers.pop(0) if answers else True
        return probes.ProbeResult(ok, "ok" if ok else "connection refused")

    def on_change(key: CheckKey, spec: CheckSpec, change: Change) -> None:
        changes.append(
            (str(key[0]), str(key[1]), spec.service, spec.server, change.up, change.reason)
        )

    async def main() -> None:
        checker = HealthChecker(config, lambda _down: None, prober=prober, on_change=on_change)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            while len(changes) < 2:
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    svc, srv = "tcp 192.0.2.10:80", "10.0.0.5:80"
    assert changes == [
        (svc, srv, svc, srv, False, "connection refused"),
        (svc, srv, svc, srv, True, "ok"),
    ]


LVS = """
[[virtual_server]]
address = "192.0.2.100:80"
smtp_alert = false
[[virtual_server.real_server]]
address = "10.0.0.5:80"
"""


def test_server_and_quorum_changes_become_events_and_conditions() -> None:
    """What the pool keeper's events (a server out of rotation by its check or a drain, a
    service losing quorum) turn into: mails (here not, smtp_alert = false on the service),
    webhook documents, and Alertmanager's quorum condition while it lasts."""

    async def scenario(lab: Lab) -> None:
        _, a, _b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200) + LVS)
        rec = Recorder(ra)
        await trio.sleep(2)
        vs = ra.agent.config.virtual_servers[0]
        skey, dkey = vs.key, dest_key_of(vs, vs.real_servers[0])
        rec.events.clear()  # the start's transitions
        ra.agent.on_server_change(skey, dkey, False, "check", "status 503")
        ra.agent.on_server_change(skey, dkey, True, "drain", "undrained by the operator")
        ra.agent.on_quorum_change(skey, False, 0, 1)
        down, undrained, lost = rec.events
        assert (down.name, down.new, down.reason) == (
            "tcp 192.0.2.100:80 10.0.0.5:80",
            "DOWN",
            "status 503",
        )
        assert ("cause", "check") in down.where and not down.smtp_alert  # the service says so
        assert ("cause", "drain") in undrained.where and undrained.new == "UP"
        assert (lost.kind, lost.name, lost.new) == ("service", "tcp 192.0.2.100:80", "QUORUM LOST")
        (cond,) = rec.conditions[wiring.QUORUM_LOST]
        assert dict(cond.labels) == {"service": "tcp 192.0.2.100:80"}
        ra.agent.on_quorum_change(skey, True, 1, 1)
        assert rec.conditions[wiring.QUORUM_LOST] == []
        assert rec.events[-1].new == "QUORUM"

    run_lab(scenario)
