"""Health probes of one real server: TCP connect, HTTP/HTTPS GET, UDP, DNS, script.

Each probe runs once and answers a ``ProbeResult`` (up or not, and why in a few words:
``connect refused``, ``status 500``, ``timeout 1.0 s``). The whole probe, connect
included, is bounded by the check's timeout. TCP sockets close with ``SO_LINGER`` 0 (a
reset, no TIME_WAIT), so thousands of checks a second leave nothing behind. HTTP is a
hand-written ``GET ... HTTP/1.0`` (or ``HTTP/1.1``, ``http_version``) with ``Host`` and
``Connection: close`` (httpmsg.py); the response is read until the headers end (or, when
a body must match, to the end of the body as its framing says: ``Content-Length``, the
last chunk of a chunked body, or close) and never beyond ``MAX_RESPONSE_BYTES``; with a
``digest`` the MD5 of the whole body must match (keepalived's ``genhash``). A check
with several ``urls`` fetches each in turn, one connection each, within the one timeout;
all must pass. HTTPS is the same over ``trio.SSLStream``. UDP sends a payload and wants
a reply starting with the expected bytes (or, without ``require_reply``, no ICMP port
unreachable); DNS sends one query (dnsmsg.py) and judges the response's rcode and
answers. A script runs in its own session and its whole process group is killed on
timeout or cancel.

Parsing (httpmsg.py's ``parse_response``, ``judge``) is plain code on bytes, tested on
canned input.
This module probes and reports; it decides nothing about state (that is risefall.py).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import socket
import ssl
import struct
import subprocess
from dataclasses import dataclass

import trio

from hadirector import security
from hadirector.alerts.notify import kill_group
from hadirector.checks import dnsmsg
from hadirector.checks.httpmsg import (
    HttpParseError,
    HttpResponse,
    host_header,
    parse_response,
    request_bytes,
)
from hadirector.config.schema import HealthCheck, HttpUrl, IPAddress

MAX_RESPONSE_BYTES = 65536
READ_CHUNK_BYTES = 16384
LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class ProbeResult:
    """One probe's verdict."""

    ok: bool
    reason: str
    weight: int | None = None  # a dynamic-weight script's weight (exit status - 2)


UP = ProbeResult(True, "ok")


def judge(
    response: HttpResponse,
    expect_status: tuple[int, ...],
    expect_body: str | None,
    digest: str | None = None,
    body_regex: str | None = None,
) -> ProbeResult:
    """Whether an HTTP response means up. ``digest``: the MD5 of the whole body, in hex
    (a body cut at ``MAX_RESPONSE_BYTES`` cannot match it)."""
    if response.status not in expect_status:
        return ProbeResult(False, f"status {response.status}")
    if expect_body is not None and expect_body.encode() not in response.body:
        return ProbeResult(False, "body mismatch")
    if body_regex is not None and _regex(body_regex).search(response.body) is None:
        return ProbeResult(False, "body regex mismatch")
    if digest is not None:
        if not response.complete:
            return ProbeResult(False, f"body over {MAX_RESPONSE_BYTES} bytes for digest")
        if hashlib.md5(response.body, usedforsecurity=False).hexdigest() != digest:
            return ProbeResult(False, "digest mismatch")
    return UP


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[bytes]:
    """A body regex, compiled once (the loader checked it compiles)."""
    return re.compile(pattern.encode())


# --------------------------------------------------------------------------- the probes


