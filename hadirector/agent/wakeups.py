"""One task that wakes the VRRP instances at their deadlines.

Each instance's driver, when it parks, asks to be called back at its next deadline
(``call_at``). Every request waits in one heap served by one task: it sleeps until the
earliest, then calls each callback that is due with the time it woke, in deadline order.
A callback finds its instance parked or busy: parked, it runs the machine's timers there
and then (a master's advert goes out without waking its driver), busy, the driver serves
its deadline itself. A deadline that moves later costs nothing here (a backup's
Master_Down timer moves with every advert it hears): the callback that comes early asks
again for the new time. So a hundred instances cost one task and one timer, not a task
and a cancel scope each per advert.

A request may also say how early it may be served (``early``: a master's Adver_Timer may
run a little before it expires, vrrp/machine.py ``timer_window``): a wake-up for one
deadline also serves the requests at the top of the heap whose early time has come, so
instances whose adverts fall close together send them in one wake-up, and from then on
share it (their next adverts are counted from the same ``now``).

agent/hotloop.py serves the same interface from a thread of its own (the production
agent); this one serves it in trio (tests under trio's virtual clock).

A request may also say how to learn its requester's deadline now (``current``): before it
sleeps and when it wakes, the task asks the top of the heap whether its deadline moved
later, and moves it (or drops it: no deadline any more) instead of serving it for nothing.
A backup's Master_Down deadline moves with every advert it hears; without this its wake-up
would come early once per Master_Down_Interval, only to ask again.

What it must not do: decide anything about VRRP, or let a callback wait (callbacks are
plain functions and must not raise).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import trio

__all__ = ["Entry", "Wakeups", "settle_top"]

# A request: (deadline, early time, sequence, callback, how to learn the deadline now).
Entry = tuple[
    float, float, int, Callable[[float], None], Callable[[], tuple[float, float] | None] | None
]


def settle_top(heap: list[Entry]) -> None:
    """Move the requests at the top of the heap whose requester's deadline moved later
    (drop those that have none any more), until the top is one to wake for."""
    while heap:
        at, _early, seq, callback, current = heap[0]
        if current is None:
            return
        moved = current()
        if moved is None or moved[1] <= at:
            return
        early, new_at = moved
        if new_at == math.inf:
            heapq.heappop(heap)
        else:
            entry = (new_at, min(early, new_at), seq, callback, current)
            heapq.heapreplace(heap, entry)
            if heap[0] is entry:
                return  # still the top, where its requester just said: no need to ask again


class Wakeups:
    """The heap of deadlines and the task that serves it (see the module docstring)."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def call_at(
        self,
        at: float,
        callback: Callable[[float], None],
        early: float | None = None,
        current: Callable[[], tuple[float, float] | None] | None = None,
    ) -> None:
        """Call ``callback(now)`` once, at ``at`` (trio's clock) or soon after; from
        ``early`` on (at most ``at``) when the task wakes for another request anyway.
        ``current()``, if given: the requester's (early, deadline) now, None to leave the
        request as it is (see the module docstring)."""
        if early is None or early > at:
            early = at
        heapq.heappush(self._heap, (at, early, next(self._seq), callback, current))
        scope = self._scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    def now(self) -> float:
        """The time on trio's clock."""
        return trio.current_time()

    def call_in_trio(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` in trio: callbacks already run there, so now."""
        fn()

    def threads(self) -> list[int]:
        """The native ids of threads of its own: none."""
        return []

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the heap until cancelled."""
        heap = self._heap
        task_status.started()
        while True:
            settle_top(heap)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            settle_top(heap)  # a deadline may have moved while it slept
            # Due, or allowed early (only the top of the heap is looked at: a missed early
            # chance costs a wake-up, never a late deadline).
            while heap and heap[0][1] <= now:
                heapq.heappop(heap)[3](now)
