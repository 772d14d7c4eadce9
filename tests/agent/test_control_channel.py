"""An instance's control events never wait behind adverts, and every VIP change is made by
the instance's driver.

- A backup flooded with 20,000 adverts/s (bursts of 2,000 per advert interval, more than
  its advert queue holds) still applies a reload, a link-down and a stop within one advert
  interval: each is posted at the instant of a burst, while the advert queue is full
  (adverts are being dropped), and is served before the adverts queued ahead of it.
- A VIP deleted behind a master's back is put back by the driver, so a release decided
  while that add is in flight comes after it and removes it: no VIP is left on a director
  that is not master.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import trio

from hadirector import agent as agent_module
from hadirector.vrrp import codec
from tests.agent.fakes import (
    INTRUDER,
    FakeEndpoint,
    Frame,
    Lab,
    Running,
    Wire,
    advert_bytes,
    instance_toml,
    pair,
    run_lab,
)

VIP = "192.0.2.100/24"
INTERVAL_S = 0.1
STRANGER = ipaddress.IPv4Address("192.0.2.66")
FLOOD_PER_S = 20_000
BURST = round(FLOOD_PER_S * INTERVAL_S)  # one advert interval's worth at once


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (in virtual time, bounded by the lab's timeout) until ``predicate`` holds."""
    while not predicate():
        await trio.sleep(0.001)


async def flood(wire: Wire) -> None:
    """20,000 valid adverts/s for VRID 51 at priority 50 from a third party."""
    payload = advert_bytes(vrid=51, priority=50, src=STRANGER)
    while True:
        for _ in range(BURST):
            wire.inject(payload, src=STRANGER)
        await trio.sleep(INTERVAL_S)


async def burst(wire: Wire, rb: Running) -> float:
    """One advert interval's worth of the flood at once, returning (at the same virtual
    instant) once b's instance has taken it all in, with its advert queue full.

    An idle driver lets the receive path hand each advert to the machine at once; adverts
    that arrive while the driver is busy (sending, changing VIPs) wait in the advert queue.
    So the queue is then filled to its bound, as such a burst leaves it (the last advert is
    dropped): the control event posted next must overtake all of it."""
    inst = rb.instance("VI_1")
    accepted = inst.counters["adverts_accepted"]
    dropped = inst.counters["adverts_dropped"]
    payload = advert_bytes(vrid=51, priority=50, src=STRANGER)
    for _ in range(BURST):
        wire.inject(payload, src=STRANGER)
    while inst.counters["adverts_accepted"] < accepted + BURST:
        await trio.lowlevel.checkpoint()  # other tasks run, virtual time stands still
    advert = codec.decode(payload, src=STRANGER, dst=codec.MCAST_V4)
    while inst.counters["adverts_dropped"] == dropped:
        inst.post("advert", advert, STRANGER)
    return trio.current_time()


def test_flooded_backup_still_reloads_goes_down_and_stops_within_one_interval() -> None:
    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)

        def to_b_only(frame: Frame, ep: FakeEndpoint) -> bool:
            return frame.sender == INTRUDER and ep.host.name != "b"

        wire.drop = to_b_only
        await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(1)
        assert rb.state("VI_1") == "BACKUP"
        lab.nursery.start_soon(flood, wire)
        inst = rb.instance("VI_1")
        machine = rb.machine("VI_1")

        # Reload: a new priority is applied at once.
        t_reload = await burst(wire, rb)
        await rb.apply_config(instance_toml(priority=150))
        await until(lambda: bool(lab.find("config.instance_updated", host="b")))
        assert lab.find("config.instance_updated", host="b")[0].time - t_reload < INTERVAL_S
        assert machine.cfg.priority == 150

        # Link down: FAULT at once, before the adverts queued ahead of the event.
        await burst(wire, rb)
        ignored = machine.counters["ignored_inactive"]
        b.links.set("eth0", False)
        t_down = lab.find("link", host="b")[-1].time
        await until(lambda: rb.state("VI_1") == "FAULT")
        fault = lab.find("transition", host="b")[-1]
        assert fault.detail["new"] == "FAULT"
        assert fault.time - t_down < INTERVAL_S
        # Adverts that were queued when the link went were handled after it (in FAULT).
        await until(lambda: machine.counters["ignored_inactive"] > ignored)

        b.links.set("eth0", True)
        await until(lambda: rb.state("VI_1") == "BACKUP")

        # Stop: the instance is stopped at once.
        t_stop = await burst(wire, rb)
        rb.stop()
        await inst.done.wait()
        stopped = lab.find("transition", host="b")[-1]
        assert stopped.detail["new"] == "STOPPED"
        assert stopped.time - t_stop < INTERVAL_S
        assert inst.counters["adverts_dropped"] > 0
        assert lab.transitions("b") == [
            ("b", "INIT", "BACKUP"),
            ("b", "BACKUP", "FAULT"),
            ("b", "FAULT", "BACKUP"),
            ("b", "BACKUP", "STOPPED"),
        ]

    # Virtual seconds: a control event lost in the flood fails the test soon.
    run_lab(scenario, timeout_s=30)


def test_advert_queue_is_bounded_and_drops_are_counted() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=100))
        await until(lambda: "VI_1" in ra.agent.instances)
        inst = ra.instance("VI_1")
        advert = codec.Advert(3, 51, 50, 10, (ipaddress.IPv4Address("192.0.2.100"),))
        for _ in range(agent_module.ADVERT_QUEUE + 10):
            inst.post("advert", advert, STRANGER)
        assert inst.counters["adverts_dropped"] == 10
        assert lab.find("vrrp.advert_queue_full")

    run_lab(scenario)


def test_vip_readd_in_flight_then_release_leaves_no_vip_on_a_non_master() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(1)
        assert ra.state("VI_1") == "MASTER" and VIP in a.held()
        # The kernel takes its time over the next add of the VIP.
        add = a.addresses.add
        started, gate = trio.Event(), trio.Event()

        async def slow_add(vip: Any) -> bool:
            if str(vip.interface) == VIP and not gate.is_set():
                started.set()
                await gate.wait()
            return await add(vip)

        a.addresses.add = slow_add  # type: ignore[method-assign]
        a.addresses.vanish(VIP)  # deleted behind our back: the master puts it back
        await started.wait()
        # While that add is in flight the link goes down: the master must release.
        a.links.set("eth0", False)
        await trio.sleep(INTERVAL_S)  # everything that can run without the add does
        gate.set()
        await until(lambda: bool(lab.find("vip.readded", host="a")))  # the add completed
        await until(lambda: ra.state("VI_1") == "FAULT")
        await until(lambda: bool(lab.find("vip.removed", host="a")))
        assert VIP not in a.held()
        assert not ra.instance("VI_1").holding
        # In order: vanished, put back (the driver's add), then removed by the release.
        assert [kind for _, kind, vip in a.addresses.log if vip == VIP][-3:] == [
            "vanish",
            "add",
            "remove",
        ]

    # Virtual seconds: a VIP put back after the release is never removed; fail soon.
    run_lab(scenario, timeout_s=30)
