"""Prometheus metrics: the status report rendered in the text exposition format, and a
tiny HTTP/1.0 server for it.

Rendering (``families``, ``render_families``, ``render``) is pure: it turns the agent's
status snapshot (hadirector/status.py, what the control socket also serves) into metric
families and text, with no I/O and no clock, so it is tested on exact text. Label values
are escaped as the format requires (backslash, double quote, newline); HELP text likewise
(backslash, newline).

The server (``serve``) answers ``GET /metrics`` over HTTP/1.0 and closes the connection. A
request is bounded in size (``MAX_REQUEST_BYTES``) and time (``REQUEST_TIMEOUT_S``), and at
most ``MAX_CONNECTIONS`` are served at once: a slow or hostile client costs the agent
nothing but one small task. Anything else gets 404, 405 or 400. It must not change the
agent's state: it only reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import trio

from hadirector.status import STATES, AgentStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 8

Kind = Literal["counter", "gauge"]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One line of a family: label pairs (in order) and a value."""

    labels: Labels
    value: float


@dataclass
class Family:
    """A metric family: its name (counters end in ``_total``), kind, help and samples."""

    name: str
    kind: Kind
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(tuple(labels.items()), value))


# -- text format -------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """A label value as the text format quotes it: \\ " and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers without a decimal point; infinities and NaN as the format spells them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render_families(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (HELP, TYPE, then each sample)."""
    out: list[str] = []
    for fam in families:
        out.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        out.append(f"# TYPE {fam.name} {fam.kind}")
        for sample in fam.samples:
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sample.labels)
            name = f"{fam.name}{{{labels}}}" if labels else fam.name
            out.append(f"{name} {format_value(sample.value)}")
    return "\n".join(out) + "\n" if out else ""


# -- from the status snapshot -------------------------------------------------------------


def families(status: AgentStatus) -> list[Family]:
    """Metric families from the agent's status snapshot."""
    info = Family("hadirector_info", "gauge", "Agent version and router id (always 1).")
    info.add(1, version=status.version, router_id=status.router_id)
    uptime = Family("hadirector_uptime_seconds", "gauge", "Seconds since the agent started.")
    uptime.add(float(status.uptime_s))

    state = Family(
        "hadirector_vrrp_state", "gauge", "VRRP instance state: 1 for the current state."
    )
    prio = Family(
        "hadirector_vrrp_priority", "gauge", "Effective priority after tracking (0 in FAULT)."
    )
    prio_cfg = Family("hadirector_vrrp_priority_configured", "gauge", "Configured priority.")
    adver = Family(
        "hadirector_vrrp_master_adver_interval_seconds",
        "gauge",
        "Master advertisement interval in use (a v3 backup adopts the master's).",
    )
    vips = Family("hadirector_vrrp_vips_held", "gauge", "Virtual addresses this node holds.")
    transitions = Family(
        "hadirector_vrrp_transitions_total",
        "counter",
        "State transitions, by the state entered.",
    )
    sent = Family("hadirector_vrrp_adverts_sent_total", "counter", "Advertisements sent.")
    received = Family(
        "hadirector_vrrp_adverts_received_total",
        "counter",
        "Advertisements for this VRID that passed the receive checks.",
    )
    rejected = Family(
        "hadirector_vrrp_adverts_rejected_total",
        "counter",
        "Advertisements rejected, by reason (they change nothing).",
    )
    send_errors = Family(
        "hadirector_vrrp_send_errors_total", "counter", "Advertisements the kernel refused."
    )
    announcements = Family(
        "hadirector_vrrp_announcements_total",
        "counter",
        "Gratuitous ARPs and unsolicited NAs sent for held addresses.",
    )
    for inst in status.instances:
        name = inst.name
        counters = inst.counters
        for s in STATES:
            state.add(1 if inst.state == s else 0, instance=name, state=s)
        eff = inst.effective_priority
        prio.add(eff if eff is not None else 0, instance=name)
        prio_cfg.add(inst.priority, instance=name)
        if inst.master_adver_interval_cs is not None:
            adver.add(inst.master_adver_interval_cs / 100, instance=name)
        vips.add(len(inst.vips_held), instance=name)
        for s in ("BACKUP", "MASTER", "FAULT", "STOPPED"):
            transitions.add(counters.get(f"to_{s.lower()}", 0), instance=name, state=s)
        sent.add(counters.get("adverts_sent", 0), instance=name)
        received.add(counters.get("adverts_accepted", 0), instance=name)
        for key in sorted(counters):
            if key.startswith("rejected_"):
                rejected.add(counters[key], instance=name, reason=key[len("rejected_") :])
        send_errors.add(counters.get("send_errors", 0), instance=name)
        announcements.add(counters.get("announcements", 0), instance=name)
    out = [info, uptime, state, prio, prio_cfg, adver, vips, transitions, sent, received]
    out += [rejected, send_errors, announcements]

    group = Family(
        "hadirector_sync_group_state", "gauge", "Sync group state: 1 for the common state."
    )
    for g in status.sync_groups:
        for s in STATES:
            group.add(1 if g.state == s else 0, group=g.name, state=s)
    out.append(group)

    ipvs = status.ipvs
    if ipvs.available is not None:
        fam = Family("hadirector_ipvs_available", "gauge", "1 when the kernel has IPVS.")
        fam.add(1 if ipvs.available else 0)
        out.append(fam)
    if ipvs.services is not None:
        fam = Family("hadirector_ipvs_services", "gauge", "Virtual services this agent programs.")
        fam.add(len(ipvs.services))
        out.append(fam)
    ipvs_help = {
        "reconciles": "Reconciliations of the kernel table with the configuration.",
        "writes": "IPVS write operations that succeeded.",
        "errors": "IPVS reads and writes that failed.",
    }
    for key in sorted(ipvs.counters):
        what = ipvs_help.get(key, f"IPVS {key}.")
        fam = Family(f"hadirector_ipvs_{_metric_word(key)}_total", "counter", what)
        fam.add(ipvs.counters[key])
        out.append(fam)
    if ipvs.last_reconcile_age_s is not None:
        fam = Family(
            "hadirector_ipvs_last_reconcile_age_seconds",
            "gauge",
            "Seconds since the last reconcile.",
        )
        fam.add(float(ipvs.last_reconcile_age_s))
        out.append(fam)

    notify = status.notify
    pending = Family("hadirector_notify_pending", "gauge", "Notify scripts queued or running.")
    pending.add(notify.pending)
    out.append(pending)
    if notify.failures is not None:
        fam = Family(
            "hadirector_notify_failures_total",
            "counter",
            "Notify scripts that failed to start, timed out or exited non-zero.",
        )
        fam.add(notify.failures)
        out.append(fam)
    return [f for f in out if f.samples]


