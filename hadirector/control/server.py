"""The agent's operator interfaces: the control socket and the metrics endpoint (trio).

An ``AF_UNIX`` stream socket at ``[global] control_socket``, mode 0600 (root only), its
directory created if missing. A socket file left by a crashed run is replaced; one a live
agent still answers on is left alone (this agent then runs without a control socket and
says so). The file is removed on exit. The wire format is ``protocol``'s; a bad request
gets an error reply, never a crash. An idle connection is closed after ``IDLE_TIMEOUT_S``
and at most ``MAX_CONNECTIONS`` are served at once, so no client can hold up or exhaust
the agent.

``status`` replies with the agent's status snapshot (hadirector/status.py); ``reload`` does
what SIGHUP does (``Controlled.reload``, which serialises reloads) and returns the outcome:
applied, or the problems that made the agent keep its running configuration. The metrics
page renders the same snapshot.

This module knows the agent only as ``Controlled``: it makes no VRRP or IPVS decision and
does not import the agent.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import stat
from pathlib import Path
from typing import Any, Protocol

import trio

from hadirector import logs, metrics
from hadirector.control.protocol import (
    MAX_REQUEST_BYTES,
    RequestError,
    encode_reply,
    error_reply,
    parse_request,
)
from hadirector.status import AgentStatus

MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 30.0
ACCEPT_RETRY_S = 0.1  # after accept() fails (out of descriptors)
ACCEPT_ERROR_LOG_INTERVAL_S = 10.0


class Controlled(Protocol):
    """What the server needs of the agent."""

    def status(self) -> AgentStatus: ...

    async def reload(self) -> list[str]: ...


class Operations:
    """The control socket and the metrics endpoint of one agent."""

    def __init__(self, agent: Controlled) -> None:
        self.agent = agent
        self.log = logs.get(component="control")
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        self._accept_error_logged = -math.inf  # trio time of the last accept error logged

    async def run(
        self,
        control_socket: str,
        metrics_listen: tuple[Any, int] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the control socket and, if ``metrics_listen`` is set, metrics, until
        cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.serve_control, control_socket)
            if metrics_listen is not None:
                await nursery.start(self.serve_metrics, metrics_listen)
            task_status.started()

    async def serve_metrics(
        self,
        listen: tuple[Any, int],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        address, port = listen
        try:
            listeners = await trio.open_tcp_listeners(port, host=str(address))
        except OSError as exc:
            self.log.error("metrics.listen_failed", listen=f"{address}:{port}", error=str(exc))
            task_status.started()
            return
        self.log.info("metrics.listening", listen=f"{address}:{port}")
        task_status.started()
        await metrics.serve(listeners, lambda: metrics.render(self.agent.status()))

    async def serve_control(
        self, path: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            sock = _bind(Path(path))
        except OSError as exc:
            self.log.error("control.unavailable", path=path, error=str(exc))
            task_status.started()
            return
        ino = os.stat(path).st_ino
        self.log.info("control.listening", path=path)
        listener = trio.SocketListener(sock)
        try:
            async with listener:
                task_status.started()
                async with trio.open_nursery() as nursery:
                    while True:
                        stream = await self._accept(listener)
                        nursery.start_soon(self._connection, stream)
        finally:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == ino:
                    os.unlink(path)

    async def _accept(self, listener: trio.SocketListener) -> trio.SocketStream:
        """The next client; out of descriptors (EMFILE, ENFILE...) waits and tries again."""
        while True:
            try:
                return await listener.accept()
            except OSError as exc:
                now = trio.current_time()
                if now - self._accept_error_logged >= ACCEPT_ERROR_LOG_INTERVAL_S:
                    self._accept_error_logged = now
                    self.log.error("control.accept_failed", error=str(exc))
                await trio.sleep(ACCEPT_RETRY_S)

    async def _connection(self, stream: trio.SocketStream) -> None:
        """Serve one client; nothing the client does (or fails to do) escapes."""
        try:
            async with stream:
                try:
                    self._limiter.acquire_nowait()
                except trio.WouldBlock:
                    await stream.send_all(encode_reply(error_reply("too many connections")))
                    return
                try:
                    await self._serve_lines(stream)
                finally:
                    self._limiter.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _serve_lines(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        while True:
            while b"\n" not in buffer:
                if len(buffer) > MAX_REQUEST_BYTES:
                    await stream.send_all(encode_reply(error_reply("request too long")))
                    return
                with trio.move_on_after(IDLE_TIMEOUT_S):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                return  # idle
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer = bytearray(rest)
            if len(line) > MAX_REQUEST_BYTES:
                await stream.send_all(encode_reply(error_reply("request too long")))
                return
            if line.strip():
                await stream.send_all(encode_reply(await self.handle(line)))

    async def handle(self, line: bytes) -> dict[str, Any]:
        """One request line to its reply; never raises for what a client sends."""
        try:
            command = parse_request(line)
        except RequestError as exc:
            return error_reply(str(exc))
        if command == "status":
            return {"ok": True, "status": self.agent.status().to_json()}
        self.log.info("control.reload")
        problems = await self.agent.reload()
        if problems:
            return {"ok": False, "error": "configuration not applied", "problems": problems}
        return {"ok": True, "reloaded": True}


def _bind(path: Path) -> trio.socket.SocketType:
    """A listening unix socket at ``path``, mode 0600; a stale socket file is replaced."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        mode = path.lstat().st_mode
        if not stat.S_ISSOCK(mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        if _answers(path):
            raise OSError(f"{path} is in use by another running agent")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # never visible with wider permissions, not even briefly
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(MAX_CONNECTIONS)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    return trio.socket.from_stdlib_socket(sock)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
