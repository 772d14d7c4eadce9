"""Waiting on an epoll set until a deadline to the microsecond: a timerfd in the set.

What it does: ``DeadlineWait(epoll).wait(timeout_s)`` waits like ``epoll.poll(timeout_s)``
(a negative timeout: until an event; the result: a list of ``(fd, mask)``, empty when the
time ran out) but ends at the timeout itself, not up to a millisecond and more after it.
``select.epoll.poll`` counts whole milliseconds, rounded up, and the kernel adds to every
poll/select/epoll timeout a slack of 0.1 % of its length (0.6 ms for the 0.6 s a backup
waits after a priority-0 advert at 1 s adverts; ``select_estimate_accuracy``), and at
least the thread's timer slack (50 µs). A backup taking over after Skew_Time, or a
master's advert, came that much later than the protocol says (agent/hotloop.py). A timerfd
(``CLOCK_MONOTONIC``, armed relative to now for each wait) is an hrtimer without slack:
the wait is ``epoll.poll(-1)`` on a set holding it, and it ends when the timer fires.

Cost: one ``timerfd_settime`` per ``wait`` with a timeout (through ctypes, ~1 µs with
Python's share); no wait without a timeout arms it (the timer is disarmed). A one-shot
timer that fired is not read: the next ``timerfd_settime``, arming or disarming it, clears
its expiry count (the kernel's ``timerfd_setup``). The timerfd's own event is never
returned (``fired`` says whether it ended the last wait).

``wait_until(now, early, at)`` is what the hot loop (agent/hotloop.py) calls: a deadline on
the caller's clock, read as ``now``, and from when an end is accepted (``early``: a master's
Adver_Timer may run a little early, vrrp/machine.py ``timer_window``). It spares the system
calls the two steady states do not need:

- a *window* (``early < at``, an Adver_Timer): the timer is armed periodic. Its period is
  this deadline's distance from the expiry that woke the caller, less half the window: a
  master's next deadline is an interval after its wake-up, which comes right after the
  expiry, so the timer's next expiry falls in the next window as long as the wake-ups'
  delay varies by less than half the window (78 µs at 10 ms adverts). The wait then arms
  nothing: a fired periodic timer is read (``read``, which the kernel's ``timerfd_read``
  answers by starting it toward its next expiry; unread, it would stay stopped), instead
  of a ``timerfd_settime`` through ctypes. An expiry outside the window (a late wake-up,
  a changed interval, another instance's deadline), or one that passed unread (another
  poll of the set took its event), arms the timer anew, as before;
- a deadline with no window (``early == at``: a backup's Master_Down_Timer, Skew_Time, a
  retry) at least ``COARSE_FROM_S`` away: most often moved later by the next advert before
  it comes. It is waited for with epoll's own timeout, which ends ``_COARSE_MARGIN_S``
  (and 0.1 %) before the deadline at the latest (rounded up to the millisecond, plus the
  kernel's slack of 0.1 % and the thread's timer slack, set to 1 ns); the last stretch is
  then a precise wait like any other. A backup's wake-up per advert arms nothing; a
  deadline that is reached costs one wake-up more.

The timerfd is in the set edge-triggered: each expiry is one event, read or not (a one-shot
timer that fired is left unread: the next ``timerfd_settime`` clears it).

Where ``timerfd_create`` is missing (not Linux, or no symbol in the C library), ``wait`` is
``epoll.poll`` itself, rounded up to the millisecond as before.

What it must not do: read the clock, or decide anything: it only waits. Each wait ends at
its deadline or after it, never before (``early`` is the caller's own allowance).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import struct
import sys
from collections.abc import Callable

__all__ = ["DeadlineWait"]

_CLOCK_MONOTONIC = 1
_PR_SET_TIMERSLACK = 29

# A deadline with no window this far off is waited for coarsely (module docstring); the
# coarse wait ends at least this much before it: epoll's timeout is rounded up to the
# millisecond, and the kernel adds 0.1 % of it (plus the thread's timer slack, set to 1 ns
# here; 50 µs if that fails), with a quarter of a millisecond to spare.
COARSE_FROM_S = 0.005
_COARSE_MARGIN_S = 0.00125


# struct timespec; struct itimerspec is two of them: it_interval (left zero: one shot), then
# it_value. Written with pack_into into a buffer made once: no ctypes object per wait.
_TIMESPEC = struct.Struct("@ll")
_ITIMERSPEC_BYTES = 2 * _TIMESPEC.size


def _timerfd_functions() -> tuple[Callable[..., int], Callable[..., int]] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    # No argtypes: ints and byref()s built once are what ctypes passes fastest.
    create.restype = ctypes.c_int
    settime.restype = ctypes.c_int
    # The thread's timer slack, which the kernel adds to epoll's timeout (coarse waits),
    # down to 1 ns: a coarse wait then ends within its margin. Failing that, 50 µs.
    with contextlib.suppress(AttributeError):
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    return create, settime


class DeadlineWait:
    """``wait(timeout_s)`` on an epoll set, ended by a timerfd (module docstring). The
    caller closes it (``close``) before the epoll set."""

    def __init__(self, epoll: select.epoll) -> None:
        self._epoll = epoll
        self.fd = -1
        self.precise = False
        self._armed = False
        self.fired = False
        # The periodic timer's next expiry and the one that last fired, on the caller's
        # clock (as ``now`` + the timeout it was armed with: a few µs early; -inf: not
        # known), and its period (0.0: not periodic).
        self._next_at = -math.inf
        self._fired_at = -math.inf
        self._period = 0.0
        functions = _timerfd_functions()
        if functions is None:
            return
        create, self._settime = functions
        fd = create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return  # e.g. ENOSYS, EMFILE: the millisecond wait, as before
        self.fd = fd
        self._spec = ctypes.create_string_buffer(_ITIMERSPEC_BYTES)
        self._spec_ref = ctypes.byref(self._spec)
        self._disarm_ref = ctypes.byref(ctypes.create_string_buffer(_ITIMERSPEC_BYTES))
        epoll.register(fd, select.EPOLLIN | select.EPOLLET)
        self.precise = True

    def wait(self, timeout_s: float) -> list[tuple[int, int]]:
        """Wait for an event or the end of ``timeout_s`` (negative: no end): the events,
        without the timer's; an empty list when the time ran out."""
        if not self.precise:
            return self._epoll.poll(timeout_s)
        if timeout_s == 0:
            return self._poll_now()
        if timeout_s > 0:
            self._arm(timeout_s, 0.0)
        elif self._armed:
            self._disarm()
        return self._poll()

    def wait_until(self, now: float, early: float, at: float) -> list[tuple[int, int]]:
        """Wait for an event or the deadline ``at`` (inf: none) on the caller's clock, read
        as ``now``; an end from ``early`` on (at most ``at``) is accepted. As ``wait``
        otherwise; the steady states' system calls spared (module docstring)."""
        timeout_s = at - now
        if not self.precise or at == math.inf:
            return self.wait(-1.0 if at == math.inf else max(timeout_s, 0.0))
        if timeout_s <= 0:
            return self._poll_now()
        if early < at:
            next_at = self._next_at
            if self._period > 0.0 and now < next_at and early <= next_at <= at:
                return self._poll()  # running, its next expiry in the window: as it is
            # Its period: this deadline's distance from the expiry that woke the caller,
            # less half the window (the next deadline is as far from this one's expiry,
            # give or take how late the wake-up was).
            period = at - (self._fired_at if self.fired else now) - (at - early) / 2
            if not 0.0 < period <= 2 * timeout_s:  # (woken otherwise, or long ago)
                period = timeout_s
            self._arm(timeout_s, period)
            self._next_at = at
            return self._poll()
        if timeout_s >= COARSE_FROM_S:
            if self._armed:
                self._disarm()
            self.fired = False
            return self._epoll.poll(timeout_s - _COARSE_MARGIN_S - timeout_s / 1000)
        self._arm(timeout_s, 0.0)
        return self._poll()

    def _arm(self, timeout_s: float, period_s: float) -> None:
        """Arm the timer ``timeout_s`` from now, then every ``period_s`` (0: once)."""
        spec = self._spec
        # Rounded up to the nanosecond: never before the deadline it was computed from.
        ns = math.ceil(timeout_s * 1e9)
        sec = ns // 1_000_000_000
        _TIMESPEC.pack_into(spec, _TIMESPEC.size, sec, ns - sec * 1_000_000_000)  # it_value
        if period_s != self._period:
            ns = math.ceil(period_s * 1e9)
            sec = ns // 1_000_000_000
            _TIMESPEC.pack_into(spec, 0, sec, ns - sec * 1_000_000_000)  # it_interval
            self._period = period_s
        if self._settime(self.fd, 0, self._spec_ref, None) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        self._armed = True  # (armed, or fired and unread, until set again)

    def _disarm(self) -> None:
        self._settime(self.fd, 0, self._disarm_ref, None)  # also clears a fired one
        self._armed = False
        self._period = 0.0
        _TIMESPEC.pack_into(self._spec, 0, 0, 0)

    def _poll(self) -> list[tuple[int, int]]:
        """``epoll.poll(-1)`` without the timer's event; ``fired``: whether it had one. A
        periodic timer that fired is read: that starts it toward its next expiry (the
        kernel's ``timerfd_read``; unread, it would stay stopped)."""
        events = self._epoll.poll(-1)
        fd = self.fd
        for i, (event_fd, _mask) in enumerate(events):
            if event_fd == fd:
                del events[i]
                self.fired = True
                # When it fired is known only for a periodic timer (``_next_at`` is its
                # grid); a one-shot's expiry was never recorded.
                self._fired_at = -math.inf
                if self._period > 0.0:
                    next_at = self._next_at
                    try:
                        ticks = int.from_bytes(os.read(fd, 8), sys.byteorder)
                    except OSError:  # (read already, or re-armed meanwhile): not running
                        self._fired_at = next_at
                        self._next_at = -math.inf
                    else:
                        self._fired_at = next_at + self._period * (ticks - 1)
                        self._next_at = next_at + self._period * ticks
                return events
        self.fired = False
        return events

    def _poll_now(self) -> list[tuple[int, int]]:
        events = self._epoll.poll(0)
        self.fired = False
        if self._armed:  # it may have fired, unread: not an event of the caller's
            fd = self.fd
            events = [event for event in events if event[0] != fd]
        return events

    def close(self) -> None:
        """Close the timer (the epoll set forgets it)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.precise = False
