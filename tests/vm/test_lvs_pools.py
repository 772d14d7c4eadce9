"""Pools on the real kernel, inside the VM: quorum, the sorry server, the quorum commands,
per-server commands and ``track_quorum``; one agent, two NAT services.

Topology (namespaces of this module, documentation addresses only)::

    client 203.0.113.2 ── 203.0.113.1 router 198.51.100.254 ── LAN bridge (in the router)
                                    route 192.0.2.0/24 via the director   │
        director 198.51.100.1 (VIPs 192.0.2.20, .21 on lo, hadirector) ───┤
        rs1 .11, rs2 .12, sorry .99: TCP/HTTP on 8080, default via the director ┘

- Service Q (192.0.2.20:80, quiesce): rs1 and rs2 (weight 1 each), ``quorum = 2``, a sorry
  server, ``quorum_up``/``quorum_down`` commands; rs1 has ``notify_down``/``notify_up``.
- Service R (192.0.2.21:80, remove): the same servers, ``quorum = 1``, a sorry server
  with ``inhibit`` (kept at weight 0 while unused).
- A VRRP instance on the director's LAN with ``track_quorum = 0``: it is master while a
  pool has quorum, FAULT when none has.

Then the operator drains rs1 from R with ``hadirector drain`` (weight 0 although R removes
failed servers), a reload keeps it drained, ``hadirector undrain`` gives its weight back.

The servers stop and start one at a time; each step waits for the IPVS table that
``ipvsadm -Ln`` shows, the events, the commands' output files, and where the client's
requests land. One agent start (Python start-up is slow under the VM's emulation); every
wait is bounded.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .lvslab import (
    REPO,
    AgentProcess,
    Lab,
    RealServer,
    agent,
    control_status,
    ipvs_weights,
    request,
    routed_lan,
    run,
    wait_ipvs_weights,
)

pytestmark = pytest.mark.vm

CLIENT = "203.0.113.2"
DIRECTOR = "198.51.100.1"
ROUTER_LAN = "198.51.100.254"
RS_ADDRESSES = {"rs1": "198.51.100.11", "rs2": "198.51.100.12", "sorry": "198.51.100.99"}
VIP_Q, VIP_R = "192.0.2.20", "192.0.2.21"
STEP_TIMEOUT_S = 30.0

CONFIG = """
[global]
control_socket = "{out}/control.sock"
state_dir = "{out}/state"

[[vrrp_instance]]
name = "lan"
interface = "eth0"
vrid = 51
priority = 150
virtual_addresses = ["198.51.100.50/24"]
track_quorum = 0

