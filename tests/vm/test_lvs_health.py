"""Health checks driving the real IPVS table, inside the VM: one agent, two NAT services.

Topology (namespaces of this module, documentation addresses only)::

    client 203.0.113.2 ── 203.0.113.1 router 198.51.100.254 ── LAN bridge (in the router)
                                    route 192.0.2.0/24 via the director   │
        director 198.51.100.1 (VIPs 192.0.2.20, .21 on lo, hadirector) ───┤
        rs1 198.51.100.11, rs2 .12: HTTP on 8080, default via the director ┘

Both services balance rs1 and rs2 (rr, NAT) and check them over HTTP every 0.5 s; the
first quiesces a failed server (``health_action = "quiesce"``), the second removes it.
Stopping rs1's server must show, in ``ipvsadm -Ln``, weight 0 in the first service and no
rs1 in the second, and every client request must go to rs2; starting it again must bring
back the configured weights and traffic to rs1. A reload that changes one service's check
restarts only that service's checks (SIGHUP, and back). One agent start (Python start-up
is slow under the VM's emulation); every wait is bounded.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .lvslab import AgentProcess, Lab, RealServer, agent, ipvs_weights, request, routed_lan, run

pytestmark = pytest.mark.vm

CLIENT = "203.0.113.2"
DIRECTOR = "198.51.100.1"
ROUTER_LAN = "198.51.100.254"
RS_ADDRESSES = {"rs1": "198.51.100.11", "rs2": "198.51.100.12"}
VIP_QUIESCE, VIP_REMOVE = "192.0.2.20", "192.0.2.21"
STEP_TIMEOUT_S = 30.0

SERVICE = """
[[virtual_server]]
address = "{vip}:80"
scheduler = "rr"
forwarding = "nat"
health_action = "{action}"
check = {{ type = "http", interval = 0.5, timeout = 0.4, rise = 2, fall = 2 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  weight = 3
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
  weight = 2
"""
CONFIG = SERVICE.format(vip=VIP_QUIESCE, action="quiesce") + SERVICE.format(
    vip=VIP_REMOVE, action="remove"
)
# The same, with the first service checking a port nothing listens on.
CONFIG_BAD_PORT = CONFIG.replace(
    'check = { type = "http",', 'check = { type = "tcp", port = 8081,', 1
)


@dataclass
class Lvs:
    lab: Lab
    client: str
    director: str
    real: dict[str, str]
    agent: AgentProcess
    servers: dict[str, RealServer]
    ports: Iterator[int]
    config: Path

    def answers(self, vip: str, count: int) -> Counter[str]:
        return Counter(
            request(self.client, vip, 80, source_port=next(self.ports)).server for _ in range(count)
        )

    def weights(self) -> dict[str, dict[str, int]]:
        """``ipvsadm -Ln``: service -> {real server: weight}."""
        return ipvs_weights(self.lab, self.director)

    def wait_weights(self, want: Callable[[dict[str, dict[str, int]]], bool]) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            table = self.weights()
            if want(table):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"ipvsadm -Ln: {table}\n{self.agent.transcript()}")
            time.sleep(0.2)


def build(lab: Lab) -> tuple[str, str, dict[str, str]]:
    client, _router, director, real = routed_lan(
        lab, client=CLIENT, router_lan=ROUTER_LAN, director=DIRECTOR, servers=RS_ADDRESSES
    )
    for vip in (VIP_QUIESCE, VIP_REMOVE):
        lab.ip(director, "addr", "add", f"{vip}/32", "dev", "lo")
    for name in RS_ADDRESSES:
        lab.ip(real[name], "route", "add", "default", "via", DIRECTOR)
    return client, director, real


@pytest.fixture(scope="module")
def lvs(ipvs_modules: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lvs]:
    run("modprobe", "-a", "bridge", "veth")
    config = Path(tmp_path_factory.mktemp("health")) / "director.toml"
    config.write_text(CONFIG)
    with Lab() as lab:
        client, director, real = build(lab)
        servers = {name: RealServer(name, ns, (8080,)) for name, ns in real.items()}
        try:
            with agent(director, config) as process:
                done = process.wait_for(
                    "ipvs.reconciled", 120.0, where=lambda e: e.get("reason") == "start"
                )
                assert done["services"] == 2 and done["failed"] == 0, process.transcript()
                assert done["path"] == "full" and done["dumps"] > 0, done  # the table was read
                yield Lvs(
                    lab, client, director, real, process, servers, itertools.count(21000), config
                )
        finally:
            for server in servers.values():
                server.stop()


Q, R = f"{VIP_QUIESCE}:80", f"{VIP_REMOVE}:80"
RS1, RS2 = "198.51.100.11:8080", "198.51.100.12:8080"
CONFIGURED = {Q: {RS1: 3, RS2: 2}, R: {RS1: 3, RS2: 2}}


def about(service: str, server: str) -> Callable[[dict[str, Any]], bool]:
    """Matches check events of one real server in one service."""
    return lambda e: e.get("service") == f"tcp {service}" and e.get("server") == server


def health_edits(lvs: Lvs, since: int, written: int) -> list[dict[str, Any]]:
    """The agent's ``ipvs.reconciled`` records of health changes since ``since``, once
    they have written ``written`` operations in all (bounded wait)."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        records = [
            e for e in lvs.agent.named("ipvs.reconciled", since=since) if e["reason"] == "health"
        ]
        if sum(e["written"] for e in records) >= written:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{records}\n{lvs.agent.transcript(since)}")
        time.sleep(0.2)


def assert_direct_edits(records: list[dict[str, Any]], written: int) -> None:
    """Each health change was written as direct edits: no dump of the table, one generic
    netlink request per operation, ``written`` operations in all."""
    assert records and all(e["path"] == "edit" for e in records), records
    assert all(e["dumps"] == 0 and e["requests"] == e["written"] for e in records), records
    assert sum(e["written"] for e in records) == written, records


def test_a_failed_server_is_quiesced_or_removed_and_comes_back(lvs: Lvs) -> None:
    # Servers start up (no check has failed): the configured weights, traffic to both.
    lvs.wait_weights(lambda t: t == CONFIGURED)
    assert set(lvs.answers(VIP_QUIESCE, 10)) == {"rs1", "rs2"}
    assert not lvs.agent.named("check.down")

    # rs1's server stops: two failed checks (0.5 s apart) take it out of both services.
    mark = lvs.agent.mark()
    lvs.servers["rs1"].stop()
    for vip in (Q, R):
        down = lvs.agent.wait_for(
            "check.down",
            STEP_TIMEOUT_S,
            since=mark,
            where=about(vip, RS1),
        )
        assert down["reason"] == "connect refused", down
    lvs.wait_weights(lambda t: t == {Q: {RS1: 0, RS2: 2}, R: {RS2: 2}})
    # Written as two direct edits (weight 0 in one service, the dest deleted in the
    # other), without reading the table.
    assert_direct_edits(health_edits(lvs, mark, 2), 2)
    assert lvs.answers(VIP_QUIESCE, 10) == {"rs2": 10}
    assert lvs.answers(VIP_REMOVE, 10) == {"rs2": 10}
    assert {e["server"] for e in lvs.agent.named("check.down", since=mark)} == {RS1}

    # rs1 is back: two good checks restore its weight in one service and re-add it in the
    # other; the scheduler sends it traffic again.
    mark = lvs.agent.mark()
    lvs.servers["rs1"] = RealServer("rs1", lvs.real["rs1"], (8080,))
    for vip in (Q, R):
        lvs.agent.wait_for(
            "check.up",
            STEP_TIMEOUT_S,
            since=mark,
            where=about(vip, RS1),
        )
    lvs.wait_weights(lambda t: t == CONFIGURED)
    assert_direct_edits(health_edits(lvs, mark, 2), 2)  # weight 3 again; the dest re-added
    assert set(lvs.answers(VIP_QUIESCE, 10)) == {"rs1", "rs2"}
    assert set(lvs.answers(VIP_REMOVE, 10)) == {"rs1", "rs2"}

    # A reload that changes one service's check restarts only that service's two checks:
    # both its servers go to weight 0, the other service is left alone.
    mark = lvs.agent.mark()
    lvs.config.write_text(CONFIG_BAD_PORT)
    lvs.agent.signal(signal.SIGHUP)
    configured = lvs.agent.wait_for("check.configured", STEP_TIMEOUT_S, since=mark)
    assert (configured["started"], configured["checks"]) == (2, 4), configured
    lvs.wait_weights(lambda t: t == {Q: {RS1: 0, RS2: 0}, R: {RS1: 3, RS2: 2}})
    # Logged before the weights were written, but read through the log pipe: waited for.
    for server in (RS1, RS2):
        lvs.agent.wait_for("check.down", STEP_TIMEOUT_S, since=mark, where=about(Q, server))
    downs = lvs.agent.named("check.down", since=mark)
    assert {(e["service"], e["reason"]) for e in downs} == {(f"tcp {Q}", "connect refused")}
    mark = lvs.agent.mark()
    lvs.config.write_text(CONFIG)
    lvs.agent.signal(signal.SIGHUP)
    lvs.wait_weights(lambda t: t == CONFIGURED)
    for server in (RS1, RS2):
        lvs.agent.wait_for("check.up", STEP_TIMEOUT_S, since=mark, where=about(Q, server))
    assert {e["service"] for e in lvs.agent.named("check.up", since=mark)} == {f"tcp {Q}"}

    # Health changes were reconciled as such, with nothing failing.
    assert not lvs.agent.named("ipvs.op_failed"), lvs.agent.transcript()
    assert lvs.agent.named("ipvs.reconciled") and any(
        e.get("reason") == "health" for e in lvs.agent.named("ipvs.reconciled")
    )
