"""The namespace lab: a LAN in network namespaces for every namespace test and the benches.

``Lab`` builds, per run, a "switch" namespace holding one Linux bridge per LAN (``br0``,
``br1``), and the namespaces ``dir-a``, ``dir-b`` (directors) and ``client``, each joined
to every bridge by a veth pair (``eth0`` on LAN 1, ``eth1`` on LAN 2)::

    LAN 1  192.0.2.0/24     2001:db8:1::/64   dir-a .1/::1  dir-b .2/::2  client .10/::10
    LAN 2  198.51.100.0/24  2001:db8:2::/64   (same host numbers)          VIPs .100/::64 (host 100)

It also runs a wire watcher in the switch namespace (a packet socket on each bridge, in
promiscuous mode) that records every ARP, neighbour advertisement/solicitation and VRRP
frame with a monotonic timestamp, and the helpers tests need: run a command in a node,
take a director off the wire (carrier loss), split the directors from each other while the
client still hears both (bridge port isolation), read neighbour entries, MACs and who holds
an address.

It also defines the implementation-neutral ``Director`` protocol that tests and
``bench/failover.py`` drive (keepalived now, hadirector later), the ``InstanceSpec`` that
describes one VRRP instance to any implementation, and ``ProcessDirector``, a base class
that runs an agent in a node and follows its state from an event stream.
``HadirectorDirector`` runs ``hadirector run`` that way (TOML from ``hadirector_toml``,
states from its JSON log); ``KeepalivedDirector`` lives in keepalived.py.

A lab for adapter tests that build their own nodes: ``bare_lab()`` (or
``Lab(nodes=())``) makes only the switch, and ``node(role, ipv4=..., ipv6=...)`` plugs a
new namespace into ``br0`` and returns a ``Node``: its ``netns`` (a ``Netns``), its
interface, and ``set_carrier()`` (downs the bridge-side end: the node sees a cable pull).
``namespace(role)`` gives a bare namespace. ``Capture`` runs tcpdump in a namespace and
asks tshark about the pcap.

A ``Netns`` runs things in one namespace: ``run(...)`` / ``ip(...)`` / ``spawn(...)`` under
``ip netns exec``, ``python(code)`` in a fresh interpreter there (this repository on
``PYTHONPATH``), and ``entered()``, a context manager that moves *the calling thread* into
the namespace with ``setns(2)`` and back out afterwards. Two ways to run code in a
namespace, and when to use which:
- ``entered()`` is for trio code in the test process itself. A socket belongs to the
  namespace it was *created* in, for its whole life: open the adapters (raw sockets,
  packet sockets, netlink sockets) inside ``with ns.entered():`` and use them anywhere
  afterwards, even from one trio loop talking to several namespaces. Code that resolves
  names lazily through the calling thread (``socket.if_nametoindex``, ``/sys``) must run
  inside the block too; ``/sys`` still shows the test process's own view.
- ``python()`` / ``spawn()`` give a separate process that lives entirely in the namespace,
  as the agent does under ``ip netns exec`` in production.

Everything a ``Lab`` creates is removed by ``close()`` (also on errors): processes it
started are killed by process group, its namespaces deleted. Namespace names carry the
pid, so concurrent runs do not collide, and namespaces left by dead runs are swept.
Addresses: only documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32), only inside namespaces created here. Needs root, iproute2 and bridge.

This module must not send traffic outside the namespaces it created, must not touch the
host's own network configuration, and must not import hadirector (it runs its CLI), trio,
pyroute2 or scapy
(it is imported by tools that must start fast, and runs as the watcher program itself:
``python tests/netns/lab.py watch OUT IFACE...``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

T = TypeVar("T")

NODES = ("dir-a", "dir-b", "client")
DIRECTORS = ("dir-a", "dir-b")
HOST_NUMBER = {"dir-a": 1, "dir-b": 2, "client": 10}
VIP_HOST_NUMBER = 100
LAN_NET4 = ("192.0.2.0/24", "198.51.100.0/24")
LAN_NET6 = ("2001:db8:1::/64", "2001:db8:2::/64")
PORT_LETTER = {"dir-a": "a", "dir-b": "b", "client": "c"}
NS_PREFIX = "hdl"
_NS_RE = re.compile(r"^hdl(\d+)[a-z]+-")
_NS_SUFFIX = {"switch": "sw", "dir-a": "a", "dir-b": "b", "client": "cl"}
_lab_counter = itertools.count()
WATCH_READY = "ready"
REPO_ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)


def netns_unavailable() -> str | None:
    """None if this process can build labs here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"needs {tool} (iproute2)"
    return None


def lan_address(node: str, lan: int = 0, family: int = 4) -> str:
    """The fixed address of ``node`` on LAN ``lan`` (0-based) in ``family`` (4 or 6)."""
    return _host(LAN_NET4[lan] if family == 4 else LAN_NET6[lan], HOST_NUMBER[node])


def vip_address(lan: int = 0, family: int = 4) -> str:
    """The virtual address of LAN ``lan``: 192.0.2.100, 198.51.100.100 or 2001:db8:N::64."""
    return _host(LAN_NET4[lan] if family == 4 else LAN_NET6[lan], VIP_HOST_NUMBER)


def _host(net: str, number: int) -> str:
    network = ipaddress.ip_network(net)
    return str(network.network_address + number)


def prefix_len(family: int) -> int:
    return 24 if family == 4 else 64


def iface(lan: int) -> str:
    """The name of a node's interface on LAN ``lan``: eth0, eth1."""
    return f"eth{lan}"


def wait_for(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str = "condition",
    interval_s: float = 0.02,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises TimeoutError naming ``what`` (and the last value seen) when ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.1f} s waiting for {what}: {value!r}")
        time.sleep(interval_s)


