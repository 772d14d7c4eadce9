"""Sync groups: members move together, and the group settles without command storms."""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadirector.errors import ConfigError
from hadirector.vrrp.group import SyncGroup
from hadirector.vrrp.machine import Action, MachineConfig, State, Transition, VrrpMachine

B, M, F = State.BACKUP, State.MASTER, State.FAULT


def started(*members: str) -> SyncGroup:
    g = SyncGroup("g", list(members))
    for m in members:
        assert g.on_transition(m, B) == []
    return g


def test_member_becoming_master_takes_the_others() -> None:
    g = started("a", "b", "c")
    assert g.on_transition("a", M) == [("b", M), ("c", M)]
    # The commanded transitions come back: they are not propagated again.
    assert g.on_transition("b", M) == []
    assert g.on_transition("c", M) == []


def test_member_hearing_better_master_takes_the_others_to_backup() -> None:
    g = started("a", "b")
    g.on_transition("a", M)
    g.on_transition("b", M)
    assert g.on_transition("b", B) == [("a", B)]
    assert g.on_transition("a", B) == []


def test_fault_takes_everyone_out_and_recovery_brings_them_back() -> None:
    g = started("a", "b", "c")
    g.on_transition("a", M)
    g.on_transition("b", M)
    g.on_transition("c", M)
    assert g.on_transition("b", F) == [("a", F), ("c", F)]
    assert g.faulty_members == {"b"}
    assert g.on_transition("a", F) == []
    assert g.on_transition("c", F) == []
    assert g.faulty_members == {"b"}
    assert g.on_transition("b", B) == [("a", B), ("c", B)]
    assert g.faulty_members == frozenset()
    assert g.on_transition("a", B) == []


def test_leaving_fault_waits_until_no_member_is_faulty() -> None:
    g = started("a", "b", "c")
    assert g.on_transition("a", F) == [("b", F), ("c", F)]
    g.on_transition("b", F)
    g.on_transition("c", F)
    # c's own fault arises while it was held in FAULT by the group: FAULT -> FAULT report.
    assert g.on_transition("c", F) == []
    assert g.faulty_members == {"a", "c"}
    # a recovers, but c is still faulty: a goes back to FAULT.
    assert g.on_transition("a", B) == [("a", F)]
    assert g.on_transition("a", F) == []
    assert g.faulty_members == {"c"}
    # c recovers: now everyone comes back.
    assert g.on_transition("c", B) == [("a", B), ("b", B)]
    assert g.state_of("a") is F  # until it reports


def test_master_while_another_member_is_faulty_is_sent_back() -> None:
    g = started("a", "b")
    g.on_transition("a", F)
    # b ignored the command (say it was already on its way) and became master on its own.
    assert g.on_transition("b", M) == [("b", F)]


def test_no_duplicate_commands_while_one_is_pending() -> None:
    g = started("a", "b", "c")
    assert g.on_transition("a", M) == [("b", M), ("c", M)]
    assert g.on_transition("a", M) == []  # repeated report: b and c already commanded


def test_stopped_members_are_not_commanded() -> None:
    g = started("a", "b")
    assert g.on_transition("b", State.STOPPED) == []
    assert g.on_transition("a", M) == []


def test_bad_groups() -> None:
    with pytest.raises(ConfigError):
        SyncGroup("g", [])
    with pytest.raises(ConfigError):
        SyncGroup("g", ["a", "a"])
    with pytest.raises(KeyError):
        started("a").on_transition("z", M)


# -- with real machines -------------------------------------------------------------------

PEER = IPv4Address("192.0.2.200")


class Director:
    """One director's machines of a sync group, driven the way the agent drives them."""

    def __init__(self, names: list[str], priorities: list[int] | None = None) -> None:
        self.now = 0.0
        self.group = SyncGroup("g", names)
        self.machines = {
            name: VrrpMachine(
                MachineConfig(
                    vrid=10 + i,
                    priority=(priorities or [100] * len(names))[i],
                    advert_interval_cs=100,
                    version=3,
                    primary_address=IPv4Address(f"192.0.2.{10 + i}"),
                    max_adopted_interval_cs=1000,
                )
            )
            for i, name in enumerate(names)
        }
        self.queue: deque[tuple[str, State]] = deque()
        self.transitions: list[tuple[str, Transition]] = []
        for name, m in self.machines.items():
            self.apply(name, m.start(self.now))

    def apply(self, name: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transition):
                self.transitions.append((name, action))
                self.queue.extend(self.group.on_transition(name, action.new))
        steps = 0
        while self.queue:
            steps += 1
            assert steps < 50, "command storm"
            member, target = self.queue.popleft()
            m = self.machines[member]
            if m.state is not target:
                self.apply(member, m.force(target, self.now, "sync group g"))

    def run_until(self, end: float) -> None:
        while True:
            due = [(d, n) for n, m in self.machines.items() if (d := m.next_deadline()) is not None]
            if not due or min(due)[0] > end:
                break
            self.now, name = min(due)
            self.apply(name, self.machines[name].timer(self.now))
        self.now = end

    def states(self) -> set[State]:
        return {m.state for m in self.machines.values()}


