"""Election between agents on a simulated segment (RFC 5798 §6.4), in exact virtual time."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
import trio

from hadirector.vrrp.timers import master_down_interval_s
from tests.agent.fakes import Lab, instance_toml, pair, run_lab

VIP = "192.0.2.100/24"
INTERVAL_CS = 10  # 0.1 s, the instance_toml default


def test_higher_priority_becomes_master_and_alone_holds_the_vip() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(3)
        assert ra.state("VI_1") == "MASTER"
        assert rb.state("VI_1") == "BACKUP"
        # §6.4.1/§6.4.2: both start BACKUP; a's shorter Master_Down_Interval fires first.
        t_master = lab.find("transition", host="a")[-1].time
        assert t_master == pytest.approx(master_down_interval_s(200, INTERVAL_CS, 3), abs=1e-9)
        assert lab.transitions("b") == [("b", "INIT", "BACKUP")]
        # Exactly one holder from the moment a took over until now.
        assert lab.holders(VIP) == {"a"}
        assert not lab.find("add", host="b")
        assert lab.coverage_gaps(VIP, t_master, trio.current_time()) == []
        # a keeps advertising every Advertisement_Interval with its own priority.
        sent = [(f.time, adv.priority) for f, adv in wire.adverts_from("a")]
        assert {p for _, p in sent} == {200}
        gaps = {round(t2 - t1, 9) for (t1, _), (t2, _) in itertools.pairwise(sent)}
        assert gaps == {0.1}
        assert not wire.adverts_from("b")  # a backup is silent (§6.4.2)

    run_lab(scenario)


def test_equal_priority_higher_primary_address_wins() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=100))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(3)
        # §6.4.3: equal priority, the greater primary address (b, 192.0.2.2) stays master.
        assert ra.state("VI_1") == "BACKUP"
        assert rb.state("VI_1") == "MASTER"
        assert lab.holders(VIP) == {"b"}
        assert ra.machine("VI_1").counters["preempted"] == 1

    run_lab(scenario)


def test_master_crash_backup_takes_over_after_master_down_interval() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2.05)
        wire.isolate("a")  # a falls silent (crash, cable cut)
        t_cut = trio.current_time()
        await trio.sleep(2)
        assert rb.state("VI_1") == "MASTER"
        last_heard = max(f.time for f, _ in wire.adverts_from("a") if "b" in f.delivered_to)
        assert last_heard < t_cut
        took_over = lab.find("transition", host="b")[-1]
        assert took_over.detail["new"] == "MASTER"
        # §6.4.2: Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time (priority 100).
        expected = master_down_interval_s(100, INTERVAL_CS, 3)
        assert took_over.time - last_heard == pytest.approx(expected, abs=1e-3)
        add = lab.find("add", host="b")[0]
        garp = lab.find("garp", host="b")[0]
        first_advert = wire.adverts_from("b")[0][0]
        # Taker order: address up, announced, then the first advert (make-before-break).
        assert add.seq < garp.seq < first_advert.seq
        assert add.time == garp.time == first_advert.time == took_over.time

    run_lab(scenario)


def test_address_owner_starts_master_at_once() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(1)  # b is master by now
        assert rb.state("VI_1") == "MASTER"
        t_start = trio.current_time()
        ra = await lab.start(a, instance_toml(priority=255))
        await trio.sleep(0.05)
        # §6.4.1: priority 255 goes straight to MASTER, no Master_Down wait.
        assert lab.transitions("a") == [("a", "INIT", "MASTER")]
        assert ra.state("VI_1") == "MASTER"
        assert lab.find("add", host="a")[0].time == t_start
        first = wire.adverts_from("a")[0]
        assert first[0].time == t_start and first[1].priority == 255
        # b hears the owner and steps down (§6.4.3), releasing after the handover hold.
        assert rb.state("VI_1") == "BACKUP"
        await trio.sleep(1)
        assert lab.holders(VIP) == {"a"}
        assert lab.coverage_gaps(VIP, 0.5, trio.current_time()) == []

    run_lab(scenario)


def test_ipv6_instance_elects_and_sends_unsolicited_na() -> None:
    async def scenario(lab: Lab) -> None:
        wire = lab.wire("lan6")
        a = lab.host("a", {"eth0": (wire, "fe80::1")})
        b = lab.host("b", {"eth0": (wire, "fe80::2")})
        vip = "2001:db8::100/64"
        ra = await lab.start(a, instance_toml(priority=200, vips=[vip]))
        rb = await lab.start(b, instance_toml(priority=100, vips=[vip]))
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert lab.holders(vip) == {"a"}
        assert [e.subject for e in lab.find("na", host="a")][:1] == ["2001:db8::100"]
        assert not lab.find("garp")
        dst = wire.adverts_from("a")[0][0].dst
        assert dst == ipaddress.IPv6Address("ff02::12")

    run_lab(scenario)


def test_three_routers_the_highest_backup_takes_over_first() -> None:
    async def scenario(lab: Lab) -> None:
        wire = lab.wire("lan")
        hosts = {
            name: lab.host(name, {"eth0": (wire, f"192.0.2.{i}")})
            for i, name in enumerate(("a", "b", "c"), start=1)
        }
        prio = {"a": 200, "b": 100, "c": 150}
        run = {n: await lab.start(h, instance_toml(priority=prio[n])) for n, h in hosts.items()}
        await trio.sleep(2)
        assert {n: r.state("VI_1") for n, r in run.items()} == {
            "a": "MASTER",
            "b": "BACKUP",
            "c": "BACKUP",
        }
        wire.isolate("a")
        await trio.sleep(2)
        # §6.1: Skew_Time shrinks with priority, so c (150) fires before b (100) and its
        # first advert resets b's timer.
        assert run["c"].state("VI_1") == "MASTER"
        assert run["b"].state("VI_1") == "BACKUP"
        assert lab.transitions("b") == [("b", "INIT", "BACKUP")]
        last = max(f.time for f, _ in wire.adverts_from("a") if "c" in f.delivered_to)
        took = lab.find("transition", host="c")[-1].time
        assert took - last == pytest.approx(master_down_interval_s(150, INTERVAL_CS, 3))
        assert lab.holders(VIP) == {"a", "c"}  # a is cut off, not stopped

    run_lab(scenario)
