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
