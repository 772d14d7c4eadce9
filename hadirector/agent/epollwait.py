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

Cost: one ``timerfd_settime`` per wait with a timeout (through ctypes, ~1 µs with Python's
share); no wait without a timeout arms it (the timer is disarmed). A timer that fired is not
read: the next ``timerfd_settime``, arming or disarming it, clears its expiry count (the
kernel's ``timerfd_setup``), so a master's wake-up costs no read. The timerfd's own event
is never returned.

Where ``timerfd_create`` is missing (not Linux, or no symbol in the C library), ``wait`` is
``epoll.poll`` itself, rounded up to the millisecond as before.

What it must not do: read the clock, or decide anything: it only waits.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import struct
from collections.abc import Callable

__all__ = ["DeadlineWait"]

_CLOCK_MONOTONIC = 1


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
    return create, settime


class DeadlineWait:
    """``wait(timeout_s)`` on an epoll set, ended by a timerfd (module docstring). The
    caller closes it (``close``) before the epoll set."""

    def __init__(self, epoll: select.epoll) -> None:
        self._epoll = epoll
        self.fd = -1
        self.precise = False
        self._armed = False
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
        epoll.register(fd, select.EPOLLIN)
        self.precise = True

    def wait(self, timeout_s: float) -> list[tuple[int, int]]:
        """Wait for an event or the end of ``timeout_s`` (negative: no end): the events,
        without the timer's; an empty list when the time ran out."""
        if not self.precise:
            return self._epoll.poll(timeout_s)
        fd = self.fd
        if timeout_s == 0:
            events = self._epoll.poll(0)
            if self._armed:  # it may have fired, unread: not an event of the caller's
                events = [event for event in events if event[0] != fd]
            return events
        if timeout_s > 0:
            # Rounded up to the nanosecond: never before the deadline it was computed from.
            ns = math.ceil(timeout_s * 1e9)
            sec = ns // 1_000_000_000
            nsec = ns - sec * 1_000_000_000
            _TIMESPEC.pack_into(self._spec, _TIMESPEC.size, sec, nsec)  # it_value
            if self._settime(fd, 0, self._spec_ref, None) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))
            self._armed = True  # (armed, or fired and unread, until set again)
        elif self._armed:
            self._settime(fd, 0, self._disarm_ref, None)  # also clears a fired one
            self._armed = False
        events = self._epoll.poll(-1)
        for i, (event_fd, _mask) in enumerate(events):
            if event_fd == fd:
                del events[i]  # fired: left unread (the next settime clears it)
                break
        return events

    def close(self) -> None:
        """Close the timer (the epoll set forgets it)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.precise = False
