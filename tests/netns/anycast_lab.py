"""An anycast lab in namespaces: an upstream BIRD router with ECMP, three directors each
running BIRD and ``hadirector run``, their real servers, and a client.

::

    client 203.0.113.2 ── 203.0.113.1 router 192.0.2.1 ──┐ br0 (192.0.2.0/24)
           2001:db8:113::2   2001:db8:113::1  2001:db8::1 │     (2001:db8::/64)
                                                           ├── d1 192.0.2.11 2001:db8::11
                                                           ├── d2 192.0.2.12 2001:db8::12
                                                           ├── d3 192.0.2.13 2001:db8::13
                                                           └── servers 192.0.2.21..23,
                                                               2001:db8::21..23

The network is dual-stack: BIRD runs an IPv4 and an IPv6 BGP session between each director
and the router. The agents' anycast address is of the lab's ``family``: 198.51.100.53
(``AnycastLab(lab)``) or 2001:db8:53::53 (``AnycastLab(lab, family=6)``). Every director
holds it on ``lo`` and answers UDP on port 7 there with its own name (a stand-in for the
IPVS service: the host kernel has no IPVS). Its agent announces the address while its real
server (192.0.2.2N:7 or [2001:db8::2N]:7, a TCP listener in the servers namespace) passes a
TCP check. The BIRD configurations are the shipped ``conf/bird/director.conf`` and
``router.conf`` with the example's addresses replaced, so the tests run what the README
tells operators to run.

Used by tests/netns/test_anycast.py, tests/netns/test_anycast_v6.py and bench/anycast.py.
Needs root, iproute2 and BIRD 2 (``bird``, ``birdc``); ``anycast_unavailable()`` says why
not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lab import REPO_ROOT, Lab, Netns, wait_for

VIP = "198.51.100.53"
VIP6 = "2001:db8:53::53"
ECHO_PORT = 7
ROUTER = "192.0.2.1"
ROUTER6 = "2001:db8::1"
CLIENT = "203.0.113.2"
CLIENT6 = "2001:db8:113::2"
DIRECTORS = ("d1", "d2", "d3")
CHECK_INTERVAL_S = 0.2
CHECK_FALL = 2
WITHDRAW_DELAY_S = 1.0
TABLE = 4242
BFD_INTERVAL_S = 0.1
BFD_MULTIPLIER = 3

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
name = sys.argv[3].encode()
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(name + b" " + data, peer)
"""

LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

# Sends probes from a fixed set of source ports (round robin), one at a time, each
# waiting up to 2 s for its answer, until the file argv[1] exists or argv[5] probes are
# sent (0: no limit); prints a JSON summary.
PROBER = """
import json, os, socket, sys, time
stop, vip, port, nports = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
limit = int(sys.argv[5])
family, anywhere = (socket.AF_INET6, "::") if ":" in vip else (socket.AF_INET, "0.0.0.0")
socks = []
for i in range(nports):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((anywhere, 40000 + i))
    s.settimeout(2.0)
    socks.append(s)
sent = lost = 0
by = {}
print("started", flush=True)
while not os.path.exists(stop) and (limit == 0 or sent < limit):
    s = socks[sent % nports]
    tag = str(sent).encode()
    s.sendto(tag, (vip, port))
    sent += 1
    try:
        while True:
            data, _ = s.recvfrom(2048)
            name, _, got = data.partition(b" ")
            if got == tag:
                if name.decode() not in by:
                    print("hit", name.decode(), flush=True)
                by[name.decode()] = by.get(name.decode(), 0) + 1
                break
    except socket.timeout:
        lost += 1
    time.sleep(0.005)
print(json.dumps({"sent": sent, "lost": lost, "by": by}), flush=True)
"""


