"""Anycast directors agree on the real server, and a connection moved between them goes on:
three ``hadirector run`` directors with the ``mh`` (Maglev) scheduler and connection sync
among all (``[ipvs.sync] both = true``), inside the VM (the host kernel has no IPVS).

Topology (namespaces of this module, documentation addresses only; the bridge lives in a
switch namespace)::

    client 198.51.100.2 ─┐
    d1 .11  d2 .12  d3 .13 ─── LAN bridge ─── rs1 .21  rs2 .22  rs3 .23
    anycast address 203.0.113.53 on lo of every director and (DR) every real server

Each director's file lists the same three real servers in a different order; the agent
adds destinations in one sorted order, so every director's kernel builds the same Maglev
table. The client sends UDP from 24 source ports (``mh-port``: the port is hashed too)
to the anycast address through each director in turn (its route to the address points
to that director, as an ECMP router's choice would); each real server answers with its
name, straight to the client (direct routing). Every flow must reach the same real server
whichever director carried it, and the flows must spread over more than one server.

Then a TCP connection (an echo) is opened through d1; once the other directors' kernels
hold it (sync: each director runs a master and a backup daemon), the client's route moves
to d2, then d3 (what a withdrawal does at an ECMP router), and the same connection goes on
echoing from the same real server. Without sync it could not: a director that never saw
the SYN drops the connection's packets (IPVS schedules TCP on a SYN only).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lvslab import AgentProcess, Lab, agent, socket_in

pytestmark = pytest.mark.vm

START_TIMEOUT_S = 150.0
VIP = "203.0.113.53"
PORT = 5353
TCP_PORT = 7000
CLIENT_TCP_PORT = 42000
CLIENT = "198.51.100.2"
DIRECTORS = {"d1": "198.51.100.11", "d2": "198.51.100.12", "d3": "198.51.100.13"}
SERVERS = {"rs1": "198.51.100.21", "rs2": "198.51.100.22", "rs3": "198.51.100.23"}
FLOW_PORTS = range(41000, 41024)

CONFIG = """
[global]
router_id = "{name}"
control_socket = "{dir}/ctl.sock"
state_dir = "{dir}"

[[virtual_server]]
address = "{vip}:{port}"
protocol = "udp"
scheduler = "mh"
scheduler_flags = ["mh-port"]
forwarding = "dr"
anycast = true
real_server = [{servers}]

[[virtual_server]]
address = "{vip}:{tcp_port}"
protocol = "tcp"
scheduler = "mh"
forwarding = "dr"
anycast = true
real_server = [{tcp_servers}]

