"""The pure decision of which kernel sync daemons run (hadirector/sync/roles.py).

``plan`` is checked against a small model of the kernel's daemon table: applying the steps
to any table must give exactly the wanted daemons, stop before start, never touch a daemon
already right, and a second plan on the result must be empty. The state -> role rule is
pinned for every VRRP state, as keepalived's ``lvs_sync_daemon`` behaves.
"""

from __future__ import annotations

import ast
import dataclasses
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hadirector.config.schema import SyncDaemonSettings
from hadirector.ipvs.types import SyncDaemon, SyncState
from hadirector.sync import roles
from hadirector.sync.roles import Start, Stop

REPO = Path(__file__).resolve().parents[2]
SETTINGS = SyncDaemonSettings(interface="sync0", instance="web", syncid=7)


def spec(state: SyncState, **changes: object) -> SyncDaemon:
    base = roles.desired(SETTINGS, "MASTER" if state is SyncState.MASTER else "BACKUP")[0]
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def running_as(s: SyncDaemon, kernel_maxlen: int = 1472) -> SyncDaemon:
    """The daemon as the kernel lists it once started from ``s``."""
    return dataclasses.replace(s, sync_maxlen=s.sync_maxlen or kernel_maxlen)


def test_role_for_every_vrrp_state() -> None:
    assert roles.role_for("MASTER") is SyncState.MASTER
    for state in ("INIT", "BACKUP", "FAULT", None):
        assert roles.role_for(state) is SyncState.BACKUP
    assert roles.role_for("STOPPED") is None


def test_desired_carries_every_setting() -> None:
    settings = SyncDaemonSettings(
        interface="eth9",
        instance="web",
        syncid=200,
        maxlen=1200,
        mcast_group=ipaddress.IPv4Address("239.1.2.3"),
        mcast_port=9999,
        mcast_ttl=4,
    )
    assert roles.desired(settings, "MASTER") == (
        SyncDaemon(SyncState.MASTER, "eth9", 200, 1200, "239.1.2.3", 9999, 4),
    )
    assert roles.desired(settings, "FAULT")[0].state is SyncState.BACKUP
    assert roles.desired(settings, "STOPPED") == ()
    assert roles.desired(None, "MASTER") == ()


def test_start_runs_the_backup_daemon() -> None:
    assert roles.plan([], roles.desired(SETTINGS, None)) == [Start(spec(SyncState.BACKUP))]


def test_becoming_master_stops_backup_then_starts_master() -> None:
    backup = running_as(spec(SyncState.BACKUP))
    steps = roles.plan([backup], roles.desired(SETTINGS, "MASTER"))
    assert steps == [Stop(SyncState.BACKUP, "role not wanted"), Start(spec(SyncState.MASTER))]


def test_leaving_master_stops_master_then_starts_backup() -> None:
    master = running_as(spec(SyncState.MASTER))
    for state in ("BACKUP", "FAULT"):
        steps = roles.plan([master], roles.desired(SETTINGS, state))
        assert steps == [Stop(SyncState.MASTER, "role not wanted"), Start(spec(SyncState.BACKUP))]


def test_stopping_stops_both() -> None:
    both = [running_as(spec(SyncState.BACKUP)), running_as(spec(SyncState.MASTER))]
    assert roles.plan(both, ()) == [
        Stop(SyncState.MASTER, "role not wanted"),
        Stop(SyncState.BACKUP, "role not wanted"),
    ]


def test_a_daemon_left_by_a_crashed_run_is_kept_when_right() -> None:
    # The kernel reports the message size it chose: not a difference when none is set.
    left = running_as(spec(SyncState.BACKUP), kernel_maxlen=1468)
    assert roles.plan([left], roles.desired(SETTINGS, "BACKUP")) == []


