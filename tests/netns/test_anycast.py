"""Anycast in namespaces: three directors, each running BIRD and ``hadirector run``, announce
one address to an upstream BIRD router with ECMP (tests/netns/anycast_lab.py draws it).

Behaviour is asserted, timing is not: a pool going down takes that director out of the
router's next hops and back in when it recovers; SIGKILL of the agent (its TUN device goes
with it) or of BIRD, and a frozen director (SIGSTOP: BFD), take it out; SIGTERM withdraws
first and exits after ``withdraw_delay`` with no probe lost; a route flushed from the table
behind the agent's back is put back. Waits are generous liveness
bounds; the latencies are measured and printed (``pytest -s``) and, properly, by
bench/anycast.py.

One lab serves the module (BGP sessions take seconds to come up); every test starts by
waiting for all three directors in the route and leaves them so.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from .anycast_lab import (
    BFD_INTERVAL_S,
    BFD_MULTIPLIER,
    CHECK_FALL,
    CHECK_INTERVAL_S,
    DIRECTORS,
    AnycastLab,
    module_lab,
)
from .lab import wait_for

ALL = frozenset(DIRECTORS)
UP_S = 60.0  # liveness bound for a BGP session to (re)establish and announce
DOWN_S = 30.0  # liveness bound for a withdrawal to reach the router


@pytest.fixture(scope="module")
def anycast() -> Iterator[AnycastLab]:
    yield from module_lab(4, UP_S)


@pytest.fixture
def ac(anycast: AnycastLab) -> Iterator[AnycastLab]:
    with anycast.each_test(UP_S) as ac:
        yield ac


def test_flows_spread_and_status_says_why(ac: AnycastLab) -> None:
    ac.probe_every_flow()
    ((on, reason),) = ac.announced("d1")
    assert on and reason == "udp 198.51.100.53:7: 1 of 1 real servers up, needs 1"
    assert "198.51.100.53 dev hdvip0" in ac.directors["d1"].routes()


def test_pool_down_withdraws_and_recovery_announces(ac: AnycastLab) -> None:
    t0 = time.monotonic()
    ac.stop_server("d1")
    t_out = ac.wait_hops(ALL - {"d1"}, DOWN_S)
    ((on, reason),) = ac.announced("d1")
    assert not on and reason == "udp 198.51.100.53:7: 0 of 1 real servers up, needs 1"
    assert ac.directors["d1"].routes().strip() == ""
    t1 = time.monotonic()
    ac.start_server("d1")
    t_in = ac.wait_hops(ALL, UP_S)
    print(
        f"\npool down -> withdrawn at the router: {(t_out - t0) * 1000:.0f} ms "
        f"(fall x interval = {CHECK_FALL * CHECK_INTERVAL_S * 1000:.0f} ms); "
        f"pool back -> announced: {(t_in - t1) * 1000:.0f} ms"
    )


def test_agent_sigkill_withdraws(ac: AnycastLab) -> None:
    d2 = ac.directors["d2"]
    t0 = time.monotonic()
    d2.agent_signal(signal.SIGKILL)
    t_out = ac.wait_hops(ALL - {"d2"}, DOWN_S)
    d2.wait_agent_exit(30)
    # The TUN device went with the process (no persist flag), and its route with it.
    assert d2.ns.ip("link", "show", "hdvip0", check=False).returncode != 0
    assert d2.routes().strip() == ""
    print(f"\nagent SIGKILL -> withdrawn at the router: {(t_out - t0) * 1000:.0f} ms")
    d2.start_agent()
    ac.wait_hops(ALL, UP_S)


def test_bird_sigkill_withdraws(ac: AnycastLab) -> None:
    ms = ac.kill_bird_until_out("d3", DOWN_S)
    print(f"\nBIRD SIGKILL -> withdrawn at the router: {ms:.0f} ms")
    ac.directors["d3"].bird.start()
    ac.wait_hops(ALL, UP_S)


def test_frozen_director_leaves_ecmp(ac: AnycastLab) -> None:
    ms = ac.freeze_bird_until_out("d1", DOWN_S)
    bound = BFD_MULTIPLIER * BFD_INTERVAL_S * 1000
    print(f"\nfrozen BIRD -> out of ECMP: {ms:.0f} ms (3 x BFD = {bound:.0f} ms)")
    ac.wait_hops(ALL, UP_S)


def test_sigterm_withdraws_first_and_drains_without_loss(ac: AnycastLab) -> None:
    d2 = ac.directors["d2"]
    proc, stop = ac.start_prober()
    ac.wait_prober_hits(proc, set(ALL))  # d2 carries some of the flows
    t0 = time.monotonic()
    d2.agent_signal(signal.SIGTERM)
    t_out = ac.wait_hops(ALL - {"d2"}, DOWN_S)
    assert d2.wait_agent_exit(30) == 0
    t_exit = time.monotonic()
    # The director goes away with its agent: whatever still reached it would be lost now.
    d2.stop_echo()
    time.sleep(0.3)
    result = ac.stop_prober(proc, stop)
    print(
        f"\nSIGTERM -> withdrawn at the router: {(t_out - t0) * 1000:.0f} ms; "
        f"exit after {(t_exit - t0) * 1000:.0f} ms; probes {result}"
    )
    assert result["lost"] == 0, result
    assert isinstance(result["by"], dict) and result["by"].get("d2", 0) > 0, result
    assert "anycast.withdrawn" in d2.log() and "anycast.draining" in d2.log()
    d2.echo = d2._spawn_echo()
    d2.start_agent()
    ac.wait_hops(ALL, UP_S)


def test_a_route_flushed_behind_the_agents_back_is_put_back(ac: AnycastLab) -> None:
    d3 = ac.directors["d3"]
    before = d3.log().count("anycast.route_lost")
    d3.flush_routes()
    # The agent's next comparison of the table (every few seconds) notices and re-adds.
    wait_for(lambda: d3.log().count("anycast.route_lost") > before, UP_S, "anycast.route_lost")
    wait_for(d3.holds_route, UP_S, "the route back")
    ac.wait_hops(ALL, UP_S)
