"""Detection latency: a real server fails -> its weight is 0 in the kernel's IPVS table.

One agent (``hadirector run``, the real IpvsManager) directs one NAT service,
192.0.2.20:80, to two real servers on a LAN of namespaces (tests/vm/lvslab.py
``routed_lan``), each checked over TCP every ``--interval`` seconds with ``--timeout``,
``fall = 1`` and ``rise = 1``, ``health_action = "quiesce"``. rs1's "server" is a bare
listening socket the bench holds (the kernel completes the handshakes; nothing else runs
there). Each repetition waits a random part of an interval (so the failure falls anywhere
between two probes), fails rs1, and waits for the agent's ``ipvs.reconciled`` log record
of reason ``health`` that wrote something (the kernel has acknowledged the new weight by
then; its ``path`` and ``dumps`` say whether it was a direct edit without a table read);
it then reads the table through the agent's own netlink adapter
(``IpvsKernel.dests``) to confirm rs1's weight is 0. Two times, from the failure: the
agent's ``check.down`` record and that ``ipvs.reconciled`` record (log time stamps; the
VM has one CPU, so the bench does not poll the kernel meanwhile: a polling loop would
take CPU from the agent it measures). Two failures:

- ``refused``: the listening socket is closed; the next probe is refused at once. Bound:
  one interval + 10 ms.
- ``dropped``: an nftables rule in rs1's namespace drops its SYNs; the next probe times
  out. Bound: one interval + timeout + 10 ms (the issue's bound; the failure time is taken
  after ``nft`` returned, so the rule is in force).

Then rs1 is repaired and the bench waits for its configured weight before the next round.
With ``fall = n`` a failure takes (n - 1) more intervals (or ``delay_before_retry``s).

Usage (root)::

    python3 bench/detection.py                      # 10 of each, interval 0.5 s, timeout 0.25 s
    python3 bench/detection.py --repeat 20 --interval 1 --timeout 0.5

Without IPVS in the running kernel it re-executes itself in the VM (tools/vm/run-in-vm);
under the VM's emulation (qemu TCG) Python runs several times slower than on hardware, so
the "+ 10 ms" of processing is measured at its most expensive. It prints figures and
asserts nothing about them.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ipvshost import has_ipvs, run_in_vm  # noqa: E402

VIP = "192.0.2.20"
RS = {"rs1": "198.51.100.11", "rs2": "198.51.100.12"}
PORT = 8080
WEIGHT = 3
POLL_S = 0.05  # only while waiting for the repair

CONFIG = """
[[virtual_server]]
address = "{vip}:80"
scheduler = "rr"
forwarding = "nat"
health_action = "quiesce"
check = {{ type = "tcp", interval = {interval}, timeout = {timeout}, rise = 1, fall = 1 }}
  [[virtual_server.real_server]]
  address = "{rs1}:{port}"
  weight = {weight}
  [[virtual_server.real_server]]
  address = "{rs2}:{port}"
  weight = {weight}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=10, help="failures of each kind")
    parser.add_argument("--interval", type=float, default=0.5, help="the check's interval, s")
    parser.add_argument("--timeout", type=float, default=0.25, help="the check's timeout, s")
    args = parser.parse_args()
    if not has_ipvs():
        own = [f"--repeat={args.repeat}", f"--interval={args.interval}"]
        own.append(f"--timeout={args.timeout}")
        return run_in_vm(__file__, own, timeout_s=1500)
    import trio

    trio.run(bench, args)
    return 0


def listener(netns: str) -> socket.socket:
    from tests.vm.lvslab import socket_in

    sock = socket_in(netns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PORT))
    sock.listen(4096)  # never accepted: the kernel completes each probe's handshake
    return sock


