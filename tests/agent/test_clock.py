"""The agent's clocks are injected: the rate limit of repeated warnings follows the clock it
is given (the driver's ``trio.current_time``), not the process's monotonic time."""

from __future__ import annotations

from typing import Any

from hadirector.agent import RateLimitedLog


class _Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


def test_repeated_warning_is_logged_once_per_period_of_the_injected_clock() -> None:
    now = [100.0]
    log = _Log()
    limited = RateLimitedLog(log, period_s=1.0, clock=lambda: now[0])
    limited.warning("send", "vrrp.send_failed", dst="a")
    limited.warning("send", "vrrp.send_failed", dst="a")
    limited.warning("recv", "vrrp.receive_failed")  # another key: its own period
    now[0] = 100.999
    limited.warning("send", "vrrp.send_failed", dst="a")
    assert log.warnings == [
        ("vrrp.send_failed", {"suppressed": 0, "dst": "a"}),
        ("vrrp.receive_failed", {"suppressed": 0}),
    ]
    now[0] = 101.0
    limited.warning("send", "vrrp.send_failed", dst="b")
    assert log.warnings[-1] == ("vrrp.send_failed", {"suppressed": 2, "dst": "b"})
