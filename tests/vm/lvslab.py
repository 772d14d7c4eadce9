"""An LVS lab inside the VM: namespaces, tiny real servers, a client, the agent as a process.

Everything here lives in network namespaces this module creates (names start with ``lvs-``
and carry a random tag) and is torn down with them; addresses come from the documentation
ranges 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24. Nothing here sends traffic
anywhere else.

- ``Lab``: creates namespaces, veth pairs and bridges (``plug`` a namespace into one),
  runs commands in them, deletes them. ``routed_lan`` builds the LVS topology the traffic
  and health tests share: a client behind a router, whose LAN bridge holds the director
  and the real servers. ``in_netns`` runs one command in a namespace.
- ``socket_in``: a socket created inside a namespace (a short-lived thread enters it), so
  real servers and the client run as threads of the test process: no Python start-up per
  server, which costs seconds under the VM's emulation.
- ``RealServer``: listens on some ports of its namespace and answers every connection with
  ``<name> <peer address> <local port>``; it records each peer it saw.
- ``request``: one bounded TCP request from a namespace; returns what the server said.
- ``AgentProcess``: ``hadirector run`` in a namespace, its JSON log lines collected by a
  reader thread, with waits on events.
- ``Capture``: tcpdump on an interface of a namespace into a pcap file, read back as
  time-stamped frames (``read_pcap``); ``log_time_s`` puts a log record on the same clock.
- ``control_request``, ``control_status``: a request to an agent over its control socket,
  and its ``status`` reply.
- ``ipvs_weights`` / ``wait_ipvs_weights``: a namespace's IPVS table as ``ipvsadm -Ln``
  shows it (service -> {real server: weight}), and a wait for one table.
- ``keepalived_table``: keepalived's own checker process run on a file in a namespace of
  its own until the IPVS table it programs is the one expected.

Test support only: must not be imported by the package, and must not touch the VM's own
(root) namespace beyond creating and deleting namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
REQUEST_TIMEOUT_S = 5.0


def run(*command: str, check: bool = True) -> str:
    """Run a command; its stdout (AssertionError with stderr if it fails and ``check``)."""
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def in_netns(netns: str, *command: str, check: bool = True) -> str:
    """Run a command in namespace ``netns``; its stdout (AssertionError if it fails)."""
    return run("ip", "netns", "exec", netns, *command, check=check)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def socket_in(
    netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket that belongs to namespace ``netns`` (usable from any thread afterwards)."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            with open(f"/run/netns/{netns}") as target, open("/proc/thread-self/ns/net") as home:
                _setns(target.fileno())
                try:
                    made.append(socket.socket(family, kind))
                finally:
                    _setns(home.fileno())
        except BaseException as error:  # reported to the caller below
            failed.append(error)

    thread = threading.Thread(target=worker, name=f"socket-in-{netns}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class Lab:
    """Namespaces of one test, deleted on ``close()`` (also a context manager)."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.namespaces: list[str] = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def netns(self, role: str) -> str:
        """A new namespace ``lvs-<role>-<tag>`` with lo up."""
        name = f"lvs-{role}-{self.tag}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, netns: str, *args: str) -> str:
        return run("ip", "-n", netns, *args)

    def exec(self, netns: str, *command: str, check: bool = True) -> str:
        return in_netns(netns, *command, check=check)

    def sysctl(self, netns: str, **values: str | int) -> None:
        """Set sysctls in a namespace: ``key__sub`` spells ``key/sub`` (dots also accepted)."""
        for key, value in values.items():
            path = key.replace("__", "/").replace(".", "/")
            self.exec(netns, "sh", "-c", f"echo {value} > /proc/sys/{path}")

    def link(self, a: str, a_dev: str, b: str, b_dev: str) -> None:
        """A veth pair: ``a_dev`` in ``a``, ``b_dev`` in ``b``, both up."""
        self.ip(a, "link", "add", a_dev, "type", "veth", "peer", b_dev, "netns", b)
        self.ip(a, "link", "set", a_dev, "up")
        self.ip(b, "link", "set", b_dev, "up")

    def bridge(self, netns: str, name: str) -> None:
        """A bridge ``name`` in ``netns``, up."""
        self.ip(netns, "link", "add", name, "type", "bridge")
        self.ip(netns, "link", "set", name, "up")

    def plug(
        self, switch: str, bridge: str, port: str, netns: str, dev: str, address: str = ""
    ) -> None:
        """A veth pair from ``port``, a port of ``bridge`` in ``switch``, to ``dev`` in
        ``netns``; ``address`` (with its prefix length) on ``dev`` when given."""
        self.link(switch, port, netns, dev)
        self.ip(switch, "link", "set", port, "master", bridge)
        if address:
            self.ip(netns, "addr", "add", address, "dev", dev)

    def close(self) -> None:
        for name in reversed(self.namespaces):
            run("ip", "netns", "delete", name, check=False)
        self.namespaces.clear()


