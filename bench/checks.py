"""Health-check throughput: TCP and HTTP checks per second from one agent, their CPU, and
the lateness of that agent's VRRP adverts meanwhile.

A one-LAN namespace lab (tests/netns/lab.py) gets a server namespace holding N addresses
(10.10.0.0/16 on its lo, one per real server, routed by the checker through the server's
own address) and one small single-threaded server (selectors) on port 8080 of all of
them: for TCP it accepts and closes, for HTTP it reads the request and answers ``200 OK``
with a short body. The bench process enters a checker namespace on the same bridge and
runs the agent itself (``hadirector.agent.supervisor.Agent``, real VRRP sockets and
addresses; only IPVS is a recorder, the build machines' kernel has none) with one
virtual server of those N real servers, each checked every ``interval`` seconds (rate =
N / interval), and one VRRP instance on the checker's interface at ``--advert`` seconds
(alone on the LAN, it becomes master). A monitor namespace on the bridge receives the
adverts on a raw socket (VRRP only, kernel receive time stamps) in a process of its own.

After one interval (and at least 2 s) of warm-up it counts, over a window:

- probes/s achieved (against the target N / interval) and failed probes, from the
  agent's own per-check counters (the probes it runs, as configured: nothing wraps them);
- CPU of the bench process (the agent; the server and the monitor are other processes),
  from ``getrusage``, as a percentage of one core and in microseconds per check, and its
  user and system parts: system time includes the kernel's work for *both* ends of each
  TCP connection (a veth hands a SYN to the server's stack in the sender's context);
- each probe's duration from the agent's histogram: the mean, and the bucket bound (ms)
  under which 99 % fall;
- advert lateness: each gap between two adverts less the advert interval, the median, the
  99th percentile and the largest, and how many exceed 5 ms;
- the machine's 1-minute load average at the end (other work on the machine starves the
  checker: a probe's duration then includes the time its task waited for a CPU).

Usage (root)::

    python3 bench/checks.py                        # TCP 5,000/s, HTTP 1,000/s, 10 s each
    python3 bench/checks.py --tcp 2000 --http 0    # other rates
    python3 bench/checks.py --baseline             # also VRRP alone (no checks)
    python3 bench/checks.py --realtime 50          # the agent under SCHED_RR 50
    python3 bench/checks.py --window 30 --json out.json

It prints figures; it asserts nothing. Not measured here (see bench/README.md): the
detection latency in IPVS (bench/detection.py, on the VM's kernel), and
keepalived's checker side by side (it needs IPVS, which the build machines' kernel lacks).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import itertools
import json
import os
import resource
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

from hadirector.agent.supervisor import Agent  # noqa: E402
from hadirector.checks.runner import DURATION_BUCKETS_S, Durations  # noqa: E402
from hadirector.config.load import load_mapping  # noqa: E402
from hadirector.ports import Adapters  # noqa: E402
from hadirector.status import IpvsStatus  # noqa: E402
from tests.netns.lab import Lab  # noqa: E402

PORT = 8080
NET = ipaddress.ip_network("10.10.0.0/16")  # the real servers, on the server's lo
SERVER_LINK, CHECKER_LINK = "10.9.0.2", "10.9.0.1"  # the two namespaces' own addresses
MONITOR_LINK, VIP = "10.9.0.3", "10.9.0.100"
LATE_S = 0.005  # an advert this much later than its interval counts as late

MONITOR_CODE = r"""
import socket, struct, sys
SO_TIMESTAMPNS = 35
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
mreq = struct.pack("4s4s", socket.inet_aton("224.0.0.18"), socket.inet_aton(sys.argv[1]))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
print("listening", flush=True)
while True:
    data, anc, _, _ = sock.recvmsg(2048, 64)
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", raw[:16])
            print(f"{sec}.{nsec:09d}", flush=True)