@dataclass(frozen=True)
class Frame:
    """One frame seen on a bridge: ``kind`` is "arp", "vrrp", "na" or "ns".

    ``t`` is CLOCK_MONOTONIC seconds (the kernel's receive time), comparable with
    ``time.monotonic()`` in any process on the host. ``info`` holds the decoded fields:
    arp: op, sender_ip, sender_mac, target_ip, target_mac, gratuitous;
    vrrp: version, vrid, priority, interval_cs, src, dst, ttl, addresses, raw (hex of the
    VRRP packet, for checksum checks);
    na/ns: src, target, and for na the flags router/solicited/override and target_mac.
    """

    t: float
    lan: int
    kind: str
    src_mac: str
    dst_mac: str
    info: Mapping[str, Any]


@dataclass(frozen=True)
class Transition:
    """A state change of one VRRP instance, as the agent reported it."""

    t: float  # time.monotonic() when the test process learned of it
    instance: str
    old: str
    new: str


@dataclass(frozen=True)
class InstanceSpec:
    """One VRRP instance, described independently of the implementation running it."""

    name: str = "VI_1"
    interface: str = "eth0"
    vrid: int = 51
    priority: int = 100
    advert_s: float = 1.0
    version: int = 3
    preempt: bool = True
    vips: tuple[str, ...] = ("192.0.2.100/24",)
    unicast_src: str | None = None
    unicast_peers: tuple[str, ...] = ()
    auth_pass: str | None = None  # VRRPv2 simple password (keepalived "PASS")
    # Unicast v3/IPv4: checksum pseudo-header names 224.0.0.18, not the peer (keepalived's
    # and hadirector's "old_unicast_checksum").
    old_unicast_checksum: bool = False

    def vip_hosts(self) -> tuple[str, ...]:
        """The VIPs without prefix lengths."""
        return tuple(v.split("/")[0] for v in self.vips)


def default_instances(
    lab: Lab,
    node: str,
    priority: int,
    advert_s: float,
    version: int = 3,
    *,
    unicast: bool = False,
    preempt: bool = True,
    family: int = 4,
    vrid: int = 51,
    auth_pass: str | None = None,
) -> list[InstanceSpec]:
    """One instance per LAN of ``lab`` for ``node``: VIP .100 (::64 in IPv6) on each LAN.

    With ``unicast`` the instance advertises to the other director's LAN address instead of
    the multicast group.
    """
    peer = "dir-b" if node == "dir-a" else "dir-a"
    specs = []
    for lan in range(lab.lans):
        specs.append(
            InstanceSpec(
                name=f"VI_{lan + 1}",
                interface=iface(lan),
                vrid=vrid + lan,
                priority=priority,
                advert_s=advert_s,
                version=version,
                preempt=preempt,
                vips=(f"{vip_address(lan, family)}/{prefix_len(family)}",),
                unicast_src=lan_address(node, lan, family) if unicast else None,
                unicast_peers=(lan_address(peer, lan, family),) if unicast else (),
                auth_pass=auth_pass,
            )
        )
    return specs


class Director(Protocol):
    """A VRRP agent running in one director namespace, as tests and the bench drive it."""

    node: str
    instances: Sequence[InstanceSpec]

    def start(self) -> None:
        """Start the agent (after a crash: clear leftover VIPs and put it back on the wire)."""

    def stop(self, timeout_s: float = 15.0) -> None:
        """Graceful stop: SIGTERM and wait for the process to exit."""

    def crash(self) -> None:
        """SIGKILL the agent and take the node off the wire (its VIPs stay configured)."""

    def state(self, instance: str | None = None) -> str:
        """The last reported state of ``instance`` (default: the first one), or "INIT"."""

    def wait_state(self, state: str, timeout_s: float, instance: str | None = None) -> None:
        """Wait until ``instance`` (default: every instance) reports ``state``."""

    def transitions(self) -> list[Transition]:
        """Every transition reported since this object was made, oldest first."""

    def running(self) -> bool:
        """Whether the agent process is alive."""


DirectorFactory = Callable[["Lab", str, int, float, int], Director]
"""(lab, node, priority, advert_s, version) -> Director, as the bench calls it."""


