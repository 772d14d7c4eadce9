"""Failback with many idle connections: bench/failback.py's scenario (10,000 connections,
with its figures), and the parts test_lvs_failback.py uses for its 300 (EchoHub,
open_clients, exchange).

The lab, configuration and agents are synclab.py's (A priority 150, B 100, NAT service
VIP:9000 round robin over rs1 and rs2, ``[ipvs.sync]`` on sync0, ``resync_timeout`` raised
so that a large resync under emulation is waited for):

1. A is master, B joins as backup. A crashes (SIGKILL, its links down); B takes over.
2. Through B only, the client opens N TCP connections to VIP:9000 (one process, sockets
   made in the client's namespace; one selector loop serves both real servers) and sends
   one byte on each; each real server answers with its tag and the byte. Then they stay
   idle: B's kernel sync daemon has nobody to send them to, and would not send idle ones.
3. A's links come back and its agent starts again: it joins as backup, asks B for a resync
   and holds its preemption until the resync arrived; meanwhile A's kernel table is polled
   (/proc/PID/net/ip_vs_conn of A's agent) until it lists all N connections. Then A
   preempts and B goes back to BACKUP.
4. One byte on each of the N connections: each answer must come from the same real server.
   Every connection is counted as echoed, reset/closed, or silent until the deadline.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lvslab import Capture, Lab, _setns, agent, in_netns, log_time_s
from .synclab import (
    ECHO_PORT,
    RS,
    START_TIMEOUT_S,
    STEP_TIMEOUT_S,
    VIP,
    build,
    wait_for_master,
    write_config,
)

DEVICES = ("front", "back", "sync0")
TAGS = {"rs1": b"1", "rs2": b"2"}
ECHO_PORT_HEX = f"{ECHO_PORT:04X}"


def sockets_in(netns: str, count: int) -> list[socket.socket]:
    """``count`` TCP sockets of namespace ``netns``, made by one thread that enters it."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            with open(f"/run/netns/{netns}") as target, open("/proc/thread-self/ns/net") as home:
                _setns(target.fileno())
                try:
                    made.extend(socket.socket() for _ in range(count))
                finally:
                    _setns(home.fileno())
        except BaseException as error:  # reported to the caller below
            failed.append(error)

    thread = threading.Thread(target=worker, name=f"sockets-in-{netns}")
    thread.start()
    thread.join()
    if failed:
        for sock in made:
            sock.close()
        raise failed[0]
    return made


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))


