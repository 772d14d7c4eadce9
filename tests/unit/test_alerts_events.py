"""How alerts read (subject, body, JSON document), the [alerts] table's checks, and the
Alertmanager bookkeeping of what fires and what resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from hadirector.alerts import events
from hadirector.alerts.dispatch import AlertmanagerState, Condition
from hadirector.alerts.events import Event
from hadirector.config.load import load_text
from hadirector.errors import ConfigError
from hadirector.preflight import preflight

AT = 1796439612.0  # 2026-12-05 03:00:12 UTC


def server_event(new: str = "DOWN") -> Event:
    return Event(
        kind="real_server",
        name="tcp 192.0.2.10:80 10.0.0.5:80",
        old="UP" if new == "DOWN" else "DOWN",
        new=new,
        reason="connection refused",
        director="director-a",
        at=AT,
        since_s=None,
        where=(("service", "tcp 192.0.2.10:80"), ("server", "10.0.0.5:80"), ("check", "tcp")),
        now=("VI_1=MASTER",),
    )


def test_a_real_server_down_mail() -> None:
    ev = server_event()
    assert events.subject(ev) == (
        "[hadirector director-a] DOWN: real server 10.0.0.5:80 of tcp 192.0.2.10:80"
    )
    assert events.body(ev) == (
        "What:   real server 10.0.0.5:80 of service tcp 192.0.2.10:80 is DOWN "
        "(was UP since the agent started)\n"
        "Where:  director director-a, service tcp 192.0.2.10:80, server 10.0.0.5:80, check tcp\n"
        "When:   2026-12-05 03:00:12 UTC\n"
        "Why:    connection refused\n"
        "Now:    VI_1=MASTER\n"
        "\n"
        "The server is out of rotation (weight 0 or removed, per the service's health_action) "
        "until its check passes again.\n"
    )
    assert ev.bad and not server_event("UP").bad


def test_an_instance_without_a_peer_heard_says_so() -> None:
    ev = Event("instance", "VI_1", "BACKUP", "MASTER", "no master heard", "a", AT)
    assert "Peer:   no advert heard from another router since this one started\n" in (
        events.body(ev)
    )


def test_document_of_a_real_server() -> None:
    doc = events.document(server_event())
    assert doc["service"] == "tcp 192.0.2.10:80" and doc["server"] == "10.0.0.5:80"
    assert doc["since_seconds"] is None and "peer" not in doc
    assert doc["at"] == "2026-12-05T03:00:12.000Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (3.62, "3.6 s"),
        (45, "45 s"),
        (60, "1 min"),
        (725, "12 min 5 s"),
        (3600, "1 h"),
        (11520, "3 h 12 min"),
        (86400 * 2 + 3600 * 4, "2 d 4 h"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert events.duration(seconds) == text


def test_iso8601_rounds_milliseconds() -> None:
    assert events.iso8601(AT + 0.9996) == "2026-12-05T03:00:13.000Z"
    assert events.iso8601(AT + 0.25) == "2026-12-05T03:00:12.250Z"


def test_alerts_table_problems_each_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(
            """
