"""The agent's wake-up task (hadirector/agent/wakeups.py): every instance's deadlines from
one heap, under trio's virtual clock."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from hadirector.agent.wakeups import Wakeups


def run_virtual(test: Callable[[], Awaitable[None]]) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_callbacks_run_at_their_deadlines_in_order() -> None:
    async def main() -> None:
        wakeups = Wakeups()
        calls: list[tuple[str, float]] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(wakeups.run)
            start = trio.current_time()
            wakeups.call_at(start + 3, lambda now: calls.append(("c", now - start)))
            wakeups.call_at(start + 1, lambda now: calls.append(("a", now - start)))
            await trio.sleep(0.5)
            # An earlier request than the one the task sleeps for moves its wake-up.
            wakeups.call_at(start + 2, lambda now: calls.append(("b", now - start)))
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
        assert calls == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
        assert len(wakeups) == 0

    run_virtual(main)


def test_a_request_allowed_early_is_served_with_an_earlier_wake_up() -> None:
    async def main() -> None:
        wakeups = Wakeups()
        calls: list[tuple[str, float]] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(wakeups.run)
            start = trio.current_time()
            wakeups.call_at(start + 1.0, lambda now: calls.append(("first", now - start)))
            # Due at 1.01, allowed from 0.99: served in the wake-up at 1.0.
            wakeups.call_at(
                start + 1.01, lambda now: calls.append(("close", now - start)), start + 0.99
            )
            # Allowed from 1.5 only: served at its own deadline.
            wakeups.call_at(
                start + 2.0, lambda now: calls.append(("far", now - start)), start + 1.5
            )
            await trio.sleep(3)
            nursery.cancel_scope.cancel()
        assert calls == [("first", 1.0), ("close", 1.0), ("far", 2.0)]

    run_virtual(main)


def test_a_deadline_that_moved_later_is_moved_not_woken_for() -> None:
    """``current`` says where the requester's deadline is now (a backup's Master_Down timer
    moves with every advert): the task moves the request there, or drops it, before it
    sleeps, instead of waking at the old time."""

    async def main() -> None:
        wakeups = Wakeups()
        calls: list[tuple[str, float]] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(wakeups.run)
            start = trio.current_time()
            deadline = {"moving": start + 1.0, "gone": start + 1.5}

            def current(name: str):  # type: ignore[no-untyped-def]
                return lambda: (deadline[name], deadline[name])

            for name in ("moving", "gone"):
                wakeups.call_at(
                    deadline[name],
                    lambda now, name=name: calls.append((name, now - start)),
                    current=current(name),
                )
            deadline["moving"] = start + 2.5
            deadline["gone"] = math.inf
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
        assert calls == [("moving", 2.5)]
        assert len(wakeups) == 0

    run_virtual(main)
