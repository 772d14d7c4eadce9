"""Health checks against real servers in namespaces: TCP, HTTP, HTTPS (a self-signed
certificate made here with openssl) and script probes, run by the real ``HealthChecker``.

A checker namespace (203.0.113.1, 2001:db8:3::1) and a server namespace (203.0.113.2,
2001:db8:3::2) share a bridge. The server is a small threaded Python HTTP(S) server whose
behaviour is read from a file at each connection: ``ok`` (200 "healthy"), ``500``
(500 "broken"), ``hang`` (accepts, never answers); whatever the mode, ``/teapot`` answers
418 "short and stout" and ``/big`` 200 with a 70,000-byte body. Each test walks a check through
up -> down (server stopped, 500, hang) -> up and checks the rise/fall counts from the
recorded probe results: a change is reported exactly when the last ``fall`` (``rise``)
results disagreed with the old state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from hadirector.checks import probes
from hadirector.checks.runner import CheckKey, HealthChecker
from hadirector.config.load import load_mapping
from hadirector.config.schema import HealthCheck, IPAddress

from .lab import Netns, bare_lab

pytestmark = pytest.mark.netns

SERVER_V4 = "203.0.113.2"
SERVER_V6 = "2001:db8:3::2"
PORT = 8080
SLEEP_S = f"{60 + os.getpid() % 1000 / 1000:.3f}"  # a hung script's sleep, unique per run

SERVER_CODE = r"""
import socket, ssl, sys, threading, time
port, mode_file, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = None
if cert != "-":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if len(sys.argv) > 5:  # client certificates required, signed by this CA
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(sys.argv[5])
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", port))
srv.listen(256)
print("listening", flush=True)

