"""Failback with 10,000 idle TCP connections in the table: how many survive, and how long
the bulk resync takes, with two ``hadirector run`` directors in the IPVS VM.

The scenario is tests/vm/failbacklab.py's (the CI test test_lvs_failback_idle.py runs it
with a few hundred connections): A master, B backup; A crashes and B takes over; through B
the client opens N connections (one byte echoed on each), which then stay idle; A returns,
asks B for a resync, preempts once it arrived; one byte on each connection after the
failback, answered by the real server that answered it before or not at all.

Usage::

    python3 bench/failback.py                        # 10,000 connections (in the VM)
    python3 bench/failback.py --connections 2000 --json out.json

Without IPVS in the running kernel it re-executes itself in the VM (tools/vm/run-in-vm).
Figures (all under the VM's emulation, qemu TCG: several times real hardware):

- ``opened``: seconds to open the N connections through B (one echo each);
- ``B lists``: established VIP:9000 entries in B's table before the failback;
- ``resync``: entries A's agent received, and request -> DONE as A's agent measured it;
- ``all listed``: A's request -> A's kernel table lists all N (polled every 0.25 s);
- ``survived``: connections answered after the failback by the same real server; the
  others as reset (an RST: ECONNRESET), timed out (the client's own TCP gave up: ETIMEDOUT),
  closed, silent (no answer within 60 s + N/20 s) or other server.

It prints figures and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ipvshost import has_ipvs, run_in_vm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    if not 1 <= args.connections <= 50_000:
        parser.error("--connections must be 1..50000")
    if not has_ipvs():
        own = [f"--connections={args.connections}"]
        rw: list[Path] = []
        if args.json:
            out = Path(args.json).resolve()
            rw.append(out.parent)
            own.append(f"--json={out}")
        return run_in_vm(__file__, own, timeout_s=3000, memory_mib=2048, rw=rw)
    subprocess.run(["modprobe", "-a", "ip_vs", "ip_vs_rr"], check=False, capture_output=True)

    from tests.vm.failbacklab import failback
    from tests.vm.lvslab import Lab

    began = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:7.1f} s] {text}", flush=True)

    with tempfile.TemporaryDirectory() as tmp, Lab() as lab:
        result = failback(lab, Path(tmp), args.connections, say=say)
    r = result
    all_listed = "never" if r.listed_all_s is None else f"{r.listed_all_s:.2f} s"
    print()
    print(f"connections             {r.connections} (rs1 {r.per_server['rs1']}, "
          f"rs2 {r.per_server['rs2']})")  # fmt: skip
    print(f"opened through B        {r.opened_s:.1f} s")
    print(f"B lists before          {r.listed_by_b}")
    print(f"resync                  {r.resync_entries} entries, request -> DONE "
          f"{r.resync_done_s:.2f} s")  # fmt: skip
    print(f"A's kernel lists all N  {all_listed} after the request (A lists {r.listed_by_a})")
    print(f"A preempted after it    {r.held_until_resync}")
    print(f"survived                {r.echoed} of {r.connections} (same real server)")
    print(f"lost                    {r.outcome}, other server {r.other_server}")
    print(f"check (byte on each)    {r.check_s:.1f} s")
    print(f"lost: entry in A / B    {r.lost_in_a} / {r.lost_in_b}")
    print(f"MACs                    {r.macs}")
    for role, changed in r.counters.items():
        print(f"counters during check   {role}: {changed}")
    print("capture (RST and ARP on the switch ports, from A's return):")
    for line in r.capture:
        print(f"  {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(r), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
