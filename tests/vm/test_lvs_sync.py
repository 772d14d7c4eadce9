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
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lvslab import AgentProcess, Lab, RealServer, agent, socket_in
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
    wait_for_entries,
    wait_for_master,
    write_config,
)

pytestmark = pytest.mark.vm


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
