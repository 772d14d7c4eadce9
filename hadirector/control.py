"""The control socket: a running agent's status and commands over a local unix socket.

Server side (in the agent's nursery): an ``AF_UNIX`` stream socket at ``[global]
control_socket``, mode 0600 (root only), its directory created if missing. A socket file
left by a crashed run is replaced; one a live agent still answers on is left alone (this
agent then runs without a control socket and says so). The file is removed on exit.

Protocol: newline-delimited JSON. Each request is one line, an object ``{"command":
"status"}`` or ``{"command": "reload"}`` (a bare word, ``status``, is accepted too, for
``socat``); each reply is one line, ``{"ok": true, ...}`` or ``{"ok": false, "error":
"..."}``. A bad request gets an error reply, never a crash; a request line is bounded
(``MAX_REQUEST_BYTES``), an idle connection is closed after ``IDLE_TIMEOUT_S`` and at most
``MAX_CONNECTIONS`` are served at once, so no client can hold up or exhaust the agent.

``status`` reports the router, per instance its state, configured and effective priority,
master advertisement interval, VIPs held and counters, the sync groups, IPVS and notify
scripts. ``reload`` does what SIGHUP does and returns the outcome: applied, or the
problems that made the agent keep its running configuration.

Client side (``request``): plain blocking stdlib sockets for the CLI, which needs neither
trio nor the agent's modules. This module makes no VRRP or IPVS decision: it reads the
agent's state and calls its ``reload``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hadirector import __version__, logs, metrics
from hadirector.vrrp.machine import State

if TYPE_CHECKING:
    from hadirector.agent import Agent, Instance

MAX_REQUEST_BYTES = 64 * 1024
MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 30.0
ACCEPT_RETRY_S = 0.1  # after accept() fails (out of descriptors)
ACCEPT_ERROR_LOG_INTERVAL_S = 10.0
CLIENT_TIMEOUT_S = 10.0
# A reload may wait for instances to stop (an identity change): give it room.
RELOAD_CLIENT_TIMEOUT_S = 60.0
COMMANDS = ("status", "reload")


class ControlError(Exception):
    """The CLI could not talk to the agent (not running, no permission, bad reply)."""


# -- status ----------------------------------------------------------------------------


def instance_status(inst: Instance) -> dict[str, Any]:
    """One VRRP instance as the ``status`` command reports it (JSON-ready)."""
    cfg = inst.cfg
    machine = inst.machine
    counters: dict[str, int] = dict(sorted(inst.counters.items()))
    return {
        "name": cfg.name,
        "state": inst.state.value,
        "interface": cfg.interface,
        "vrid": cfg.vrid,
        "version": cfg.version,
        "family": cfg.family,
        "unicast": cfg.unicast,
        "source": str(inst.sock.local_address) if inst.sock is not None else None,
        "priority": cfg.priority,
        "effective_priority": machine.effective_priority if machine is not None else None,
        "advert_interval_cs": cfg.advert_interval_cs,
        "master_adver_interval_cs": (
            machine.master_adver_interval_cs if machine is not None else None
        ),
        "vips": [str(v.interface) for v in cfg.virtual_addresses],
        "vips_held": sorted(inst.holding),
        "fault_reasons": fault_reasons(inst),
        "counters": counters,
        "machine_counters": dict(machine.counters) if machine is not None else {},
    }


def fault_reasons(inst: Instance) -> list[str]:
    """Why an instance is in FAULT (empty when it is not): the machine's own reasons (link
    down, tracking, sync group), and a re-created interface still without a source address."""
    machine = inst.machine
    if machine is None or inst.state is not State.FAULT:
        return []
    reasons = list(machine.fault_reasons)
    if inst.waiting_for_address:
        reasons = [r for r in reasons if r != "link down"]
        reasons.insert(0, f"{inst.cfg.interface} re-created, no source address yet")
    return reasons


def ipvs_status(ipvs: Any) -> dict[str, Any]:
    """The IPVS component's state; fields its implementation does not keep are None."""
    owned = getattr(ipvs, "owned", None)
    refused = getattr(ipvs, "refused", None)
    counters = getattr(ipvs, "counters", None)
    config = getattr(ipvs, "config", None)
    return {
        "available": getattr(ipvs, "available", None),
        "configured_services": (len(config.virtual_servers) if config is not None else None),
        "services": sorted(str(k) for k in owned) if owned is not None else None,
        "refused": sorted(str(k) for k in refused) if refused is not None else None,
        "last_reconcile_age_s": _age(getattr(ipvs, "last_reconcile_monotonic", None)),
        "counters": dict(counters) if counters is not None else {},
    }


