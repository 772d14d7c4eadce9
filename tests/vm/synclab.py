"""The connection-sync lab of the VM tests (test_lvs_sync.py, test_lvs_failback.py).

Two directors A and B, a client and another client on the front LAN, two real servers on
the back LAN, a sync LAN; the configuration both directors run (a sync group of the
client-side and the gateway VIP, NAT services on ports 80 and 9000, ``[ipvs.sync]`` on
sync0), and the helpers that read the kernel's connection table.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from .lvslab import AgentProcess, Answer, Lab, request, run, socket_in

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