class ProcessDirector:
    """Base for a ``Director`` that is one process tree in a node, reporting transitions.

    Subclasses provide ``argv()`` (the command), may override ``prepare()`` (write
    configuration before each start) and feed reported states to ``report()`` from a
    thread: ``follow_json_log()`` does this for JSON-lines logs on stdout.
    """

    def __init__(self, lab: Lab, node: str, instances: Sequence[InstanceSpec]) -> None:
        self.lab = lab
        self.node = node
        self.instances: Sequence[InstanceSpec] = list(instances)
        self.dir = lab.tmpdir / f"{type(self).__name__.lower()}-{node}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._cond = threading.Condition()
        self._states: dict[str, str] = {}
        self._transitions: list[Transition] = []
        self._crashed = False
        self._starts = 0
        #: threads reading the current process's output; stop() and crash() join them, so
        #: that everything the process wrote before it ended is reported when they return
        self._readers: list[threading.Thread] = []

    # -- to be provided by subclasses ------------------------------------------------------

    def argv(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration files; called before every start."""

    def popen_kwargs(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments (e.g. ``env``)."""
        return {}

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        """Hook after the process started (e.g. to start a log-reading thread)."""

    # -- state reports -------------------------------------------------------------------

    def report(self, instance: str, new: str, t: float | None = None) -> None:
        """Record that ``instance`` reported state ``new`` (thread-safe)."""
        now = time.monotonic() if t is None else t
        new = new.upper()
        with self._cond:
            old = self._states.get(instance, "INIT")
            if old != new:
                self._transitions.append(Transition(now, instance, old, new))
            self._states[instance] = new
            self._cond.notify_all()

    def follow_json_log(
        self,
        stream: IO[bytes],
        sink: IO[bytes] | None = None,
        event: str = "vrrp.transition",
    ) -> threading.Thread:
        """Read JSON lines from ``stream``; report each ``event`` (fields instance, new).

        Every line is copied to ``sink`` when given (a log file for post-mortems).
        """

        def reader() -> None:
            try:
                follow()
            finally:
                if sink is not None:
                    sink.close()

        def follow() -> None:
            for raw in iter(stream.readline, b""):
                if sink is not None:
                    sink.write(raw)
                    sink.flush()
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == event:
                    self.report(str(record.get("instance", "")), str(record.get("new", "")))

        thread = threading.Thread(target=reader, name=f"log-{self.node}", daemon=True)
        thread.start()
        self._readers.append(thread)
        return thread

    # -- Director ------------------------------------------------------------------------

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.node}: already running")
        if self._crashed:
            for spec in self.instances:
                for vip in spec.vips:
                    self.lab.run(
                        self.node, "ip", "addr", "del", vip, "dev", spec.interface, check=False
                    )
            for lan in range(self.lab.lans):
                self.lab.link(self.node, iface(lan), up=True)
            self._crashed = False
        with self._cond:
            self._states.clear()
        self._readers = []
        self.prepare()
        self._starts += 1
        self.proc = self.lab.popen(
            self.node,
            *self.argv(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **self.popen_kwargs(),
        )
        self.started(self.proc)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.lab.kill(self.proc)
                raise
        self.lab.reap(self.proc, readers=self._readers)

    def crash(self) -> None:
        if self.proc is None:
            raise RuntimeError(f"{self.node}: not running")
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        # Off the wire at once: the killed processes can take a second to finish exiting.
        for lan in range(self.lab.lans):
            self.lab.link(self.node, iface(lan), up=False)
        self._crashed = True
        self.lab.reap(self.proc, readers=self._readers)

    def state(self, instance: str | None = None) -> str:
        name = instance or self.instances[0].name
        with self._cond:
            return self._states.get(name, "INIT")

    def wait_state(self, state: str, timeout_s: float, instance: str | None = None) -> None:
        names = [instance] if instance else [s.name for s in self.instances]
        want = state.upper()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not all(self._states.get(n) == want for n in names):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.node}: wanted {want} for {names} within {timeout_s:.1f} s, "
                        f"states are {self._states}"
                    )
                self._cond.wait(remaining)

    def transitions(self) -> list[Transition]:
        with self._cond:
            return list(self._transitions)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def hadirector_toml(
    instances: Sequence[InstanceSpec],
    *,
    router_id: str,
    state_dir: Path,
    sync_group: str | None = None,
    log_level: str = "info",
) -> str:
    """A hadirector configuration (VRRP only) for ``instances`` (README: configuration)."""
    lines = [
        "[global]",
        f"router_id = {_toml_str(router_id)}",
        f"log_level = {_toml_str(log_level)}",
        f"state_dir = {_toml_str(str(state_dir))}",
        f"control_socket = {_toml_str(str(state_dir / 'hadirector.sock'))}",
    ]
    for spec in instances:
        lines += [
            "",
            "[[vrrp_instance]]",
            f"name = {_toml_str(spec.name)}",
            f"interface = {_toml_str(spec.interface)}",
            f"vrid = {spec.vrid}",
            f"priority = {spec.priority}",
            f"advert_interval = {spec.advert_s!r}",
            f"version = {spec.version}",
            f"preempt = {'true' if spec.preempt else 'false'}",
            f"virtual_addresses = [{', '.join(_toml_str(v) for v in spec.vips)}]",
        ]
        if spec.unicast_src:
            lines.append(f"unicast_src = {_toml_str(spec.unicast_src)}")
        if spec.unicast_peers:
            lines.append(f"unicast_peers = [{', '.join(_toml_str(p) for p in spec.unicast_peers)}]")
        if spec.auth_pass is not None:
            lines += ['auth_type = "pass"', f"auth_pass = {_toml_str(spec.auth_pass)}"]
        if spec.old_unicast_checksum:
            lines.append("old_unicast_checksum = true")
    if sync_group:
        lines += [
            "",
            "[[sync_group]]",
            f"name = {_toml_str(sync_group)}",
            f"instances = [{', '.join(_toml_str(s.name) for s in instances)}]",
        ]
    return "\n".join(lines) + "\n"


def hadirector_command() -> list[str] | None:
    """How to run the hadirector CLI here (None when it is not installed)."""
    path = shutil.which("hadirector")
    if path:
        return [path]
    import importlib.util

    if importlib.util.find_spec("hadirector") is not None:
        return [sys.executable, "-m", "hadirector"]
    return None


class HadirectorDirector(ProcessDirector):
    """``hadirector run`` in one lab director namespace (a ``Director``).

    Same defaults as ``KeepalivedDirector``: one instance per LAN, VIP .100, vrid 51+lan.
    States come from its JSON log on stdout (``vrrp.transition`` with ``instance``,
    ``new``); the log is also kept in ``hadirector.log`` for post-mortems.
    """

    def __init__(
        self,
        lab: Lab,
        node: str,
        priority: int = 100,
        advert_s: float = 1.0,
        version: int = 3,
        *,
        instances: Sequence[InstanceSpec] | None = None,
        unicast: bool = False,
        preempt: bool = True,
        family: int = 4,
        auth_pass: str | None = None,
        sync_group: str | None = None,
        log_level: str = "info",
    ) -> None:
        if instances is None:
            instances = default_instances(
                lab,
                node,
                priority,
                advert_s,
                version,
                unicast=unicast,
                preempt=preempt,
                family=family,
                auth_pass=auth_pass,
            )
        super().__init__(lab, node, instances)
        self.sync_group = sync_group
        self.log_level = log_level
        self.conf_path = self.dir / "hadirector.toml"
        self.log_path = self.dir / "hadirector.log"

    def prepare(self) -> None:
        self.conf_path.write_text(
            hadirector_toml(
                self.instances,
                router_id=f"lab-{self.node}",
                state_dir=self.dir,
                sync_group=self.sync_group,
                log_level=self.log_level,
            )
        )

    def argv(self) -> list[str]:
        command = hadirector_command()
        if command is None:
            raise RuntimeError("hadirector is not installed")
        return [*command, "run", "--config", str(self.conf_path), "--log-format", "json"]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"env": {**os.environ, "PYTHONUNBUFFERED": "1"}}

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.follow_json_log(proc.stdout, sink=open(self.log_path, "ab"))  # noqa: SIM115

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        """The agent's JSON log records so far (all runs), optionally only ``event``."""
        out = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                out.append(record)
        return out