ROUTER_CLIENT_SIDE = "203.0.113.1"
VIP_NET = "192.0.2.0/24"


def routed_lan(
    lab: Lab, *, client: str, router_lan: str, director: str, servers: dict[str, str]
) -> tuple[str, str, str, dict[str, str]]:
    """The LVS site of the traffic and health tests; (client, router, director, real
    servers by name) namespaces::

        client CLIENT ── 203.0.113.1 router ROUTER_LAN ── LAN bridge br0 (in the router)
                                                            ├── director DIRECTOR
                                                            └── real servers (name: address)

    All on /24s; the router forwards, and routes the VIPs (192.0.2.0/24) to the director,
    the director's default route is the router. Reverse-path filtering is off everywhere,
    and the director sends no ICMP redirects: in a one-armed NAT the servers' replies enter
    and leave it on the same LAN (a redirect would make them bypass it, un-NATed). Routes
    and VIPs of the servers and VIPs of the director are the caller's.
    """
    client_ns, router, director_ns = lab.netns("cl"), lab.netns("rt"), lab.netns("dir")
    real = {name: lab.netns(name) for name in servers}
    for ns in (client_ns, router, director_ns, *real.values()):
        lab.sysctl(ns, **{"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0})
    lab.sysctl(
        director_ns,
        **{"net.ipv4.conf.all.send_redirects": 0, "net.ipv4.conf.default.send_redirects": 0},
    )
    lab.link(client_ns, "eth0", router, "cl0")
    lab.ip(client_ns, "addr", "add", f"{client}/24", "dev", "eth0")
    lab.ip(client_ns, "route", "add", "default", "via", ROUTER_CLIENT_SIDE)
    lab.ip(router, "addr", "add", f"{ROUTER_CLIENT_SIDE}/24", "dev", "cl0")
    lab.bridge(router, "br0")
    lab.ip(router, "addr", "add", f"{router_lan}/24", "dev", "br0")
    lab.ip(router, "route", "add", VIP_NET, "via", director)
    lab.sysctl(router, **{"net.ipv4.ip_forward": 1})
    lab.plug(router, "br0", "p-dir", director_ns, "eth0", f"{director}/24")
    lab.ip(director_ns, "route", "add", "default", "via", router_lan)
    for name, address in servers.items():
        lab.plug(router, "br0", f"p-{name}", real[name], "eth0", f"{address}/24")
    return client_ns, router, director_ns, real


# --- real servers and the client --------------------------------------------------------------


class RealServer:
    """A TCP server in a namespace answering ``<name> <peer> <port>`` to every connection."""

    def __init__(self, name: str, netns: str, ports: tuple[int, ...]) -> None:
        self.name = name
        self.netns = netns
        self.peers: list[tuple[str, int]] = []  # (peer address, local port) per connection
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False
        for port in ports:
            sock = socket_in(netns)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(64)
            sock.settimeout(0.5)
            self._listeners.append(sock)
            thread = threading.Thread(
                target=self._serve, args=(sock, port), name=f"rs-{name}-{port}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, listener: socket.socket, port: int) -> None:
        while not self._stopping:
            try:
                conn, (peer, _peer_port, *_) = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(REQUEST_TIMEOUT_S)
                try:
                    data = b""
                    while b"\r\n\r\n" not in data and len(data) < 4096:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    with self._lock:
                        self.peers.append((peer, port))
                    body = f"{self.name} {peer} {port}\n".encode()
                    head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    conn.sendall(head + body)
                except OSError:
                    continue

    def seen(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self.peers)

    def stop(self) -> None:
        self._stopping = True
        for sock in self._listeners:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)


@dataclass(frozen=True)
class Answer:
    """What a real server said: its name, the client address it saw, the port it served."""

    server: str
    peer: str
    port: int


def request(
    netns: str,
    address: str,
    port: int,
    source_port: int = 0,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Answer:
    """One HTTP/1.0 request from namespace ``netns`` to ``address:port``, bounded in time.

    A caller giving each request its own ``source_port`` makes sure no request meets an
    IPVS connection entry left by an earlier one (a reused port would be rescheduled or
    stick to the old server, and counts would no longer be exact).
    """
    sock = socket_in(netns)
    with sock:
        sock.settimeout(timeout_s)
        if source_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", source_port))
        sock.connect((address, port))
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        raise AssertionError(f"bad answer from {address}:{port}: {data!r}")
    server, peer, served = body.decode().split()
    return Answer(server, peer, int(served))


# --- the agent ---------------------------------------------------------------------------------


WRITE_EVENTS = frozenset(
    {
        "ipvs.service.add",
        "ipvs.service.edit",
        "ipvs.service.del",
        "ipvs.dest.add",
        "ipvs.dest.edit",
        "ipvs.dest.del",
    }
)


class AgentProcess:
    """``hadirector run --config FILE`` in a namespace; its log lines parsed as they come.

    ``wrap`` turns the agent's command into the one to run in the namespace (e.g. as
    another user: tests/unprivileged.py); it must exec the agent, keeping its pid."""

    def __init__(
        self,
        netns: str,
        config: Path,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        self.netns = netns
        self.config = config
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "hadirector", "run", "--config", str(config)]
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns, *(wrap(command) if wrap else command)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=env,
        )  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self.other_lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="agent-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            with self._cond:
                if isinstance(record, dict) and "event" in record:
                    record["_received_s"] = time.monotonic()  # when this process read it
                    self.events.append(record)
                else:
                    self.other_lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """A position in the event list (for ``wait_for(..., since=...)``)."""
        with self._cond:
            return len(self.events)

    def named(self, *names: str, since: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events[since:] if e["event"] in names]

    def wait_for(
        self,
        name: str,
        timeout_s: float,
        since: int = 0,
        where: Callable[[dict[str, Any]], bool] = lambda _e: True,
    ) -> dict[str, Any]:
        """The first event ``name`` after position ``since`` matching ``where``; or fail."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if event["event"] == name and where(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.5))
        raise AssertionError(
            f"no {name} within {timeout_s} s; agent said:\n" + self.transcript(since)
        )

    def transcript(self, since: int = 0) -> str:
        with self._cond:
            lines = [json.dumps(e) for e in self.events[since:]] + self.other_lines
        return "\n".join(lines[-80:])

    def signal(self, signum: int) -> None:
        # ``ip netns exec`` execs the command: the process is the agent itself.
        self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; the exit status (killed after ``timeout_s``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode


@contextlib.contextmanager
def agent(
    netns: str, config: Path, wrap: Callable[[list[str]], list[str]] | None = None
) -> Iterator[AgentProcess]:
    """An agent that is stopped (SIGTERM, then SIGKILL) whatever the test does."""
    process = AgentProcess(netns, config, wrap)
    try:
        yield process
    finally:
        process.stop()


# --- wire capture, log times, the control socket ------------------------------------------------


@dataclass(frozen=True)
class CapturedFrame:
    """One captured frame: kernel receive time (seconds since the epoch) and its bytes."""

    t: float
    data: bytes


def read_pcap(path: Path) -> list[CapturedFrame]:
    """The frames of a classic pcap file (microsecond or nanosecond time stamps)."""
    raw = path.read_bytes()
    if len(raw) < 24:
        return []
    magic = raw[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise AssertionError(f"{path} is not a pcap file (magic {magic.hex()})")
    order, unit = formats[magic]
    frames = []
    offset = 24
    while offset + 16 <= len(raw):
        seconds, fraction, captured, _original = struct.unpack_from(order + "IIII", raw, offset)
        offset += 16
        if offset + captured > len(raw):
            break  # a record cut short by the capture's end
        frames.append(CapturedFrame(seconds + fraction * unit, raw[offset : offset + captured]))
        offset += captured
    return frames


class Capture:
    """``tcpdump`` on one interface of a namespace, into a pcap file read back on ``stop()``.

    Time stamps are the kernel's (CLOCK_REALTIME, like the agents' log time stamps).
    """

    def __init__(self, netns: str, dev: str, pcap: Path, expression: str) -> None:
        self.pcap = pcap
        self.process = subprocess.Popen(
            [
                "ip", "netns", "exec", netns,
                "tcpdump", "-i", dev, "-n", "-U", "-Z", "root", "-w", str(pcap), expression,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        # tcpdump says "listening on <dev>" once the capture is open.
        said = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            said.append(line)
            if "listening on" in line or not line:
                break
        if not any("listening on" in line for line in said):
            self.process.kill()
            raise AssertionError(f"tcpdump did not start: {''.join(said)}")

    def frames(self) -> list[CapturedFrame]:
        """The frames captured so far (tcpdump writes each one as it comes, ``-U``)."""
        return read_pcap(self.pcap)

    def stop(self) -> list[CapturedFrame]:
        """End the capture (SIGINT flushes the file); every frame captured."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return read_pcap(self.pcap)


def log_time_s(event: dict[str, Any]) -> float:
    """An agent log record's ISO UTC ``timestamp`` as seconds since the epoch."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def control_request(path: Path, timeout_s: float = 10.0, **request_: str) -> dict[str, Any]:
    """The reply of the agent listening on control socket ``path`` to one request."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps(request_).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def control_status(path: Path, timeout_s: float = 10.0) -> dict[str, Any]:
    """The ``status`` reply body of the agent listening on control socket ``path``."""
    reply = control_request(path, timeout_s, command="status")
    if not reply.get("ok"):
        raise AssertionError(f"status failed: {reply}")
    status: dict[str, Any] = reply["status"]
    return status


def ipvs_weights(lab: Lab, netns: str) -> dict[str, dict[str, int]]:
    """``ipvsadm -Ln`` in ``netns``: service -> {real server: weight}."""
    table: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in lab.exec(netns, "ipvsadm", "-Ln").splitlines():
        words = line.split()
        if words and words[0] in ("TCP", "UDP", "SCTP", "FWM"):
            current = table.setdefault(words[1], {})
        elif current is not None and len(words) >= 4 and words[3].isdigit():
            current[words[1]] = int(words[3])  # -> Address:Port Forward Weight ...
    return table


def wait_ipvs_weights(
    lab: Lab,
    netns: str,
    process: AgentProcess,
    want: dict[str, dict[str, int]],
    timeout_s: float,
) -> None:
    """Wait until ``ipvs_weights`` is ``want``; else fail with the table and the agent's log."""
    deadline = time.monotonic() + timeout_s
    while (table := ipvs_weights(lab, netns)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"ipvsadm -Ln: {table}, wanted {want}\n{process.transcript()}")
        time.sleep(0.2)


def keepalived_table(
    conf: Path, work: Path, done: Callable[[str], bool], timeout_s: float = 120.0
) -> tuple[str, str]:
    """keepalived (its checker process only: ``-C``) run on ``conf`` in a namespace of its
    own until ``done`` holds for the table it programmed (``ipvsadm -S -n``), keepalived
    exits, or ``timeout_s`` passes; the last table and keepalived's log. ``work`` holds its
    pid files."""
    with Lab() as lab:
        ns = lab.netns("ka")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "keepalived", "-n", "-l", "-D", "-C", "-f", str(conf),
             "-p", str(work / "k.pid"), "-c", str(work / "c.pid")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            saved = ""
            while time.monotonic() < deadline:
                saved = lab.exec(ns, "ipvsadm", "-S", "-n")
                if done(saved) or proc.poll() is not None:
                    break
                time.sleep(0.2)  # polling the kernel table until keepalived has written it
        finally:
            proc.terminate()
            log = proc.communicate(timeout=30)[0].decode(errors="replace")
    return saved, log
