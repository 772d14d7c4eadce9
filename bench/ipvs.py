"""IPVS programming benchmark: hadirector against ipvsadm on the same kernel.

A table of SERVICES x DESTS NAT destinations (default 100 x 100 = 10,000) is applied cold,
three ways, flushing the table between runs and checking each result against the others:

- ``kernel``:  hadirector's adapter alone: IpvsKernel.table() + reconcile.plan() + apply()
  (one generic netlink socket, operations batched many per datagram);
- ``agent``:   the agent's path: IpvsManager open + prepare (schedulers, sysctls, nftables)
  + reconcile("start"); a bulk load logs one ipvs.bulk summary, not a line per write;
- ``ipvsadm``: ``ipvsadm -R`` of the same rules, the text rendered by hadirector.ipvs.save
  (process start included).

Then one weight change, request to kernel ACK, median of N: hadirector's ``edit_dest`` on an
open adapter, and ``ipvsadm -e`` (a process started per change: spawn and exit included,
which is how an operator or a script pays for it).

Usage::

    python3 bench/ipvs.py [--services 100] [--dests 100] [--edits 50]
    tools/vm/run-in-vm -- python3 bench/ipvs.py      # what it does by itself without IPVS

Without IPVS in the running kernel it re-executes itself in the VM (tools/vm/run-in-vm).
It runs in a network namespace of its own (created and deleted here), so it never touches
the IPVS table of the namespace it was started from. It prints figures and asserts nothing
about them; under the VM's emulation (qemu TCG) absolute times are several times those of
real hardware, the ratios are what to read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ipvshost import has_ipvs, run_in_vm  # noqa: E402

INNER_FLAG = "--inner"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--dests", type=int, default=100, help="destinations per service")
    parser.add_argument("--edits", type=int, default=50, help="weight changes to time (N)")
    parser.add_argument(INNER_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.services <= 250 or not 1 <= args.dests <= 250 or args.edits < 1:
        parser.error("--services and --dests must be 1..250, --edits at least 1")
    if args.inner:
        import trio

        trio.run(bench, args)
        return 0
    own = [f"--services={args.services}", f"--dests={args.dests}", f"--edits={args.edits}"]
    if not has_ipvs():
        return run_in_vm(__file__, own, timeout_s=3000)
    subprocess.run(["modprobe", "-a", "ip_vs", "ip_vs_wlc"], check=False, capture_output=True)
    netns = f"hdbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        return subprocess.call(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                str(Path(__file__).resolve()),
                INNER_FLAG,
                *own,
            ]
        )
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)


# --- inside the namespace ----------------------------------------------------------------------


def config_text(services: int, dests: int) -> str:
    parts = ["[ipvs]\nreconcile_interval = 3600.0\n"]
    for s in range(1, services + 1):
        parts.append(f'[[virtual_server]]\naddress = "192.0.2.{s}:80"\nscheduler = "wlc"\n')
        for d in range(1, dests + 1):
            parts.append(f'[[virtual_server.real_server]]\naddress = "198.51.100.{d}:8080"\n')
    return "\n".join(parts)


async def bench(args: argparse.Namespace) -> None:
    import structlog

    from hadirector import logs
    from hadirector.config.load import load_text
    from hadirector.ipvs import model, reconcile, save
    from hadirector.ipvs.kernel import IpvsKernel
    from hadirector.ipvs.manager import IpvsManager

    logs.configure("json", "info")
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=devnull))

    config = load_text(config_text(args.services, args.dests))
    desired = model.desired_from_config(config.virtual_servers)
    total = sum(len(entry.dests) for entry in desired.values())
    rules = save.format_table(desired)
    print(f"table: {len(desired)} services x {args.dests} dests = {total} destinations (NAT, wlc)")
    print(f"kernel: {os.uname().release}; in VM: {os.environ.get('HADIRECTOR_IN_VM') == '1'}")

    async with IpvsKernel() as kernel:

        async def check(label: str) -> None:
            text = save.format_table(await kernel.table())
            if text != rules:
                raise SystemExit(f"{label}: the kernel table differs from the rules")

        # -- cold apply: hadirector's adapter --------------------------------------------------
        await kernel.flush()
        t0 = time.perf_counter()
        actual = await kernel.table()
        t1 = time.perf_counter()
        ops = reconcile.plan(desired, actual, own_whole_table=False, owned=set())
        t2 = time.perf_counter()
        errors = await kernel.apply(ops)
        t3 = time.perf_counter()
        kernel_s = t3 - t0
        read_s, plan_s, apply_s = t1 - t0, t2 - t1, t3 - t2
        if errors:
            raise SystemExit(f"kernel apply: {len(errors)} errors, first: {errors[0]}")
        await check("hadirector kernel")

        # -- cold apply: the agent's manager ---------------------------------------------------
        await kernel.flush()
        t0 = time.perf_counter()
        manager = IpvsManager(config)
        await manager._open()
        await manager._prepare()
        t1 = time.perf_counter()
        written = await manager.reconcile("start")
        agent_s = time.perf_counter() - t0
        agent_reconcile_s = time.perf_counter() - t1
        await manager.aclose()
        if manager.counters["errors"] or len(written) != len(ops):
            raise SystemExit(f"agent: {manager.counters}")
        await check("hadirector agent")

        # -- cold apply: ipvsadm -R ------------------------------------------------------------
        await kernel.flush()
        t0 = time.perf_counter()
        subprocess.run(["ipvsadm", "-R"], input=rules, text=True, check=True)
        ipvsadm_s = time.perf_counter() - t0
        await check("ipvsadm -R")

        # -- one weight change, request to ACK ---------------------------------------------------
        key = model.ServiceKey.virtual("tcp", "192.0.2.1", 80)
        dest_key = model.DestKey.of("198.51.100.1", 8080)
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(args.edits):
            weight = 2 + i % 50
            dest = model.Dest(model.FWD_MASQ, weight)
            t0 = time.perf_counter()
            await kernel.edit_dest(key, dest_key, dest)
            ours.append(time.perf_counter() - t0)
            command = [
                "ipvsadm", "-e", "-t", "192.0.2.1:80", "-r", "198.51.100.1:8080",
                "-m", "-w", str(weight + 1),
            ]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(command, check=True)
            theirs.append(time.perf_counter() - t0)
        dests = {d.key: d.dest for d in await kernel.dests(key)}
        if dests[dest_key].weight != weight + 1:
            raise SystemExit("weight edits did not land")
        await kernel.flush()

    print()
    print(f"cold apply of {total} destinations ({len(ops)} netlink operations):")
    print(f"  hadirector adapter (table+plan+apply): {kernel_s:8.3f} s")
    print(
        f"    read {read_s:.3f} s, plan (pure Python) {plan_s:.3f} s, netlink apply {apply_s:.3f} s"
    )
    print(
        f"  hadirector agent (open+prepare+reconcile): {agent_s:8.3f} s "
        f"(reconcile alone {agent_reconcile_s:.3f} s, logged as one ipvs.bulk summary)"
    )
    print(f"  ipvsadm -R (process included):          {ipvsadm_s:8.3f} s")
    print(f"  ratio ipvsadm / adapter: {ipvsadm_s / kernel_s:.2f}x")
    print(f"  ratio ipvsadm / agent:   {ipvsadm_s / agent_s:.2f}x")
    print()
    print(f"one weight change, request to kernel ACK, N={args.edits}:")
    for label, times in (
        ("hadirector edit_dest:", ours),
        ("ipvsadm -e (process spawn included):", theirs),
    ):
        print(
            f"  {label:<40} median {statistics.median(times) * 1e3:8.3f} ms"
            f"  (min {min(times) * 1e3:.3f}, max {max(times) * 1e3:.3f})"
        )
    print(f"  ratio: {statistics.median(theirs) / statistics.median(ours):.1f}x")


if __name__ == "__main__":
    sys.exit(main())
