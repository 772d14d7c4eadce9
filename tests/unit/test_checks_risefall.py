"""checks.risefall: hysteresis against a straightforward model, and its edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.checks.risefall import Change, RiseFall


def model_states(rise: int, fall: int, results: list[bool]) -> list[bool]:
    """The state after each result: down once the last ``fall`` results since the last
    change all failed, up once the last ``rise`` all succeeded (starting up)."""
    state = True
    since_change: list[bool] = []
    out = []
    for ok in results:
        since_change.append(ok)
        need = rise if not state else fall
        tail = since_change[-need:]
        if len(tail) == need and all(r == (not state) for r in tail):
            state = not state
            since_change = []
        out.append(state)
    return out


@given(
    st.integers(1, 6),
    st.integers(1, 6),
    st.lists(st.booleans(), max_size=80),
)
def test_matches_the_model(rise: int, fall: int, results: list[bool]) -> None:
    hysteresis = RiseFall(rise, fall)
    expected = model_states(rise, fall, results)
    previous = True
    for ok, want in zip(results, expected, strict=True):
        change = hysteresis.update(ok, "why")
        assert hysteresis.up is want
        if want != previous:
            assert change == Change(want, "why")
        else:
            assert change is None
        previous = want


@given(st.integers(1, 10), st.integers(1, 10))
def test_exact_counts(rise: int, fall: int) -> None:
    h = RiseFall(rise, fall)
    for _ in range(fall - 1):
        assert h.update(False) is None
    assert h.update(False) == Change(False, "")
    for _ in range(rise - 1):
        assert h.update(True) is None
    assert h.update(True) == Change(True, "")


def test_starts_up_and_one_success_resets_the_failure_count() -> None:
    h = RiseFall(2, 3)
    assert h.up
    assert h.update(False) is None
    assert h.update(False) is None
    assert h.update(True) is None  # streak broken
    assert h.update(False) is None
    assert h.update(False) is None
    assert h.update(False, "status 500") == Change(False, "status 500")
    assert not h.up


def test_starting_down_needs_rise_successes() -> None:
    h = RiseFall(2, 3, up=False)
    assert h.update(True) is None
    assert h.update(True, "ok") == Change(True, "ok")


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 3)])
def test_rejects_counts_below_one(rise: int, fall: int) -> None:
    with pytest.raises(ValueError):
        RiseFall(rise, fall)


# --------------------------------------------------------------------------- unknown start
# A track script starts unknown: the first full run of either kind decides.


def test_unknown_start_hysteresis() -> None:
    rf = RiseFall(rise=2, fall=3, up=None)
    assert rf.up is None
    assert rf.update(True) is None  # one success is not enough
    assert rf.update(True) == Change(True, "")
    assert rf.update(False) is None
    assert rf.update(False) is None
    assert rf.update(True) is None  # the failure run is broken
    assert [rf.update(False) for _ in range(3)] == [None, None, Change(False, "")]
    assert rf.update(True) is None
    assert rf.update(True) == Change(True, "")


def test_unknown_start_a_broken_run_starts_over() -> None:
    rf = RiseFall(rise=3, fall=2, up=None)
    assert [rf.update(ok) for ok in (True, True, False, True, True)] == [None] * 5
    assert rf.update(True) == Change(True, "")
    assert RiseFall(3, 1, up=None).update(False) == Change(False, "")


@given(rise=st.integers(1, 4), fall=st.integers(1, 4), results=st.lists(st.booleans()))
def test_unknown_start_changes_only_after_a_full_run(
    rise: int, fall: int, results: list[bool]
) -> None:
    rf = RiseFall(rise, fall, up=None)
    previous: bool | None = None
    for i, ok in enumerate(results):
        change = rf.update(ok)
        assert (change is not None) == (rf.up != previous)
        if change is not None:
            need = rise if ok else fall
            assert change.up is ok is rf.up
            assert i + 1 >= need
            assert all(r is ok for r in results[i + 1 - need : i + 1])
        previous = rf.up
