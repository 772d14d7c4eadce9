"""agent/repeats.py under trio's virtual clock: spaced calls of many callers from one task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from hadirector.agent.repeats import Repeats


def run(scenario: Callable[[Repeats, trio.Nursery], Awaitable[None]]) -> None:
    async def main() -> None:
        repeats = Repeats()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(repeats.run)
            await scenario(repeats, nursery)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_each_caller_gets_its_count_spaced_and_returns_an_interval_after_the_last() -> None:
    calls: list[tuple[str, float]] = []
    returned: dict[str, float] = {}

    async def caller(repeats: Repeats, name: str, start: float, count: int, step: float) -> None:
        await trio.sleep(start)
        with trio.CancelScope() as scope:
            await repeats.repeat(
                lambda: calls.append((name, trio.current_time())), count, step, scope
            )
        returned[name] = trio.current_time()

    async def scenario(repeats: Repeats, nursery: trio.Nursery) -> None:
        async with trio.open_nursery() as callers:
            for k in range(3):  # three instances together, 5 calls 1 ms apart
                callers.start_soon(caller, repeats, f"i{k}", 1.0, 5, 0.001)
            callers.start_soon(caller, repeats, "late", 1.0025, 2, 0.01)
            callers.start_soon(caller, repeats, "none", 1.0, 0, 0.001)

    run(scenario)
    for k in range(3):
        times = [t for name, t in calls if name == f"i{k}"]
        assert times == pytest.approx([1.0 + 0.001 * n for n in range(5)])
        assert returned[f"i{k}"] == pytest.approx(1.005)
    assert [t for name, t in calls if name == "late"] == pytest.approx([1.0025, 1.0125])
    assert returned["late"] == pytest.approx(1.0225)
    assert [name for name, _ in calls if name == "none"] == []
    assert returned["none"] == pytest.approx(1.0)


def test_a_cancelled_scope_stops_the_calls_at_once() -> None:
    calls: list[float] = []

    async def scenario(repeats: Repeats, nursery: trio.Nursery) -> None:
        scope = trio.CancelScope()

        def cancel_then_nothing() -> None:
            calls.append(trio.current_time())
            if len(calls) == 2:
                scope.cancel()  # from inside a call: the repeats' own task

        async def canceller() -> None:
            with scope:
                await repeats.repeat(cancel_then_nothing, 5, 0.001, scope)

        nursery.start_soon(canceller)
        await trio.sleep(1)
        assert calls == pytest.approx([0.0, 0.001])
        other = trio.CancelScope()
        calls.clear()

        async def caller_cancelled_from_outside() -> None:
            with other:
                await repeats.repeat(lambda: calls.append(trio.current_time()), 5, 0.001, other)

        nursery.start_soon(caller_cancelled_from_outside)
        await trio.sleep(0.0015)  # between the second and the third call
        other.cancel()
        await trio.sleep(1)
        assert calls == pytest.approx([1.0, 1.001])

    run(scenario)


def test_an_error_in_a_call_ends_that_repeat_in_its_caller_only() -> None:
    good: list[float] = []
    bad: list[float] = []

    def failing() -> None:
        bad.append(trio.current_time())
        if len(bad) == 2:
            raise OSError("send failed")

    async def scenario(repeats: Repeats, nursery: trio.Nursery) -> None:
        async def good_caller() -> None:
            with trio.CancelScope() as scope:
                await repeats.repeat(lambda: good.append(trio.current_time()), 4, 0.001, scope)

        nursery.start_soon(good_caller)
        with trio.CancelScope() as scope, pytest.raises(OSError, match="send failed"):
            await repeats.repeat(failing, 4, 0.001, scope)
        await trio.sleep(1)

    run(scenario)
    assert bad == pytest.approx([0.0, 0.001])
    assert good == pytest.approx([0.0, 0.001, 0.002, 0.003])
