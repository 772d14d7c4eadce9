"""Rise/fall hysteresis: the one counter behind real-server health checks and track scripts.

A resource that is up goes down after ``fall`` consecutive failures; one that is down comes
back after ``rise`` consecutive successes. One result of the other kind resets the count.
A real server starts up (keepalived's behaviour without ``alpha``): it serves from the first
moment and is taken out only by evidence, ``fall`` failures in a row. A track script starts
unknown (``up=None``): whichever of ``rise`` successes or ``fall`` failures in a row comes
first decides its first state.

This module is part of the pure core: no I/O, no clock reads, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """A state change: the new state and the result that decided it."""

    up: bool
    reason: str


class RiseFall:
    """The hysteresis state of one check: feed results in, get changes out."""

    def __init__(self, rise: int, fall: int, *, up: bool | None = True) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1, got {rise}/{fall}")
        self.rise = rise
        self.fall = fall
        self.up = up  # None: unknown until a first full run of either kind
        self.streak = 0  # consecutive results disagreeing with the current state
        self._streak_ok: bool | None = None  # the result the streak is made of

    def update(self, ok: bool, reason: str = "") -> Change | None:
        """Feed one check result; a ``Change`` when the state flips (or is first known),
        else None."""
        if ok == self.up:
            self.streak = 0
            return None
        if ok is not self._streak_ok:  # only while unknown can the streak change kind
            self._streak_ok = ok
            self.streak = 0
        self.streak += 1
        if self.streak < (self.rise if ok else self.fall):
            return None
        self.up = ok
        self.streak = 0
        return Change(ok, reason)