def _metric_word(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key.lower())


def render(status: AgentStatus) -> str:
    """The ``/metrics`` page for the agent's status snapshot."""
    return render_families(families(status))


# -- the HTTP/1.0 endpoint ---------------------------------------------------------------


def respond(request: bytes, page: Callable[[], str]) -> bytes:
    """The whole HTTP/1.0 response to one request head (``page`` renders /metrics)."""
    line = request.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _response(400, "Bad Request", b"bad request\n")
    method, target = parts[0], parts[1]
    if method not in (b"GET", b"HEAD"):
        return _response(405, "Method Not Allowed", b"only GET\n", [("Allow", "GET, HEAD")])
    path = target.split(b"?", 1)[0]
    if path == b"/metrics":
        body = page().encode()
        return _response(200, "OK", body, [("Content-Type", CONTENT_TYPE)], head=method == b"HEAD")
    if path == b"/":
        return _response(200, "OK", b"hadirector: metrics at /metrics\n")
    return _response(404, "Not Found", b"not found\n")


def _response(
    code: int,
    reason: str,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    *,
    head: bool = False,
) -> bytes:
    lines = [f"HTTP/1.0 {code} {reason}", f"Content-Length: {len(body)}", "Connection: close"]
    if not any(k == "Content-Type" for k, _ in headers):
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    """The request head (up to the blank line), None if too big or the client went away."""
    data = bytearray()
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_REQUEST_BYTES:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return bytes(data) if data else None
        data += chunk
    return bytes(data)


async def serve(listeners: Sequence[trio.SocketListener], page: Callable[[], str]) -> None:
    """Serve ``GET /metrics`` on ``listeners`` (from ``trio.open_tcp_listeners``) until
    cancelled; ``page`` renders the text for each request."""
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                return
            try:
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    head = await _read_head(stream)
                    if head is None:
                        await stream.send_all(_response(400, "Bad Request", b"bad request\n"))
                        return
                    await stream.send_all(respond(head, page))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                limiter.release()

    await trio.serve_listeners(handler, list(listeners))
