"""Anycast benchmark: how fast the upstream router's ECMP route follows the directors.

One namespace lab (tests/netns/anycast_lab.py): a BIRD router with ECMP and BFD
(100 ms x 3), three directors each running BIRD (conf/bird/director.conf) and
``hadirector run`` with a TCP check (interval 0.2 s, fall 2) on its real server, and a
client. Each scenario is repeated; every repetition starts with all three directors in the
router's route and measures, from the event, when the router's route changed (its next
hops polled with ``ip route`` every ~2 ms: a resolution of a few milliseconds):

- route removed:  the agent's route removed from table 4242 by hand (``ip route del``):
                  the BIRD path alone (director's kernel protocol -> BGP -> router FIB);
- pool down:      the director's real server stops listening; bound to compare with:
                  fall x interval + 100 ms (the check's own time plus the path above);
- pool back:      the real server listens again (rise 1 + the path);
- agent SIGKILL:  the TUN device goes with the process, and its route with it;
- BIRD SIGKILL:   the director's BGP session closes;
- frozen:         the director's BIRD SIGSTOPped: BFD at the router; bound 3 x 100 + 50 ms;
- SIGTERM:        the agent withdraws first; also counted: probes lost by a client
                  probing over 32 flows while the director drains and then goes away.

Usage (root)::

    python3 bench/anycast.py                 # 5 repetitions of each scenario
    python3 bench/anycast.py --repeat 11

It prints figures and asserts nothing; the lab is always removed.
"""

from __future__ import annotations

import argparse
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.netns.anycast_lab import (  # noqa: E402
    BFD_INTERVAL_S,
    BFD_MULTIPLIER,
    CHECK_FALL,
    CHECK_INTERVAL_S,
    DIRECTORS,
    TABLE,
    VIP,
    AnycastLab,
    anycast_unavailable,
)
from tests.netns.lab import Lab  # noqa: E402

ALL = frozenset(DIRECTORS)
UP_S = 60.0
DOWN_S = 30.0


def _route_removed(ac: AnycastLab, name: str) -> Callable[[], None]:
    d = ac.directors[name]

    def restore() -> None:
        # The agent re-adds its route on its next verdict change only: restart it.
        assert d.agent is not None
        d.agent.kill()
        d.agent.wait(timeout=30)
        d.start_agent()

    d.ns.ip("route", "del", f"{VIP}/32", "table", str(TABLE))
    return restore


def run(repeat: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    lost: list[int] = []

    def record(key: str, t0: float, t1: float) -> None:
        results.setdefault(key, []).append((t1 - t0) * 1000)

    with Lab(watch=False, nodes=()) as lab:
        ac = AnycastLab(lab)
        try:
            ac.start()
            ac.wait_hops(ALL, UP_S)
            for i in range(repeat):
                name = DIRECTORS[i % len(DIRECTORS)]
                d = ac.directors[name]
                rest = ALL - {name}

                ac.wait_hops(ALL, UP_S)
                t0 = time.monotonic()
                restore = _route_removed(ac, name)
                record("route removed", t0, ac.wait_hops(rest, DOWN_S))
                restore()

                ac.wait_hops(ALL, UP_S)
                t0 = time.monotonic()
                ac.stop_server(name)
                record("pool down", t0, ac.wait_hops(rest, DOWN_S))
                t0 = time.monotonic()
                ac.start_server(name)
                record("pool back", t0, ac.wait_hops(ALL, UP_S))

                t0 = time.monotonic()
                d.agent_signal(signal.SIGKILL)
                record("agent SIGKILL", t0, ac.wait_hops(rest, DOWN_S))
                d.wait_agent_exit(30)
                d.start_agent()

                ac.wait_hops(ALL, UP_S)
                t0 = time.monotonic()
                d.bird.signal(signal.SIGKILL)
                record("BIRD SIGKILL", t0, ac.wait_hops(rest, DOWN_S))
                assert d.bird.proc is not None
                d.bird.proc.wait(timeout=30)
                d.bird.start()

                ac.wait_hops(ALL, UP_S)
                t0 = time.monotonic()
                d.bird.signal(signal.SIGSTOP)
                try:
                    record("frozen (BFD)", t0, ac.wait_hops(rest, DOWN_S))
                finally:
                    d.bird.signal(signal.SIGCONT)

                ac.wait_hops(ALL, UP_S)
                proc, stop = ac.start_prober()
                ac.wait_prober_hits(proc, set(ALL))
                t0 = time.monotonic()
                d.agent_signal(signal.SIGTERM)
                record("SIGTERM", t0, ac.wait_hops(rest, DOWN_S))
                d.wait_agent_exit(30)
                d.stop_echo()
                time.sleep(0.3)
                lost.append(int(str(ac.stop_prober(proc, stop)["lost"])))
                d.echo = d._spawn_echo()
                d.start_agent()
                print(f"repetition {i + 1}/{repeat} done", file=sys.stderr)
        finally:
            ac.close()
    results["SIGTERM lost probes"] = [float(n) for n in lost]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reason = anycast_unavailable()
    if reason is not None:
        print(f"anycast bench: {reason}", file=sys.stderr)
        return 2
    results = run(args.repeat)
    bird = subprocess.run(["bird", "--version"], capture_output=True, text=True, check=False)
    print(
        f"# {platform.node()} kernel {platform.release()}, {(bird.stderr or bird.stdout).strip()}"
    )
    print(
        f"# check interval {CHECK_INTERVAL_S * 1000:.0f} ms x fall {CHECK_FALL}; "
        f"BFD {BFD_INTERVAL_S * 1000:.0f} ms x {BFD_MULTIPLIER}; {args.repeat} runs each"
    )
    bounds = {
        "pool down": CHECK_FALL * CHECK_INTERVAL_S * 1000 + 100,
        "frozen (BFD)": BFD_MULTIPLIER * BFD_INTERVAL_S * 1000 + 50,
    }
    print("| event | median | min | max | compare with |")
    print("|---|---|---|---|---|")
    for key, values in results.items():
        unit = "" if key.endswith("probes") else " ms"
        bound = f"{bounds[key]:.0f} ms" if key in bounds else ""
        print(
            f"| {key} | {statistics.median(values):.0f}{unit} | {min(values):.0f}{unit} "
            f"| {max(values):.0f}{unit} | {bound} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
