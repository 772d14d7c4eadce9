"""The pool keeper (agent/pools.py) between the health checker and IPVS: what it hands the
IPVS component, which commands it queues, what its subscribers and VRRP tracking are told.

A recording IPVS component and the agent's own notify runner (its queue read back, no
process started); the checks' changes are fed in as the health checker would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
import trio.testing

from hadirector import metrics, security
from hadirector.agent.pools import PoolKeeper
from hadirector.alerts import notify
from hadirector.checks import probes
from hadirector.checks.risefall import Change
from hadirector.config.load import load_text
from hadirector.ipvs import model, pool
from tests.agent.fakes import Lab, instance_toml, pair, run_lab

CONFIG = """
[[virtual_server]]
address = "192.0.2.100:80"
quorum = 2
quorum_up = "/usr/local/bin/pool up"
quorum_down = "/usr/local/bin/pool down"
sorry_server = { address = "198.51.100.99:80" }
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  notify_down = "/usr/local/bin/rs down"
  notify_up = "/usr/local/bin/rs up"
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"
"""


class RecordingIpvs:
    def __init__(self) -> None:
        self.calls: list[tuple[set[Any], frozenset[Any], frozenset[Any]]] = []
        self.ramps: list[dict[Any, int]] = []
        self.weights: list[dict[Any, int]] = []

    async def run(self) -> None:
        await trio.sleep_forever()

    def update(self, config: Any) -> None:
        pass

    def set_health(
        self,
        down: set[Any],
        *,
        drained: frozenset[Any] = frozenset(),
        lost: frozenset[Any] = frozenset(),
        ramp: Any = None,
        weights: Any = None,
    ) -> None:
        self.calls.append((set(down), drained, lost))
        self.weights.append(dict(weights or {}))
        self.ramps.append(dict(ramp or {}))

    def status(self) -> Any:
        return None


def queued(runner: notify.NotifyRunner) -> list[tuple[str, ...]]:
    """The argv of every job waiting in the runner's queue (taken out)."""
    out = []
    while True:
        try:
            out.append(runner._receive.receive_nowait().argv)
        except trio.WouldBlock:
            return out


def test_quorum_sorry_and_server_hooks() -> None:
    config = load_text(CONFIG)
    [vs] = config.virtual_servers
    skey = model.service_key_of(vs)
    rs1, rs2 = (model.dest_key_of(vs, rs) for rs in vs.real_servers)
    ipvs = RecordingIpvs()
    runner = notify.NotifyRunner()
    quorum_calls: list[bool] = []
    events: list[pool.PoolEvent] = []
    keeper = PoolKeeper(config, ipvs, runner, quorum_calls.append)
    keeper.subscribe(events.append)

    keeper.start(set())
    assert ipvs.calls == [(set(), frozenset(), frozenset())]
    assert (events, quorum_calls, queued(runner)) == ([], [], [])

    # rs1's check fails: its notify_down, a server event, then quorum lost (live 1 < 2).
    keeper.on_check_change((skey, rs1), None, Change(False, "connect refused"))
    keeper.set_down({(skey, rs1)})
    assert events == [
        pool.ServerChange(skey, rs1, False, "check", "connect refused"),
        pool.QuorumChange(skey, False, 1, 2, 0),
    ]
    assert queued(runner) == [("/usr/local/bin/rs", "down"), ("/usr/local/bin/pool", "down")]
    assert ipvs.calls[-1] == ({(skey, rs1)}, frozenset(), frozenset({skey}))
    assert quorum_calls == [False]  # the only service lost it: tracking is told

    # rs2 (no commands of its own) changes nothing more; rs1 back: quorum regained.
    events.clear()
    keeper.on_check_change((skey, rs2), None, Change(False, "timeout 1.0 s"))
    keeper.set_down({(skey, rs1), (skey, rs2)})
    keeper.on_check_change((skey, rs2), None, Change(True, "ok"))
    keeper.on_check_change((skey, rs1), None, Change(True, "ok"))
    keeper.set_down(set())
    assert [type(e).__name__ for e in events] == ["ServerChange"] * 3 + ["QuorumChange"]
    assert events[-1] == pool.QuorumChange(skey, True, 2, 2, 0)
    assert queued(runner) == [("/usr/local/bin/rs", "up"), ("/usr/local/bin/pool", "up")]
    assert ipvs.calls[-1] == (set(), frozenset(), frozenset())
    assert quorum_calls == [False, True]

    # A reload that drops the service forgets it: no service, nothing lacks quorum.
    keeper.update(load_text(""))
    assert ipvs.calls[-1] == (set(), frozenset(), frozenset())
    assert keeper.any_quorum and quorum_calls == [False, True]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    config = load_text(CONFIG.replace("quorum = 2", "quorum = 5"))
    runner = notify.NotifyRunner()
    seen: list[pool.PoolEvent] = []

    def broken(event: pool.PoolEvent) -> None:
        raise RuntimeError("subscriber bug")

    keeper = PoolKeeper(config, RecordingIpvs(), runner, lambda up: None)
    keeper.subscribe(broken)
    keeper.subscribe(seen.append)
    keeper.start(set())  # live weight 2 < quorum 5: lost at once
    assert [type(e).__name__ for e in seen] == ["QuorumChange"]


