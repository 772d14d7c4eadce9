"""Webhooks against a real HTTP server, and Alertmanager alerts against the real
Alertmanager (Debian's prometheus-alertmanager, started by the test on a loopback port
with a temporary configuration and storage): the alert appears in its API with the
agent's labels, is posted again while it holds, and resolves when it clears.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import trio

from hadirector.alerts import wiring
from hadirector.alerts.dispatch import Alerts, Condition
from hadirector.config.load import load_text
from hadirector.config.schema import AlertsConfig
from tests.agent.alertkit import event, logged, recorded, run, until
from tests.agent.httpkit import Alertmanager, WebhookServer

__all__ = ["recorded"]  # the autouse fixture, imported to apply here


def webhook_config(url: str) -> AlertsConfig:
    return load_text(
        f"""
[alerts.webhook]
url = "{url}"
headers = {{ Authorization = "Bearer t0ken" }}
timeout = 2.0
"""
    ).alerts


def test_one_json_document_per_event() -> None:
    with WebhookServer() as hook:

        async def scenario(alerts: Alerts) -> None:
            alerts.event(event())
            headers, doc = await trio.to_thread.run_sync(hook.get)
            assert headers["Authorization"] == "Bearer t0ken"
            assert headers["Content-Type"] == "application/json"
            assert doc == {
                "version": 1,
                "kind": "instance",
                "name": "VI_1",
                "old": "BACKUP",
                "new": "MASTER",
                "reason": "no advert from the master for Master_Down_Interval",
                "director": "director-a",
                "at": "2026-12-05T03:00:12.000Z",
                "since_seconds": 11520.0,
                "where": {"interface": "eth0", "VRID": "51", "VIPs": "192.0.2.100/24"},
                "summary": "[hadirector director-a] MASTER: VRRP instance VI_1 (was BACKUP)",
                "peer": {"address": "192.0.2.2", "priority": 150, "age_seconds": 3.6},
            }
            # smtp_alert is for mail only: the webhook gets every event.
            alerts.event(dataclasses.replace(event("VI_2"), smtp_alert=False))
            _, doc = await trio.to_thread.run_sync(hook.get)
            assert doc["name"] == "VI_2"

        run(webhook_config(hook.url), scenario)


def test_a_failing_webhook_is_retried_and_a_refusing_one_dropped() -> None:
    with WebhookServer() as hook:

        async def scenario(alerts: Alerts) -> None:
            hook.status = 503
            alerts.event(event("VI_1"))
            await until(lambda: hook.attempts >= 3)
            hook.status = 200
            _, doc = await trio.to_thread.run_sync(hook.get)
            assert doc["name"] == "VI_1"
            hook.status = 404  # the URL is wrong: retrying cannot help
            alerts.event(event("VI_2"))
            await until(lambda: bool(logged("alerts.refused")))
            assert "HTTP 404" in logged("alerts.refused")[0]["error"]
            hook.status = 200
            alerts.event(event("VI_3"))
            _, doc = await trio.to_thread.run_sync(hook.get)
            assert doc["name"] == "VI_3"

        run(webhook_config(hook.url), scenario)


def server_down(server: str = "10.0.0.5:80") -> Condition:
    return Condition(
        wiring.SERVER_DOWN,
        (("service", "tcp 192.0.2.1:80"), ("real_server", server)),
        f"real server {server} of tcp 192.0.2.1:80 is down",
        "The health check fails.",
        severity="warning",
    )


def alertmanager_config(url: str) -> AlertsConfig:
    return load_text(
        f"""
[alerts.alertmanager]
url = "{url}"
repeat_interval = 1
labels = {{ site = "par1" }}
"""
    ).alerts


def ours(am: Alertmanager) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("director") == "director-a"]


async def alerts_in(am: Alertmanager) -> list[dict[str, Any]]:
    return await trio.to_thread.run_sync(ours, am)


def test_alertmanager_alert_fires_repeats_and_resolves(tmp_path: Path) -> None:
    with Alertmanager(tmp_path) as am:

        async def scenario(alerts: Alerts) -> None:
            assert alerts.alertmanager is not None
            alerts.set_conditions(wiring.SERVER_DOWN, [server_down()])
            while not (firing := await alerts_in(am)):
                await trio.sleep(0.05)
            (alert,) = firing
            assert alert["labels"] == {
                "alertname": "HadirectorRealServerDown",
                "director": "director-a",
                "severity": "warning",
                "site": "par1",
                "service": "tcp 192.0.2.1:80",
                "real_server": "10.0.0.5:80",
            }
            assert alert["status"]["state"] == "active"
            assert alert["annotations"]["summary"] == (
                "real server 10.0.0.5:80 of tcp 192.0.2.1:80 is down"
            )
            assert alert["endsAt"] > alert["startsAt"]
            # Posted again while it holds (repeat_interval 1 s): Alertmanager sees updates.
            posts = alerts.alertmanager.stats.delivered
            await until(
                lambda: (
                    alerts.alertmanager is not None
                    and alerts.alertmanager.stats.delivered >= posts + 2
                )
            )
            (again,) = await alerts_in(am)
            assert again["startsAt"] == alert["startsAt"]  # the same alert, not a new one
            # A second server goes down: both fire; the first comes back: it resolves.
            alerts.set_conditions(wiring.SERVER_DOWN, [server_down(), server_down("10.0.0.6:80")])
            while len(await alerts_in(am)) != 2:
                await trio.sleep(0.05)
            alerts.set_conditions(wiring.SERVER_DOWN, [server_down("10.0.0.6:80")])
            while len(left := await alerts_in(am)) != 1:
                await trio.sleep(0.05)
            assert left[0]["labels"]["real_server"] == "10.0.0.6:80"
            # A graceful stop resolves what the agent posted.
            await alerts.flush(10)
            assert await alerts_in(am) == []

        run(alertmanager_config(am.url), scenario)


def test_alertmanager_down_then_back_gets_the_alerts_that_hold(tmp_path: Path) -> None:
    with Alertmanager(tmp_path) as am:
        am.stop()  # it goes away; the same port later

        async def scenario(alerts: Alerts) -> None:
            assert alerts.alertmanager is not None
            alerts.set_conditions(wiring.SERVER_DOWN, [server_down()])
            await until(lambda: bool(logged("alerts.unreachable")))
            await trio.to_thread.run_sync(am.start)
            while not await alerts_in(am):
                await trio.sleep(0.05)
            await until(lambda: bool(logged("alerts.reachable")))

        run(alertmanager_config(am.url), scenario)


def test_a_reload_moves_queued_events_to_the_new_webhook() -> None:
    with WebhookServer() as old, WebhookServer() as new:

        async def scenario(alerts: Alerts) -> None:
            old.status = 503  # the old endpoint fails: the event stays queued
            alerts.event(event("VI_1"))
            await until(lambda: old.attempts >= 1)
            alerts.update(webhook_config(new.url))
            _, doc = await trio.to_thread.run_sync(new.get)
            assert doc["name"] == "VI_1"
            alerts.update(load_text("").alerts)  # removed: no webhook any more
            assert alerts.webhook is None
            alerts.event(event("VI_2"))  # goes nowhere, and nothing breaks

        run(webhook_config(old.url), scenario)