def anycast_unavailable() -> str | None:
    """None if the anycast lab can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "bridge", "bird", "birdc"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2, bird2)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def director_address(name: str, family: int = 4) -> str:
    n = 10 + int(name[1:])
    return f"192.0.2.{n}" if family == 4 else f"2001:db8::{n}"


def server_address(name: str, family: int = 4) -> str:
    n = 20 + int(name[1:])
    return f"192.0.2.{n}" if family == 4 else f"2001:db8::{n}"


def endpoint(address: str, port: int) -> str:
    """``address:port``, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Bird:
    """One BIRD daemon in a namespace (config file, control socket, pid file, log)."""

    def __init__(self, ns: Netns, directory: Path, config: str) -> None:
        self.ns = ns
        self.dir = directory
        self.conf = directory / "bird.conf"
        self.sock = directory / "bird.ctl"
        self.pidfile = directory / "bird.pid"
        self.log = directory / "bird.log"
        self.conf.write_text(config.replace("log syslog all;", f'log "{self.log}" all;'))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.ns.spawn(
            "bird", "-f", "-c", str(self.conf), "-s", str(self.sock), "-P", str(self.pidfile),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        # ip netns exec execs bird: the Popen pid is bird's.
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def birdc(self, *args: str) -> str:
        return self.ns.run("birdc", "-s", str(self.sock), *args, check=False).stdout


class Director:
    """One director: its namespace, BIRD, UDP echo on the anycast address, and agent."""

    def __init__(self, lab: Lab, name: str, bird_conf: str, family: int = 4) -> None:
        self.lab = lab
        self.name = name
        self.family = family
        self.vip = VIP if family == 4 else VIP6
        self.address = director_address(name)
        self.address6 = director_address(name, 6)
        self.node = lab.node(name, ipv4=[f"{self.address}/24"], ipv6=[f"{self.address6}/64"])
        self.ns = self.node.netns
        self.dir = lab.tmpdir / name
        self.dir.mkdir()
        self.ns.ip("addr", "add", f"{self.vip}/{32 if family == 4 else 128}", "dev", "lo")
        self.ns.ip("route", "add", "default", "via", ROUTER)
        self.ns.ip("-6", "route", "add", "default", "via", ROUTER6)
        conf = bird_conf.replace("192.0.2.11", self.address)
        self.bird = Bird(self.ns, self.dir, conf.replace("2001:db8::11", self.address6))
        self.conf = self.dir / "hadirector.toml"
        self.control = self.dir / "ctl.sock"
        self.log_path = self.dir / "hadirector.log"
        self.conf.write_text(self.toml())
        self.agent: subprocess.Popen[bytes] | None = None
        self.echo = self._spawn_echo()

    @property
    def server(self) -> str:
        """Its real server, ``address:port``."""
        return endpoint(server_address(self.name, self.family), ECHO_PORT)

    def toml(self) -> str:
        return f"""
[global]
router_id = "{self.name}"
control_socket = "{self.control}"
state_dir = "{self.dir}"

[anycast]
route_table = {TABLE}
withdraw_delay = {WITHDRAW_DELAY_S}

[[virtual_server]]
address = "{endpoint(self.vip, ECHO_PORT)}"
protocol = "udp"
anycast = true
anycast_min_servers = 1
real_server = [{{ address = "{self.server}", forwarding = "dr" }}]

[virtual_server.check]
type = "tcp"
interval = {CHECK_INTERVAL_S}
timeout = 0.1
rise = 1
fall = {CHECK_FALL}
"""

    def _spawn_echo(self) -> subprocess.Popen[bytes]:
        return self.ns.spawn(sys.executable, "-c", ECHO, self.vip, str(ECHO_PORT), self.name)

    def stop_echo(self) -> None:
        self.echo.kill()
        self.echo.wait(timeout=10)

    def start_agent(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.agent = self.ns.spawn(
                sys.executable, "-m", "hadirector", "run", "--config", str(self.conf),
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def agent_signal(self, signum: int) -> None:
        assert self.agent is not None
        os.kill(self.agent.pid, signum)

    def wait_agent_exit(self, timeout_s: float) -> int:
        assert self.agent is not None
        return self.agent.wait(timeout=timeout_s)

    def status(self) -> dict[str, object]:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        proc = subprocess.run(
            self.ns.exec_args(
                [sys.executable, "-m", "hadirector", "status", "--json", "-s", str(self.control)]
            ),
            capture_output=True, text=True, env=env, timeout=30, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            return {}
        data: dict[str, object] = json.loads(proc.stdout)
        return data

    def routes(self) -> str:
        """The agent's table, of the lab's address family."""
        family = f"-{self.family}"
        return self.ns.ip(family, "route", "show", "table", str(TABLE), check=False).stdout

    def flush_routes(self) -> None:
        """Flush the agent's table (the lab's address family) behind the agent's back."""
        self.ns.ip(f"-{self.family}", "route", "flush", "table", str(TABLE))

    def holds_route(self) -> bool:
        """The agent's host route to the anycast address is in its table."""
        return f"{self.vip} dev hdvip0" in self.routes()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class AnycastLab:
    """The whole lab (see the module text); ``close()`` removes everything."""

    def __init__(self, lab: Lab, family: int = 4) -> None:
        self.lab = lab
        self.family = family
        self.vip = VIP if family == 4 else VIP6
        self.client_address = CLIENT if family == 4 else CLIENT6
        conf = REPO_ROOT / "conf" / "bird"
        director_conf = (conf / "director.conf").read_text()
        router_conf = (conf / "router.conf").read_text()
        self.router = lab.node("router", ipv4=[f"{ROUTER}/24"], ipv6=[f"{ROUTER6}/64"]).netns
        self.router.sysctl("net.ipv4.ip_forward", "1")
        self.router.sysctl("net.ipv4.fib_multipath_hash_policy", "1")
        self.router.sysctl("net.ipv6.conf.all.forwarding", "1")
        self.router.sysctl("net.ipv6.fib_multipath_hash_policy", "1")
        self.client = lab.namespace("client")
        self.client.ip("link", "add", "eth0", "netns", self.client.name, "type", "veth",
                       "peer", "name", "down0", "netns", self.router.name)  # fmt: skip
        self.client.ip("addr", "add", f"{CLIENT}/24", "dev", "eth0")
        self.client.ip("addr", "add", f"{CLIENT6}/64", "dev", "eth0", "nodad")
        self.client.ip("link", "set", "eth0", "up")
        self.client.ip("route", "add", "default", "via", "203.0.113.1")
        self.client.ip("-6", "route", "add", "default", "via", "2001:db8:113::1")
        self.router.ip("addr", "add", "203.0.113.1/24", "dev", "down0")
        self.router.ip("addr", "add", "2001:db8:113::1/64", "dev", "down0", "nodad")
        self.router.ip("link", "set", "down0", "up")
        rdir = lab.tmpdir / "router"
        rdir.mkdir()
        self.router_bird = Bird(self.router, rdir, router_conf)
        self.servers = lab.node(
            "servers",
            ipv4=[f"{server_address(d)}/24" for d in DIRECTORS],
            ipv6=[f"{server_address(d, 6)}/64" for d in DIRECTORS],
        )
        self.listeners: dict[str, subprocess.Popen[bytes]] = {}
        self.directors = {name: Director(lab, name, director_conf, family) for name in DIRECTORS}

    def start(self) -> None:
        for name in DIRECTORS:
            self.start_server(name)
        self.router_bird.start()
        for d in self.directors.values():
            d.bird.start()
            d.start_agent()

    def start_server(self, name: str) -> None:
        proc = self.servers.netns.spawn(
            sys.executable, "-c", LISTENER, server_address(name, self.family), str(ECHO_PORT),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        proc.stdout.readline()  # "listening"
        self.listeners[name] = proc

    def stop_server(self, name: str) -> None:
        proc = self.listeners.pop(name)
        proc.kill()
        proc.wait(timeout=10)

    def next_hops(self) -> frozenset[str]:
        """The directors the router's route to the anycast address goes through now."""
        family = f"-{self.family}"
        out = self.router.ip(family, "-o", "route", "show", self.vip, check=False).stdout
        words = out.split()
        return frozenset(
            name
            for name in DIRECTORS
            if any(w == "via" and words[i + 1] == director_address(name, self.family)
                   for i, w in enumerate(words[:-1]))
        )  # fmt: skip

    def wait_hops(self, names: set[str] | frozenset[str], timeout_s: float) -> float:
        """Wait until the route's next hops are exactly ``names``; the monotonic time seen."""
        want = frozenset(names)
        wait_for(
            lambda: self.next_hops() == want,
            timeout_s,
            f"next hops {sorted(want)} (have {sorted(self.next_hops())})",
            interval_s=0.002,
        )
        return time.monotonic()

    def kill_bird_until_out(self, name: str, timeout_s: float) -> float:
        """SIGKILL ``name``'s BIRD and wait until the router's next hops are the others and
        the process is gone: ms from the signal to the router (BIRD is left down)."""
        bird = self.directors[name].bird
        t0 = time.monotonic()
        bird.signal(signal.SIGKILL)
        t_out = self.wait_hops(frozenset(DIRECTORS) - {name}, timeout_s)
        assert bird.proc is not None
        bird.proc.wait(timeout=30)
        return (t_out - t0) * 1000

    def freeze_bird_until_out(self, name: str, timeout_s: float) -> float:
        """Freeze ``name``'s BIRD (SIGSTOP) until the router's next hops are the others (its
        BFD session times out), then thaw it: ms from the freeze to the router."""
        bird = self.directors[name].bird
        t0 = time.monotonic()
        bird.signal(signal.SIGSTOP)
        try:
            t_out = self.wait_hops(frozenset(DIRECTORS) - {name}, timeout_s)
        finally:
            bird.signal(signal.SIGCONT)
        return (t_out - t0) * 1000

    def flow_director(self, sport: int) -> str | None:
        """Which director the router sends the client's UDP flow from ``sport`` to."""
        out = self.router.ip(
            f"-{self.family}", "route", "get", self.vip, "from", self.client_address,
            "iif", "down0", "ipproto", "udp", "sport", str(sport), "dport", str(ECHO_PORT),
            check=False,
        ).stdout  # fmt: skip
        words = out.split()
        for i, w in enumerate(words[:-1]):
            if w == "via":
                for name in DIRECTORS:
                    if words[i + 1] == director_address(name, self.family):
                        return name
        return None

    def start_prober(
        self, nports: int = 32, limit: int = 0
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Probes from the client (see PROBER) until ``stop_prober`` or ``limit`` probes."""
        stop = self.lab.tmpdir / f"prober-stop-{time.monotonic_ns()}"
        proc = self.client.spawn(
            sys.executable, "-c", PROBER, str(stop), self.vip, str(ECHO_PORT), str(nports),
            str(limit),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        proc.stdout.readline()  # "started"
        return proc, stop

    def probe_every_flow(self) -> dict[str, object]:
        """32 client flows (source ports 40000-40031), routed and then probed three times
        each: asserted to reach every director between them and to lose no probe; the
        prober's result."""
        spread = {self.flow_director(port) for port in range(40000, 40032)}
        assert spread == set(DIRECTORS), spread  # hashed on ports, reach every director
        proc, _ = self.start_prober(nports=32, limit=96)
        out, _ = proc.communicate(timeout=60)
        result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
        assert (result["sent"], result["lost"]) == (96, 0), result
        by = result["by"]
        assert isinstance(by, dict) and set(by) == set(DIRECTORS), result
        return result

    @staticmethod
    def wait_prober_hits(proc: subprocess.Popen[bytes], names: set[str]) -> None:
        """Read the prober's output until each of ``names`` has answered a probe."""
        assert proc.stdout is not None
        seen: set[str] = set()
        while not names <= seen:
            line = proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"prober ended before {sorted(names - seen)} answered")
            if line.startswith("hit "):
                seen.add(line.split()[1])

    @staticmethod
    def stop_prober(proc: subprocess.Popen[bytes], stop: Path) -> dict[str, object]:
        stop.touch()
        out, _ = proc.communicate(timeout=30)
        result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    def announced(self, name: str) -> list[tuple[bool, str]]:
        """Director ``name``'s anycast addresses as its status shows them: (announced, why)."""
        anycast = self.directors[name].status().get("anycast")
        if not isinstance(anycast, dict):
            return []
        return [(a["announced"], a["reason"]) for a in anycast["addresses"]]

    @contextlib.contextmanager
    def each_test(self, up_s: float) -> Iterator[AnycastLab]:
        """A test's start: every director in the router's route again (within ``up_s``)."""
        self.wait_hops(frozenset(DIRECTORS), up_s)
        try:
            yield self
        except BaseException:
            print(self.logs())
            raise

    def logs(self) -> str:
        parts = []
        for d in self.directors.values():
            parts.append(f"--- {d.name} agent\n{d.log()[-3000:]}")
            parts.append(f"--- {d.name} bird\n{_tail(d.bird.log)}")
        parts.append(f"--- router bird\n{_tail(self.router_bird.log)}")
        return "\n".join(parts)

    def close(self) -> None:
        for d in self.directors.values():
            if d.agent is not None and d.agent.poll() is None:
                d.agent.kill()
            d.bird.kill()
        self.router_bird.kill()


@contextlib.contextmanager
def started(family: int, up_s: float) -> Iterator[AnycastLab]:
    """The lab of ``family`` built and started, every director in the router's route (within
    ``up_s``); the logs printed if that or the block fails; everything removed after."""
    with Lab(watch=False, nodes=()) as lab:
        ac = AnycastLab(lab, family)
        try:
            ac.start()
            ac.wait_hops(frozenset(DIRECTORS), up_s)
            yield ac
        except BaseException:
            print(ac.logs())
            raise
        finally:
            ac.close()


def module_lab(family: int, up_s: float) -> Iterator[AnycastLab]:
    """For a module-scoped fixture (``yield from``): the test skipped, saying why, where
    the lab cannot run; else ``started(family, up_s)`` for the module."""
    reason = anycast_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with started(family, up_s) as ac:
        yield ac


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""
