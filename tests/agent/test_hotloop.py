"""The VRRP hot path's thread (hadirector/agent/hotloop.py): deadlines and readers served
in a thread of its own that never runs while trio runs, under trio's real clock.

These wait for events, never for a time: a slow machine makes them slower, not flaky."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import trio

from hadirector.agent.hotloop import HotLoop, MonotonicClock


def test_callbacks_run_in_the_thread_at_their_deadlines_in_order() -> None:
    async def main() -> None:
        loop = HotLoop()
        calls: list[tuple[str, float, float, int]] = []
        done = trio.Event()

        def record(name: str, at: float, last: bool = False):  # type: ignore[no-untyped-def]
            def callback(now: float) -> None:
                calls.append((name, at, now, threading.get_ident()))
                if last:
                    loop.call_in_trio(done.set)

            return callback

        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            start = loop.now()
            loop.call_at(start + 0.06, record("c", start + 0.06, last=True))
            loop.call_at(start + 0.02, record("a", start + 0.02))
            # An earlier request than the one the thread sleeps for moves its wake-up.
            loop.call_at(start + 0.04, record("b", start + 0.04))
            await done.wait()
            nursery.cancel_scope.cancel()
        assert [c[0] for c in calls] == ["a", "b", "c"]
        for _name, at, now, ident in calls:
            assert now >= at  # never before its deadline
            assert ident != threading.get_ident()  # in the hot thread, not trio's
        assert len(loop) == 0

    trio.run(main)


def test_the_thread_never_runs_while_trio_runs() -> None:
    """trio keeps the baton while it runs tasks, even when a task blocks without a
    checkpoint (time.sleep releases the GIL, not the baton): every callback the thread runs
    finds trio outside its tasks."""

    async def main() -> None:
        loop = HotLoop()
        in_trio = False
        seen: list[bool] = []

        def tick(now: float) -> None:
            seen.append(in_trio)
            if len(seen) < 30:
                loop.call_at(now + 0.001, tick)

        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            loop.call_at(loop.now(), tick)
            while len(seen) < 30:
                in_trio = True
                time.sleep(0.005)  # the thread's deadlines fall due meanwhile
                in_trio = False
                await trio.sleep(0.002)
            nursery.cancel_scope.cancel()
        assert seen and not any(seen)

    trio.run(main)


def test_a_reader_is_served_in_the_thread_and_hands_over_to_trio() -> None:
    async def main() -> None:
        loop = HotLoop()
        a, b = socket.socketpair()
        a.setblocking(False)
        got: list[bytes] = []
        arrived = trio.Event()
        trio_thread = threading.get_ident()
        handed_in: list[int] = []

        def ready() -> None:
            got.append(a.recv(100))

            def in_trio() -> None:
                handed_in.append(threading.get_ident())
                arrived.set()

            loop.call_in_trio(in_trio)

        loop.add_reader(a.fileno(), ready)
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            b.send(b"advert")
            await arrived.wait()
            loop.remove_reader(a.fileno())
            nursery.cancel_scope.cancel()
        a.close()
        b.close()
        assert got == [b"advert"]
        assert handed_in == [trio_thread]

    trio.run(main)


def test_a_flooded_reader_does_not_starve_trio() -> None:
    """The socket is never empty while trio runs its tasks (the reader takes one byte per
    turn of 60,000 queued): trio's checkpoints still complete, turn about with the thread."""

    async def main() -> None:
        loop = HotLoop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.send(b"x" * 60000)
        turns = 0
        flooding = trio.Event()

        def ready() -> None:
            nonlocal turns
            a.recv(1)
            turns += 1
            if turns == 1:
                loop.call_in_trio(flooding.set)

        loop.add_reader(a.fileno(), ready)
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            await flooding.wait()
            for _ in range(200):
                await trio.sleep(0)
            left = turns
            loop.remove_reader(a.fileno())
            nursery.cancel_scope.cancel()
        a.close()
        b.close()
        assert 0 < left < 60000  # trio got through while the flood went on

    trio.run(main)