def test_drain_is_weight_zero_counts_against_quorum_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    text = f'[global]\nstate_dir = "{tmp_path}"\n' + CONFIG
    config = load_text(text)
    [vs] = config.virtual_servers
    skey = model.service_key_of(vs)
    rs1, rs2 = (model.dest_key_of(vs, rs) for rs in vs.real_servers)
    ipvs = RecordingIpvs()
    events: list[pool.PoolEvent] = []
    keeper = PoolKeeper(config, ipvs, notify.NotifyRunner(), lambda up: None)
    keeper.subscribe(events.append)
    keeper.start(set())

    assert keeper.drain("tcp 192.0.2.100:80", "198.51.100.11:80", True) == (
        True,
        "drained tcp 192.0.2.100:80 198.51.100.11:80",
    )
    assert ipvs.calls[-1] == (set(), frozenset({(skey, rs1)}), frozenset({skey}))
    assert events == [
        pool.ServerChange(skey, rs1, False, "drain", "drained by the operator"),
        pool.QuorumChange(skey, False, 1, 2, 0),  # the drained weight no longer counts
    ]
    assert keeper.drained_names() == ("tcp 192.0.2.100:80 198.51.100.11:80",)
    assert keeper.drain("192.0.2.100:80", "198.51.100.11", True) == (
        True,
        "tcp 192.0.2.100:80 198.51.100.11:80 was already drained",
    )
    assert keeper.drain("192.0.2.100:80", "198.51.100.77:80", True) == (
        False,
        "no real server '198.51.100.77:80' in tcp 192.0.2.100:80",
    )
    saved = json.loads((tmp_path / "drained.json").read_text())
    assert saved == {"drained": [["tcp 192.0.2.100:80", "198.51.100.11:80"]]}

    # A check change of a drained server runs its command but is no rotation change.
    events.clear()
    keeper.on_check_change((skey, rs1), None, Change(False, "connect refused"))
    assert events == []

    # A restart: a new keeper reads the file before its first hand-off to IPVS.
    again = RecordingIpvs()
    restarted = PoolKeeper(config, again, notify.NotifyRunner(), lambda up: None)
    restarted.start(set())
    assert again.calls == [(set(), frozenset({(skey, rs1)}), frozenset({skey}))]

    # Undrain: back in the table and counted; a reload dropping the server forgets it.
    assert restarted.drain("tcp 192.0.2.100:80", "198.51.100.11:80", False)[0]
    assert again.calls[-1] == (set(), frozenset(), frozenset())
    assert restarted.drain("tcp 192.0.2.100:80", "198.51.100.12:80", True)[0]
    restarted.update(
        load_text(text.replace('address = "198.51.100.12:80"', 'address = "198.51.100.13:80"'))
    )
    assert restarted.drained == set() and (skey, rs2) not in again.calls[-1][1]
    assert json.loads((tmp_path / "drained.json").read_text()) == {"drained": []}


def test_an_unreadable_or_stale_drain_file_is_said_and_ignored(tmp_path: Path) -> None:
    config = load_text(f'[global]\nstate_dir = "{tmp_path}"\n' + CONFIG)
    (tmp_path / "drained.json").write_text("{not json")
    keeper = PoolKeeper(config, RecordingIpvs(), notify.NotifyRunner(), lambda up: None)
    keeper.start(set())
    assert keeper.drained == set()
    (tmp_path / "drained.json").write_text(
        json.dumps({"drained": [["tcp 192.0.2.9:80", "198.51.100.11:80"], "junk"]})
    )
    keeper.start(set())
    assert keeper.drained == set()


