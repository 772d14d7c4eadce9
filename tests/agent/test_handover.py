"""Handovers between two agents: graceful stop, preemption back, faults, sync groups and
split brain, checked from the VIP add/remove ledger of both directors in virtual time."""

from __future__ import annotations

import pytest
import trio

from hadirector.vrrp.timers import master_down_interval_s, skew_time_s
from tests.agent.fakes import (
    FakeEndpoint,
    Frame,
    Lab,
    Running,
    instance_toml,
    pair,
    run_lab,
)
from tests.agent.helpers import VIP, sync_config, sync_hosts

INTERVAL_CS = 10


async def elect(lab: Lab, a_extra: str = "", b_extra: str = "") -> tuple[Running, Running]:
    a, b = lab.hosts["a"], lab.hosts["b"]
    ra = await lab.start(a, instance_toml(priority=200) + a_extra)
    rb = await lab.start(b, instance_toml(priority=100) + b_extra)
    await trio.sleep(2)
    assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
    return ra, rb


async def stop(running: Running) -> float:
    """Stop an agent (SIGTERM's path) and wait for its run to return (within 5 s); when
    the stop was asked."""
    t_stop = trio.current_time()
    running.stop()
    with trio.fail_after(5):
        await running.wait()
    return t_stop


def test_graceful_stop_is_make_before_break_and_run_returns() -> None:
    async def scenario(lab: Lab) -> None:
        wire, _a, _b = pair(lab)
        ra, rb = await elect(lab)
        t_stop = await stop(ra)
        await trio.sleep(1)
        assert rb.state("VI_1") == "MASTER"
        assert ra.agent.instances["VI_1"].state.value == "STOPPED"
        # The VIP was held by someone at every instant since a first took it.
        t_first = lab.find("add", host="a")[0].time
        assert lab.coverage_gaps(VIP, t_first, trio.current_time()) == []
        # The taker announces before the giver removes.
        b_add = lab.find("add", host="b")[0]
        b_garp = lab.find("garp", host="b")[0]
        a_remove = lab.find("remove", host="a")[0]
        assert b_add.seq < b_garp.seq < a_remove.seq
        # a sent priority 0 (§6.4.2: b waits only Skew_Time), then released after the hold.
        zero = next(f for f, adv in wire.adverts_from("a") if adv.priority == 0)
        assert zero.time == t_stop
        assert b_add.time - zero.time == pytest.approx(skew_time_s(100, INTERVAL_CS, 3))
        assert a_remove.time - b_add.time == pytest.approx(0.1)  # handover_hold default
        assert ra.returned_at == pytest.approx(a_remove.time)
        assert lab.holders(VIP) == {"b"}

    run_lab(scenario)


def test_taker_is_on_the_wire_before_it_reports() -> None:
    """A taker adds its VIPs, announces them and sends its first advert before anything
    else: the transition's log line, notify scripts, sync group and alerts come after, as
    does the ``vip.added`` log line. A client waiting for the announcement (a stopped
    keepalived removes the VIPs with its priority 0) waits for none of that."""

    async def scenario(lab: Lab) -> None:
        wire, _a, _b = pair(lab)
        ra, rb = await elect(lab)
        t_stop = await stop(ra)
        assert rb.state("VI_1") == "MASTER"
        add = lab.find("add", host="b")[0]
        garp = lab.find("garp", host="b")[0]
        advert = next(f for f, adv in wire.adverts_from("b") if f.time >= t_stop)
        (took,) = [e for e in lab.find("transition", host="b") if e.detail["new"] == "MASTER"]
        (logged,) = lab.find("vip.added", host="b")
        assert add.seq < garp.seq < advert.seq < took.seq
        assert garp.seq < logged.seq
        # All in the same instant of the driver: the order is the only difference.
        assert add.time == garp.time == advert.time == took.time

    run_lab(scenario)


