"""What the alert tests share: the log recorder, waiting for a condition, an event, a run
of ``Alerts`` on trio's real clock (deliveries go through worker threads and sockets)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest
import structlog
import trio

from hadirector.alerts.dispatch import Alerts
from hadirector.alerts.events import Event, Peer
from hadirector.config.schema import AlertsConfig

GUARD_S = 60  # a hang guard, never a measurement

LOG: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def recorded() -> Iterator[list[dict[str, Any]]]:
    def keep(_l: Any, _m: str, event_dict: MutableMapping[str, Any]) -> Any:
        LOG.append(dict(event_dict))
        raise structlog.DropEvent

    LOG.clear()
    old = structlog.get_config()
    structlog.configure(
        processors=[structlog.processors.add_log_level, keep],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield LOG
    finally:
        structlog.configure(**old)


def logged(event: str) -> list[dict[str, Any]]:
    return [e for e in LOG if e.get("event") == event]


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.01)


def event(name: str = "VI_1", new: str = "MASTER", at: float = 1796439612.0) -> Event:
    return Event(
        kind="instance",
        name=name,
        old="BACKUP",
        new=new,
        reason="no advert from the master for Master_Down_Interval",
        director="director-a",
        at=at,
        since_s=11520.0,
        where=(("interface", "eth0"), ("VRID", "51"), ("VIPs", "192.0.2.100/24")),
        peer=Peer("192.0.2.2", 150, 3.6),
        now=("VI_1=MASTER", "VI_2=MASTER"),
    )


def run(
    cfg: AlertsConfig, scenario: Callable[[Alerts], Awaitable[None]], *, fast_retry: bool = True
) -> None:
    async def main() -> None:
        alerts = Alerts(cfg, "director-a")
        with trio.fail_after(GUARD_S):
            async with trio.open_nursery() as nursery:
                await nursery.start(alerts.run)
                if fast_retry:
                    for dest in alerts.destinations:
                        dest.retry_first_s, dest.retry_max_s = 0.05, 0.2
                await scenario(alerts)
                nursery.cancel_scope.cancel()

    trio.run(main)
