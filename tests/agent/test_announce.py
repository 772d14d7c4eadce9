"""Announcement schedule of a new master (README.md "Announcements and handover"):
a burst of ``garp_master_repeat`` per address ``garp_interval`` apart, a second burst after
``garp_master_delay``, then one every ``garp_master_refresh``; all of it stops on release."""

from __future__ import annotations

import pytest
import trio

from tests.agent.fakes import Lab, instance_toml, pair, run_lab

EXTRA = (
    "garp_master_repeat = 3\n"
    "garp_interval = 0.01\n"
    "garp_master_delay = 2.0\n"
    "garp_master_refresh = 4.0\n"
)


def test_burst_delayed_burst_and_refresh_then_silence_after_release() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(
            a, instance_toml(priority=200, vips=["192.0.2.100/24", "192.0.2.101/24"], extra=EXTRA)
        )
        await trio.sleep(15)
        t0 = lab.find("add", host="a")[0].time
        for ip in ("192.0.2.100", "192.0.2.101"):
            times = [e.time - t0 for e in lab.find("garp", host="a", subject=ip)]
            # First burst: 3 at 10 ms; delayed burst 2 s after it: 3 more; refresh every 4 s.
            first = [0.0, 0.01, 0.02]
            second = [0.02 + 2.0 + k * 0.01 for k in range(3)]
            refresh_start = second[-1] + 0.01
            refresh = [refresh_start + 4.0 * k for k in (1, 2, 3)]
            assert times == pytest.approx(first + second + refresh), ip
        ra.stop()
        await ra.wait()
        n = len(lab.find("garp", host="a"))
        await trio.sleep(10)
        assert len(lab.find("garp", host="a")) == n  # nothing announced once released

    run_lab(scenario)


def test_preempted_master_stops_announcing() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        rb = await lab.start(b, instance_toml(priority=100, extra=EXTRA))
        await trio.sleep(1)
        ra = await lab.start(a, instance_toml(priority=200, extra=EXTRA))
        await trio.sleep(20)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        released = lab.find("remove", host="b")[0].time
        assert all(e.time <= released for e in lab.find("garp", host="b"))
        assert len(lab.find("garp", host="b")) == 3  # only the first burst ran before

    run_lab(scenario)


def test_a_burst_due_during_the_handover_hold_is_not_sent() -> None:
    """A preempted master keeps its VIPs for ``handover_hold`` but announces nothing once it
    has stepped down: its delayed burst falling inside the hold would draw the clients
    back from the new master (seen with keepalived preempting: the client flapped)."""

    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        b_extra = "garp_master_repeat = 3\ngarp_master_delay = 5.0\nhandover_hold = 3.0\n"
        rb = await lab.start(b, instance_toml(priority=100, extra=b_extra))
        await trio.sleep(4.2)  # b is master (Master_Down_Interval 3.61 s)
        ra = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(12)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        acquired = lab.find("add", host="b")[0].time
        stepped_down = lab.find("transition", host="b")[-1].time
        released = lab.find("remove", host="b")[-1].time
        # The delayed burst was due inside the hold: after the step-down, before release.
        assert stepped_down < acquired + 5.0 < released
        garps = [e.time for e in lab.find("garp", host="b")]
        assert len(garps) == 3 and all(t <= stepped_down for t in garps)

    run_lab(scenario)


def test_a_stopping_master_announces_nothing_after_its_priority_0() -> None:
    """A master stopped (SIGTERM) sends priority 0 and keeps its VIPs until it hears the
    taker, then ``handover_hold`` more; its delayed burst falling in that drain must not go
    out: it would draw the clients back from the taker just before the VIPs go (seen in
    the namespace bench: 4.9 s without replies, until the client's ARP entry was probed)."""

    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        a_extra = "garp_master_delay = 2.0\nhandover_hold = 0.5\n"
        ra = await lab.start(a, instance_toml(priority=200, extra=a_extra))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(1)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        acquired = lab.find("add", host="a")[0].time
        # Stop just before the delayed burst: the drain (Skew_Time + hold) covers it.
        await trio.sleep_until(acquired + 2.0 - 0.01)
        t_stop = trio.current_time()
        ra.stop()
        with trio.fail_after(5):
            await ra.wait()
        released = lab.find("remove", host="a")[-1].time
        assert released > acquired + 2.0  # the burst was due inside the drain
        zero = next(f for f, adv in wire.adverts_from("a") if adv.priority == 0)
        assert zero.time == t_stop
        assert [e.time for e in lab.find("garp", host="a") if e.time >= t_stop] == []
        assert rb.state("VI_1") == "MASTER"
        assert lab.find("garp", host="b")

    run_lab(scenario)


def test_instances_mastering_together_keep_each_their_schedule() -> None:
    """Three instances of one agent become master together: their delayed bursts fall due
    together and are made by the agent's one repeats task (agent/repeats.py); each VIP still
    gets its own full schedule."""

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        config = "".join(
            instance_toml(
                name=f"VI_{k}",
                vrid=50 + k,
                priority=200,
                vips=[f"192.0.2.{100 + k}/24"],
                extra=EXTRA,
            )
            for k in range(3)
        )
        ra = await lab.start(a, config)
        await trio.sleep(15)
        for k in range(3):
            ip = f"192.0.2.{100 + k}"
            t0 = next(e.time for e in lab.find("add", host="a") if e.subject.startswith(ip))
            times = [e.time - t0 for e in lab.find("garp", host="a", subject=ip)]
            second = [0.02 + 2.0 + n * 0.01 for n in range(3)]
            refresh = [second[-1] + 0.01 + 4.0 * n for n in (1, 2, 3)]
            assert times == pytest.approx([0.0, 0.01, 0.02, *second, *refresh]), ip
        assert {ra.state(f"VI_{k}") for k in range(3)} == {"MASTER"}
        ra.stop()
        await ra.wait()

    run_lab(scenario)