[[virtual_server]]
address = "{vip_q}:80"
scheduler = "rr"
forwarding = "nat"
health_action = "quiesce"
quorum = 2
quorum_up = ["/bin/sh", "-c", "echo up >> {out}/quorum"]
quorum_down = ["/bin/sh", "-c", "echo down >> {out}/quorum"]
sorry_server = {{ address = "198.51.100.99:8080" }}
check = {{ type = "tcp", interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  notify_up = ["/bin/sh", "-c", "echo up >> {out}/rs1"]
  notify_down = ["/bin/sh", "-c", "echo down >> {out}/rs1"]
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"

[[virtual_server]]
address = "{vip_r}:80"
scheduler = "rr"
forwarding = "nat"
health_action = "remove"
sorry_server = {{ address = "198.51.100.99:8080", inhibit = true }}
check = {{ type = "tcp", interval = 0.5, timeout = 0.4, rise = 1, fall = 1 }}
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
"""

Q, R = f"{VIP_Q}:80", f"{VIP_R}:80"
RS1, RS2, SORRY = "198.51.100.11:8080", "198.51.100.12:8080", "198.51.100.99:8080"
Table = dict[str, dict[str, int]]


@dataclass
class Lvs:
    lab: Lab
    client: str
    director: str
    real: dict[str, str]
    agent: AgentProcess
    servers: dict[str, RealServer]
    ports: Iterator[int]
    out: Path

    def answers(self, vip: str, count: int) -> Counter[str]:
        return Counter(
            request(self.client, vip, 80, source_port=next(self.ports)).server for _ in range(count)
        )

    def weights(self) -> Table:
        """``ipvsadm -Ln``: service -> {real server: weight}."""
        return ipvs_weights(self.lab, self.director)

    def wait_weights(self, want: Table) -> None:
        wait_ipvs_weights(self.lab, self.director, self.agent, want, STEP_TIMEOUT_S)

    def wait_lines(self, name: str, want: list[str]) -> None:
        """Wait until the command output file ``name`` holds exactly ``want``."""
        path = self.out / name
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            lines = path.read_text().split() if path.exists() else []
            if lines == want:
                return
            if time.monotonic() > deadline or len(lines) > len(want):
                raise AssertionError(f"{name}: {lines}, wanted {want}\n{self.agent.transcript()}")
            time.sleep(0.1)

    def stop(self, name: str) -> None:
        self.servers[name].stop()

    def start(self, name: str) -> None:
        self.servers[name] = RealServer(name, self.real[name], (8080,))


def build(lab: Lab) -> tuple[str, str, dict[str, str]]:
    client, _router, director, real = routed_lan(
        lab, client=CLIENT, router_lan=ROUTER_LAN, director=DIRECTOR, servers=RS_ADDRESSES
    )
    for vip in (VIP_Q, VIP_R):
        lab.ip(director, "addr", "add", f"{vip}/32", "dev", "lo")
    for name in RS_ADDRESSES:
        lab.ip(real[name], "route", "add", "default", "via", DIRECTOR)
    return client, director, real


@pytest.fixture(scope="module")
def lvs(ipvs_modules: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lvs]:
    run("modprobe", "-a", "bridge", "veth")
    out = Path(tmp_path_factory.mktemp("pools"))
    config = out / "director.toml"
    config.write_text(CONFIG.format(vip_q=VIP_Q, vip_r=VIP_R, out=out))
    with Lab() as lab:
        client, director, real = build(lab)
        servers = {name: RealServer(name, ns, (8080,)) for name, ns in real.items()}
        try:
            with agent(director, config) as process:
                done = process.wait_for(
                    "ipvs.reconciled", 120.0, where=lambda e: e.get("reason") == "start"
                )
                assert done["services"] == 2 and done["failed"] == 0, process.transcript()
                yield Lvs(
                    lab, client, director, real, process, servers, itertools.count(23000), out
                )
        finally:
            for server in servers.values():
                server.stop()


def about(service: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("service") == f"tcp {service}"


def transition_to(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("new") == state


def test_sorry_server_quorum_commands_and_track_quorum(lvs: Lvs) -> None:
    agent_log = lvs.agent
    # Both servers up: both pools have quorum, R's sorry server waits at weight 0; the
    # instance becomes master (it is alone on its LAN).
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 1, RS2: 1, SORRY: 0}})
    agent_log.wait_for("vrrp.transition", 60.0, where=transition_to("MASTER"))
    assert set(lvs.answers(VIP_Q, 6)) == {"rs1", "rs2"}
    assert not agent_log.named("pool.quorum_lost")

    # rs1 stops: Q's live weight 1 < quorum 2: the sorry server replaces both real servers
    # (quiesced); R (quorum 1) just removes rs1. quorum_down and rs1's notify_down ran.
    mark = agent_log.mark()
    lvs.stop("rs1")
    lost = agent_log.wait_for("pool.quorum_lost", STEP_TIMEOUT_S, since=mark, where=about(Q))
    assert (lost["live_weight"], lost["quorum"], lost["threshold"]) == (1, 2, 2), lost
    assert lost["sorry_server"] == SORRY, lost
    lvs.wait_weights({Q: {RS1: 0, RS2: 0, SORRY: 1}, R: {RS2: 1, SORRY: 0}})
    assert lvs.answers(VIP_Q, 6) == {"sorry": 6}
    assert lvs.answers(VIP_R, 4) == {"rs2": 4}
    lvs.wait_lines("quorum", ["down"])
    lvs.wait_lines("rs1", ["down"])
    down = agent_log.wait_for(
        "pool.server_down", STEP_TIMEOUT_S, since=mark, where=lambda e: e.get("server") == RS1
    )
    # The reason is the probe's (refused, or reset when the listener closed mid-accept).
    assert down["cause"] == "check" and down["reason"].startswith("conn"), down

    # rs2 stops too: R loses quorum, its sorry server takes weight 1; no pool has quorum,
    # so the instance tracking it goes to FAULT.
    mark = agent_log.mark()
    lvs.stop("rs2")
    agent_log.wait_for("pool.quorum_lost", STEP_TIMEOUT_S, since=mark, where=about(R))
    lvs.wait_weights({Q: {RS1: 0, RS2: 0, SORRY: 1}, R: {SORRY: 1}})
    assert lvs.answers(VIP_R, 4) == {"sorry": 4}
    agent_log.wait_for("vrrp.transition", STEP_TIMEOUT_S, since=mark, where=transition_to("FAULT"))

    # rs1 is back: R regains quorum (sorry server back to 0), the instance leaves FAULT
    # and is master again; Q (live weight 1) still lacks it.
    mark = agent_log.mark()
    lvs.start("rs1")
    agent_log.wait_for("pool.quorum_gained", STEP_TIMEOUT_S, since=mark, where=about(R))
    lvs.wait_weights({Q: {RS1: 0, RS2: 0, SORRY: 1}, R: {RS1: 1, SORRY: 0}})
    assert lvs.answers(VIP_R, 4) == {"rs1": 4}
    assert lvs.answers(VIP_Q, 4) == {"sorry": 4}
    lvs.wait_lines("rs1", ["down", "up"])
    agent_log.wait_for("vrrp.transition", 60.0, since=mark, where=transition_to("MASTER"))

    # rs2 is back: Q regains quorum, its sorry server is deleted, quorum_up ran.
    mark = agent_log.mark()
    lvs.start("rs2")
    gained = agent_log.wait_for("pool.quorum_gained", STEP_TIMEOUT_S, since=mark, where=about(Q))
    assert (gained["live_weight"], gained["threshold"]) == (2, 2), gained
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 1, RS2: 1, SORRY: 0}})
    assert set(lvs.answers(VIP_Q, 6)) == {"rs1", "rs2"}
    lvs.wait_lines("quorum", ["down", "up"])

    assert not agent_log.named("ipvs.op_failed"), agent_log.transcript()
    assert not agent_log.named("notify.failed", "notify.timeout"), agent_log.transcript()


def cli(lvs: Lvs, *args: str) -> subprocess.CompletedProcess[str]:
    """``hadirector ARGS --socket ...`` in the director's namespace, as an operator runs it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [
            "ip", "netns", "exec", lvs.director, sys.executable, "-m", "hadirector",
            *args, "--socket", str(lvs.out / "control.sock"),
        ],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_drain_and_undrain_from_the_cli_survive_a_reload(lvs: Lvs) -> None:
    agent_log = lvs.agent
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 1, RS2: 1, SORRY: 0}})

    mark = agent_log.mark()
    done = cli(lvs, "drain", f"tcp {R}", RS1)
    assert (done.returncode, done.stdout) == (0, f"drained tcp {R} {RS1}\n"), done
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 0, RS2: 1, SORRY: 0}})
    assert lvs.answers(VIP_R, 4) == {"rs2": 4}
    event = agent_log.wait_for("pool.drain", STEP_TIMEOUT_S, since=mark)
    assert (event["service"], event["server"], event["saved"]) == (f"tcp {R}", RS1, True)
    status = control_status(lvs.out / "control.sock")
    assert status["checks"]["drained"] == [f"tcp {R} {RS1}"], status
    wrong = cli(lvs, "drain", R, "198.51.100.77:8080")
    assert wrong.returncode == 1 and "no real server '198.51.100.77:8080'" in wrong.stderr, wrong

    # A reload keeps the drained server at weight 0.
    mark = agent_log.mark()
    lvs.agent.signal(signal.SIGHUP)
    agent_log.wait_for("config.reloaded", STEP_TIMEOUT_S, since=mark)
    agent_log.wait_for(
        "ipvs.reconciled", STEP_TIMEOUT_S, since=mark, where=lambda e: e.get("reason") == "reload"
    )
    assert lvs.weights() == {Q: {RS1: 1, RS2: 1}, R: {RS1: 0, RS2: 1, SORRY: 0}}

    done = cli(lvs, "undrain", R, RS1)
    assert (done.returncode, done.stdout) == (0, f"undrained tcp {R} {RS1}\n"), done
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 1, RS2: 1, SORRY: 0}})
    assert set(lvs.answers(VIP_R, 6)) == {"rs1", "rs2"}
    assert control_status(lvs.out / "control.sock")["checks"]["drained"] == []
    assert not agent_log.named("ipvs.op_failed"), agent_log.transcript()


