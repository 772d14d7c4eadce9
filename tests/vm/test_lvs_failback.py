"""Failback with bulk resync: a pair of ``hadirector run`` directors, inside the VM.

The lab, configuration and helpers are synclab.py's, shared with test_lvs_sync.py (A
priority 150, B 100, a sync group ``lvs`` of the client-side and the gateway VIP, NAT
services: port 80 persistent, port 9000 plain; ``[ipvs.sync]`` on sync0), with
``resync_timeout = 60``.

1. A is master; B joins as backup. A crashes (SIGKILL, its links down): B takes over.
2. Through B only: the other client takes the round robin's first pick, the client makes
   requests (always the same real server, ``chosen``) and opens a long-lived TCP
   connection (an echo). A is down: the kernel's sync daemons send these to nobody.
3. A's links come back and A's agent starts again. It joins as backup, asks B for a resync,
   holds its preemption until the resync arrived (``sync.resync_arrived`` comes before its
   MASTER transitions), then preempts (B goes back to BACKUP).
4. Through A: the long-lived connection still echoes from the same server, and the
   client's requests still land on ``chosen`` (A's own scheduler would start elsewhere).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lvslab import Lab, RealServer, agent, socket_in
from .synclab import (
    ECHO_PORT,
    HTTP_PORT,
    RS,
    START_TIMEOUT_S,
    STEP_TIMEOUT_S,
    VIP,
    EchoServer,
    build,
    echo,
    get_with_retries,
    wait_for_master,
    write_config,
)

pytestmark = pytest.mark.vm

DEVICES = ("front", "back", "sync0")


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
    echoes = {name: EchoServer(name, ns[name], ECHO_PORT) for name in RS}
    config_a = _config(tmp_path, "A", 150)
    long_lived = socket_in(ns["cl"])
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
                long_lived.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                long_lived.bind(("0.0.0.0", 43000))
                long_lived.settimeout(10)
                long_lived.connect((VIP, ECHO_PORT))
                first = echo(long_lived, "via B", 10)
                echo_server = first.split()[0]
                assert first == f"{echo_server} via B"

                # 3. A returns and preempts once its resync has arrived.
                for dev in DEVICES:
                    lab.ip(ns["dira"], "link", "set", dev, "up")
                mark_b = b.mark()
                with agent(ns["dira"], config_a) as a2:
                    arrived = a2.wait_for("sync.resync_arrived", START_TIMEOUT_S)
                    wait_for_master(a2)
                    assert arrived["entries"] >= 2, arrived  # the template and the echo

                    def is_master(event: dict[str, Any]) -> bool:
                        return event["event"] == "vrrp.transition" and event["new"] == "MASTER"

                    first_master = next(i for i, e in enumerate(a2.events) if is_master(e))
                    assert a2.events.index(arrived) < first_master, a2.transcript()
                    sent = b.wait_for("sync.resync_sent", STEP_TIMEOUT_S, mark_b)
                    assert sent["entries"] == arrived["entries"]
                    b.wait_for(
                        "vrrp.transition", STEP_TIMEOUT_S, mark_b, lambda e: e["new"] == "BACKUP"
                    )

                    # 4. Through A: the connection goes on, the client keeps its server.
                    assert echo(long_lived, "via A", 30) == f"{echo_server} via A"
                    after = [get_with_retries(ns["cl"], 44000 + 10 * i) for i in range(3)]
                    assert {x.server for x in after} == {chosen}, (chosen, after)
    finally:
        long_lived.close()
        for server in http.values():
            server.stop()
        for echo_server_ in echoes.values():
            echo_server_.stop()
