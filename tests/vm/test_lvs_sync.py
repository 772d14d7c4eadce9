"""Connection sync across a failover: a pair of ``hadirector run`` directors, inside the VM.

Topology (namespaces of this module, documentation addresses only; the bridges live in a
switch namespace)::

    client 203.0.113.2, other client .3 ──── front LAN ──── A front .4 │ B front .5
                                             VIP 203.0.113.10 (instance "front")
    rs1 198.51.100.11, rs2 .12 ───────────── back LAN ───── A back .1  │ B back .2
        default via the gateway VIP 198.51.100.254 (instance "back")
                                             sync LAN ───── A sync0 192.0.2.1 │ B .2

Both directors run the same configuration (A priority 150, B 100): two VRRP instances in a
sync group ``lvs`` (the client-side VIP and the real servers' gateway VIP move together),
the same NAT services (port 80 persistent for 300 s, port 9000 plain), and ``[ipvs.sync]``
on sync0 decided by the group. A runs the master sync daemon, B the backup one.

The story, with each agent started once (Python start-up is slow under emulation):

1. the other client connects first, so A's round robin has moved on: the client's
   persistent server is then the one a fresh scheduler would *not* pick first;
2. the client connects several times through A (always the same server) and opens a
   long-lived TCP connection (an echo, kept open);
3. B's kernel table holds the client's persistence template and the open connection,
   copied there by the sync daemons;
4. A crashes (SIGKILL, its links down): B becomes master (both instances), its backup
   daemon is stopped and its master daemon started;
5. the client's next requests land on the same real server (persistence survived), and
   the long-lived connection still echoes (NAT needs B to know it: sync gave it);
6. a reload of B with another sync id restarts its daemon with that id;
7. B stops on SIGTERM and stops its daemon.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lvslab import AgentProcess, Answer, Lab, RealServer, agent, request, run, socket_in

pytestmark = pytest.mark.vm

START_TIMEOUT_S = 150.0
STEP_TIMEOUT_S = 40.0
VIP = "203.0.113.10"
GATEWAY_VIP = "198.51.100.254"
RS = {"rs1": "198.51.100.11", "rs2": "198.51.100.12"}
HTTP_PORT, ECHO_PORT = 8080, 9000

CONFIG = """
[global]
router_id = "{name}"

[[vrrp_instance]]
name = "front"
interface = "front"
vrid = 51
priority = {priority}
advert_interval = 1.0
virtual_addresses = ["{vip}/32"]

[[vrrp_instance]]
name = "back"
interface = "back"
vrid = 52
priority = {priority}
advert_interval = 1.0
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

[[virtual_server]]
address = "{vip}:80"
scheduler = "rr"
forwarding = "nat"
persistence_timeout = 300
  [[virtual_server.real_server]]
  address = "198.51.100.11:{http}"
  [[virtual_server.real_server]]
  address = "198.51.100.12:{http}"

[[virtual_server]]
address = "{vip}:{echo}"
scheduler = "rr"
forwarding = "nat"
  [[virtual_server.real_server]]
  address = "198.51.100.11:{echo}"
  [[virtual_server.real_server]]
  address = "198.51.100.12:{echo}"
