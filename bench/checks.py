"""Health-check throughput: TCP and HTTP checks per second from one process, and their CPU.

A one-LAN namespace lab (tests/netns/lab.py) gets a server namespace holding N addresses
(10.10.0.0/16 on its lo, one per real server, routed by the checker through the server's
own address) and one small single-threaded server (selectors) on port 8080 of all of
them: for TCP it accepts and closes, for HTTP it reads the request and answers ``200 OK``
with a short body. The bench process enters a checker namespace on the
same bridge and runs the agent's own ``HealthChecker`` (checks/runner.py, checks/probes.py:
the code the agent runs) over a configuration of one virtual server with those N real
servers, each checked every ``interval`` seconds (rate = N / interval).

After one interval of warm-up it counts, over a window:

- probes/s achieved (against the target N / interval) and failed probes;
- CPU of the bench process (the checker; the server is another process), from
  ``getrusage``, as a percentage of one core and in microseconds per check;
- each probe's duration (connect, or request and response), median and 99th percentile;
- the machine's load average (other work on the machine starves the checker: a probe's
  duration then includes the time its task waited for a CPU).

Usage (root)::

    python3 bench/checks.py                        # TCP 5,000/s, HTTP 1,000/s, 10 s each
    python3 bench/checks.py --tcp 2000 --http 0    # other rates
    python3 bench/checks.py --window 30 --json out.json

It prints figures; it asserts nothing. Not measured here (see bench/README.md): the
detection latency in IPVS (the VM), VRRP advert lateness beside full-rate checks, and
keepalived's checker side by side (it needs IPVS, which the build machines' kernel lacks).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from hadirector.checks import probes  # noqa: E402
from hadirector.checks.runner import HealthChecker  # noqa: E402
from hadirector.config.load import load_mapping  # noqa: E402
from hadirector.config.schema import HealthCheck, IPAddress  # noqa: E402
from tests.netns.lab import bare_lab  # noqa: E402

PORT = 8080
NET = ipaddress.ip_network("10.10.0.0/16")  # the real servers, on the server's lo
SERVER_LINK, CHECKER_LINK = "10.9.0.2", "10.9.0.1"  # the two namespaces' own addresses

SERVER_CODE = r"""
import selectors, socket, sys
mode = sys.argv[1]
body = b"healthy"
answer = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
sel = selectors.DefaultSelector()
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[2])))
srv.listen(4096)
srv.setblocking(False)
sel.register(srv, selectors.EVENT_READ, None)
print("listening", flush=True)
pending = {}
while True:
    for key, _ in sel.select():
        if key.data is None:
            while True:
                try:
                    conn, _ = srv.accept()
                except BlockingIOError:
                    break
                if mode == "tcp":
                    conn.close()
                    continue
                conn.setblocking(False)
                pending[conn] = b""
                sel.register(conn, selectors.EVENT_READ, True)
        else:
            conn = key.fileobj
            try:
                chunk = conn.recv(4096)
            except OSError:
                chunk = b""
            data = pending.get(conn, b"") + chunk
            if chunk and b"\r\n\r\n" not in data:
                pending[conn] = data
                continue
            if chunk:
                try:
                    conn.send(answer)
                except OSError:
                    pass
            sel.unregister(conn)
            pending.pop(conn, None)
            conn.close()
