"""The control socket on an agent running against the fakes: ``status`` follows the
elections and failovers of a pair, ``reload`` applies a file or returns its problems, bad
requests get error replies, and the metrics page renders the same state.

The agents run on the simulated wire in virtual time; the control socket is a real unix
socket in the test's temporary directory, spoken to by a trio client in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import stat
from pathlib import Path
from typing import Any

import trio
import trio.testing
from structlog.testing import capture_logs

from hadirector import metrics
from hadirector.control import client, protocol, server
from hadirector.status import AgentStatus
from tests.agent.fakes import Lab, Running, instance_toml, pair, run_lab

VIP = "192.0.2.100/24"


async def ask(path: Path, line: bytes) -> dict[str, Any]:
    """Send one raw request line; the decoded reply line."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(line)
        data = b""
        while b"\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"connection closed without a reply (got {data!r})"
            data += chunk
    reply = json.loads(data.partition(b"\n")[0])
    assert isinstance(reply, dict)
    return reply


async def status_of(path: Path) -> dict[str, Any]:
    reply = await ask(path, b'{"command": "status"}\n')
    assert reply["ok"] is True, reply
    st = reply["status"]
    assert isinstance(st, dict)
    return st


async def serve_control(lab: Lab, running: Running, path: Path) -> server.Operations:
    ops = server.Operations(running.agent)
    await lab.nursery.start(ops.serve_control, str(path))
    return ops


def by_name(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in st["instances"]}