"""


class EchoServer:
    """Echoes each line back, prefixed with its name, for as long as the peer keeps it open."""

    def __init__(self, name: str, netns: str, port: int) -> None:
        self.name = name
        self._listener = socket_in(netns)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("0.0.0.0", port))
        self._listener.listen(8)
        self._listener.settimeout(0.5)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name=f"echo-{name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(300)
            buffered = b""
            try:
                while chunk := conn.recv(4096):
                    buffered += chunk
                    while b"\n" in buffered:
                        line, buffered = buffered.split(b"\n", 1)
                        conn.sendall(self.name.encode() + b" " + line + b"\n")
            except OSError:
                return

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()
        self._thread.join(timeout=2)


def echo(sock: socket.socket, text: str, timeout_s: float) -> str:
    """Send one line on an open connection; the line that comes back."""
    sock.settimeout(timeout_s)
    sock.sendall(text.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data.decode().strip()


def build(lab: Lab) -> dict[str, str]:
    """The namespaces and links of the module docstring, by role."""
    ns = {role: lab.netns(role) for role in ("sw", "cl", "cl2", "dira", "dirb", "rs1", "rs2")}
    sw = ns["sw"]
    for bridge in ("brf", "brb", "brs"):
        lab.bridge(sw, bridge)

    def plug(role: str, dev: str, bridge: str, address: str) -> None:
        lab.plug(sw, bridge, f"{role}-{dev}"[:15], ns[role], dev, address)

    plug("cl", "eth0", "brf", "203.0.113.2/24")
    plug("cl2", "eth0", "brf", "203.0.113.3/24")
    for role, host in (("dira", 4), ("dirb", 5)):
        plug(role, "front", "brf", f"203.0.113.{host}/24")
        plug(role, "back", "brb", f"198.51.100.{host - 3}/24")
        plug(role, "sync0", "brs", f"192.0.2.{host - 3}/24")
    for role, address in RS.items():
        plug(role, "eth0", "brb", f"{address}/24")
        lab.ip(ns[role], "route", "add", "default", "via", GATEWAY_VIP)
    return ns


def write_config(tmp_path: Path, name: str, priority: int) -> Path:
    path = tmp_path / f"{name}.toml"
    text = CONFIG.format(
        name=name, priority=priority, vip=VIP, gateway=GATEWAY_VIP, http=HTTP_PORT, echo=ECHO_PORT
    )
    path.write_text(text)
    return path


def wait_for_master(agent_: AgentProcess, since: int = 0) -> None:
    for instance in ("front", "back"):

        def became_master(event: dict[str, Any], name: str = instance) -> bool:
            return event.get("instance") == name and event.get("new") == "MASTER"

        agent_.wait_for("vrrp.transition", START_TIMEOUT_S, since, became_master)


Entry = tuple[str, str, str, str]  # state, source, virtual, destination


def connections(netns: str) -> list[Entry]:
    """``ipvsadm -Lnc``: one (state, source, virtual, destination) per connection entry."""
    listing = run("ip", "netns", "exec", netns, "ipvsadm", "-L", "-n", "-c")
    entries = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[0] in ("TCP", "UDP", "SCTP"):
            entries.append((fields[2], fields[3], fields[4], fields[5]))
    return entries


def has(entries: list[Entry], wanted: Entry) -> bool:
    """``wanted`` is in ``entries``; a wanted state "*" matches any state."""
    return any(e == wanted or (wanted[0] == "*" and e[1:] == wanted[1:]) for e in entries)


def wait_for_entries(netns: str, wanted: list[Entry], timeout_s: float) -> list[Entry]:
    deadline = time.monotonic() + timeout_s
    while True:
        entries = connections(netns)
        if all(has(entries, w) for w in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for entry in wanted:
        assert has(entries, entry), f"{entry} not in {netns}'s connection table: {entries}"
    return entries


def get_with_retries(netns: str, port: int, attempts: int = 10) -> Answer:
    """A request that may need the client's ARP entry for the VIP to follow the GARP."""
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            return request(netns, VIP, 80, source_port=port, timeout_s=3.0)
        except (OSError, AssertionError) as error:
            last = error
            port += 1
    raise AssertionError(f"no answer from {VIP}:80 after {attempts} attempts: {last}")


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def test_persistence_and_open_connections_survive_a_failover(lab: Lab, tmp_path: Path) -> None:
    ns = build(lab)
    http = {name: RealServer(name, ns[name], (HTTP_PORT,)) for name in RS}
    echoes = {name: EchoServer(name, ns[name], ECHO_PORT) for name in RS}
    try:
        with agent(ns["dira"], write_config(tmp_path, "A", 150)) as a:
            # B starts once A is master, so that B never is (no preemption in its story).
            wait_for_master(a)
            config_b = write_config(tmp_path, "B", 100)
            with agent(ns["dirb"], config_b) as b:
                run_story(lab, ns, a, b, config_b)
    finally:
        for server in http.values():
            server.stop()
        for echo_server in echoes.values():
            echo_server.stop()


