"""Real traffic through the IPVS table the agent programs, inside the VM.

Topology (all namespaces of this module, documentation addresses only)::

    client 203.0.113.2 ── 203.0.113.1 router 198.51.100.254 ── LAN bridge (in the router)
                                    route 192.0.2.0/24 via the director   │
        director 198.51.100.1 (VIPs 192.0.2.10-16 on lo, runs hadirector, ─┤
            sends no ICMP redirects: one-armed NAT)                        │
        rs1 198.51.100.11, rs2 .12: default via the director (NAT replies),├─
            replies from a VIP (DR, TUN) via the router (policy rule),     │
            DR VIP on lo (arp_ignore=1, arp_announce=2), TUN VIP on tunl0  │
            (ipip, rp_filter off)                                          │
        rs3 198.51.100.13, rs4 .14: no route beyond the LAN (FULLNAT) ─────┘

The real servers are threads of this process serving sockets created in their namespaces;
each answers ``<name> <peer address> <port>``, so every answer says who served it and whom
it saw. Each request has its own client source port, so none meets an earlier request's
IPVS entry and the counts below are exact where the scheduler is deterministic.

One agent serves every scenario (NAT wrr/wlc, DR, TUN, FULLNAT, PCC, PFMC): Python start-up
is slow under emulation. Requests are bounded in number and each in time (5 s).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .lvslab import (
    AgentProcess,
    Answer,
    Lab,
    RealServer,
    agent,
    in_netns,
    request,
    routed_lan,
    run,
)

pytestmark = pytest.mark.vm

CLIENT = "203.0.113.2"
DIRECTOR = "198.51.100.1"
ROUTER_LAN = "198.51.100.254"
RS_ADDRESSES = {
    "rs1": "198.51.100.11",
    "rs2": "198.51.100.12",
    "rs3": "198.51.100.13",
    "rs4": "198.51.100.14",
}
VIP_WRR, VIP_WLC, VIP_DR, VIP_TUN, VIP_FULLNAT, VIP_PCC, VIP_PFMC = (
    f"192.0.2.{n}" for n in range(10, 17)
)
FWMARK = 15

METRICS = "127.0.0.1:9650"

CONFIG = f"""
[global]
metrics_listen = "{METRICS}"

[[virtual_server]]
address = "{VIP_WRR}:80"
scheduler = "wrr"
forwarding = "nat"
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  weight = 1
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
  weight = 3

[[virtual_server]]
address = "{VIP_WLC}:80"
scheduler = "wlc"
forwarding = "nat"
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  weight = 1
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
  weight = 3

[[virtual_server]]
address = "{VIP_DR}:80"
scheduler = "rr"
forwarding = "dr"
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"

[[virtual_server]]
address = "{VIP_TUN}:80"
scheduler = "rr"
forwarding = "tun"
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"

[[virtual_server]]
address = "{VIP_FULLNAT}:80"
scheduler = "rr"
forwarding = "fullnat"
fullnat_source = "{DIRECTOR}"
  [[virtual_server.real_server]]
  address = "198.51.100.13:80"
  [[virtual_server.real_server]]
  address = "198.51.100.14:80"

[[virtual_server]]
address = "{VIP_PCC}:80"
scheduler = "rr"
forwarding = "nat"
persistence_timeout = 300
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"

[[virtual_server]]
fwmark = {FWMARK}
scheduler = "rr"
forwarding = "nat"
persistence_timeout = 300
match = {{ address = "{VIP_PFMC}", protocol = "tcp", ports = [80, 443] }}
  [[virtual_server.real_server]]
  address = "198.51.100.11"
  [[virtual_server.real_server]]
  address = "198.51.100.12"