def test_the_wake_up_that_finds_master_down_due_adds_announces_and_adverts() -> None:
    """The taker's VIP add (at once: ``add_now``), first announcement and first advert are
    made by the wake-up that found its Master_Down timer due, before its driver runs: the
    driver's ``vip.added`` log line comes after the advert (when the driver made the
    takeover, the log line came between the announcement and the advert), and the
    transition's report after both."""

    async def scenario(lab: Lab) -> None:
        wire, _a, _b = pair(lab)
        ra, rb = await elect(lab)
        t_stop = await stop(ra)
        assert rb.state("VI_1") == "MASTER"
        (add,) = lab.find("add", host="b")
        garp = lab.find("garp", host="b")[0]
        advert = next(f for f, adv in wire.adverts_from("b") if f.time >= t_stop)
        (logged,) = lab.find("vip.added", host="b")
        (took,) = [e for e in lab.find("transition", host="b") if e.detail["new"] == "MASTER"]
        assert add.detail["at_once"] is True
        assert add.seq < garp.seq < advert.seq < logged.seq < took.seq

    run_lab(scenario)


def test_an_ipv6_taker_adds_in_its_driver_and_keeps_the_order() -> None:
    """An IPv6 VIP cannot be added at once (it waits for its local route): the wake-up
    leaves the takeover to the driver, in the same order: add, announcement, advert, then
    the report."""

    async def scenario(lab: Lab) -> None:
        wire = lab.wire("lan6")
        a = lab.host("a", {"eth0": (wire, "fe80::1")})
        b = lab.host("b", {"eth0": (wire, "fe80::2")})
        vips = ["2001:db8::100/64", "2001:db8::101/64"]
        ra = await lab.start(a, instance_toml(priority=200, vips=vips))
        rb = await lab.start(b, instance_toml(priority=100, vips=vips))
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        t_stop = await stop(ra)
        assert rb.state("VI_1") == "MASTER"
        adds = lab.find("add", host="b")
        nas = lab.find("na", host="b")
        advert = next(f for f, adv in wire.adverts_from("b") if f.time >= t_stop)
        (took,) = [e for e in lab.find("transition", host="b") if e.detail["new"] == "MASTER"]
        assert [e.subject for e in adds] == vips
        assert all(e.detail["at_once"] is False for e in adds)
        assert [e.subject for e in nas[:2]] == ["2001:db8::100", "2001:db8::101"]
        assert adds[-1].seq < nas[0].seq
        assert nas[1].seq < advert.seq < took.seq
        assert lab.holders(vips[0]) == lab.holders(vips[1]) == {"b"}

    run_lab(scenario)


