"""Failback with bulk resync: a pair of ``hadirector run`` directors, inside the VM.

The lab, configuration and helpers are synclab.py's, shared with test_lvs_sync.py (A
priority 150, B 100, a sync group ``lvs`` of the client-side and the gateway VIP, NAT
services: port 80 persistent, port 9000 plain; ``[ipvs.sync]`` on sync0), with
``resync_timeout = 60``.

1. A is master; B joins as backup. A crashes (SIGKILL, its links down): B takes over.
2. Through B only: the other client takes the round robin's first pick, the client makes
   requests (always the same real server, ``chosen``) and opens 300 TCP connections to the
   echo service (one byte answered on each, with the real server's tag), which then stay
   idle. A is down: the kernel's sync daemons send these to nobody.
3. A's links come back and A's agent starts again. It joins as backup, asks B for a resync,
   holds its preemption until the resync arrived (``sync.resync_arrived`` comes before its
   MASTER transitions), then preempts (B goes back to BACKUP).
4. Through A: every one of the 300 connections answers a byte from the same real server,
   and the client's requests still land on ``chosen`` (A's own scheduler would start
   elsewhere).

bench/failback.py runs the same failback with 10,000 idle connections (failbacklab.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .failbacklab import Clients, EchoHub, exchange, open_clients, raise_nofile
from .lvslab import Lab, RealServer, agent
from .synclab import (
    HTTP_PORT,
    RS,
    START_TIMEOUT_S,
    STEP_TIMEOUT_S,
    build,
    get_with_retries,
    wait_for_master,
    write_config,
)

pytestmark = pytest.mark.vm

DEVICES = ("front", "back", "sync0")
IDLE = 300


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def _config(tmp_path: Path, name: str, priority: int) -> Path:
    path = write_config(tmp_path, name, priority)
    path.write_text(path.read_text().replace("syncid = 42", "syncid = 42\nresync_timeout = 60"))
    return path


def test_failback_keeps_connections_and_persistence(lab: Lab, tmp_path: Path) -> None:
    ns = build(lab)
    http = {name: RealServer(name, ns[name], (HTTP_PORT,)) for name in RS}
    raise_nofile(2 * IDLE + 1024)
    # The idle connections' ports stay clear of the fixed ones the requests use (41000...).
    lab.sysctl(ns["cl"], net__ipv4__ip_local_port_range="50000 60999")
    hub = EchoHub({name: ns[name] for name in RS})
    idle = Clients()
    config_a = _config(tmp_path, "A", 150)
    try:
        with agent(ns["dira"], config_a) as a:
            wait_for_master(a)
            with agent(ns["dirb"], _config(tmp_path, "B", 100)) as b:
                b.wait_for("sync.backup", START_TIMEOUT_S)
                # 1. A crashes.
                mark_b = b.mark()
                a.process.kill()
                a.process.wait()
                for dev in DEVICES:
                    lab.ip(ns["dira"], "link", "set", dev, "down")
                wait_for_master(b, mark_b)
                b.wait_for("sync.master", STEP_TIMEOUT_S, mark_b)

                # 2. Clients through B.
                other = get_with_retries(ns["cl2"], 41000)
                answers = [get_with_retries(ns["cl"], 42000 + 10 * i) for i in range(3)]
                chosen = answers[0].server
                assert chosen != other.server, (other, answers)
                assert {x.server for x in answers} == {chosen}, answers
                idle = open_clients(ns["cl"], IDLE, timeout_s=STEP_TIMEOUT_S)
                assert set(idle.tags) == {b"1", b"2"}  # both real servers have some

                # 3. A returns and preempts once its resync has arrived.
                for dev in DEVICES:
                    lab.ip(ns["dira"], "link", "set", dev, "up")
                mark_b = b.mark()
                with agent(ns["dira"], config_a) as a2:
                    arrived = a2.wait_for("sync.resync_arrived", START_TIMEOUT_S)
                    wait_for_master(a2)
                    assert arrived["entries"] >= IDLE + 1, arrived  # connections, template

                    def is_master(event: dict[str, Any]) -> bool:
                        return event["event"] == "vrrp.transition" and event["new"] == "MASTER"

                    first_master = next(i for i, e in enumerate(a2.events) if is_master(e))
                    assert a2.events.index(arrived) < first_master, a2.transcript()
                    sent = b.wait_for("sync.resync_sent", STEP_TIMEOUT_S, mark_b)
                    assert sent["entries"] == arrived["entries"]
                    b.wait_for(
                        "vrrp.transition", STEP_TIMEOUT_S, mark_b, lambda e: e["new"] == "BACKUP"
                    )

                    # 4. Through A: the connections go on, the client keeps its server.
                    answers, outcome = exchange(idle.socks, b"f", time.monotonic() + 60)
                    assert answers == idle.tags, outcome
                    after = [get_with_retries(ns["cl"], 44000 + 10 * i) for i in range(3)]
                    assert {x.server for x in after} == {chosen}, (chosen, after)
    finally:
        idle.close()
        hub.close()
        for server in http.values():
            server.stop()
