"""Waiting on an epoll set until a deadline to the microsecond (hadirector/agent/epollwait.py).

These compare the timerfd wait with ``select.epoll.poll`` on the same set and check the
order of events (a wait never ends before its deadline), never a duration."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from hadirector.agent.epollwait import DeadlineWait


@pytest.fixture
def pipe_set() -> Iterator[tuple[select.epoll, int, int]]:
    epoll = select.epoll()
    r, w = os.pipe()
    epoll.register(r, select.EPOLLIN)
    try:
        yield epoll, r, w
    finally:
        epoll.close()
        os.close(r)
        os.close(w)


def test_a_timerfd_is_used_here(pipe_set: tuple[select.epoll, int, int]) -> None:
    epoll, _r, _w = pipe_set
    wait = DeadlineWait(epoll)
    try:
        assert wait.precise and wait.fd >= 0
    finally:
        wait.close()
    assert wait.fd == -1 and not wait.precise


def test_reports_what_epoll_poll_reports_without_the_timer(
    pipe_set: tuple[select.epoll, int, int],
) -> None:
    epoll, r, w = pipe_set
    wait = DeadlineWait(epoll)
    try:
        assert wait.wait(0) == [] == epoll.poll(0)
        os.write(w, b"x")
        assert wait.wait(0) == [(r, select.EPOLLIN)] == epoll.poll(0)
        # Level-triggered: still there until read, with or without a timeout armed.
        assert wait.wait(-1) == [(r, select.EPOLLIN)]
        assert wait.wait(5.0) == [(r, select.EPOLLIN)]
        os.read(r, 1)
        # The timeout ends the wait with no event, the timer's own never shown.
        assert wait.wait(0.0002) == []
        assert wait.wait(0) == []
    finally:
        wait.close()


def test_a_timeout_never_ends_before_its_deadline(pipe_set: tuple[select.epoll, int, int]) -> None:
    epoll, _r, _w = pipe_set
    wait = DeadlineWait(epoll)
    try:
        for i in range(20):
            timeout = 0.0001 + i * 0.00013  # fractions of a millisecond
            deadline = time.monotonic() + timeout
            assert wait.wait(timeout) == []
            assert time.monotonic() >= deadline
    finally:
        wait.close()


def test_a_rearmed_or_disarmed_timer_does_not_end_a_later_wait(
    pipe_set: tuple[select.epoll, int, int],
) -> None:
    """An event ends a wait whose timer is still running; the next wait arms its own (or
    none): the earlier timer, expired by then, must not end it."""
    epoll, r, w = pipe_set
    wait = DeadlineWait(epoll)
    try:
        os.write(w, b"x")
        assert wait.wait(0.0001) == [(r, select.EPOLLIN)]  # the timer armed, not waited for
        os.read(r, 1)
        time.sleep(0.002)  # that timer has expired now
        deadline = time.monotonic() + 0.003
        assert wait.wait(0.003) == []
        assert time.monotonic() >= deadline
        # Disarmed for a wait without timeout: only the pipe ends it.
        os.write(w, b"x")
        assert wait.wait(0.0001) == [(r, select.EPOLLIN)]
        os.read(r, 1)
        time.sleep(0.002)
        os.write(w, b"y")
        assert wait.wait(-1) == [(r, select.EPOLLIN)]
    finally:
        wait.close()


def test_a_fired_timer_left_unread_is_never_an_event(
    pipe_set: tuple[select.epoll, int, int],
) -> None:
    """The timer that ended a wait is not read (the next settime clears it): a wait without
    timeout after it waits for a real event, and a zero wait does not report it."""
    epoll, r, w = pipe_set
    wait = DeadlineWait(epoll)
    try:
        assert wait.wait(0.0001) == []  # the timer fired, and was left unread
        assert wait.wait(0) == []
        writer = threading.Timer(0.05, os.write, (w, b"x"))
        writer.start()
        try:
            assert wait.wait(-1) == [(r, select.EPOLLIN)]  # not ended by the stale timer
        finally:
            writer.join()
        os.read(r, 1)
        assert wait.wait(0.0001) == []  # fired again, unread
        deadline = time.monotonic() + 0.003
        assert wait.wait(0.003) == []  # re-armed: ends at its own deadline, not at once
        assert time.monotonic() >= deadline
    finally:
        wait.close()


class _Settimes:
    """Counts the timer's ``timerfd_settime`` calls (arming and disarming)."""

    def __init__(self, wait: DeadlineWait) -> None:
        self.count = 0
        real = wait._settime

        def counted(*args: object) -> int:
            self.count += 1
            return real(*args)

        wait._settime = counted