def _run_ok(argv: Sequence[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating process is gone; return their names.

    Processes still inside such a namespace were started by that dead lab run: they are
    killed by pid before the namespace goes.
    """
    listing = _run_ok(["ip", "netns", "list"]).stdout
    swept = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_RE.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        for pid_text in _run_ok(["ip", "netns", "pids", name]).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_text), signal.SIGKILL)
        _run_ok(["ip", "netns", "del", name])
        swept.append(name)
    return swept


# -- namespaces, nodes and captures for adapter tests ------------------------------


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Netns:
    """One named network namespace and ways to run things inside it (see the module text)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen[bytes]] = []

    def stop_processes(self) -> None:
        """Kill the processes ``spawn()`` started (a ``Lab`` does this when it closes)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self._procs.clear()

    def exec_args(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, *args: str, check: bool = True, timeout_s: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the namespace; raise with its stderr if ``check`` and it fails."""
        proc = subprocess.run(
            self.exec_args(args), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"[{self.name}] {' '.join(args)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("ip", *args, check=check)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def python(
        self, code: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a fresh interpreter inside the namespace (repo on PYTHONPATH)."""
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        proc = subprocess.run(
            self.exec_args([sys.executable, "-c", code]),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"[{self.name}] python -> {proc.returncode}\n{proc.stderr}")
        return proc

    def spawn(self, *args: str, **popen_kwargs: object) -> subprocess.Popen[bytes]:
        """Start a long-running command in the namespace; killed when the namespace goes."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            self.exec_args(args), **popen_kwargs
        )
        self._procs.append(proc)
        return proc

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into this namespace for the block, then back."""
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(_NETNS_DIR / self.name, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)


class Node:
    """A namespace with one interface plugged into the lab's bridge."""

    def __init__(self, lab: Lab, netns: Netns, ifname: str, port: str) -> None:
        self.lab = lab
        self.netns = netns
        self.ifname = ifname
        self.port = port  # the bridge-side end of the veth, in the switch namespace

    @property
    def name(self) -> str:
        return self.netns.name

    @property
    def mac(self) -> str:
        out = self.netns.ip("-o", "link", "show", "dev", self.ifname).stdout
        match = re.search(r"link/ether ([0-9a-f:]{17})", out)
        assert match, out
        return match.group(1)

    def link_local(self) -> str:
        """The interface's IPv6 link-local address (without scope)."""
        out = self.netns.ip("-6", "-o", "addr", "show", "dev", self.ifname, "scope", "link")
        match = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out.stdout)
        assert match, out.stdout
        return match.group(1)

    def set_carrier(self, up: bool) -> None:
        """Give (or take away) the node's carrier by setting the bridge-side end up/down."""
        self.lab.switch.ip("link", "set", self.port, "up" if up else "down")

    def wait_ipv6_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until no IPv6 address on the interface is tentative any more."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.netns.ip("-6", "addr", "show", "dev", self.ifname).stdout
            if "inet6" in out and "tentative" not in out:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: IPv6 addresses still tentative")