def run_story(
    lab: Lab, ns: dict[str, str], a: AgentProcess, b: AgentProcess, config_b: Path
) -> None:
    # Both up: A master with the master daemon, B backup with the backup daemon.
    for director in (a, b):
        director.wait_for("ipvs.reconciled", START_TIMEOUT_S)
    a.wait_for("sync.master", STEP_TIMEOUT_S)
    backup_started = b.wait_for("sync.backup", START_TIMEOUT_S)
    assert backup_started["interface"] == "sync0" and backup_started["syncid"] == 42
    assert "master sync daemon (mcast=sync0, syncid=42" in lab.exec(
        ns["dira"], "ipvsadm", "--list", "--daemon"
    )
    assert "backup sync daemon (mcast=sync0, syncid=42" in lab.exec(
        ns["dirb"], "ipvsadm", "--list", "--daemon"
    )
    assert not [e for e in b.named("vrrp.transition") if e["new"] == "MASTER"]
    assert not b.named("sync.master")

    # 1. The other client takes the round robin's first pick on A.
    other = get_with_retries(ns["cl2"], 41000)
    # 2. The client's persistent server is the other one, every time.
    answers = [get_with_retries(ns["cl"], 42000 + 10 * i) for i in range(4)]
    chosen = answers[0].server
    assert chosen != other.server, (other, answers)
    assert {x.server for x in answers} == {chosen}, answers
    assert {x.peer for x in answers} == {"203.0.113.2"}  # NAT: the server saw the client
    long_lived = socket_in(ns["cl"])
    with long_lived:
        long_lived.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        long_lived.bind(("0.0.0.0", 43000))
        long_lived.settimeout(10)
        long_lived.connect((VIP, ECHO_PORT))
        first = echo(long_lived, "before", 10)
        echo_server = first.split()[0]
        assert first == f"{echo_server} before"

        # 3. B's table has the template and the open connection, from the sync daemons.
        # A template is the entry with source port 0 (the master lists it as NONE, a
        # synced copy as ASSURED).
        template = ("*", "203.0.113.2:0", f"{VIP}:80", f"{RS[chosen]}:{HTTP_PORT}")
        open_conn = (
            "ESTABLISHED",
            "203.0.113.2:43000",
            f"{VIP}:{ECHO_PORT}",
            f"{RS[echo_server]}:{ECHO_PORT}",
        )
        wait_for_entries(ns["dirb"], [template, open_conn], STEP_TIMEOUT_S)

        # 4. A crashes: killed, off the wire.
        mark_b = b.mark()
        a.process.kill()
        a.process.wait()
        for dev in ("front", "back", "sync0"):
            lab.ip(ns["dira"], "link", "set", dev, "down")
        wait_for_master(b, mark_b)
        b.wait_for("sync.master", STEP_TIMEOUT_S, mark_b)
        stopped = b.named("sync.stopped", since=mark_b)
        assert stopped and stopped[0]["role"] == "backup", b.transcript(mark_b)
        order = [e["event"] for e in b.named("sync.stopped", "sync.master", since=mark_b)]
        assert order[:2] == ["sync.stopped", "sync.master"], order
        daemons_b = lab.exec(ns["dirb"], "ipvsadm", "--list", "--daemon")
        assert "master sync daemon (mcast=sync0, syncid=42" in daemons_b
        assert "backup sync daemon" not in daemons_b

        # 5. Persistence survived: the same real server, though B's scheduler never chose it.
        after = [get_with_retries(ns["cl"], 44000 + 10 * i) for i in range(3)]
        assert {x.server for x in after} == {chosen}, (chosen, after)
        # The open connection goes on through B (retransmitted until B's ARP/GARP settle).
        assert echo(long_lived, "after", 30) == f"{echo_server} after"

    # 6. A reload that changes the sync id restarts the daemon with it, in the same role.
    config_b.write_text(config_b.read_text().replace("syncid = 42", "syncid = 43"))
    mark_reload = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_for("sync.master", STEP_TIMEOUT_S, mark_reload, lambda e: e["syncid"] == 43)
    restarts = b.named("sync.stopped", since=mark_reload)
    assert [(e["role"], e["reason"]) for e in restarts] == [("master", "parameters changed")]
    assert "master sync daemon (mcast=sync0, syncid=43" in lab.exec(
        ns["dirb"], "ipvsadm", "--list", "--daemon"
    )

    # 7. A graceful stop on B stops its daemon.
    assert b.stop() == 0
    assert b.named("sync.stopped", since=mark_b)[-1]["role"] == "master"
    assert "sync daemon" not in lab.exec(ns["dirb"], "ipvsadm", "--list", "--daemon")