def _age(monotonic_at: float | None) -> float | None:
    return None if monotonic_at is None else round(time.monotonic() - monotonic_at, 3)


def checks_status(agent: Agent) -> dict[str, Any]:
    """Health checks: how many run, and which real servers are down (service -> servers)."""
    checker = getattr(agent, "checks", None)
    if checker is None:
        return {"running": 0, "down": []}
    down = sorted(f"{service} {server}" for service, server in checker.down)
    return {"running": len(checker.running), "down": down}


def status(agent: Agent, started_monotonic: float) -> dict[str, Any]:
    """The whole ``status`` reply body: router, instances, sync groups, IPVS, notify."""
    cfg = agent.config
    groups = []
    for g in cfg.sync_groups:
        members = {m: agent.instances[m].state.value for m in g.instances if m in agent.instances}
        groups.append({"name": g.name, "state": agent.group_state.get(g.name), "members": members})
    notifier = agent.notifier
    return {
        "router_id": cfg.global_.router_id or socket.gethostname(),
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - started_monotonic, 3),
        "stopping": agent.stopping,
        "instances": [instance_status(i) for _, i in sorted(agent.instances.items())],
        "sync_groups": groups,
        "ipvs": ipvs_status(agent.ipvs),
        "checks": checks_status(agent),
        "notify": {
            "pending": getattr(notifier, "pending", 0),
            "failures": getattr(notifier, "failures", None),
        },
    }


# -- server ----------------------------------------------------------------------------


class Operations:
    """The agent's operator interfaces: the control socket and the metrics endpoint."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.started_monotonic = time.monotonic()
        self.log = logs.get(component="control")
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        self._reload_lock = trio.Lock()
        self._accept_error_logged = -math.inf  # trio time of the last accept error logged

    def status(self) -> dict[str, Any]:
        return status(self.agent, self.started_monotonic)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the control socket and, if configured, metrics, until cancelled."""
        glob = self.agent.config.global_
        async with trio.open_nursery() as nursery:
            await nursery.start(self.serve_control, glob.control_socket)
            if glob.metrics_listen is not None:
                await nursery.start(self.serve_metrics, glob.metrics_listen)
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
        await metrics.serve(listeners, lambda: metrics.render(self.status()))

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
                    await _send(stream, {"ok": False, "error": "too many connections"})
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
                    await _send(stream, {"ok": False, "error": "request too long"})
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
                await _send(stream, {"ok": False, "error": "request too long"})
                return
            if line.strip():
                await _send(stream, await self.handle(line))

    async def handle(self, line: bytes) -> dict[str, Any]:
        """One request line to its reply; never raises for what a client sends."""
        command, error = parse_request(line)
        if error is not None:
            return {"ok": False, "error": error}
        if command == "status":
            return {"ok": True, "status": self.status()}
        async with self._reload_lock:
            self.log.info("control.reload")
            problems = await self.agent.reload()
        if problems:
            return {"ok": False, "error": "configuration not applied", "problems": problems}
        return {"ok": True, "reloaded": True}