def test_group_of_machines_goes_master_together() -> None:
    d = Director(["a", "b"], [100, 90])
    d.run_until(3.7)  # a's Master_Down fires first, b follows on command
    assert d.states() == {M}
    reasons = {(n, t.new, t.reason) for n, t in d.transitions}
    assert ("b", M, "sync group g") in reasons


def test_link_down_on_one_member_faults_all_and_recovers() -> None:
    d = Director(["a", "b", "c"])
    d.run_until(5.0)
    d.apply("b", d.machines["b"].set_link(False, d.now))
    assert d.states() == {F}
    assert not any(m.holding_addresses for m in d.machines.values())
    d.apply("c", d.machines["c"].set_priority(None, d.now))  # c now faulty on its own too
    d.now += 1
    d.apply("b", d.machines["b"].set_link(True, d.now))
    assert d.states() == {F}
    d.now += 1
    d.apply("c", d.machines["c"].set_priority(100, d.now))
    assert d.states() == {B}
    d.run_until(d.now + 4.0)
    assert d.states() == {M}


def test_better_master_for_one_member_takes_group_to_backup() -> None:
    d = Director(["a", "b"])
    d.run_until(5.0)
    d.apply("a", d.machines["a"].receive(priority=200, interval_cs=100, source=PEER, now=d.now))
    assert d.states() == {B}


events = st.one_of(
    st.tuples(st.just("link"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("track"), st.integers(0, 2), st.one_of(st.none(), st.integers(1, 254))),
    st.tuples(st.just("peer"), st.integers(0, 2), st.integers(0, 254)),
    st.tuples(st.just("wait"), st.integers(0, 2), st.floats(0.01, 5.0)),
)


@settings(max_examples=200, deadline=None)
@given(script=st.lists(events, max_size=25))
def test_group_settles_and_stays_together(script: list[tuple[str, int, object]]) -> None:
    names = ["a", "b", "c"]
    d = Director(names)
    link = dict.fromkeys(names, True)
    tracked: dict[str, int | None] = dict.fromkeys(names, 100)
    for kind, i, value in script:
        name = names[i]
        m = d.machines[name]
        if kind == "link":
            link[name] = bool(value)
            d.apply(name, m.set_link(bool(value), d.now))
        elif kind == "track":
            tracked[name] = value  # type: ignore[assignment]
            d.apply(name, m.set_priority(value, d.now))  # type: ignore[arg-type]
        elif kind == "peer":
            d.apply(
                name,
                m.receive(priority=value, interval_cs=100, source=PEER, now=d.now),  # type: ignore[arg-type]
            )
        else:
            d.run_until(d.now + value)  # type: ignore[operator]
        faulty = {n for n in names if not link[n] or tracked[n] is None}
        if faulty:
            # Any faulty member: nobody holds the addresses, everybody is in FAULT.
            assert d.states() == {F}, (faulty, {n: m.state for n, m in d.machines.items()})
        else:
            assert len(d.states()) == 1  # together: all BACKUP or all MASTER
    d.run_until(d.now + 20.0)  # no peer any more: quiescence
    faulty = {n for n in names if not link[n] or tracked[n] is None}
    assert d.states() == ({F} if faulty else {M})
    assert d.group.faulty_members == faulty
    for m in d.machines.values():
        assert m.holding_addresses is (m.state is M)


def test_the_group_settles_once_per_shared_state() -> None:
    """The group's own state (its notify scripts, the sync daemons following it) changes
    only when every member shares a state, and is reported once per change."""
    group = SyncGroup("g", ["a", "b"])
    assert group.settled is None
    group.on_transition("a", State.BACKUP)
    assert group.settle() is None  # b has not reported yet
    group.on_transition("b", State.BACKUP)
    assert group.settle() is State.BACKUP
    assert group.settle() is None  # nothing new
    commands = group.on_transition("a", State.MASTER)
    assert commands == [("b", State.MASTER)]
    assert group.settle() is None  # b not there yet
    group.on_transition("b", State.MASTER)
    assert group.settle() is State.MASTER and group.settled is State.MASTER


def test_a_replacing_group_carries_the_settled_state() -> None:
    """A reload that changes a group's members keeps its state: not reported again."""
    group = SyncGroup("g", ["a", "b"], settled=State.MASTER)
    for member in ("a", "b"):
        group.on_transition(member, State.MASTER)
    assert group.settle() is None
    group.on_transition("a", State.FAULT)
    group.on_transition("b", State.FAULT)
    assert group.settle() is State.FAULT