"""


@dataclass
class Figures:
    kind: str
    checks: int
    interval_s: float
    target_per_s: float
    achieved_per_s: float
    failed: int
    cpu_percent: float
    cpu_us_per_check: float
    probe_p50_ms: float
    probe_p99_ms: float
    window_s: float
    load_average: float  # the machine's 1-minute load average at the end of the window


def addresses(count: int) -> list[str]:
    hosts = NET.hosts()
    return [str(next(hosts)) for _ in range(count)]


def config(kind: str, servers: list[str], interval_s: float) -> Any:
    check = {"type": kind, "interval": interval_s, "timeout": min(0.5, interval_s / 2)}
    if kind == "http":
        check["expect_body"] = "healthy"
    return load_mapping(
        {
            "virtual_server": [
                {
                    "address": "192.0.2.10:80",
                    "check": check,
                    "real_server": [{"address": f"{a}:{PORT}"} for a in servers],
                }
            ]
        }
    )


def measure(kind: str, rate: int, window_s: float, interval_s: float) -> Figures:
    count = int(rate * interval_s)
    servers = addresses(count)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with bare_lab() as lab:
        # The real servers' addresses sit behind one next hop (on the server's lo): the
        # checker keeps one neighbour entry, not N (the kernel's table holds 1,024 by
        # default and drops beyond it).
        server = lab.node("srv", ipv4=[f"{SERVER_LINK}/24"])
        batch = "".join(f"addr add {a}/32 dev lo\n" for a in servers)
        subprocess.run(
            server.netns.exec_args(("ip", "-batch", "-")), input=batch.encode(), check=True
        )
        checker = lab.node("chk", ipv4=[f"{CHECKER_LINK}/24"])
        checker.netns.ip("route", "add", str(NET), "via", SERVER_LINK)
        proc = server.netns.spawn(
            sys.executable, "-c", SERVER_CODE, kind, str(PORT), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"listening"
        cfg = config(kind, servers, interval_s)
        durations: list[float] = []
        counts = {"probes": 0, "failed": 0}
        recording = [False]

        async def prober(
            check: HealthCheck, address: IPAddress, port: int | None
        ) -> probes.ProbeResult:
            started = time.perf_counter()
            result = await probes.probe(check, address, port)
            if recording[0]:
                durations.append(time.perf_counter() - started)
                counts["probes"] += 1
                counts["failed"] += not result.ok
            return result

        async def main() -> tuple[float, float]:
            checker_ = HealthChecker(cfg, lambda down: None, prober=prober)
            async with trio.open_nursery() as nursery:
                await nursery.start(checker_.run)
                await trio.sleep(interval_s * 1.5)  # first probes spread over one interval
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu0 = usage.ru_utime + usage.ru_stime
                wall0 = time.perf_counter()
                recording[0] = True
                await trio.sleep(window_s)
                recording[0] = False
                wall = time.perf_counter() - wall0
                usage = resource.getrusage(resource.RUSAGE_SELF)
                cpu = usage.ru_utime + usage.ru_stime - cpu0
                nursery.cancel_scope.cancel()
            return wall, cpu

        with checker.netns.entered():
            wall, cpu = trio.run(main)
        proc.kill()
        proc.wait()
    probes_n = max(counts["probes"], 1)
    ordered = sorted(durations) or [0.0]
    return Figures(
        kind=kind,
        checks=count,
        interval_s=interval_s,
        target_per_s=rate,
        achieved_per_s=round(counts["probes"] / wall, 1),
        failed=counts["failed"],
        cpu_percent=round(100 * cpu / wall, 1),
        cpu_us_per_check=round(1e6 * cpu / probes_n, 1),
        probe_p50_ms=round(1000 * statistics.median(ordered), 3),
        probe_p99_ms=round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 3),
        window_s=round(wall, 2),
        load_average=round(os.getloadavg()[0], 2),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tcp", type=int, default=5000, help="TCP checks per second (0: skip)")
    parser.add_argument("--http", type=int, default=1000, help="HTTP checks per second (0: skip)")
    parser.add_argument("--interval", type=float, default=1.0, help="each check's interval, s")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    runs = [(k, r) for k, r in (("tcp", args.tcp), ("http", args.http)) if r > 0]
    results = [measure(kind, rate, args.window, args.interval) for kind, rate in runs]
    print(
        "| kind | checks | interval s | target /s | achieved /s | failed | CPU % of a core "
        "| CPU µs/check | probe p50 ms | probe p99 ms | load avg |"
    )
    print("|" + " --- |" * 11)
    for f in results:
        print(
            f"| {f.kind} | {f.checks} | {f.interval_s:g} | {f.target_per_s:g} | "
            f"{f.achieved_per_s:g} | {f.failed} | {f.cpu_percent:g} | {f.cpu_us_per_check:g} | "
            f"{f.probe_p50_ms:g} | {f.probe_p99_ms:g} | {f.load_average:g} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