def test_preemption_back_after_restart_has_no_gap_and_no_extra_transition() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra, rb = await elect(lab)
        ra.stop()
        await ra.wait()
        await trio.sleep(2)
        t_restart = trio.current_time()
        ra2 = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(3)
        assert (ra2.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        t_first = lab.find("add", host="a")[0].time
        assert lab.coverage_gaps(VIP, t_first, trio.current_time()) == []
        # Restarted a: BACKUP, then MASTER after its own Master_Down_Interval, because b's
        # lower-priority adverts are discarded (§6.4.2, preempt).
        a_master = lab.find("transition", host="a")[-1]
        assert a_master.time - t_restart == pytest.approx(
            master_down_interval_s(200, INTERVAL_CS, 3)
        )
        assert lab.transitions("a") == [
            ("a", "INIT", "BACKUP"),
            ("a", "BACKUP", "MASTER"),
            ("a", "MASTER", "STOPPED"),
            ("a", "INIT", "BACKUP"),
            ("a", "BACKUP", "MASTER"),
        ]
        assert lab.transitions("b") == [
            ("b", "INIT", "BACKUP"),
            ("b", "BACKUP", "MASTER"),
            ("b", "MASTER", "BACKUP"),
        ]
        # Preempted b released only after a had announced.
        a_garp = next(e for e in lab.find("garp", host="a") if e.time >= t_restart)
        b_remove = lab.find("remove", host="b")[-1]
        assert a_garp.seq < b_remove.seq
        assert lab.holders(VIP) == {"a"}

    run_lab(scenario)


def test_link_down_on_master_faults_and_link_up_preempts_back() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, _ = pair(lab)
        ra, rb = await elect(lab)
        a.links.set("eth0", False)
        t_down = trio.current_time()
        await trio.sleep(0)
        await trio.sleep(1)
        assert ra.state("VI_1") == "FAULT"
        assert rb.state("VI_1") == "MASTER"
        # FAULT releases at once (no hold); b takes over after its Master_Down_Interval
        # from the last advert it heard: an outage, which the ledger shows.
        a_remove = lab.find("remove", host="a")[0]
        assert a_remove.time == t_down
        last = max(f.time for f, _ in wire.adverts_from("a") if "b" in f.delivered_to)
        b_master = lab.find("transition", host="b")[-1]
        assert b_master.time - last == pytest.approx(master_down_interval_s(100, INTERVAL_CS, 3))
        assert lab.coverage_gaps(VIP, t_down - 1, b_master.time) == [(t_down, b_master.time)]
        a.links.set("eth0", True)
        t_up = trio.current_time()
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert lab.coverage_gaps(VIP, b_master.time, trio.current_time()) == []
        assert [t[1:] for t in lab.transitions("a")] == [
            ("INIT", "BACKUP"),
            ("BACKUP", "MASTER"),
            ("MASTER", "FAULT"),
            ("FAULT", "BACKUP"),
            ("BACKUP", "MASTER"),
        ]
        a_back = lab.find("transition", host="a")[-1]
        assert a_back.time - t_up == pytest.approx(master_down_interval_s(200, INTERVAL_CS, 3))

    run_lab(scenario)


def test_tracked_interface_down_lowers_priority_and_peer_takes_over() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, _ = pair(lab, extra_interfaces=["eth1"])
        track = 'track_interfaces = [{ name = "eth1", weight = -60 }]\n'
        ra, rb = await elect(lab, a_extra=track)
        t_down = trio.current_time()
        a.links.set("eth1", False)
        await trio.sleep(2)
        # 200 - 60 = 140 is still above 100: nothing moves.
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert {adv.priority for f, adv in wire.adverts_from("a") if f.time > t_down} == {140}

    async def scenario_drop(lab: Lab) -> None:
        wire, a, _ = pair(lab, extra_interfaces=["eth1"])
        track = 'track_interfaces = [{ name = "eth1", weight = -60 }]\n'
        ra = await lab.start(a, instance_toml(priority=150, extra=track))
        rb = await lab.start(lab.hosts["b"], instance_toml(priority=100))
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        t_down = trio.current_time()
        a.links.set("eth1", False)
        await trio.sleep(2)
        # 150 - 60 = 90 < 100: a advertises 90, b discards it (§6.4.2, preempt) and its
        # Master_Down_Timer expires; a hears b's 100 and steps down (§6.4.3).
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("BACKUP", "MASTER")
        after = [adv.priority for f, adv in wire.adverts_from("a") if f.time > t_down]
        assert after and set(after) == {90}
        last_150 = max(f.time for f, adv in wire.adverts_from("a") if adv.priority == 150)
        b_master = lab.find("transition", host="b")[-1]
        assert b_master.time - last_150 == pytest.approx(
            master_down_interval_s(100, INTERVAL_CS, 3)
        )
        assert ra.machine("VI_1").effective_priority == 90
        assert lab.holders(VIP) == {"b"}
        t_first = lab.find("add", host="a")[0].time
        assert lab.coverage_gaps(VIP, t_first, trio.current_time()) == []
        a.links.set("eth1", True)
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")

    run_lab(scenario)
    run_lab(scenario_drop)


def test_sync_group_member_fault_moves_both_instances_to_the_peer() -> None:
    async def scenario(lab: Lab) -> None:
        lan, srv, a, b = sync_hosts(lab)
        ra = await lab.start(a, sync_config(200))
        rb = await lab.start(b, sync_config(100))
        await trio.sleep(2)
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["BACKUP", "BACKUP"]
        t_fault = trio.current_time()
        a.links.set("eth1", False)  # server side of a lost
        await trio.sleep(2)
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["FAULT", "FAULT"]
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        assert a.held() == set()
        assert b.held() == {VIP, "198.51.100.1/24"}
        # VI_1's link is fine: the group's FAULT sends priority 0 on it, so b's VI_1 takes
        # over after Skew_Time and b's group pulls VI_2 along at the same instant.
        zero = [f for f, adv in lan.adverts_from("a") if adv.priority == 0]
        assert zero and zero[0].time == t_fault
        b_vi1 = lab.find("transition", host="b", subject="VI_1")[-1]
        b_vi2 = lab.find("transition", host="b", subject="VI_2")[-1]
        assert b_vi1.time - t_fault == pytest.approx(skew_time_s(100, INTERVAL_CS, 3))
        assert b_vi2.time == b_vi1.time
        assert lab.find("vrrp.group_transition", host="b")[-1].detail["new"] == "MASTER"
        assert not srv.adverts_from("a") or max(f.time for f, _ in srv.adverts_from("a")) < (
            t_fault
        )
        a.links.set("eth1", True)
        await trio.sleep(3)
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["BACKUP", "BACKUP"]
        assert a.held() == {VIP, "198.51.100.1/24"}

    run_lab(scenario)


@pytest.mark.parametrize(
    "first_across",
    ["b", "a"],
)
def test_split_brain_heals_to_one_master_with_a_fresh_announcement(first_across: str) -> None:
    async def scenario(lab: Lab) -> None:
        wire, _, _ = pair(lab)
        extra = "garp_master_delay = 0.0\n"  # no scheduled second burst to mistake for one
        ra, rb = await elect(lab, a_extra=extra, b_extra=extra)
        wire.cut("a", "b")
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "MASTER")
        assert lab.holders(VIP) == {"a", "b"}
        # Heal just after the other master's advert, so that `first_across` speaks first.
        other = "a" if first_across == "b" else "b"
        await trio.sleep_until(wire.adverts_from(other)[-1][0].time + 0.1 + 1e-4)
        wire.heal()
        t_heal = trio.current_time()
        await trio.sleep(2)
        crossing = [f for f in wire.frames if f.time >= t_heal and f.delivered_to]
        assert crossing[0].sender == first_across
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert lab.holders(VIP) == {"a"}
        b_remove = lab.find("remove", host="b")[-1]
        fresh = [e for e in lab.find("garp", host="a") if t_heal <= e.time]
        assert fresh, "the surviving master must re-announce after the heal"
        assert fresh[0].seq < b_remove.seq

    run_lab(scenario)