async def bench(args: argparse.Namespace) -> None:
    import trio

    from hadirector.ipvs.kernel import IpvsKernel
    from hadirector.ipvs.model import DestKey, ServiceKey
    from tests.vm.lvslab import Lab, agent, log_time_s, routed_lan, run

    run("modprobe", "-a", "bridge", "veth", "ip_vs", "ip_vs_rr")
    interval, timeout = args.interval, args.timeout
    tmp = Path(tempfile.mkdtemp(prefix="hd-detect-"))
    config = tmp / "director.toml"
    fields = {"vip": VIP, "rs1": RS["rs1"], "rs2": RS["rs2"], "port": PORT, "weight": WEIGHT}
    config.write_text(CONFIG.format(**fields, interval=interval, timeout=timeout))
    service = ServiceKey.virtual("tcp", VIP, 80)
    rs1 = DestKey.of(RS["rs1"], PORT)
    zero = 0  # repetitions where the table showed weight 0 after the record
    paths: list[str] = []  # each record's path ("edit": no table read) and its dumps
    inside: list[tuple[Any, Any]] = []  # the record's own since_change_ms and edit_ms
    logged: dict[str, list[tuple[float, float]]] = {"refused": [], "dropped": []}
    with Lab() as lab:
        _client, _router, director, real = routed_lan(
            lab, client="203.0.113.2", router_lan="198.51.100.254", director="198.51.100.1",
            servers=RS,
        )  # fmt: skip
        lab.ip(director, "addr", "add", f"{VIP}/32", "dev", "lo")
        socks = {name: listener(ns) for name, ns in real.items()}
        kernel = IpvsKernel(director)
        try:
            with agent(director, config) as process:
                process.wait_for(
                    "ipvs.reconciled", 180.0, where=lambda e: e.get("reason") == "start"
                )
                await kernel.open()

                async def weight() -> int | None:
                    for state in await kernel.dests(service):
                        if state.key == rs1:
                            return state.dest.weight
                    return None

                async def wait_weight(want: int, limit_s: float) -> None:
                    with trio.fail_after(limit_s):
                        while await weight() != want:
                            await trio.sleep(POLL_S)

                await wait_weight(WEIGHT, 60)
                for kind in ["refused", "dropped"] * args.repeat:
                    await trio.sleep(interval + random.uniform(0, interval))
                    mark = process.mark()
                    if kind == "refused":
                        socks["rs1"].close()
                    else:
                        lab.exec(
                            real["rs1"], "nft",
                            f"add table inet hdb; add chain inet hdb in {{ type filter hook "
                            f"input priority 0; policy accept; }}; add rule inet hdb in tcp "
                            f"dport {PORT} drop",
                        )  # fmt: skip
                    failed = time.time()
                    down = process.wait_for("check.down", 30, since=mark)
                    done = process.wait_for(
                        "ipvs.reconciled",
                        30,
                        since=mark,
                        where=lambda e: e.get("reason") == "health" and e.get("written", 0) > 0,
                    )
                    zero += await weight() == 0
                    paths.append(f"{done.get('path')}/{done.get('dumps')}")
                    inside.append((done.get("since_change_ms"), done.get("edit_ms")))
                    logged[kind].append((log_time_s(down) - failed, log_time_s(done) - failed))
                    if kind == "refused":
                        socks["rs1"] = listener(real["rs1"])
                    else:
                        lab.exec(real["rs1"], "nft", "delete table inet hdb")
                    await wait_weight(WEIGHT, 30)
        finally:
            await kernel.aclose()
            for sock in socks.values():
                sock.close()
    print(f"kernel {os.uname().release}; in VM: {os.environ.get('HADIRECTOR_IN_VM') == '1'}")
    print(f"check: tcp, interval {interval} s, timeout {timeout} s, fall 1, rise 1")
    print(
        "| failure | runs | failure -> check.down median / max ms "
        "| failure -> ipvs.reconciled median / max ms | bound ms | over the bound |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, pairs in logged.items():
        bound = interval + (timeout if kind == "dropped" else 0.0) + 0.010
        downs = [d for d, _ in pairs]
        dones = [r for _, r in pairs]
        print(
            f"| {kind} | {len(pairs)} | {ms(statistics.median(downs))} / {ms(max(downs))} | "
            f"{ms(statistics.median(dones))} / {ms(max(dones))} | {1000 * bound:.0f} | "
            f"{sum(1 for v in dones if v > bound)} |"
        )
    print(f"weight 0 in the table after the record: {zero} of {sum(map(len, logged.values()))}")
    print("records by path/dumps:", dict(sorted(Counter(paths).items())))
    print("(set_health -> kernel ack ms, of which plan + write ms):", inside)
    for kind, pairs in logged.items():
        print(kind, "(check.down, ipvs.reconciled) ms:", [(ms(a), ms(b)) for a, b in pairs])
        print(kind, "check.down -> ipvs.reconciled ms:", [ms(b - a) for a, b in pairs])


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


if __name__ == "__main__":
    sys.exit(main())