def test_slow_start_ramps_a_recovered_server_in_steps(lvs: Lvs) -> None:
    agent_log = lvs.agent
    config = lvs.out / "director.toml"
    original = config.read_text()
    # R: rs1 weighs 10 and climbs back over 10 s (ten steps of 1 s) after recovering.
    r_block = original.index(f'address = "{R}"')
    ramped = original[:r_block] + original[r_block:].replace(
        'health_action = "remove"', 'health_action = "remove"\nslow_start = 10', 1
    ).replace(f'address = "{RS1}"', f'address = "{RS1}"\n  weight = 10', 1)
    mark = agent_log.mark()
    config.write_text(ramped)
    lvs.agent.signal(signal.SIGHUP)
    agent_log.wait_for("config.reloaded", STEP_TIMEOUT_S, since=mark)
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 10, RS2: 1, SORRY: 0}})

    mark = agent_log.mark()
    lvs.stop("rs1")
    lvs.wait_weights({Q: {RS1: 0, RS2: 0, SORRY: 1}, R: {RS2: 1, SORRY: 0}})
    lvs.start("rs1")
    started = agent_log.wait_for("pool.slow_start", STEP_TIMEOUT_S, since=mark, where=about(R))
    assert (started["server"], started["weight"], started["seconds"]) == (RS1, 10, 10.0), started
    seen: list[int] = []
    deadline = time.monotonic() + STEP_TIMEOUT_S + 10
    while not seen or seen[-1] != 10:
        weight = lvs.weights()[R].get(RS1)
        if weight is not None and (not seen or seen[-1] != weight):
            seen.append(weight)
        if time.monotonic() > deadline:
            raise AssertionError(f"rs1's weights in R: {seen}\n{agent_log.transcript(mark)}")
        time.sleep(0.1)
    # Climbing, through weights between 1 and 10, never back.
    assert seen == sorted(seen) and seen[0] < 10 and len(seen) >= 3, seen
    assert any(1 < w < 10 for w in seen), seen
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 10, RS2: 1, SORRY: 0}})

    mark = agent_log.mark()
    config.write_text(original)
    lvs.agent.signal(signal.SIGHUP)
    agent_log.wait_for("config.reloaded", STEP_TIMEOUT_S, since=mark)
    lvs.wait_weights({Q: {RS1: 1, RS2: 1}, R: {RS1: 1, RS2: 1, SORRY: 0}})
    assert not agent_log.named("ipvs.op_failed"), agent_log.transcript()
