"""A virtual_server_group on the real kernel, inside the VM: two VIPs share one pool and
one check per real server.

Topology (namespaces of this module, documentation addresses only)::

    client 203.0.113.2 ── 203.0.113.1 router 198.51.100.254 ── LAN bridge (in the router)
                                    route 192.0.2.0/24 via the director   │
        director 198.51.100.1 (VIPs 192.0.2.20, .21 on lo, hadirector) ───┤
        rs1 198.51.100.11, rs2 .12: HTTP on 8080, default via the director ┘

The group ``web`` holds 192.0.2.20-21:80; one ``[[virtual_server]]`` with ``group = "web"``
balances rs1 and rs2 (NAT, rr) and checks them over HTTP every 0.5 s. The kernel must show
two services with the same servers; the agent must run two checks (not four). When rs1's
server stops, one ``check.down`` takes it to weight 0 in both services; draining rs2 by
naming one service drains it in both; both come back. Then a reload makes the check a
dynamic-weight script whose exit status (read from a file) sets both servers' weight in
both services. One agent start; every wait bounded.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lvslab import (
    AgentProcess,
    Lab,
    RealServer,
    agent,
    control_request,
    request,
    routed_lan,
    run,
    wait_ipvs_weights,
)

pytestmark = pytest.mark.vm

CLIENT = "203.0.113.2"
DIRECTOR = "198.51.100.1"
ROUTER_LAN = "198.51.100.254"
RS_ADDRESSES = {"rs1": "198.51.100.11", "rs2": "198.51.100.12"}
VIPS = ("192.0.2.20", "192.0.2.21")
STEP_TIMEOUT_S = 30.0

CONFIG = """
[global]
control_socket = "{out}/control.sock"
state_dir = "{out}/state"

[[virtual_server_group]]
name = "web"
addresses = ["192.0.2.20-21:80"]

[[virtual_server]]
group = "web"
scheduler = "rr"
forwarding = "nat"
check = {{ type = "http", interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  weight = 3
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
  weight = 2
"""
A, B = (f"{vip}:80" for vip in VIPS)
RS1, RS2 = "198.51.100.11:8080", "198.51.100.12:8080"


def wait_weights(
    lab: Lab, director: str, process: AgentProcess, want: dict[str, dict[str, int]]
) -> None:
    wait_ipvs_weights(lab, director, process, want, STEP_TIMEOUT_S)


@pytest.fixture(scope="module")
def site(
    ipvs_modules: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Lab, str, str, dict[str, str], dict[str, RealServer], AgentProcess, Path]]:
    run("modprobe", "-a", "bridge", "veth")
    out = Path(tmp_path_factory.mktemp("groups"))
    config = out / "director.toml"
    config.write_text(CONFIG.format(out=out))
    with Lab() as lab:
        client, _router, director, real = routed_lan(
            lab, client=CLIENT, router_lan=ROUTER_LAN, director=DIRECTOR, servers=RS_ADDRESSES
        )
        for vip in VIPS:
            lab.ip(director, "addr", "add", f"{vip}/32", "dev", "lo")
        for name in RS_ADDRESSES:
            lab.ip(real[name], "route", "add", "default", "via", DIRECTOR)
        servers = {name: RealServer(name, ns, (8080,)) for name, ns in real.items()}
        try:
            with agent(director, config) as process:
                done = process.wait_for(
                    "ipvs.reconciled", 120.0, where=lambda e: e.get("reason") == "start"
                )
                assert done["services"] == 2 and done["failed"] == 0, process.transcript()
                yield lab, client, director, real, servers, process, out
        finally:
            for server in servers.values():
                server.stop()


def test_two_addresses_share_one_pool_and_one_check_per_server(
    site: tuple[Lab, str, str, dict[str, str], dict[str, RealServer], AgentProcess, Path],
) -> None:
    lab, client, director, real, servers, process, out = site
    ports = itertools.count(24000)

    def answers(vip: str, count: int) -> set[str]:
        return {request(client, vip, 80, source_port=next(ports)).server for _ in range(count)}

    both = {A: {RS1: 3, RS2: 2}, B: {RS1: 3, RS2: 2}}
    wait_weights(lab, director, process, both)
    configured = process.wait_for("check.configured", STEP_TIMEOUT_S)
    assert configured["checks"] == 2, configured  # one per real server, not per address
    assert answers(VIPS[0], 6) == {"rs1", "rs2"} and answers(VIPS[1], 6) == {"rs1", "rs2"}

    # rs1 stops: one check, one check.down, weight 0 in both services.
    mark = process.mark()
    servers["rs1"].stop()
    process.wait_for("check.down", STEP_TIMEOUT_S, since=mark)
    wait_weights(lab, director, process, {A: {RS1: 0, RS2: 2}, B: {RS1: 0, RS2: 2}})
    assert len(process.named("check.down", since=mark)) == 1, process.transcript(mark)
    assert answers(VIPS[0], 4) == {"rs2"} and answers(VIPS[1], 4) == {"rs2"}

    # Naming one service drains rs2 in both; undrain gives it back in both.
    reply = control_request(out / "control.sock", command="drain", service=f"tcp {B}", server=RS2)
    assert reply["ok"], reply
    wait_weights(lab, director, process, {A: {RS1: 0, RS2: 0}, B: {RS1: 0, RS2: 0}})
    reply = control_request(out / "control.sock", command="undrain", service=A, server=RS2)
    assert reply["ok"], reply
    wait_weights(lab, director, process, {A: {RS1: 0, RS2: 2}, B: {RS1: 0, RS2: 2}})

    # rs1 is back in both.
    mark = process.mark()
    servers["rs1"] = RealServer("rs1", real["rs1"], (8080,))
    process.wait_for("check.up", STEP_TIMEOUT_S, since=mark)
    wait_weights(lab, director, process, both)
    assert len(process.named("check.up", since=mark)) == 1
    assert not process.named("ipvs.op_failed"), process.transcript()


def test_a_dynamic_weight_script_sets_the_weight_in_every_member(
    site: tuple[Lab, str, str, dict[str, str], dict[str, RealServer], AgentProcess, Path],
) -> None:
    lab, _client, director, _real, _servers, process, out = site
    code = out / "code"
    code.write_text("7\n")
    config = out / "director.toml"
    original = config.read_text()
    dynamic = original.replace(
        'check = { type = "http", interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }',
        f'check = {{ type = "script", script = ["/bin/sh", "-c", "exit $(cat {code})"], '
        "dynamic_weight = true, interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }",
    )
    assert dynamic != original
    mark = process.mark()
    config.write_text(dynamic)
    process.signal(signal.SIGHUP)
    process.wait_for("config.reloaded", STEP_TIMEOUT_S, since=mark)
    # exit 7: up with weight 5, for both servers, in both services of the group.
    wait_weights(lab, director, process, {A: {RS1: 5, RS2: 5}, B: {RS1: 5, RS2: 5}})
    code.write_text("2\n")  # up, weight 0
    wait_weights(lab, director, process, {A: {RS1: 0, RS2: 0}, B: {RS1: 0, RS2: 0}})
    code.write_text("0\n")  # up, configured weights
    wait_weights(lab, director, process, {A: {RS1: 3, RS2: 2}, B: {RS1: 3, RS2: 2}})
    mark = process.mark()
    config.write_text(original)
    process.signal(signal.SIGHUP)
    process.wait_for("config.reloaded", STEP_TIMEOUT_S, since=mark)
    wait_weights(lab, director, process, {A: {RS1: 3, RS2: 2}, B: {RS1: 3, RS2: 2}})
    assert not process.named("ipvs.op_failed"), process.transcript()
