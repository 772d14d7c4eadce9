"""Email alerts against a real SMTP server (aiosmtpd, tests/agent/smtpkit.py) on loopback:
delivery with STARTTLS and login, a server that refuses for good or for now, one that
stalls, one that disappears and comes back, and the flush on a graceful stop.

These run on trio's real clock (the mail goes through a worker thread and a real socket);
every wait is for an event (a mail received, a log line), bounded only as a hang guard.
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from hadirector.alerts.dispatch import Alerts
from hadirector.config.load import load_text
from hadirector.config.schema import AlertsConfig
from tests.agent.alertkit import event, logged, recorded, run, until
from tests.agent.smtpkit import SmtpServer

__all__ = ["recorded"]  # the autouse fixture, imported to apply here


def alerts_config(port: int, extra: str = "") -> AlertsConfig:
    return load_text(
        f"""
[alerts.email]
to = ["oncall@example.org", "lb-team@example.org"]
from = "director-a@example.org"
server = "127.0.0.1:{port}"
timeout = 2.0
{extra}
"""
    ).alerts


async def received(smtp: SmtpServer) -> Any:
    return await trio.to_thread.run_sync(smtp.get)


def test_one_mail_per_event_says_what_where_when_why_and_the_peer() -> None:
    with SmtpServer() as smtp:

        async def scenario(alerts: Alerts) -> None:
            alerts.event(event())
            got = await received(smtp)
            msg = got.message
            assert got.mail_from == "director-a@example.org"
            assert got.rcpt_tos == ["oncall@example.org", "lb-team@example.org"]
            assert (
                msg["Subject"] == "[hadirector director-a] MASTER: VRRP instance VI_1 (was BACKUP)"
            )
            assert msg["To"] == "oncall@example.org, lb-team@example.org"
            assert msg["Date"].datetime == datetime.datetime(
                2026, 12, 5, 3, 0, 12, tzinfo=datetime.UTC
            )
            assert msg["Auto-Submitted"] == "auto-generated"
            assert msg.get_content().replace("\r\n", "\n") == (
                "What:   VRRP instance VI_1 is now MASTER (was BACKUP for 3 h 12 min)\n"
                "Where:  director director-a, interface eth0, VRID 51, VIPs 192.0.2.100/24\n"
                "When:   2026-12-05 03:00:12 UTC\n"
                "Why:    no advert from the master for Master_Down_Interval\n"
                "Peer:   last advert from 192.0.2.2 at priority 150, 3.6 s before this change\n"
                "Now:    VI_1=MASTER, VI_2=MASTER\n"
                "\n"
                "This director now holds the virtual addresses and answers for them.\n"
            )
            await until(lambda: alerts.email is not None and alerts.email.stats.delivered == 1)

        run(alerts_config(smtp.port), scenario)


def test_smtp_alert_false_sends_no_mail() -> None:
    with SmtpServer() as smtp:

        async def scenario(alerts: Alerts) -> None:
            alerts.event(dataclasses.replace(event("VI_quiet"), smtp_alert=False))
            alerts.event(event("VI_loud"))
            got = await received(smtp)
            assert "VI_loud" in got.message["Subject"]
            assert smtp.received.empty()

        run(alerts_config(smtp.port), scenario)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_starttls_and_login(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = tls_files
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")
    with SmtpServer(tls=(cert, key), login=("alerts", "s3cret")) as smtp:
        extra = (
            f'starttls = true\nca_file = "{cert}"\n'
            f'username = "alerts"\npassword_file = "{secret}"\n'
        )

        async def scenario(alerts: Alerts) -> None:
            alerts.event(event())
            got = await received(smtp)
            assert got.login == "alerts"
            assert "VI_1" in got.message["Subject"]

        run(alerts_config(smtp.port, extra), scenario)


def test_a_wrong_password_is_logged_and_retried(
    tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = tls_files
    secret = tmp_path / "smtp-password"
    secret.write_text("wrong")
    with SmtpServer(tls=(cert, key), login=("alerts", "s3cret")) as smtp:
        extra = (
            f'starttls = true\nca_file = "{cert}"\n'
            f'username = "alerts"\npassword_file = "{secret}"\n'
        )

        async def scenario(alerts: Alerts) -> None:
            alerts.event(event())
            # 535 is a 5xx: refused for good, dropped, said once.
            await until(lambda: bool(logged("alerts.refused")))
            assert "535" in logged("alerts.refused")[0]["error"]
            assert alerts.email is not None and not alerts.email.items

        run(alerts_config(smtp.port, extra), scenario)


def test_a_permanent_refusal_drops_that_mail_and_the_next_goes_through() -> None:
    with SmtpServer() as smtp:

        async def scenario(alerts: Alerts) -> None:
            smtp.mode = "refuse"
            alerts.event(event("VI_1"))
            await until(lambda: bool(logged("alerts.refused")))
            refused = logged("alerts.refused")[0]
            assert "550" in refused["error"] and "VI_1" in refused["what"]
            smtp.mode = "accept"
            alerts.event(event("VI_2"))
            got = await received(smtp)
            assert "VI_2" in got.message["Subject"]
            await until(lambda: alerts.email is not None and alerts.email.stats.delivered == 1)
            assert alerts.email is not None and alerts.email.stats.dropped == 1

        run(alerts_config(smtp.port), scenario)


def test_a_busy_server_is_retried_until_it_takes_the_mail() -> None:
    with SmtpServer() as smtp:

        async def scenario(alerts: Alerts) -> None:
            smtp.mode = "busy"  # 451: try again later
            alerts.event(event())
            await until(lambda: smtp.attempts >= 3)
            smtp.mode = "accept"
            got = await received(smtp)
            assert "VI_1" in got.message["Subject"]
            await until(lambda: bool(logged("alerts.reachable")))
            assert alerts.email is not None
            assert alerts.email.stats.failures >= 3
            # Logged once when it first failed, not per attempt.
            assert len(logged("alerts.unreachable")) == 1
            assert "451" in logged("alerts.unreachable")[0]["error"]

        run(alerts_config(smtp.port), scenario)


def test_a_stalled_server_times_out_and_delays_nothing_else() -> None:
    with SmtpServer() as smtp:

        async def scenario(alerts: Alerts) -> None:
            smtp.mode = "stall"
            alerts.event(event("VI_1"))
            await trio.to_thread.run_sync(smtp.stalled.wait)
            # While the mail hangs in a worker thread, the trio loop runs on: more events
            # are queued at once and timers fire.
            for i in range(5):
                alerts.event(event(f"VI_{i + 2}"))
                await trio.sleep(0.001)
            assert alerts.email is not None and len(alerts.email.items) == 6
            await until(lambda: bool(logged("alerts.unreachable")))
            assert "timed out" in logged("alerts.unreachable")[0]["error"]
            smtp.mode = "accept"
            subjects = [(await received(smtp)).message["Subject"] for _ in range(6)]
            # In order, none lost (the stalled one was retried).
            assert [s.split()[-3] for s in subjects] == [f"VI_{i}" for i in range(1, 7)]

        run(alerts_config(smtp.port), scenario)


def test_a_server_that_disappears_is_logged_once_a_minute_and_mail_waits_for_it() -> None:
    smtp = SmtpServer()
    with smtp:
        port = smtp.port
        smtp.stop()
        clock = [1000.0]

        async def scenario(alerts: Alerts) -> None:
            assert alerts.email is not None
            alerts.email._clock = lambda: clock[0]
            alerts.event(event("VI_1"))
            await until(lambda: alerts.email is not None and alerts.email.stats.failures >= 1)
            first = logged("alerts.unreachable")
            assert len(first) == 1 and "refused" in first[0]["error"].lower()
            # More failures within the minute: not logged again.
            await until(lambda: alerts.email is not None and alerts.email.stats.failures >= 4)
            assert len(logged("alerts.unreachable")) == 1
            # A minute later (the clock the destination reads), once more, with the count.
            clock[0] += 61
            failures = alerts.email.stats.failures
            await until(lambda: alerts.email is not None and alerts.email.stats.failures > failures)
            again = logged("alerts.unreachable")
            assert len(again) == 2 and again[1]["failures_unlogged"] >= 2
            alerts.event(event("VI_2"))
            smtp.start()  # back, on the same port
            assert smtp.port == port
            first_mail = await received(smtp)
            second_mail = await received(smtp)
            assert "VI_1" in first_mail.message["Subject"]
            assert "VI_2" in second_mail.message["Subject"]
            await until(lambda: bool(logged("alerts.reachable")))

        run(alerts_config(port), scenario)


def test_a_graceful_stop_flushes_the_queue() -> None:
    smtp = SmtpServer()
    with smtp:
        port = smtp.port
        smtp.stop()

        async def scenario(alerts: Alerts) -> None:
            assert alerts.email is not None
            alerts.email.retry_first_s = alerts.email.retry_max_s = 3600.0  # no retry by itself
            for i in range(3):
                alerts.event(event(f"VI_{i + 1}"))
            await until(lambda: alerts.email is not None and alerts.email.stats.failures >= 1)
            smtp.start()
            await alerts.flush(30)
            assert not alerts.email.items
            assert not logged("alerts.flush_incomplete")
            names = sorted(smtp.get(0).message["Subject"].split()[-3] for _ in range(3))
            assert names == ["VI_1", "VI_2", "VI_3"]

        run(alerts_config(port), scenario, fast_retry=False)


def test_the_flush_gives_up_within_its_bound_on_a_stalled_server() -> None:
    with SmtpServer() as smtp:
        smtp.mode = "stall"

        async def scenario(alerts: Alerts) -> None:
            alerts.event(event())
            await trio.to_thread.run_sync(smtp.stalled.wait)
            await alerts.flush(1.0)  # returns: the stop is not held up by the server
            incomplete = logged("alerts.flush_incomplete")
            assert incomplete and incomplete[0]["undelivered"] == {"email": 1}

        run(alerts_config(smtp.port), scenario)


def test_the_queue_is_bounded_and_drops_the_oldest() -> None:
    with SmtpServer() as smtp:
        smtp.stop()

        async def scenario(alerts: Alerts) -> None:
            assert alerts.email is not None
            for i in range(5):
                alerts.event(event(f"VI_{i}"))
            assert [e.name for e in alerts.email.items] == ["VI_2", "VI_3", "VI_4"]
            assert alerts.email.stats.dropped == 2
            assert len(logged("alerts.dropped")) == 2

        run(dataclasses.replace(alerts_config(smtp.port), queue=3), scenario)