[alerts.email]
to = ["x"]
server = "smtp:0"
username = "u"
[alerts.webhook]
url = "ftp://x"
headers = { "bad header" = "v" }
[alerts.alertmanager]
url = "http://am:9093"
repeat_interval = 0
labels = { "9bad" = "v" }
"""
        )
    assert sorted(str(p) for p in info.value.problems) == sorted(
        [
            'alerts.email.to[0]: must be one mail address local@domain, got "x"',
            "alerts.email.from: is required",
            'alerts.email.server: must be "HOST" or "HOST:PORT" (port 1-65535), got "smtp:0"',
            "alerts.email: username and password_file go together (a login needs both)",
            'alerts.webhook.url: must be an http:// or https:// URL, got "ftp://x"',
            "alerts.webhook.headers.bad header: must be an HTTP header name",
            "alerts.alertmanager.repeat_interval: must be 1..86400 seconds, got 0",
            "alerts.alertmanager.labels.9bad: must be a Prometheus label name",
        ]
    )


def test_alerts_defaults() -> None:
    cfg = load_text(
        '[alerts.email]\nto = "ops@example.org"\nfrom = "a@example.org"\nserver = "mx"\n'
    ).alerts
    assert cfg.email is not None
    assert (cfg.email.to, cfg.email.server_host, cfg.email.server_port) == (
        ("ops@example.org",),
        "mx",
        25,
    )
    assert (cfg.queue, cfg.flush_timeout_s, cfg.webhook, cfg.alertmanager) == (
        1000,
        10.0,
        None,
        None,
    )


def cond(server: str) -> Condition:
    return Condition("Down", (("real_server", server),), f"{server} down", "")


def test_alertmanager_state_fires_resolves_and_refires() -> None:
    state = AlertmanagerState()
    assert state.set("Down", [cond("a"), cond("b")], now=10.0)
    assert not state.set("Down", [cond("a"), cond("b")], now=11.0)  # nothing new
    assert state.set("Down", [cond("b")], now=12.0)
    assert [p.condition for p in state.firing.values()] == [cond("b")]
    ((_, resolved),) = state.resolving.items()
    assert (resolved.condition, resolved.starts_at, resolved.ends_at) == (cond("a"), 10.0, 12.0)
    # Down again before the resolution was posted: it fires anew, no resolution pending.
    assert state.set("Down", [cond("a"), cond("b")], now=13.0)
    assert state.resolving == {}
    assert state.firing[cond("a").key].starts_at == 13.0
    # Another alertname's conditions are left alone.
    assert not state.set("Other", [], now=14.0)
    assert len(state.firing) == 2
    state.resolve_all(15.0)
    assert state.firing == {} and len(state.resolving) == 2


def test_a_quorum_lost_mail() -> None:
    ev = Event(
        kind="service",
        name="tcp 192.0.2.10:80",
        old="QUORUM",
        new="QUORUM LOST",
        reason="live weight 1, quorum 2",
        director="director-a",
        at=AT,
        since_s=7200.0,
        where=(("service", "tcp 192.0.2.10:80"),),
    )
    assert events.subject(ev) == (
        "[hadirector director-a] QUORUM LOST: virtual service tcp 192.0.2.10:80"
    )
    assert events.body(ev) == (
        "What:   virtual service tcp 192.0.2.10:80 lost its quorum (was QUORUM for 2 h)\n"
        "Where:  director director-a, service tcp 192.0.2.10:80\n"
        "When:   2026-12-05 03:00:12 UTC\n"
        "Why:    live weight 1, quorum 2\n"
        "\n"
        "Too few real servers are up: the sorry server, if configured, answers instead, "
        "and quorum_down ran.\n"
    )
    assert ev.bad


def test_a_drained_server_says_the_operator_did_it() -> None:
    ev = Event(
        "real_server",
        "tcp 192.0.2.10:80 10.0.0.5:80",
        "UP",
        "DOWN",
        "drained by the operator",
        "director-a",
        AT,
        where=(("service", "tcp 192.0.2.10:80"), ("server", "10.0.0.5:80"), ("cause", "drain")),
    )
    assert events.body(ev).endswith(
        "The operator drained it (hadirector drain): weight 0 until undrained.\n"
    )


def test_preflight_names_an_unreadable_password_or_ca_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    text = f"""
[alerts.email]
to = "ops@example.org"
from = "a@example.org"
server = "mx:587"
starttls = true
username = "a"
password_file = "{{password}}"
ca_file = "{tmp_path / "missing-ca.pem"}"
"""
    problems = preflight(load_text(text.replace("{password}", str(secret))))
    assert [str(p) for p in problems] == [
        f"alerts.email.ca_file: {tmp_path / 'missing-ca.pem'}: No such file or directory"
    ]
    problems = preflight(load_text(text.replace("{password}", str(tmp_path / "nope"))))
    assert [p.path for p in problems] == ["alerts.email.password_file", "alerts.email.ca_file"]


def test_preflight_refuses_a_password_file_others_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    text = f"""
[alerts.email]
to = "ops@example.org"
from = "a@example.org"
server = "mx:587"
username = "a"
password_file = "{secret}"
"""
    (problem,) = preflight(load_text(text))
    assert problem.path == "alerts.email.password_file"
    assert "readable by group or others (mode 0644)" in problem.message
