"""Chaos soak: two ``hadirector run`` directors under random faults for N minutes, in the VM.

The engine is tests/vm/soaklab.py (shared with the CI soak, tests/vm/test_soak.py, which runs
one deck of faults): directors A and B with two VRRP instances in a sync group, NAT services
with health checks and connection sync, real servers and a client with long-lived
connections and short probes, all in namespaces; faults dealt from a seeded deck until the
time is up (SIGKILL of the master, link flaps, netem partition, loss bursts and delay,
reload storms, real servers dying, a spoofed advert flood, control-socket abuse). It prints
the seed first and a report at the end (invariants held or broken, figures); it asserts
nothing, but exits 1 when an invariant was broken.

Usage (root; re-runs itself in the VM, tools/vm/run-in-vm, as the host kernel has no IPVS)::

    python3 bench/soak.py --minutes 30
    python3 bench/soak.py --seed 1234 --deck          # one deck, as CI
    python3 bench/soak.py --minutes 30 --json out.json
    python3 bench/soak.py --minutes 4 --logs logs/     # every agent's whole log too
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="faults for this long")
    parser.add_argument("--deck", action="store_true", help="one deck of faults (as CI)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run")
    parser.add_argument("--advert", type=float, default=2.0, help="advert interval (s)")
    parser.add_argument("--flood-rate", type=int, default=10_000, help="spoofed adverts/s")
    parser.add_argument("--clients", type=int, default=1000, help="control-socket clients")
    parser.add_argument("--long-lived", type=int, default=8, help="client connections")
    parser.add_argument("--json", default="", help="write the report here as JSON")
    parser.add_argument("--logs", default="", help="write every agent's whole log in this dir")
    parser.add_argument("--memory", type=int, default=1536, help="VM memory (MiB)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if os.environ.get("HADIRECTOR_IN_VM") != "1":
        return in_vm(args)
    return soak(args)


def in_vm(args: argparse.Namespace) -> int:
    print(f"bench/soak.py: seed {args.seed}; running in the VM", flush=True)
    runner = REPO / "tools" / "vm" / "run-in-vm"
    minutes = 10 if args.deck else args.minutes
    with tempfile.TemporaryDirectory(prefix="hadirector-soak-") as exchange:
        inner_json = Path(exchange) / "report.json"
        inner_logs = Path(exchange) / "logs"
        own = [
            f"--minutes={args.minutes}",
            f"--seed={args.seed}",
            f"--advert={args.advert}",
            f"--flood-rate={args.flood_rate}",
            f"--clients={args.clients}",
            f"--long-lived={args.long_lived}",
            f"--json={inner_json}",
            *([f"--logs={inner_logs}"] if args.logs else []),
            *(["--deck"] if args.deck else []),
        ]
        command = [
            sys.executable, str(runner), "--timeout", str(int(minutes * 60 + 1200)),
            "--memory", str(args.memory), "--rw", exchange, "--",
            sys.executable, str(Path(__file__).resolve()), *own,
        ]  # fmt: skip
        status = subprocess.call(command, cwd=REPO)
        if args.json and inner_json.exists():
            Path(args.json).write_text(inner_json.read_text())
        if args.logs and inner_logs.is_dir():
            shutil.copytree(inner_logs, args.logs, dirs_exist_ok=True)
    return status


def soak(args: argparse.Namespace) -> int:
    from tests.vm.lvslab import Lab
    from tests.vm.soaklab import Settings, Soak, summary

    subprocess.run(["modprobe", "-a", "ip_vs", "ip_vs_rr"], check=True)
    settings = Settings(
        seed=args.seed,
        minutes=0.0 if args.deck else args.minutes,
        advert_s=args.advert,
        long_lived=args.long_lived,
        flood_rate=args.flood_rate,
        flood_seconds=(3.0, 8.0),
        control_clients=args.clients,
        sample_interval_s=10.0,
        quiet_s=30.0,
    )
    print(f"soak: seed {args.seed} (--seed {args.seed} replays it)", flush=True)
    with Lab() as lab, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        run = Soak(lab, Path(tmp), settings, lambda text: print(text, flush=True))
        try:
            report = run.run()
        finally:
            if args.logs:
                run.write_logs(Path(args.logs))
    print(summary(report), flush=True)
    if report["violations"]:
        print("timeline (seconds from the start):\n" + "\n".join(report["timeline"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
