"""VRRP timer arithmetic: Skew_Time and Master_Down_Interval (RFC 5798 §6.1, RFC 3768 §6.1)."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.vrrp import timers


def test_rfc5798_6_1_priority_100_at_one_second() -> None:
    # (256 - 100) * 100 cs / 256 = 60.9375 cs: kept exact, not rounded to 61 cs.
    assert timers.skew_time_s(100, 100, 3) == 0.609375
    assert timers.master_down_interval_s(100, 100, 3) == 3.609375
    assert timers.skew_time(100, 100, 3) == Fraction(609375, 1000000)


def test_rfc5798_6_1_owner_and_lowest_priority() -> None:
    assert timers.skew_time(255, 100, 3) == Fraction(1, 256)
    assert timers.skew_time(1, 100, 3) == Fraction(255, 256)
    assert timers.master_down_interval(1, 100, 3) == 3 + Fraction(255, 256)


def test_rfc5798_6_1_skew_scales_with_interval_v3() -> None:
    # Skew is proportional to Master_Adver_Interval in v3: 10 cs -> a tenth of the 1 s skew.
    assert timers.skew_time(100, 10, 3) == Fraction(156 * 10, 25600)
    assert timers.skew_time_s(100, 10, 3) == 0.0609375
    assert timers.master_down_interval_s(100, 10, 3) == 0.3609375


def test_rfc3768_6_1_v2_skew_ignores_interval() -> None:
    # v2: Skew_Time = (256 - Priority) / 256 seconds whatever the advert interval.
    assert timers.skew_time_s(100, 100, 2) == 0.609375
    assert timers.skew_time_s(100, 300, 2) == 0.609375
    assert timers.master_down_interval_s(100, 300, 2) == 9.609375


def test_priority_zero_skew_is_a_whole_interval() -> None:
    assert timers.skew_time(0, 100, 3) == 1


@pytest.mark.parametrize(
    ("priority", "interval_cs", "version"), [(256, 100, 3), (-1, 100, 3), (100, 0, 3), (100, 1, 4)]
)
def test_bad_arguments_are_refused(priority: int, interval_cs: int, version: int) -> None:
    with pytest.raises(ValueError):
        timers.skew_time(priority, interval_cs, version)


@given(
    priority=st.integers(1, 255),
    interval_cs=st.integers(1, 4095),
    version=st.sampled_from([2, 3]),
)
def test_float_values_are_the_exact_values_correctly_rounded(
    priority: int, interval_cs: int, version: int
) -> None:
    exact_down = timers.master_down_interval(priority, interval_cs, version)
    assert timers.master_down_interval_s(priority, interval_cs, version) == float(exact_down)
    skew = timers.skew_time(priority, interval_cs, version)
    assert Fraction(3 * interval_cs, 100) + skew == exact_down
    # Higher priority, shorter wait: the ordering that makes the best backup win.
    assert 0 < skew < (1 if version == 2 else Fraction(interval_cs, 100))
    if priority < 255:
        assert timers.skew_time(priority + 1, interval_cs, version) < skew


def test_module_is_pure() -> None:
    code = (
        "import sys, hadirector.vrrp.timers, hadirector.vrrp.machine, hadirector.vrrp.track, "
        "hadirector.vrrp.group\n"
        "bad = [m for m in ('trio', 'pyroute2', 'scapy', 'structlog') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_arrival_time_counts_back_the_time_spent_in_the_socket() -> None:
    # An advert that waited 3 ms before the agent read it arrived 3 ms before ``now``.
    assert timers.arrival_time(100.0, 0.003, 10) == pytest.approx(99.997)
    assert timers.arrival_time(100.0, 0.0, 10) == 100.0


def test_arrival_time_ignores_a_negative_age() -> None:
    # The stamping clock stepped back: the advert is taken as arrived now, never later.
    assert timers.arrival_time(100.0, -5.0, 100) == 100.0


def test_arrival_time_bounds_the_age_to_a_quarter_interval() -> None:
    # The stamping clock stepped forward by an hour: a quarter interval at most, so a
    # backup's Master_Down deadline cannot move before the next advert is due.
    assert timers.arrival_time(100.0, 3600.0, 100) == 100.0 - 0.25
    assert timers.arrival_time(100.0, 3600.0, 10) == pytest.approx(100.0 - 0.025)


@given(
    now=st.floats(min_value=0, max_value=1e9),
    age=st.floats(min_value=-1e6, max_value=1e6),
    interval_cs=st.integers(min_value=1, max_value=4095),
    priority=st.integers(min_value=1, max_value=254),
)
def test_arrival_time_never_later_than_now_nor_a_deadline_before_the_next_advert(
    now: float, age: float, interval_cs: int, priority: int
) -> None:
    at = timers.arrival_time(now, age, interval_cs)
    assert at <= now
    assert now - at <= interval_cs / 400 * (1 + 1e-9) + 1e-6
    # The Master_Down deadline counted from there is after the next advert is due.
    next_advert = now + timers.interval_s(interval_cs)
    assert at + timers.master_down_interval_s(priority, interval_cs, 3) > next_advert