def test_status_follows_election_and_failover(tmp_path: Path) -> None:
    sock_a = tmp_path / "run" / "a.sock"  # the directory does not exist yet
    sock_b = tmp_path / "run" / "b.sock"

    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        ra = await lab.start(a, '[global]\nrouter_id = "dir-a"\n' + instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await serve_control(lab, ra, sock_a)
        await serve_control(lab, rb, sock_b)
        assert stat.S_IMODE(os.stat(sock_a).st_mode) == 0o600
        await trio.sleep(2)

        sa, sb = await status_of(sock_a), await status_of(sock_b)
        assert sa["router_id"] == "dir-a"
        ia, ib = by_name(sa)["VI_1"], by_name(sb)["VI_1"]
        assert (ia["state"], ib["state"]) == ("MASTER", "BACKUP")
        assert ia["vips_held"] == [VIP] and ib["vips_held"] == []
        assert (ia["priority"], ia["effective_priority"]) == (200, 200)
        assert (ib["priority"], ib["effective_priority"]) == (100, 100)
        assert ia["vrid"] == 51 and ia["interface"] == "eth0"
        assert ia["master_adver_interval_cs"] == 10
        # The counters are the agent's own: what went over the simulated wire.
        sent_on_wire = len(wire.adverts_from("a"))
        assert ia["counters"]["adverts_sent"] == sent_on_wire
        assert ib["counters"]["adverts_accepted"] > 0
        assert ia["counters"].get("to_master") == 1 and ib["counters"].get("to_backup") == 1

        # a crashes (off the wire): b takes over, and its status says so.
        wire.isolate("a")
        await trio.sleep(2)
        ib = by_name(await status_of(sock_b))["VI_1"]
        assert ib["state"] == "MASTER"
        assert ib["vips_held"] == [VIP]
        assert ib["counters"]["to_master"] == 1 and ib["counters"]["to_backup"] == 1

        # The metrics page renders the same report, transitions included.
        page = metrics.render(AgentStatus.from_json(await status_of(sock_b)))
        assert 'hadirector_vrrp_state{instance="VI_1",state="MASTER"} 1.0' in page
        assert 'hadirector_vrrp_transitions_total{instance="VI_1",state="MASTER"} 1.0' in page
        assert 'hadirector_vrrp_vips_held{instance="VI_1"} 1.0' in page

    run_lab(scenario)


def test_reload_through_the_control_socket(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    sock = tmp_path / "a.sock"

    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        conf.write_text(instance_toml(priority=200))
        ra = await lab.start(a, conf.read_text(), config_path=conf)
        await lab.start(b, instance_toml(priority=100))
        await serve_control(lab, ra, sock)
        await trio.sleep(2)

        # An invalid file: the problems come back, the running configuration stays.
        conf.write_text(instance_toml(priority=300))
        reply = await ask(sock, b'{"command": "reload"}\n')
        assert reply["ok"] is False
        assert any("priority" in p for p in reply["problems"]), reply
        assert by_name(await status_of(sock))["VI_1"]["priority"] == 200

        # A valid one (a lower priority): applied, and the pair hands over.
        conf.write_text(instance_toml(priority=50))
        reply = await ask(sock, b"reload\n")  # the bare-word form
        assert reply == {"ok": True, "reloaded": True}
        await trio.sleep(2)
        inst = by_name(await status_of(sock))["VI_1"]
        assert (inst["priority"], inst["state"]) == (50, "BACKUP")
        assert lab.hosts["b"].held() == {VIP}

    run_lab(scenario)


def test_bad_requests_get_error_replies_and_the_server_keeps_serving(tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await serve_control(lab, ra, sock)
        for line in (b"{not json\n", b"[1, 2]\n", b'{"command": 7}\n', b"shutdown\n", b"\xff\n"):
            reply = await ask(sock, line)
            assert reply["ok"] is False and reply["error"], (line, reply)
        # Two requests on one connection, and an over-long line that ends it.
        stream = await trio.open_unix_socket(str(sock))
        async with stream:
            await stream.send_all(b"status\nstatus\n")
            data = b""
            while data.count(b"\n") < 2:
                data += await stream.receive_some(65536)
            assert [json.loads(x)["ok"] for x in data.splitlines()] == [True, True]
        reply = await ask(sock, b"x" * (protocol.MAX_REQUEST_BYTES + 10) + b"\n")
        assert reply == {"ok": False, "error": "request too long"}
        assert (await status_of(sock))["instances"][0]["name"] == "VI_1"

    run_lab(scenario)


def test_bad_requests_and_clients_turned_away_are_logged_at_a_bounded_rate(
    tmp_path: Path,
) -> None:
    """Each kind of abuse is in the log once per ABUSE_LOG_INTERVAL_S, the rest counted."""
    sock = tmp_path / "a.sock"

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await serve_control(lab, ra, sock)
        for line in (b"{not json\n", b"\xff\n", b"[1]\n"):
            assert (await ask(sock, line))["ok"] is False
        holders = [await trio.open_unix_socket(str(sock)) for _ in range(server.MAX_CONNECTIONS)]
        await trio.sleep(1)  # every holder accepted and holding a slot
        for _ in range(3):
            assert await ask(sock, b"status\n") == {"ok": False, "error": "too many connections"}
        for holder in holders:
            await holder.aclose()
        await trio.sleep(server.ABUSE_LOG_INTERVAL_S)
        assert (await ask(sock, b"{\n"))["ok"] is False  # the next interval: logged again

    with capture_logs() as events:
        run_lab(scenario)
    bad = [e for e in events if e["event"] == "control.bad_request"]
    busy = [e for e in events if e["event"] == "control.busy"]
    assert [e["suppressed"] for e in bad] == [0, 2], bad
    assert [(e["suppressed"], e["limit"]) for e in busy] == [(0, server.MAX_CONNECTIONS)], busy
    assert all(e["log_level"] == "warning" and e["error"] for e in bad)


def test_a_client_over_the_limit_that_already_hung_up_does_not_stop_the_server(
    tmp_path: Path,
) -> None:
    sock = tmp_path / "a.sock"

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await serve_control(lab, ra, sock)
        holders = [await trio.open_unix_socket(str(sock)) for _ in range(server.MAX_CONNECTIONS)]
        await trio.sleep(1)  # every holder accepted and holding a slot
        late = await trio.open_unix_socket(str(sock))
        await late.aclose()  # gone before its "too many connections" reply: EPIPE
        await trio.sleep(1)
        for holder in holders:
            await holder.aclose()
        await trio.sleep(1)
        assert (await status_of(sock))["instances"][0]["name"] == "VI_1"

    run_lab(scenario)


def test_accept_out_of_descriptors_waits_and_serves_later(tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await serve_control(lab, ra, sock)
        fillers: list[int] = []
        highest_fd = max(int(name) for name in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest_fd + 64, hard))
        try:
            with contextlib.suppress(OSError):
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            os.close(fillers.pop())  # one descriptor left: the client's; accept() gets EMFILE
            client = await trio.open_unix_socket(str(sock))
            await trio.sleep(5)  # the server retries accept() meanwhile
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        async with client:
            await client.send_all(b"status\n")
            data = b""
            while b"\n" not in data:
                chunk = await client.receive_some(65536)
                assert chunk, "closed without a reply"
                data += chunk
        assert json.loads(data)["ok"] is True

    run_lab(scenario)


def test_stale_socket_is_replaced_and_removed_on_exit(tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"
    import socket as pysocket

    stale = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    stale.bind(str(sock))  # bound, never listening: what a killed agent leaves behind
    stale.close()

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        ops = server.Operations(ra.agent)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(ops.serve_control, str(sock))
                assert (await status_of(sock))["instances"][0]["state"] in ("INIT", "BACKUP")
                # A second server on the same path refuses: a live agent answers there.
                other = server.Operations(ra.agent)
                await nursery.start(other.serve_control, str(sock))
                assert sock.exists()
                assert (await status_of(sock))["instances"]
                scope.cancel()
        assert not sock.exists()

    run_lab(scenario)


def test_cli_client_reports_a_missing_agent(tmp_path: Path) -> None:
    try:
        client.request(str(tmp_path / "none.sock"), "status")
    except client.ControlError as exc:
        assert "not running" in str(exc)
    else:
        raise AssertionError("no error for a missing socket")


async def http(port: int, request: bytes) -> bytes:
    """Send ``request`` to the metrics endpoint; everything read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        if request:
            await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


def test_metrics_endpoint_serves_the_agent_and_bounds_requests() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await lab.start(b, instance_toml(priority=100))
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        def render() -> str:
            return metrics.render(ra.agent.status())

        lab.nursery.start_soon(metrics.serve, listeners, render)
        await trio.sleep(2)

        reply = await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK")
        page = body.decode()
        assert 'hadirector_vrrp_state{instance="VI_1",state="MASTER"} 1.0\n' in page
        assert 'hadirector_vrrp_transitions_total{instance="VI_1",state="MASTER"} 1.0\n' in page
        assert f"Content-Length: {len(body)}".encode() in head

        # Too big a request head: refused without reading on.
        big = b"GET /metrics HTTP/1.0\r\n" + b"X-Pad: " + b"a" * metrics.MAX_REQUEST_BYTES
        assert (await http(port, big)).startswith(b"HTTP/1.0 400 ")
        # A client that says nothing (or half a request) is cut off after the time bound.
        t0 = trio.current_time()
        assert await http(port, b"") == b""
        assert await http(port, b"GET /met") == b""
        assert trio.current_time() - t0 >= 2 * metrics.REQUEST_TIMEOUT_S
        # ...and the endpoint still answers.
        assert (await http(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200")

    run_lab(scenario)


def test_a_control_reload_and_a_sighup_reload_run_one_after_the_other(tmp_path: Path) -> None:
    """One reload lock: a reload from the control socket and one from SIGHUP (the agent's
    ``reload``) at the same time apply in turn. The first changes the VRID, so it waits for
    the old instance to stop; the second finds the file already applied."""
    conf = tmp_path / "a.toml"
    sock = tmp_path / "a.sock"

    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        conf.write_text(instance_toml(priority=200))
        ra = await lab.start(a, conf.read_text(), config_path=conf)
        await lab.start(b, instance_toml(priority=100))
        await serve_control(lab, ra, sock)
        await trio.sleep(2)
        conf.write_text(instance_toml(priority=200, vrid=52))
        replies: list[Any] = []

        async def by_socket() -> None:
            replies.append(await ask(sock, b"reload\n"))

        async def by_signal() -> None:
            replies.append(await ra.agent.reload())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(by_socket)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(by_signal)
        assert sorted(map(str, replies)) == ["[]", "{'ok': True, 'reloaded': True}"]
        events = [e.kind for e in lab.events if e.kind.startswith("config.")]
        assert events == [
            "config.instance_removed",
            "config.instance_added",
            "config.reloaded",
            "config.reloaded",
        ]
        assert ra.agent.status().instance("VI_1").vrid == 52

    run_lab(scenario)
