"""Tracking: a VRRP instance's effective priority from the state of tracked resources.

Pure and keepalived-compatible in its arithmetic. Three kinds of tracked resource:

- ``interface`` (state: up, a bool). Weight 0: down means FAULT. Weight W < 0: down
  subtracts |W|. Weight W > 0: up adds W.
- ``script`` (state: succeeding, a bool). Weight 0: failing means FAULT. W > 0: succeeding
  adds W. W < 0: failing subtracts |W|.
- ``file`` (state: the integer read from the file). Weight 0: a non-zero value means FAULT.
  Otherwise the value times the weight is added.
- ``quorum`` (state: some virtual server has quorum, a bool; ``track_quorum``): weighed
  as a script is. Weight 0: every pool without quorum means FAULT.

The sum is clamped to 1..254: tracking never makes a router the address owner nor silences
it (priority 0 is reserved for "leaving", RFC 5798 §5.2.4). A base priority of 255 (address
owner) is returned unchanged unless a FAULT condition holds. ``None`` means FAULT.

A track script's raw results get their hysteresis (``rise``/``fall``) from
``hadirector.checks.risefall``, the counter real-server checks use too.

This module must not run scripts, read files, watch links or import anything but the
standard library and the rest of the pure core: the agent gathers states and calls here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from hadirector.errors import ConfigError, Problem

TrackKind = Literal["interface", "script", "file", "quorum"]
KINDS: tuple[str, ...] = ("interface", "script", "file", "quorum")
MAX_WEIGHT = 254
OWNER_PRIORITY = 255
MIN_PRIORITY = 1
MAX_TRACKED_PRIORITY = 254


@dataclass(frozen=True)
class TrackSpec:
    """One tracked resource of an instance: what it is, and how much it weighs."""

    kind: TrackKind
    name: str
    weight: int

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        if self.kind not in KINDS:
            problems.append(Problem("kind", f"must be one of {', '.join(KINDS)}"))
        if not self.name:
            problems.append(Problem("name", "must not be empty"))
        if not -MAX_WEIGHT <= self.weight <= MAX_WEIGHT:
            problems.append(
                Problem("weight", f"must be -{MAX_WEIGHT}..{MAX_WEIGHT}, got {self.weight}")
            )
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class TrackResult:
    """The outcome of tracking: priority (None = FAULT), what faulted, the sum applied."""

    priority: int | None
    faults: tuple[str, ...]
    adjustment: int


def _contribution(spec: TrackSpec, state: bool | int) -> int | None:
    """Priority change from one resource; None for a FAULT condition."""
    if spec.kind == "file":
        value = int(state)
        if spec.weight == 0:
            return None if value != 0 else 0
        return value * spec.weight
    ok = bool(state)  # interface up / script succeeding / some pool with quorum
    if spec.weight == 0:
        return 0 if ok else None
    if spec.weight > 0:
        return spec.weight if ok else 0
    return 0 if ok else spec.weight


def evaluate(base: int, tracked: Iterable[tuple[TrackSpec, bool | int]]) -> TrackResult:
    """Effective priority of a router of priority ``base`` given its tracked states."""
    if not MIN_PRIORITY <= base <= OWNER_PRIORITY:
        raise ValueError(f"base priority must be 1..255, got {base}")
    faults: list[str] = []
    adjustment = 0
    for spec, state in tracked:
        delta = _contribution(spec, state)
        if delta is None:
            faults.append(f"{spec.kind} {spec.name}")
        else:
            adjustment += delta
    if faults:
        return TrackResult(None, tuple(faults), adjustment)
    if base == OWNER_PRIORITY:
        return TrackResult(OWNER_PRIORITY, (), adjustment)
    priority = min(max(base + adjustment, MIN_PRIORITY), MAX_TRACKED_PRIORITY)
    return TrackResult(priority, (), adjustment)


def effective_priority(base: int, tracked: Iterable[tuple[TrackSpec, bool | int]]) -> int | None:
    """Effective priority (1..254, or 255 for the owner), or None for FAULT."""
    return evaluate(base, tracked).priority


__all__ = [
    "TrackKind",
    "TrackResult",
    "TrackSpec",
    "effective_priority",
    "evaluate",
]
