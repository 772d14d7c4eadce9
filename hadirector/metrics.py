"""Prometheus metrics: the status report and the running agent's real servers, checks and
alerts, written in the text exposition format by prometheus_client, and a tiny HTTP/1.0
server for it.

``families`` turns the agent's status snapshot (hadirector/status.py, what the control
socket also serves) into metric families, with no I/O and no clock; ``runtime_metrics``
reads the health checker and the alerts. The text (escaping, value formatting, counters'
``_total`` suffix) is prometheus_client's; tests read it back with the library's parser.

The server (``serve``) answers ``GET /metrics`` over HTTP/1.0 and closes the connection. A
request is bounded in size (``MAX_REQUEST_BYTES``) and time (``REQUEST_TIMEOUT_S``), and at
most ``MAX_CONNECTIONS`` are served at once: a slow or hostile client costs the agent
nothing but one small task. Anything else gets 404, 405 or 400. It must not change the
agent's state: it only reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from hadirector.checks.runner import DURATION_BUCKETS_S
from hadirector.config.schema import Config
from hadirector.ipvs.model import dest_key_of, service_key_of
from hadirector.status import STATES, AgentStatus

# The text format 0.0.4: every name here is a legacy one (newer prometheus_client versions
# announce 1.0.0, which older Prometheus servers do not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192
# Rejection reasons the receive checks name themselves (vrrp/receive.py); the codec's
# (checksum, length, ...) appear once counted.
REJECT_REASONS = ("auth", "replay", "source", "ttl", "version")
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


# -- exposition (prometheus_client) -------------------------------------------------------


def _metric(fam: Family) -> Metric:
    """One of our families as prometheus_client's (a counter's samples keep ``_total``)."""
    names = [k for k, _ in fam.samples[0].labels] if fam.samples else []
    metric: GaugeMetricFamily | CounterMetricFamily
    if fam.kind == "counter":
        metric = CounterMetricFamily(fam.name, fam.help, labels=names)
    else:
        metric = GaugeMetricFamily(fam.name, fam.help, labels=names)
    for sample in fam.samples:
        metric.add_metric([v for _, v in sample.labels], sample.value)
    return metric


class _Page:
    """A collector for one scrape: yields the metrics it was built with."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render_metrics(metrics: Iterable[Metric]) -> str:
    """The exposition text of ``metrics``, written by prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Page(list(metrics)))
    return generate_latest(registry).decode()


def render_families(families: Iterable[Family]) -> str:
    """The exposition text of our own ``families``."""
    return render_metrics(_metric(f) for f in families)


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
        reasons = {k[len("rejected_") :] for k in counters if k.startswith("rejected_")}
        for reason in sorted(reasons | set(REJECT_REASONS)):
            # The receive checks' own reasons are there from the start, at 0: a rate()
            # over them works before the first rejection.
            rejected.add(counters.get(f"rejected_{reason}", 0), instance=name, reason=reason)
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
        "edits": "Health changes written as direct destination edits (no table read).",
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

    anycast = status.anycast
    if anycast.device is not None:
        fam = Family(
            "hadirector_anycast_announced",
            "gauge",
            "Anycast address: 1 while its route is in the table the BGP speaker announces.",
        )
        for a in anycast.addresses:
            fam.add(1 if a.announced else 0, address=a.address)
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


def render(status: AgentStatus, extra: Iterable[Metric] = ()) -> str:
    """The ``/metrics`` page for the agent's status snapshot (and ``extra`` metrics:
    ``runtime_metrics``)."""
    return render_metrics([*(_metric(f) for f in families(status)), *extra])


# -- from the running agent (real servers, checks, alerts) ---------------------------------


def runtime_metrics(
    config: Config,
    checker: Any,
    alerts: Any,
    sync: Any = None,
    ipvs: Any = None,
    pools: Any = None,
) -> list[Metric]:
    """Per real server health and weights, check durations and failures (from the health
    checker, checks/runner.py), alert deliveries (alerts/dispatch.py), the connection
    sync daemons (sync/daemon.py) and the IPVS traffic counters (ipvs/manager.py)."""
    labels = ["service", "server"]
    up = GaugeMetricFamily(
        "hadirector_real_server_up",
        "1 while the real server's health check passes (always 1 without a check).",
        labels=labels,
    )
    weight = GaugeMetricFamily(
        "hadirector_real_server_weight",
        "Weight the agent gives the real server now (0 while its check fails).",
        labels=labels,
    )
    weight_cfg = GaugeMetricFamily(
        "hadirector_real_server_weight_configured",
        "The real server's configured weight.",
        labels=labels,
    )
    duration = HistogramMetricFamily(
        "hadirector_check_duration_seconds",
        "Health check probe durations.",
        labels=[*labels, "check"],
    )
    failures = CounterMetricFamily(
        "hadirector_check_failures",
        "Failed health check probes, by reason.",
        labels=[*labels, "reason"],
    )
    running = checker.running if checker is not None else {}
    down = checker.down if checker is not None else set()
    for vs in config.virtual_servers:
        skey = service_key_of(vs)
        for rs in vs.real_servers:
            dkey = dest_key_of(vs, rs)
            names = [str(skey), str(dkey)]
            healthy = (skey, dkey) not in down
            up.add_metric(names, 1 if healthy else 0)
            weight.add_metric(names, rs.weight if healthy else 0)
            weight_cfg.add_metric(names, rs.weight)
            # One entry per check (a group's are its first service's).
            for index in range(len(rs.checks)):
                entry = running.get((skey, dkey, index))
                if entry is None:
                    continue
                d = entry.durations
                buckets = [
                    (_le(b), float(n)) for b, n in zip(DURATION_BUCKETS_S, d.buckets, strict=True)
                ]
                buckets.append(("+Inf", float(d.count)))
                duration.add_metric([*names, entry.spec.check.type], buckets, d.sum_s)
                for reason, n in sorted(entry.failures.items()):
                    failures.add_metric([*names, reason], n)
    out: list[Metric] = [up, weight, weight_cfg, duration, failures]

    delivered = CounterMetricFamily(
        "hadirector_alerts_delivered", "Alerts delivered, by destination.", labels=["destination"]
    )
    failed = CounterMetricFamily(
        "hadirector_alerts_failures",
        "Alert delivery attempts that failed (each retry counts), by destination.",
        labels=["destination"],
    )
    dropped = CounterMetricFamily(
        "hadirector_alerts_dropped",
        "Alerts given up: queue full or refused for good, by destination.",
        labels=["destination"],
    )
    queued = GaugeMetricFamily(
        "hadirector_alerts_queued", "Alerts waiting for delivery.", labels=["destination"]
    )
    for name, stats in sorted(alerts.stats().items() if alerts is not None else ()):
        delivered.add_metric([name], stats.delivered)
        failed.add_metric([name], stats.failures)
        dropped.add_metric([name], stats.dropped)
        queued.add_metric([name], stats.queued)
    out += [delivered, failed, dropped, queued]

    if sync is not None and sync.settings is not None:
        from hadirector.sync import roles

        wanted_roles = {
            d.state.name.lower() for d in roles.desired(sync.settings, sync.deciding_state)
        }
        wanted = GaugeMetricFamily(
            "hadirector_ipvs_sync_daemon_wanted",
            "1 for the connection sync daemon role the VRRP state asks for here.",
            labels=["role"],
        )
        for role in ("master", "backup"):
            wanted.add_metric([role], 1 if role in wanted_roles else 0)
        in_step = GaugeMetricFamily(
            "hadirector_ipvs_sync_daemon_in_step",
            "1 when the kernel's sync daemons are as wanted (0: starting or stopping failed).",
        )
        in_step.add_metric([], 1 if sync.in_step else 0)
        out += [wanted, in_step]
    traffic = getattr(ipvs, "traffic", None)
    if traffic is not None:
        out += ipvs_traffic_metrics(traffic())
    if pools is not None:
        out += pool_metrics(pools)
    return [m for m in out if m.samples]


def pool_metrics(pools: Any) -> list[Metric]:
    """Quorum and live weight per virtual service, drained real servers (the agent's pool
    keeper, agent/pools.py)."""
    quorum = GaugeMetricFamily(
        "hadirector_virtual_server_quorum",
        "1 while the service's pool has quorum (0: its sorry server, if any, answers).",
        labels=["service"],
    )
    live = GaugeMetricFamily(
        "hadirector_virtual_server_live_weight",
        "Sum of the configured weights of the service's live (up, not drained) servers.",
        labels=["service"],
    )
    drained = GaugeMetricFamily(
        "hadirector_real_server_drained",
        "1 for a real server the operator drained (hadirector drain).",
        labels=["service", "server"],
    )
    core = pools.core
    for key, up in sorted(core.up.items(), key=lambda kv: str(kv[0])):
        quorum.add_metric([str(key)], 1 if up else 0)
        live.add_metric([str(key)], core.live.get(key, 0))
    for service, server in sorted(pools.drained, key=lambda p: (str(p[0]), str(p[1]))):
        drained.add_metric([str(service), str(server)], 1)
    return [quorum, live, drained]


def ipvs_traffic_metrics(traffic: dict[Any, Any]) -> list[Metric]:
    """Per IPVS service and destination: connections, packets and bytes (the kernel's
    counters as of the last reconcile), and each destination's active and inactive
    connections."""
    svc_conns = CounterMetricFamily(
        "hadirector_ipvs_service_connections",
        "Connections the kernel scheduled for the service.",
        labels=["service"],
    )
    svc_packets = CounterMetricFamily(
        "hadirector_ipvs_service_packets",
        "Packets of the service: in from clients, out from real servers.",
        labels=["service", "direction"],
    )
    svc_bytes = CounterMetricFamily(
        "hadirector_ipvs_service_bytes",
        "Bytes of the service: in from clients, out from real servers.",
        labels=["service", "direction"],
    )
    labels = ["service", "server"]
    dest_conns = CounterMetricFamily(
        "hadirector_ipvs_dest_connections",
        "Connections the kernel scheduled to the destination.",
        labels=labels,
    )
    dest_packets = CounterMetricFamily(
        "hadirector_ipvs_dest_packets",
        "Packets through the destination: in from clients, out from it.",
        labels=[*labels, "direction"],
    )
    dest_bytes = CounterMetricFamily(
        "hadirector_ipvs_dest_bytes",
        "Bytes through the destination: in from clients, out from it.",
        labels=[*labels, "direction"],
    )
    active = GaugeMetricFamily(
        "hadirector_ipvs_dest_active_connections",
        "Established connections to the destination.",
        labels=labels,
    )
    inactive = GaugeMetricFamily(
        "hadirector_ipvs_dest_inactive_connections",
        "Other connection entries of the destination (TIME_WAIT, SYN_RECV, ...).",
        labels=labels,
    )
    for skey in sorted(traffic, key=str):
        read = traffic[skey]
        service = str(skey)
        if read.stats is not None:
            st = read.stats
            svc_conns.add_metric([service], st.connections)
            for direction, packets, nbytes in (
                ("in", st.packets_in, st.bytes_in),
                ("out", st.packets_out, st.bytes_out),
            ):
                svc_packets.add_metric([service, direction], packets)
                svc_bytes.add_metric([service, direction], nbytes)
        for dest in sorted(read.dests, key=lambda d: str(d.key)):
            names = [service, str(dest.key)]
            active.add_metric(names, dest.active_conns)
            inactive.add_metric(names, dest.inactive_conns)
            if dest.stats is None:
                continue
            st = dest.stats
            dest_conns.add_metric(names, st.connections)
            for direction, packets, nbytes in (
                ("in", st.packets_in, st.bytes_in),
                ("out", st.packets_out, st.bytes_out),
            ):
                dest_packets.add_metric([*names, direction], packets)
                dest_bytes.add_metric([*names, direction], nbytes)
    return [
        svc_conns,
        svc_packets,
        svc_bytes,
        dest_conns,
        dest_packets,
        dest_bytes,
        active,
        inactive,
    ]


def _le(bound: float) -> str:
    return repr(float(bound))


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