def test_a_window_keeps_a_periodic_timer_that_is_never_rearmed(
    pipe_set: tuple[select.epoll, int, int],
) -> None:
    """A master's loop: each wait for the next Adver_Timer's window ends by the timer, in
    the window, and after the first two no wait arms the timer again: it is periodic, read
    when it fires (a periodic timerfd left unread stops: the loop would wait for ever)."""
    epoll, _r, w = pipe_set
    wait = DeadlineWait(epoll)
    settimes = _Settimes(wait)
    # A stopped timer would make the wait last for ever: the pipe ends it then, and the
    # assertion on what it returned fails.
    watchdog = threading.Timer(5.0, os.write, (w, b"x"))
    watchdog.start()
    try:
        interval, window = 0.05, 0.025  # a window wide enough for any wake-up's delay
        now = time.monotonic()
        at = now + interval
        for _ in range(8):
            assert wait.wait_until(now, at - window, at) == []
            assert wait.fired
            woke = time.monotonic()
            assert woke >= at - window
            at = woke + interval  # the next advert, an interval after this one
            now = time.monotonic()
        assert settimes.count <= 2  # the first arm, and the period learned once
    finally:
        watchdog.cancel()
        wait.close()


def test_a_periodic_timer_whose_expiry_someone_else_took_is_armed_again(
    pipe_set: tuple[select.epoll, int, int],
) -> None:
    """Another poll of the set took the timer's event: the expiry was not read and the
    timer stopped. The next wait finds its expiry past and arms it anew: it ends."""
    epoll, _r, _w = pipe_set
    wait = DeadlineWait(epoll)
    try:
        now = time.monotonic()
        assert wait.wait_until(now, now + 0.01, now + 0.02) == [] and wait.fired
        now = time.monotonic()
        at = now + 0.02
        assert wait.wait_until(now, now + 0.01, at) == [] and wait.fired  # periodic now
        time.sleep(0.03)  # its next expiry passes...
        epoll.poll(0)  # ...and this poll takes the event (edge-triggered: gone)
        now = time.monotonic()
        at = now + 0.02
        assert wait.wait_until(now, at - 0.01, at) == [] and wait.fired
        assert time.monotonic() >= at - 0.01
    finally:
        wait.close()


def test_a_far_deadline_without_window_is_waited_for_coarsely_then_precisely(
    pipe_set: tuple[select.epoll, int, int],
) -> None:
    """A backup's Master_Down deadline: a wait far from it arms no timer and ends with
    nothing to report, never after the deadline; the wait for the rest ends by the timer
    at the deadline, not before it. An event ends a coarse wait as any other."""
    epoll, r, w = pipe_set
    wait = DeadlineWait(epoll)
    settimes = _Settimes(wait)
    try:
        now = time.monotonic()
        at = now + 0.03
        assert wait.wait_until(now, at, at) == []
        assert settimes.count == 0 and not wait.fired
        now = time.monotonic()
        assert wait.wait_until(now, at, at) == []
        assert wait.fired and time.monotonic() >= at
        # An advert arrives first: reported, the timer never armed for it.
        armed = settimes.count
        os.write(w, b"x")
        now = time.monotonic()
        assert wait.wait_until(now, now + 1.0, now + 1.0) == [(r, select.EPOLLIN)]
        assert settimes.count == armed + 1  # (only the disarm of the fired one-shot)
        os.read(r, 1)
    finally:
        wait.close()
