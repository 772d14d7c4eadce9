#!/usr/bin/env python3
"""CPU of a hadirector pair with many VRRP instances on one link: the receive path's cost.

    python3 bench/receive_cpu.py                          # 100 instances, 1 s adverts, 20 s
    python3 bench/receive_cpu.py --instances 255 --seconds 30 --json -
    python3 bench/receive_cpu.py --impl keepalived         # the same with keepalived

Builds the namespace lab (tests/netns/lab.py) with dir-a (priority 150, master of every
instance) and dir-b (priority 100, backup), VRRPv3 multicast on one bridge, instance N with
VRID N and VIP 10.N.0.1/32. Once every instance has settled (dir-a MASTER,
dir-b BACKUP), it samples each agent's CPU time from /proc/PID/task/*/schedstat
(nanoseconds on CPU) over ``--seconds`` and prints it as a percentage of one core, with
the number of state changes reported (the initial ones included). Which
code runs is whatever ``hadirector`` imports (PYTHONPATH selects a checkout). Needs root
and iproute2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.netns.keepalived import KeepalivedDirector  # noqa: E402
from tests.netns.lab import HadirectorDirector, InstanceSpec, Lab  # noqa: E402

SETTLE_TIMEOUT_S = 120.0


def _specs(count: int, priority: int, advert_s: float) -> list[InstanceSpec]:
    return [
        InstanceSpec(
            name=f"VI_{vrid}",
            vrid=vrid,
            priority=priority,
            advert_s=advert_s,
            vips=(f"10.{vrid}.0.1/32",),
        )
        for vrid in range(1, count + 1)
    ]


def _cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every thread of ``pid`` and of its child processes (keepalived
    runs VRRP in a child; threads or children that ended are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
        for child in (task / "children").read_text().split():
            total += _cpu_ns(int(child))
    return total


def run(impl: str, count: int, advert_s: float, seconds: float) -> dict[str, Any]:
    director = KeepalivedDirector if impl == "keepalived" else HadirectorDirector
    with Lab(watch=False) as lab:
        a = director(lab, "dir-a", instances=_specs(count, 150, advert_s))
        b = director(lab, "dir-b", instances=_specs(count, 100, advert_s))
        a.start()
        for spec in a.instances:
            a.wait_state("MASTER", SETTLE_TIMEOUT_S, instance=spec.name)
        b.start()
        for spec in b.instances:
            b.wait_state("BACKUP", SETTLE_TIMEOUT_S, instance=spec.name)
        time.sleep(2 * advert_s)  # past the start-up work
        assert a.proc is not None and b.proc is not None
        pids = {"master": a.proc.pid, "backup": b.proc.pid}
        before = {k: _cpu_ns(p) for k, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        after = {k: _cpu_ns(p) for k, p in pids.items()}
        transitions = len(a.transitions()) + len(b.transitions())
        result = {
            f"{k}_cpu_pct": round(100 * (after[k] - before[k]) / 1e9 / elapsed, 2) for k in pids
        }
        result.update(impl=impl, instances=count, advert_s=advert_s, seconds=round(elapsed, 1))
        result["transitions"] = transitions
        a.stop()
        b.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", choices=["hadirector", "keepalived"], default="hadirector")
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--advert", type=float, default=1.0, help="advert interval, seconds")
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON (- = stdout)")
    args = parser.parse_args()
    result = run(args.impl, args.instances, args.advert, args.seconds)
    if args.json == "-":
        print(json.dumps(result))
        return
    print(
        f"{result['impl']}: {result['instances']} instances, adverts {result['advert_s']} s, "
        f"{result['seconds']} s: master {result['master_cpu_pct']} %, "
        f"backup {result['backup_cpu_pct']} % of one core"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
