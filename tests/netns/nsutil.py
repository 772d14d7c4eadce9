"""A small network-namespace lab for tests that need the real kernel's networking.

What it gives:
- ``Netns``: a named network namespace (``ip netns add``) with ways to run things inside it:
  ``run(...)`` / ``ip(...)`` / ``spawn(...)`` execute a command under ``ip netns exec``;
  ``python(code)`` runs a Python snippet there in a fresh interpreter (with this repository
  on ``PYTHONPATH``); ``entered()`` is a context manager that moves *the calling thread*
  into the namespace with ``setns(2)`` and back out afterwards.
- ``Lab``: a switch namespace holding a bridge ``br0`` (STP off, forward delay 0, multicast
  snooping off, so VRRP and NA multicast floods like on a dumb switch), plus ``node()``
  namespaces, each with one veth (``eth0`` by default) whose other end is a bridge port in
  the switch namespace. ``Node.set_carrier(False)`` downs the bridge-side end, so the node
  sees a carrier loss exactly as when a cable is pulled.

Two ways to run code in a namespace, and when to use which:
- ``entered()`` is for trio code in the test process itself. A socket belongs to the
  namespace it was *created* in, for its whole life: open the adapters (raw sockets,
  packet sockets, netlink sockets) inside ``with ns.entered():`` and use them anywhere
  afterwards, even from one trio loop talking to several namespaces. Code that resolves
  names lazily through the calling thread (``socket.if_nametoindex``, ``/sys``) must run
  inside the block too; ``/sys`` still shows the test process's own view.
- ``python()`` / ``spawn()`` give a separate process that lives entirely in the namespace,
  as the agent does under ``ip netns exec`` in production.

Names: every namespace is called ``hdt<pid>x<n><role>`` so parallel test processes never
collide, and ``sweep_stale()`` removes namespaces left by test processes that died. Devices
are created directly inside their namespaces, so device names only need to be unique per
namespace (and at most 15 characters). ``Lab`` cleans up in ``close()`` / ``__exit__``
even when the test failed: it kills the processes it spawned and deletes its namespaces.

Addresses: only documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32), only inside namespaces created here. Needs root and iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")
_counter = itertools.count(1)
_counter_lock = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)
_STALE = re.compile(r"^hdt(\d+)x")


def netns_available() -> str | None:
    """None if this process can build namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def require_netns() -> None:
    """Skip the calling test unless namespaces can be built here."""
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)


def _unique_name(role: str) -> str:
    with _counter_lock:
        n = next(_counter)
    return f"hdt{os.getpid()}x{n}{role}"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces named by this module whose creating process is gone."""
    removed: list[str] = []
    if not _NETNS_DIR.is_dir():
        return removed
    for entry in _NETNS_DIR.iterdir():
        match = _STALE.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", entry.name], capture_output=True, check=False)
            removed.append(entry.name)
    return removed


class Netns:
    """One named network namespace and ways to run things inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen[bytes]] = []

    @classmethod
    def create(cls, role: str) -> Netns:
        ns = cls(_unique_name(role))
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        ns.ip("link", "set", "lo", "up")
        return ns

    def delete(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self._procs.clear()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

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


class Lab:
    """A switch namespace with a bridge, and node namespaces plugged into it."""

    def __init__(self) -> None:
        require_netns()
        sweep_stale()
        self._namespaces: list[Netns] = []
        self.switch = self.namespace("sw")
        self.switch.ip(
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        )
        self.switch.ip("link", "set", "br0", "up")
        self.nodes: list[Node] = []

    def namespace(self, role: str) -> Netns:
        """A bare namespace (loopback up) that the lab deletes on close."""
        ns = Netns.create(role)
        self._namespaces.append(ns)
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
        """A namespace with ``ifname`` on the bridge, up, with the given addresses.

        ``dad=False`` turns IPv6 duplicate address detection off in the namespace so the
        link-local (and every static address) is usable at once.
        """
        ns = self.namespace(role)
        port = f"p{len(self.nodes)}{role}"[:15]
        accept = "1" if dad else "0"
        ns.sysctl("net.ipv6.conf.all.accept_dad", accept)
        ns.sysctl("net.ipv6.conf.default.accept_dad", accept)
        ns.ip(
            "link",
            "add",
            ifname,
            *(["address", mac] if mac else []),
            "netns",
            ns.name,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.switch.name,
        )
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
        """Wait until the bridge forwards on the node's port (carrier seen, port enabled).

        The bridge learns of a carrier change a moment after ``ip link set up`` returns;
        a frame sent in between is dropped. Call this after ``set_carrier(True)`` too.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            out = self.switch.ip("-d", "-o", "link", "show", "dev", node.port).stdout
            if "bridge_slave state forwarding" in out and " state UP " in out:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"bridge port {node.port} not forwarding: {out}")
            time.sleep(0.01)

    def close(self) -> None:
        for ns in reversed(self._namespaces):
            ns.delete()
        self._namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    """``with nsutil.lab() as lab:`` — a Lab that is always cleaned up."""
    instance = Lab()
    try:
        yield instance
    finally:
        instance.close()
