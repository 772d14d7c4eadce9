"""The chaos soak engine, inside the VM: two ``hadirector run`` directors under random faults.

Shared by the CI soak (tests/vm/test_soak.py, one deck of faults, ~3 minutes) and the long
soak (bench/soak.py, ``--minutes N``). The lab is synclab.py's (directors A, priority 150,
and B, 100, with a front VIP and a gateway VIP in a sync group, NAT services on ports 80 and
9000, ``[ipvs.sync]`` on sync0), with health checks on both services, a control socket per
agent and a flooder namespace on the front LAN. A client holds long-lived connections
(one echo line a second each, through the VIP) and sends short HTTP probes.

Faults, dealt from a seeded deck (every kind once per deck, in a shuffled order; one at a
time, each followed by a wait for the steady state: A master of both instances and sole
holder of both VIPs, B backup):

- ``crash``: SIGKILL of the master A (half of the time with its links down too, a
  machine crash), A started again after a while;
- ``link_flap``: a link of A or B (front, back or sync0) down for a while;
- ``partition``: netem 100 % loss on A's front egress, longer than Master_Down_Interval;
- ``loss_burst``: netem random loss (10-40 %) on a director's front egress;
- ``delay``: netem delay with jitter on A's front egress, below what VRRP can notice;
- ``reload_storm``: reloads of one director (SIGHUP and control ``reload``) with good and
  bad files (weights changed; TOML syntax error, invalid value, cut short), ending good;
- ``rs_death``: a real server's HTTP listener stops (checks fail), and comes back (the
  steady state includes every real server up by both agents' checks);
- ``flood``: spoofed VRRP adverts for the front VRID from made-up sources, TTL 254 or a
  bad checksum, at a target rate (10,000/s), from a process of their own;
- ``control_abuse``: garbage, half lines, oversized lines and many simultaneous clients on
  a director's control socket, from a process of their own.

Invariants, checked all the time and reported (``Report.violations``):

- never two masters of an instance for longer than Master_Down_Interval, counted from the
  end of the last partition (netem, link, flood, the agents' start) before the overlap
  ended, or from A's first advert heard on the wire after it if later (``WireWatch``: B
  cannot step down before it hears A; if A was silent all along, B was right);
- the VIPs always held by a director whose agent lives, except inside the failover window
  of a fault that takes the master away (crash, link, partition, loss); every gap's length
  is reported against Master_Down_Interval;
- no long-lived client connection lost (each sends a line a second and waits for the echo;
  the directors sync their connections, so no crash may lose one either);
- no agent exits unasked (only the crash's SIGKILL and the final SIGTERM, exit 0);
- descriptors flat: B (never restarted) has, once the faults stopped and the pair is
  steady, at most ``FD_SLACK`` more than before the first fault (minimum over a few
  samples); resident and proportional memory (RSS/PSS) sampled, growth per 10 minutes
  reported (judged by the long soak);
- every fault an agent can observe is in the agents' JSON logs (the events each kind must
  cause); netem delay and partial loss are below what VRRP observes (no sequence numbers in
  VRRPv3), so for them nothing is expected: they are reported as silent by design. After a
  crash both directors' bulk resyncs must arrive: A's when it returns, B's once A
  preempted it (waited for up to resync_timeout + 10 s before the next fault).

The flood and the abuse run as processes of their own (tests/vm/soakhelpers.py), outside
the harness's interpreter lock.

Test support only: must not be imported by the package.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .lvslab import REPO, AgentProcess, Lab, RealServer, control_status, log_time_s, request
from .lvslab import socket_in as socket_in
from .synclab import ECHO_PORT, GATEWAY_VIP, HTTP_PORT, RS, VIP, EchoServer, build, echo

PRIORITY_A, PRIORITY_B = 150, 100
FRONT_VRID, BACK_VRID = 51, 52
INSTANCES = ("front", "back")
DEVICES = ("front", "back", "sync0")
FLOOD_NET = "203.0.113.66/24"
#: Descriptors B may have beyond its pre-fault level once the faults stopped (sockets of
#: checks and control clients in flight when sampled; the minimum of several samples).
FD_SLACK = 4
CHECK_WAIT_S = 60.0  # two failed HTTP checks 2 s apart make a server down
KINDS = (
    "crash",
    "link_flap",
    "partition",
    "loss_burst",
    "delay",
    "reload_storm",
    "rs_death",
    "flood",
    "control_abuse",
)
#: Faults during which (and until the pair is steady again) the VIP may go unowned and two
#: masters may overlap: they take the master away from the backup's sight.
FAILOVER_KINDS = frozenset({"crash", "link_flap", "partition", "loss_burst", "delay"})
SILENT_KINDS = frozenset({"loss_burst", "delay"})

CONFIG = """
[global]
router_id = "{name}"
control_socket = "{sock}"

[[vrrp_instance]]
name = "front"
interface = "front"
vrid = 51
priority = {priority}
advert_interval = {advert}
virtual_addresses = ["{vip}/32"]

[[vrrp_instance]]
name = "back"
interface = "back"
vrid = 52
priority = {priority}
advert_interval = {advert}
virtual_addresses = ["{gateway}/32"]

[[sync_group]]
name = "lvs"
instances = ["front", "back"]

[ipvs]
reconcile_interval = 30.0

[ipvs.sync]
interface = "sync0"
group = "lvs"
syncid = 42
resync_timeout = {resync}