class EchoHub:
    """Both real servers in one selector loop: each chunk read is answered with the
    server's tag and the chunk. Counts the connections each server accepted."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self._selector = selectors.DefaultSelector()
        self.accepted = dict.fromkeys(namespaces, 0)
        self._conns: list[socket.socket] = []
        self._listeners: list[socket.socket] = []
        for name, netns in namespaces.items():
            listener = sockets_in(netns, 1)[0]
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((RS[name], ECHO_PORT))
            listener.listen(4096)
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, ("listen", name))
            self._listeners.append(listener)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="echo-hub", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.2):
                kind, name = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if kind == "listen":
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        while True:
                            conn, _ = sock.accept()
                            conn.setblocking(False)
                            self._conns.append(conn)
                            self.accepted[name] += 1
                            self._selector.register(conn, selectors.EVENT_READ, ("conn", name))
                    continue
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(sock)
                    sock.close()
                    continue
                sock.send(TAGS[name] + data)  # a few bytes on an idle socket: never blocks

    def close(self) -> None:
        self._stopping = True
        self._thread.join(timeout=5)
        for sock in self._listeners + self._conns:
            sock.close()
        self._selector.close()


@dataclass
class Clients:
    """N client connections and the real server (tag) each one was answered by."""

    socks: list[socket.socket] = field(default_factory=list)
    tags: list[bytes] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def exchange(
    socks: list[socket.socket], byte: bytes, deadline: float
) -> tuple[list[bytes | None], dict[str, int]]:
    """Send ``byte`` on each socket (non-blocking) and read the two-byte answers: per socket
    the tag that came back (None if none), and how the others ended: ``reset`` (an RST came,
    ECONNRESET or EPIPE), ``timed out`` (the client's own TCP gave up, ETIMEDOUT: no RST was
    involved), ``error`` (another errno), ``closed``, ``silent`` (nothing by ``deadline``) or
    ``garbled``."""
    selector = selectors.DefaultSelector()
    answers: list[bytes | None] = [None] * len(socks)
    buffers = [b""] * len(socks)
    outcome = {"reset": 0, "timed out": 0, "error": 0, "closed": 0, "silent": 0, "garbled": 0}

    def failed(error: OSError) -> None:
        if error.errno in (errno.ECONNRESET, errno.EPIPE):
            outcome["reset"] += 1
        elif error.errno == errno.ETIMEDOUT:
            outcome["timed out"] += 1
        else:
            outcome["error"] += 1

    for index, sock in enumerate(socks):
        try:
            sock.send(byte)
        except OSError as error:
            failed(error)
            continue
        selector.register(sock, selectors.EVENT_READ, index)
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
            index = key.data
            try:
                chunk = socks[index].recv(16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as error:
                failed(error)
                selector.unregister(socks[index])
                continue
            if not chunk:
                outcome["closed"] += 1
                selector.unregister(socks[index])
                continue
            buffers[index] += chunk
            if len(buffers[index]) >= 2:
                selector.unregister(socks[index])
                if buffers[index][1:] == byte and buffers[index][:1] in TAGS.values():
                    answers[index] = buffers[index][:1]
                else:
                    outcome["garbled"] += 1
    outcome["silent"] = len(selector.get_map())
    selector.close()
    return answers, outcome


def open_clients(netns: str, count: int, timeout_s: float, in_flight: int = 256) -> Clients:
    """``count`` connections to VIP:ECHO_PORT from ``netns``, each answered once."""
    clients = Clients(sockets_in(netns, count))
    deadline = time.monotonic() + timeout_s
    selector = selectors.DefaultSelector()
    pending = iter(enumerate(clients.socks))
    connected: list[int] = []
    failures: list[str] = []

    def start_next() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        index, sock = item
        sock.setblocking(False)
        err = sock.connect_ex((VIP, ECHO_PORT))
        if err not in (0, errno.EINPROGRESS):
            failures.append(f"connect: {errno.errorcode.get(err, err)}")
            return True
        selector.register(sock, selectors.EVENT_WRITE, index)
        return True

    for _ in range(in_flight):
        if not start_next():
            break
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = clients.socks[key.data]
            selector.unregister(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                failures.append(f"connect: {errno.errorcode.get(err, err)}")
            else:
                connected.append(key.data)
            start_next()
    selector.close()
    if failures or len(connected) != count:
        clients.close()
        raise AssertionError(f"{len(connected)} of {count} connected; {failures[:5]}")
    answers, outcome = exchange(clients.socks, b"h", deadline)
    if None in answers:
        clients.close()
        raise AssertionError(f"not every new connection was answered: {outcome}")
    clients.tags = [a for a in answers if a is not None]
    return clients


def probe(netns: str, timeout_s: float) -> None:
    """One connection to VIP:ECHO_PORT from ``netns`` answered, tried again every second
    (the client's ARP entry for the VIP may still name the crashed director for a while)."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = sockets_in(netns, 1)[0]
        try:
            sock.settimeout(1.0)
            sock.connect((VIP, ECHO_PORT))
            sock.sendall(b"p")
            if sock.recv(2):
                return
            problem = "closed without an answer"
        except OSError as error:
            problem = str(error)
        finally:
            sock.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer from {VIP}:{ECHO_PORT}: {problem}")


def _states_of_lost(pid: int, clients: Clients, answers: list[bytes | None]) -> dict[str, int]:
    """The state of each lost connection's entry in process ``pid``'s IPVS table."""
    states: dict[int, str] = {}
    with open(f"/proc/{pid}/net/ip_vs_conn") as table:
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[4] == ECHO_PORT_HEX:
                states[int(fields[2], 16)] = fields[7]
    counted: dict[str, int] = {}
    for sock, got, tag in zip(clients.socks, answers, clients.tags, strict=True):
        if got == tag:
            continue
        try:
            port = sock.getsockname()[1]
        except OSError:
            port = -1
        state = states.get(port, "absent")
        counted[state] = counted.get(state, 0) + 1
    return counted


def tcp_counters(netns: str) -> dict[str, int]:
    """The Tcp and TcpExt counters of namespace ``netns`` (/proc/net/snmp and netstat)."""
    counters: dict[str, int] = {}
    text = in_netns(netns, "cat", "/proc/net/snmp", "/proc/net/netstat")
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names_ = names.partition(":")
        if group not in ("Tcp", "TcpExt", "Ip", "IpExt"):
            continue
        for name, value in zip(names_.split(), values.partition(":")[2].split(), strict=False):
            with contextlib.suppress(ValueError):
                counters[f"{group}.{name}"] = int(value)
    # The per-CPU input backlogs are the machine's, not the namespace's: packets dropped
    # because a backlog was full (netdev_max_backlog), the second column, hexadecimal.
    with open("/proc/net/softnet_stat") as stat:
        counters["softnet.dropped"] = sum(int(line.split()[1], 16) for line in stat)
    return counters


def counter_changes(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def capture_summary(pcap: Path, limit: int = 60) -> list[str]:
    """A capture's frames as tcpdump prints them (interface, direction, MACs): the first
    ``limit`` lines, then per interface/direction/addresses/flags how many."""
    text = subprocess.run(
        ["tcpdump", "-r", str(pcap), "-n", "-e", "-tttt"], capture_output=True, text=True
    ).stdout
    lines = text.splitlines()
    counted: dict[str, int] = {}
    for line in lines:
        fields = line.split()
        flags = ""
        if "Flags" in fields:
            flags = fields[fields.index("Flags") + 1]
        macs = [f for f in fields if f.count(":") == 5 and len(f.rstrip(",")) == 17]
        ips = [f.rstrip(":,") for f in fields if f.count(".") >= 3 and f[0].isdigit()]
        key = " ".join(
            fields[3:6]
            + macs[:1]
            + [">".join(".".join(ip.split(".")[:4]) for ip in ips[:2]), flags]
        )
        if "ARP" in line:
            key = " ".join(fields[3:6] + macs[:1] + ["ARP"] + fields[-6:])
        counted[key] = counted.get(key, 0) + 1
    return lines[:limit] + [f"{n:6d}  {key}" for key, n in sorted(counted.items())]


def listed(pid: int) -> int:
    """Established connections to VIP:ECHO_PORT in the IPVS table of process ``pid``'s
    namespace (its /proc/PID/net/ip_vs_conn)."""
    count = 0
    with open(f"/proc/{pid}/net/ip_vs_conn") as table:
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[4] == ECHO_PORT_HEX and fields[7] == "ESTABLISHED":
                count += 1
    return count


@dataclass
class Result:
    connections: int
    opened_s: float  # opening them all through B (and one echo each)
    listed_by_b: int  # B's table before the failback
    resync_entries: int  # what A's agent says arrived
    resync_done_s: float  # A's request -> DONE (A's agent's own figure)
    listed_all_s: float | None  # A's request -> its kernel lists all N (None: never did)
    listed_by_a: int  # A's table before the survival check
    held_until_resync: bool  # A's MASTER transitions came after sync.resync_arrived
    echoed: int  # connections answered after the failback, by the same real server
    other_server: int
    outcome: dict[str, int]
    check_s: float  # sending a byte on every connection and reading every answer
    per_server: dict[str, int]
    # For the connections lost: their entry's state in A's and in B's table after the
    # check ("absent": none), counted.
    lost_in_a: dict[str, int] = field(default_factory=dict)
    lost_in_b: dict[str, int] = field(default_factory=dict)
    # Diagnostics: TCP/IP counters changed during the check per namespace, and a capture
    # (RST frames and ARP, on every port of the LAN switches) from A's return to the end.
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    capture: list[str] = field(default_factory=list)
    macs: dict[str, str] = field(default_factory=dict)


def _config(tmp_path: Path, name: str, priority: int, resync_timeout_s: int) -> Path:
    path = write_config(tmp_path, name, priority)
    text = path.read_text().replace(
        "syncid = 42", f"syncid = 42\nresync_timeout = {resync_timeout_s}"
    )
    path.write_text(text)
    return path


def failback(
    lab: Lab,
    tmp_path: Path,
    count: int,
    *,
    resync_timeout_s: int = 300,
    say: Callable[[str], None] = lambda _text: None,
) -> Result:
    """The scenario of the module docstring with ``count`` connections; its figures."""
    raise_nofile(2 * count + 1024)
    ns = build(lab)
    lab.sysctl(ns["cl"], net__ipv4__ip_local_port_range="10000 65000")
    hub = EchoHub({name: ns[name] for name in RS})
    clients = Clients()
    config_a = _config(tmp_path, "A", 150, resync_timeout_s)
    try:
        with agent(ns["dira"], config_a) as a:
            wait_for_master(a)
            with agent(ns["dirb"], _config(tmp_path, "B", 100, resync_timeout_s)) as b:
                b.wait_for("sync.backup", START_TIMEOUT_S)
                say("A master, B backup; A crashes")
                mark_b = b.mark()
                a.process.kill()
                a.process.wait()
                for dev in DEVICES:
                    lab.ip(ns["dira"], "link", "set", dev, "down")
                wait_for_master(b, mark_b)
                b.wait_for("sync.master", STEP_TIMEOUT_S, mark_b)

                say("B master; one connection through B until it answers (ARP follows)")
                probe(ns["cl"], STEP_TIMEOUT_S)
                say(f"opening {count} connections through B")
                started = time.monotonic()
                clients = open_clients(ns["cl"], count, timeout_s=60 + count / 10)
                opened_s = time.monotonic() - started
                listed_by_b = listed(b.process.pid)
                say(f"opened in {opened_s:.1f} s; B lists {listed_by_b}; A returns")

                capture = Capture(
                    ns["sw"], "any", tmp_path / "rst.pcap", "tcp[tcpflags] & tcp-rst != 0 or arp"
                )
                for dev in DEVICES:
                    lab.ip(ns["dira"], "link", "set", dev, "up")
                mark_b = b.mark()
                with agent(ns["dira"], config_a) as a2:
                    try:
                        # Poll A's table until it lists all N, or until it stopped growing for
                        # 10 s after the resync arrived (or timed out).
                        all_listed_at: float | None = None
                        poll_until = time.monotonic() + START_TIMEOUT_S + resync_timeout_s
                        last_count, last_change = -1, time.monotonic()
                        while time.monotonic() < poll_until:
                            if a2.process.poll() is not None:
                                raise AssertionError("A's agent exited:\n" + a2.transcript())
                            with contextlib.suppress(OSError):
                                now_listed = listed(a2.process.pid)
                                if now_listed >= count:
                                    all_listed_at = time.time()
                                    break
                                if now_listed != last_count:
                                    last_count, last_change = now_listed, time.monotonic()
                            # A master without a resync: it never heard B (the wait for the
                            # resync below fails with both transcripts).
                            ended = a2.named(
                                "sync.resync_arrived", "sync.resync_timeout", "vip.added"
                            )
                            if ended and time.monotonic() - last_change > 10:
                                say(f"A's table stays at {last_count} of {count}")
                                break
                            time.sleep(0.25)
                        arrived = a2.wait_for("sync.resync_arrived", STEP_TIMEOUT_S)
                        wait_for_master(a2)
                        b.wait_for(
                            "vrrp.transition",
                            STEP_TIMEOUT_S,
                            mark_b,
                            lambda e: e["new"] == "BACKUP",
                        )
                        requested_at = log_time_s(arrived) - float(arrived["seconds"])

                        def is_master(event: dict[str, Any]) -> bool:
                            return event["event"] == "vrrp.transition" and event["new"] == "MASTER"

                        first_master = next(i for i, e in enumerate(a2.events) if is_master(e))
                        held = a2.events.index(arrived) < first_master
                        listed_by_a = listed(a2.process.pid)

                        say(f"A master again (resync {arrived['entries']} entries); checking")
                        roles = ("cl", "dira", "dirb", "rs1", "rs2")
                        before = {role: tcp_counters(ns[role]) for role in roles}
                        started = time.monotonic()
                        answers, outcome = exchange(
                            clients.socks, b"f", time.monotonic() + 60 + count / 20
                        )
                        check_s = time.monotonic() - started
                        counters = {
                            role: counter_changes(before[role], tcp_counters(ns[role]))
                            for role in roles
                        }
                        capture.stop()
                        captured = capture_summary(tmp_path / "rst.pcap")
                        macs = {
                            f"{role} {dev}": lab.ip(ns[role], "-br", "link", "show", dev).split()[2]
                            for role, devs in (("cl", ("eth0",)), ("dira", ("front", "back")),
                                               ("dirb", ("front", "back")), ("rs1", ("eth0",)),
                                               ("rs2", ("eth0",)))
                            for dev in devs
                        }  # fmt: skip
                        macs["switch ports"] = lab.ip(ns["sw"], "-o", "link").replace("\n", " | ")
                        lost_in_a = _states_of_lost(a2.process.pid, clients, answers)
                        lost_in_b = _states_of_lost(b.process.pid, clients, answers)
                    except AssertionError as exc:  # what B did meanwhile, to tell why
                        raise AssertionError(
                            f"{exc}\nB since A returned:\n{b.transcript(mark_b)}"
                        ) from exc
    finally:
        clients.close()
        hub.close()
    same = sum(1 for got, tag in zip(answers, clients.tags, strict=True) if got == tag)
    other = sum(1 for got, tag in zip(answers, clients.tags, strict=True) if got not in (None, tag))
    return Result(
        connections=count,
        opened_s=opened_s,
        listed_by_b=listed_by_b,
        resync_entries=int(arrived["entries"]),
        resync_done_s=float(arrived["seconds"]),
        listed_all_s=None if all_listed_at is None else all_listed_at - requested_at,
        listed_by_a=listed_by_a,
        held_until_resync=held,
        echoed=same,
        other_server=other,
        outcome=outcome,
        check_s=check_s,
        per_server={name: clients.tags.count(tag) for name, tag in TAGS.items()},
        lost_in_a=lost_in_a,
        lost_in_b=lost_in_b,
        counters=counters,
        capture=captured,
        macs=macs,
    )