def test_a_recovered_or_undrained_server_climbs_back_to_its_weight() -> None:
    text = CONFIG.replace("quorum = 2", "slow_start = 10").replace(
        'address = "198.51.100.12:80"', 'address = "198.51.100.12:80"\n  weight = 5'
    )
    config = load_text(text)
    [vs] = config.virtual_servers
    skey = model.service_key_of(vs)
    rs1, rs2 = (model.dest_key_of(vs, rs) for rs in vs.real_servers)
    now = [0.0]
    ipvs = RecordingIpvs()
    keeper = PoolKeeper(config, ipvs, notify.NotifyRunner(), lambda up: None, clock=lambda: now[0])
    keeper.start(set())
    assert ipvs.ramps[-1] == {}  # nobody ramps at start

    keeper.on_check_change((skey, rs2), None, Change(False, "timeout"))
    keeper.set_down({(skey, rs2)})
    now[0] = 50.0
    keeper.on_check_change((skey, rs2), None, Change(True, "ok"))
    keeper.set_down(set())
    assert ipvs.ramps[-1] == {(skey, rs2): 1}
    assert keeper.slow.next_deadline(now[0]) == 52.0  # five steps of 2 s
    now[0] = 56.0
    keeper._evaluate()  # what run() does at the deadline
    assert ipvs.ramps[-1] == {(skey, rs2): 4}
    # Down again before the end: the ramp is over; rs1 (weight 1) never ramps.
    keeper.on_check_change((skey, rs2), None, Change(False, "timeout"))
    keeper.set_down({(skey, rs2)})
    assert ipvs.ramps[-1] == {}
    keeper.on_check_change((skey, rs1), None, Change(True, "ok"))
    assert keeper.slow.started == {}

    # Undrain starts a ramp too (for a server its check does not hold down).
    keeper.on_check_change((skey, rs2), None, Change(True, "ok"))
    keeper.set_down(set())
    now[0] = 70.0
    assert keeper.drain("tcp 192.0.2.100:80", "198.51.100.12:80", True)[0]
    assert ipvs.ramps[-1] == {}
    assert keeper.drain("tcp 192.0.2.100:80", "198.51.100.12:80", False)[0]
    assert ipvs.ramps[-1] == {(skey, rs2): 1}


def test_the_keeper_task_hands_over_each_step_when_it_is_due() -> None:
    config = load_text(
        CONFIG.replace("quorum = 2", "slow_start = 2").replace(
            'address = "198.51.100.12:80"', 'address = "198.51.100.12:80"\n  weight = 4'
        )
    )
    [vs] = config.virtual_servers
    skey = model.service_key_of(vs)
    rs2 = model.dest_key_of(vs, vs.real_servers[1])
    ipvs = RecordingIpvs()

    async def scenario() -> None:
        keeper = PoolKeeper(config, ipvs, notify.NotifyRunner(), lambda up: None)
        keeper.start({(skey, rs2)})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keeper.run)
            keeper.on_check_change((skey, rs2), None, Change(True, "ok"))
            keeper.set_down(set())
            await trio.sleep(3.0)
            nursery.cancel_scope.cancel()

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    steps = [r.get((skey, rs2)) for r in ipvs.ramps]
    # Start (down), the recovery, then one hand-off per step (0.5 s each) to the weight.
    assert steps == [None, 1, 2, 3, 4]


def test_the_pool_commands_are_among_the_scripts_security_checks() -> None:
    paths = dict(security.script_paths(load_text(CONFIG)))
    assert paths == {
        "virtual_server[0].quorum_up": "/usr/local/bin/pool",
        "virtual_server[0].quorum_down": "/usr/local/bin/pool",
        "virtual_server[0].real_server[0].notify_up": "/usr/local/bin/rs",
        "virtual_server[0].real_server[0].notify_down": "/usr/local/bin/rs",
    }


