"""A sorry server on a FULLNAT service, and an IPv6 ``virtual_server_group`` range, on the
real kernel inside the VM; one agent.

Topology (namespaces of this module, documentation addresses only)::

    client 203.0.113.2 ── 203.0.113.1 router 198.51.100.254 ── LAN bridge (in the router)
                                    route 192.0.2.0/24 via the director   │
        director 198.51.100.1, 2001:db8:51::1 (VIP 192.0.2.20 on lo) ─────┤
        rs1 .11 (2001:db8:51::11), sorry .99: TCP on 8080, no route off the LAN ┘

- Service F (192.0.2.20:80, ``forwarding = "fullnat"``, source 198.51.100.1): rs1, and a
  sorry server on the service's forwarding. Neither server has a route back to the
  client: only the source NAT to the director makes their answers return, so an answer
  from the sorry server proves its SNAT rule.
- Group ``v6``: ``[2001:db8:20::a-c]:80``, one TCP-checked IPv6 real server: three IPv6
  services in IPVS with the server's weight.

rs1 stops: F loses quorum, the sorry server answers (seeing the director's address);
rs1 comes back: rs1 answers again and the sorry server is deleted.

And keepalived 2.2.7's own checker process programs an IPv6 group range (in a namespace of
its own) as the table the import of its file describes.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hadirector.config.load import load_text
from hadirector.ipvs import model as m
from hadirector.ipvs.importer import parse_rules
from hadirector.ipvs.save import format_table
from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings

from .lvslab import (
    AgentProcess,
    Lab,
    RealServer,
    agent,
    keepalived_table,
    request,
    routed_lan,
    run,
    socket_in,
    wait_ipvs_weights,
)

pytestmark = pytest.mark.vm

CLIENT = "203.0.113.2"
DIRECTOR = "198.51.100.1"
ROUTER_LAN = "198.51.100.254"
RS_ADDRESSES = {"rs1": "198.51.100.11", "sorry": "198.51.100.99"}
VIP = "192.0.2.20"
STEP_TIMEOUT_S = 30.0

CONFIG = """
[global]
control_socket = "{out}/control.sock"
state_dir = "{out}/state"

