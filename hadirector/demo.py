"""``hadirector demo``: two directors in network namespaces of their own, and a failover.

Builds a small LAN (a bridge in a "switch" namespace, two director namespaces and a client
namespace, addresses from 192.0.2.0/24), runs ``hadirector run`` in each director with an
embedded configuration, pings the VIP from the client and, while it runs, stops the master
(graceful handover) and starts it again (preemption back), printing what happens and, at the
end, the client's ping statistics. Everything it creates is deleted on exit, Ctrl-C included
(each agent's control socket lives in the demo's temporary directory). Needs root; touches
nothing outside its own namespaces and that directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VIP = "192.0.2.100"
DELETE_ATTEMPTS = 20  # tries of `ip netns del` per namespace, 0.1 s apart

CONFIG = """\
[global]
router_id = "{name}"
control_socket = "{socket}"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = 0.1
version = 3
preempt = true
virtual_addresses = ["{vip}/24"]
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class DemoLab:
    """The namespaces and links of the demo; ``close()`` removes them all."""

    def __init__(self) -> None:
        self.prefix = f"hdd{os.getpid() % 100000}"
        self.switch = f"{self.prefix}-sw"
        self.nodes = {"a": f"{self.prefix}-a", "b": f"{self.prefix}-b", "c": f"{self.prefix}-c"}
        self.created: list[str] = []

    def build(self) -> None:
        _ip("netns", "add", self.switch)
        self.created.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        addresses = {"a": "192.0.2.1/24", "b": "192.0.2.2/24", "c": "192.0.2.10/24"}
        for key, ns in self.nodes.items():
            _ip("netns", "add", ns)
            self.created.append(ns)
            port = f"{self.prefix}{key}"[-15:]
            _ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", port, "netns", self.switch)
            _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", addresses[key], "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def close(self) -> list[str]:
        """Remove every namespace made; return one line per namespace that stays."""
        failures: list[str] = []
        for ns in reversed(self.created):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            error = ""
            for attempt in range(DELETE_ATTEMPTS):
                done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
                if not Path("/run/netns", ns).exists():
                    if error:
                        print(f"demo: {ns} removed at try {attempt + 1} ({error})", file=sys.stderr)
                    break
                # e.g. EBUSY while a killed process's mount namespace is being torn down
                error = done.stderr.strip() or f"exit {done.returncode}"
                time.sleep(0.1)
            else:
                failures.append(f"{ns}: {error}")
        return failures


def _pump(name: str, stream: object, seen: dict[str, threading.Event] | None = None) -> None:
    """Print ``stream``'s lines as ``name``'s; set ``seen[state]`` on a transition to it."""
    for line in stream:  # type: ignore[attr-defined]
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()
        if "vrrp.transition" in line:
            for state, event in (seen or {}).items():
                if f"new={state}" in line:
                    event.set()


def _wait(event: threading.Event, what: str) -> None:
    if not event.wait(timeout=30):
        raise DemoError(f"{what} within 30 s")


class DemoError(Exception):
    """A step of the demo did not happen."""


def _start_agent(
    lab: DemoLab,
    key: str,
    priority: int,
    workdir: Path,
    seen: dict[str, threading.Event],
    pumps: list[threading.Thread],
) -> subprocess.Popen[str]:
    """Start director ``key``; its output is printed by a thread added to ``pumps``."""
    conf = workdir / f"director-{key}.toml"
    conf.write_text(
        CONFIG.format(
            name=f"director-{key}",
            priority=priority,
            vip=VIP,
            socket=workdir / f"director-{key}.sock",
        )
    )
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.nodes[key],
            sys.executable,
            "-m",
            "hadirector",
            "run",
            "--config",
            str(conf),
            "--log-format",
            "console",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pump = threading.Thread(target=_pump, args=(f"director-{key}", proc.stdout, seen), daemon=True)
    pump.start()
    pumps.append(pump)
    return proc


def main(duration_s: float = 20.0, keep: bool = False) -> int:
    if os.geteuid() != 0:
        print("hadirector demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    lab = DemoLab()
    procs: list[subprocess.Popen[str]] = []
    pumps: list[threading.Thread] = []  # the directors' output printers
    ping: subprocess.Popen[str] | None = None
    pump: threading.Thread | None = None
    failed = False
    work = Path(tempfile.mkdtemp(prefix="hadirector-demo-"))  # configs, control sockets
    try:
        lab.build()
        print(
            f"demo: LAN 192.0.2.0/24, VIP {VIP}; director-a priority 150, "
            "director-b priority 100, advert 0.1 s"
        )
        print(f"demo: namespaces {' '.join(lab.created)}")
        # director-a first, master before director-b starts (started together, either
        # may win the first election, and a then preempts). Each step waits for the
        # transitions it needs, then runs for its share of the duration.
        a_seen = {"MASTER": threading.Event()}
        b_seen = {"BACKUP": threading.Event(), "MASTER": threading.Event()}
        procs.append(_start_agent(lab, "a", 150, work, a_seen, pumps))
        _wait(a_seen["MASTER"], "director-a did not become master")
        procs.append(_start_agent(lab, "b", 100, work, b_seen, pumps))
        _wait(b_seen["BACKUP"], "director-b did not become backup")
        ping = subprocess.Popen(
            ["ip", "netns", "exec", lab.nodes["c"], "ping", "-n", "-i", "0.2", "-W", "1", VIP],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pump = threading.Thread(target=_pump, args=("client", ping.stdout), daemon=True)
        pump.start()
        step = max(duration_s / 3, 3.0)
        time.sleep(step)
        if not keep:
            print("demo: stopping director-a (SIGTERM): graceful handover to director-b")
            procs[0].send_signal(signal.SIGTERM)
            procs[0].wait(timeout=20)
            _wait(b_seen["MASTER"], "director-b did not take over")
            time.sleep(step)
            print("demo: starting director-a again: it preempts back")
            a_seen = {"MASTER": threading.Event()}
            procs[0] = _start_agent(lab, "a", 150, work, a_seen, pumps)
            _wait(a_seen["MASTER"], "director-a did not preempt")
            time.sleep(step)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        failed = True
    except subprocess.CalledProcessError as exc:
        print(f"demo: setup failed: {' '.join(exc.cmd)}: {exc.stderr.strip()}", file=sys.stderr)
        return 1
    finally:
        if ping is not None and ping.poll() is None:
            ping.send_signal(signal.SIGINT)  # ping prints its statistics
            with contextlib.suppress(subprocess.TimeoutExpired):
                ping.wait(timeout=5)
        if pump is not None:
            pump.join(timeout=5)
        # The backup first: the master then stops with no one to hand over to, and the
        # backup never sees its priority-0 advert (no last-moment takeover).
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for printer in pumps:  # their last lines (the STOPPED transitions) printed
            printer.join(timeout=10)
        left = lab.close()
        shutil.rmtree(work, ignore_errors=True)
        for line in left:
            print(f"demo: could not remove namespace {line}", file=sys.stderr)
        if left:
            failed = True
        else:
            print("demo: namespaces removed")
    return 1 if failed else 0
