"""The VRRP state machine (RFC 5798 §6, RFC 3768 for v2), driven with explicit time."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hadirector.errors import ConfigError
from hadirector.vrrp.machine import (
    AcquireAddresses,
    Action,
    MachineConfig,
    ReleaseAddresses,
    SendAdvert,
    State,
    Transition,
    VrrpMachine,
)
from hadirector.vrrp.timers import master_down_interval_s
from tests.unit.machinekit import OURS, config

LOWER = IPv4Address("192.0.2.5")
HIGHER = IPv4Address("192.0.2.20")

DOWN_100 = 3.609375  # Master_Down_Interval, priority 100, 1 s (RFC 5798 §6.1)
SKEW_100 = 0.609375


def backup(now: float = 0.0, **overrides: Any) -> VrrpMachine:
    m = VrrpMachine(config(**overrides))
    assert m.start(now) == [Transition(State.INIT, State.BACKUP, "startup")]
    return m


def master(**overrides: Any) -> tuple[VrrpMachine, float]:
    """A machine that became MASTER by its Master_Down_Timer; returns it and the time."""
    m = backup(0.0, **overrides)
    deadline = m.next_deadline()
    assert deadline is not None
    actions = m.timer(deadline)
    assert [type(a) for a in actions] == [AcquireAddresses, SendAdvert, Transition]
    assert m.state is State.MASTER
    return m, deadline


def advert(m: VrrpMachine, now: float, priority: int = 100, interval_cs: int = 100,
           source: IPv4Address | IPv6Address = HIGHER) -> list[Action]:  # fmt: skip
    return m.receive(priority=priority, interval_cs=interval_cs, source=source, now=now)


# -- §6.4.1 start-up --------------------------------------------------------------------


def test_rfc5798_6_4_1_non_owner_starts_backup_with_master_down_timer() -> None:
    m = backup(10.0)
    assert m.state is State.BACKUP
    assert m.master_adver_interval_cs == 100
    assert m.next_deadline() == 10.0 + DOWN_100


def test_rfc5798_6_4_1_owner_starts_master_addresses_before_advert() -> None:
    m = VrrpMachine(config(priority=255))
    assert m.start(5.0) == [
        AcquireAddresses(),
        SendAdvert(255, 100),
        Transition(State.INIT, State.MASTER, "startup"),
    ]
    assert m.next_deadline() == 6.0
    assert m.start(5.0) == []  # start is idempotent


def test_start_while_link_down_enters_fault() -> None:
    m = VrrpMachine(config())
    assert m.set_link(False, 0.0) == []
    assert m.start(0.0) == [Transition(State.INIT, State.FAULT, "startup")]
    assert m.next_deadline() is None
    assert m.set_link(True, 1.0) == [Transition(State.FAULT, State.BACKUP, "link up")]
    assert m.next_deadline() == 1.0 + DOWN_100


# -- §6.4.2 backup ----------------------------------------------------------------------


def test_rfc5798_6_4_2_master_down_timer_makes_master_in_taker_order() -> None:
    m = backup(0.0)
    assert m.timer(DOWN_100 - 1e-9) == []
    assert m.state is State.BACKUP
    assert m.timer(DOWN_100) == [
        AcquireAddresses(),
        SendAdvert(100, 100),
        Transition(State.BACKUP, State.MASTER, "master down interval expired"),
    ]
    assert m.next_deadline() == DOWN_100 + 1.0
    assert m.timer(DOWN_100 + 1.0) == [SendAdvert(100, 100)]
    assert m.counters["became_master"] == 1


def test_rfc5798_6_4_2_higher_or_equal_priority_resets_master_down() -> None:
    m = backup(0.0)
    assert advert(m, 2.0, priority=150) == []
    assert m.next_deadline() == 2.0 + DOWN_100
    assert advert(m, 4.0, priority=100, source=LOWER) == []  # equal priority: accepted
    assert m.next_deadline() == 4.0 + DOWN_100
    assert m.counters["accepted"] == 2


def test_rfc5798_6_4_2_v3_backup_adopts_master_interval() -> None:
    m = backup(0.0)
    advert(m, 1.0, priority=150, interval_cs=200)
    assert m.master_adver_interval_cs == 200
    # 3 * 2 s + (256 - 100) * 2 s / 256
    assert m.next_deadline() == 1.0 + 6.0 + 1.21875


def test_rfc5798_6_4_2_preempt_discards_lower_priority_timer_keeps_running() -> None:
    m = backup(0.0)
    assert advert(m, 1.0, priority=50) == []
    assert advert(m, 2.0, priority=50) == []
    assert m.next_deadline() == DOWN_100  # not reset: we preempt when it expires
    assert m.counters["discarded_lower_priority"] == 2
    assert m.timer(DOWN_100)[2] == Transition(
        State.BACKUP, State.MASTER, "master down interval expired"
    )


def test_rfc5798_6_4_2_preempt_off_accepts_lower_priority_master() -> None:
    m = backup(0.0, preempt=False)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        assert advert(m, t, priority=50, interval_cs=150) == []
    assert m.next_deadline() == 5.0 + 4.5 + 156 * 1.5 / 256
    assert m.state is State.BACKUP


def test_rfc5798_6_4_2_priority_zero_waits_only_skew_time() -> None:
    m = backup(0.0)
    assert advert(m, 2.0, priority=0) == []
    assert m.next_deadline() == 2.0 + SKEW_100
    assert m.timer(2.0 + SKEW_100) == [
        AcquireAddresses(),
        SendAdvert(100, 100),
        Transition(State.BACKUP, State.MASTER, "master released (priority 0)"),
    ]


def test_rfc5798_6_4_2_priority_zero_skew_uses_adopted_interval() -> None:
    m = backup(0.0)
    advert(m, 1.0, priority=200, interval_cs=50)
    advert(m, 1.5, priority=0, interval_cs=50)
    assert m.next_deadline() == 1.5 + 156 * 0.5 / 256


def test_rfc3768_7_1_v2_interval_mismatch_rejected_no_timer_reset() -> None:
    m = backup(0.0, version=2)
    assert advert(m, 1.0, priority=200, interval_cs=200) == []
    assert m.counters["interval_mismatch"] == 1
    assert m.counters["rejected"] == 1
    assert m.next_deadline() == DOWN_100
    assert advert(m, 1.0, priority=0, interval_cs=300) == []  # even priority 0
    assert m.next_deadline() == DOWN_100
    assert advert(m, 2.0, priority=200, interval_cs=100) == []
    assert m.next_deadline() == 2.0 + DOWN_100


def test_rfc3768_6_1_v2_skew_independent_of_interval() -> None:
    m = backup(0.0, version=2, advert_interval_cs=300)
    assert m.next_deadline() == 9.0 + SKEW_100
    advert(m, 1.0, priority=0, interval_cs=300)
    assert m.next_deadline() == 1.0 + SKEW_100


def test_v3_interval_above_bound_rejected_not_adopted() -> None:
    m = backup(0.0, max_adopted_interval_cs=300)
    assert advert(m, 1.0, priority=200, interval_cs=301) == []
    assert advert(m, 1.0, priority=200, interval_cs=0) == []
    assert m.counters["interval_out_of_bounds"] == 2
    assert m.master_adver_interval_cs == 100
    assert m.next_deadline() == DOWN_100
    advert(m, 2.0, priority=200, interval_cs=300)
    assert m.master_adver_interval_cs == 300


def test_rejected_advert_does_not_move_a_master() -> None:
    m, t = master(max_adopted_interval_cs=300)
    assert advert(m, t + 0.1, priority=254, interval_cs=4000) == []
    assert m.state is State.MASTER
    assert m.next_deadline() == t + 1.0


def test_own_looped_advert_ignored() -> None:
    m, t = master()
    assert advert(m, t + 0.1, priority=100, source=OURS) == []
    assert m.counters["own_advert"] == 1


def test_adverts_ignored_outside_backup_and_master() -> None:
    m = VrrpMachine(config())
    assert advert(m, 0.0, priority=0) == []  # INIT
    m.start(0.0)
    m.set_priority(None, 0.5)
    assert advert(m, 1.0, priority=0) == []  # FAULT
    assert m.next_deadline() is None
    assert m.counters["ignored_inactive"] == 2


# -- preempt_delay ------------------------------------------------------------------------


def test_preempt_delay_holds_off_preemption_after_start() -> None:
    m = backup(0.0, preempt_delay_cs=1000)
    # Within 10 s of start a lower-priority master is accepted like with preemption off.
    for t in (1.0, 4.0, 7.0, 9.9):
        assert advert(m, t, priority=50) == []
        assert m.next_deadline() == t + DOWN_100
    assert m.counters["preempt_delayed"] == 4
    # After the delay, discarded: the timer armed at 9.9 runs out and we preempt.
    assert advert(m, 10.5, priority=50) == []
    assert m.next_deadline() == 9.9 + DOWN_100
    assert m.timer(9.9 + DOWN_100)[2].new is State.MASTER  # type: ignore[union-attr]


def test_preempt_delay_restarts_when_leaving_fault() -> None:
    m = backup(0.0, preempt_delay_cs=500)
    m.set_link(False, 20.0)
    m.set_link(True, 30.0)
    advert(m, 32.0, priority=50)
    assert m.next_deadline() == 32.0 + DOWN_100  # held: 30 + 5 s not yet reached
    advert(m, 35.5, priority=50)
    assert m.next_deadline() == 32.0 + DOWN_100


def test_preempt_delay_never_delays_a_silent_or_leaving_master() -> None:
    m = backup(0.0, preempt_delay_cs=6000)
    advert(m, 1.0, priority=50)
    advert(m, 2.0, priority=0)
    assert m.next_deadline() == 2.0 + SKEW_100


# -- hold_preempt (bulk resync) ----------------------------------------------------------


def test_hold_preempt_holds_until_released() -> None:
    m = backup(0.0)
    assert m.hold_preempt(60.0) == []
    for t in (1.0, 3.0, 5.0):
        assert advert(m, t, priority=50) == []
        assert m.next_deadline() == t + DOWN_100  # accepted as if preemption were off
    assert m.counters["preempt_held"] == 3
    m.hold_preempt(None)  # the resync arrived
    assert advert(m, 6.0, priority=50) == []
    assert m.next_deadline() == 5.0 + DOWN_100  # discarded: the timer runs out, we preempt
    assert m.timer(5.0 + DOWN_100)[2].new is State.MASTER  # type: ignore[union-attr]


def test_hold_preempt_ends_at_its_deadline() -> None:
    m = backup(0.0)
    m.hold_preempt(4.0)
    advert(m, 3.0, priority=50)
    advert(m, 4.5, priority=50)
    assert m.next_deadline() == 3.0 + DOWN_100
    assert m.counters["preempt_held"] == 1


def test_hold_preempt_never_delays_a_silent_or_leaving_master() -> None:
    m = backup(0.0)
    m.hold_preempt(600.0)
    advert(m, 1.0, priority=50)
    assert m.timer(1.0 + DOWN_100)[2].new is State.MASTER  # type: ignore[union-attr]
    m2 = backup(0.0)
    m2.hold_preempt(600.0)
    advert(m2, 1.0, priority=0)
    assert m2.next_deadline() == 1.0 + SKEW_100


# -- §6.4.3 master ------------------------------------------------------------------------


def test_rfc5798_6_4_3_priority_zero_answered_at_once() -> None:
    m, t = master()
    assert advert(m, t + 0.3, priority=0) == [SendAdvert(100, 100)]
    assert m.next_deadline() == t + 1.3  # Adver_Timer reset


def test_rfc5798_6_4_3_higher_priority_steps_down_release_after_hold() -> None:
    m, t = master()
    assert advert(m, t + 0.5, priority=200, interval_cs=50) == [
        SendAdvert(100, 100),  # farewell at our priority: a winner that never heard us learns
        Transition(State.MASTER, State.BACKUP, f"preempted by {HIGHER} (higher priority 200)"),
    ]
    assert m.holding_addresses  # make-before-break: the taker already announced
    assert m.master_adver_interval_cs == 50  # v3 adopts on stepping down
    assert m.next_deadline() == t + 0.5 + 0.1
    assert m.timer(t + 0.59) == []
    assert m.timer(t + 0.6) == [ReleaseAddresses()]
    assert not m.holding_addresses
    assert m.next_deadline() == t + 0.5 + 1.5 + 156 * 0.5 / 256


def test_rfc5798_6_4_3_tie_broken_by_primary_address() -> None:
    m, t = master()
    # Equal priority, sender's primary address greater than ours: we step down.
    actions = advert(m, t + 0.1, priority=100, source=HIGHER)
    assert actions == [
        SendAdvert(100, 100),
        Transition(State.MASTER, State.BACKUP, f"preempted by {HIGHER} (tie, higher address 100)"),
    ]
    m2, t2 = master()
    # Equal priority, sender's address lower: we stay, answer, and re-announce.
    assert advert(m2, t2 + 0.1, priority=100, source=LOWER) == [
        SendAdvert(100, 100),
        AcquireAddresses(),
    ]
    assert m2.state is State.MASTER


def test_rfc5798_6_4_3_tie_break_ipv6() -> None:
    ours = IPv6Address("fe80::10")
    m, t = master(primary_address=ours)
    assert advert(m, t, priority=100, source=IPv6Address("fe80::9"))[0] == SendAdvert(100, 100)
    assert advert(m, t, priority=100, source=IPv6Address("fe80::11"))[1].new is State.BACKUP  # type: ignore[union-attr]


def test_split_brain_winner_advertises_and_reannounces() -> None:
    m, t = master(priority=200)
    assert advert(m, t + 0.4, priority=150) == [SendAdvert(200, 100), AcquireAddresses()]
    assert m.next_deadline() == t + 1.4
    assert m.counters["split_brain_won"] == 1


def test_split_brain_two_machines_end_with_one_master_and_fresh_announce() -> None:
    a, t = master(primary_address=LOWER)
    b, _ = master(primary_address=HIGHER)
    # Both masters; each advert crosses the other's.
    from_a = a.timer(t + 1.0)
    from_b = b.timer(t + 1.0)
    assert from_a == from_b == [SendAdvert(100, 100)]
    a_actions = advert(a, t + 1.001, source=HIGHER)
    b_actions = advert(b, t + 1.001, source=LOWER)
    assert a_actions[0] == SendAdvert(100, 100)  # the loser's farewell
    assert a_actions[1].new is State.BACKUP  # type: ignore[union-attr]
    assert b_actions == [SendAdvert(100, 100), AcquireAddresses()]
    assert [a.state, b.state] == [State.BACKUP, State.MASTER]
    # The winner's advert crossing first: the farewell still reaches the winner, which
    # answers and re-announces.
    c, t3 = master(primary_address=LOWER)
    d, _ = master(primary_address=HIGHER)
    assert advert(c, t3 + 0.2, source=HIGHER)[0] == SendAdvert(100, 100)
    assert advert(d, t3 + 0.201, source=LOWER) == [SendAdvert(100, 100), AcquireAddresses()]
    assert [c.state, d.state] == [State.BACKUP, State.MASTER]


def test_hold_zero_releases_with_the_transition() -> None:
    m, t = master(handover_hold_cs=0)
    assert advert(m, t, priority=200) == [
        SendAdvert(100, 100),
        Transition(State.MASTER, State.BACKUP, f"preempted by {HIGHER} (higher priority 200)"),
        ReleaseAddresses(),
    ]


def test_preempted_hold_cancelled_by_retaking_mastership() -> None:
    m, t = master(handover_hold_cs=100)
    advert(m, t + 0.1, priority=200)
    # The new master leaves at once (priority 0): we wait Skew_Time, less than the hold.
    advert(m, t + 0.2, priority=0)
    assert m.next_deadline() == t + 0.2 + SKEW_100
    actions = m.timer(t + 0.2 + SKEW_100)
    assert actions == [
        AcquireAddresses(),
        SendAdvert(100, 100),
        Transition(State.BACKUP, State.MASTER, "master released (priority 0)"),
    ]
    assert m.counters["release_cancelled"] == 1
    # The pending release is gone: nothing fires at the old release time.
    assert m.timer(t + 1.1) == []
    assert m.holding_addresses


def test_master_down_and_release_due_together_keep_addresses() -> None:
    m, t = master(handover_hold_cs=400)
    advert(m, t + 0.1, priority=200)
    # Master_Down (3.609 s) comes before the 4 s hold; run everything at once, late.
    actions = m.timer(t + 10.0)
    assert ReleaseAddresses() not in actions
    assert actions[2] == Transition(State.BACKUP, State.MASTER, "master down interval expired")


# -- make-before-break stop -----------------------------------------------------------------


def test_stop_as_master_drains_until_taker_heard_plus_hold() -> None:
    m, t = master()
    assert m.stop(t + 0.5) == [SendAdvert(0, 100)]
    assert m.state is State.MASTER and m.draining and not m.stopped
    assert m.holding_addresses
    assert m.stop(t + 0.6) == []
    # Priority-0 repeated each interval until the taker is heard.
    assert m.next_deadline() == t + 1.5
    assert m.timer(t + 1.5) == [SendAdvert(0, 100)]
    assert advert(m, t + 1.6, priority=0, source=LOWER) == []  # another leaver: not a taker
    assert m.next_deadline() == t + 2.5
    # The peer took over: it advertises with priority > 0.
    assert advert(m, t + 1.7, priority=90, source=LOWER) == []
    assert m.state is State.MASTER
    assert m.next_deadline() == pytest.approx(t + 1.8)
    deadline = m.next_deadline()
    assert deadline is not None
    assert m.timer(deadline - 1e-9) == []
    assert m.timer(deadline) == [
        ReleaseAddresses(),
        Transition(State.MASTER, State.STOPPED, "stopped (handed over)"),
    ]
    assert m.stopped and not m.draining
    assert m.next_deadline() is None
    assert m.counters["drain_timeouts"] == 0


def test_stop_as_master_releases_after_peer_master_down_if_nobody_heard() -> None:
    m, t = master()
    m.stop(t)
    deadline = t + 3 + 255 / 256  # Master_Down_Interval of a priority-1 peer at 1 s
    sent = []
    now = t
    while (nxt := m.next_deadline()) is not None and nxt < deadline:
        now = nxt
        sent += m.timer(now)
    assert sent == [SendAdvert(0, 100)] * 3
    assert m.next_deadline() == deadline
    assert m.timer(deadline) == [
        ReleaseAddresses(),
        Transition(State.MASTER, State.STOPPED, "stopped (no taker heard)"),
    ]
    assert m.counters["drain_timeouts"] == 1


def test_stop_when_not_master_is_immediate() -> None:
    m = backup(0.0)
    assert m.stop(1.0) == [Transition(State.BACKUP, State.STOPPED, "stopped")]
    assert m.stopped and m.next_deadline() is None
    assert advert(m, 2.0, priority=0) == []
    assert m.set_link(False, 2.0) == [] and m.set_priority(None, 2.0) == []
    f = VrrpMachine(config())
    assert f.stop(0.0) == [Transition(State.INIT, State.STOPPED, "stopped")]


def test_stop_during_preempted_hold_releases_at_once() -> None:
    m, t = master()
    advert(m, t, priority=200)
    assert m.stop(t + 0.01) == [
        ReleaseAddresses(),
        Transition(State.BACKUP, State.STOPPED, "stopped"),
    ]


def test_link_down_while_draining_releases_at_once() -> None:
    m, t = master()
    m.stop(t)
    assert m.set_link(False, t + 0.2) == [
        ReleaseAddresses(),
        Transition(State.MASTER, State.STOPPED, "stopped (link down)"),
    ]


# -- tracking ---------------------------------------------------------------------------------


def test_tracking_in_backup_applies_at_next_timer_reset() -> None:
    m = backup(0.0)
    assert m.set_priority(200, 1.0) == []
    assert m.effective_priority == 200
    assert m.next_deadline() == DOWN_100  # the running timer is kept
    advert(m, 2.0, priority=220)
    assert m.next_deadline() == 2.0 + 3 + 56 / 256


def test_tracking_in_master_advertised_from_next_advert() -> None:
    m, t = master()
    assert m.set_priority(60, t + 0.2) == []
    assert m.timer(t + 1.0) == [SendAdvert(60, 100)]
    # And it is the priority compared on receipt: 80 now outranks us.
    assert advert(m, t + 1.1, priority=80)[1].new is State.BACKUP  # type: ignore[union-attr]


def test_tracking_fault_as_master_sends_priority_zero_then_releases() -> None:
    m, t = master()
    assert m.set_priority(None, t + 0.3) == [
        SendAdvert(0, 100),
        Transition(State.MASTER, State.FAULT, "tracking fault"),
        ReleaseAddresses(),
    ]
    assert m.next_deadline() is None
    assert m.set_priority(None, t + 0.4) == []
    assert m.set_priority(90, t + 1.0) == [
        Transition(State.FAULT, State.BACKUP, "tracking recovered")
    ]
    assert m.effective_priority == 90
    assert m.next_deadline() == t + 1.0 + 3 + 166 / 256


def test_tracking_fault_as_backup_and_preempted_hold_releases_at_once() -> None:
    m, t = master()
    advert(m, t, priority=200)
    assert m.set_priority(None, t + 0.01) == [
        Transition(State.BACKUP, State.FAULT, "tracking fault"),
        ReleaseAddresses(),
    ]


def test_owner_priority_never_changed_by_tracking() -> None:
    m = VrrpMachine(config(priority=255))
    m.start(0.0)
    assert m.set_priority(100, 0.1) == []
    assert m.effective_priority == 255
    assert m.set_priority(None, 0.2)[1] == Transition(State.MASTER, State.FAULT, "tracking fault")
    assert m.set_priority(255, 0.3)[2] == Transition(
        State.FAULT, State.MASTER, "tracking recovered"
    )


def test_set_priority_out_of_range_is_our_bug() -> None:
    m = backup()
    with pytest.raises(ValueError):
        m.set_priority(0, 1.0)
    with pytest.raises(ValueError):
        m.set_priority(255, 1.0)


def test_link_down_as_master_releases_without_advert() -> None:
    m, t = master()
    assert m.set_link(False, t + 0.1) == [
        Transition(State.MASTER, State.FAULT, "link down"),
        ReleaseAddresses(),
    ]
    assert m.set_link(False, t + 0.2) == []


def test_fault_ends_only_when_every_cause_is_gone() -> None:
    m = backup(0.0)
    m.set_link(False, 1.0)
    assert m.set_priority(None, 1.5) == []
    assert m.set_priority(100, 2.0) == []
    assert m.state is State.FAULT
    assert m.fault_reasons == ("link down",)
    assert m.set_link(True, 3.0) == [Transition(State.FAULT, State.BACKUP, "link up")]


def test_owner_link_up_rerun_init_goes_master() -> None:
    m = VrrpMachine(config(priority=255))
    m.start(0.0)
    m.set_link(False, 1.0)
    assert m.set_link(True, 2.0) == [
        AcquireAddresses(),
        SendAdvert(255, 100),
        Transition(State.FAULT, State.MASTER, "link up"),
    ]


# -- sync-group commands ----------------------------------------------------------------------


def test_force_master_from_backup_uses_taker_order() -> None:
    m = backup(0.0)
    assert m.force(State.MASTER, 1.0, "sync group g") == [
        AcquireAddresses(),
        SendAdvert(100, 100),
        Transition(State.BACKUP, State.MASTER, "sync group g"),
    ]
    assert m.force(State.MASTER, 1.1, "sync group g") == []


def test_force_backup_from_master_holds_release() -> None:
    m, t = master()
    assert m.force(State.BACKUP, t, "sync group g") == [
        Transition(State.MASTER, State.BACKUP, "sync group g")
    ]
    assert m.timer(t + 0.1) == [ReleaseAddresses()]


def test_force_fault_and_back() -> None:
    m, t = master()
    assert m.force(State.FAULT, t, "sync group g") == [
        SendAdvert(0, 100),
        Transition(State.MASTER, State.FAULT, "sync group g"),
        ReleaseAddresses(),
    ]
    assert m.fault_reasons == ("sync group",)
    assert m.force(State.MASTER, t + 1, "sync group g") == [
        AcquireAddresses(),
        SendAdvert(100, 100),
        Transition(State.FAULT, State.MASTER, "sync group g"),
    ]
    m.force(State.FAULT, t + 2, "g")
    assert m.force(State.BACKUP, t + 3, "g") == [Transition(State.FAULT, State.BACKUP, "g")]
    assert m.next_deadline() == t + 3 + DOWN_100


def test_forced_fault_becoming_own_fault_is_reported() -> None:
    m = backup(0.0)
    m.force(State.FAULT, 1.0, "g")
    assert m.set_link(False, 2.0) == [Transition(State.FAULT, State.FAULT, "link down")]
    assert m.force(State.BACKUP, 3.0, "g") == [
        Transition(State.FAULT, State.FAULT, "g refused: link down")
    ]
    assert m.force(State.MASTER, 3.0, "g")[0].new is State.FAULT  # type: ignore[union-attr]
    assert m.counters["force_refused"] == 2
    # Own recovery leaves FAULT even though the group had forced it (the group decides).
    assert m.set_link(True, 4.0) == [Transition(State.FAULT, State.BACKUP, "link up")]


def test_force_ignored_before_start_after_stop_and_while_draining() -> None:
    m = VrrpMachine(config())
    assert m.force(State.MASTER, 0.0, "g") == []
    d, t = master()
    d.stop(t)
    assert d.force(State.BACKUP, t, "g") == []
    assert d.force(State.FAULT, t, "g") == []
    assert m.counters["force_ignored"] == 1
    assert d.counters["force_ignored"] == 2
    with pytest.raises(ValueError):
        d.force(State.STOPPED, t, "g")


# -- reconfigure ------------------------------------------------------------------------------


def test_reconfigure_backup_no_transition_timers_kept() -> None:
    m = backup(0.0)
    advert(m, 1.0, priority=150, interval_cs=200)
    deadline = m.next_deadline()
    new = replace(m.cfg, priority=120, preempt=False, advert_interval_cs=50)
    assert m.reconfigure(new, 2.0) == []
    assert m.state is State.BACKUP
    assert m.next_deadline() == deadline
    assert m.effective_priority == 120
    assert m.master_adver_interval_cs == 200  # still the master's


def test_reconfigure_master_keeps_tracking_offset_and_advertises_change() -> None:
    m, t = master()
    m.set_priority(80, t)  # tracking: -20
    assert m.reconfigure(replace(m.cfg, priority=150), t + 0.5) == [SendAdvert(130, 100)]
    assert m.state is State.MASTER
    assert m.next_deadline() == t + 1.5
    assert m.reconfigure(replace(m.cfg, handover_hold_cs=30), t + 0.6) == []
    assert m.reconfigure(replace(m.cfg, advert_interval_cs=20), t + 0.7) == [SendAdvert(130, 20)]
    assert m.next_deadline() == pytest.approx(t + 0.9)


def test_reconfigure_refuses_vrid_change() -> None:
    m = backup()
    with pytest.raises(ValueError):
        m.reconfigure(replace(m.cfg, vrid=52), 1.0)


# -- configuration ----------------------------------------------------------------------------


def test_config_validation_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        config(vrid=0, priority=0, advert_interval_cs=5000, max_adopted_interval_cs=0,
               handover_hold_cs=-1, preempt_delay_cs=-1)  # fmt: skip
    paths = {p.path for p in info.value.problems}
    assert paths == {
        "vrid",
        "priority",
        "advert_interval_cs",
        "max_adopted_interval_cs",
        "handover_hold_cs",
        "preempt_delay_cs",
    }
    with pytest.raises(ConfigError):
        config(version=2, advert_interval_cs=150)
    assert config(version=2, advert_interval_cs=300).advert_interval_cs == 300


# -- one machine, random inputs (hypothesis) ---------------------------------------------------

machine_ops = st.lists(
    st.one_of(
        st.tuples(st.just("advert"), st.integers(0, 255), st.sampled_from([0, 50, 100, 200, 999])),
        st.tuples(st.just("wait"), st.floats(0.0, 5.0), st.just(0)),
        st.tuples(st.just("link"), st.booleans(), st.just(0)),
        st.tuples(st.just("track"), st.one_of(st.none(), st.integers(1, 254)), st.just(0)),
        st.tuples(st.just("stop"), st.just(0), st.just(0)),
        st.tuples(
            st.just("force"), st.sampled_from([State.BACKUP, State.MASTER, State.FAULT]), st.just(0)
        ),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(version=st.sampled_from([2, 3]), priority=st.integers(1, 255), ops=machine_ops)
def test_rejected_adverts_change_nothing_and_timers_match_state(
    version: int, priority: int, ops: list[tuple[str, Any, Any]]
) -> None:
    """RFC 5798 §7.1 / RFC 3768 §7.1: a rejected advert changes no state and no timer."""
    m = VrrpMachine(config(version=version, priority=priority, max_adopted_interval_cs=200))
    now = 0.0
    m.start(now)
    for kind, a, b in ops:
        before = (m.state, m.next_deadline(), m.master_adver_interval_cs, m.holding_addresses)
        rejected = m.counters["rejected"]
        if kind == "advert":
            actions = advert(m, now, priority=a, interval_cs=b, source=LOWER)
            if m.counters["rejected"] != rejected:
                assert actions == []
                assert before == (
                    m.state, m.next_deadline(), m.master_adver_interval_cs, m.holding_addresses
                )  # fmt: skip
        elif kind == "wait":
            end = now + a
            while (d := m.next_deadline()) is not None and d <= end:
                now = d
                m.timer(now)
            now = end
        elif kind == "link":
            m.set_link(a, now)
        elif kind == "track":
            m.set_priority(a, now)
        elif kind == "stop":
            m.stop(now)
        else:
            m.force(a, now, "g")
        deadline = m.next_deadline()
        if m.state in (State.BACKUP, State.MASTER):
            assert deadline is not None and deadline > now - 1e-9
        else:
            assert deadline is None
        assert m.holding_addresses is (m.state is State.MASTER) or (
            m.state is State.BACKUP and m.holding_addresses  # preempted, within the hold
        )
        if m.state is State.FAULT:
            assert m.fault_reasons


# -- two machines on a simulated wire (hypothesis stateful) -----------------------------------

LATENCY_S = 0.001


class Node:
    """One director: a machine (None while not running), its link and tracking input."""

    def __init__(self, cfg: MachineConfig) -> None:
        self.cfg = cfg
        self.machine: VrrpMachine | None = None
        self.link_up = True
        self.priority_input: int | None = cfg.priority if cfg.priority < 255 else 255
        self.holding = False
        self.state = State.INIT

    @property
    def running(self) -> bool:
        return self.machine is not None and not self.machine.stopped

    @property
    def healthy(self) -> bool:
        """Running, not leaving, linked, not faulted by tracking: it should take part."""
        m = self.machine
        return (
            m is not None
            and not m.stopped
            and not m.draining
            and self.link_up
            and self.priority_input is not None
        )


class Pair:
    """Two machines wired to each other through a lossless wire with a small latency."""

    def __init__(self, configs: tuple[MachineConfig, MachineConfig]) -> None:
        self.nodes = [Node(c) for c in configs]
        self.now = 0.0
        self.wire: list[tuple[float, int, int, SendAdvert]] = []
        self.seq = 0
        self.both_master_since: float | None = None
        self.longest_both_master_s = 0.0

    def perform(self, i: int, actions: list[Action]) -> None:
        node = self.nodes[i]
        m = node.machine
        assert m is not None
        # A taker reports its transition after its addresses and first advert.
        taking = any(isinstance(a, Transition) and a.new is State.MASTER for a in actions)
        for k, action in enumerate(actions):
            if isinstance(action, Transition):
                assert action.old is node.state, (action, node.state)
                node.state = action.new
                if action.new is State.MASTER:
                    # Make-before-break: addresses up and announced before the first advert,
                    # both before the transition is reported.
                    assert k >= 2 and actions[k - 2 : k] == [AcquireAddresses(), SendAdvert(
                        m.effective_priority, node.cfg.advert_interval_cs)]  # fmt: skip
            elif isinstance(action, AcquireAddresses):
                assert node.state is State.MASTER or taking
                node.holding = True
            elif isinstance(action, ReleaseAddresses):
                assert node.holding
                node.holding = False
            else:
                assert node.state is State.MASTER or taking
                if node.link_up:
                    self.seq += 1
                    self.wire.append((self.now + LATENCY_S, self.seq, 1 - i, action))
        assert node.state is m.state
        assert node.holding is m.holding_addresses
        if m.state in (State.FAULT, State.STOPPED, State.INIT):
            assert not node.holding
        if m.state is State.MASTER:
            assert node.holding
        self.check_masters()

    def check_masters(self) -> None:
        both = all(n.state is State.MASTER and n.running for n in self.nodes)
        if both and all(n.link_up for n in self.nodes):
            if self.both_master_since is None:
                self.both_master_since = self.now
            span = self.now - self.both_master_since
            self.longest_both_master_s = max(self.longest_both_master_s, span)
        else:
            self.both_master_since = None

    def run_until(self, end: float) -> None:
        while True:
            events: list[tuple[float, int, int]] = []  # (time, kind 0=wire 1=timer, index)
            if self.wire:
                first = min(self.wire)
                events.append((first[0], 0, 0))
            for i, n in enumerate(self.nodes):
                if n.running:
                    assert n.machine is not None
                    d = n.machine.next_deadline()
                    if d is not None:
                        events.append((d, 1, i))
            if not events or min(events)[0] > end:
                break
            when, kind, i = min(events)
            self.now = max(self.now, when)
            if kind == 0:
                self.wire.sort()
                _, _, dst, adv = self.wire.pop(0)
                src = self.nodes[1 - dst]
                node = self.nodes[dst]
                if node.running and node.link_up and src.link_up:
                    assert node.machine is not None
                    self.perform(dst, node.machine.receive(
                        priority=adv.priority, interval_cs=adv.interval_cs,
                        source=src.cfg.primary_address, now=self.now))  # fmt: skip
            else:
                m = self.nodes[i].machine
                assert m is not None
                self.perform(i, m.timer(self.now))
                d = m.next_deadline()
                assert d is None or d > self.now  # no busy loop
        self.now = end
        self.check_masters()


node_index = st.integers(0, 1)


class TwoRouters(RuleBasedStateMachine):
    """Random starts, stops, priority changes and link flaps between two routers."""

    pair: Pair

    @initialize(
        version=st.sampled_from([2, 3]),
        intervals=st.tuples(st.sampled_from([20, 50, 100]), st.sampled_from([20, 50, 100])),
        priorities=st.tuples(st.integers(1, 255), st.integers(1, 255)),
        preempt=st.tuples(st.booleans(), st.booleans()),
        delays=st.tuples(st.sampled_from([0, 0, 150]), st.sampled_from([0, 0, 150])),
        holds=st.tuples(st.sampled_from([0, 10, 30]), st.sampled_from([0, 10, 30])),
    )
    def setup(self, version: int, intervals: tuple[int, int], priorities: tuple[int, int],
              preempt: tuple[bool, bool], delays: tuple[int, int],
              holds: tuple[int, int]) -> None:  # fmt: skip
        if version == 2:
            intervals = (100, 100)  # v2 intervals must match (else both reject: a config error)
        configs = tuple(
            MachineConfig(
                vrid=7,
                priority=priorities[i],
                advert_interval_cs=intervals[i],
                version=version,
                primary_address=IPv4Address(f"192.0.2.{i + 1}"),
                max_adopted_interval_cs=100,
                preempt=preempt[i],
                preempt_delay_cs=delays[i],
                handover_hold_cs=holds[i],
            )
            for i in (0, 1)
        )
        self.pair = Pair((configs[0], configs[1]))
        for i in (0, 1):
            self.do_start(i)

    def do_start(self, i: int) -> None:
        node = self.pair.nodes[i]
        node.machine = VrrpMachine(node.cfg)
        node.state = State.INIT
        node.holding = False
        now = self.pair.now
        if not node.link_up:
            assert node.machine.set_link(False, now) == []
        self.pair.perform(i, node.machine.start(now))
        if node.priority_input != node.cfg.priority:
            self.pair.perform(i, node.machine.set_priority(node.priority_input, now))

    @rule(dt=st.floats(0.001, 3.0))
    def advance(self, dt: float) -> None:
        self.pair.run_until(self.pair.now + dt)

    @rule(i=node_index)
    def stop(self, i: int) -> None:
        node = self.pair.nodes[i]
        if node.machine is not None:
            self.pair.perform(i, node.machine.stop(self.pair.now))

    @rule(i=node_index)
    def start(self, i: int) -> None:
        if not self.pair.nodes[i].running:
            self.do_start(i)

    @rule(i=node_index, priority=st.one_of(st.none(), st.integers(1, 254)))
    def track(self, i: int, priority: int | None) -> None:
        node = self.pair.nodes[i]
        if node.cfg.priority == 255 and priority is not None:
            priority = 255
        node.priority_input = priority
        if node.running:
            assert node.machine is not None
            self.pair.perform(i, node.machine.set_priority(priority, self.pair.now))

    @rule(i=node_index, up=st.booleans())
    def link(self, i: int, up: bool) -> None:
        node = self.pair.nodes[i]
        node.link_up = up
        if node.running:
            assert node.machine is not None
            self.pair.perform(i, node.machine.set_link(up, self.pair.now))

    @precondition(lambda self: hasattr(self, "pair"))
    @rule()
    def quiesce(self) -> None:
        """After every timer has had its say: one master among the healthy routers."""
        self.pair.run_until(self.pair.now + 20.0)
        nodes = self.pair.nodes
        healthy = [n for n in nodes if n.healthy]
        masters = [n for n in nodes if n.running and n.state is State.MASTER]
        if healthy:
            assert len(masters) == 1, [(n.state, n.cfg.priority) for n in nodes]
            assert masters[0] in healthy
        else:
            assert masters == []
        for n in nodes:
            assert n.holding is (n.running and n.state is State.MASTER)
            if n.machine is not None:
                assert not n.machine.draining  # drains always end

    @invariant()
    def never_two_masters_longer_than_master_down(self) -> None:
        if not hasattr(self, "pair"):
            return
        # The longest Master_Down_Interval in play: priority 1, the longer interval.
        interval_cs = max(n.cfg.advert_interval_cs for n in self.pair.nodes)
        bound = master_down_interval_s(1, interval_cs, self.pair.nodes[0].cfg.version)
        assert self.pair.longest_both_master_s <= bound


TwoRouters.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_two_routers = TwoRouters.TestCase


def test_adver_timer_may_run_a_64th_of_the_interval_early_master_down_never() -> None:
    # A caller waking for another instance's timer may send this one's advert a little
    # early (one wake-up for both); the next is counted from then. Master_Down, the one
    # that makes a backup take over, runs only when it expires (RFC 5798 §6.4.2).
    m, t = master()
    assert m.timer_window() == (t + 1.0 - 1 / 64, t + 1.0)
    assert m.timer(t + 1.0 - 1 / 64 - 0.001) == []
    assert m.timer(t + 1.0 - 1 / 64) == [SendAdvert(100, 100)]
    assert m.next_deadline() == t + 2.0 - 1 / 64
    b = backup(0.0)
    assert b.timer_window() == (DOWN_100, DOWN_100)
    assert b.timer(DOWN_100 - 0.001) == []
    assert b.state is State.BACKUP
