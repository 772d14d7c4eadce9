"""Prometheus rendering: the page of a known status snapshot read back with
prometheus_client's own parser (every sample of the hand-written page the agent served
before the library wrote it, names and values unchanged), label escaping (hypothesis: any
label value survives), the real-server, check and alert metrics, and the HTTP/1.0
responses."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from hadirector.alerts.dispatch import Alerts
from hadirector.checks.runner import HealthChecker
from hadirector.config.load import load_text
from hadirector.errors import ConfigError
from hadirector.metrics import Family, render, render_families, respond, runtime_metrics
from hadirector.status import (
    AgentStatus,
    IpvsStatus,
    NotifyStatus,
)
from tests.unit.metricskit import ALERTS_TEXT, exported_page, probed_page, status_report

EXPECTED = """\
# HELP hadirector_info Agent version and router id (always 1).
# TYPE hadirector_info gauge
hadirector_info{version="0.1.0",router_id="dir-a"} 1
# HELP hadirector_uptime_seconds Seconds since the agent started.
# TYPE hadirector_uptime_seconds gauge
hadirector_uptime_seconds 12.5
# HELP hadirector_vrrp_state VRRP instance state: 1 for the current state.
# TYPE hadirector_vrrp_state gauge
hadirector_vrrp_state{instance="VI_1",state="INIT"} 0
hadirector_vrrp_state{instance="VI_1",state="BACKUP"} 0
hadirector_vrrp_state{instance="VI_1",state="MASTER"} 1
hadirector_vrrp_state{instance="VI_1",state="FAULT"} 0
hadirector_vrrp_state{instance="VI_1",state="STOPPED"} 0
# HELP hadirector_vrrp_priority Effective priority after tracking (0 in FAULT).
# TYPE hadirector_vrrp_priority gauge
hadirector_vrrp_priority{instance="VI_1"} 140
# HELP hadirector_vrrp_priority_configured Configured priority.
# TYPE hadirector_vrrp_priority_configured gauge
hadirector_vrrp_priority_configured{instance="VI_1"} 150
# HELP hadirector_vrrp_master_adver_interval_seconds Master advertisement interval in use \
(a v3 backup adopts the master's).
# TYPE hadirector_vrrp_master_adver_interval_seconds gauge
hadirector_vrrp_master_adver_interval_seconds{instance="VI_1"} 1
# HELP hadirector_vrrp_vips_held Virtual addresses this node holds.
# TYPE hadirector_vrrp_vips_held gauge
hadirector_vrrp_vips_held{instance="VI_1"} 1
# HELP hadirector_vrrp_transitions_total State transitions, by the state entered.
# TYPE hadirector_vrrp_transitions_total counter
hadirector_vrrp_transitions_total{instance="VI_1",state="BACKUP"} 1
hadirector_vrrp_transitions_total{instance="VI_1",state="MASTER"} 1
hadirector_vrrp_transitions_total{instance="VI_1",state="FAULT"} 0
hadirector_vrrp_transitions_total{instance="VI_1",state="STOPPED"} 0
# HELP hadirector_vrrp_adverts_sent_total Advertisements sent.
# TYPE hadirector_vrrp_adverts_sent_total counter
hadirector_vrrp_adverts_sent_total{instance="VI_1"} 30
# HELP hadirector_vrrp_adverts_received_total Advertisements for this VRID that passed \
the receive checks.
# TYPE hadirector_vrrp_adverts_received_total counter
hadirector_vrrp_adverts_received_total{instance="VI_1"} 2
# HELP hadirector_vrrp_adverts_rejected_total Advertisements rejected, by reason \
(they change nothing).
# TYPE hadirector_vrrp_adverts_rejected_total counter
hadirector_vrrp_adverts_rejected_total{instance="VI_1",reason="checksum"} 3
hadirector_vrrp_adverts_rejected_total{instance="VI_1",reason="ttl"} 1
# HELP hadirector_vrrp_send_errors_total Advertisements the kernel refused.
# TYPE hadirector_vrrp_send_errors_total counter
hadirector_vrrp_send_errors_total{instance="VI_1"} 0
# HELP hadirector_vrrp_announcements_total Gratuitous ARPs and unsolicited NAs sent for \
held addresses.
# TYPE hadirector_vrrp_announcements_total counter
hadirector_vrrp_announcements_total{instance="VI_1"} 10
# HELP hadirector_sync_group_state Sync group state: 1 for the common state.
# TYPE hadirector_sync_group_state gauge
hadirector_sync_group_state{group="G",state="INIT"} 0
hadirector_sync_group_state{group="G",state="BACKUP"} 0
hadirector_sync_group_state{group="G",state="MASTER"} 1
hadirector_sync_group_state{group="G",state="FAULT"} 0
hadirector_sync_group_state{group="G",state="STOPPED"} 0
# HELP hadirector_ipvs_available 1 when the kernel has IPVS.
# TYPE hadirector_ipvs_available gauge
hadirector_ipvs_available 1
# HELP hadirector_ipvs_services Virtual services this agent programs.
# TYPE hadirector_ipvs_services gauge
hadirector_ipvs_services 1
# HELP hadirector_ipvs_errors_total IPVS reads and writes that failed.
# TYPE hadirector_ipvs_errors_total counter
hadirector_ipvs_errors_total 0
# HELP hadirector_ipvs_reconciles_total Reconciliations of the kernel table with the \
configuration.
# TYPE hadirector_ipvs_reconciles_total counter
hadirector_ipvs_reconciles_total 4
# HELP hadirector_ipvs_writes_total IPVS write operations that succeeded.
# TYPE hadirector_ipvs_writes_total counter
hadirector_ipvs_writes_total 3
# HELP hadirector_notify_pending Notify scripts queued or running.
# TYPE hadirector_notify_pending gauge
hadirector_notify_pending 0
# HELP hadirector_notify_failures_total Notify scripts that failed to start, timed out \
or exited non-zero.
# TYPE hadirector_notify_failures_total counter
hadirector_notify_failures_total 2
"""


Samples = set[tuple[str, tuple[tuple[str, str], ...], float]]


def samples(page: str) -> Samples:
    """Every sample of an exposition page, as the library's parser reads it."""
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for fam in text_string_to_metric_families(page)
        for s in fam.samples
    }


