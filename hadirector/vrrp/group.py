"""Sync groups: VRRP instances that change state together (keepalived's vrrp_sync_group).

A director routing between two networks needs the VIPs of both sides on the same box, so
the instances of a group move as one. ``SyncGroup`` is told each member's transitions and
answers with commands ``(member, target_state)`` for the others, which the caller applies
with ``VrrpMachine.force``:

- a member entering FAULT on its own -> every other member to FAULT (the whole group leaves
  MASTER);
- a member leaving FAULT -> the others back to BACKUP, but only when no member is faulty any
  more; while one still is, the recovered member is sent back to FAULT;
- a member becoming MASTER -> the others to MASTER (a faulty group sends it back to FAULT);
- a member going from MASTER to BACKUP (it heard a better master) -> the others to BACKUP.

The group also says when its members come to share a state (``settle``): the group's own
state, which drives its notify scripts and the connection-sync daemons that follow it. It
changes only when every member is in the same state, and is reported once per change.

No command storms: the group remembers the commands it issued, and the transition a command
causes is recognised as such and not propagated again; a member already in (or already
commanded to) a state is not commanded to it. A FAULT reported while the member was
commanded FAULT is the group's doing, not the member's own fault; the machine reports a
later own fault of a forced member as a FAULT -> FAULT transition (see vrrp/machine.py), so
the group learns it.

This module must not do I/O or import anything but the standard library and the pure core.
"""

from __future__ import annotations

from hadirector.errors import ConfigError, Problem
from hadirector.vrrp.machine import State

Command = tuple[str, State]

_LIVE = (State.BACKUP, State.MASTER, State.FAULT)


class SyncGroup:
    """The state of one sync group, and the commands that keep its members together."""

    def __init__(self, name: str, members: list[str], settled: State | None = None) -> None:
        """``settled``: the group's state carried over from a group of the same name that a
        reload replaced (so an unchanged state is not reported again)."""
        problems = []
        if not members:
            problems.append(Problem("instances", "a sync group needs at least one member"))
        if len(set(members)) != len(members):
            problems.append(Problem("instances", "a member is listed twice"))
        if problems:
            raise ConfigError([Problem(f"sync_group {name}.{p.path}", p.message) for p in problems])
        self.name = name
        self.members = list(members)
        self._states: dict[str, State] = dict.fromkeys(members, State.INIT)
        self._own_fault: set[str] = set()
        self._pending: dict[str, State] = {}
        self._settled = settled

    def state_of(self, member: str) -> State:
        """The last state reported for ``member``."""
        return self._states[member]

    @property
    def faulty_members(self) -> frozenset[str]:
        """Members in FAULT on their own (not by the group's command)."""
        return frozenset(self._own_fault)

    @property
    def settled(self) -> State | None:
        """The state the members last shared (None until they first did)."""
        return self._settled

    def settle(self) -> State | None:
        """The group's new state when every member is now in the same state and it differs
        from the last one shared; None otherwise (members apart, or nothing new)."""
        states = set(self._states.values())
        if len(states) != 1:
            return None
        (state,) = states
        if state is State.INIT or state is self._settled:
            return None
        self._settled = state
        return state

    def _command(self, target: State, *, unless: tuple[State, ...] = ()) -> list[Command]:
        commands: list[Command] = []
        for member in self.members:
            state = self._states[member]
            if state not in _LIVE or state is target or state in unless:
                continue
            if self._pending.get(member) is target:
                continue
            self._pending[member] = target
            commands.append((member, target))
        return commands

    def on_transition(self, member: str, new_state: State) -> list[Command]:
        """``member`` entered ``new_state``; commands for the members (in order)."""
        if member not in self._states:
            raise KeyError(f"{member!r} is not a member of sync group {self.name!r}")
        old = self._states[member]
        self._states[member] = new_state
        commanded = self._pending.pop(member, None)
        if new_state is State.FAULT:
            if commanded is State.FAULT and old is not State.FAULT:
                return []  # our own command took effect
            self._own_fault.add(member)
            return self._command(State.FAULT)
        self._own_fault.discard(member)
        if new_state not in _LIVE:
            return []
        if self._own_fault:
            # The group is still faulty: nobody may be BACKUP or MASTER.
            return self._command(State.FAULT)
        if commanded is new_state:
            return []  # our own command took effect
        if new_state is State.MASTER:
            return self._command(State.MASTER)
        if old is State.FAULT:
            return self._command(State.BACKUP, unless=(State.MASTER,))
        if old is State.MASTER:
            return self._command(State.BACKUP)
        return []


__all__ = ["Command", "SyncGroup"]