@pytest.mark.parametrize("lost", ["priority zero", "taker's first advert"])
def test_graceful_stop_survives_a_lost_packet(lost: str) -> None:
    async def scenario(lab: Lab) -> None:
        wire, _, _ = pair(lab)
        ra, rb = await elect(lab)
        dropped: list[float] = []

        def drop(frame: Frame, to: FakeEndpoint) -> bool:
            advert = frame.advert()
            if dropped or advert is None:
                return False
            hit = (
                frame.sender == "a" and advert.priority == 0
                if lost == "priority zero"
                else frame.sender == "b"
            )
            if hit:
                dropped.append(frame.time)
            return hit

        wire.drop = drop
        await stop(ra)
        await trio.sleep(1)
        assert dropped
        assert rb.state("VI_1") == "MASTER"
        t_first = lab.find("add", host="a")[0].time
        assert lab.coverage_gaps(VIP, t_first, trio.current_time()) == []
        assert lab.find("transition", host="a")[-1].detail["reason"] == "stopped (handed over)"
        b_add = lab.find("add", host="b")[0]
        a_remove = lab.find("remove", host="a")[0]
        if lost == "taker's first advert":
            # The draining master repeats priority 0 each interval; the new master answers
            # it at once (§6.4.3), and a releases one handover hold after hearing that.
            repeat = next(
                f for f, adv in wire.adverts_from("a") if adv.priority == 0 and f.time > b_add.time
            )
            answer = next(f for f, _ in wire.adverts_from("b") if f.time >= repeat.time)
            assert answer.time == repeat.time and "a" in answer.delivered_to
            assert a_remove.time - repeat.time == pytest.approx(0.1)
        else:
            assert a_remove.time - b_add.time == pytest.approx(0.1)
        if lost == "priority zero":
            assert b_add.time - dropped[0] == pytest.approx(0.1 + skew_time_s(100, INTERVAL_CS, 3))

    run_lab(scenario)


