"""More life-cycle scenarios of a pair: stops without a peer, crash and restart, preemption
settings, VRRPv2 passwords, reloads that move mastership, sync-group handover, a slow wire
and tracked files."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from hadirector.vrrp.timers import master_down_interval_s
from tests.agent.fakes import Lab, Running, instance_toml, pair, run_lab
from tests.agent.helpers import sync_hosts

VIP = "192.0.2.100/24"
INTERVAL_CS = 10
DOWN_100 = master_down_interval_s(100, INTERVAL_CS, 3)
DOWN_200 = master_down_interval_s(200, INTERVAL_CS, 3)


async def elect(lab: Lab, a_cfg: str, b_cfg: str) -> tuple[Running, Running]:
    ra = await lab.start(lab.hosts["a"], a_cfg)
    rb = await lab.start(lab.hosts["b"], b_cfg)
    await trio.sleep(2)
    assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
    return ra, rb


def test_stop_without_a_peer_releases_after_the_drain_bound() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(2)
        t_stop = trio.current_time()
        ra.stop()
        await ra.wait()
        # Nobody answered: the VIP stays for a priority-1 backup's Master_Down_Interval.
        removed = lab.find("remove", host="a")[0]
        assert removed.time - t_stop == pytest.approx(master_down_interval_s(1, INTERVAL_CS, 3))
        assert lab.find("transition", host="a")[-1].detail["reason"] == "stopped (no taker heard)"
        assert a.held() == set()

    run_lab(scenario)


def test_stop_as_backup_returns_at_once_and_touches_nothing() -> None:
    async def scenario(lab: Lab) -> None:
        pair(lab)
        ra, rb = await elect(lab, instance_toml(priority=200), instance_toml(priority=100))
        t_stop = trio.current_time()
        rb.stop()
        await rb.wait()
        assert rb.returned_at == t_stop
        assert rb.host.addresses.log == []  # never held, nothing to remove
        assert lab.transitions("b")[-1] == ("b", "BACKUP", "STOPPED")
        await trio.sleep(1)
        assert ra.state("VI_1") == "MASTER"

    run_lab(scenario)


def test_crashed_master_restarts_clears_its_stale_vip_then_preempts() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, _b = pair(lab)
        ra, rb = await elect(lab, instance_toml(priority=200), instance_toml(priority=100))
        ra.kill()  # no handover; the kernel keeps a's address
        await trio.sleep(1)
        assert rb.state("VI_1") == "MASTER"
        assert lab.holders(VIP) == {"a", "b"}
        t_restart = trio.current_time()
        ra2 = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(0.01)
        # The restarted agent drops the stale address before it even runs VRRP.
        stale = lab.find("remove", host="a")[0]
        assert stale.time == t_restart
        assert stale.seq < lab.find("vrrp.start", host="a")[-1].seq
        assert lab.holders(VIP, t_restart) == {"b"}
        await trio.sleep(2)
        assert (ra2.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert lab.coverage_gaps(VIP, t_restart, trio.current_time()) == []
        assert lab.holders(VIP) == {"a"}
        assert len(wire.endpoints) == 2  # the killed agent's socket is gone

    run_lab(scenario)


def test_preempt_false_leaves_a_working_master_alone() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        ra = await lab.start(a, instance_toml(priority=200, extra="preempt = false\n"))
        await trio.sleep(5)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("BACKUP", "MASTER")
        assert lab.transitions("a") == [("a", "INIT", "BACKUP")]
        # It still takes over when the master goes away.
        rb.stop()
        await rb.wait()
        await trio.sleep(1)
        assert ra.state("VI_1") == "MASTER"
        assert lab.coverage_gaps(VIP, 1, trio.current_time()) == []

    run_lab(scenario)


def test_preempt_delay_holds_takeover_for_the_configured_time() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        t_start = trio.current_time()
        ra = await lab.start(a, instance_toml(priority=200, extra="preempt_delay = 2.0\n"))
        await trio.sleep(5)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        took = lab.find("transition", host="a")[-1].time
        # Within the delay b's adverts reset a's timer; after it they are discarded and
        # a's Master_Down_Timer, last reset by an advert inside the window, expires.
        last_accepted = max(
            f.time
            for f, _ in wire.adverts_from("b")
            if f.time < t_start + 2 and "a" in f.delivered_to
        )
        assert took - last_accepted == pytest.approx(DOWN_200)
        assert t_start + 2 <= took <= t_start + 2 + DOWN_200
        assert ra.machine("VI_1").counters["preempt_delayed"] > 0

    run_lab(scenario)


V2 = 'version = 2\nauth_type = "pass"\nauth_pass = "{pw}"\n'


def test_vrrp_v2_password_must_match() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        ra = await lab.start(
            a, instance_toml(priority=200, advert_interval_s=1, extra=V2.format(pw="s3cret"))
        )
        rb = await lab.start(
            b, instance_toml(priority=100, advert_interval_s=1, extra=V2.format(pw="s3cret"))
        )
        await trio.sleep(6)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        adv = wire.adverts_from("a")[-1][1]
        assert (adv.version, adv.auth_type, adv.auth_data) == (2, 1, b"s3cret\0\0")
        # A third router with another password is refused, even with a higher priority.
        c = lab.host("c", {"eth0": (wire, "192.0.2.3")})
        rc = await lab.start(
            c, instance_toml(priority=250, advert_interval_s=1, extra=V2.format(pw="other"))
        )
        await trio.sleep(6)
        assert ra.state("VI_1") == "MASTER" and rb.state("VI_1") == "BACKUP"
        assert rc.state("VI_1") == "MASTER"  # it hears nobody it accepts either
        assert ra.instance("VI_1").counters["rejected_auth"] > 0
        assert rb.instance("VI_1").counters["rejected_auth"] > 0

    run_lab(scenario)


def test_v2_interval_mismatch_is_rejected() -> None:
    async def scenario(lab: Lab) -> None:
        pair(lab)
        ra = await lab.start(
            lab.hosts["a"], instance_toml(priority=200, advert_interval_s=1, extra="version = 2\n")
        )
        rb = await lab.start(
            lab.hosts["b"], instance_toml(priority=100, advert_interval_s=2, extra="version = 2\n")
        )
        await trio.sleep(10)
        # RFC 3768 §7.1: adverts with another interval are discarded: both end master.
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "MASTER")
        assert rb.instance("VI_1").counters["rejected_interval_mismatch"] > 0

    run_lab(scenario)


def test_reload_raising_backup_priority_moves_mastership_once(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"

    async def scenario(lab: Lab) -> None:
        pair(lab)
        path.write_text(instance_toml(priority=100))
        ra = await lab.start(lab.hosts["a"], instance_toml(priority=200))
        rb = await lab.start(lab.hosts["b"], path.read_text(), config_path=path)
        await trio.sleep(2)
        path.write_text(instance_toml(priority=250))
        t_reload = trio.current_time()
        await rb.reload()
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("BACKUP", "MASTER")
        assert [t[1:] for t in lab.transitions("b")] == [("INIT", "BACKUP"), ("BACKUP", "MASTER")]
        assert [t[1:] for t in lab.transitions("a")] == [
            ("INIT", "BACKUP"),
            ("BACKUP", "MASTER"),
            ("MASTER", "BACKUP"),
        ]
        took = lab.find("transition", host="b")[-1].time
        # b now discards a's 200 and takes over when its own Master_Down_Timer expires.
        assert took - t_reload <= master_down_interval_s(250, INTERVAL_CS, 3) + 1e-9
        assert lab.coverage_gaps(VIP, 1, trio.current_time()) == []

    run_lab(scenario)


def test_reload_removing_the_master_instance_hands_over_make_before_break(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        pair(lab)
        other = instance_toml(name="VI_9", vrid=99, priority=200, vips=["192.0.2.199/24"])
        path.write_text(instance_toml(priority=200) + other)
        ra = await lab.start(lab.hosts["a"], path.read_text(), config_path=path)
        rb = await lab.start(lab.hosts["b"], instance_toml(priority=100))
        await trio.sleep(2)
        path.write_text(other)
        await ra.reload()
        await trio.sleep(1)
        assert "VI_1" not in ra.agent.instances
        assert rb.state("VI_1") == "MASTER"
        assert ra.state("VI_9") == "MASTER"
        assert lab.coverage_gaps(VIP, 1, trio.current_time()) == []
        assert lab.holders(VIP) == {"b"}
        assert lab.find("config.instance_removed", host="a")

    run_lab(scenario)


SYNC = """
[[sync_group]]
name = "G1"
instances = ["VI_1", "VI_2"]
"""


def test_sync_group_graceful_stop_hands_over_both_without_a_gap() -> None:
    async def scenario(lab: Lab) -> None:
        _lan, _srv, a, b = sync_hosts(lab)

        def cfg(priority: int) -> str:
            return (
                instance_toml(priority=priority)
                + instance_toml(
                    name="VI_2",
                    interface="eth1",
                    vrid=52,
                    priority=priority,
                    vips=["198.51.100.1/24"],
                )
                + SYNC
            )

        ra = await lab.start(a, cfg(200))
        rb = await lab.start(b, cfg(100))
        await trio.sleep(2)
        ra.stop()
        await ra.wait()
        await trio.sleep(1)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        for vip in (VIP, "198.51.100.1/24"):
            assert lab.coverage_gaps(vip, 1, trio.current_time()) == [], vip
        assert b.held() == {VIP, "198.51.100.1/24"} and a.held() == set()

    run_lab(scenario)


def test_slow_wire_shifts_takeover_by_the_delay() -> None:
    async def scenario(lab: Lab) -> None:
        wire, _, _ = pair(lab, delay_s=0.005)
        _ra, rb = await elect(lab, instance_toml(priority=200), instance_toml(priority=100))
        wire.isolate("a")
        await trio.sleep(1)
        last_sent = max(f.time for f, _ in wire.adverts_from("a") if "b" in f.delivered_to)
        took = lab.find("transition", host="b")[-1].time
        assert took - last_sent == pytest.approx(0.005 + DOWN_100, abs=1e-6)
        assert rb.state("VI_1") == "MASTER"

    run_lab(scenario)


def test_tracked_file_weight_moves_mastership(tmp_path: Path) -> None:
    flag = tmp_path / "maint"
    flag.write_text("0\n")
    track = f'[[track_file]]\nname = "maint"\npath = "{flag}"\nweight = -120\n'

    async def scenario(lab: Lab) -> None:
        pair(lab)
        ra, rb = await elect(
            lab,
            instance_toml(priority=200, extra='track_files = ["maint"]') + track,
            instance_toml(priority=100),
        )
        flag.write_text("1\n")  # 200 - 120 = 80 < 100
        await trio.sleep(3)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("BACKUP", "MASTER")
        assert lab.coverage_gaps(VIP, 1, trio.current_time()) == []
        flag.write_text("0\n")
        await trio.sleep(3)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")

    run_lab(scenario)


def test_link_down_on_backup_faults_it_and_nothing_moves() -> None:
    async def scenario(lab: Lab) -> None:
        _, _, b = pair(lab)
        ra, rb = await elect(lab, instance_toml(priority=200), instance_toml(priority=100))
        b.links.set("eth0", False)
        await trio.sleep(1)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "FAULT")
        b.links.set("eth0", True)
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert not lab.find("add", host="b")
        assert [t[1:] for t in lab.transitions("a")] == [("INIT", "BACKUP"), ("BACKUP", "MASTER")]

    run_lab(scenario)