def types(page: str) -> dict[str, str]:
    return {fam.name: fam.type for fam in text_string_to_metric_families(page)}


def test_render_keeps_every_sample_of_the_hand_written_page() -> None:
    page = render(status_report())
    zero_reasons = {
        ("hadirector_vrrp_adverts_rejected_total", (("instance", "VI_1"), ("reason", r)), 0.0)
        for r in ("auth", "replay", "source", "ttl", "version")
        if r != "ttl"  # counted in the snapshot: already on the old page
    }
    assert samples(page) == samples(EXPECTED) | zero_reasons
    assert types(page) == types(EXPECTED)
    # Sample names as dashboards and rules spell them (counters end in _total).
    assert 'hadirector_vrrp_transitions_total{instance="VI_1",state="MASTER"} 1.0\n' in page
    assert 'hadirector_vrrp_state{instance="VI_1",state="MASTER"} 1.0\n' in page


def test_render_of_the_snapshot_read_back_from_json() -> None:
    """What the control socket sends renders the same page once read back."""
    report = status_report()
    assert AgentStatus.from_json(json.loads(json.dumps(report.to_json()))) == report
    assert render(AgentStatus.from_json(report.to_json())) == render(report)


def test_parts_not_kept_are_left_out() -> None:
    report = replace(
        status_report(), ipvs=IpvsStatus(), notify=NotifyStatus(pending=1), sync_groups=()
    )
    page = render(report)
    assert "hadirector_ipvs" not in page
    assert "hadirector_notify_failures_total" not in page
    assert "hadirector_sync_group_state" not in page  # no samples, no family
    assert ("hadirector_notify_pending", (), 1.0) in samples(page)


def test_instance_names_are_escaped_in_the_page() -> None:
    report = status_report()
    report = replace(report, instances=(replace(report.instances[0], name='odd"na\\me\n'),))
    page = render(report)
    assert 'hadirector_vrrp_priority{instance="odd\\"na\\\\me\\n"} 140.0\n' in page
    assert ("hadirector_vrrp_priority", (("instance", 'odd"na\\me\n'),), 140.0) in samples(page)


@given(st.text())
def test_any_label_value_round_trips(value: str) -> None:
    fam = Family("m", "counter", "h")
    fam.add(7, a=value, b="x")
    assert samples(render_families([fam])) == {("m_total", (("a", value), ("b", "x")), 7.0)}


def test_real_server_check_and_alert_metrics() -> None:
    page = probed_page(alerts_text=ALERTS_TEXT)
    got = samples(page)
    svc, a, b = (
        ("service", "tcp 192.0.2.10:80"),
        ("server", "10.0.0.5:80"),
        ("server", "10.0.0.6:80"),
    )
    assert ("hadirector_real_server_up", (a, svc), 0.0) in got
    assert ("hadirector_real_server_up", (b, svc), 1.0) in got
    assert ("hadirector_real_server_weight", (a, svc), 0.0) in got
    assert ("hadirector_real_server_weight", (b, svc), 7.0) in got
    assert ("hadirector_real_server_weight_configured", (a, svc), 5.0) in got
    assert ("hadirector_check_failures_total", (("reason", "connect_refused"), a, svc), 1.0) in got
    assert ("hadirector_check_failures_total", (("reason", "timeout"), a, svc), 1.0) in got
    check = ("check", "tcp")
    assert ("hadirector_check_duration_seconds_count", (check, b, svc), 2.0) in got
    assert (
        "hadirector_check_duration_seconds_bucket",
        (check, ("le", "0.0025"), b, svc),
        0.0,
    ) in got
    assert (
        "hadirector_check_duration_seconds_bucket",
        (check, ("le", "0.005"), b, svc),
        2.0,
    ) in got
    assert ("hadirector_check_duration_seconds_bucket", (check, ("le", "+Inf"), b, svc), 2.0) in got
    assert types(page)["hadirector_check_duration_seconds"] == "histogram"
    email = ("destination", "email")
    assert ("hadirector_alerts_delivered_total", (email,), 0.0) in got
    assert ("hadirector_alerts_queued", (("destination", "webhook"),), 0.0) in got


