"""Anycast over IPv6 in namespaces: the lab of tests/netns/test_anycast.py with the agents'
anycast address an IPv6 one (2001:db8:53::53, ``AnycastLab(lab, family=6)``).

Each agent puts ``2001:db8:53::53/128 dev hdvip0`` in its table while its real server (an
IPv6 address, TCP check) is up; BIRD's IPv6 kernel protocol learns it and its IPv6 BGP
session announces it to the router, which installs one IPv6 route with a next hop per
director (ECMP). Asserted: the router's IPv6 route and the flows that reach each director;
a pool down withdraws (the router's route loses that director) and recovery announces;
SIGKILL of the agent takes the director out (its TUN device and the /128 route go with
it); SIGKILL of BIRD, and a frozen BIRD (SIGSTOP: BFD over the IPv6 session), take it out;
SIGTERM withdraws first and drains with no probe lost; the /128 route flushed from the
table behind the agent's back is put back.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from .anycast_lab import BFD_INTERVAL_S, BFD_MULTIPLIER, DIRECTORS, VIP6, AnycastLab, module_lab
from .lab import wait_for

ALL = frozenset(DIRECTORS)
UP_S = 60.0  # liveness bound for a BGP session to (re)establish and announce
DOWN_S = 30.0  # liveness bound for a withdrawal to reach the router
REASON_UP = f"udp [{VIP6}]:7: 1 of 1 real servers up, needs 1"
REASON_DOWN = f"udp [{VIP6}]:7: 0 of 1 real servers up, needs 1"


@pytest.fixture(scope="module")
def anycast6() -> Iterator[AnycastLab]:
    yield from module_lab(6, UP_S)


@pytest.fixture
def ac(anycast6: AnycastLab) -> Iterator[AnycastLab]:
    with anycast6.each_test(UP_S) as ac:
        yield ac


def test_ipv6_address_is_announced_by_every_director_and_flows_spread(ac: AnycastLab) -> None:
    route = ac.router.ip("-6", "route", "show", VIP6).stdout
    print(f"\nthe router's route: {route}")
    assert "proto bird" in route, route
    for name in DIRECTORS:
        d = ac.directors[name]
        assert f"{VIP6} dev hdvip0" in d.routes(), d.routes()
        assert ac.announced(name) == [(True, REASON_UP)]
    ac.probe_every_flow()


def test_ipv6_pool_down_withdraws_and_recovery_announces(ac: AnycastLab) -> None:
    d1 = ac.directors["d1"]
    t0 = time.monotonic()
    ac.stop_server("d1")
    t_out = ac.wait_hops(ALL - {"d1"}, DOWN_S)
    assert ac.announced("d1") == [(False, REASON_DOWN)]
    assert d1.routes().strip() == ""
    t1 = time.monotonic()
    ac.start_server("d1")
    t_in = ac.wait_hops(ALL, UP_S)
    assert ac.announced("d1") == [(True, REASON_UP)]
    print(
        f"\nIPv6 pool down -> withdrawn at the router: {(t_out - t0) * 1000:.0f} ms; "
        f"pool back -> announced: {(t_in - t1) * 1000:.0f} ms"
    )


def test_ipv6_agent_sigkill_withdraws(ac: AnycastLab) -> None:
    d2 = ac.directors["d2"]
    d2.agent_signal(signal.SIGKILL)
    ac.wait_hops(ALL - {"d2"}, DOWN_S)
    d2.wait_agent_exit(30)
    # The TUN device went with the process, and its /128 route with it.
    assert d2.ns.ip("link", "show", "hdvip0", check=False).returncode != 0
    assert d2.routes().strip() == ""
    d2.start_agent()
    ac.wait_hops(ALL, UP_S)


def test_ipv6_sigterm_withdraws_first_and_drains_without_loss(ac: AnycastLab) -> None:
    d3 = ac.directors["d3"]
    proc, stop = ac.start_prober()
    ac.wait_prober_hits(proc, set(ALL))  # d3 carries some of the flows
    d3.agent_signal(signal.SIGTERM)
    ac.wait_hops(ALL - {"d3"}, DOWN_S)
    assert d3.wait_agent_exit(30) == 0
    d3.stop_echo()  # the director goes away with its agent
    time.sleep(0.3)
    result = ac.stop_prober(proc, stop)
    print(f"\nIPv6 SIGTERM: probes {result}")
    assert result["lost"] == 0, result
    assert isinstance(result["by"], dict) and result["by"].get("d3", 0) > 0, result
    assert "anycast.withdrawn" in d3.log()
    d3.echo = d3._spawn_echo()
    d3.start_agent()
    ac.wait_hops(ALL, UP_S)


def test_ipv6_bird_sigkill_withdraws(ac: AnycastLab) -> None:
    d3 = ac.directors["d3"]
    ms = ac.kill_bird_until_out("d3", DOWN_S)
    print(f"\nIPv6 BIRD SIGKILL -> withdrawn at the router: {ms:.0f} ms")
    # The agent is not BIRD: it still announces, and its /128 route is still in the table.
    assert ac.announced("d3") == [(True, REASON_UP)]
    assert d3.holds_route(), d3.routes()
    d3.bird.start()
    ac.wait_hops(ALL, UP_S)


def test_ipv6_frozen_director_leaves_ecmp(ac: AnycastLab) -> None:
    ms = ac.freeze_bird_until_out("d1", DOWN_S)
    bound = BFD_MULTIPLIER * BFD_INTERVAL_S * 1000
    print(f"\nIPv6 frozen BIRD -> out of ECMP: {ms:.0f} ms (3 x BFD = {bound:.0f} ms)")
    ac.wait_hops(ALL, UP_S)


def test_ipv6_route_flushed_behind_the_agents_back_is_put_back(ac: AnycastLab) -> None:
    d3 = ac.directors["d3"]

    def lost() -> int:  # the agent's log lines saying the IPv6 route went missing
        return sum("anycast.route_lost" in ln and VIP6 in ln for ln in d3.log().splitlines())

    before = lost()
    d3.flush_routes()
    assert not d3.holds_route(), d3.routes()
    # The agent's next comparison of the table (every few seconds) notices and re-adds.
    wait_for(lambda: lost() > before, UP_S, f"anycast.route_lost for {VIP6}")
    wait_for(d3.holds_route, UP_S, "the /128 route back")
    assert ac.announced("d3") == [(True, REASON_UP)]
    ac.wait_hops(ALL, UP_S)
