"""The machine's two short paths answer as its long paths do (vrrp/machine.py).

``receive_again`` (RFC 5798 §6.4.2: a backup hearing its master's advert again resets the
Master_Down_Timer) and ``advert_tick`` (§6.4.3: a master's Adver_Timer fires, an advert is
sent and the timer reset) are what the agent's hot path asks first; when they answer, the
machine must be left exactly as ``receive`` / ``timer`` would have left it, and when they
do not, nothing may have changed. Two machines are driven through the same random events:
one always by the long paths, one by the short path first; after every event their answers
and their whole state must be equal.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hadirector.vrrp.machine import SendAdvert, State, VrrpMachine
from tests.unit.machinekit import OURS, config

# Sources as the socket hands them: the same object for the same peer.
PEERS = (IPv4Address("192.0.2.5"), IPv4Address("192.0.2.20"), OURS)


def long_receive(m: VrrpMachine, priority: int, interval_cs: int, source: Any, now: float) -> Any:
    return m.receive(priority=priority, interval_cs=interval_cs, source=source, now=now)


def short_receive(m: VrrpMachine, priority: int, interval_cs: int, source: Any, now: float) -> Any:
    down_at = m.receive_again(priority, interval_cs, source, now)
    if down_at is None:
        return long_receive(m, priority, interval_cs, source, now)
    assert m.next_deadline() == down_at  # the deadline it answers is the machine's
    return []


def short_timer(m: VrrpMachine, now: float) -> Any:
    tick = m.advert_tick(now)
    if tick is None:
        return m.timer(now)
    advert, early, at = tick
    assert m.timer_window() == (early, at)
    return [advert]


def state_of(m: VrrpMachine) -> dict[str, Any]:
    return dict(vars(m))


# ("repeat",): the last advert again (the case the short path is for), often.
repeat = st.tuples(st.just("repeat"))
events = st.one_of(
    repeat,
    repeat,
    repeat,
    st.tuples(
        st.just("advert"),
        st.sampled_from([0, 50, 100, 150, 255]),
        st.sampled_from([50, 100, 200, 2000]),
        st.sampled_from(range(len(PEERS))),
    ),
    st.tuples(st.just("timer")),
    st.tuples(st.just("priority"), st.sampled_from([None, 50, 100, 200])),
    st.tuples(st.just("link"), st.booleans()),
    st.tuples(st.just("hold"), st.sampled_from([None, 0.5, 5.0])),
    st.tuples(st.just("preempt"), st.booleans()),
    st.tuples(st.just("stop")),
)


def step(m: VrrpMachine, event: tuple[Any, ...], now: float, short: bool) -> Any:
    kind = event[0]
    if kind == "advert":
        receive = short_receive if short else long_receive
        return receive(m, event[1], event[2], PEERS[event[3]], now)
    if kind == "timer":
        return short_timer(m, now) if short else m.timer(now)
    if kind == "priority":
        return m.set_priority(event[1], now)
    if kind == "link":
        return m.set_link(event[1], now)
    if kind == "hold":
        return m.hold_preempt(None if event[1] is None else now + event[1])
    if kind == "preempt":
        return m.reconfigure(replace(m.cfg, preempt=event[1]), now)
    return m.stop(now)


@settings(max_examples=500, deadline=None)
@given(
    version=st.sampled_from([2, 3]),
    priority=st.sampled_from([100, 255]),
    preempt=st.booleans(),
    preempt_delay_cs=st.sampled_from([0, 300]),
    script=st.lists(
        st.tuples(events, st.sampled_from([0.0, 0.001, 0.3, 0.99, 1.0, 3.7])), max_size=40
    ),
)
def test_short_paths_answer_and_leave_the_machine_as_the_long_paths(
    version: int,
    priority: int,
    preempt: bool,
    preempt_delay_cs: int,
    script: list[tuple[tuple[Any, ...], float]],
) -> None:
    cfg = config(
        version=version, priority=priority, preempt=preempt, preempt_delay_cs=preempt_delay_cs
    )
    long_m, short_m = VrrpMachine(cfg), VrrpMachine(cfg)
    now = 0.0
    assert long_m.start(now) == short_m.start(now)
    last_advert = ("advert", 150, 100, 1)
    for event, elapsed in script:
        now += elapsed
        if event[0] == "repeat":
            event = last_advert
        if event[0] == "advert":
            if version == 2:
                event = (event[0], event[1], 100, event[3])  # v2: whole seconds only
            last_advert = event
        assert step(short_m, event, now, True) == step(long_m, event, now, False), event
        assert state_of(short_m) == state_of(long_m), event


def test_rfc5798_6_4_2_the_same_advert_again_moves_master_down_in_one_call() -> None:
    m = VrrpMachine(config())
    m.start(0.0)
    master = PEERS[1]
    assert m.receive_again(150, 100, master, 0.5) is None  # nothing heard yet: long path
    assert m.receive(priority=150, interval_cs=100, source=master, now=0.5) == []
    before = dict(m.counters)
    down_at = m.receive_again(150, 100, master, 1.5)
    assert down_at == 1.5 + 3.609375  # 3 x 1 s + Skew_Time at priority 100
    assert m.next_deadline() == down_at
    assert m.counters["received"] == before["received"] + 1
    assert m.counters["accepted"] == before["accepted"] + 1
    # Another advert (priority 0, another interval, another source object): not the same.
    assert m.receive_again(0, 100, master, 2.0) is None
    assert m.receive_again(150, 200, master, 2.0) is None
    assert m.receive_again(150, 100, IPv4Address("192.0.2.20"), 2.0) is None


def test_rfc5798_6_4_2_a_lower_priority_advert_under_preemption_is_never_remembered() -> None:
    # Discarded, or accepted only while preemption is delayed (a time-dependent answer).
    m = VrrpMachine(config(preempt_delay_cs=300))
    m.start(0.0)
    assert m.receive(priority=50, interval_cs=100, source=PEERS[0], now=0.5) == []
    assert m.counters["preempt_delayed"] == 1
    assert m.receive_again(50, 100, PEERS[0], 1.0) is None


def test_rfc5798_6_4_3_advert_tick_sends_and_resets_the_adver_timer() -> None:
    m = VrrpMachine(config(priority=255))
    m.start(0.0)
    assert m.state is State.MASTER
    assert m.advert_tick(0.5) is None  # not due yet (1/64 of the interval early at most)
    tick = m.advert_tick(1.0)
    assert tick == (SendAdvert(255, 100), 2.0 - 1.0 / 64, 2.0)
    assert m.counters["adverts_sent"] == 2
    assert m.timer_window() == (2.0 - 1.0 / 64, 2.0)