def test_a_group_says_its_quorum_once_and_drains_everywhere(tmp_path: Path) -> None:
    text = f"""
[global]
state_dir = "{tmp_path}"
[[virtual_server_group]]
name = "web"
addresses = ["192.0.2.100-101:80"]
[[virtual_server]]
group = "web"
quorum_down = "/usr/local/bin/pool down"
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
"""
    config = load_text(text)
    keys = [model.service_key_of(vs) for vs in config.virtual_servers]
    rs = model.DestKey.of("198.51.100.11", 80)
    ipvs = RecordingIpvs()
    runner = notify.NotifyRunner()
    events: list[pool.PoolEvent] = []
    keeper = PoolKeeper(config, ipvs, runner, lambda up: None)
    keeper.subscribe(events.append)
    keeper.start(set())
    keeper.set_down({(k, rs) for k in keys})  # as the checker reports a group's server
    assert ipvs.calls[-1][2] == frozenset(keys)  # both services lack quorum
    assert [e for e in events if isinstance(e, pool.QuorumChange)] == [
        pool.QuorumChange(keys[0], False, 0, 1, 0)
    ]
    assert queued(runner) == [("/usr/local/bin/pool", "down")]  # once, not per address

    keeper.set_down(set())
    assert keeper.drain("tcp 192.0.2.101:80", "198.51.100.11:80", True)[0]
    assert ipvs.calls[-1][1] == frozenset((k, rs) for k in keys)


def test_a_groups_scripts_are_named_by_their_table() -> None:
    text = """
[[virtual_server_group]]
name = "web"
addresses = ["192.0.2.100-103:80"]
[[virtual_server]]
group = "web"
quorum_down = "/usr/local/bin/web down"
real_server = [{ address = "198.51.100.11:80" }]
[[virtual_server]]
address = "192.0.2.200:80"
quorum_up = "/usr/local/bin/other up"
real_server = [{ address = "198.51.100.11:80" }]
"""
    config = load_text(text)
    assert [i for i, _ in config.service_tables()] == [0, 1]
    assert list(security.script_paths(config)) == [
        ("virtual_server[0].quorum_down", "/usr/local/bin/web"),
        ("virtual_server[1].quorum_up", "/usr/local/bin/other"),
    ]


def test_the_whole_agent_drain_quorum_tracking_and_alerts(tmp_path: Path) -> None:
    """Through the agent: draining the only server loses the pool's quorum; the instance
    tracking quorum goes to FAULT; the alerts get the server's and the quorum's events;
    undrain brings all back."""
    lvs = f"""
track_quorum = 0

[global]
state_dir = "{tmp_path}"

[[virtual_server]]
address = "192.0.2.100:80"
[[virtual_server.real_server]]
address = "10.0.0.5:80"
"""

    async def scenario(lab: Lab) -> None:
        _, a, _b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200) + lvs)
        alert_events: list[Any] = []
        ra.agent.alerts.event = alert_events.append  # type: ignore[method-assign]
        await trio.sleep(2)
        assert ra.state("VI_1") == "MASTER"
        alert_events.clear()  # the start's transitions
        done, text = ra.agent.drain("192.0.2.100:80", "10.0.0.5:80", True)
        assert done, text
        await trio.sleep(1)
        assert ra.state("VI_1") == "FAULT"
        kinds = [(e.kind, e.new) for e in alert_events]
        assert kinds[:2] == [("real_server", "DOWN"), ("service", "QUORUM LOST")], kinds
        assert ("instance", "FAULT") in kinds[2:], kinds  # then the instance's own FAULT
        assert ("cause", "drain") in alert_events[0].where
        assert ra.agent.status().checks.drained == ("tcp 192.0.2.100:80 10.0.0.5:80",)
        assert ra.agent.status().checks.quorum_lost == ("tcp 192.0.2.100:80",)
        assert ra.agent.drain("192.0.2.100:80", "10.0.0.5:80", False)[0]
        await trio.sleep(2)
        assert ra.state("VI_1") == "MASTER"
        assert ra.agent.status().checks.quorum_lost == ()

    run_lab(scenario)


def test_pool_metrics(tmp_path: Path) -> None:
    config = load_text(f'[global]\nstate_dir = "{tmp_path}"\n' + CONFIG)
    keeper = PoolKeeper(config, RecordingIpvs(), notify.NotifyRunner(), lambda up: None)
    keeper.start(set())
    assert keeper.drain("tcp 192.0.2.100:80", "198.51.100.12:80", True)[0]
    page = metrics.render_metrics(metrics.pool_metrics(keeper))
    assert 'hadirector_virtual_server_quorum{service="tcp 192.0.2.100:80"} 0.0' in page
    assert 'hadirector_virtual_server_live_weight{service="tcp 192.0.2.100:80"} 1.0' in page
    assert (
        'hadirector_real_server_drained{server="198.51.100.12:80",service="tcp 192.0.2.100:80"} 1.0'
        in page
    )