[ipvs.sync]
interface = "eth0"
both = true
"""


class UdpNamer:
    """A real server: answers every UDP datagram on VIP:PORT with its name."""

    def __init__(self, name: str, netns: str) -> None:
        self.name = name
        self.sock = socket_in(netns, kind=socket.SOCK_DGRAM)
        self.sock.bind((VIP, PORT))
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, name=f"udp-{name}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.sock.sendto(self.name.encode() + b" " + data, peer)

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


class TcpEcho:
    """A real server: echoes each line of each TCP connection on VIP:TCP_PORT, with its name."""

    def __init__(self, name: str, netns: str) -> None:
        self.name = name
        self.listener = socket_in(netns)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((VIP, TCP_PORT))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, name=f"tcp-{name}", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                conn.sendall(self.name.encode() + b" " + line)

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.listener.close()


def ask(client: str, sport: int) -> str:
    """One datagram from the client's ``sport`` to the anycast address; the server's name."""
    sock = socket_in(client, kind=socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((CLIENT, sport))
        sock.settimeout(5.0)
        for _attempt in range(3):  # the first datagram of a flow may wait for ARP
            sock.sendto(b"hello", (VIP, PORT))
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                continue
            return data.decode().split()[0]
        raise AssertionError(f"no answer to the flow from port {sport}")
    finally:
        sock.close()


Site = tuple[Lab, str, dict[str, str], dict[str, str]]


@pytest.fixture
def site() -> Iterator[Site]:
    with Lab() as lab:
        switch = lab.netns("sw")
        lab.bridge(switch, "br0")
        client = lab.netns("cl")
        lab.plug(switch, "br0", "p-cl", client, "eth0", f"{CLIENT}/24")
        directors = {}
        for name, address in DIRECTORS.items():
            ns = lab.netns(name)
            lab.plug(switch, "br0", f"p-{name}", ns, "eth0", f"{address}/24")
            lab.ip(ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            directors[name] = ns
        servers = {}
        for name, address in SERVERS.items():
            ns = lab.netns(name)
            # Direct routing: the address on lo, never answered for in ARP.
            lab.sysctl(
                ns,
                **{
                    "net.ipv4.conf.all.arp_ignore": 1,
                    "net.ipv4.conf.all.arp_announce": 2,
                    "net.ipv4.conf.all.rp_filter": 0,
                },
            )
            lab.plug(switch, "br0", f"p-{name}", ns, "eth0", f"{address}/24")
            lab.ip(ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            servers[name] = ns
        yield lab, client, directors, servers


def test_directors_agree_and_a_moved_connection_goes_on(site: Site, tmp_path: Path) -> None:
    lab, client, directors, servers = site
    namers: list[UdpNamer | TcpEcho] = [UdpNamer(name, ns) for name, ns in servers.items()]
    namers += [TcpEcho(name, ns) for name, ns in servers.items()]
    order = list(SERVERS.values())
    agents: list[AgentProcess] = []
    try:
        with (
            agent(directors["d1"], _config(tmp_path, "d1", order, 0)) as a1,
            agent(directors["d2"], _config(tmp_path, "d2", order, 1)) as a2,
            agent(directors["d3"], _config(tmp_path, "d3", order, 2)) as a3,
        ):
            agents = [a1, a2, a3]
            for process in agents:
                done = process.wait_for(
                    "ipvs.reconciled", START_TIMEOUT_S, where=lambda e: e.get("reason") == "start"
                )
                assert done["failed"] == 0, process.transcript()
            choices: dict[str, dict[int, str]] = {}
            for name, address in DIRECTORS.items():
                lab.ip(client, "route", "replace", f"{VIP}/32", "via", address)
                choices[name] = {sport: ask(client, sport) for sport in FLOW_PORTS}
            assert choices["d2"] == choices["d1"], choices
            assert choices["d3"] == choices["d1"], choices
            assert len(set(choices["d1"].values())) > 1, choices  # the flows spread
            for process in agents:
                assert not process.named("ipvs.op_failed"), process.transcript()
                process.wait_for("sync.master", START_TIMEOUT_S)
                process.wait_for("sync.backup", START_TIMEOUT_S)
            moved_connection_goes_on(lab, client, directors)
    finally:
        for namer in namers:
            namer.stop()


def moved_connection_goes_on(lab: Lab, client: str, directors: dict[str, str]) -> None:
    lab.ip(client, "route", "replace", f"{VIP}/32", "via", DIRECTORS["d1"])
    conn = socket_in(client)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    conn.bind((CLIENT, CLIENT_TCP_PORT))
    conn.settimeout(10.0)
    conn.connect((VIP, TCP_PORT))
    lines = conn.makefile("rb")
    try:

        def echo(text: str) -> str:
            conn.sendall(text.encode() + b"\n")
            name, _, got = lines.readline().decode().partition(" ")
            assert got == text + "\n", (text, got)
            return name

        server = echo("through d1")
        flow = f"{CLIENT}:{CLIENT_TCP_PORT}"
        # Until both other directors' kernels hold the connection (the master daemon sends
        # on state changes and every few packets: keep the connection talking).
        deadline = time.monotonic() + 60.0
        while True:
            known = [
                d
                for d in ("d2", "d3")
                if flow in lab.exec(directors[d], "ipvsadm", "-Lnc", check=False)
            ]
            if len(known) == 2:
                break
            assert time.monotonic() < deadline, f"connection not synced to {known}"
            assert echo("waiting for sync") == server
            time.sleep(0.2)
        for name in ("d2", "d3"):
            lab.ip(client, "route", "replace", f"{VIP}/32", "via", DIRECTORS[name])
            assert echo(f"through {name}") == server
    finally:
        lines.close()
        conn.close()


def _config(tmp_path: Path, name: str, servers: list[str], rotate: int) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    listed = servers[rotate:] + servers[:rotate]
    if rotate == 1:
        listed.reverse()
    text = CONFIG.format(
        name=name,
        dir=directory,
        vip=VIP,
        port=PORT,
        servers=", ".join(f'{{ address = "{a}:{PORT}" }}' for a in listed),
        tcp_port=TCP_PORT,
        tcp_servers=", ".join(f'{{ address = "{a}:{TCP_PORT}" }}' for a in listed),
    )
    path = directory / "hadirector.toml"
    path.write_text(text)
    return path