[[virtual_server]]
address = "192.0.2.20:80"
scheduler = "rr"
forwarding = "fullnat"
fullnat_source = "198.51.100.1"
sorry_server = {{ address = "198.51.100.99:8080" }}
check = {{ type = "tcp", interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"

[[virtual_server_group]]
name = "v6"
addresses = ["[2001:db8:20::a-c]:80"]

[[virtual_server]]
group = "v6"
scheduler = "rr"
forwarding = "nat"
check = {{ type = "tcp", interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }}
  [[virtual_server.real_server]]
  address = "[2001:db8:51::11]:8080"
  weight = 4
"""
F = f"{VIP}:80"
RS1, SORRY = "198.51.100.11:8080", "198.51.100.99:8080"
V6 = {f"[2001:db8:20::{n}]:80": {"[2001:db8:51::11]:8080": 4} for n in ("a", "b", "c")}
Table = dict[str, dict[str, int]]


def wait_weights(lab: Lab, director: str, process: AgentProcess, want: Table) -> None:
    wait_ipvs_weights(lab, director, process, want, STEP_TIMEOUT_S)


@pytest.fixture(scope="module")
def site(
    ipvs_modules: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Lab, str, str, dict[str, str], dict[str, RealServer], AgentProcess]]:
    run("modprobe", "-a", "bridge", "veth", "nf_tables", "nf_nat")
    out = Path(tmp_path_factory.mktemp("fullnat6"))
    config = out / "director.toml"
    config.write_text(CONFIG.format(out=out))
    with Lab() as lab:
        client, _router, director, real = routed_lan(
            lab, client=CLIENT, router_lan=ROUTER_LAN, director=DIRECTOR, servers=RS_ADDRESSES
        )
        lab.ip(director, "addr", "add", f"{VIP}/32", "dev", "lo")
        lab.ip(director, "addr", "add", "2001:db8:51::1/64", "dev", "eth0", "nodad")
        lab.ip(real["rs1"], "addr", "add", "2001:db8:51::11/64", "dev", "eth0", "nodad")
        servers = {name: RealServer(name, ns, (8080,)) for name, ns in real.items()}
        # The IPv6 server only needs to accept the TCP checks' connections (the kernel
        # completes them on a listening socket).
        v6 = socket_in(real["rs1"], socket.AF_INET6)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("2001:db8:51::11", 8080))
        v6.listen(4096)
        try:
            with agent(director, config) as process:
                done = process.wait_for(
                    "ipvs.reconciled", 120.0, where=lambda e: e.get("reason") == "start"
                )
                assert done["services"] == 4 and done["failed"] == 0, process.transcript()
                yield lab, client, director, real, servers, process
        finally:
            v6.close()
            for server in servers.values():
                server.stop()


def test_a_fullnat_sorry_server_answers_through_source_nat_and_the_v6_group_is_in_ipvs(
    site: tuple[Lab, str, str, dict[str, str], dict[str, RealServer], AgentProcess],
) -> None:
    lab, client, director, real, servers, process = site
    ports = itertools.count(25000)
    # The IPv6 group: one service per address of the range, the server's weight in each.
    wait_weights(lab, director, process, {F: {RS1: 1}, **V6})

    answer = request(client, VIP, 80, source_port=next(ports))
    assert (answer.server, answer.peer) == ("rs1", DIRECTOR), answer  # SNAT: no route back

    # rs1 stops: quorum lost, the sorry server (masquerade + SNAT) answers.
    mark = process.mark()
    servers["rs1"].stop()
    lost = process.wait_for(
        "pool.quorum_lost",
        STEP_TIMEOUT_S,
        since=mark,
        where=lambda e: e.get("service") == f"tcp {F}",
    )
    assert lost["sorry_server"] == SORRY, lost
    wait_weights(lab, director, process, {F: {RS1: 0, SORRY: 1}, **V6})
    for _ in range(3):
        answer = request(client, VIP, 80, source_port=next(ports))
        assert (answer.server, answer.peer) == ("sorry", DIRECTOR), answer
    ruleset = lab.exec(director, "nft", "list", "table", "inet", "hadirector")
    assert "ip daddr 198.51.100.99 tcp dport 8080" in ruleset, ruleset

    # rs1 is back: it answers again, the sorry server is deleted.
    mark = process.mark()
    servers["rs1"] = RealServer("rs1", real["rs1"], (8080,))
    process.wait_for("pool.quorum_gained", STEP_TIMEOUT_S, since=mark)
    wait_weights(lab, director, process, {F: {RS1: 1}, **V6})
    answer = request(client, VIP, 80, source_port=next(ports))
    assert (answer.server, answer.peer) == ("rs1", DIRECTOR), answer
    assert not process.named("ipvs.op_failed", "ipvs.nft_failed"), process.transcript()
    # The IPv6 server's checks passed throughout (one check for the three services).
    assert not [e for e in process.named("check.down") if "2001:db8" in e["server"]]
    assert process.named("check.configured")[0]["checks"] == 2, process.transcript()


KEEPALIVED_V6_GROUP = """
virtual_server_group G6 {
    2001:db8:20::e-10 80
    2001:db8:20::1:fffe-ffff 443
}
virtual_server group G6 {
    lvs_sched rr
    lvs_method NAT
    protocol TCP
    real_server 2001:db8:51::11 8080 {
        weight 2
    }
}
"""


def test_keepalived_reads_an_ipv6_range_as_the_import_does(
    ipvs_modules: None, tmp_path: Path
) -> None:
    """keepalived 2.2.7 itself programs an IPv6 group range (its last group in
    hexadecimal: e-10 is three addresses, ::e to ::10) as the table the imported TOML describes."""
    conf = tmp_path / "keepalived.conf"
    conf.write_text(KEEPALIVED_V6_GROUP)
    nodes = kaconf.parse(
        str(conf), kaconf.TextSource({str(conf): KEEPALIVED_V6_GROUP}), "high", Findings()
    )
    config = load_text(convert(nodes, Findings(), str(conf)))
    expected = m.desired_from_config(config.virtual_servers)
    assert len(expected) == 5, format_table(expected)  # ::e, ::f, ::10, ::1:fffe, ::1:ffff
    saved, log = keepalived_table(
        conf, tmp_path, lambda table: m.tables_equal(parse_rules(table), expected)
    )
    assert m.tables_equal(parse_rules(saved), expected), (
        f"keepalived:\n{saved}\nimport:\n{format_table(expected)}\nlog:\n{log}"
    )