"""

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
    user_us_per_check: float
    system_us_per_check: float
    probe_mean_ms: float
    probe_p99_le_ms: float  # the histogram bucket bound under which 99 % of probes fall
    adverts: int
    advert_late_p50_ms: float
    advert_late_p99_ms: float
    advert_late_max_ms: float
    adverts_over_5ms: int
    realtime_priority: int
    window_s: float
    load_average: float  # the machine's 1-minute load average at the end of the window


class RecordingIpvs:
    """IPVS stand-in (the build machines' kernel has none): takes what the agent sets."""

    def __init__(self, config: Any) -> None:
        self.sets = 0

    async def run(self) -> None:
        await trio.sleep_forever()

    def update(self, config: Any) -> None:
        pass

    def set_health(self, down: set[Any], **_: Any) -> None:
        self.sets += 1

    def status(self) -> IpvsStatus:
        return IpvsStatus()


def addresses(count: int) -> list[str]:
    hosts = NET.hosts()
    return [str(next(hosts)) for _ in range(count)]


def config(
    kind: str, servers: list[str], interval_s: float, advert_s: float, state_dir: Path, rt: int
) -> Any:
    check = {"type": kind, "interval": interval_s, "timeout": min(0.5, interval_s / 2)}
    if kind == "http":
        check["expect_body"] = "healthy"
    mapping: dict[str, Any] = {
        "global": {
            "router_id": "bench",
            "state_dir": str(state_dir),
            "control_socket": str(state_dir / "hadirector.sock"),
            "realtime_priority": rt,
        },
        "vrrp_instance": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 51,
                "priority": 150,
                "advert_interval": advert_s,
                "virtual_addresses": [f"{VIP}/24"],
            }
        ],
    }
    if servers:
        mapping["virtual_server"] = [
            {
                "address": "192.0.2.10:80",
                "check": check,
                "real_server": [{"address": f"{a}:{PORT}"} for a in servers],
            }
        ]
    return load_mapping(mapping)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))] if ordered else 0.0


def counters(agent: Agent) -> tuple[int, int, Durations]:
    """Probes and failed probes so far, and every check's durations merged."""
    merged = Durations()
    probes_n = failed = 0
    for entry in agent.checks.running.values():
        probes_n += entry.probes
        failed += sum(entry.failures.values())
        merged.count += entry.durations.count
        merged.sum_s += entry.durations.sum_s
        for i, n in enumerate(entry.durations._counts):
            merged._counts[i] += n
    return probes_n, failed, merged


def histogram_p99_ms(before: Durations, after: Durations) -> float:
    """The bucket bound (ms) under which 99 % of the window's probes fall (inf: above all)."""
    counts = [a - b for a, b in zip(after._counts, before._counts, strict=True)]
    total = sum(counts)
    running = 0
    for bound, n in zip((*DURATION_BUCKETS_S, float("inf")), counts, strict=True):
        running += n
        if total and running >= 0.99 * total:
            return 1000 * bound
    return 0.0


