"""Reload (SIGHUP) on a running pair: VIP list changes apply in place without an election;
an invalid file keeps the running configuration. Also: a VIP deleted behind the agent's back
is put back and announced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from hadirector.errors import IpvsUnavailable
from hadirector.ipvs import kernel as ipvs_kernel
from tests.agent.fakes import Lab, Running, instance_toml, pair, run_lab

VIP1 = "192.0.2.100/24"
VIP2 = "192.0.2.101/24"


async def start_pair(lab: Lab, path: Path, text: str) -> tuple[Running, Running]:
    _, a, b = pair(lab)
    path.write_text(text)
    ra = await lab.start(a, text, config_path=path)
    rb = await lab.start(b, instance_toml(priority=100))
    await trio.sleep(2)
    assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
    return ra, rb


def test_reload_adds_a_vip_and_announces_it_without_a_transition(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        ra, _ = await start_pair(lab, path, instance_toml(priority=200))
        wire = lab.wires["lan"]
        transitions = lab.transitions()
        path.write_text(instance_toml(priority=200, vips=[VIP1, VIP2]))
        t_reload = trio.current_time()
        await ra.reload()
        await trio.sleep(1)
        assert lab.transitions() == transitions  # no election, no transition
        assert lab.hosts["a"].held() == {VIP1, VIP2}
        add = lab.find("add", host="a", subject=VIP2)
        garp = lab.find("garp", host="a", subject="192.0.2.101")
        assert add and add[0].time == t_reload
        assert garp and garp[0].seq > add[0].seq and garp[0].time == t_reload
        assert not lab.find("remove", host="a")
        # The adverts now list both addresses. A VRRP-only configuration has no IPVS
        # manager, before or after (test_a_reload_that_adds_an_lvs_side_...).
        last = wire.adverts_from("a")[-1][1]
        assert [str(x) for x in last.addresses] == ["192.0.2.100", "192.0.2.101"]
        assert lab.hosts["a"].ipvs == []
        assert ra.agent.built_parts() == ()

    run_lab(scenario)


LVS_SYNC_ALERTS = """
[ipvs.sync]
interface = "eth0"
instance = "VI_1"
bulk_resync = false

[alerts.webhook]
url = "http://127.0.0.1:9/hook"

