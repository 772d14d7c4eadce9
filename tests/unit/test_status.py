"""The status snapshot: frozen, JSON in the control socket's format and back unchanged,
and a report that is not well formed read back as a ``StatusError`` naming the field
(the CLI prints it; it never crashes on what an agent sends)."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from hadirector.control.client import format_status
from hadirector.status import (
    STATES,
    AgentStatus,
    ResyncStatus,
    StatusError,
)
from hadirector.vrrp.machine import State
from tests.unit.statuskit import snapshot

# The control socket's ``status`` reply body for snapshot(): the wire format, field for field.
WIRE: dict[str, Any] = {
    "router_id": "dir-a",
    "version": "0.1.0",
    "pid": 4242,
    "uptime_s": 12.5,
    "stopping": False,
    "instances": [
        {
            "name": "VI_1",
            "state": "FAULT",
            "interface": "eth0",
            "vrid": 51,
            "version": 3,
            "family": 4,
            "unicast": False,
            "source": None,
            "priority": 150,
            "effective_priority": None,
            "advert_interval_cs": 100,
            "master_adver_interval_cs": None,
            "vips": ["192.0.2.100/24"],
            "vips_held": [],
            "fault_reasons": ["link down"],
            "counters": {"adverts_sent": 3, "rejected_ttl": 2, "to_fault": 1},
            "machine_counters": {"split_brain_won": 1},
        }
    ],
    "sync_groups": [{"name": "G", "state": None, "members": {"VI_1": "FAULT"}}],
    "ipvs": {
        "available": True,
        "configured_services": 1,
        "services": ["tcp 192.0.2.100:80"],
        "refused": [],
        "last_reconcile_age_s": 0.5,
        "counters": {"reconciles": 1},
    },
    "checks": {
        "running": 2,
        "down": ["tcp 192.0.2.100:80 10.0.0.1:80"],
        "drained": [],
        "quorum_lost": [],
    },
    "notify": {"pending": 0, "failures": 1},
    "anycast": {"device": None, "route_table": 0, "error": None, "addresses": []},
    "resync": None,
}


def test_the_wire_format() -> None:
    body = snapshot().to_json()
    assert body == WIRE
    assert list(body["instances"][0]["counters"]) == sorted(WIRE["instances"][0]["counters"])
    assert AgentStatus.from_json(json.loads(json.dumps(body))) == snapshot()


def test_the_snapshot_is_frozen() -> None:
    st = snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.instances[0].state = "MASTER"  # type: ignore[misc]
    with pytest.raises(TypeError):
        st.instances[0].counters["to_fault"] = 9  # type: ignore[index]
    assert st.instance("VI_1").rejected == 2
    with pytest.raises(KeyError):
        st.instance("VI_2")


def test_later_changes_to_the_builders_counters_do_not_show() -> None:
    counters = {"adverts_sent": 1}
    inst = dataclasses.replace(snapshot().instances[0], counters=counters)
    counters["adverts_sent"] = 2
    assert inst.counters["adverts_sent"] == 1


def _broken(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    report = copy.deepcopy(WIRE)
    target: Any = report
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return report


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("pid",), "4242", "status.pid: expected an integer, got a string"),
        (("pid",), True, "status.pid: expected an integer, got a boolean"),
        (("uptime_s",), None, "status.uptime_s: expected a number, got null"),
        (("stopping",), KeyError, "status.stopping: missing"),
        (("instances",), {}, "status.instances: expected a list, got an object"),
        (("instances", 0), [], "status.instances[0]: expected an object, got a list"),
        (("instances", 0, "state"), "LEADER", "status.instances[0].state: unknown state 'LEADER'"),
        (("instances", 0, "vips_held"), [1], "status.instances[0].vips_held: expected a list of"),
        (
            ("instances", 0, "counters", "adverts_sent"),
            1.5,
            "status.instances[0].counters.adverts_sent: expected an integer, got a number",
        ),
        (("sync_groups", 0, "members", "VI_1"), "UP", "status.sync_groups[0].members.VI_1: "),
        (("sync_groups", 0, "state"), "UP", "status.sync_groups[0].state: unknown state 'UP'"),
        (("ipvs", "available"), "yes", "status.ipvs.available: expected true or false"),
        (("ipvs", "services"), "tcp", "status.ipvs.services: expected a list, got a string"),
        (("checks",), None, "status.checks: expected an object, got null"),
        (("notify", "failures"), [], "status.notify.failures: expected an integer, got a list"),
    ],
)
def test_a_malformed_report_names_the_field(
    path: tuple[str | int, ...], value: Any, error: str
) -> None:
    with pytest.raises(StatusError) as caught:
        AgentStatus.from_json(_broken(path, value))
    assert str(caught.value).startswith(error)


@pytest.mark.parametrize("data", [None, [], "status", 7])
def test_a_report_that_is_not_an_object(data: object) -> None:
    with pytest.raises(StatusError, match=r"^status: expected an object"):
        AgentStatus.from_json(data)


def test_the_states_are_the_machines() -> None:
    assert set(STATES) == {s.value for s in State}


@pytest.mark.parametrize(
    ("resync", "line"),
    [
        (
            ResyncStatus("master", True, 12, 0.25, 65.0),
            "resync: sent 12 entries in 0.25s, 1m05s ago",
        ),
        (
            ResyncStatus("backup", True, 12, 0.5, 3.0),
            "resync: received 12 entries in 0.50s, 3.0s ago",
        ),
        (ResyncStatus("backup", False, 0, 10.0, 1.0), "resync: none arrived within 10s, 1.0s ago"),
    ],
)
def test_the_last_resync_round_trips_and_is_printed(resync: ResyncStatus, line: str) -> None:
    st = dataclasses.replace(snapshot(), resync=resync)
    assert AgentStatus.from_json(json.loads(json.dumps(st.to_json()))) == st
    assert line in format_status(st).splitlines()
    older = st.to_json()
    del older["resync"]  # an agent from before bulk resync
    assert AgentStatus.from_json(older).resync is None
    with pytest.raises(StatusError, match=r"status\.resync\.entries"):
        AgentStatus.from_json({**st.to_json(), "resync": {**resync.to_json(), "entries": "x"}})
