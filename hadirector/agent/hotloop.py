"""The VRRP hot path in a thread of its own: deadlines and receive sockets on a bare epoll.

What it does: ``HotLoop`` is what agent/wakeups.py is (every instance's deadlines from one
heap, ``call_at``), served by a dedicated thread instead of a trio task, and it also reads
the shared VRRP receive sockets (``add_reader``: net/vrrp_socket.py registers them). A
master's advert (its Adver_Timer, the advert built and sent) and a backup's received advert
(read, receive checks, the machine's Master_Down timer moved) then cost one wake-up of a
plain ``epoll_wait`` loop, not a pass of trio's scheduler: on a 2-core VM a trio wake-up
costs 150-300 µs of CPU, a bare ``epoll_wait`` one 25-50 µs, and at a 10 ms advert interval
that is the whole difference. The wait ends at the earliest deadline to the microsecond
(a timerfd in the epoll set, agent/epollwait.py), not epoll's whole milliseconds plus the
kernel's 0.1 % slack: a backup takes over when Skew_Time ends, not up to a millisecond
after.

How it stays safe: the thread and trio take turns, never run at once. The trio run loop
holds the *baton* while it runs tasks and hands it over only while it waits for I/O (a trio
``Instrument``: ``before_io_wait`` / ``after_io_wait``); the thread takes it for each batch
of work (the due callbacks, the ready sockets) and gives it back. So the instances' state is
touched by one thread at a time, as in a single-threaded program: the code it runs (the
instances' ``_on_wakeup`` and ``_on_packet``) is the code the trio wake-up task ran. When
both want the baton, the one that had it last waits: an advert flood cannot starve trio
(a stop, a link change, a reload), nor a busy trio the adverts.

A takeover's first steps (the VIPs added, the first announcement and advert) are made
here, in the wake-up that found the Master_Down timer due (agent/instance.py
``_take_over_now``): handing them to trio cost 0.3-0.5 ms. What must still happen in trio
(a driver to wake: the transition's report, VIPs to release, notify scripts, a packet
queued before its instance listens) is handed over with
``call_in_trio``: from the thread, trio's ``run_sync_soon`` (thread-safe, FIFO, never drops,
wakes trio); from trio itself, a plain call. The clock is trio's (the clock object of the
run, read from the thread: ``now``); it is injected, not read behind the core's back.

Tests under trio's virtual clock use agent/wakeups.py (same interface, no thread); the
production adapters (ports.Adapters.real) use this one.

What it must not do: decide anything about VRRP, let a callback block (callbacks are plain
functions; one that raises stops the agent, as it did in the trio task), or touch trio from
the thread other than through ``call_in_trio``.

The agent runs trio on ``MonotonicClock`` (cli.py): the clock's reading is
``time.monotonic`` itself (CLOCK_MONOTONIC, the clock the timerfd counts on), a C call,
where trio's default clock is a Python method: the hot loop reads the clock at every
wake-up, and a Python frame there is part of what an advert costs.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import select
import threading
import time
from collections.abc import Callable

import trio

from hadirector.agent.epollwait import DeadlineWait
from hadirector.agent.wakeups import Entry, settle_top

__all__ = ["Baton", "HotLoop", "MonotonicClock"]

_TRIO = 0
_HOT = 1


class MonotonicClock(trio.abc.Clock):
    """trio's clock for the production agent: CLOCK_MONOTONIC seconds (module docstring),
    ``current_time`` being ``time.monotonic`` itself: no Python frame per reading."""

    def __init__(self) -> None:
        self.current_time = time.monotonic  # type: ignore[method-assign]

    def start_clock(self) -> None:
        return None

    def current_time(self) -> float:  # (the class's, for the ABC; instances shadow it)
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.monotonic()


class Baton(trio.abc.Instrument):
    """Whose turn it is: trio's run loop (while it runs tasks) or the hot thread.

    Installed as a trio instrument: trio gives the baton up before each wait for I/O and
    takes it back after. The one that had it last waits when the other wants it."""

    def __init__(self) -> None:
        # Taken with the lock itself (a C context manager), not the Condition's Python
        # wrappers: trio takes and gives the baton on every pass of its run loop.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._owner: int | None = _TRIO  # installed from a trio task: trio holds it
        self._last = _TRIO
        self._waiting = [False, False]

    def take(self, who: int) -> bool:
        cond = self._cond
        with self._lock:
            other = 1 - who
            if self._owner is None and not (self._waiting[other] and self._last == who):
                self._owner = who
                return False
            self._waiting[who] = True
            while self._owner is not None or (self._waiting[other] and self._last == who):
                cond.wait()
            self._waiting[who] = False
            self._owner = who
            return True

    def give(self, who: int) -> None:
        with self._lock:
            self._owner = None
            self._last = who
            if self._waiting[1 - who]:
                self._cond.notify_all()

    # trio's Instrument hooks (the trio thread).
    def before_io_wait(self, timeout: float) -> None:
        self.give(_TRIO)

    def after_io_wait(self, timeout: float) -> None:
        self.take(_TRIO)


class HotLoop:
    """The deadlines heap and the VRRP receive sockets, served by one thread (module
    docstring). The interface of agent/wakeups.py ``Wakeups``, plus ``add_reader``."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._last_seq = -1  # the sequence number of the last request (``call_at``)
        self._readers: dict[int, Callable[[], None]] = {}
        self._epoll: select.epoll | None = None
        self._kick_fd = -1
        self._kicked = False
        # The deadline the thread sleeps toward (inf: none; -inf: awake, working).
        self._sleeping_until = -math.inf
        self._baton = Baton()
        self._clock: trio.abc.Clock | None = None
        # The clock's reading (``now``): trio's current time until ``run`` has its clock.
        self._current_time: Callable[[], float] = trio.current_time
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._thread_ident = -1
        self._stopping = False
        self._failure: BaseException | None = None
        self._failed: trio.Event | None = None

    # -- the interface the instances use (both threads) -----------------------------

    def now(self) -> float:
        """The time on trio's clock (of the run ``run`` serves), from either thread."""
        return self._current_time()

    def call_at(
        self,
        at: float,
        callback: Callable[[float], None],
        early: float | None = None,
        current: Callable[[], tuple[float, float] | None] | None = None,
    ) -> None:
        """Call ``callback(now)`` once, in the thread, at ``at`` or soon after; from
        ``early`` on (at most ``at``) when it wakes for another request anyway;
        ``current`` as in agent/wakeups.py (a deadline that moved later is moved)."""
        if early is None or early > at:
            early = at
        self._last_seq = seq = next(self._seq)
        heapq.heappush(self._heap, (at, early, seq, callback, current))
        if at < self._sleeping_until:
            self._kick()

    def call_in_trio(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` in trio: now if called from trio, else as soon as trio can."""
        if threading.get_ident() == self._thread_ident:
            assert self._token is not None
            self._token.run_sync_soon(fn)
        else:
            fn()

    def __len__(self) -> int:
        return len(self._heap)

    def threads(self) -> list[int]:
        """The native ids of the threads it runs (for scheduling policy)."""
        thread = self._thread
        return [thread.native_id] if thread is not None and thread.native_id else []

    # -- receive sockets (trio thread) -------------------------------------------

    def add_reader(self, fd: int, ready: Callable[[], None]) -> None:
        """Call ``ready()`` in the thread whenever ``fd`` is readable (level-triggered:
        ``ready`` should read what it holds, or a batch of it)."""
        self._readers[fd] = ready
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed)."""
        if self._readers.pop(fd, None) is not None and self._epoll is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    # -- running ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the thread and serve until cancelled; the thread is stopped on the way out."""
        self._clock = trio.lowlevel.current_clock()
        self._current_time = self._clock.current_time
        self._token = trio.lowlevel.current_trio_token()
        self._failed = trio.Event()
        self._epoll = select.epoll()
        self._kick_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._kick_fd, select.EPOLLIN)
        for fd in self._readers:
            self._epoll.register(fd, select.EPOLLIN)
        self._sleeping_until = math.inf  # the thread's first wait: until kicked
        trio.lowlevel.add_instrument(self._baton)
        self._thread = threading.Thread(target=self._main, name="vrrp-hot", daemon=True)
        self._thread.start()
        try:
            task_status.started()
            await self._failed.wait()
            assert self._failure is not None
            raise self._failure
        finally:
            self._stopping = True
            self._kick()
            with trio.CancelScope(shield=True):
                # trio gives the baton up while it waits here: the thread can end its batch.
                await trio.to_thread.run_sync(self._thread.join)
            trio.lowlevel.remove_instrument(self._baton)
            self._epoll.close()
            os.close(self._kick_fd)
            self._epoll = None
            self._kick_fd = -1

    def _kick(self) -> None:
        """Wake the thread (a new earliest deadline, or the stop)."""
        if self._kicked or self._kick_fd < 0:
            return
        self._kicked = True
        with contextlib.suppress(OSError):
            os.eventfd_write(self._kick_fd, 1)

    def _main(self) -> None:
        self._thread_ident = threading.get_ident()
        try:
            self._serve()
        except BaseException as exc:  # handed to trio: the agent stops, as on a task failure
            self._failure = exc
            assert self._token is not None and self._failed is not None
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._failed.set)

    def _serve(self) -> None:
        assert self._epoll is not None
        # Deadlines met to the microsecond: a timerfd in the set, not epoll's timeout (whole
        # milliseconds rounded up, plus 0.1 % slack: agent/epollwait.py).
        deadline_wait = DeadlineWait(self._epoll)
        try:
            self._serve_with(deadline_wait)
        finally:
            deadline_wait.close()

    def _serve_with(self, deadline_wait: DeadlineWait) -> None:
        heap = self._heap
        readers = self._readers
        epoll = self._epoll
        baton = self._baton
        clock = self._clock
        assert epoll is not None and clock is not None
        kick_fd = self._kick_fd
        pop = heapq.heappop
        current_time = clock.current_time
        wait_until = deadline_wait.wait_until
        now = 0.0
        early = at = math.inf

        def serve_events(events: list[tuple[int, int]]) -> bool:
            ran = False
            for fd, _mask in events:
                if fd == kick_fd:
                    self._kicked = False
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(kick_fd)
                    continue
                ready = readers.get(fd)
                if ready is not None:
                    ready()
                    ran = True
            return ran

        while True:
            events = wait_until(now, early, at)
            waited = baton.take(_HOT)
            try:
                if self._stopping:
                    return
                self._sleeping_until = -math.inf  # awake: call_at need not kick
                for fd, _mask in events:  # (``serve_events``, inline: every wake-up)
                    if fd == kick_fd:
                        self._kicked = False
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(kick_fd)
                        continue
                    ready = readers.get(fd)
                    if ready is not None:
                        ready()
                now = current_time()
                # A deadline is due: first read what arrived before it. A backup whose
                # master's advert is in the socket must not time out. Needed when the thread
                # waited for its turn since epoll_wait returned, or woke for something else
                # than the timer: when the timer ended the wait, epoll_wait's list holds
                # everything that was ready when it came (what comes after it is late). The
                # clock is read again only if something ran since.
                if (
                    heap
                    and heap[0][1] <= now
                    and (waited or not deadline_wait.fired)
                    and serve_events(epoll.poll(0))
                ):
                    now = current_time()
                settle_top(heap)
                # Due, or allowed early (the top of the heap only, as in agent/wakeups.py).
                if heap and heap[0][1] <= now:
                    # A request made from here on is where its requester just said: the
                    # top is settled again only if it is an older one (a master's next
                    # Adver_Timer, asked by the callback that sent the advert, is not).
                    first_new = self._last_seq + 1
                    while heap and heap[0][1] <= now:
                        pop(heap)[3](now)
                    if heap and heap[0][2] < first_new:
                        settle_top(heap)
                    now = current_time()  # (not read again when nothing ran since)
                if heap:
                    at, early = heap[0][0], heap[0][1]
                    self._sleeping_until = at
                    if at < now:
                        at = early = now
                else:
                    self._sleeping_until = math.inf
                    at = early = math.inf
            finally:
                baton.give(_HOT)