[[virtual_server]]
address = "{vip}:80"
scheduler = "rr"
forwarding = "nat"
check = {{ type = "http", interval = 2.0, timeout = 1.5, rise = 2, fall = 2 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:{http}"
  weight = {w1}
  [[virtual_server.real_server]]
  address = "198.51.100.12:{http}"
  weight = {w2}

[[virtual_server]]
address = "{vip}:{echo}"
scheduler = "rr"
forwarding = "nat"
check = {{ type = "tcp", interval = 2.0, timeout = 1.0, rise = 2, fall = 3 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:{echo}"
  [[virtual_server.real_server]]
  address = "198.51.100.12:{echo}"
"""


@dataclasses.dataclass
class Settings:
    """What a soak run does; the defaults are the CI run's (one deck)."""

    seed: int
    minutes: float = 0.0  # 0: one deck of faults (every kind once), then stop
    advert_s: float = 2.0
    resync_timeout_s: float = 10.0
    long_lived: int = 4
    probe_interval_s: float = 1.0
    sample_interval_s: float = 5.0
    #: CI: a rate the emulated agents absorb even on a loaded host (there one rejected advert
    #: cost an agent up to ~4 ms of CPU under TCG), so the outcome does not hang on the
    #: host's load; the long run aims at 10,000/s and reports what that does.
    flood_rate: int = 200
    flood_seconds: tuple[float, float] = (2.0, 4.0)
    control_clients: int = 200
    settle_timeout_s: float = 240.0
    quiet_s: float = 5.0  # after the last fault: steady pair, then this long of sampling

    def master_down_s(self, priority: int = PRIORITY_B) -> float:
        """RFC 5798 §6.1 for a backup of ``priority`` (B's, the longer one, by default)."""
        return 3 * self.advert_s + (256 - priority) * self.advert_s / 256


@dataclasses.dataclass
class Fault:
    kind: str
    start: float  # time.time()
    detail: dict[str, Any]
    end: float = 0.0  # the fault removed
    settled: float = 0.0  # the pair steady again (0: never)
    expect: list[tuple[str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    seen: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    #: An event that may come after the steady state: (who, event, log mark at the start),
    #: waited for (bounded) before the next fault; its lines are judged until then.
    after: tuple[str, str, int] | None = None
    judged_until: float = 0.0


@dataclasses.dataclass
class Sample:
    t: float
    agent: str
    pid: int
    fds: int
    rss_kib: int
    pss_kib: int


# --- small helpers ------------------------------------------------------------------------------


def _read_addresses(sock: socket.socket, seq: int) -> set[str]:
    """The IPv4 addresses of the namespace of netlink socket ``sock`` (an RTM_GETADDR dump)."""
    header = struct.pack("=IHHII", 24, 22, 0x301, seq, 0)  # RTM_GETADDR, REQUEST|DUMP
    sock.send(header + struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0))
    found: set[str] = set()
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                return found
            if kind == 3:  # NLMSG_DONE
                return found
            if kind == 2:  # NLMSG_ERROR
                raise OSError("RTM_GETADDR failed")
            if kind == 20:  # RTM_NEWADDR
                at, end = offset + 24, offset + length
                while at + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, at)
                    if alen < 4:
                        break
                    if atype in (1, 2) and alen == 8:  # IFA_ADDRESS, IFA_LOCAL
                        found.add(socket.inet_ntoa(data[at + 4 : at + 8]))
                    at += (alen + 3) & ~3
            offset += (length + 3) & ~3


def proc_sample(name: str, pid: int) -> Sample | None:
    """Descriptors, RSS and PSS of process ``pid`` now (None if it is gone)."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss = pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return Sample(time.time(), name, pid, fds, rss, pss)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slope_kib_per_10min(points: list[tuple[float, int]]) -> float:
    """Least-squares growth of ``(t, kib)`` points, KiB per 10 minutes (0 with < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 600.0


def overlaps(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The intersections of two lists of intervals."""
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            start, end = max(s1, s2), min(e1, e2)
            if start < end:
                out.append((start, end))
    return sorted(out)


def master_intervals(
    events: list[dict[str, Any]], instance: str, end: float
) -> list[tuple[float, float]]:
    """When one agent was MASTER of ``instance``, from its ``vrrp.transition`` lines (an
    agent process's records; a process that died ends its intervals at its death, ``end``)."""
    out = []
    since: float | None = None
    for e in events:
        if e.get("event") != "vrrp.transition" or e.get("instance") != instance:
            continue
        t = log_time_s(e)
        if e.get("new") == "MASTER" and since is None:
            since = t
        elif e.get("new") != "MASTER" and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end))
    return out


def dual_master_excess(
    dual: list[tuple[float, float]], partitions: list[tuple[float, float]]
) -> list[tuple[float, float, float]]:
    """Each overlap of two masters as (start, end, seconds counted): the part after the end
    of the last partition that began before the overlap ended (all of it without one)."""
    out = []
    for start, end in dual:
        heals = [p_end for p_start, p_end in partitions if p_start < end]
        counted_from = max([start, *[h for h in heals if h <= end]])
        inside = any(p_start < end and p_end >= end for p_start, p_end in partitions)
        out.append((start, end, 0.0 if inside else end - counted_from))
    return out


# --- the wire ------------------------------------------------------------------------------------


SO_ATTACH_FILTER, SO_TIMESTAMP = 26, 29


def _advert_filter(sources: tuple[str, str]) -> bytes:
    """A classic BPF program for a packet socket: IPv4, protocol 112, from one of
    ``sources``; everything else (the flood above all) stays in the kernel."""
    a, b = (struct.unpack("!I", socket.inet_aton(x))[0] for x in sources)
    program = [
        (0x28, 0, 0, 12),  # ldh [12]: EtherType
        (0x15, 0, 5, 0x0800),  # IPv4, else drop
        (0x30, 0, 0, 23),  # ldb [23]: protocol
        (0x15, 0, 3, 112),  # VRRP, else drop
        (0x20, 0, 0, 26),  # ld [26]: source address
        (0x15, 2, 0, a),
        (0x15, 1, 0, b),
        (0x06, 0, 0, 0),  # drop
        (0x06, 0, 0, 0xFFFF),  # accept
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


class WireWatch:
    """The adverts of A and B on one LAN, as a third station on it hears them: (kernel
    receive time, source, priority), from a packet socket in namespace ``netns``."""

    def __init__(self, netns: str, dev: str, sources: tuple[str, str]) -> None:
        self.sources = sources
        self.adverts: list[tuple[float, str, int]] = []
        self._sock = socket_in(netns, socket.AF_PACKET, socket.SOCK_RAW)
        program = _advert_filter(sources)
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self._sock.bind((dev, 0x0800))  # (CPython applies htons)
        self._sock.settimeout(0.5)
        self._stopping = False
        self._thread = threading.Thread(target=self._read, name=f"wire-{dev}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stopping:
            try:
                data, ancillary, _flags, _address = self._sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            stamp = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(value) >= 16:
                    seconds, micros = struct.unpack("ll", value[:16])
                    stamp = seconds + micros / 1e6
            if len(data) < 34 + 3:
                continue
            ihl = (data[14] & 0x0F) * 4
            source = socket.inet_ntoa(data[26:30])
            self.adverts.append((stamp, source, data[14 + ihl + 2]))

    def first_after(self, source: str, t: float) -> float | None:
        """When ``source``'s first advert at or after ``t`` was heard (None: none was)."""
        for stamp, src, priority in self.adverts:
            if stamp >= t and src == source and priority > 0:
                return stamp
        return None

    def longest_silence(self, source: str, spans: list[tuple[float, float]]) -> float:
        """The longest time without an advert from ``source`` inside ``spans`` (when it
        was master by its own log)."""
        times = [stamp for stamp, src, _ in self.adverts if src == source]
        longest = 0.0
        for start, end in spans:
            inside = [start, *[t for t in times if start <= t <= end], end]
            longest = max(longest, *(b - a for a, b in itertools.pairwise(inside)))
        return longest

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=2)
        self._sock.close()


# --- the client -----------------------------------------------------------------------------------


class Client:
    """Long-lived echo connections through the VIP and short HTTP probes, in threads."""

    def __init__(self, ns: dict[str, str], long_lived: int, probe_interval_s: float) -> None:
        self.ns = ns
        self.stopping = threading.Event()
        self.lost: list[dict[str, Any]] = []
        self.echoes = 0
        self.slowest_echo_s = 0.0
        self.probes: list[tuple[float, bool]] = []
        self._ports = iter(range(20000, 60000))
        self._port_lock = threading.Lock()
        self.conns: list[tuple[socket.socket, str]] = []
        for _ in range(long_lived):
            self.conns.append(self._open())
        self._threads = [
            threading.Thread(target=self._echo_loop, name="soak-echo", daemon=True),
            threading.Thread(
                target=self._probe_loop, args=(probe_interval_s,), name="soak-probe", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _port(self) -> int:
        with self._port_lock:
            return next(self._ports)

    def _open(self) -> tuple[socket.socket, str]:
        last: BaseException | None = None
        for _ in range(30):
            sock = socket_in(self.ns["cl"])
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", self._port()))
                sock.settimeout(10)
                sock.connect((VIP, ECHO_PORT))
                server = echo(sock, "hello", 30).split()[0]
                return sock, server
            except OSError as error:
                sock.close()
                last = error
                time.sleep(1)
        raise AssertionError(f"no long-lived connection to {VIP}:{ECHO_PORT}: {last}")

    def _echo_loop(self) -> None:
        n = 0
        while not self.stopping.is_set():
            for index, (sock, server) in enumerate(list(self.conns)):
                n += 1
                began = time.monotonic()
                try:
                    answer = echo(sock, f"n{n}", 120)
                    if answer != f"{server} n{n}":
                        raise AssertionError(f"answer {answer!r}")
                    self.echoes += 1
                    self.slowest_echo_s = max(self.slowest_echo_s, time.monotonic() - began)
                except (OSError, AssertionError) as error:
                    if self.stopping.is_set():
                        return
                    self.lost.append({"t": time.time(), "conn": index, "error": str(error)})
                    sock.close()
                    with contextlib.suppress(AssertionError):
                        self.conns[index] = self._open()
            self.stopping.wait(1.0)

    def _probe_loop(self, interval_s: float) -> None:
        while not self.stopping.wait(interval_s):
            try:
                request(self.ns["cl2"], VIP, 80, source_port=self._port(), timeout_s=3.0)
                self.probes.append((time.time(), True))
            except (OSError, AssertionError, ValueError):
                self.probes.append((time.time(), False))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=150)
        for sock, _ in self.conns:
            sock.close()


# --- the soak -------------------------------------------------------------------------------------


class Soak:
    """One soak run in ``lab`` (the caller's, closed by the caller); ``run()`` -> report."""

    def __init__(
        self, lab: Lab, tmp: Path, settings: Settings, say: Callable[[str], None] = print
    ) -> None:
        self.lab = lab
        self.tmp = tmp
        self.s = settings
        self.say = say
        self.rng = random.Random(settings.seed)
        self.mdi = settings.master_down_s()
        self.ns: dict[str, str] = {}
        self.agents: dict[str, AgentProcess] = {}
        self.history: dict[str, list[AgentProcess]] = {"A": [], "B": []}
        self.asked_to_die: set[int] = set()  # pids we killed or stopped
        self.died: dict[int, float] = {}  # pid: when we killed it
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.samples: list[Sample] = []
        self.owners: list[tuple[float, frozenset[str], frozenset[str]]] = []  # t, front, back
        self.partitions: list[tuple[float, float]] = []
        self.gap_windows: list[tuple[float, float]] = []
        self.netem = False
        self.t0 = time.time()
        self.watch_from = self.watch_until = 0.0  # VIP owners judged between these
        self.flood_rates: list[dict[str, Any]] = []
        self.wires: dict[str, WireWatch] = {}
        self.stalls: list[tuple[float, float]] = []
        self._flood_cpu: tuple[Fault, dict[str, float]] | None = None
        self.abuse_results: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._weights = (1, 1)
        self.client: Client | None = None
        self.servers: dict[str, RealServer] = {}
        self.echo_servers: dict[str, EchoServer] = {}

    # -- setup ----------------------------------------------------------------------------------

    def config_text(self, name: str, weights: tuple[int, int] = (1, 1)) -> str:
        return CONFIG.format(
            name=name,
            sock=self.tmp / f"{name}.sock",
            priority=PRIORITY_A if name == "A" else PRIORITY_B,
            advert=self.s.advert_s,
            resync=self.s.resync_timeout_s,
            vip=VIP,
            gateway=GATEWAY_VIP,
            http=HTTP_PORT,
            echo=ECHO_PORT,
            w1=weights[0],
            w2=weights[1],
        )

    def config_path(self, name: str) -> Path:
        return self.tmp / f"{name}.toml"

    def write_config(self, name: str, text: str) -> None:
        path = self.config_path(name)
        partial = path.with_suffix(".new")
        partial.write_text(text)
        partial.replace(path)

    def start_agent(self, name: str) -> AgentProcess:
        role = "dira" if name == "A" else "dirb"
        process = AgentProcess(self.ns[role], self.config_path(name))
        with self._lock:
            self.agents[name] = process
            self.history[name].append(process)
        return process

    def setup(self) -> None:
        self.netem = subprocess.run(["modprobe", "sch_netem"], capture_output=True).returncode == 0
        self.ns = build(self.lab)
        flood = self.lab.netns("fl")
        self.lab.plug(self.ns["sw"], "brf", "fl-eth0", flood, "eth0", FLOOD_NET)
        self.ns["fl"] = flood
        self.wires = {
            "front": WireWatch(self.ns["cl2"], "eth0", ("203.0.113.4", "203.0.113.5")),
            "back": WireWatch(self.ns["rs2"], "eth0", ("198.51.100.1", "198.51.100.2")),
        }
        self.servers = {name: RealServer(name, self.ns[name], (HTTP_PORT,)) for name in RS}
        self.echo_servers = {name: EchoServer(name, self.ns[name], ECHO_PORT) for name in RS}
        for name in ("A", "B"):
            self.write_config(name, self.config_text(name))
        self.start_agent("A")
        self.start_agent("B")
        threading.Thread(target=self._monitor, name="soak-monitor", daemon=True).start()
        threading.Thread(target=self._sampler, name="soak-sampler", daemon=True).start()
        threading.Thread(target=self._stall_watch, name="soak-stalls", daemon=True).start()
        if not self.wait_steady():
            raise AssertionError("the pair never became steady:\n" + self._transcripts())
        self.client = Client(self.ns, self.s.long_lived, self.s.probe_interval_s)

    # -- monitors -------------------------------------------------------------------------------

    def _monitor(self) -> None:
        """VIP owners (a director whose agent lives holding the address) every 0.2 s; agents
        that exit unasked."""
        socks = {}
        for name, role in (("A", "dira"), ("B", "dirb")):
            sock = socket_in(self.ns[role], socket.AF_NETLINK, socket.SOCK_RAW)
            sock.bind((0, 0))
            socks[name] = sock
        seq = 0
        reported: set[int] = set()
        while not self._stop.wait(0.2):
            front, back = set(), set()
            for name, sock in socks.items():
                seq += 1
                with self._lock:
                    process = self.agents.get(name)
                alive = process is not None and process.process.poll() is None
                if process is not None and not alive:
                    pid = process.process.pid
                    if pid not in self.asked_to_die and pid not in reported:
                        reported.add(pid)
                        self.violation(
                            f"agent {name} (pid {pid}) exited unasked, status "
                            f"{process.process.returncode}:\n{process.transcript()}"
                        )
                try:
                    addresses = _read_addresses(sock, seq)
                except OSError:
                    continue
                if alive and VIP in addresses:
                    front.add(name)
                if alive and GATEWAY_VIP in addresses:
                    back.add(name)
            self.owners.append((time.time(), frozenset(front), frozenset(back)))
        for sock in socks.values():
            sock.close()

    def _stall_watch(self) -> None:
        """How late a thread that only sleeps 50 ms wakes: the VM too busy (or not run by
        its host) to schedule it; each wake-up later than 0.25 s is kept as (when, late)."""
        tick = 0.05
        last = time.monotonic()
        while not self._stop.wait(tick):
            now = time.monotonic()
            late = now - last - tick
            if late > 0.25:
                self.stalls.append((time.time() - late, late))
            last = now

    def _sampler(self) -> None:
        while True:
            with self._lock:
                live = [
                    (n, p.process.pid) for n, p in self.agents.items() if p.process.poll() is None
                ]
            for name, pid in live:
                sample = proc_sample(name, pid)
                if sample is not None:
                    self.samples.append(sample)
            if self._stop.wait(self.s.sample_interval_s):
                return

    def violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)
        self.say(f"soak: VIOLATION {text}")

    # -- state -------------------------------------------------------------------------------------

    def state(self, name: str, instance: str) -> str:
        """An agent's last reported state of ``instance`` ("" if none, "DEAD" if gone)."""
        process = self.agents.get(name)
        if process is None or process.process.poll() is not None:
            return "DEAD"
        for event in reversed(process.named("vrrp.transition")):
            if event.get("instance") == instance:
                return str(event.get("new"))
        return ""

    def servers_up(self, name: str) -> bool:
        """Every real server up by the agent's last ``check.up``/``check.down`` lines (a
        check may time out when the emulated VM stalls; a real server's death must start
        from up)."""
        process = self.agents[name]
        last: dict[str, str] = {}
        for event in process.named("check.up", "check.down"):
            last[str(event.get("service")) + str(event.get("server"))] = event["event"]
        return all(state == "check.up" for state in last.values())

    def steady(self) -> bool:
        for instance in INSTANCES:
            if self.state("A", instance) != "MASTER" or self.state("B", instance) != "BACKUP":
                return False
        if not (self.servers_up("A") and self.servers_up("B")):
            return False
        if not self.owners:
            return False
        _t, front, back = self.owners[-1]
        return front == {"A"} and back == {"A"}

    def wait_steady(self) -> bool:
        deadline = time.monotonic() + self.s.settle_timeout_s
        while time.monotonic() < deadline:
            if any(p.process.poll() is not None for p in self.agents.values()):
                return False  # an agent died unasked (a violation already)
            if self.steady():
                # Steady again on an owner sample taken wholly after this one.
                count = len(self.owners)
                while len(self.owners) < count + 2 and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.steady():
                    return True
            time.sleep(0.3)
        return False

    def wait_event(
        self, name: str, event: str, since: int, timeout_s: float, **fields: Any
    ) -> bool:
        try:
            self.agents[name].wait_for(
                event, timeout_s, since, lambda e: all(e.get(k) == v for k, v in fields.items())
            )
            return True
        except AssertionError:
            return False

    def marks(self) -> dict[str, int]:
        return {name: process.mark() for name, process in self.agents.items()}

    # -- faults ----------------------------------------------------------------------------------

    def deal(self) -> Iterator[str]:
        while True:
            deck = list(KINDS)
            self.rng.shuffle(deck)
            yield from deck

    def run_faults(self) -> None:
        started = time.monotonic()
        dealer = self.deal()
        count = 0
        while True:
            if self.s.minutes <= 0 and count == len(KINDS):
                break
            if self.s.minutes > 0 and time.monotonic() - started >= self.s.minutes * 60:
                break
            kind = next(dealer)
            count += 1
            fault = Fault(kind, time.time(), {})
            self.faults.append(fault)
            self.say(f"soak: fault {count} {kind} at +{time.monotonic() - started:.0f} s")
            getattr(self, f"fault_{kind}")(fault)
            fault.end = fault.end or time.time()
            if self.wait_steady():
                fault.settled = time.time()
            else:
                self.violation(f"fault {count} {kind}: the pair did not become steady again")
            if fault.after is not None:
                who, event, mark = fault.after
                self.wait_event(who, event, mark, self.s.resync_timeout_s + 10)
                fault.judged_until = time.time()
            if kind == "flood" and self._flood_cpu is not None:
                flood, before = self._flood_cpu
                for name, process in self.agents.items():
                    spent = cpu_s(process.process.pid) - before.get(name, 0.0)
                    flood.detail[f"cpu_s_{name}"] = round(spent, 2)
            if kind in FAILOVER_KINDS:
                self.gap_windows.append((fault.start, fault.settled or time.time()))
            self.say(
                f"soak:   {kind} {json.dumps(fault.detail)} "
                f"steady after {(fault.settled or time.time()) - fault.start:.1f} s"
            )

    def hold_s(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def fault_crash(self, fault: Fault) -> None:
        machine = self.rng.random() < 0.5
        a = self.agents["A"]
        mark_b = self.agents["B"].mark()
        self.asked_to_die.add(a.process.pid)
        fault.start = time.time()
        a.process.kill()
        a.process.wait()
        self.died[a.process.pid] = fault.start
        if machine:
            for dev in DEVICES:
                self.lab.ip(self.ns["dira"], "link", "set", dev, "down")
        fault.detail = {"machine": machine}
        fault.expect.append(("B", "vrrp.transition", {"instance": "front", "new": "MASTER"}))
        # B takes over; A is started again once B holds the VIP for a while.
        self.wait_event("B", "vrrp.transition", mark_b, self.s.settle_timeout_s, new="MASTER")
        time.sleep(self.hold_s(1.0, self.mdi))
        if machine:
            for dev in DEVICES:
                self.lab.ip(self.ns["dira"], "link", "set", dev, "up")
        self.start_agent("A")
        fault.end = time.time()
        fault.expect.append(("A", "vrrp.transition", {"instance": "front", "new": "BACKUP"}))
        fault.expect.append(("A", "sync.resync_arrived", {}))
        # A preempts B once its resync arrived; B, backup again, asks A for its table
        # (at the instant A becomes master: its REQUEST is repeated until answered).
        fault.expect.append(("B", "sync.resync_arrived", {}))
        fault.after = ("B", "sync.resync_arrived", mark_b)

    def fault_link_flap(self, fault: Fault) -> None:
        who = self.rng.choice(("A", "B"))
        dev = self.rng.choice(DEVICES)
        down_s = self.hold_s(0.5, self.mdi + 3)
        ns = self.ns["dira" if who == "A" else "dirb"]
        fault.start = time.time()
        self.lab.ip(ns, "link", "set", dev, "down")
        time.sleep(down_s)
        self.lab.ip(ns, "link", "set", dev, "up")
        fault.end = time.time()
        self.partitions.append((fault.start, fault.end))
        fault.detail = {"director": who, "device": dev, "down_s": round(down_s, 1)}
        fault.expect.append((who, "link.change", {"interface": dev, "up": False}))
        fault.expect.append((who, "link.change", {"interface": dev, "up": True}))

    def _netem(self, fault: Fault, who: str, spec: list[str], hold_s: float) -> None:
        ns = self.ns["dira" if who == "A" else "dirb"]
        if not self.netem:
            fault.detail["skipped"] = "sch_netem did not load"
            return
        fault.start = time.time()
        self.lab.exec(ns, "tc", "qdisc", "add", "dev", "front", "root", "netem", *spec)
        try:
            time.sleep(hold_s)
        finally:
            self.lab.exec(ns, "tc", "qdisc", "del", "dev", "front", "root")
        fault.end = time.time()
        self.partitions.append((fault.start, fault.end))

    def fault_partition(self, fault: Fault) -> None:
        hold = self.hold_s(self.mdi + 1, self.mdi + 4)
        fault.detail = {"director": "A", "loss": 100, "hold_s": round(hold, 1)}
        fault.expect.append(("B", "vrrp.transition", {"instance": "front", "new": "MASTER"}))
        fault.expect.append(("B", "vrrp.transition", {"instance": "front", "new": "BACKUP"}))
        self._netem(fault, "A", ["loss", "100%"], hold)

    def fault_loss_burst(self, fault: Fault) -> None:
        who = self.rng.choice(("A", "B"))
        loss = self.rng.randint(10, 40)
        hold = self.hold_s(3.0, self.mdi)
        fault.detail = {"director": who, "loss": loss, "hold_s": round(hold, 1)}
        self._netem(fault, who, ["loss", f"{loss}%"], hold)

    def fault_delay(self, fault: Fault) -> None:
        delay_ms = self.rng.randint(20, int(self.s.advert_s * 150))
        jitter_ms = self.rng.randint(0, delay_ms // 2)
        hold = self.hold_s(3.0, self.mdi)
        fault.detail = {"director": "A", "delay_ms": delay_ms, "jitter_ms": jitter_ms}
        fault.detail["hold_s"] = round(hold, 1)
        self._netem(fault, "A", ["delay", f"{delay_ms}ms", f"{jitter_ms}ms"], hold)

    def bad_config(self, name: str, kind: int) -> str:
        text = self.config_text(name)
        if kind == 0:
            return text.replace("[ipvs.sync]", "[ipvs.sync")  # TOML syntax error
        if kind == 1:
            return text.replace("vrid = 51", "vrid = 999")  # out of range
        return text[: text.index('address = "198.51.100.12')] + 'address = "198.51'  # cut short

    def fault_reload_storm(self, fault: Fault) -> None:
        who = self.rng.choice(("A", "B"))
        process = self.agents[who]
        reloads = self.rng.randint(5, 20)
        sock = self.tmp / f"{who}.sock"
        # First a bad file through the control socket: its answer says it was refused.
        self.write_config(who, self.bad_config(who, self.rng.randrange(3)))
        refused = control_reload(sock)
        if refused.get("ok"):
            self.violation(f"reload_storm: a bad configuration was applied by {who}: {refused}")
        kinds = []
        for _ in range(reloads):
            if self.rng.random() < 0.5:
                self._weights = (self.rng.randint(1, 5), self.rng.randint(1, 5))
                self.write_config(who, self.config_text(who, self._weights))
                kinds.append("good")
            else:
                self.write_config(who, self.bad_config(who, self.rng.randrange(3)))
                kinds.append("bad")
            process.signal(signal.SIGHUP)
            time.sleep(self.rng.uniform(0.0, 0.3))
        # Last, the configuration of the pair again, through the control socket: applied.
        self.write_config(who, self.config_text(who))
        applied = control_reload(sock)
        if not applied.get("ok"):
            self.violation(f"reload_storm: the good configuration was refused by {who}: {applied}")
        fault.end = time.time()
        fault.detail = {
            "director": who,
            "sighups": reloads,
            "bad": kinds.count("bad"),
            "good": kinds.count("good"),
        }
        fault.expect.append((who, "config.reload_failed", {}))
        fault.expect.append((who, "config.reloaded", {}))

    def fault_rs_death(self, fault: Fault) -> None:
        name = self.rng.choice(sorted(RS))
        server = f"{RS[name]}:{HTTP_PORT}"
        marks = self.marks()
        fault.start = time.time()
        self.servers[name].stop()
        # A minute is plenty (CHECK_WAIT_S); a missing line is reported with the fault's
        # other log lines.
        for who in ("A", "B"):
            self.wait_event(who, "check.down", marks[who], CHECK_WAIT_S, server=server)
        time.sleep(self.hold_s(1.0, 5.0))
        self.servers[name] = RealServer(name, self.ns[name], (HTTP_PORT,))
        for who in ("A", "B"):
            self.wait_event(who, "check.up", marks[who], CHECK_WAIT_S, server=server)
        fault.end = time.time()
        fault.detail = {"server": server}
        for who in ("A", "B"):
            fault.expect.append((who, "check.down", {"server": server}))
            fault.expect.append((who, "check.up", {"server": server}))

    def rx_packets(self, role: str) -> int:
        return int(
            self.lab.exec(self.ns[role], "cat", "/sys/class/net/front/statistics/rx_packets")
        )

    def fault_flood(self, fault: Fault) -> None:
        seconds = self.hold_s(*self.s.flood_seconds)
        rx_before = self.rx_packets("dirb")
        cpu_before = {n: cpu_s(p.process.pid) for n, p in self.agents.items()}
        result = helper(
            self.ns["fl"],
            "flood",
            "--rate",
            str(self.s.flood_rate),
            "--seconds",
            f"{seconds:.2f}",
            "--seed",
            str(self.rng.randrange(1 << 30)),
        )
        if "failed" in result:
            self.violation(f"the flood could not be sent: {result['failed']}")
        fault.start = result.get("start", fault.start)
        fault.end = result.get("end", time.time())
        # A flood may starve the agents (one emulated CPU): its end counts as a heal.
        self.partitions.append((fault.start, fault.end))
        self.flood_rates.append(result)
        fault.detail = {
            "target_per_s": self.s.flood_rate,
            "sent": result.get("sent"),
            "reached_per_s": result.get("rate"),
            "seconds": result.get("seconds"),
            "b_front_rx_packets": self.rx_packets("dirb") - rx_before,
        }
        # CPU the agents spent from the flood's start until the pair is steady again.
        self._flood_cpu = (fault, cpu_before)
        for who in ("A", "B"):
            fault.expect.append((who, "vrrp.advert_rejected", {}))

    def fault_control_abuse(self, fault: Fault) -> None:
        who = self.rng.choice(("A", "B"))
        sock = self.tmp / f"{who}.sock"
        result = helper(
            self.ns["cl"],
            "abuse",
            "--socket",
            str(sock),
            "--clients",
            str(self.s.control_clients),
            "--seed",
            str(self.rng.randrange(1 << 30)),
        )
        if "failed" in result:
            self.violation(f"the control-socket abuse failed: {result['failed']}")
        fault.start = result.get("start", fault.start)
        fault.end = result.get("end", time.time())
        self.abuse_results.append(result)
        fault.detail = {
            "director": who,
            **{k: v for k, v in result.items() if k not in ("start", "end")},
        }
        # The socket still answers.
        try:
            control_status(sock, timeout_s=60)
        except (OSError, AssertionError, ValueError) as error:
            self.violation(f"control_abuse: {who}'s control socket no longer answers: {error}")
        fault.expect.append((who, "control.bad_request", {}))
        fault.expect.append((who, "control.busy", {}))

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.say(
            f"soak: seed {self.s.seed}; advert {self.s.advert_s} s, Master_Down_Interval "
            f"{self.mdi:.3f} s (B); netem: {'yes' if self.netem else 'checking'}"
        )
        began = time.time()
        try:
            self.setup()
            if not self.netem:
                self.say("soak: sch_netem does not load: netem faults are skipped")
            self.watch_from = time.time()
            # Two agents starting at once have not heard each other yet: a partition.
            self.partitions.append((self.t0, self.watch_from))
            self.say("soak: steady; baseline descriptors")
            baseline = self.fd_floor("B")
            faults_began = time.time()
            self.run_faults()
            faults_ended = time.time()
            time.sleep(self.s.quiet_s)
            after = self.fd_floor("B")
            assert self.client is not None
            self.client.stop()
            self.watch_until = time.time()
        finally:
            self._stop.set()
            exits = self.stop_agents()
            for wire in self.wires.values():
                wire.stop()
            for server in self.servers.values():
                server.stop()
            for echo_server in self.echo_servers.values():
                echo_server.stop()
        return self.report(began, faults_began, faults_ended, baseline, after, exits)

    def fd_floor(self, name: str, count: int = 5) -> int:
        """The fewest descriptors of agent ``name`` over ``count`` samples a second apart."""
        pid = self.agents[name].process.pid
        floor = 1 << 30
        for _ in range(count):
            sample = proc_sample(name, pid)
            if sample is not None:
                floor = min(floor, sample.fds)
            time.sleep(1.0)
        return floor

    def stop_agents(self) -> dict[str, int | None]:
        exits: dict[str, int | None] = {}
        for name, process in self.agents.items():
            self.asked_to_die.add(process.process.pid)
            exits[name] = process.stop()
        return exits

    def write_logs(self, directory: Path) -> None:
        """Every agent process's whole log, one file each (A0.jsonl, A1.jsonl, ..., B0.jsonl):
        its JSON records, then any other line it printed."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, history in self.history.items():
            for index, process in enumerate(history):
                with process._cond:
                    lines = [json.dumps(e) for e in process.events] + process.other_lines
                (directory / f"{name}{index}.jsonl").write_text("".join(f"{x}\n" for x in lines))

    def _transcripts(self) -> str:
        return "\n".join(f"--- {n}:\n{p.transcript()}" for n, p in self.agents.items())

    # -- the report ------------------------------------------------------------------------------

    def report(
        self,
        began: float,
        faults_began: float,
        faults_ended: float,
        fd_before: int,
        fd_after: int,
        exits: dict[str, int | None],
    ) -> dict[str, Any]:
        end = time.time()
        for name, status in exits.items():
            if status != 0:
                self.violation(f"agent {name} exited {status} on SIGTERM")
        # Two masters.
        dual_report = []
        silence: dict[str, float] = {}
        for instance in INSTANCES:
            spans = {
                name: [
                    span
                    for process in self.history[name]
                    for span in master_intervals(
                        process.events, instance, self.died.get(process.process.pid, end)
                    )
                ]
                for name in ("A", "B")
            }
            # Judged until the agents are stopped (a stopping master hands over).
            dual = overlaps(overlaps(spans["A"], spans["B"]), [(self.t0, self.watch_until)])
            wire = self.wires[instance]
            address_a = wire.sources[0]
            silence[instance] = wire.longest_silence(address_a, spans["A"])
            for start, stop, counted in dual_master_excess(dual, self.partitions):
                # B can step down only once it has heard A: count from A's first advert on
                # the wire (none while they overlap: A was silent, B right to take over).
                heard = wire.first_after(address_a, stop - counted)
                counted = 0.0 if heard is None or heard >= stop else stop - heard
                dual_report.append(
                    {
                        "instance": instance,
                        "start": start,
                        "seconds": stop - start,
                        "counted": counted,
                        "during": self.fault_at(start),
                    }
                )
                if counted > self.mdi:
                    self.violation(
                        f"two masters of {instance} for {counted:.2f} s after the partition "
                        f"healed and A was heard (Master_Down_Interval {self.mdi:.2f} s), "
                        f"{stop - start:.2f} s in all, from {self.fault_at(start)}"
                    )
        # VIP gaps.
        gaps = owner_gaps([o for o in self.owners if self.watch_from <= o[0] <= self.watch_until])
        gap_report = []
        for start, stop, which in gaps:
            allowed = any(w0 <= start and stop <= w1 + 0.5 for w0, w1 in self.gap_windows)
            gap_report.append(
                {"vip": which, "start": start, "seconds": stop - start, "allowed": allowed}
            )
            if not allowed:
                self.violation(
                    f"{which} VIP held by no live director for {stop - start:.2f} s at "
                    f"{self.fault_at(start)}, outside any failover window"
                )
        # Connections.
        assert self.client is not None
        for lost in self.client.lost:
            self.violation(
                f"long-lived connection {lost['conn']} lost at {self.fault_at(lost['t'])}: "
                f"{lost['error']}"
            )
        # Faults in the logs.
        for fault in self.faults:
            for who, event, fields in fault.expect:
                text = f"{who}:{event}{fields if fields else ''}"
                until = max(fault.settled or end, fault.judged_until) + 1
                if self.logged(who, event, fields, fault.start - 1, until):
                    fault.seen.append(text)
                else:
                    fault.missing.append(text)
                    self.violation(f"{self.fault_at(fault.start)}: no {text} in the logs")
        # Takeovers by B that a flood caused (the master's adverts starved or queued).
        for fault in self.faults:
            if fault.kind == "flood":
                fault.detail["takeovers"] = sum(
                    1
                    for e in self.agents["B"].named("vrrp.transition")
                    if e.get("instance") == "front"
                    and e.get("new") == "MASTER"
                    and fault.start <= log_time_s(e) <= fault.end + self.mdi
                )
        # Descriptors.
        if fd_after > fd_before + FD_SLACK:
            self.violation(
                f"B's descriptors grew from {fd_before} to {fd_after} (slack {FD_SLACK})"
            )
        resources = self.resources(faults_began)
        probes_ok = sum(1 for _, ok in self.client.probes if ok)
        return {
            "seed": self.s.seed,
            "minutes": (end - began) / 60,
            "fault_minutes": (faults_ended - faults_began) / 60,
            "advert_s": self.s.advert_s,
            "master_down_s": self.mdi,
            "netem": self.netem,
            "faults": [dataclasses.asdict(f) for f in self.faults],
            "fault_counts": {k: sum(1 for f in self.faults if f.kind == k) for k in KINDS},
            "dual_masters": dual_report,
            "a_longest_silence_as_master_s": silence,
            "adverts_heard": {k: len(w.adverts) for k, w in self.wires.items()},
            "stalls": len(self.stalls),
            "stall_s": sum(late for _, late in self.stalls),
            "longest_stall_s": max((late for _, late in self.stalls), default=0.0),
            "timeline": self.timeline(),
            "vip_gaps": gap_report,
            "longest_allowed_gap_s": max((g["seconds"] for g in gap_report), default=0.0),
            "echoes": self.client.echoes,
            "slowest_echo_s": self.client.slowest_echo_s,
            "connections_lost": len(self.client.lost),
            "probes": len(self.client.probes),
            "probes_ok": probes_ok,
            "fd_before": fd_before,
            "fd_after": fd_after,
            "resources": resources,
            "flood": self.flood_rates,
            "abuse": self.abuse_results,
            "agent_incarnations": {n: len(h) for n, h in self.history.items()},
            "exits": exits,
            "violations": list(self.violations),
        }

    def timeline(self) -> list[str]:
        """The agents' state changes and fault-related lines, on the run's clock."""
        names = ("vrrp.transition", "vrrp.group_transition", "vrrp.advert_rejected",
                 "link.change", "check.down", "check.up", "control.busy", "control.bad_request",
                 "config.reloaded", "config.reload_failed", "agent.stopping")  # fmt: skip
        lines = []
        for name, history in self.history.items():
            for process in history:
                for e in process.events:
                    if e["event"] not in names and not e["event"].startswith("sync."):
                        continue
                    t = log_time_s(e) - self.t0
                    keys = ("instance", "group", "new", "reason", "suppressed", "interface",
                            "up", "server", "role", "entries", "announced", "seconds",
                            "error")  # fmt: skip
                    fields = " ".join(f"{k}={e[k]}" for k in keys if k in e)
                    lines.append(f"{t:8.2f} {name} {e['event']} {fields}")
        for i, f in enumerate(self.faults, 1):
            lines.append(f"{f.start - self.t0:8.2f} -- fault {i} {f.kind} {json.dumps(f.detail)}")
            lines.append(f"{f.end - self.t0:8.2f} -- fault {i} {f.kind} removed")
        for at, late in self.stalls:
            lines.append(f"{at - self.t0:8.2f} -- VM stall {late:.2f} s")
        return sorted(lines, key=lambda line: float(line.split()[0]))

    def fault_at(self, t: float) -> str:
        """Where ``t`` is: the last fault begun before it, and how long after."""
        before = [(i, f) for i, f in enumerate(self.faults, 1) if f.start <= t]
        if not before:
            return f"setup +{t - self.t0:.1f} s"
        i, f = before[-1]
        return f"fault {i} {f.kind} +{t - f.start:.1f} s (run +{t - self.t0:.1f} s)"

    def logged(self, who: str, event: str, fields: dict[str, Any], t0: float, t1: float) -> bool:
        for process in self.history[who]:
            for e in process.named(event):
                if t0 <= log_time_s(e) <= t1 and all(e.get(k) == v for k, v in fields.items()):
                    return True
        return False

    def resources(self, faults_began: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("A", "B"):
            for index, process in enumerate(self.history[name]):
                mine = [s for s in self.samples if s.pid == process.process.pid]
                if not mine:
                    continue
                later = [s for s in mine if s.t >= faults_began] or mine
                out[f"{name}{index}"] = {
                    "samples": len(mine),
                    "minutes": (mine[-1].t - mine[0].t) / 60,
                    "fds_first": mine[0].fds,
                    "fds_last": mine[-1].fds,
                    "fds_max": max(s.fds for s in mine),
                    "rss_kib_first": mine[0].rss_kib,
                    "rss_kib_last": mine[-1].rss_kib,
                    "pss_kib_first": mine[0].pss_kib,
                    "pss_kib_last": mine[-1].pss_kib,
                    "pss_kib_max": max(s.pss_kib for s in mine),
                    "rss_growth_kib_per_10min": slope_kib_per_10min(
                        [(s.t, s.rss_kib) for s in later]
                    ),
                    "pss_growth_kib_per_10min": slope_kib_per_10min(
                        [(s.t, s.pss_kib) for s in later]
                    ),
                }
        return out


def owner_gaps(
    owners: list[tuple[float, frozenset[str], frozenset[str]]],
) -> list[tuple[float, float, str]]:
    """Intervals in which a VIP had no live holder: (first empty sample, next held, vip)."""
    gaps = []
    for index, which in ((1, "front"), (2, "back")):
        start: float | None = None
        for sample in owners:
            held = bool(sample[index])
            if not held and start is None:
                start = sample[0]
            elif held and start is not None:
                gaps.append((start, sample[0], which))
                start = None
        if start is not None:
            gaps.append((start, owners[-1][0], which))
    return sorted(gaps)


def control_reload(path: Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """The reply to a control ``reload``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(b'{"command": "reload"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def helper(netns: str, *args: str) -> dict[str, Any]:
    """``python -m tests.vm.soakhelpers ARGS`` in ``netns``; the JSON line it prints."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.vm.soakhelpers", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    if done.returncode != 0:
        return {"failed": f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(report: dict[str, Any]) -> str:
    """The report as text."""
    lines = [
        f"seed {report['seed']}: {report['minutes']:.1f} min, faults for "
        f"{report['fault_minutes']:.1f} min; advert {report['advert_s']} s, "
        f"Master_Down_Interval {report['master_down_s']:.3f} s; netem {report['netem']}",
        "faults: " + ", ".join(f"{k} {v}" for k, v in report["fault_counts"].items()),
    ]
    duals = report["dual_masters"]
    worst = max((d["counted"] for d in duals), default=0.0)
    lines.append(
        f"two masters: {len(duals)} overlaps, longest counted after a heal and A heard "
        f"{worst:.2f} s; A's longest silence on the wire while master: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in report["a_longest_silence_as_master_s"].items())
    )
    lines.extend(
        f"  {d['instance']}: {d['seconds']:.2f} s (counted {d['counted']:.2f} s) at {d['during']}"
        for d in duals
    )
    gaps = report["vip_gaps"]
    lines.append(
        f"VIP without a live holder: {len(gaps)} gaps, longest "
        f"{report['longest_allowed_gap_s']:.2f} s, "
        f"{sum(1 for g in gaps if not g['allowed'])} outside failover windows"
    )
    lines.append(
        f"long-lived connections: {report['echoes']} echoes, {report['connections_lost']} lost, "
        f"slowest echo {report['slowest_echo_s']:.1f} s; "
        f"probes {report['probes_ok']}/{report['probes']} ok"
    )
    floods = [f for f in report["faults"] if f["kind"] == "flood"]
    for fault in floods:
        d = fault["detail"]
        lines.append(
            f"flood: {d.get('sent')} spoofed adverts in {d.get('seconds', 0):.1f} s = "
            f"{d.get('reached_per_s', 0):.0f}/s (target {d.get('target_per_s')}/s); "
            f"B took over {d.get('takeovers', 0)} time(s)"
        )
    for abuse in report["abuse"]:
        lines.append(
            "control abuse: "
            + json.dumps({k: v for k, v in abuse.items() if k not in ("start", "end")})
        )
    lines.append(
        f"B descriptors: {report['fd_before']} before the faults, {report['fd_after']} after"
    )
    for name, r in report["resources"].items():
        lines.append(
            f"{name}: {r['minutes']:.1f} min, fds {r['fds_first']}->{r['fds_last']} "
            f"(max {r['fds_max']}), "
            f"RSS {r['rss_kib_first']}->{r['rss_kib_last']} KiB, PSS {r['pss_kib_first']}->"
            f"{r['pss_kib_last']} KiB; growth RSS {r['rss_growth_kib_per_10min']:.0f}, PSS "
            f"{r['pss_growth_kib_per_10min']:.0f} KiB/10 min"
        )
    lines.append(
        f"VM stalls (a sleeping thread woken > 0.25 s late): {report['stalls']}, "
        f"{report['stall_s']:.1f} s in all, longest {report['longest_stall_s']:.2f} s"
    )
    lines.append(f"violations: {len(report['violations'])}")
    lines.extend(f"  - {v.splitlines()[0]}" for v in report["violations"])
    return "\n".join(lines)