def parse_request(line: bytes) -> tuple[str, str | None]:
    """(command, error): a JSON object with "command", or a bare command word."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "", "request is not UTF-8"
    if text.startswith("{"):
        try:
            request = json.loads(text)
        except ValueError as exc:
            return "", f"request is not valid JSON: {exc}"
        if not isinstance(request, dict):
            return "", "request must be a JSON object"
        command = request.get("command")
    else:
        command = text
    if not isinstance(command, str) or command not in COMMANDS:
        return "", f"unknown command {command!r}; commands: {', '.join(COMMANDS)}"
    return command, None


async def _send(stream: trio.SocketStream, reply: Mapping[str, Any]) -> None:
    await stream.send_all(json.dumps(reply, separators=(",", ":")).encode() + b"\n")


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


# -- client ----------------------------------------------------------------------------


def request(path: str, command: str, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Send one command to the agent at ``path``; its reply (raises ``ControlError``)."""
    if timeout_s is None:
        timeout_s = RELOAD_CLIENT_TIMEOUT_S if command == "reload" else CLIENT_TIMEOUT_S
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(
                f"hadirector is not running (no agent answers on {path}: {exc.strerror})"
            ) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (the socket is root's)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc}") from None
        try:
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = bytearray()
            while b"\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlError(f"no reply from the agent on {path} in {timeout_s:g} s") from None
        except OSError as exc:
            raise ControlError(f"connection to {path} failed: {exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(bytes(data).partition(b"\n")[0])
    except ValueError:
        raise ControlError(f"the agent on {path} sent an unreadable reply") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the agent on {path} sent an unreadable reply")
    return reply


def format_status(st: Mapping[str, Any]) -> str:
    """The ``status`` reply as a human-readable table."""
    lines = [
        f"router {st['router_id']}  version {st['version']}  pid {st['pid']}  "
        f"up {_duration(st['uptime_s'])}" + ("  (stopping)" if st.get("stopping") else "")
    ]
    header = ("INSTANCE", "STATE", "PRIO", "EFF", "VRID", "IFACE", "ADVER", "SENT", "RCVD")
    rows: list[tuple[str, ...]] = [(*header, "REJ", "VIPS HELD")]
    for inst in st["instances"]:
        counters = inst["counters"]
        rejected = sum(v for k, v in counters.items() if k.startswith("rejected_"))
        adver = inst["master_adver_interval_cs"]
        eff = inst["effective_priority"]
        rows.append(
            (
                inst["name"],
                inst["state"],
                str(inst["priority"]),
                "-" if eff is None else str(eff),
                str(inst["vrid"]),
                inst["interface"],
                "-" if adver is None else f"{adver / 100:.2f}s",
                str(counters.get("adverts_sent", 0)),
                str(counters.get("adverts_accepted", 0)),
                str(rejected),
                ",".join(inst["vips_held"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for inst in st["instances"]:
        if inst.get("fault_reasons"):
            lines.append(f"{inst['name']} in FAULT: {', '.join(inst['fault_reasons'])}")
    for g in st["sync_groups"]:
        members = ", ".join(f"{m}={s}" for m, s in g["members"].items())
        lines.append(f"sync group {g['name']}: {g['state'] or '-'} ({members})")
    ipvs = st["ipvs"]
    available = {True: "available", False: "unavailable", None: "not used"}[ipvs["available"]]
    text = f"ipvs: {available}"
    if ipvs["services"] is not None:
        text += f", {len(ipvs['services'])} service(s) owned"
    counters = ipvs["counters"]
    if counters:
        text += ", " + ", ".join(f"{k} {v}" for k, v in sorted(counters.items()))
    if ipvs["last_reconcile_age_s"] is not None:
        text += f", last reconcile {_duration(ipvs['last_reconcile_age_s'])} ago"
    lines.append(text)
    checks = st.get("checks") or {"running": 0, "down": []}
    if checks["running"]:
        down = ", ".join(checks["down"]) or "none"
        lines.append(f"checks: {checks['running']} running, down: {down}")
    notify = st["notify"]
    text = f"notify: {notify['pending']} pending"
    if notify["failures"] is not None:
        text += f", {notify['failures']} failed"
    lines.append(text)
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s"