def test_http_responses() -> None:
    def page() -> str:
        return "m 1\n"

    ok = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", page)
    head, _, body = ok.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
    assert b"Content-Length: 4" in head
    assert body == b"m 1\n"
    assert respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", page).endswith(b"\r\n\r\n")
    assert respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", page).endswith(b"m 1\n")
    assert respond(b"GET /nope HTTP/1.0\r\n\r\n", page).startswith(b"HTTP/1.0 404 ")
    assert respond(b"POST /metrics HTTP/1.0\r\n\r\n", page).startswith(b"HTTP/1.0 405 ")
    assert respond(b"garbage\r\n\r\n", page).startswith(b"HTTP/1.0 400 ")
    assert respond(b"\r\n\r\n", page).startswith(b"HTTP/1.0 400 ")


def test_metrics_listen_setting() -> None:
    assert load_text("").global_.metrics_listen is None
    cfg = load_text('[global]\nmetrics_listen = "127.0.0.1:9650"\n')
    assert cfg.global_.metrics_listen is not None
    assert [str(x) for x in cfg.global_.metrics_listen] == ["127.0.0.1", "9650"]
    v6 = load_text('[global]\nmetrics_listen = "[2001:db8::1]:80"\n').global_.metrics_listen
    assert v6 is not None and str(v6[0]) == "2001:db8::1"
    for bad in ('"::1:9650"', '"127.0.0.1"', '"127.0.0.1:0"', '"127.0.0.1:70000"', "9650"):
        try:
            load_text(f"[global]\nmetrics_listen = {bad}\n")
        except ConfigError as exc:
            assert [p.path for p in exc.problems] == ["global.metrics_listen"], bad
        else:
            raise AssertionError(f"{bad} accepted")


def test_sync_daemon_metrics_follow_the_deciding_state() -> None:
    from hadirector.sync.daemon import SyncDaemons

    config = load_text(
        '[[vrrp_instance]]\nname = "web"\ninterface = "eth0"\nvrid = 1\npriority = 100\n'
        'virtual_addresses = ["192.0.2.1/24"]\n[ipvs.sync]\ninterface = "eth1"\n'
    )
    sync = SyncDaemons(config)
    alerts = Alerts(load_text("").alerts, "dir-a")
    checker = HealthChecker(config, lambda _down: None)

    def page() -> Samples:
        return samples(render(status_report(), runtime_metrics(config, checker, alerts, sync)))

    sync.on_instance("web", "MASTER")
    got = page()
    assert ("hadirector_ipvs_sync_daemon_wanted", (("role", "master"),), 1.0) in got
    assert ("hadirector_ipvs_sync_daemon_wanted", (("role", "backup"),), 0.0) in got
    assert ("hadirector_ipvs_sync_daemon_in_step", (), 1.0) in got
    sync.on_instance("web", "BACKUP")
    got = page()
    assert ("hadirector_ipvs_sync_daemon_wanted", (("role", "backup"),), 1.0) in got
    sync.available = False  # no IPVS in this kernel: never in step
    assert ("hadirector_ipvs_sync_daemon_in_step", (), 0.0) in page()


def test_ipvs_traffic_metrics() -> None:
    got = samples(exported_page())
    svc = ("service", "tcp 192.0.2.10:80")
    a, b = ("server", "10.0.0.5:80"), ("server", "10.0.0.6:80")
    assert ("hadirector_ipvs_service_connections_total", (svc,), 40.0) in got
    assert ("hadirector_ipvs_service_bytes_total", (("direction", "out"), svc), 96000.0) in got
    assert ("hadirector_ipvs_service_packets_total", (("direction", "in"), svc), 200.0) in got
    assert ("hadirector_ipvs_dest_connections_total", (b, svc), 30.0) in got
    assert ("hadirector_ipvs_dest_bytes_total", (("direction", "in"), a, svc), 3000.0) in got
    assert ("hadirector_ipvs_dest_active_connections", (b, svc), 5.0) in got
    assert ("hadirector_ipvs_dest_inactive_connections", (a, svc), 8.0) in got


def test_pool_metrics_on_the_exported_page() -> None:
    got = samples(exported_page())
    svc = ("service", "tcp 192.0.2.10:80")
    assert ("hadirector_virtual_server_quorum", (svc,), 1.0) in got
    assert ("hadirector_virtual_server_live_weight", (svc,), 7.0) in got
    assert ("hadirector_real_server_drained", (("server", "10.0.0.5:80"), svc), 1.0) in got