def test_sync_group_fault_on_the_backup_keeps_the_master_and_recovers() -> None:
    async def scenario(lab: Lab) -> None:
        _lan, _srv, a, b = sync_hosts(lab)
        ra = await lab.start(a, sync_config(200))
        rb = await lab.start(b, sync_config(100))
        await trio.sleep(2)
        b.links.set("eth1", False)
        await trio.sleep(1)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["FAULT", "FAULT"]
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        b.links.set("eth1", True)
        await trio.sleep(2)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["BACKUP", "BACKUP"]
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        assert not lab.find("add", host="b")
        for inst in ("VI_1", "VI_2"):
            assert [t[1:] for t in lab.transitions("a", inst)] == [
                ("INIT", "BACKUP"),
                ("BACKUP", "MASTER"),
            ]

    run_lab(scenario)


@pytest.mark.parametrize("stamped", [True, False])
def test_skew_time_counts_from_the_kernel_receive_stamp(
    stamped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A priority-0 advert that waited 20 ms in the receive socket (the wire's delay here)
    starts Skew_Time from when the kernel received it, as its time stamp says: the taker
    adds the VIP Skew_Time after the advert was sent, not Skew_Time after it was read.
    Without a stamp, Skew_Time counts from the read."""
    from hadirector.agent import instance

    monkeypatch.setattr(instance, "kernel_stamp_clock_ns", lambda: round(trio.current_time() * 1e9))
    delay_s = 0.02

    async def scenario(lab: Lab) -> None:
        wire, _a, _b = pair(lab, delay_s=delay_s)
        wire.stamps = stamped
        ra, rb = await elect(lab)
        t_stop = await stop(ra)
        assert rb.state("VI_1") == "MASTER"
        zero = next(f for f, adv in wire.adverts_from("a") if adv.priority == 0)
        assert zero.time == t_stop
        b_add = lab.find("add", host="b")[0]
        skew = skew_time_s(100, INTERVAL_CS, 3)
        expected = skew if stamped else delay_s + skew
        assert b_add.time - zero.time == pytest.approx(expected)

    run_lab(scenario)


def test_sync_group_members_taking_over_together_announce_before_either_reports() -> None:
    """Both members of b's sync group take over in the same instant (a stopped: priority 0
    on both LANs). Each driver adds and announces its VIP, then lets the other do the same
    before it reports: both VIPs are added and announced before either transition's
    report (log line, scripts, alerts, the group), so the second member's VIP does not wait
    for the first member's report."""

    async def scenario(lab: Lab) -> None:
        _lan, _srv, a, b = sync_hosts(lab)
        ra = await lab.start(a, sync_config(200))
        rb = await lab.start(b, sync_config(100))
        await trio.sleep(2)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["BACKUP", "BACKUP"]
        t_stop = await stop(ra)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        adds = [e for e in lab.find("add", host="b") if e.time >= t_stop]
        garps = [e for e in lab.find("garp", host="b") if e.time >= t_stop]
        reports = [
            e
            for e in lab.find("transition", host="b")
            if e.time >= t_stop and e.detail["new"] == "MASTER"
        ]
        assert len(adds) == 2 and len(reports) == 2
        assert {e.time for e in adds + reports} == {adds[0].time}  # one virtual instant
        first_report = min(e.seq for e in reports)
        assert max(e.seq for e in adds) < first_report
        assert len([e for e in garps if e.seq < first_report]) >= 2

    run_lab(scenario)


def test_a_sync_group_member_made_master_by_its_group_takes_over_before_the_first_reports() -> None:
    """a stops, and its priority 0 for VI_2 is lost: b's VI_2 would wait for its
    Master_Down timer; its group makes it master when VI_1 takes over. The group is told
    as soon as VI_1's VIP, announcement and advert are out (``command_members``), and VI_2,
    parked, takes the command at once (``Instance.command``): its VIP is added and
    announced in the same wake-up, before VI_1's driver runs (its ``vip.added`` line) and
    before VI_1's transition is reported, not after (VI_2's VIP was late by the whole
    report). The group's own report (log line, scripts) still comes after both members'."""

    async def scenario(lab: Lab) -> None:
        _lan, srv, a, b = sync_hosts(lab)
        ra = await lab.start(a, sync_config(200))
        rb = await lab.start(b, sync_config(100))
        await trio.sleep(2)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["BACKUP", "BACKUP"]

        def drop(frame: Frame, to: FakeEndpoint) -> bool:
            advert = frame.advert()
            return frame.sender == "a" and advert is not None and advert.priority == 0

        srv.drop = drop
        t_stop = await stop(ra)
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        (add1,) = [e for e in lab.find("add", host="b") if e.subject == VIP]
        (add2,) = [e for e in lab.find("add", host="b") if e.subject == "198.51.100.1/24"]
        garp2 = next(e for e in lab.find("garp", host="b") if e.subject == "198.51.100.1")
        reports = {
            e.subject: e
            for e in lab.find("transition", host="b")
            if e.time >= t_stop and e.detail["new"] == "MASTER"
        }
        assert reports["VI_2"].detail["reason"] == "sync group G1"
        assert add1.time == add2.time == reports["VI_1"].time  # one virtual instant
        (logged1,) = [e for e in lab.find("vip.added", host="b") if e.subject == "VI_1"]
        assert add1.seq < add2.seq < garp2.seq < logged1.seq < reports["VI_1"].seq
        assert add2.detail["at_once"] is True
        (group,) = [e for e in lab.find("vrrp.group_transition", host="b") if e.time >= t_stop]
        assert group.detail["new"] == "MASTER"
        assert max(r.seq for r in reports.values()) < group.seq

    run_lab(scenario)


def test_a_busy_backup_serves_the_adverts_that_came_before_its_deadline() -> None:
    """The backup's driver is busy for longer than Master_Down_Interval while the master's
    adverts queue for it: when it is free, its Master_Down timer is due, but adverts that
    reached the host before that deadline are served first, and it stays backup (RFC 5798
    §6.4.2: an advert from the master resets Master_Down_Timer)."""
    stall = object()

    async def scenario(lab: Lab) -> None:
        pair(lab)
        ra, rb = await elect(lab)
        inst = rb.agent.instances["VI_1"]
        perform = inst._perform

        async def slow_perform(actions: list[object]) -> None:
            if stall in actions:
                await trio.sleep(5 * master_down_interval_s(100, INTERVAL_CS, 3))
                return
            await perform(actions)

        inst._perform = slow_perform  # type: ignore[method-assign]
        queued = inst.counters["adverts_dropped"]
        inst.post("perform", [stall])
        await trio.sleep(10 * master_down_interval_s(100, INTERVAL_CS, 3))
        assert inst.counters["adverts_dropped"] == queued
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert [e for e in lab.find("transition", host="b") if e.detail["new"] == "MASTER"] == []

    run_lab(scenario)
