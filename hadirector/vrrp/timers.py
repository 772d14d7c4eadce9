"""VRRP timer arithmetic: Skew_Time and Master_Down_Interval (RFC 5798 §6.1, RFC 3768 §6.1).

Pure functions of priority and interval; exact (``arrival_time``: float arithmetic on
times it is given). Intervals come in centiseconds (the unit
of the v3 wire field); results are returned exactly as ``Fraction`` seconds and, for the
callers that schedule with a float clock, as float seconds computed by a single correctly
rounded division (every result is ``n / 25600`` s for an integer ``n``, so values such as
0.609375 s are exact in binary floating point). Skew is never rounded to centiseconds.

- VRRPv3 (RFC 5798 §6.1): Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256,
  Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
- VRRPv2 (RFC 3768 §6.1): Skew_Time = (256 - Priority) / 256 seconds, whatever the
  interval; Master_Down_Interval = 3 * Advertisement_Interval + Skew_Time.

This module must not read a clock, hold state (beyond a memo of its float results) or
import anything but the standard library.
"""

from __future__ import annotations

import functools
from fractions import Fraction

CS_PER_S = 100


def _check(priority: int, interval_cs: int, version: int) -> None:
    if not 0 <= priority <= 255:
        raise ValueError(f"priority must be 0..255, got {priority}")
    if interval_cs < 1:
        raise ValueError(f"interval must be at least 1 cs, got {interval_cs}")
    if version not in (2, 3):
        raise ValueError(f"VRRP version must be 2 or 3, got {version}")


def skew_time(priority: int, interval_cs: int, version: int) -> Fraction:
    """Skew_Time in exact seconds for a router of ``priority`` (RFC 5798 §6.1)."""
    _check(priority, interval_cs, version)
    if version == 2:
        return Fraction(256 - priority, 256)
    return Fraction((256 - priority) * interval_cs, 256 * CS_PER_S)


def master_down_interval(priority: int, interval_cs: int, version: int) -> Fraction:
    """Master_Down_Interval in exact seconds: 3 * interval + Skew_Time (RFC 5798 §6.1)."""
    return Fraction(3 * interval_cs, CS_PER_S) + skew_time(priority, interval_cs, version)


# The float forms are asked for on every advert a backup hears, with few distinct
# arguments: each is computed once (Fraction arithmetic is slow).
@functools.lru_cache(maxsize=1024)
def skew_time_s(priority: int, interval_cs: int, version: int) -> float:
    """Skew_Time as float seconds (correctly rounded from the exact value)."""
    return float(skew_time(priority, interval_cs, version))


@functools.lru_cache(maxsize=1024)
def master_down_interval_s(priority: int, interval_cs: int, version: int) -> float:
    """Master_Down_Interval as float seconds (correctly rounded from the exact value)."""
    return float(master_down_interval(priority, interval_cs, version))


def interval_s(interval_cs: int) -> float:
    """An advertisement interval in float seconds."""
    return interval_cs / CS_PER_S


def arrival_time(now: float, age_s: float, interval_cs: int) -> float:
    """When an advert reached the host, on the clock of ``now``: ``now`` less ``age_s``, how
    long it waited in the socket (the kernel's receive time stamp against the clock it
    was taken on). The timers an advert starts count from its arrival (RFC 5798 §6.4.2:
    Master_Down_Timer, and Skew_Time after a priority 0), not from when a busy process got
    to it.

    The age is bounded to [0, a quarter of the advert's interval]: a negative age (the
    stamping clock stepped back) counts as none, and a longer one is taken as that bound,
    so that a clock stepped forward while the advert waited can move a backup's
    Master_Down deadline at most a quarter of an interval early, never past the next
    advert (the margin is two intervals and Skew_Time)."""
    if age_s <= 0.0:
        return now
    return now - min(age_s, interval_cs / (4 * CS_PER_S))


__all__ = [
    "CS_PER_S",
    "arrival_time",
    "interval_s",
    "master_down_interval",
    "master_down_interval_s",
    "skew_time",
    "skew_time_s",
]
