"""What the agent tells systemd (sd_notify): READY=1 only once every instance has its first
state, or says what it waits for; STATUS= names each instance's state and a refused reload.

The notifications are recorded in place of the datagram, each with the instances' states at
the moment it was sent.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import trio

from hadirector import sdnotify
from tests.agent.fakes import Lab, instance_toml, pair, run_lab


class Notes:
    """Every notification the agents sent, with the instances' states at that moment."""

    def __init__(self) -> None:
        self.sent: list[tuple[tuple[str, ...], dict[str, str]]] = []
        self.agent: Any = None

    def notify(self, *fields: str) -> bool:
        states = {}
        if self.agent is not None:
            states = {n: i.state.value for n, i in self.agent.instances.items()}
        self.sent.append((fields, states))
        return True

    def fields(self, prefix: str) -> list[str]:
        return [f for fields, _ in self.sent for f in fields if f.startswith(prefix)]

    def ready_states(self) -> list[dict[str, str]]:
        return [states for fields, states in self.sent if "READY=1" in fields]


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> Notes:
    recorder = Notes()
    monkeypatch.setattr(sdnotify, "notify", recorder.notify)
    return recorder


def test_ready_only_once_every_instance_has_its_first_state(notes: Notes) -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        config = instance_toml(priority=100) + instance_toml(
            name="VI_2", vrid=52, priority=255, vips=["192.0.2.200/24"]
        )
        ra = await lab.start(a, config)
        notes.agent = ra.agent
        await trio.sleep(1)
        (states,) = notes.ready_states()
        # The owner (255) is master at once, the other starts as backup; none is INIT.
        assert states == {"VI_1": "BACKUP", "VI_2": "MASTER"}
        # The STATUS sent before READY already names both.
        statuses = [fields for fields, _ in notes.sent]
        ready_at = next(i for i, f in enumerate(statuses) if "READY=1" in f)
        before = [f for fields in statuses[:ready_at] for f in fields if f.startswith("STATUS=")]
        assert before[-1] == "STATUS=VI_1=BACKUP, VI_2=MASTER"

    run_lab(scenario)


def test_ready_with_an_instance_waiting_for_its_interface(notes: Notes) -> None:
    """A director booting before its network: READY at once, STATUS says what is awaited,
    and the instance starts when the interface appears."""

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        config = instance_toml(priority=200) + instance_toml(
            name="VI_2", interface="eth9", vrid=52, priority=200, vips=["198.51.100.1/24"]
        )
        ra = await lab.start(a, config)
        notes.agent = ra.agent
        await trio.sleep(0.5)
        (states,) = notes.ready_states()
        assert states["VI_2"] == "INIT"
        assert ra.instance("VI_2").waiting_for is not None
        status = notes.fields("STATUS=")[-1]
        assert "VI_2=INIT (waiting for eth9: " in status, status
        lab_wire = lab.wire("srv")
        a.interfaces["eth9"] = (lab_wire, ipaddress.ip_address("198.51.100.11"))
        await trio.sleep(2)
        assert ra.state("VI_2") == "MASTER"
        assert ra.instance("VI_2").waiting_for is None
        assert notes.fields("STATUS=")[-1] == "STATUS=VI_1=MASTER, VI_2=MASTER"
        assert len(notes.ready_states()) == 1

    run_lab(scenario)


def test_refused_reload_is_in_status_until_a_reload_succeeds(notes: Notes, tmp_path: Path) -> None:
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        path.write_text(instance_toml(priority=200))
        ra = await lab.start(a, path.read_text(), config_path=path)
        notes.agent = ra.agent
        await trio.sleep(1)
        path.write_text(instance_toml(priority=200) + "[[vrrp_instance]]\nname = 3\n")
        await ra.reload()
        status = notes.fields("STATUS=")[-1]
        assert status.startswith("STATUS=VI_1=MASTER; reload refused, previous configuration")
        assert "vrrp_instance[1]" in status, status
        assert notes.sent[-1][0] == ("READY=1",)
        assert lab.find("config.reload_failed", host="a")
        path.write_text(instance_toml(priority=200, vips=["192.0.2.100/24", "192.0.2.101/24"]))
        await ra.reload()
        assert notes.fields("STATUS=")[-1] == "STATUS=VI_1=MASTER"
        await trio.sleep(1)
        assert a.held() == {"192.0.2.100/24", "192.0.2.101/24"}

    run_lab(scenario)


def test_a_tracked_failure_during_a_graceful_stop_does_not_cut_the_handover() -> None:
    """systemd's stop signals the whole control group: a track script running at that
    moment dies of the SIGTERM too and reads as a failure. During a graceful stop a change
    of a tracked state must not turn the handover into a fault (VIPs released before the
    peer took over)."""

    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab, extra_interfaces=["eth1"])
        track = 'track_interfaces = [{ name = "eth1", weight = 0 }]'
        ra = await lab.start(a, instance_toml(priority=200, extra=track))
        await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        assert ra.state("VI_1") == "MASTER"
        t_stop = trio.current_time()
        ra.stop()
        await trio.sleep(0)
        ra.agent.tracking.set_interface("eth1", False)  # what a killed track script does
        await ra.wait()
        assert lab.coverage_gaps("192.0.2.100/24", t_stop, trio.current_time()) == []
        (stopped,) = [e for e in lab.find("transition", host="a") if e.detail["new"] == "STOPPED"]
        assert stopped.detail["reason"] == "stopped (handed over)", stopped.detail

    run_lab(scenario)