"""


@dataclass
class Lvs:
    lab: Lab
    client: str
    director: str
    agent: AgentProcess
    servers: dict[str, RealServer]
    ports: Iterator[int]

    def get(self, vip: str, port: int = 80) -> Answer:
        return request(self.client, vip, port, source_port=next(self.ports))

    def served(self, name: str) -> set[tuple[str, int]]:
        return set(self.servers[name].seen())


def build(lab: Lab) -> tuple[str, str, dict[str, str]]:
    """The namespaces and links of the module docstring; (client, director, rs namespaces)."""
    client, _router, director, real = routed_lan(
        lab, client=CLIENT, router_lan=ROUTER_LAN, director=DIRECTOR, servers=RS_ADDRESSES
    )
    for vip in (VIP_WRR, VIP_WLC, VIP_DR, VIP_TUN, VIP_FULLNAT, VIP_PCC, VIP_PFMC):
        lab.ip(director, "addr", "add", f"{vip}/32", "dev", "lo")

    for name in RS_ADDRESSES:
        ns = real[name]
        if name in ("rs3", "rs4"):
            continue  # FULLNAT servers: the LAN and nothing else
        # NAT replies go back through the director; replies from a VIP (DR, TUN) through
        # the router, as a real LVS-DR site would route them.
        lab.ip(ns, "route", "add", "default", "via", DIRECTOR)
        lab.ip(ns, "route", "add", "default", "via", ROUTER_LAN, "table", "100")
        lab.ip(ns, "rule", "add", "from", "192.0.2.0/24", "table", "100")
        lab.sysctl(
            ns,
            **{
                "net.ipv4.conf.all.arp_ignore": 1,
                "net.ipv4.conf.all.arp_announce": 2,
                "net.ipv4.conf.eth0.arp_ignore": 1,
                "net.ipv4.conf.eth0.arp_announce": 2,
            },
        )
        lab.ip(ns, "addr", "add", f"{VIP_DR}/32", "dev", "lo")
        lab.ip(ns, "link", "set", "tunl0", "up")
        lab.ip(ns, "addr", "add", f"{VIP_TUN}/32", "dev", "tunl0")
        lab.sysctl(ns, **{"net.ipv4.conf.tunl0.rp_filter": 0})
    return client, director, real


@pytest.fixture(scope="module")
def lvs(ipvs_modules: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lvs]:
    run("modprobe", "-a", "ipip", "bridge", "veth")
    config = Path(tmp_path_factory.mktemp("lvs")) / "director.toml"
    config.write_text(CONFIG)
    with Lab() as lab:
        client, director, real = build(lab)
        servers = {
            name: RealServer(name, ns, (80, 443, 8080) if name in ("rs1", "rs2") else (80,))
            for name, ns in real.items()
        }
        try:
            with agent(director, config) as process:
                done = process.wait_for(
                    "ipvs.reconciled", 120.0, where=lambda e: e.get("reason") == "start"
                )
                assert done["services"] == 7 and done["failed"] == 0, process.transcript()
                complaints = ("ipvs.op_failed", "ipvs.nft_failed", "ipvs.sysctl_failed")
                assert not process.named(*complaints), process.transcript()
                yield Lvs(lab, client, director, process, servers, itertools.count(20000))
        finally:
            for server in servers.values():
                server.stop()


def tally(answers: list[Answer]) -> Counter[str]:
    return Counter(answer.server for answer in answers)


def test_nat_wrr_splits_exactly_by_weight(lvs: Lvs) -> None:
    answers = [lvs.get(VIP_WRR) for _ in range(200)]
    # wrr is deterministic: 1:3 repeats every 4 picks, so 200 picks split 50:150.
    assert tally(answers) == {"rs1": 50, "rs2": 150}
    # NAT: the servers saw the client itself, on the translated port
    assert {(a.peer, a.port) for a in answers} == {(CLIENT, 8080)}


def test_nat_wlc_splits_about_by_weight(lvs: Lvs) -> None:
    answers = [lvs.get(VIP_WLC) for _ in range(200)]
    counts = tally(answers)
    print(f"wlc 1:3 over 200 requests: {dict(counts)}")
    assert set(counts) == {"rs1", "rs2"}
    # wlc weighs finished (inactive) connections: close to 1:3, not exact.
    assert 2.2 <= counts["rs2"] / counts["rs1"] <= 4.5, counts


def test_dr_servers_answer_from_the_vip_on_lo(lvs: Lvs) -> None:
    answers = [lvs.get(VIP_DR) for _ in range(10)]
    assert tally(answers) == {"rs1": 5, "rs2": 5}  # rr alternates
    # DR keeps the client's address and the service port: the server answered from the VIP
    assert {(a.peer, a.port) for a in answers} == {(CLIENT, 80)}


def test_tun_servers_decapsulate_ipip(lvs: Lvs) -> None:
    before = {name: _tunl0_rx_packets(lvs, name) for name in ("rs1", "rs2")}
    answers = [lvs.get(VIP_TUN) for _ in range(10)]
    assert tally(answers) == {"rs1": 5, "rs2": 5}
    assert {(a.peer, a.port) for a in answers} == {(CLIENT, 80)}
    # the requests really came in through the ipip device
    for name in ("rs1", "rs2"):
        assert _tunl0_rx_packets(lvs, name) > before[name]


def test_fullnat_servers_see_the_director_and_need_no_route_back(lvs: Lvs) -> None:
    for name in ("rs3", "rs4"):
        routes = lvs.lab.ip(lvs.servers[name].netns, "route", "show")
        assert "default" not in routes and "203.0.113" not in routes
    answers = [lvs.get(VIP_FULLNAT) for _ in range(10)]
    assert tally(answers) == {"rs3": 5, "rs4": 5}
    assert {(a.peer, a.port) for a in answers} == {(DIRECTOR, 80)}
    assert lvs.served("rs3") | lvs.served("rs4") == {(DIRECTOR, 80)}


def test_pcc_keeps_a_client_on_one_server(lvs: Lvs) -> None:
    answers = [lvs.get(VIP_PCC) for _ in range(20)]
    # rr alone would alternate (see the DR test); persistence pins this client
    assert len(tally(answers)) == 1, tally(answers)
    [(server, conns)] = _persistence_templates(lvs, f"{VIP_PCC}:80")
    assert server == f"{RS_ADDRESSES[answers[0].server]}:8080" and conns == 1


def test_pfmc_keeps_both_ports_of_a_client_on_one_server(lvs: Lvs) -> None:
    answers = []
    for _ in range(5):
        answers.append(lvs.get(VIP_PFMC, 80))
        answers.append(lvs.get(VIP_PFMC, 443))
    # both ports were marked into the one fwmark service and stayed with one server
    assert len(tally(answers)) == 1, answers
    assert Counter(a.port for a in answers) == {80: 5, 443: 5}
    assert {a.peer for a in answers} == {CLIENT}
    # one persistence template (client, mark) holds them together
    [(server, conns)] = _persistence_templates(lvs, str(FWMARK))
    assert server == f"{RS_ADDRESSES[answers[0].server]}:0" and conns == 1


def _tunl0_rx_packets(lvs: Lvs, name: str) -> int:
    text = lvs.lab.exec(
        lvs.servers[name].netns, "cat", "/sys/class/net/tunl0/statistics/rx_packets"
    )
    return int(text)


def _persistence_templates(lvs: Lvs, service: str) -> list[tuple[str, int]]:
    """(server, count) of persistence templates (``ipvsadm -L -n --persistent-conn``)."""
    found: list[tuple[str, int]] = []
    inside = False
    for line in lvs.lab.exec(lvs.director, "ipvsadm", "-L", "-n", "--persistent-conn").splitlines():
        words = line.split()
        if words and words[0] in ("TCP", "UDP", "SCTP", "FWM"):
            inside = words[1] == service
        elif inside and len(words) >= 4 and words[0] == "->" and words[3].isdigit():
            # -> address:port  Weight  PersistConn  ActiveConn  InActConn
            found.append((words[1], int(words[3])))
    return [(server, count) for server, count in found if count > 0]


FETCH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
"""


