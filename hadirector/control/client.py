"""The CLI's side of the control socket: plain blocking sockets, standard library only.

``hadirector status`` and ``reload`` import this module, the protocol and the status
snapshot, and nothing else of the agent's (no trio, structlog or pyroute2): they answer in
the time the interpreter takes to start, and work while the agent's dependencies do not.
"""

from __future__ import annotations

import socket
from typing import Any

from hadirector.control.protocol import decode_reply, request_line
from hadirector.status import AgentStatus, StatusError

CLIENT_TIMEOUT_S = 10.0
# A reload may wait for instances to stop (an identity change): give it room.
RELOAD_CLIENT_TIMEOUT_S = 60.0


class ControlError(Exception):
    """The CLI could not talk to the agent (not running, no permission, bad reply)."""


def request(
    path: str, command: str, *, timeout_s: float | None = None, **args: str
) -> dict[str, Any]:
    """Send one command (with its arguments) to the agent at ``path``; its reply (raises
    ``ControlError``)."""
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
            raise ControlError(
                f"permission denied on {path}: the socket is for root, the agent's user and "
                "members of its status_group"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc}") from None
        try:
            sock.sendall(request_line(command, **args))
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
        return decode_reply(bytes(data))
    except ValueError:
        raise ControlError(f"the agent on {path} sent an unreadable reply") from None


def read_status(reply: dict[str, Any], path: str) -> AgentStatus:
    """The snapshot in a ``status`` reply (``ControlError`` if it is not well formed)."""
    try:
        return AgentStatus.from_json(reply.get("status"))
    except StatusError as exc:
        raise ControlError(f"the agent on {path} sent an unreadable status: {exc}") from None


def format_status(st: AgentStatus) -> str:
    """The snapshot as the human-readable table ``hadirector status`` prints."""
    lines = [
        f"router {st.router_id}  version {st.version}  pid {st.pid}  "
        f"up {_duration(st.uptime_s)}" + ("  (stopping)" if st.stopping else "")
    ]
    header = ("INSTANCE", "STATE", "PRIO", "EFF", "VRID", "IFACE", "ADVER", "SENT", "RCVD")
    rows: list[tuple[str, ...]] = [(*header, "REJ", "VIPS HELD")]
    for inst in st.instances:
        adver = inst.master_adver_interval_cs
        eff = inst.effective_priority
        rows.append(
            (
                inst.name,
                inst.state,
                str(inst.priority),
                "-" if eff is None else str(eff),
                str(inst.vrid),
                inst.interface,
                "-" if adver is None else f"{adver / 100:.2f}s",
                str(inst.counters.get("adverts_sent", 0)),
                str(inst.counters.get("adverts_accepted", 0)),
                str(inst.rejected),
                ",".join(inst.vips_held) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for inst in st.instances:
        if inst.fault_reasons:
            lines.append(f"{inst.name} in FAULT: {', '.join(inst.fault_reasons)}")
    for g in st.sync_groups:
        members = ", ".join(f"{m}={s}" for m, s in g.members.items())
        lines.append(f"sync group {g.name}: {g.state or '-'} ({members})")
    ipvs = st.ipvs
    available = {True: "available", False: "unavailable", None: "not used"}[ipvs.available]
    text = f"ipvs: {available}"
    if ipvs.services is not None:
        text += f", {len(ipvs.services)} service(s) owned"
    if ipvs.counters:
        text += ", " + ", ".join(f"{k} {v}" for k, v in sorted(ipvs.counters.items()))
    if ipvs.last_reconcile_age_s is not None:
        text += f", last reconcile {_duration(ipvs.last_reconcile_age_s)} ago"
    lines.append(text)
    if st.checks.running:
        down = ", ".join(st.checks.down) or "none"
        lines.append(f"checks: {st.checks.running} running, down: {down}")
    if st.checks.drained:
        lines.append(f"drained: {', '.join(st.checks.drained)}")
    if st.checks.quorum_lost:
        lines.append(f"without quorum: {', '.join(st.checks.quorum_lost)}")
    anycast = st.anycast
    if anycast.device is not None:
        where = f"dev {anycast.device} table {anycast.route_table}"
        lines.append(f"anycast: {where}" + (f", error: {anycast.error}" if anycast.error else ""))
        for a in anycast.addresses:
            word = "announced" if a.announced else "withdrawn"
            lines.append(f"  {a.address} {word}: {a.reason}")
    resync = st.resync
    if resync is not None:
        ago = f"{_duration(resync.age_s)} ago"
        if resync.role == "master":
            lines.append(f"resync: sent {resync.entries} entries in {resync.seconds:.2f}s, {ago}")
        elif resync.arrived:
            lines.append(
                f"resync: received {resync.entries} entries in {resync.seconds:.2f}s, {ago}"
            )
        else:
            lines.append(f"resync: none arrived within {resync.seconds:.0f}s, {ago}")
    text = f"notify: {st.notify.pending} pending"
    if st.notify.failures is not None:
        text += f", {st.notify.failures} failed"
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
