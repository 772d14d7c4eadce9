"""The agent's operator interfaces: the control socket and the metrics endpoint (trio).

An ``AF_UNIX`` stream socket at ``[global] control_socket``, mode 0600 (the agent's user
only), its directory created if missing. Every connection's peer is checked with
``SO_PEERCRED``: root and the agent's own user may send any command; with ``[global]
status_group`` the socket is mode 0660 in that group, and anyone else who could connect
(a member of the group) may send only ``READ_ONLY_COMMANDS``; without it, anyone else is
refused outright. A socket file left by a crashed run is replaced; one a live
agent still answers on is left alone (this agent then runs without a control socket and
says so). The file is removed on exit. The wire format is ``protocol``'s; a bad request
gets an error reply, never a crash. An idle connection is closed after ``IDLE_TIMEOUT_S``
and at most ``MAX_CONNECTIONS`` are served at once, so no client can hold up or exhaust
the agent.

``status`` replies with the agent's status snapshot (hadirector/status.py); ``reload`` does
what SIGHUP does (``Controlled.reload``, which serialises reloads) and returns the outcome:
applied, or the problems that made the agent keep its running configuration; ``drain`` /
``undrain`` (``Controlled.drain``) quiesce or restore one real server and answer what was
done or why not. The metrics page renders the same snapshot.

This module knows the agent only as ``Controlled``: it makes no VRRP or IPVS decision and
does not import the agent.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any, Protocol

import trio

from hadirector import logs, metrics
from hadirector.control.protocol import (
    MAX_REQUEST_BYTES,
    RequestError,
    encode_reply,
    error_reply,
    parse,
)
from hadirector.status import AgentStatus

#: What a member of ``status_group`` may ask; everything else needs root or the agent's user.
READ_ONLY_COMMANDS = frozenset({"status"})
MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 30.0
ACCEPT_RETRY_S = 0.1  # after accept() fails (out of descriptors)
ACCEPT_ERROR_LOG_INTERVAL_S = 10.0
#: Bad requests and clients turned away are logged at most once per this many seconds (per
#: event), with the number of the others since.
ABUSE_LOG_INTERVAL_S = 10.0


class Controlled(Protocol):
    """What the server needs of the agent."""

    def status(self) -> AgentStatus: ...

    def runtime_metrics(self) -> list[Any]: ...

    async def reload(self) -> list[str]: ...

    def drain(self, service: str, server: str, drained: bool) -> tuple[bool, str]: ...


class Operations:
    """The control socket and the metrics endpoint of one agent."""

    def __init__(self, agent: Controlled, *, status_gid: int | None = None) -> None:
        self.agent = agent
        self.status_gid = status_gid
        self.log = logs.get(component="control")
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        self._accept_error_logged = -math.inf  # trio time of the last accept error logged
        self._abuse_logged: dict[str, float] = {}  # event: trio time it was last logged
        self._abuse_unlogged: dict[str, int] = {}  # event: occurrences not logged since

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
        agent = self.agent
        await metrics.serve(
            listeners, lambda: metrics.render(agent.status(), agent.runtime_metrics())
        )

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
        if self.status_gid is not None:
            try:  # EPERM unless the agent is root or a member of the group
                os.chown(path, -1, self.status_gid)
                os.chmod(path, 0o660)
            except OSError as exc:
                self.log.error(
                    "control.status_group_failed",
                    path=path,
                    gid=self.status_gid,
                    error=str(exc),
                    detail="the socket stays 0600; the agent's user must be root or a member "
                    "of status_group (SupplementaryGroups= in the unit)",
                )
                self.status_gid = None
        self.log.info("control.listening", path=path, status_gid=self.status_gid)
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
                    self._log_abuse("control.busy", limit=MAX_CONNECTIONS)
                    await stream.send_all(encode_reply(error_reply("too many connections")))
                    return
                try:
                    await self._serve_lines(stream, peer_uid(stream.socket))
                finally:
                    self._limiter.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    def _log_abuse(self, event: str, **fields: Any) -> None:
        """Log ``event`` (a bad request, a client turned away) at most once per
        ``ABUSE_LOG_INTERVAL_S``, with how many were not logged since the last line."""
        now = trio.current_time()
        if now - self._abuse_logged.get(event, -math.inf) < ABUSE_LOG_INTERVAL_S:
            self._abuse_unlogged[event] = self._abuse_unlogged.get(event, 0) + 1
            return
        self._abuse_logged[event] = now
        self.log.warning(event, suppressed=self._abuse_unlogged.pop(event, 0), **fields)

    @staticmethod
    def privileged(uid: int | None) -> bool:
        """Root and the agent's own user may send any command (None: in-process caller)."""
        return uid is None or uid == 0 or uid == os.geteuid()

    def refusal(self, uid: int, command: str | None = None) -> str:
        agent = os.geteuid()
        who = "root" if agent == 0 else f"root or uid {agent} (the agent's user)"
        if command is None:
            return f"permission denied: uid {uid} may not use this socket (only {who})"
        return (
            f"permission denied: uid {uid} may only run {', '.join(sorted(READ_ONLY_COMMANDS))}"
            f" (status_group); {command!r} needs {who}"
        )

    async def _serve_lines(self, stream: trio.SocketStream, uid: int | None = None) -> None:
        buffer = bytearray()
        while True:
            while b"\n" not in buffer:
                if len(buffer) > MAX_REQUEST_BYTES:
                    self._log_abuse("control.bad_request", error="request too long")
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
                self._log_abuse("control.bad_request", error="request too long")
                await stream.send_all(encode_reply(error_reply("request too long")))
                return
            if line.strip():
                await stream.send_all(encode_reply(await self.handle(line, uid)))

    async def handle(self, line: bytes, uid: int | None = None) -> dict[str, Any]:
        """One request line from a peer of ``uid`` (None: trusted, in-process) to its reply;
        never raises for what a client sends."""
        try:
            request = parse(line)
        except RequestError as exc:
            self._log_abuse("control.bad_request", error=str(exc))
            return error_reply(str(exc))
        command = request.command
        if not self.privileged(uid):
            assert uid is not None
            if self.status_gid is None:
                self.log.warning("control.refused", uid=uid, command=command)
                return error_reply(self.refusal(uid))
            if command not in READ_ONLY_COMMANDS:
                self.log.warning("control.refused", uid=uid, command=command)
                return error_reply(self.refusal(uid, command))
        if command == "status":
            return {"ok": True, "status": self.agent.status().to_json()}
        if command in ("drain", "undrain"):
            service, server = request.args["service"], request.args["server"]
            self.log.info(f"control.{command}", service=service, server=server)
            done, text = self.agent.drain(service, server, command == "drain")
            return {"ok": True, "result": text} if done else error_reply(text)
        self.log.info("control.reload")
        problems = await self.agent.reload()
        if problems:
            return {"ok": False, "error": "configuration not applied", "problems": problems}
        return {"ok": True, "reloaded": True}


def peer_uid(sock: Any) -> int:
    """The uid of the process at the other end of a unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


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