def test_a_daemon_with_other_parameters_is_restarted() -> None:
    wanted = spec(SyncState.BACKUP)
    for change in (
        {"ifname": "eth0"},
        {"syncid": 8},
        {"mcast_group": "239.0.0.1"},
        {"mcast_port": 1},
        {"mcast_ttl": 2},
    ):
        left = running_as(dataclasses.replace(wanted, **change))
        assert roles.plan([left], [wanted]) == [
            Stop(SyncState.BACKUP, "parameters changed"),
            Start(wanted),
        ], change
    sized = spec(SyncState.BACKUP, sync_maxlen=1000)
    assert roles.plan([running_as(spec(SyncState.BACKUP))], [sized])[0] == Stop(
        SyncState.BACKUP, "parameters changed"
    )


def test_addresses_compare_as_addresses() -> None:
    wanted = spec(SyncState.BACKUP, mcast_group="ff02::81")
    listed = running_as(wanted)
    listed = dataclasses.replace(listed, mcast_group="FF02:0::81")
    assert roles.plan([listed], [wanted]) == []


# --- the plan against a model of the kernel's daemon table --------------------------------

states = st.sampled_from(list(SyncState))
specs = st.builds(
    SyncDaemon,
    state=states,
    ifname=st.sampled_from(["eth0", "sync0"]),
    syncid=st.integers(0, 2),
    sync_maxlen=st.sampled_from([0, 1200]),
    mcast_group=st.sampled_from(["224.0.0.81", "239.9.9.9"]),
    mcast_port=st.sampled_from([8848, 9000]),
    mcast_ttl=st.sampled_from([1, 2]),
)


def one_per_state(items: list[SyncDaemon]) -> dict[SyncState, SyncDaemon]:
    return {s.state: s for s in items}


@given(
    st.lists(specs, max_size=3).map(one_per_state), st.lists(specs, max_size=3).map(one_per_state)
)
def test_plan_reaches_exactly_what_is_wanted(
    running: dict[SyncState, SyncDaemon], wanted: dict[SyncState, SyncDaemon]
) -> None:
    table = {state: running_as(s) for state, s in running.items()}
    steps = roles.plan(table.values(), wanted.values())
    kinds = [type(step) for step in steps]
    assert kinds == sorted(kinds, key=lambda k: k is Start), "every stop comes first"
    for step in steps:  # as the kernel would: EEXIST / ESRCH are bugs of the plan
        if isinstance(step, Stop):
            assert step.state in table
            del table[step.state]
        else:
            assert step.spec.state not in table
            table[step.spec.state] = running_as(step.spec)
    assert set(table) == set(wanted)
    for state, daemon in table.items():
        assert roles.matches(daemon, wanted[state])
    untouched = [
        s for s in running if s in wanted and roles.matches(running_as(running[s]), wanted[s])
    ]
    for state in untouched:
        assert all(getattr(step, "state", None) is not state for step in steps)
        assert all(not isinstance(step, Start) or step.spec.state is not state for step in steps)
    assert roles.plan(table.values(), wanted.values()) == []


@given(st.sampled_from(["INIT", "BACKUP", "FAULT", "MASTER", "STOPPED", None]), st.data())
def test_any_sequence_of_states_leaves_one_daemon_of_the_right_role(
    first: str | None, data: st.DataObject
) -> None:
    table: dict[SyncState, SyncDaemon] = {}
    later = st.lists(st.sampled_from(["BACKUP", "FAULT", "MASTER", "STOPPED"]), max_size=8)
    sequence = [first, *data.draw(later)]
    for state in sequence:
        for step in roles.plan(table.values(), roles.desired(SETTINGS, state)):
            if isinstance(step, Stop):
                del table[step.state]
            else:
                table[step.spec.state] = running_as(step.spec)
        role = roles.role_for(state)
        assert set(table) == (set() if role is None else {role})


def test_roles_is_pure() -> None:
    """Imported alone it loads none of the I/O libraries; no import statement names them."""
    code = (
        "import sys, json; import hadirector.sync.roles; "
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    loaded = {m.split(".")[0] for m in json.loads(out)}
    forbidden = {"trio", "pyroute2", "scapy", "structlog", "asyncio", "socket", "subprocess"}
    assert not loaded & forbidden
    tree = ast.parse((REPO / "hadirector/sync/roles.py").read_text())
    names = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not names & (forbidden | {"time", "threading"})