async def probe(check: HealthCheck, address: IPAddress, port: int | None) -> ProbeResult:
    """Run one check against a real server, bounded by ``check.timeout_s``."""
    target_port = check.port if check.port is not None else (port or 0)
    if check.connect_ip is not None:
        address = check.connect_ip
    with trio.move_on_after(check.timeout_s):
        try:
            if check.type == "tcp":
                return await probe_tcp(address, target_port, check.bindto)
            if check.type in ("http", "https"):
                return await probe_http(check, address, target_port)
            if check.type == "udp":
                return await probe_udp(check, address, target_port)
            if check.type == "dns":
                return await probe_dns(check, address, target_port)
            return await probe_script(check, address, port)
        except ConnectionRefusedError:
            return ProbeResult(False, "connect refused")
        except ssl.SSLError as exc:
            return ProbeResult(False, f"tls: {exc.reason or exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                return ProbeResult(False, f"tls: {cause.reason or cause}")
            return ProbeResult(False, "connection lost")
        except OSError as exc:
            return ProbeResult(False, _os_reason(exc))
        except HttpParseError as exc:
            return ProbeResult(False, f"bad response: {exc}")
    return ProbeResult(False, f"timeout {check.timeout_s} s")


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ECONNRESET:
        return "connection reset"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return f"error: {exc.strerror or exc}"


def _stream_socket(address: IPAddress, bindto: IPAddress | None) -> socket.socket:
    """A non-blocking TCP socket that closes with a reset, bound to ``bindto`` if given."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        if bindto is not None:
            sock.bind((bindto.compressed, 0))
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_raw(sock: socket.socket, address: IPAddress, port: int) -> None:
    """Connect a non-blocking socket: the kernel's answer, or wait until it is writable and
    read ``SO_ERROR`` (a literal address: no resolver, no wrapper object)."""
    err = sock.connect_ex((address.compressed, port))
    if err == errno.EINPROGRESS:
        await trio.lowlevel.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    # An answer at once (a local peer) is returned without a checkpoint: the callers'
    # next step (a send, or the end of the probe's task) is one.
    if err:
        raise OSError(err, os.strerror(err))


async def _connect(
    address: IPAddress, port: int, bindto: IPAddress | None = None
) -> trio.socket.SocketType:
    sock = _stream_socket(address, bindto)
    try:
        await _connect_raw(sock, address, port)
    except BaseException:
        sock.close()
        raise
    return trio.socket.from_stdlib_socket(sock)


async def probe_tcp(address: IPAddress, port: int, bindto: IPAddress | None = None) -> ProbeResult:
    sock = _stream_socket(address, bindto)
    try:
        await _connect_raw(sock, address, port)
    finally:
        sock.close()  # nothing waits on it any more: a plain close (SO_LINGER 0: a reset)
    return UP


async def probe_http(check: HealthCheck, address: IPAddress, port: int) -> ProbeResult:
    """Each URL of the check in turn, on its own connection; the first failure decides
    (named by its path when there are several)."""
    urls = check.http_urls
    for url in urls:
        result = await probe_url(check, url, address, port)
        if not result.ok:
            return ProbeResult(False, f"{url.path}: {result.reason}") if len(urls) > 1 else result
    return UP


async def probe_url(check: HealthCheck, url: HttpUrl, address: IPAddress, port: int) -> ProbeResult:
    tls = check.type == "https"
    host = check.host or host_header(address, port, 443 if tls else 80)
    sock = await _connect(address, port, check.bindto)
    stream: trio.abc.Stream = trio.SocketStream(sock)
    try:
        if tls:
            name = check.tls_server_name or check.host
            stream = trio.SSLStream(
                stream,
                _tls_context(check),
                # SNI: the name given; verification: that name, or the address.
                server_hostname=name or (address.compressed if check.tls_verify else None),
            )
        await stream.send_all(request_bytes(url.path, host, check.http_version))
        data = bytearray()
        eof = False
        while True:
            response = parse_response(bytes(data), eof=eof)
            if response is not None and (
                (url.expect_body is None and url.digest is None and url.expect_body_regex is None)
                or response.complete
                or len(data) >= MAX_RESPONSE_BYTES
                or response.status not in url.expect_status
            ):
                return judge(
                    response, url.expect_status, url.expect_body, url.digest, url.expect_body_regex
                )
            if eof:
                raise HttpParseError("truncated response")
            try:
                chunk = await stream.receive_some(READ_CHUNK_BYTES)
            except trio.BrokenResourceError as exc:
                # A TLS peer that closes without close_notify: take what we have.
                if tls and isinstance(exc.__cause__, ssl.SSLEOFError):
                    chunk = b""
                else:
                    raise
            if not chunk:
                eof = True
            data += chunk[: MAX_RESPONSE_BYTES - len(data)]
    finally:
        sock.close()  # no TLS close_notify: the reset ends it


#: Share of the timeout a ``udp`` check without ``require_reply`` waits for an ICMP error
#: (the rest keeps it inside the probe's own timeout).
UDP_SILENCE_SHARE = 0.9


async def _udp_socket(address: IPAddress, bindto: IPAddress | None) -> trio.socket.SocketType:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    if bindto is not None:
        try:
            await sock.bind((bindto.compressed, 0))
        except BaseException:
            sock.close()
            raise
    return sock


async def probe_udp(check: HealthCheck, address: IPAddress, port: int) -> ProbeResult:
    """Send the payload; up when the reply starts with ``expect_reply`` (or, when no reply
    is required, when no ICMP port unreachable comes back within most of the timeout)."""
    with await _udp_socket(address, check.bindto) as sock:
        await sock.connect((address.compressed, port))
        await sock.send(bytes.fromhex(check.payload or ""))
        try:
            if not (check.require_reply or check.expect_reply is not None):
                with trio.move_on_after(check.timeout_s * UDP_SILENCE_SHARE):
                    await sock.recv(65535)  # any answer is up too
                return UP
            data = await sock.recv(65535)
        except ConnectionRefusedError:
            return ProbeResult(False, "port unreachable")
    if check.expect_reply is not None and not data.startswith(bytes.fromhex(check.expect_reply)):
        return ProbeResult(False, "reply mismatch")
    return UP


async def probe_dns(check: HealthCheck, address: IPAddress, port: int) -> ProbeResult:
    """One query over UDP; up when the response has ``expect_rcode`` and, with
    ``expect_answer``, that address among its A/AAAA answers. Datagrams that are not the
    answer to this query (another id) are ignored."""
    ident = int.from_bytes(os.urandom(2), "big")
    message = dnsmsg.query(ident, check.query_name, dnsmsg.QTYPES[check.query_type])
    with await _udp_socket(address, check.bindto) as sock:
        await sock.connect((address.compressed, port))
        await sock.send(message)
        while True:
            try:
                data = await sock.recv(65535)
            except ConnectionRefusedError:
                return ProbeResult(False, "port unreachable")
            try:
                response = dnsmsg.read_response(data, ident, message[12:])
            except dnsmsg.DnsError as exc:
                if str(exc) == "id mismatch":
                    continue
                return ProbeResult(False, f"bad response: {exc}")
            break
    if response.rcode != dnsmsg.RCODES[check.expect_rcode]:
        return ProbeResult(False, f"rcode {response.rcode_name}")
    if check.expect_answer is not None:
        found = {record.address() for record in response.answers}
        if check.expect_answer not in found:
            return ProbeResult(False, "answer mismatch")
    return UP


_TLS_CONTEXTS: dict[tuple[bool, str | None, str | None, str | None], ssl.SSLContext] = {}


def _tls_context(check: HealthCheck) -> ssl.SSLContext:
    """One client context per verification mode, CA file and client certificate, built
    once per process (building one costs ~ms; the files are read then, so a file changed
    in place is seen after a restart, a new path at once)."""
    key = (check.tls_verify, check.tls_ca_file, check.tls_cert_file, check.tls_key_file)
    ctx = _TLS_CONTEXTS.get(key)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=check.tls_ca_file)
        if not check.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if check.tls_cert_file is not None:
            ctx.load_cert_chain(check.tls_cert_file, check.tls_key_file)
        _TLS_CONTEXTS[key] = ctx
    return ctx


async def probe_script(check: HealthCheck, address: IPAddress, port: int | None) -> ProbeResult:
    assert check.script is not None
    env = dict(os.environ)
    env["HADIRECTOR_RS_ADDRESS"] = address.compressed
    env["HADIRECTOR_RS_PORT"] = str(check.port if check.port is not None else (port or 0))
    proc = await trio.lowlevel.open_process(
        list(check.script),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        **security.spawn_kwargs(),
    )
    try:
        code = await proc.wait()
    finally:
        # Timeout or cancel (or a normal exit that left a background child): the group goes.
        kill_group(proc.pid)
        if proc.returncode is None:
            with trio.CancelScope(shield=True):
                await proc.wait()
    if code == 0:
        return UP
    if check.dynamic_weight and code >= 2:  # keepalived's misc_dynamic: up, weight code - 2
        return ProbeResult(True, "ok", code - 2)
    if code < 0:
        return ProbeResult(False, f"killed by signal {-code}")
    return ProbeResult(False, f"exit {code}")
