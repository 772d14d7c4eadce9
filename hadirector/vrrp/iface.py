"""Following the instance's interface when it goes down, is deleted and comes back.

RFC 5798 section 6.4 has no state for an instance whose interface is down; as keepalived
does, the machine takes the link state (FAULT while it is down, see vrrp/machine.py) and
sends nothing (section 6.4.3: only a master sends adverts). A real interface can
also be deleted and created again under the same name (a VLAN or bond re-created, a VM's
NIC re-plugged): the VRRP socket bound to the old one is dead, even if the new one got the
same ifindex. ``InterfaceFollower`` decides, from the facts the driver gives it (link up or
down, "is the socket stale?", "is there an interface of that name?", the outcome of a
re-open and the clock), what to do:

- down: the machine learns the link is down; a stale socket means the interface is gone,
  said once per disappearance (``InterfaceGone``).
- up with a live socket: the machine learns the link is up.
- up with a stale socket: re-open it (``Reopen``), then report ``reopened`` (the machine
  learns the link is up, ``Reopened`` says how many attempts failed) or ``reopen_failed``
  (e.g. no source address yet): the first failure is said (``NotReady``), the link stays
  down for the machine, and a retry is due ``REOPEN_RETRY_S`` later (``next_deadline``),
  or as soon as an address appears.

This module must not do I/O or import anything but the standard library and the pure core.
"""

from __future__ import annotations

from dataclasses import dataclass

# How often a re-created interface that cannot carry the VRRP socket yet is tried again
# (an address appearing triggers a try at once).
REOPEN_RETRY_S = 0.5


@dataclass(frozen=True)
class SetLink:
    """Tell the machine the link is up or down (``VrrpMachine.set_link``)."""

    up: bool


@dataclass(frozen=True)
class Reopen:
    """Open the VRRP socket on the interface now carrying the name; report the outcome
    with ``reopened`` or ``reopen_failed``."""


@dataclass(frozen=True)
class InterfaceGone:
    """The interface was deleted (said once per disappearance)."""


@dataclass(frozen=True)
class NotReady:
    """The first failed re-open since the interface came back; retried every ``retry_s``."""

    retry_s: float


@dataclass(frozen=True)
class Reopened:
    """The socket follows the new interface, after ``failed_attempts`` failed tries."""

    failed_attempts: int


IfaceCommand = SetLink | Reopen | InterfaceGone | NotReady | Reopened


class InterfaceFollower:
    """Interface re-creation state of one instance: retry deadline, failures, gone."""

    def __init__(self, retry_s: float = REOPEN_RETRY_S) -> None:
        self.retry_s = retry_s
        # When a re-open is to be tried again (None: none pending); read, never written,
        # by the shell's hot path (``next_deadline`` without a call).
        self.retry_at: float | None = None
        self._failures = 0
        self._gone = False

    def next_deadline(self) -> float | None:
        """When a re-open is to be tried again (None: no retry pending)."""
        return self.retry_at

    @property
    def waiting_for_address(self) -> bool:
        """The interface came back without what the socket needs: a retry is pending."""
        return self.retry_at is not None

    def due(self, now: float) -> bool:
        return self.retry_at is not None and now >= self.retry_at

    def link(self, up: bool, *, stale: bool, present: bool = True) -> list[IfaceCommand]:
        """The interface went down (or was deleted), or is up (perhaps a new one).

        ``stale``: the socket's interface was deleted since it was opened. ``present``: an
        interface of the configured name exists now (it may be gone again already)."""
        if not up:
            self.retry_at = None  # its next "up" tries again
            commands: list[IfaceCommand] = []
            if stale and not self._gone:
                self._gone = True
                commands.append(InterfaceGone())
            commands.append(SetLink(False))
            return commands
        if not stale:
            return [SetLink(True)]
        if not present:
            return []  # gone again before we looked: its "down" is on its way
        return [Reopen()]

    def retry(self, *, link_up: bool, stale: bool, present: bool = True) -> list[IfaceCommand]:
        """The retry deadline passed, or an address appeared while waiting: try again if
        the interface is still up (down or gone again: its next "up" tries)."""
        if self.retry_at is None:
            return []
        self.retry_at = None
        if not link_up:
            return []
        return self.link(True, stale=stale, present=present)

    def reopened(self) -> list[IfaceCommand]:
        """The socket was re-opened on the new interface: the link is up for the machine."""
        failed = self._failures
        self._failures = 0
        self.retry_at = None
        self._gone = False
        return [Reopened(failed), SetLink(True)]

    def reopen_failed(self, now: float) -> list[IfaceCommand]:
        """The re-open failed (no address yet, ...): stay down, retry at ``now + retry_s``."""
        first = self._failures == 0
        self._failures += 1
        self.retry_at = now + self.retry_s
        return [NotReady(self.retry_s)] if first else []