def traffic(lvs: Lvs) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The director's IPVS traffic samples, read from its metrics endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    page = in_netns(lvs.director, sys.executable, "-c", FETCH, f"http://{METRICS}/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(page)
        for s in fam.samples
        if s.name.startswith(("hadirector_ipvs_service_", "hadirector_ipvs_dest_"))
    }


def ipvsadm_stats(lvs: Lvs, vip: str) -> dict[str, tuple[int, ...]]:
    """``ipvsadm -Ln --stats --exact`` of one TCP service, the referee: the service's and
    each destination's (connections, packets in, packets out, bytes in, bytes out)."""
    out = in_netns(lvs.director, "ipvsadm", "-Ln", "--stats", "--exact", "-t", f"{vip}:80")
    stats: dict[str, tuple[int, ...]] = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["TCP"]:
            stats["service"] = tuple(int(x) for x in parts[2:7])
        elif parts[:1] == ["->"] and parts[1][0].isdigit():
            stats[parts[1]] = tuple(int(x) for x in parts[2:7])
    return stats


def settled_stats(lvs: Lvs, vip: str) -> dict[str, tuple[int, ...]]:
    """ipvsadm's counters once two reads 3 s apart agree: the kernel folds its per-CPU
    counters into what it reports every 2 s, so a read just after traffic can lag."""
    deadline = time.monotonic() + 60  # a hang guard
    last = ipvsadm_stats(lvs, vip)
    while time.monotonic() < deadline:
        time.sleep(3)
        now = ipvsadm_stats(lvs, vip)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the counters of {vip} never settled: {last}")