def handle(conn):
    try:
        mode = open(mode_file).read().strip()
        if mode == "hang":
            time.sleep(60)
            return
        if ctx is not None:
            conn = ctx.wrap_socket(conn, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        status, body = (b"200 OK", b"healthy") if mode == "ok" else (b"500 Oops", b"broken")
        path = data.split(b" ", 2)[1]
        if path == b"/teapot":
            status, body = b"418 Teapot", b"short and stout"
        elif path == b"/big":
            status, body = b"200 OK", b"x" * 70000
        conn.sendall(b"HTTP/1.0 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    finally:
        conn.close()

while True:
    conn, _ = srv.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""

SCRIPT = """#!/bin/sh
echo $$ > "{dir}/pid"
[ "$HADIRECTOR_RS_ADDRESS" = "{address}" ] || exit 10
[ "$HADIRECTOR_RS_PORT" = "{port}" ] || exit 11
[ -e "{dir}/hang" ] && sleep {sleep_s}
[ -e "{dir}/up" ] || exit 3
exit 0
"""


@dataclass
class Net:
    checker: Netns
    server: Netns
    tmp: Path
    mode_file: Path
    server_proc: subprocess.Popen[bytes] | None = None
    cert: tuple[str, ...] = ("-", "-")

    def set_mode(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def start_server(self) -> None:
        code = self.tmp / "server.py"
        code.write_text(SERVER_CODE)
        proc = self.server.spawn(
            sys.executable,
            str(code),
            str(PORT),
            str(self.mode_file),
            *self.cert,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"listening"
        self.server_proc = proc

    def stop_server(self) -> None:
        assert self.server_proc is not None
        self.server_proc.kill()
        self.server_proc.wait()
        self.server_proc = None


@pytest.fixture
def net(netns_required: None, tmp_path: Path) -> Iterator[Net]:
    with bare_lab() as lab:
        checker = lab.node("chk", ipv4=["203.0.113.1/24"], ipv6=["2001:db8:3::1/64"])
        server = lab.node("srv", ipv4=[f"{SERVER_V4}/24"], ipv6=[f"{SERVER_V6}/64"])
        mode_file = tmp_path / "mode"
        mode_file.write_text("ok")
        yield Net(checker.netns, server.netns, tmp_path, mode_file)


@dataclass
class Recorder:
    """The probe results in order, and where in that sequence each change was reported."""

    results: list[probes.ProbeResult] = field(default_factory=list)
    reports: list[tuple[int, bool]] = field(default_factory=list)  # (results so far, down?)

    async def probe(
        self, check: HealthCheck, address: IPAddress, port: int | None
    ) -> probes.ProbeResult:
        result = await probes.probe(check, address, port)
        self.results.append(result)
        return result

    def sink(self, down: set[CheckKey]) -> None:
        self.reports.append((len(self.results), bool(down)))


def config(check: dict[str, Any], address: str = SERVER_V4) -> Any:
    host = address if ":" not in address else f"[{address}]"
    return load_mapping(
        {
            "virtual_server": [
                {
                    "address": "192.0.2.10:80" if ":" not in address else "[2001:db8:9::10]:80",
                    "check": check,
                    "real_server": [{"address": f"{host}:{PORT}"}],
                }
            ]
        }
    )


async def wait_state(checker: HealthChecker, up: bool, timeout_s: float = 10.0) -> None:
    with trio.fail_after(timeout_s):
        while bool(checker.down) == up:
            await trio.sleep(0.02)


def run_in(ns: Netns, fn: Callable[[], Awaitable[None]]) -> None:
    with ns.entered():  # sockets (and script processes) are made in the checker namespace
        trio.run(fn)


def assert_counts(rec: Recorder, rise: int, fall: int) -> None:
    """Every reported change came right after ``fall`` failures / ``rise`` successes."""
    changes = rec.reports  # servers start up: the first report is a change
    assert changes, "no change was reported"
    previous_up, previous_n = True, 0
    for n, down in changes:
        up = not down
        assert up != previous_up
        need = rise if up else fall
        window = rec.results[n - need : n]
        assert [r.ok for r in window] == [up] * need, (n, rec.results[max(0, n - need - 2) : n])
        # Not one result late: the streak began with this window.
        assert n - need == previous_n or rec.results[n - need - 1].ok != up
        previous_up, previous_n = up, n


def walk(
    net: Net,
    check: dict[str, Any],
    breakers: list[tuple[str, Callable[[], object], Callable[[], object]]],
    *,
    rise: int = 2,
    fall: int = 3,
    address: str = SERVER_V4,
) -> Recorder:
    """up, then for each (expected reason, break, repair): down with that reason, up again."""
    rec = Recorder()
    cfg = config({**check, "rise": rise, "fall": fall}, address)

    async def main() -> None:
        checker = HealthChecker(cfg, rec.sink, prober=rec.probe)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            with trio.fail_after(5):
                while len(rec.results) < rise:
                    await trio.sleep(0.02)
            assert not checker.down and all(r.ok for r in rec.results)
            for reason, break_it, repair in breakers:
                break_it()
                await wait_state(checker, up=False)
                assert rec.results[-1].reason.startswith(reason), rec.results[-1]
                repair()
                await wait_state(checker, up=True)
            nursery.cancel_scope.cancel()

    run_in(net.checker, main)
    assert_counts(rec, rise, fall)
    assert len(rec.reports) == 2 * len(breakers)
    return rec


HTTP_CHECK = {"type": "http", "interval": 0.3, "timeout": 0.25, "expect_body": "healthy"}


def server_breakers(net: Net) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    return [
        ("connect refused", net.stop_server, net.start_server),
        ("status 500", lambda: net.set_mode("500"), lambda: net.set_mode("ok")),
        ("timeout 0.25 s", lambda: net.set_mode("hang"), lambda: net.set_mode("ok")),
    ]


def test_tcp_check(net: Net) -> None:
    net.start_server()
    walk(
        net,
        {"type": "tcp", "interval": 0.3, "timeout": 0.25},
        [("connect refused", net.stop_server, net.start_server)],
        rise=3,
        fall=2,
    )


def test_tcp_check_ipv6_timeout_when_dropped(net: Net) -> None:
    net.start_server()

    def drop() -> None:
        net.server.run("nft", "add table inet t")
        net.server.run(
            "nft", "add chain inet t in { type filter hook input priority 0; policy accept; }"
        )
        net.server.run("nft", f"add rule inet t in tcp dport {PORT} drop")

    walk(
        net,
        {"type": "tcp", "interval": 0.3, "timeout": 0.25},
        [("timeout 0.25 s", drop, lambda: net.server.run("nft", "delete table inet t"))],
        address=SERVER_V6,
    )


@pytest.mark.parametrize("address", [SERVER_V4, SERVER_V6], ids=["ipv4", "ipv6"])
def test_http_check(net: Net, address: str) -> None:
    net.start_server()
    walk(net, HTTP_CHECK, server_breakers(net), address=address)


def test_http_body_mismatch_and_expected_status(net: Net) -> None:
    net.start_server()
    check = {**HTTP_CHECK, "expect_body": "nope"}
    rec = Recorder()

    async def main() -> None:
        checker = HealthChecker(config({**check, "fall": 1}), rec.sink, prober=rec.probe)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await wait_state(checker, up=False)
            nursery.cancel_scope.cancel()

    run_in(net.checker, main)
    assert rec.results[0].reason == "body mismatch"

    # A 500 is up when the check expects it.
    net.set_mode("500")
    rec = Recorder()
    cfg = config({**HTTP_CHECK, "expect_status": [500], "expect_body": "broken", "fall": 1})

    async def main500() -> None:
        checker = HealthChecker(cfg, rec.sink, prober=rec.probe)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            with trio.fail_after(5):
                while len(rec.results) < 3:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    run_in(net.checker, main500)
    assert all(r.ok for r in rec.results), rec.results


def test_several_urls_status_ranges_and_digest(net: Net) -> None:
    net.start_server()
    healthy = hashlib.md5(b"healthy").hexdigest()
    check = {
        "type": "http",
        "interval": 0.3,
        "timeout": 0.25,
        "urls": [
            {"path": "/", "expect_status": "200-299", "digest": healthy},
            {
                "path": "/teapot",
                "expect_status": ["400-418"],
                "expect_body_regex": "^short.*stout$",
            },
        ],
    }
    # Up while both answer; a 500 on the first URL takes it down, named by its path.
    rec = walk(
        net,
        check,
        [("/: status 500", lambda: net.set_mode("500"), lambda: net.set_mode("ok"))],
        rise=1,
        fall=1,
    )
    assert {r.reason for r in rec.results if r.ok} == {"ok"}

    # A wrong digest, and a body too large to digest, are failures with their reasons.
    for url, reason in (
        ({"path": "/", "digest": "0" * 32}, "digest mismatch"),
        ({"path": "/big", "digest": healthy}, "body over 65536 bytes for digest"),
    ):
        rec = Recorder()
        cfg = config({"type": "http", "interval": 0.3, "timeout": 0.25, "fall": 1, "urls": [url]})

        async def main(cfg: Any = cfg, rec: Recorder = rec) -> None:
            checker = HealthChecker(cfg, rec.sink, prober=rec.probe)
            async with trio.open_nursery() as nursery:
                await nursery.start(checker.run)
                await wait_state(checker, up=False)
                nursery.cancel_scope.cancel()

        run_in(net.checker, main)
        assert rec.results[0] == probes.ProbeResult(False, reason)


UDP_SERVER_CODE = r"""
import socket, sys
from scapy.layers.dns import DNS, DNSQR, DNSRR
port, mode_file = int(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
sock.bind(("::", port))
print("listening", flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    mode = open(mode_file).read().strip()
    if mode == "hang":
        continue
    if data.startswith(b"ping"):
        sock.sendto((b"pong" if mode == "ok" else b"nope") + data[4:], peer)
        continue
    query = DNS(data)
    name = query.qd[0].qname
    if mode != "ok":
        reply = DNS(id=query.id, qr=1, rd=1, rcode=2, qd=query.qd)
    elif name == b"svc.example.":
        reply = DNS(id=query.id, qr=1, rd=1, ra=1, qd=query.qd,
                    an=DNSRR(rrname=name, type="A", rdata="192.0.2.53"))
    else:
        reply = DNS(id=query.id, qr=1, rd=1, rcode=3, qd=query.qd)
    sock.sendto(bytes(reply), peer)
"""


def start_udp_server(net: Net) -> None:
    code = net.tmp / "udp_server.py"
    code.write_text(UDP_SERVER_CODE)
    proc = net.server.spawn(
        sys.executable, str(code), str(PORT), str(net.mode_file), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"listening"
    net.server_proc = proc


def udp_breakers(net: Net) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    return [
        ("port unreachable", net.stop_server, lambda: start_udp_server(net)),
        ("timeout 0.25 s", lambda: net.set_mode("hang"), lambda: net.set_mode("ok")),
    ]


@pytest.mark.parametrize("address", [SERVER_V4, SERVER_V6], ids=["ipv4", "ipv6"])
def test_udp_check_with_an_expected_reply(net: Net, address: str) -> None:
    start_udp_server(net)
    check = {
        "type": "udp",
        "interval": 0.3,
        "timeout": 0.25,
        "payload": b"ping-1".hex(),
        "expect_reply": b"pong-1".hex(),
    }
    mismatch = ("reply mismatch", lambda: net.set_mode("500"), lambda: net.set_mode("ok"))
    walk(net, check, [*udp_breakers(net), mismatch], address=address)


def test_udp_check_without_a_reply_is_up_until_port_unreachable(net: Net) -> None:
    start_udp_server(net)
    check = {"type": "udp", "interval": 0.3, "timeout": 0.25, "payload": b"hello".hex()}
    rec = walk(net, check, [udp_breakers(net)[0]], rise=1, fall=1)
    assert {r.reason for r in rec.results if r.ok} == {"ok"}


@pytest.mark.parametrize("address", [SERVER_V4, SERVER_V6], ids=["ipv4", "ipv6"])
def test_dns_check(net: Net, address: str) -> None:
    start_udp_server(net)
    check = {
        "type": "dns",
        "interval": 0.3,
        "timeout": 0.25,
        "query_name": "svc.example",
        "expect_answer": "192.0.2.53",
    }
    servfail = ("rcode SERVFAIL", lambda: net.set_mode("500"), lambda: net.set_mode("ok"))
    walk(net, check, [*udp_breakers(net), servfail], address=address)
    # A name the server does not know: NXDOMAIN, which a check can expect.
    for expected, reason in (("NOERROR", "rcode NXDOMAIN"), ("NXDOMAIN", "ok")):
        rec = Recorder()
        cfg = config(
            {
                "type": "dns",
                "interval": 0.3,
                "timeout": 0.25,
                "query_name": "gone.example",
                "expect_rcode": expected,
                "fall": 1,
            }
        )

        async def main(cfg: Any = cfg, rec: Recorder = rec) -> None:
            checker = HealthChecker(cfg, rec.sink, prober=rec.probe)
            async with trio.open_nursery() as nursery:
                await nursery.start(checker.run)
                with trio.fail_after(5):
                    while not rec.results:
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()

        run_in(net.checker, main)
        assert rec.results[0].reason == reason, rec.results


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=rs.test",
            "-addext",
            f"subjectAltName=IP:{SERVER_V4},IP:{SERVER_V6},DNS:rs.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.mark.parametrize("address", [SERVER_V4, SERVER_V6], ids=["ipv4", "ipv6"])
def test_https_check(net: Net, tls_cert: tuple[str, str], address: str) -> None:
    net.cert = tls_cert
    net.start_server()
    walk(net, {**HTTP_CHECK, "type": "https"}, server_breakers(net), address=address)


def test_https_verify_refuses_a_self_signed_certificate(
    net: Net, tls_cert: tuple[str, str]
) -> None:
    net.cert = tls_cert
    net.start_server()
    rec = Recorder()
    cfg = config({**HTTP_CHECK, "type": "https", "tls_verify": True, "fall": 1})

    async def main() -> None:
        checker = HealthChecker(cfg, rec.sink, prober=rec.probe)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await wait_state(checker, up=False)
            nursery.cancel_scope.cancel()

    run_in(net.checker, main)
    assert rec.results[0].reason.startswith("tls: CERTIFICATE_VERIFY_FAILED"), rec.results[0]


def first_result(cfg: Any, net: Net) -> probes.ProbeResult:
    rec = Recorder()

    async def main() -> None:
        checker = HealthChecker(cfg, rec.sink, prober=rec.probe)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            with trio.fail_after(5):
                while not rec.results:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    run_in(net.checker, main)
    return rec.results[0]


def test_https_with_our_ca_sni_name_and_a_client_certificate(
    net: Net, tls_cert: tuple[str, str]
) -> None:
    cert, key = tls_cert
    net.cert = (cert, key, cert)  # the server requires a client certificate it signed
    net.start_server()
    base = {**HTTP_CHECK, "type": "https", "tls_ca_file": cert}
    with_client = {**base, "tls_cert_file": cert, "tls_key_file": key}
    # Our CA verifies the address (an IP SAN), and the SNI name when one is given.
    assert first_result(config(with_client), net) == probes.UP
    assert first_result(config({**with_client, "tls_server_name": "rs.test"}), net) == probes.UP
    wrong = first_result(config({**with_client, "tls_server_name": "other.test"}), net)
    assert wrong.reason.startswith("tls: CERTIFICATE_VERIFY_FAILED"), wrong
    # Without a client certificate the server refuses the handshake.
    refused = first_result(config(base), net)
    assert not refused.ok and refused.reason.startswith(("tls:", "connection")), refused


def test_connect_ip_and_bindto(net: Net) -> None:
    net.start_server()
    net.checker.ip("addr", "add", "203.0.113.3/24", "dev", "eth0")
    base = {"type": "tcp", "interval": 0.3, "timeout": 0.25, "fall": 1}
    # The real server's own address answers nothing; connect_ip sends the probe elsewhere.
    nowhere = config(base, address="203.0.113.99")
    assert not first_result(nowhere, net).ok
    moved = config({**base, "connect_ip": SERVER_V4}, address="203.0.113.99")
    assert first_result(moved, net) == probes.UP
    # bindto: our second address works; one the checker does not hold cannot be bound.
    assert first_result(config({**base, "bindto": "203.0.113.3"}), net) == probes.UP
    refused = first_result(config({**base, "bindto": "198.51.100.7"}), net)
    assert refused.reason.startswith("error: Cannot assign requested address"), refused


def test_script_check_kills_the_group_on_timeout(net: Net) -> None:
    script = net.tmp / "check.sh"
    script.write_text(SCRIPT.format(dir=net.tmp, address=SERVER_V4, port=PORT, sleep_s=SLEEP_S))
    script.chmod(0o755)
    (net.tmp / "up").touch()
    hung: list[int] = []

    def hang() -> None:
        (net.tmp / "hang").touch()

    def unhang() -> None:
        hung.append(int((net.tmp / "pid").read_text()))
        (net.tmp / "hang").unlink()

    walk(
        net,
        {"type": "script", "script": str(script), "interval": 0.3, "timeout": 0.25},
        [
            ("exit 3", (net.tmp / "up").unlink, (net.tmp / "up").touch),
            ("timeout 0.25 s", hang, unhang),
        ],
    )
    # The timed-out script's group (the shell and its sleep) was killed.
    for pid in hung:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    marker = f"sleep {SLEEP_S}"
    deadline = time.monotonic() + 10.0
    while True:  # SIGKILL is delivered asynchronously: poll until they are gone
        out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
        if not out.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert out.strip() == "", f"{marker} survived: {out}"


def test_alpha_server_starts_down_and_comes_in_after_rise_successes(net: Net) -> None:
    """With ``alpha`` a healthy server is reported down before any probe, and up after
    exactly ``rise`` successes; without it the same server is never reported down."""
    net.start_server()
    for alpha in (True, False):
        rec = Recorder()
        cfg = config({**HTTP_CHECK, "rise": 3, "fall": 2, "alpha": alpha})

        async def main() -> None:
            checker = HealthChecker(cfg, rec.sink, prober=rec.probe)  # noqa: B023
            assert bool(checker.down_at_start()) is alpha  # noqa: B023
            async with trio.open_nursery() as nursery:
                await nursery.start(checker.run)
                with trio.fail_after(5):
                    while len(rec.results) < 5:  # noqa: B023
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()

        run_in(net.checker, main)
        assert all(r.ok for r in rec.results), rec.results
        if alpha:
            # Down at once (no result yet), up after the third success.
            assert rec.reports == [(0, True), (3, False)], rec.reports
        else:
            assert rec.reports == [], rec.reports


# An HTTP/1.1 server of the standard library's http.server: it writes down each request's
# line, Host and Connection, answers /chunked with a chunked body (several writes) and
# /length with Content-Length, ``mode`` 500 with a 500; and whatever the client asked it
# keeps the connection open after its answer, as a keep-alive server may.
HTTP11_SERVER_CODE = r"""
import http.server, json, socket, sys, time
port, mode_file, log_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with open(log_file, "a") as log:
            log.write(json.dumps([self.requestline, self.headers.get("Host"),
                                  self.headers.get("Connection")]) + "\n")
        status = 500 if open(mode_file).read().strip() == "500" else 200
        if self.path == "/chunked":
            self.send_response(status)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"hea", b"lthy and ", b"chunked"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.002)
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = b"fine, by length"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = False  # held open: the checker must not wait for a close

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address):
        pass  # the checker ends each connection with a reset

server = Server(("::", port), Handler)
print("listening", flush=True)
server.serve_forever()
"""


@pytest.mark.parametrize("address", [SERVER_V4, SERVER_V6], ids=["ipv4", "ipv6"])
def test_http11_with_host_chunked_and_length_bodies(net: Net, address: str) -> None:
    """HTTP/1.1 against http.server: the request line, Host and Connection it sees; a
    chunked body decoded for the regex and the digest, a Content-Length body for the
    substring, both read to their end although the server keeps the connection open
    (a checker waiting for a close would time out); then down on 500 and on a stop."""
    code = net.tmp / "http11.py"
    code.write_text(HTTP11_SERVER_CODE)
    log = net.tmp / "requests"
    log.touch()

    def start() -> None:
        proc = net.server.spawn(
            sys.executable, str(code), str(PORT), str(net.mode_file), str(log),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"listening"
        net.server_proc = proc

    start()
    check = {
        "type": "http",
        "http_version": "1.1",
        "host": "www.example.com",
        "interval": 0.3,
        "timeout": 0.25,
        "urls": [
            {
                "path": "/chunked",
                "expect_body_regex": "^healthy and chunked$",
                "digest": hashlib.md5(b"healthy and chunked").hexdigest(),
            },
            {"path": "/length", "expect_body": "by length"},
        ],
    }
    rec = walk(
        net,
        check,
        [
            ("/chunked: status 500", lambda: net.set_mode("500"), lambda: net.set_mode("ok")),
            ("connect refused", net.stop_server, start),
        ],
        address=address,
    )
    assert rec.results[0] == probes.UP
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert seen[:2] == [
        ["GET /chunked HTTP/1.1", "www.example.com", "close"],
        ["GET /length HTTP/1.1", "www.example.com", "close"],
    ], seen[:4]
    assert {tuple(s) for s in seen} == {tuple(s) for s in seen[:2]}
    net.stop_server()