def measure(
    kind: str, rate: int, window_s: float, interval_s: float, advert_s: float, rt: int
) -> Figures:
    count = int(rate * interval_s)
    servers = addresses(count)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with Lab(lans=1, watch=False, nodes=()) as lab:
        # The real servers' addresses sit behind one next hop (on the server's lo): the
        # checker keeps one neighbour entry, not N (the kernel's table holds 1,024 by
        # default and drops beyond it).
        server = lab.node("srv", ipv4=[f"{SERVER_LINK}/24"])
        if servers:
            batch = "".join(f"addr add {a}/32 dev lo\n" for a in servers)
            subprocess.run(
                server.netns.exec_args(("ip", "-batch", "-")), input=batch.encode(), check=True
            )
        checker = lab.node("chk", ipv4=[f"{CHECKER_LINK}/24"])
        checker.netns.ip("route", "add", str(NET), "via", SERVER_LINK)
        monitor = lab.node("mon", ipv4=[f"{MONITOR_LINK}/24"])
        proc = server.netns.spawn(
            sys.executable, "-c", SERVER_CODE, kind, str(PORT), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"listening"
        mon = monitor.netns.spawn(
            sys.executable, "-c", MONITOR_CODE, MONITOR_LINK, stdout=subprocess.PIPE
        )
        assert mon.stdout is not None and mon.stdout.readline().strip() == b"listening"
        cfg = config(kind, servers, interval_s, advert_s, lab.tmpdir, rt)
        adapters = Adapters.real()
        adapters.ipvs = RecordingIpvs

        async def main() -> tuple[float, float, float, float, float, int, int, float, Durations]:
            agent = Agent(cfg, None, adapters)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(agent.run, handle_signals=False))
                # First probes spread over one interval; the instance becomes master.
                await trio.sleep(max(interval_s * 1.5, 2.0))
                usage = resource.getrusage(resource.RUSAGE_SELF)
                probes0, failed0, durations0 = counters(agent)
                wall0, real0 = time.perf_counter(), time.time()
                await trio.sleep(window_s)
                wall, real1 = time.perf_counter() - wall0, time.time()
                end = resource.getrusage(resource.RUSAGE_SELF)
                probes1, failed1, durations1 = counters(agent)
                agent.request_stop()
                with trio.move_on_after(5):
                    await trio.sleep_forever()
                nursery.cancel_scope.cancel()
            user = end.ru_utime - usage.ru_utime
            system = end.ru_stime - usage.ru_stime
            durations = Durations()
            durations.count = durations1.count - durations0.count
            durations.sum_s = durations1.sum_s - durations0.sum_s
            p99 = histogram_p99_ms(durations0, durations1)
            return (
                wall, user, system, real0, real1, probes1 - probes0, failed1 - failed0, p99,
                durations,
            )  # fmt: skip

        with checker.netns.entered():
            wall, user, system, real0, real1, probes_n, failed, p99, durations = trio.run(main)
        proc.kill()
        proc.wait()
        mon.kill()
        out, _ = mon.communicate()
    stamps = [float(x) for x in out.decode().split()] if out else []
    stamps = [t for t in stamps if real0 <= t <= real1]
    late = sorted(b - a - advert_s for a, b in itertools.pairwise(stamps))
    cpu = user + system
    per = max(probes_n, 1)
    return Figures(
        kind=kind if count else "none",
        checks=count,
        interval_s=interval_s,
        target_per_s=rate,
        achieved_per_s=round(probes_n / wall, 1),
        failed=failed,
        cpu_percent=round(100 * cpu / wall, 1),
        cpu_us_per_check=round(1e6 * cpu / per, 1) if probes_n else 0.0,
        user_us_per_check=round(1e6 * user / per, 1) if probes_n else 0.0,
        system_us_per_check=round(1e6 * system / per, 1) if probes_n else 0.0,
        probe_mean_ms=round(1000 * durations.sum_s / max(durations.count, 1), 3),
        probe_p99_le_ms=p99,
        adverts=len(stamps),
        advert_late_p50_ms=round(1000 * percentile(late, 0.5), 2),
        advert_late_p99_ms=round(1000 * percentile(late, 0.99), 2),
        advert_late_max_ms=round(1000 * late[-1], 2) if late else 0.0,
        adverts_over_5ms=sum(1 for x in late if x > LATE_S),
        realtime_priority=rt,
        window_s=round(wall, 2),
        load_average=round(os.getloadavg()[0], 2),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tcp", type=int, default=5000, help="TCP checks per second (0: skip)")
    parser.add_argument("--http", type=int, default=1000, help="HTTP checks per second (0: skip)")
    parser.add_argument("--baseline", action="store_true", help="also a run with no checks")
    parser.add_argument("--interval", type=float, default=1.0, help="each check's interval, s")
    parser.add_argument("--advert", type=float, default=0.1, help="the VRRP advert interval, s")
    parser.add_argument("--realtime", type=int, default=0, help="the agent's realtime_priority")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    runs = [(k, r) for k, r in (("tcp", args.tcp), ("http", args.http)) if r > 0]
    if args.baseline:
        runs.insert(0, ("tcp", 0))
    results = [
        measure(kind, rate, args.window, args.interval, args.advert, args.realtime)
        for kind, rate in runs
    ]
    print(
        "| kind | target /s | achieved /s | failed | CPU % of a core | CPU µs/check "
        "(user + sys) | probe mean ms | probe p99 ≤ ms | adverts | late p50 / p99 / max ms "
        "| late > 5 ms | rt | load avg |"
    )
    print("|" + " --- |" * 13)
    for f in results:
        print(
            f"| {f.kind} | {f.target_per_s:g} | {f.achieved_per_s:g} | {f.failed} | "
            f"{f.cpu_percent:g} | {f.cpu_us_per_check:g} ({f.user_us_per_check:g} + "
            f"{f.system_us_per_check:g}) | {f.probe_mean_ms:g} | {f.probe_p99_le_ms:g} | "
            f"{f.adverts} | {f.advert_late_p50_ms:g} / {f.advert_late_p99_ms:g} / "
            f"{f.advert_late_max_ms:g} | {f.adverts_over_5ms} | {f.realtime_priority} | "
            f"{f.load_average:g} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
