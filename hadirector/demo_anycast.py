"""``hadirector demo --anycast``: three active directors announced over BGP by BIRD.

Builds, in namespaces of its own, a router running BIRD with ECMP, three directors each
running BIRD and ``hadirector run``, and a client::

    client 203.0.113.2 ── router 192.0.2.1 ── bridge ── d1 .11, d2 .12, d3 .13

Every director holds the anycast address 198.51.100.53 on ``lo`` and answers UDP on port 7
there with its name (a stand-in for its IPVS service); its agent announces the address
while its pool's check (a script: "is the file DIR/dN.down absent?") passes. The client
sends one datagram from each of 12 source ports every second and prints which director
answered each flow, with the router's route. The story: all three share the flows; d1's
pool fails (the file appears) and d1 leaves the route; it recovers; d2's agent is
SIGKILLed (its TUN device goes with it, BIRD withdraws); it starts again. Needs root and
BIRD 2 (``bird2``); everything it creates is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

VIP = "198.51.100.53"
PORT = 7
ROUTER = "192.0.2.1"
DIRECTORS = {"d1": "192.0.2.11", "d2": "192.0.2.12", "d3": "192.0.2.13"}
FLOWS = range(41000, 41012)

DIRECTOR_BIRD = """\
log "{dir}/bird-{name}.log" all;
router id {address};
ipv4 table anycast4;
protocol device {{}}
protocol kernel {{
    kernel table 4242; learn; scan time 10;
    ipv4 {{ table anycast4; import all; export none; }};
}}
protocol bfd {{ interface "*" {{ min rx interval 100 ms; min tx interval 100 ms; }}; }}
protocol bgp upstream {{
    local {address} as 65001; neighbor {router} as 65000;
    bfd on; graceful restart off; connect delay time 1; error wait time 1, 10;
    ipv4 {{ table anycast4; import none; export where net.len = 32; }};
}}
"""

ROUTER_BIRD = """\
log "{dir}/bird-router.log" all;
router id {router};
protocol device {{}}
protocol kernel {{ merge paths on; ipv4 {{ import none; export all; }}; }}
protocol bfd {{ interface "*" {{ min rx interval 100 ms; min tx interval 100 ms; }}; }}
template bgp director {{
    local {router} as 65000; bfd on; graceful restart off;
    connect delay time 1; error wait time 1, 10;
    ipv4 {{ import where net.len = 32; export none; }};
}}
{peers}
"""

AGENT = """\
[global]
router_id = "{name}"
control_socket = "{dir}/{name}.sock"
state_dir = "{dir}"

[anycast]
withdraw_delay = 1.0

[[virtual_server]]
address = "{vip}:{port}"
protocol = "udp"
anycast = true
real_server = [{{ address = "10.0.0.1:{port}", forwarding = "dr" }}]
check = {{ type = "script", script = ["/bin/sh", "-c", "test ! -e {dir}/{name}.down"], \
interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }}
"""

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[3].encode(), peer)
"""


class DemoError(Exception):
    """A step of the demo did not happen."""


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