def test_a_dynamic_weight_reaches_ipvs_and_quorum() -> None:
    config = load_text(CONFIG)
    [vs] = config.virtual_servers
    skey = model.service_key_of(vs)
    rs1 = model.dest_key_of(vs, vs.real_servers[0])
    ipvs = RecordingIpvs()
    keeper = PoolKeeper(config, ipvs, notify.NotifyRunner(), lambda up: None)
    keeper.start(set())
    keeper.on_check_weight((skey, rs1), None, 0)  # rs1's script says weight 0: live 1 < 2
    assert ipvs.weights[-1] == {(skey, rs1): 0}
    assert ipvs.calls[-1][2] == frozenset({skey})
    keeper.on_check_weight((skey, rs1), None, None)  # back to the configured weight
    assert ipvs.weights[-1] == {} and ipvs.calls[-1][2] == frozenset()


START_LVS = """
[[virtual_server]]
address = "192.0.2.100:80"
quorum_down = "/usr/local/bin/pool down"
sorry_server = {{ address = "198.51.100.99:80" }}
check = {{ type = "tcp", interval = 2, timeout = 1, alpha = true, rise = {rise}, fall = 1 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"

[[virtual_server]]
address = "192.0.2.101:80"
  [[virtual_server.real_server]]
  address = "198.51.100.13:80"
"""


def start_events(rise: int, answers: list[bool]) -> tuple[list[Any], list[Any]]:
    """A whole agent starting with an alpha pool whose probes answer ``answers`` in turn
    (then up): (what happened in order: ("probe", ok) and the pool events, the IPVS
    adapter's lost services at each hand-over)."""
    log: list[Any] = []
    replies = iter(answers)

    async def prober(_check: Any, _address: Any, _port: Any) -> Any:
        ok = next(replies, True)
        log.append(("probe", ok))
        return probes.ProbeResult(ok, "ok" if ok else "connect refused")

    def prepare(agent: Any) -> None:
        agent.checks.prober = prober
        agent.pools.subscribe(log.append)

    lost: list[Any] = []

    async def scenario(lab: Lab) -> None:
        _, a, _b = pair(lab)
        text = instance_toml(priority=200) + START_LVS.format(rise=rise)
        ra = await lab.start(a, text, prepare=prepare)
        await trio.sleep(7)
        lost.extend(state[1] for state in ra.agent.ipvs.pool_states)

    run_lab(scenario)
    return log, lost


def test_no_quorum_decision_before_the_first_check_results() -> None:
    """An alpha pool (both servers start out) is not declared without quorum at start: it
    waits for each server's first result; with rise = 1 and passing probes it never loses
    quorum, no sorry server goes in (the service without checks is decided at once)."""
    for _ in range(3):  # the same every time
        log, lost = start_events(rise=1, answers=[True, True])
        assert [e for e in log if not isinstance(e, tuple)] == [
            pool.ServerChange(SVC_100, RS_11, True, "check", "ok"),
            pool.ServerChange(SVC_100, RS_12, True, "check", "ok"),
        ], log
        assert all(not services for services in lost), lost


def test_a_pool_still_down_after_its_first_results_loses_quorum_then() -> None:
    """rise = 2: after the first results the alpha servers are still out, so quorum is
    lost right after the second server's first probe (never before), and gained when
    the first server's second success brings it in."""
    log, lost = start_events(rise=2, answers=[True, False])
    names = [e if isinstance(e, tuple) else type(e).__name__ for e in log]
    first_lost = names.index("QuorumChange")
    assert names[:first_lost] == [("probe", True), ("probe", False)], names
    assert log[first_lost] == pool.QuorumChange(SVC_100, False, 0, 1, 0)
    assert pool.QuorumChange(SVC_100, True, 1, 1, 0) in log[first_lost + 1 :], log
    assert lost[0] == frozenset(), lost  # the first hand-over: nothing lacks quorum yet
    assert frozenset({SVC_100}) in lost, lost


SVC_100 = model.ServiceKey(4, 6, "192.0.2.100", 80, 0)
RS_11 = model.DestKey.of("198.51.100.11", 80)
RS_12 = model.DestKey.of("198.51.100.12", 80)
