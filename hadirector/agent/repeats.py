"""Calls repeated a fixed interval apart for many instances, served by one task.

What it does: ``Repeats.repeat(call, count, interval_s, scope)`` makes ``call()`` now and
``count - 1`` more times, each ``interval_s`` after the one before, and returns
``interval_s`` after the last call: what ``for _ in range(count): call(); await
trio.sleep(interval_s)`` does. The instances' delayed GARP rounds use it (5 announcements
1 ms apart each, by default): when 100 instances became master together, their 500 repeats
fall due together, and one task (``run``) waking once per due time makes all the calls due
then, instead of each instance's task sleeping and waking on its own 5 times.

A repeat stops with the ``scope`` given (the instance's announcement scope): once that is
cancelled no further call is made, even before the waiting task has seen the cancellation.
An exception raised by ``call`` ends that repeat and is raised in its waiting task.

What it must not do: make a call before its time, or block: the calls are synchronous.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["Repeats"]


class _Repeat:
    __slots__ = ("call", "done", "due", "error", "interval_s", "left", "scope")

    def __init__(
        self, call: Callable[[], None], left: int, interval_s: float, scope: trio.CancelScope
    ) -> None:
        self.call = call
        self.left = left  # calls still to make
        self.interval_s = interval_s
        self.scope = scope
        self.due = trio.current_time() + interval_s
        self.done = trio.Event()
        self.error: BaseException | None = None


class Repeats:
    """Spaced repeats of many callers, made by one task (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: list[_Repeat] = []
        self._changed = trio.Event()

    async def repeat(
        self,
        call: Callable[[], None],
        count: int,
        interval_s: float,
        scope: trio.CancelScope,
    ) -> None:
        if count <= 0:
            return
        call()
        job = _Repeat(call, count - 1, interval_s, scope)
        self._pending.append(job)
        self._changed.set()
        try:
            await job.done.wait()
        finally:
            if not job.done.is_set():
                self._pending.remove(job)
        if job.error is not None:
            raise job.error

    async def run(self) -> None:
        """Make the calls as they fall due (runs until cancelled)."""
        while True:
            self._changed = trio.Event()
            if self._pending:
                with trio.move_on_at(min(job.due for job in self._pending)):
                    await self._changed.wait()
            else:
                await self._changed.wait()
            now = trio.current_time()
            for job in [job for job in self._pending if job.due <= now]:
                if job.left > 0 and not job.scope.cancel_called:
                    job.left -= 1
                    try:
                        job.call()
                    except Exception as exc:
                        job.error = exc
                        job.left = 0
                    else:
                        job.due = trio.current_time() + job.interval_s
                        continue
                self._pending.remove(job)
                job.done.set()