class AnycastDemo:
    """The namespaces and processes of the demo; ``close()`` removes them all."""

    def __init__(self, work: Path) -> None:
        self.work = work
        prefix = f"hda{os.getpid() % 100000}"
        self.ns = {n: f"{prefix}-{n}" for n in ("sw", "router", "client", *DIRECTORS)}
        self.created: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def build(self) -> None:
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        sw, router, client = self.ns["sw"], self.ns["router"], self.ns["client"]
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for name, address in {"router": ROUTER, **DIRECTORS}.items():
            _ip("-n", sw, "link", "add", f"p-{name}", "type", "veth",
                "peer", "name", "eth0", "netns", self.ns[name])  # fmt: skip
            _ip("-n", sw, "link", "set", f"p-{name}", "master", "br0", "up")
            _ip("-n", self.ns[name], "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", self.ns[name], "link", "set", "eth0", "up")
        _ip("-n", client, "link", "add", "eth0", "type", "veth",
            "peer", "name", "down0", "netns", router)  # fmt: skip
        _ip("-n", client, "addr", "add", "203.0.113.2/24", "dev", "eth0")
        _ip("-n", client, "link", "set", "eth0", "up")
        _ip("-n", client, "route", "add", "default", "via", "203.0.113.1")
        _ip("-n", router, "addr", "add", "203.0.113.1/24", "dev", "down0")
        _ip("-n", router, "link", "set", "down0", "up")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"):
            subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", key], check=True)
        for name in DIRECTORS:
            _ip("-n", self.ns[name], "addr", "add", f"{VIP}/32", "dev", "lo")
            _ip("-n", self.ns[name], "route", "add", "default", "via", ROUTER)

    def spawn(self, node: str, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.ns[node], *argv], **kwargs
        )
        self.procs.append(proc)
        return proc

    def bird(self, node: str, config: str) -> None:
        conf = self.work / f"bird-{node}.conf"
        conf.write_text(config)
        self.spawn(node, "bird", "-f", "-c", str(conf), "-s", str(self.work / f"bird-{node}.ctl"),
                   "-P", str(self.work / f"bird-{node}.pid"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def start(self) -> None:
        peers = "\n".join(
            f"protocol bgp {n} from director {{ neighbor {a} as 65001; }}"
            for n, a in DIRECTORS.items()
        )
        self.bird("router", ROUTER_BIRD.format(dir=self.work, router=ROUTER, peers=peers))
        for name, address in DIRECTORS.items():
            self.bird(
                name, DIRECTOR_BIRD.format(dir=self.work, name=name, address=address, router=ROUTER)
            )
            self.spawn(name, sys.executable, "-c", ECHO, VIP, str(PORT), name)
            self.start_agent(name)

    def start_agent(self, name: str) -> None:
        conf = self.work / f"{name}.toml"
        conf.write_text(AGENT.format(name=name, dir=self.work, vip=VIP, port=PORT))
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.agents[name] = self.spawn(
            name, sys.executable, "-m", "hadirector", "run", "--config", str(conf),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def route(self) -> str:
        out = _ip("-n", self.ns["router"], "-o", "route", "show", VIP).strip()
        hops = [w for i, w in enumerate(out.split()[1:]) if out.split()[i] == "via"]
        names = [n for n, a in DIRECTORS.items() if a in hops]
        return f"router: {VIP} via {', '.join(names) or 'nothing'}"

    def wait_route(self, names: set[str], timeout_s: float = 60.0) -> None:
        want = f"router: {VIP} via {', '.join(sorted(names))}"
        deadline = time.monotonic() + timeout_s
        while self.route() != want:
            if time.monotonic() > deadline:
                raise DemoError(f"the router's route did not become {sorted(names)}")
            time.sleep(0.05)

    def probe(self) -> str:
        """One datagram per flow from the client; who answered, flow by flow."""
        code = (
            "import socket,sys\n"
            "out=[]\n"
            f"for p in range({FLOWS.start},{FLOWS.stop}):\n"
            " s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('',p));s.settimeout(1)\n"
            f" s.sendto(b'x',('{VIP}',{PORT}))\n"
            " try: out.append(s.recv(64).decode())\n"
            " except socket.timeout: out.append('LOST')\n"
            "print(' '.join(out))\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns["client"], sys.executable, "-c", code],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        answers = done.stdout.split()
        tally = ", ".join(f"{n} {c}" for n, c in sorted(Counter(answers).items()))
        return f"client: {len(FLOWS)} flows -> {' '.join(answers)}  ({tally})"

    def show(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            print(f"demo: {self.route()}")
            print(f"demo: {self.probe()}")
            time.sleep(1.0)

    def close(self) -> list[str]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        failures = []
        for ns in reversed(self.created):
            for _attempt in range(20):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
                if not Path("/run/netns", ns).exists():
                    break
                time.sleep(0.1)
            else:
                failures.append(ns)
        return failures


def main(duration_s: float = 20.0) -> int:
    if os.geteuid() != 0:
        print("hadirector demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("bird") is None:
        print("hadirector demo --anycast needs BIRD 2 (apt install bird2)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="hadirector-anycast-"))
    demo = AnycastDemo(work)
    failed = False
    step = max(duration_s / 4, 2.0)
    try:
        demo.build()
        print(f"demo: router {ROUTER} (BIRD, ECMP), directors d1 d2 d3 (BIRD + hadirector), "
              f"anycast {VIP}; namespaces {' '.join(demo.created)}")  # fmt: skip
        demo.start()
        print("demo: waiting for the three BGP sessions and announcements")
        demo.wait_route(set(DIRECTORS))
        demo.show(step)
        print("demo: d1's pool fails (its check script now fails): d1 withdraws")
        (work / "d1.down").touch()
        demo.wait_route({"d2", "d3"})
        demo.show(step)
        print("demo: d1's pool is back: d1 announces again")
        (work / "d1.down").unlink()
        demo.wait_route(set(DIRECTORS))
        demo.show(step)
        print("demo: d2's agent is SIGKILLed: its TUN device and route go with it")
        demo.agents["d2"].send_signal(signal.SIGKILL)
        demo.wait_route({"d1", "d3"})
        demo.show(step)
        print("demo: d2's agent starts again")
        demo.start_agent("d2")
        demo.wait_route(set(DIRECTORS))
        demo.show(2.0)
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        failed = True
    except subprocess.CalledProcessError as exc:
        print(f"demo: failed: {' '.join(map(str, exc.cmd))}: {exc.stderr}", file=sys.stderr)
        failed = True
    finally:
        left = demo.close()
        shutil.rmtree(work, ignore_errors=True)
        for ns in left:
            print(f"demo: could not remove namespace {ns}", file=sys.stderr)
        if left:
            failed = True
        else:
            print("demo: namespaces removed")
    return 1 if failed else 0