[[virtual_server]]
address = "192.0.2.100:80"
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
"""


class NoIpvsKernel:
    """The kernel adapter of a kernel without IPVS (the sync daemons' first open fails)."""

    async def open(self) -> None:
        raise IpvsUnavailable("no IPVS in this test")


def test_a_reload_that_adds_an_lvs_side_sync_and_alerts_builds_and_starts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A VRRP-only agent builds none of the optional parts (agent/supervisor.py); a reload
    that configures them builds each as the start would have (from the running
    configuration), starts it, and hands it the new configuration."""
    monkeypatch.setattr(ipvs_kernel, "IpvsKernel", NoIpvsKernel)
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        ra, _ = await start_pair(lab, path, instance_toml(priority=200))
        agent = ra.agent
        assert agent.built_parts() == ()
        assert lab.hosts["a"].ipvs == []
        running = agent.config
        path.write_text(instance_toml(priority=200) + LVS_SYNC_ALERTS)
        transitions = lab.transitions()
        await ra.reload()
        assert agent.config is not running  # the reload was applied
        assert agent.built_parts() == ("alerts", "sync", "lvs")
        await trio.sleep(1)
        assert lab.transitions() == transitions
        # IPVS: built with the running configuration, then given the new one; its task
        # runs, and the pool keeper has handed it the servers' health.
        [ipvs] = lab.hosts["a"].ipvs
        assert ipvs.configs == [running, agent.config]
        assert ipvs.started
        assert ipvs.health
        # The sync daemons know the deciding instance's state from before they existed,
        # and their task ran (and found no IPVS).
        assert agent.sync.instance_states == {"VI_1": "MASTER"}
        assert agent.sync.deciding_state == "MASTER"
        assert agent.sync.available is False
        # The webhook (delivering to a recorder here): its task runs, so the stop's
        # transition is delivered.
        webhook = agent.alerts.webhook
        assert webhook is not None
        delivered: list[Any] = []

        async def deliver(item: Any) -> None:
            delivered.append(item)

        webhook.deliver = deliver  # type: ignore[method-assign]
        with trio.fail_after(10):
            ra.stop()
            await ra.wait()
        assert [(e.name, e.old, e.new) for e in delivered][:1] == [("VI_1", "MASTER", "STOPPED")]

    run_lab(scenario)


def test_a_status_or_metrics_request_builds_no_part() -> None:
    """A VRRP-only agent's status and metrics report the idle LVS side, checks, anycast and
    sync (as an agent that had built them idle did) without building or starting any of
    them: a read-only request has no side effect."""
    from hadirector.ipvs.manager import idle_status
    from hadirector.status import AnycastStatus, ChecksStatus

    async def scenario(lab: Lab) -> None:
        ra, _ = await start_pair(lab, Path("/nonexistent"), instance_toml(priority=200))
        assert ra.agent.built_parts() == ()
        status = ra.agent.status()
        assert status.ipvs == idle_status()
        assert status.ipvs.available is None and status.ipvs.configured_services == 0
        assert status.checks == ChecksStatus() and status.anycast == AnycastStatus()
        assert status.resync is None
        families = ra.agent.runtime_metrics()
        assert [f.name for f in families] == []  # nothing configured, nothing exported
        await trio.sleep(0.5)
        assert ra.agent.built_parts() == ()
        assert lab.hosts["a"].ipvs == []  # no IPVS adapter was made

    run_lab(scenario)


def test_vips_changed_by_reload_are_the_ones_announced_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    extra = "garp_master_refresh = 1.0\n"

    async def scenario(lab: Lab) -> None:
        ra, _ = await start_pair(lab, path, instance_toml(priority=200, extra=extra))
        path.write_text(instance_toml(priority=200, vips=[VIP2], extra=extra))
        await ra.reload()
        t_reload = trio.current_time()
        await trio.sleep(8)  # past the delayed burst (5 s) and several refreshes
        assert lab.hosts["a"].held() == {VIP2}
        later = {e.subject for e in lab.find("garp", host="a") if e.time > t_reload}
        # Only the address held now is announced: never one that was removed.
        assert later == {"192.0.2.101"}

    run_lab(scenario)


def test_invalid_reload_keeps_running_configuration(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        ra, rb = await start_pair(lab, path, instance_toml(priority=200, vips=[VIP1, VIP2]))
        config = ra.agent.config
        transitions = lab.transitions()
        for broken in (
            "[[vrrp_instance]]\nname = 'VI_1'\n",  # required keys missing
            "this is not toml = = =",
            instance_toml(priority=300),  # out of range
            instance_toml(priority=200, extra='hmac_key_file = "/nonexistent/key"\n'),
        ):
            path.write_text(broken)
            await ra.reload()
            await trio.sleep(0.5)
        path.unlink()
        await ra.reload()
        await trio.sleep(1)
        assert ra.agent.config is config
        assert lab.transitions() == transitions
        assert not lab.find("remove", host="a")
        assert lab.hosts["a"].held() == {VIP1, VIP2}
        assert len(lab.find("config.reload_failed", host="a")) == 5
        assert rb.state("VI_1") == "BACKUP"

    run_lab(scenario)


def test_vip_deleted_externally_is_readded_and_announced() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        a.addresses.vanish(VIP1)
        t_gone = trio.current_time()
        await trio.sleep(0.01)
        assert a.held() == {VIP1}
        readd = [e for e in lab.find("add", host="a") if e.time >= t_gone]
        garp = [e for e in lab.find("garp", host="a") if e.time >= t_gone]
        assert readd and garp and readd[0].seq < garp[0].seq
        assert readd[0].time == t_gone
        assert ra.state("VI_1") == "MASTER"
        # A backup does not put back an address it does not hold.
        b.addresses.held["192.0.2.100/24"] = ra.agent.config.vrrp_instances[0].virtual_addresses[0]
        b.addresses.vanish(VIP1)
        await trio.sleep(0.5)
        assert VIP1 not in b.held()

    run_lab(scenario)


def test_reload_during_the_handover_hold_leaves_no_vip_behind(tmp_path: Path) -> None:
    path_a, path_b = tmp_path / "a.toml", tmp_path / "b.toml"

    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        path_a.write_text(instance_toml(priority=200, vips=[VIP1, VIP2]))
        path_b.write_text(instance_toml(priority=100, vips=[VIP1, VIP2]))
        ra = await lab.start(a, path_a.read_text(), config_path=path_a)
        rb = await lab.start(b, path_b.read_text(), config_path=path_b)
        await trio.sleep(2)
        path_b.write_text(instance_toml(priority=250, vips=[VIP1, VIP2]))
        await rb.reload()
        while ra.state("VI_1") == "MASTER":
            await trio.sleep(0.001)
        # a is BACKUP but still holds both for the handover hold; now it drops VIP2.
        assert a.held() == {VIP1, VIP2}
        path_a.write_text(instance_toml(priority=200, vips=[VIP1]))
        await ra.reload()
        await trio.sleep(1)
        assert rb.state("VI_1") == "MASTER"
        assert a.held() == set()

    run_lab(scenario)


def test_reload_follows_the_plan_restart_for_unicast_peers_in_place_otherwise(
    tmp_path: Path,
) -> None:
    """config.diff decides: new unicast peers need a new socket (the instance restarts and
    sends to the peer), a checksum form is read per advert (the instance goes on)."""
    path = tmp_path / "a.toml"
    unicast = 'unicast_src = "192.0.2.1"\nunicast_peers = ["192.0.2.2"]\n'

    async def scenario(lab: Lab) -> None:
        ra, _ = await start_pair(lab, path, instance_toml(priority=200))
        running = ra.instance("VI_1")
        path.write_text(instance_toml(priority=200, extra="v3_checksum_pseudo_header = false"))
        await ra.reload()
        await trio.sleep(1)
        assert not lab.find("config.reload_failed", host="a")
        assert ra.instance("VI_1") is running
        assert not lab.find("config.instance_removed", host="a")
        assert ra.instance("VI_1").cfg.v3_checksum_pseudo_header is False
        path.write_text(instance_toml(priority=200, extra=unicast))
        await ra.reload()
        await trio.sleep(1)
        assert ra.instance("VI_1") is not running
        assert len(lab.find("config.instance_removed", host="a")) == 1
        assert [str(d) for d in ra.instance("VI_1").sock.destinations] == ["192.0.2.2"]

    run_lab(scenario)