class Capture:
    """``tcpdump`` writing a pcap in a namespace; read it back with ``tshark``.

    ``with Capture(ns, "eth0", "arp", path) as cap:`` returns once tcpdump is listening;
    leaving the block stops it and flushes the file. tcpdump reads the frames a moment
    after they are sent, and what it has not read when stopped is lost: before leaving,
    ``cap.wait_frames(filter, n)`` waits until the frames the test is about are in the file.
    ``cap.fields(...)`` and ``cap.problems()`` ask tshark about what was captured.
    """

    def __init__(self, netns: Netns, ifname: str, bpf_filter: str, path: Path) -> None:
        self.netns = netns
        self.ifname = ifname
        self.bpf_filter = bpf_filter
        self.path = Path(path)
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        for tool in ("tcpdump", "tshark"):
            if shutil.which(tool) is None:
                import pytest  # only tests capture; tools import this module without pytest

                pytest.skip(f"needs {tool}")
        self._proc = self.netns.spawn(
            "tcpdump",
            "-i",
            self.ifname,
            "-n",
            "--immediate-mode",
            "-U",
            "-w",
            str(self.path),
            *self.bpf_filter.split(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        line = self._proc.stderr.readline().decode()
        if "listening on" not in line:
            raise RuntimeError(f"tcpdump did not start: {line}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    def tshark(self, *args: str) -> str:
        """Run tshark on the capture file (outside any namespace) and return its stdout."""
        proc = subprocess.run(
            ["tshark", "-n", "-r", str(self.path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tshark {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
        return proc.stdout

    def wait_frames(self, display_filter: str, count: int, timeout_s: float = 30.0) -> None:
        """Wait until ``count`` frames matching ``display_filter`` are in the file (tcpdump
        writes each frame as soon as it has read it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                seen = len(self.fields(display_filter, "frame.number"))
            except RuntimeError:  # tshark read a frame still being written
                seen = 0
            if seen >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} frames matching {display_filter!r}: {seen} seen")
            time.sleep(0.05)

    def fields(self, display_filter: str, *names: str) -> list[list[str]]:
        """One row per matching frame, one column per tshark field name."""
        out = self.tshark(
            "-Y",
            display_filter,
            "-T",
            "fields",
            "-E",
            "separator=|",
            *itertools.chain.from_iterable(("-e", n) for n in names),
        )
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def problems(self, *tshark_options: str) -> str:
        """tshark's text for every malformed frame or expert warning/error ("" = clean).

        ``tshark_options`` are extra ``-o pref:value`` settings, e.g.
        ``("-o", "arp.detect_duplicate_ips:FALSE")`` when a VIP moving between MACs is the
        point of the test rather than a fault.
        """
        return self.tshark(
            *tshark_options, "-Y", "_ws.malformed || _ws.expert.severity >= 6291456", "-V"
        )


class Lab:
    """The namespaces, bridges and watcher of one test or benchmark run (context manager).

    Node names are the logical ones ("dir-a", "dir-b", "client", and "switch");
    ``ns(node)`` gives the real namespace name. ``nodes`` chooses which of the fixed nodes
    are built (``()``: the switch alone, for tests that add their own with ``node()``).
    """

    def __init__(
        self, lans: int = 1, ipv6: bool = True, watch: bool = True, nodes: Sequence[str] = NODES
    ) -> None:
        if lans not in (1, 2):
            raise ValueError("lans must be 1 or 2")
        if not set(nodes) <= set(NODES):
            raise ValueError(f"nodes must be among {NODES}")
        self.lans = lans
        self.fixed_nodes = tuple(nodes)
        self.ipv6 = ipv6
        self.watch = watch
        self.tag = f"{NS_PREFIX}{os.getpid()}{_letters(next(_lab_counter))}"
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._cleanups: list[Callable[[], None]] = []
        self._created: list[str] = []
        self._watcher: subprocess.Popen[bytes] | None = None
        self._wire_path = self.tmpdir / "wire.jsonl"
        self._wire_offset = 0
        self._wire_partial = b""
        self._frames: list[Frame] = []
        self._wire_lock = threading.Lock()
        self.keep_tmpdir = bool(os.environ.get("HDL_KEEP_TMP"))
        self.switch = Netns(self.ns("switch"))
        #: the nodes ``node()`` added, and every namespace ``namespace()`` made
        self.nodes: list[Node] = []
        self._namespaces: list[Netns] = []

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, node: str) -> str:
        """The real namespace name of ``node``."""
        try:
            return f"{self.tag}-{_NS_SUFFIX[node]}"
        except KeyError:
            raise ValueError(f"unknown node {node!r}") from None

    def port(self, node: str, lan: int = 0) -> str:
        """The bridge-side veth name (in the switch namespace) of ``node`` on ``lan``."""
        return f"{PORT_LETTER[node]}{lan}"

    def setup(self) -> None:
        sweep_stale_namespaces()
        for node in ("switch", *self.fixed_nodes):
            self._ip("netns", "add", self.ns(node))
            self._created.append(self.ns(node))
        sw = self.ns("switch")
        for node in ("switch", *self.fixed_nodes):
            # A new namespace copies init_net's IPv4 settings: a host that forwards would
            # make every director a router (a VIP given up still reached through it).
            self.sysctl(node, "net.ipv4.ip_forward", "0")
        self.sysctl("switch", "net.ipv6.conf.all.disable_ipv6", "1")
        self.sysctl("switch", "net.ipv6.conf.default.disable_ipv6", "1")
        for node in self.fixed_nodes:
            self.sysctl(node, "net.ipv6.conf.all.accept_dad", "0")
            self.sysctl(node, "net.ipv6.conf.default.accept_dad", "0")
            self.sysctl(node, "net.ipv6.conf.default.router_solicitations", "0")
            if not self.ipv6:
                self.sysctl(node, "net.ipv6.conf.all.disable_ipv6", "1")
                self.sysctl(node, "net.ipv6.conf.default.disable_ipv6", "1")
            self._ip("-n", self.ns(node), "link", "set", "lo", "up")
        for lan in range(self.lans):
            bridge = f"br{lan}"
            self._ip(
                "-n",
                sw,
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            )
            self._ip("-n", sw, "link", "set", bridge, "up")
            for node in self.fixed_nodes:
                port, dev = self.port(node, lan), iface(lan)
                self._ip(
                    "-n",
                    sw,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    dev,
                    "netns",
                    self.ns(node),
                )
                self._ip("-n", sw, "link", "set", port, "master", bridge)
                self._ip("-n", sw, "link", "set", port, "up")
                self._ip(
                    "-n",
                    self.ns(node),
                    "addr",
                    "add",
                    f"{lan_address(node, lan, 4)}/24",
                    "dev",
                    dev,
                )
                if self.ipv6:
                    self._ip(
                        "-n",
                        self.ns(node),
                        "addr",
                        "add",
                        f"{lan_address(node, lan, 6)}/64",
                        "dev",
                        dev,
                        "nodad",
                    )
                self._ip("-n", self.ns(node), "link", "set", dev, "up")
        if self.watch:
            self._start_watcher()

    def namespace(self, role: str) -> Netns:
        """A bare namespace (loopback up) that the lab deletes on close."""
        ns = Netns(f"{self.tag}-n{len(self._namespaces)}{role}")
        self._ip("netns", "add", ns.name)
        self._created.append(ns.name)
        self._namespaces.append(ns)
        ns.sysctl("net.ipv4.ip_forward", "0")  # not the host's setting (see setup())
        ns.ip("link", "set", "lo", "up")
        return ns

    def node(
        self,
        role: str,
        *,
        ipv4: Sequence[str] = (),
        ipv6: Sequence[str] = (),
        dad: bool = False,
        ifname: str = "eth0",
        mac: str | None = None,
    ) -> Node:
        """A namespace with ``ifname`` on the bridge ``br0``, up, with the given addresses.

        ``dad=False`` turns IPv6 duplicate address detection off in the namespace so the
        link-local (and every static address) is usable at once.
        """
        ns = self.namespace(role)
        port = f"p{len(self.nodes)}{role}"[:15]
        accept = "1" if dad else "0"
        ns.sysctl("net.ipv6.conf.all.accept_dad", accept)
        ns.sysctl("net.ipv6.conf.default.accept_dad", accept)
        ns.ip("link", "add", ifname, *(["address", mac] if mac else []), "netns", ns.name,
              "type", "veth", "peer", "name", port, "netns", self.switch.name)  # fmt: skip
        self.switch.ip("link", "set", port, "master", "br0")
        self.switch.ip("link", "set", port, "up")
        for address in ipv4:
            ns.ip("addr", "add", address, "dev", ifname)
        for address in ipv6:
            ns.ip("addr", "add", address, "dev", ifname, *([] if dad else ["nodad"]))
        ns.ip("link", "set", ifname, "up")
        node = Node(self, ns, ifname, port)
        self.nodes.append(node)
        self.wait_forwarding(node)
        return node

    def wait_forwarding(self, node: Node, timeout_s: float = 5.0) -> None:
        """Wait until the bridge forwards on the node's port (carrier seen, port enabled)
        and the node's own end has carrier too.

        Each side learns of a carrier change a moment after ``ip link set up`` returns
        (the kernel's link-watch work, on its own namespace's schedule); a frame sent in
        between is dropped. Call this after ``set_carrier(True)`` too.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            out = self.switch.ip("-d", "-o", "link", "show", "dev", node.port).stdout
            mine = node.netns.ip("-o", "link", "show", "dev", node.ifname).stdout
            if (
                "bridge_slave state forwarding" in out
                and " state UP " in out
                and "LOWER_UP" in mine
                and " state UP " in mine
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"bridge port {node.port} not forwarding: {out} / {mine}")
            time.sleep(0.01)

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Call ``cleanup`` when the lab closes (after its processes are killed)."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        """Kill every process this lab started, delete its namespaces and temp dir."""
        for proc in reversed(self._procs):
            self.kill(proc)
        self._procs.clear()
        for netns in self._namespaces:
            netns.stop_processes()
        self._watcher = None
        while self._cleanups:
            with contextlib.suppress(Exception):
                self._cleanups.pop()()
        for name in reversed(self._created):
            for pid_text in _run_ok(["ip", "netns", "pids", name]).stdout.split():
                # Anything still inside was started through this lab (e.g. a daemon that
                # forked away from its process group): it dies with the namespace.
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_text), signal.SIGKILL)
            _run_ok(["ip", "netns", "del", name])
        self._created.clear()
        if not self.keep_tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- commands ----------------------------------------------------------------------

    def _ip(self, *args: str) -> None:
        done = _run_ok(["ip", *args])
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def _argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run(
        self, node: str, *argv: str, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``node`` to completion; raise RuntimeError if it fails and
        ``check``."""
        done = _run_ok(self._argv(node, argv), timeout_s)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"[{node}] {' '.join(argv)} exited {done.returncode}: "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def popen(self, node: str, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``node`` in its own session; the lab kills it on close."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            self._argv(node, argv), start_new_session=True, **kwargs
        )
        self._procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process group of ``proc`` (one this lab started) and reap it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.reap(proc)

    def reap(
        self,
        proc: subprocess.Popen[bytes],
        timeout_s: float = 10.0,
        readers: Sequence[threading.Thread] = (),
    ) -> None:
        """Wait for ``proc``; kill the rest of its process group and wait until it is gone.

        ``readers`` (threads reading its output) are then joined before its pipes are
        closed: they read to the end of what the process group wrote.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.005)
        for thread in readers:
            thread.join(timeout_s)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def sysctl(self, node: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(node, "sh", "-c", f"echo {value} > {path}")

    # -- links and partitions ----------------------------------------------------------

    def link(self, node: str, dev: str = "eth0", up: bool = True) -> None:
        """Set the bridge end of ``node``'s ``dev`` up or down: the node sees carrier loss."""
        lan = int(dev.removeprefix("eth"))
        self._ip(
            "-n", self.ns("switch"), "link", "set", self.port(node, lan), "up" if up else "down"
        )

    def delete_link(self, node: str, lan: int = 0) -> None:
        """``ip link del`` ``node``'s interface on ``lan``: its addresses go with it, and its
        veth peer (the bridge port) too."""
        self._ip("-n", self.ns(node), "link", "del", iface(lan))

    def create_link(
        self, node: str, lan: int = 0, *, addresses: bool = True, index: int | None = None
    ) -> None:
        """Create ``node``'s interface on ``lan`` again, as ``setup`` did: a new veth pair
        (a new MAC; a new ifindex, or ``index``) with its bridge end on the LAN's bridge, up;
        with ``addresses`` also the node's fixed addresses (else ``add_lan_addresses``)."""
        port, dev, sw = self.port(node, lan), iface(lan), self.ns("switch")
        if index is None:
            self._ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", dev,
                     "netns", self.ns(node))  # fmt: skip
        else:
            self._ip("-n", self.ns(node), "link", "add", dev, "index", str(index), "type",
                     "veth", "peer", "name", port, "netns", sw)  # fmt: skip
        self._ip("-n", sw, "link", "set", port, "master", f"br{lan}")
        self._ip("-n", sw, "link", "set", port, "up")
        if addresses:
            self.add_lan_addresses(node, lan)
        self._ip("-n", self.ns(node), "link", "set", dev, "up")

    def add_lan_addresses(self, node: str, lan: int = 0) -> None:
        """Give ``node``'s interface on ``lan`` its fixed IPv4 (and IPv6) address."""
        dev, ns = iface(lan), self.ns(node)
        self._ip("-n", ns, "addr", "add", f"{lan_address(node, lan, 4)}/24", "dev", dev)
        if self.ipv6:
            self._ip("-n", ns, "addr", "add", f"{lan_address(node, lan, 6)}/64", "dev", dev,
                     "nodad")  # fmt: skip

    def cut(self, *nodes: str) -> None:
        """Split ``nodes`` from each other on every LAN (split brain).

        Their bridge ports become isolated: isolated ports do not forward to one another,
        but still to and from every other port, so the client keeps hearing them all.
        No node, or a single director, means the two directors (isolating one port alone
        would cut nothing).
        """
        self._isolate(self._split(nodes), True)

    def heal(self, *nodes: str) -> None:
        """Undo ``cut`` (same arguments)."""
        self._isolate(self._split(nodes), False)

    @staticmethod
    def _split(nodes: Sequence[str]) -> tuple[str, ...]:
        if len(nodes) < 2:
            return DIRECTORS if not nodes or nodes[0] in DIRECTORS else (*DIRECTORS, *nodes)
        return tuple(nodes)

    def _isolate(self, nodes: Iterable[str], on: bool) -> None:
        for node in nodes:
            for lan in range(self.lans):
                done = _run_ok(
                    [
                        "bridge",
                        "-n",
                        self.ns("switch"),
                        "link",
                        "set",
                        "dev",
                        self.port(node, lan),
                        "isolated",
                        "on" if on else "off",
                    ]
                )
                if done.returncode != 0:
                    raise RuntimeError(f"bridge isolation: {done.stderr.strip()}")

    # -- observations ------------------------------------------------------------------

    def mac(self, node: str, dev: str = "eth0") -> str:
        data = json.loads(self.run(node, "ip", "-j", "link", "show", "dev", dev).stdout)
        return str(data[0]["address"])

    def ifindex(self, node: str, dev: str = "eth0") -> int:
        data = json.loads(self.run(node, "ip", "-j", "link", "show", "dev", dev).stdout)
        return int(data[0]["ifindex"])

    def neigh(self, node: str, ip: str, dev: str | None = None) -> str | None:
        """The MAC in ``node``'s neighbour entry for ``ip`` (None if absent/unresolved)."""
        argv = ["ip", "-j", "neigh", "show", "to", ip]
        if dev:
            argv += ["dev", dev]
        for entry in json.loads(self.run(node, *argv).stdout or "[]"):
            if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
                return str(entry["lladdr"])
        return None

    def echo_replies(self, node: str) -> int:
        """ICMP and ICMPv6 echo replies ``node`` has sent (its namespace's SNMP counters)."""
        out = self.run(node, "cat", "/proc/net/snmp", "/proc/net/snmp6").stdout.splitlines()
        icmp = [line.split()[1:] for line in out if line.startswith("Icmp: ")]
        replies = int(dict(zip(icmp[0], icmp[1], strict=True))["OutEchoReps"])
        for line in out:
            if line.startswith("Icmp6OutEchoReplies"):
                replies += int(line.split()[1])
        return replies

    def wait_echo_replies(self, node: str, count: int = 10, timeout_s: float = 15.0) -> None:
        """Wait until ``node`` has sent ``count`` more echo replies than it had now: a
        prober pinging an address it holds has had answers from it (each reply reaches the
        client's prober, which counts it by the kernel's receive stamp)."""
        base = self.echo_replies(node)
        wait_for(
            lambda: self.echo_replies(node) >= base + count, timeout_s,
            f"{count} echo replies from {node}",
        )  # fmt: skip

    def addresses(self, node: str) -> set[str]:
        """Every address configured in ``node`` (without prefix lengths)."""
        data = json.loads(self.run(node, "ip", "-j", "addr", "show").stdout or "[]")
        return {a["local"] for link in data for a in link.get("addr_info", [])}

    def who_has(self, ip: str) -> set[str]:
        """The directors that have ``ip`` configured."""
        return {node for node in DIRECTORS if ip in self.addresses(node)}

    def who_has_vip(self, vip: str | None = None) -> set[str]:
        return self.who_has(vip or vip_address())

    # -- wire watcher ------------------------------------------------------------------

    def _start_watcher(self) -> None:
        ready = self.tmpdir / "watch.ready"
        ifaces = [f"br{lan}" for lan in range(self.lans)]
        with open(self.tmpdir / "watch.err", "wb") as err:
            self._watcher = self.popen(
                "switch", sys.executable, str(Path(__file__).resolve()), "watch",
                str(self._wire_path), str(ready), *ifaces, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        watcher = self._watcher

        def is_ready() -> bool:
            if watcher.poll() is not None:
                err = (self.tmpdir / "watch.err").read_text(errors="replace")
                raise RuntimeError(f"wire watcher exited: {err}")
            return ready.exists()

        wait_for(is_ready, 30.0, "wire watcher")

    def wire(self, kind: str | None = None, since: float | None = None) -> list[Frame]:
        """Frames recorded so far, optionally of one ``kind`` and at or after ``since``."""
        with self._wire_lock:
            self._read_wire()
            frames = list(self._frames)
        return [
            f
            for f in frames
            if (kind is None or f.kind == kind) and (since is None or f.t >= since)
        ]

    def _read_wire(self) -> None:
        if not self._wire_path.exists():
            return
        with open(self._wire_path, "rb") as fh:
            fh.seek(self._wire_offset)
            data = fh.read()
        self._wire_offset += len(data)
        data = self._wire_partial + data
        *lines, self._wire_partial = data.split(b"\n")
        for line in lines:
            rec = json.loads(line)
            self._frames.append(
                Frame(
                    rec["t"], rec["lan"], rec["kind"], rec["src_mac"], rec["dst_mac"], rec["info"]
                )
            )

    def wait_wire(
        self,
        match: Callable[[Frame], bool],
        timeout_s: float,
        what: str = "frame",
        since: float | None = None,
    ) -> Frame:
        """Wait until a recorded frame satisfies ``match``; return the first such frame."""

        def found() -> Frame | None:
            return next((f for f in self.wire(since=since) if match(f)), None)

        return wait_for(found, timeout_s, what, interval_s=0.05)


@contextlib.contextmanager
def bare_lab(lans: int = 1) -> Iterator[Lab]:
    """``with bare_lab() as lab:`` a lab of the switch alone (``lab.node(...)`` adds nodes),
    always cleaned up; skips the calling test where labs cannot be built here."""
    reason = netns_unavailable()
    if reason is not None:
        import pytest  # only tests call this; tools import this module without pytest

        pytest.skip(reason)
    with Lab(lans=lans, watch=False, nodes=()) as lab:
        yield lab


def _letters(n: int) -> str:
    out = ""
    while True:
        out = chr(ord("a") + n % 26) + out
        n = n // 26 - 1
        if n < 0:
            return out


# -- the watcher program ----------------------------------------------------------------

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
SO_TIMESTAMPNS = 35
IPPROTO_VRRP = 112


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def decode_frame(frame: bytes) -> tuple[str, dict[str, Any]] | None:
    """Decode an Ethernet frame into (kind, info) if it is ARP, NA/NS or VRRP, else None."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    if ethertype == ETH_P_8021Q and len(frame) >= 18:
        ethertype = struct.unpack_from("!H", frame, 16)[0]
        offset = 18
    body = frame[offset:]
    if ethertype == ETH_P_ARP and len(body) >= 28:
        op = struct.unpack_from("!H", body, 6)[0]
        sender_ip = socket.inet_ntoa(body[14:18])
        target_ip = socket.inet_ntoa(body[24:28])
        return "arp", {
            "op": op,
            "sender_mac": _mac(body[8:14]),
            "sender_ip": sender_ip,
            "target_mac": _mac(body[18:24]),
            "target_ip": target_ip,
            "gratuitous": sender_ip == target_ip,
        }
    if ethertype == ETH_P_IP and len(body) >= 20:
        ihl = (body[0] & 0x0F) * 4
        if body[9] != IPPROTO_VRRP or len(body) < ihl + 8:
            return None
        total_len = struct.unpack_from("!H", body, 2)[0]
        info = _decode_vrrp(body[ihl:total_len], 4)
        info.update(
            src=socket.inet_ntoa(body[12:16]), dst=socket.inet_ntoa(body[16:20]), ttl=body[8]
        )
        return "vrrp", info
    if ethertype == ETH_P_IPV6 and len(body) >= 40:
        next_header, hop_limit = body[6], body[7]
        src = socket.inet_ntop(socket.AF_INET6, body[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, body[24:40])
        payload = body[40:]
        if next_header == IPPROTO_VRRP and len(payload) >= 8:
            payload_len = struct.unpack_from("!H", body, 4)[0]
            info = _decode_vrrp(payload[:payload_len], 6)
            info.update(src=src, dst=dst, ttl=hop_limit)
            return "vrrp", info
        if next_header == 58 and len(payload) >= 24 and payload[0] in (135, 136):
            target = socket.inet_ntop(socket.AF_INET6, payload[8:24])
            info = {"src": src, "dst": dst, "target": target}
            if payload[0] == 136:
                flags = payload[4]
                info.update(
                    router=bool(flags & 0x80),
                    solicited=bool(flags & 0x40),
                    override=bool(flags & 0x20),
                    target_mac=_nd_lladdr(payload[24:], 2),
                )
                return "na", info
            return "ns", info
    return None


def _nd_lladdr(options: bytes, wanted: int) -> str | None:
    while len(options) >= 8:
        kind, length = options[0], options[1] * 8
        if length == 0:
            return None
        if kind == wanted:
            return _mac(options[2:8])
        options = options[length:]
    return None


def _decode_vrrp(vrrp: bytes, family: int) -> dict[str, Any]:
    version = vrrp[0] >> 4
    count = vrrp[3]
    size = 4 if family == 4 else 16
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    if version == 3:
        interval_cs = struct.unpack_from("!H", vrrp, 4)[0] & 0x0FFF
        start = 8
    else:
        interval_cs = vrrp[5] * 100
        start = 8
    addresses = [
        socket.inet_ntop(af, vrrp[start + i * size : start + (i + 1) * size])
        for i in range(count)
        if len(vrrp) >= start + (i + 1) * size
    ]
    return {
        "version": version,
        "vrid": vrrp[1],
        "priority": vrrp[2],
        "interval_cs": interval_cs,
        "addresses": addresses,
        "raw": vrrp.hex(),
    }


def watch_main(out_path: str, ready_path: str, ifaces: Sequence[str]) -> int:
    """Record ARP/ND/VRRP frames seen on ``ifaces`` as JSON lines in ``out_path``."""
    socks: dict[int, tuple[socket.socket, int]] = {}
    for lan, name in enumerate(ifaces):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((name, 0))
        ifindex = socket.if_nametoindex(name)
        sock.setsockopt(
            SOL_PACKET,
            PACKET_ADD_MEMBERSHIP,
            struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""),
        )
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        socks[sock.fileno()] = (sock, lan)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poller = select.poll()
    for fd in socks:
        poller.register(fd, select.POLLIN)
    with open(out_path, "ab", buffering=0) as out:
        Path(ready_path).touch()
        while not stop:
            try:
                events = poller.poll(200)
            except InterruptedError:
                continue
            lines = []
            for fd, _ in events:
                sock, lan = socks[fd]
                while True:
                    try:
                        data, ancdata, _flags, addr = sock.recvmsg(
                            65535, socket.CMSG_SPACE(16), socket.MSG_DONTWAIT
                        )
                    except BlockingIOError:
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue
                    decoded = decode_frame(data)
                    if decoded is None:
                        continue
                    kind, info = decoded
                    lines.append(
                        json.dumps(
                            {
                                "t": _kernel_monotonic(ancdata),
                                "lan": lan,
                                "kind": kind,
                                "src_mac": _mac(data[6:12]),
                                "dst_mac": _mac(data[0:6]),
                                "info": info,
                            }
                        ).encode()
                        + b"\n"
                    )
            if lines:
                out.write(b"".join(lines))
    return 0


def _kernel_monotonic(ancdata: list[tuple[int, int, bytes]]) -> float:
    """The kernel receive time of a packet on CLOCK_MONOTONIC.

    SO_TIMESTAMPNS stamps CLOCK_REALTIME; the packet's age against the realtime clock now
    is subtracted from the monotonic clock now.
    """
    mono_now = time.monotonic()
    real_now = time.time()
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            age = real_now - (sec + nsec / 1e9)
            return float(mono_now - max(0.0, age))
    return mono_now


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 4 and argv[0] == "watch":
        return watch_main(argv[1], argv[2], argv[3:])
    print("usage: lab.py watch OUT READY IFACE...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = [
    "DIRECTORS",
    "NODES",
    "REPO_ROOT",
    "Capture",
    "Director",
    "DirectorFactory",
    "Frame",
    "HadirectorDirector",
    "InstanceSpec",
    "Lab",
    "Netns",
    "Node",
    "ProcessDirector",
    "Transition",
    "bare_lab",
    "decode_frame",
    "default_instances",
    "hadirector_command",
    "hadirector_toml",
    "iface",
    "lan_address",
    "netns_unavailable",
    "sweep_stale_namespaces",
    "vip_address",
    "wait_for",
]