def test_a_callback_that_raises_ends_run_with_its_exception() -> None:
    class Boom(Exception):
        pass

    def explode(now: float) -> None:
        raise Boom("in the hot thread")

    async def main() -> None:
        loop = HotLoop()
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            loop.call_at(loop.now(), explode)

    with pytest.raises(BaseExceptionGroup) as raised:
        trio.run(main)
    assert raised.value.subgroup(Boom) is not None


def test_a_due_deadline_reads_what_arrived_while_the_thread_waited_for_its_turn() -> None:
    """The thread wakes for a kick alone, then waits for the baton while trio runs; an advert
    arrives and the deadline passes meanwhile. The advert is read before the deadline is
    served (a backup whose master's advert sits in its socket must not take over)."""

    async def main() -> None:
        loop = HotLoop()
        a, b = socket.socketpair()
        a.setblocking(False)
        order: list[str] = []
        done = trio.Event()

        def ready() -> None:
            with contextlib.suppress(BlockingIOError):
                a.recv(100)
                order.append("read")

        def due(now: float) -> None:
            order.append("deadline")
            loop.call_in_trio(done.set)

        loop.add_reader(a.fileno(), ready)
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            await trio.sleep(0.01)  # the thread waits with no deadline
            # From here trio keeps the baton (no checkpoint): the request kicks the thread
            # awake, and it waits for its turn while the advert arrives and the deadline
            # passes.
            at = loop.now() + 0.03
            loop.call_at(at, due)
            time.sleep(0.02)
            b.send(b"advert")
            while loop.now() < at + 0.02:
                time.sleep(0.01)
            await done.wait()
            loop.remove_reader(a.fileno())
            nursery.cancel_scope.cancel()
        a.close()
        b.close()
        assert order == ["read", "deadline"]

    trio.run(main)


def test_the_agents_clock_is_a_monotonic_reading_and_the_loop_reads_it() -> None:
    """trio runs on ``MonotonicClock`` in the agent (cli.py): its reading is
    ``time.monotonic`` itself, and the hot loop's ``now`` is trio's time from either
    thread."""
    clock = MonotonicClock()
    assert clock.current_time is time.monotonic
    before = time.monotonic()
    assert 0.9 < clock.deadline_to_sleep_time(before + 1.0) <= 1.0

    async def main() -> None:
        loop = HotLoop()
        seen: list[float] = []
        done = trio.Event()

        def callback(now: float) -> None:
            seen.extend((now, loop.now()))
            loop.call_in_trio(done.set)

        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            asked = trio.current_time()
            assert asked <= loop.now() <= trio.current_time()
            loop.call_at(asked + 0.01, callback)
            await done.wait()
            nursery.cancel_scope.cancel()
        assert asked + 0.01 <= seen[0] <= seen[1] <= trio.current_time()
        assert before <= asked <= time.monotonic()  # the same clock, no offset

    trio.run(main, clock=clock)


def test_a_request_made_by_a_callback_is_not_asked_again_in_that_wake_up() -> None:
    """The top of the heap is settled (its requester asked whether its deadline moved)
    after the callbacks only if it is an older request: one a callback just made is
    where its requester said (a master's next Adver_Timer). Asked only in the wake-ups
    toward it (epoll's, ending a little early, then the timer's), never in the one that
    made it, 10 ms before."""

    async def main() -> None:
        loop = HotLoop()
        asked: list[tuple[float, float]] = []  # (its deadline, when it was asked)
        ticks: list[float] = []
        done = trio.Event()

        def tick(now: float) -> None:
            ticks.append(now)
            if len(ticks) == 4:
                loop.call_in_trio(done.set)
                return
            at = now + 0.01

            def current() -> tuple[float, float]:
                asked.append((at, loop.now()))
                return at, at

            loop.call_at(at, tick, None, current)

        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            loop.call_at(loop.now(), tick)
            await done.wait()
            nursery.cancel_scope.cancel()
        assert {at for at, _when in asked} == {t + 0.01 for t in ticks[:3]}
        # epoll's wait ends at most 1.25 ms + 0.1 % early (agent/epollwait.py).
        assert all(when >= at - 0.002 for at, when in asked), (ticks, asked)

    trio.run(main, clock=MonotonicClock())