def test_metrics_count_a_services_traffic_as_the_kernel_does(lvs: Lvs) -> None:
    """40 requests to the wrr service (1:3) add exactly 40 connections to the kernel's
    counters (ipvsadm, the referee), 10 and 30 per server; the agent's metrics (read at
    its next reconcile, every 10 s) then equal ipvsadm's for the service and each server.
    Every IPVS traffic metric the dashboard names is there."""
    from tests import monitoring

    svc = ("service", f"tcp {VIP_WRR}:80")
    rs1, rs2 = "198.51.100.11:8080", "198.51.100.12:8080"
    before = settled_stats(lvs, VIP_WRR)
    answers = [lvs.get(VIP_WRR) for _ in range(40)]
    assert tally(answers) == {"rs1": 10, "rs2": 30}
    kernel = settled_stats(lvs, VIP_WRR)
    assert kernel["service"][0] - before["service"][0] == 40
    assert (kernel[rs1][0] - before[rs1][0], kernel[rs2][0] - before[rs2][0]) == (10, 30)

    def agent_view(read: dict[Any, float]) -> dict[str, tuple[int, ...]]:
        def five(prefix: str, labels: tuple[tuple[str, str], ...]) -> tuple[int, ...]:
            def one(name: str, direction: str | None) -> int:
                extra = (("direction", direction),) if direction else ()
                return int(read.get((f"{prefix}_{name}_total", tuple(sorted(labels + extra))), -1))

            return (
                one("connections", None),
                one("packets", "in"),
                one("packets", "out"),
                one("bytes", "in"),
                one("bytes", "out"),
            )

        view = {"service": five("hadirector_ipvs_service", (svc,))}
        for server in (rs1, rs2):
            view[server] = five("hadirector_ipvs_dest", (svc, ("server", server)))
        return view

    deadline = time.monotonic() + 120  # a hang guard: the agent reads at each reconcile
    while agent_view(read := traffic(lvs)) != kernel and time.monotonic() < deadline:
        time.sleep(0.5)
    assert agent_view(read) == kernel
    names = {name for name, _ in read}
    wanted = {
        n for n in monitoring.used_metric_names() if n.startswith(monitoring.IPVS_TRAFFIC_PREFIXES)
    }
    assert wanted and wanted <= names
